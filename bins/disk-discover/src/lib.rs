//! disk-discover as a library: flags, the run, the output. `main.rs` only parses and calls
//! [`main`]. The discovery itself lives in `vglet-devices`.

use std::fs;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use vglet_devices::inventory::Inventory;
use vglet_devices::{DiscoverOptions, Discoverer, PmemSource, Selection, SelectionSpec};
use vglet_runner::{Programs, SystemRunner};

pub const EXIT_OK: u8 = 0;
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_TOO_FEW: u8 = 3;

const AFTER_HELP: &str = "\
Examples:
  # Blank NVMe namespaces of at least 100 GiB; inventory to a file for vg-init:
  disk-discover --glob '/dev/nvme*n1' --min-size 100Gi --output /run/vglet/inventory.json

  # Disks by WWN (the same name after a reboot and on every host that sees a LUN), for
  # VG vg0; disks that already are PVs of vg0 are listed too; fail if fewer than 2:
  disk-discover --glob '/dev/disk/by-id/wwn-0x5000c500*' --target-vg vg0 --min-devices 2

  # What would be taken, and why every other device would not (writes nothing):
  disk-discover --explain --glob '/dev/sd*' --exclude-glob /dev/sda

  # The same from the environment, as in the DaemonSet:
  VGLET_DISCOVER_GLOBS='/dev/disk/by-id/nvme-*' \\
  VGLET_DISCOVER_EXCLUDE_GLOBS='/dev/disk/by-id/*-part*' VGLET_MIN_SIZE=10G disk-discover

