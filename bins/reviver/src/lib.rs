//! The reviver as a library: flags, the run loop and the report. The work on each volume
//! is in [`revive`].

pub mod report;
pub mod revive;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use vglet_lvm::Lvm;
use vglet_mount::{Filesystems, SystemMounter};
use vglet_runner::{Runner, SystemRunner};
use vglet_state::StateStore;

pub use report::{Outcome, Report, VolumeReport};
pub use revive::Reviver;

/// Exit status when every volume is restored or already fine.
pub const EXIT_OK: u8 = 0;
/// At least one volume (or record) failed; the report says which and why.
pub const EXIT_FAILED: u8 = 1;
/// The reviver could not run at all (state directory unreadable, lvm missing).
pub const EXIT_ERROR: u8 = 2;

/// Brings every volume the vglet node service staged or published back after a reboot or a
/// crash: waits for the volume groups, starts shared lockspaces, re-activates the recorded
/// LVs, repairs staging mounts (fsck where the filesystem asks for it) and publish bind
/// mounts, skipping whatever is already right. Never deletes data; a record whose LV no
/// longer exists is removed and reported.
///
/// Exit status: 0 all volumes restored or already fine, 1 some failed (see the report),
/// 2 could not run (e.g. --state-dir does not exist). A volume group awaited with
/// --volume-group that never appears is a failure (1).
///
/// Examples:
///   reviver --volume-group vg0
///   reviver --state-dir /var/lib/vglet/state --json
///   reviver --volume-group vg0 --watch --interval 60s
#[derive(Debug, clap::Parser)]
#[command(version = vglet_common::VERSION, verbatim_doc_comment)]
pub struct Args {
    /// The node service's state directory (csi-driver --state-dir). It must exist: a
    /// mistyped path would otherwise be created and report 0 volumes.
    #[arg(long, env = "VGLET_STATE_DIR", default_value = "/var/lib/vglet/state")]
    pub state_dir: PathBuf,

    /// Create --state-dir when it does not exist (a node where nothing was staged yet).
    #[arg(long, env = "VGLET_CREATE_STATE_DIR")]
    pub create_state_dir: bool,

    /// Volume groups to wait for (repeat, or comma-separate in the env var). The VGs named
    /// in records are waited for too.
    #[arg(
        long = "volume-group",
        env = "VGLET_VOLUME_GROUPS",
        value_delimiter = ','
    )]
    pub volume_groups: Vec<String>,

    /// How long to wait for the volume groups to appear (devices are slow after a boot):
    /// `90s`, `2m`, `1h` (durations: docs/units.md).
    #[arg(long, env = "VGLET_WAIT_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub wait_timeout: Duration,

    /// Keep running: repeat the pass every --interval (a DaemonSet container).
    #[arg(long, env = "VGLET_WATCH")]
    pub watch: bool,

    /// Time between passes with --watch.
    #[arg(long, env = "VGLET_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub interval: Duration,

    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    /// Bound on one lvm or fsck command.
    #[arg(long, env = "VGLET_COMMAND_TIMEOUT", default_value = "300s", value_parser = parse_duration)]
    pub command_timeout: Duration,

    #[command(flatten)]
    pub log: vglet_common::logging::LogArgs,
}

/// The one duration grammar of every vglet binary (docs/units.md).
pub use vglet_common::duration::parse_duration;

/// Runs the reviver as the binary does; returns its exit status.
pub fn main(args: Args) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("reviver: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match rt.block_on(run(&args)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "reviver cannot run");
            eprintln!("reviver: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The programs the reviver runs: lvm, the check of an ext4 filesystem before it is mounted
/// again (ext4 is the default); xfs_repair and lvmlockctl only for xfs volumes and shared
/// VGs, which without them are reported as not revived, naming the tool.
pub const NEEDS: &[vglet_runner::Wanted] = {
    use vglet_runner::{Program, optional, required};
    &[
        required(Program::Lvm),
        required(Program::FsckExt4),
        optional(Program::XfsRepair),
        optional(Program::Lvmlockctl),
    ]
};

pub fn build(args: &Args) -> anyhow::Result<Reviver> {
    for vg in &args.volume_groups {
        vglet_lvm::naming::validate_vg_name(vg)
            .map_err(|e| anyhow::anyhow!("--volume-group {vg:?}: {e}"))?;
    }
    if !args.create_state_dir && !args.state_dir.is_dir() {
        anyhow::bail!(
            "state directory {} does not exist (or is no directory); check --state-dir \
             (csi-driver --state-dir), or pass --create-state-dir on a node where nothing was \
             staged yet",
            args.state_dir.display()
        );
    }
    let store = StateStore::open(&args.state_dir)
        .with_context(|| format!("state directory {:?}", args.state_dir))?;
    let runner: Arc<dyn Runner> = Arc::new(SystemRunner::new());
    let programs = vglet_runner::Programs::resolve(NEEDS, &[])?;
    programs.log_absent();
    let lvm = Lvm::new(runner.clone(), programs.clone())?;
    lvm.set_timeout(args.command_timeout);
    Ok(Reviver {
        lvm,
        fs: Filesystems::new(runner, programs),
        mounter: Arc::new(SystemMounter),
        store,
        lock_wait: Duration::from_secs(60),
        host: Arc::new(vglet_volume::SystemHost),
    })
}

async fn run(args: &Args) -> anyhow::Result<u8> {
    let reviver = build(args)?;
    if !args.watch {
        let report = reviver
            .pass(&args.volume_groups, args.wait_timeout, true)
            .await?;
        report::print(&report, args.json);
        for vg in &report.missing_vgs {
            eprintln!("reviver: {vg}");
        }
        return Ok(if report.any_failed() {
            EXIT_FAILED
        } else {
            EXIT_OK
        });
    }
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut wait = args.wait_timeout;
    loop {
        match reviver.pass(&args.volume_groups, wait, false).await {
            Ok(report) => {
                report::log(&report);
                if args.json {
                    report::print(&report, true);
                }
            }
            // The next pass may find the directory readable again; a DaemonSet container
            // that exits would only be restarted into the same error.
            Err(e) => tracing::error!(error = format!("{e:#}"), "pass failed"),
        }
        // Only the first pass waits for slow devices; later ones report what is missing.
        wait = Duration::ZERO;
        tokio::select! {
            _ = tokio::time::sleep(args.interval) => {}
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); return Ok(EXIT_OK); }
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: stopping"); return Ok(EXIT_OK); }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn flags() {
        let a = Args::try_parse_from([
            "reviver",
            "--volume-group",
            "vg0",
            "--volume-group=vg1",
            "--wait-timeout",
            "5s",
            "--watch",
            "--interval",
            "2m",
            "--json",
        ])
        .unwrap();
        assert_eq!(a.volume_groups, vec!["vg0", "vg1"]);
        assert_eq!(a.wait_timeout, Duration::from_secs(5));
        assert_eq!(a.interval, Duration::from_secs(120));
        assert!(a.watch && a.json);
        let d = Args::try_parse_from(["reviver"]).unwrap();
        assert_eq!(d.state_dir, PathBuf::from("/var/lib/vglet/state"));
        assert_eq!(d.wait_timeout, Duration::from_secs(120));
        assert_eq!(
            parse_duration("1h"),
            Ok(Duration::from_secs(3600)),
            "one grammar"
        );
    }
}