Selection:
  Globs are matched against every path of a device: /dev/<name>, its /dev/disk/by-id and
  /dev/disk/by-path links, /dev/mapper/<name>. `*` does not cross `/`. Several globs: any
  may match. Regexes match anywhere in the value (anchor with ^ and $). Different kinds of
  criteria must all match (--glob AND --model-regex ...). Excludes win over includes.
  Partitions, loop, device-mapper, md, zram, ram and CD devices are taken only when a glob
  names them explicitly (/dev/loop3, /dev/loop*, /dev/mapper/mpath*; not /dev/*; a
  partition only by a glob that does not also match its disk).
  With --pmem-namespaces, the file's namespaces are the only candidates; patterns narrow
  them further.

Safety (every reason is reported):
  A device is never offered when it or a partition of it is mounted, it holds any
  signature (filesystem, partition table, RAID, LUKS, swap, LVM PV of another VG or of
  none), something is built on it (holders: dm, md), it is read-only or removable, or it
  is smaller than --min-size. A PV of --target-vg is offered, marked existing_pv_of.
  disk-discover only reads: blkid -p, lvm fullreport, sysfs, /dev/disk links.

Output:
  The inventory (JSON, version 1) goes to --output, written atomically, or to stdout.
  When stderr is a terminal, a table of chosen and skipped devices goes there too.

Exit status:
  0 ok, 1 error, 2 usage error, 3 fewer devices chosen than --min-devices.";

/// Finds the block devices vglet may use and writes a JSON inventory for vg-init.
///
/// Selects block devices by glob and regex, skips every device that is in use or holds
/// data (with every reason), and never modifies anything on the host.
#[derive(Debug, clap::Parser)]
#[command(name = "disk-discover", version = vglet_common::VERSION, after_help = AFTER_HELP)]
pub struct Args {
    #[command(flatten)]
    pub cli: Cli,
    #[command(flatten)]
    pub log: vglet_common::logging::LogArgs,
}

/// The one PMEM mode enum (its words are the `vglet.pmem=` tag's).
pub use vglet_lvm::tags::PmemMode;

fn parse_pmem_mode(s: &str) -> Result<PmemMode, String> {
    PmemMode::parse(s).ok_or_else(|| {
        let all: Vec<&str> = PmemMode::ALL.iter().map(|m| m.as_str()).collect();
        format!("{s:?}: one of {}", all.join(", "))
    })
}

#[derive(Debug, Clone, clap::Args)]
pub struct Cli {
    /// Take devices with a path matching PATTERN (repeatable; env: comma-separated).
    #[arg(
        long = "glob",
        value_name = "PATTERN",
        env = "VGLET_DISCOVER_GLOBS",
        value_delimiter = ','
    )]
    pub globs: Vec<String>,
    /// Take devices whose kernel name (sdb, nvme0n1) matches RE.
    #[arg(long, value_name = "RE")]
    pub name_regex: Option<String>,
    /// Take devices whose model (sysfs device/model) matches RE.
    #[arg(long, value_name = "RE")]
    pub model_regex: Option<String>,
    /// Take devices whose serial number matches RE.
    #[arg(long, value_name = "RE")]
    pub serial_regex: Option<String>,
    /// Take devices whose WWN/WWID (naa.…, eui.…) matches RE.
    #[arg(long, value_name = "RE")]
    pub wwn_regex: Option<String>,
    /// Never take devices with a path matching PATTERN (repeatable; env: comma-separated).
    #[arg(
        long = "exclude-glob",
        value_name = "PATTERN",
        env = "VGLET_DISCOVER_EXCLUDE_GLOBS",
        value_delimiter = ','
    )]
    pub exclude_globs: Vec<String>,
    /// Never take devices whose name, model, serial or WWN matches RE (repeatable).
    #[arg(long = "exclude-regex", value_name = "RE")]
    pub exclude_regexes: Vec<String>,
    /// Skip smaller devices. Bytes or a suffix: Ki Mi Gi Ti (1024) or k M G T (1000); sizes:
    /// docs/units.md.
    #[arg(long, value_name = "SIZE", env = "VGLET_MIN_SIZE", default_value = "1Gi", value_parser = parse_size_arg)]
    pub min_size: u64,
    /// The VG the devices are for: its existing PVs are offered (marked existing_pv_of).
    #[arg(long, value_name = "VG", env = "VGLET_TARGET_VG")]
    pub target_vg: Option<String>,
    /// Offer the namespaces in pmem-ns-init's result FILE (and only those).
    #[arg(long, value_name = "FILE", env = "VGLET_PMEM_NAMESPACES")]
    pub pmem_namespaces: Option<PathBuf>,
    /// Only namespaces in this mode, fsdax or sector (needs --pmem-namespaces).
    #[arg(long, value_name = "MODE", value_parser = parse_pmem_mode, env = "VGLET_PMEM_MODE")]
    pub pmem_mode: Option<PmemMode>,
    /// Write the inventory to FILE (atomically) instead of stdout.
    #[arg(long, value_name = "FILE", env = "VGLET_INVENTORY")]
    pub output: Option<PathBuf>,
    /// Dry run: list every device with why it would or would not be taken (stderr table,
    /// JSON on stdout); --output is not written.
    #[arg(long)]
    pub explain: bool,
    /// Exit 3 when fewer devices than N are chosen (the inventory is still written).
    #[arg(long, value_name = "N", env = "VGLET_MIN_DEVICES", default_value_t = 0)]
    pub min_devices: usize,
    /// Where the kernel lists block devices (a host's /sys mounted elsewhere: /host/sys/class/block).
    #[arg(long, value_name = "DIR", default_value = vglet_devices::sysfs::SYS_CLASS_BLOCK)]
    pub sys_block_dir: PathBuf,
    /// The device directory holding the nodes and disk/by-id, disk/by-path links.
    #[arg(long, value_name = "DIR", default_value = vglet_devices::links::DEV_DIR)]
    pub dev_dir: PathBuf,
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    vglet_devices::parse_size(s)
}

/// A mistake in the flags: exit 2, like clap's own errors.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// What a run produced.
#[derive(Debug)]
pub struct Summary {
    pub inventory: Inventory,
    pub exit: u8,
}

/// Runs and maps the outcome to the documented exit status.
pub fn main(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("disk-discover: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(summary) => ExitCode::from(summary.exit),
        Err(e) => {
            let usage = e.downcast_ref::<UsageError>().is_some()
                || e.downcast_ref::<vglet_devices::DevicesError>()
                    .is_some_and(|d| d.is_usage());
            eprintln!("disk-discover: {e:#}");
            ExitCode::from(if usage { EXIT_USAGE } else { EXIT_ERROR })
        }
    }
}

/// Discovers, writes the inventory and tells the operator.
pub async fn run(cli: Cli) -> anyhow::Result<Summary> {
    let opts = options(&cli)?;
    // Before anything else: a missing lvm or blkid is one error naming it, exit 1.
    let programs = Programs::resolve(vglet_devices::discover::NEEDS, &[])?;
    let discoverer = Discoverer::new(Arc::new(SystemRunner::new()), programs)?;
    let inventory = discoverer.discover(&opts).await?;
    let json = inventory.to_json() + "\n";
    if cli.explain {
        if let Some(out) = &cli.output {
            tracing::info!(output = %out.display(), "explain mode: not writing the inventory");
        }
        print!("{json}");
        eprint!("{}", vglet_devices::table::render(&inventory));
    } else {
        match &cli.output {
            Some(out) => {
                write_atomic(out, json.as_bytes())?;
                tracing::info!(output = %out.display(), chosen = inventory.devices.len(), skipped = inventory.skipped.len(), "inventory written");
            }
            None => {
                let mut stdout = std::io::stdout().lock();
                stdout
                    .write_all(json.as_bytes())
                    .and_then(|_| stdout.flush())
                    .context("writing the inventory to stdout")?;
            }
        }
        if std::io::stderr().is_terminal() {
            eprint!("{}", vglet_devices::table::render(&inventory));
        }
    }
    let exit = if inventory.devices.len() < cli.min_devices {
        eprintln!(
            "disk-discover: {} device(s) chosen, fewer than --min-devices {}",
            inventory.devices.len(),
            cli.min_devices
        );
        EXIT_TOO_FEW
    } else {
        EXIT_OK
    };
    Ok(Summary { inventory, exit })
}

/// Checks the flags and turns them into discovery options.
pub fn options(cli: &Cli) -> anyhow::Result<DiscoverOptions> {
    // Env lists may carry blanks ("a,,b", a trailing comma); they name nothing.
    let clean = |v: &[String]| -> Vec<String> {
        v.iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let spec = SelectionSpec {
        globs: clean(&cli.globs),
        name_regex: cli.name_regex.clone(),
        model_regex: cli.model_regex.clone(),
        serial_regex: cli.serial_regex.clone(),
        wwn_regex: cli.wwn_regex.clone(),
        exclude_globs: clean(&cli.exclude_globs),
        exclude_regexes: cli.exclude_regexes.clone(),
    };
    let selection = Selection::new(&spec)?;
    if cli.pmem_mode.is_some() && cli.pmem_namespaces.is_none() {
        return Err(UsageError("--pmem-mode needs --pmem-namespaces".into()).into());
    }
    if !selection.has_includes() && cli.pmem_namespaces.is_none() && !cli.explain {
        return Err(UsageError(
            "nothing selects devices: give --glob (or VGLET_DISCOVER_GLOBS), a --*-regex or \
             --pmem-namespaces; --explain lists every device and why"
                .into(),
        )
        .into());
    }
    if cli
        .target_vg
        .as_deref()
        .is_some_and(|vg| vg.trim().is_empty())
    {
        return Err(UsageError("--target-vg is empty".into()).into());
    }
    let pmem = cli
        .pmem_namespaces
        .as_deref()
        .map(|p| PmemSource::read(p, cli.pmem_mode.map(|m| m.as_str().to_string())))
        .transpose()?;
    let mut opts = DiscoverOptions::new(selection);
    opts.sys_block = cli.sys_block_dir.clone();
    opts.dev_dir = cli.dev_dir.clone();
    opts.min_size = cli.min_size;
    opts.target_vg = cli.target_vg.clone();
    opts.pmem = pmem;
    opts.explain = cli.explain;
    // The decision table goes to stderr with --explain and on a terminal (see run): there
    // the same decisions as log lines would say everything twice.
    opts.log_decisions = !(cli.explain || std::io::stderr().is_terminal());
    opts.hostname = hostname();
    opts.generator = format!("disk-discover {}", vglet_common::VERSION);
    opts.generated_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(opts)
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// The next stage must never read half a document (see vglet_common::atomic_file).
pub fn write_atomic(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    vglet_common::atomic_file::write_atomic(path, data)
        .with_context(|| format!("writing the inventory to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("disk-discover").chain(args.iter().copied()))
    }

    #[test]
    fn flags_parse_with_defaults() {
        let a = parse(&[
            "--glob",
            "/dev/vd*",
            "--glob",
            "/dev/sd?",
            "--min-size",
            "512Mi",
        ])
        .unwrap();
        assert_eq!(a.cli.globs, ["/dev/vd*", "/dev/sd?"]);
        assert_eq!(a.cli.min_size, 512 << 20);
        assert_eq!(a.cli.min_devices, 0);
        assert!(!a.cli.explain);
        let a = parse(&["--glob", "/dev/vd*"]).unwrap();
        assert_eq!(a.cli.min_size, 1 << 30);
        let a = parse(&[
            "--glob",
            "/dev/vd*",
            "--min-size",
            "10G",
            "--pmem-namespaces",
            "/x",
            "--pmem-mode",
            "fsdax",
        ])
        .unwrap();
        assert_eq!(a.cli.min_size, 10_000_000_000);
        assert_eq!(a.cli.pmem_mode, Some(PmemMode::Fsdax));
        assert!(parse(&["--min-size", "lots"]).is_err());
        assert!(parse(&["--pmem-mode", "devdax"]).is_err());
    }

    #[test]
    fn usage_errors() {
        let cli = |args: &[&str]| parse(args).unwrap().cli;
        let usage = |c: &Cli| {
            let e = options(c).unwrap_err();
            e.downcast_ref::<UsageError>().is_some()
                || e.downcast_ref::<vglet_devices::DevicesError>()
                    .is_some_and(|d| d.is_usage())
        };
        assert!(usage(&cli(&[])));
        assert!(usage(&cli(&["--glob", "/dev/["])));
        assert!(usage(&cli(&["--glob", "/dev/x", "--model-regex", "("])));
        assert!(usage(&cli(&["--glob", "/dev/x", "--pmem-mode", "sector"])));
        // --explain alone is fine: it lists everything.
        assert!(options(&cli(&["--explain"])).is_ok());
        // Blank entries from an env list are dropped, not rejected.
        let mut c = cli(&["--glob", "/dev/x"]);
        c.globs.push(" ".into());
        assert!(options(&c).is_ok());
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("inventory.json");
        write_atomic(&out, b"one").unwrap();
        fs::write(tmp.path().join(".inventory.json.tmp"), b"stale").unwrap();
        write_atomic(&out, b"two").unwrap();
        assert_eq!(fs::read_to_string(&out).unwrap(), "two");
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["inventory.json"]);
        assert!(write_atomic(&tmp.path().join("missing/dir/x.json"), b"x").is_err());
    }
}
