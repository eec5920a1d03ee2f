//! vglet's CSI driver as a library: the binary only parses flags and calls [`run`].

// The map, top down: each layer imports only from the ones below it (tests/layers.rs
// checks it).
//
//   service/      gRPC: Identity, Controller, Node adapters; server, tower layer, start-up
//   provision/    CreateVolume as read -> pure plan -> execute; the VG rule GetCapacity shares
//   ops/          snapshots, content sources, expansion, modification (ControllerModifyVolume),
//                 the in-use check, start-up reconcile
//   driver.rs     the state the services share (config, lvm, mounter, caches, ownership),
//                 with inflight.rs, metrics.rs, host_needs.rs
//   status.rs     the one map from the volume layer's errors to gRPC codes
//   node_state/   what the node may trust without an lvm read (vouched creates, proven
//                 publishes, first-format marks at start)
//   rules/        pure request rules and the volume layer's error type
//   config.rs     the flags
//
// Staging, publishing, activation, mount options and the proven unmounts are not here but in
// `vglet-volume`, which the reviver uses too. docs/architecture.md draws the same map.

pub mod config;
pub(crate) mod driver;
pub(crate) mod host_needs;
pub(crate) mod inflight;
pub mod metrics;
pub(crate) mod node_state;
pub(crate) mod ops;
pub(crate) mod provision;
pub mod rules;
pub mod service;
pub(crate) mod status;

use std::sync::Arc;

use anyhow::Context;
use vglet_lvm::Lvm;
use vglet_mount::{Filesystems, SystemMounter};
use vglet_runner::{Programs, Runner, SystemRunner};

pub use config::{Config, Mode};

/// The configuration unit tests run the driver with: node n1 serving vg0 with the fake lvm
/// at `/bin/sh`, no device-scan narrowing, no device-mapper check (this host may have
/// none), socket and state under `dir`; `extra` flags last (a repeated flag wins).
#[cfg(test)]
pub(crate) fn test_config(dir: &std::path::Path, extra: &[String]) -> Config {
    #[derive(clap::Parser)]
    struct Args {
        #[command(flatten)]
        config: Config,
    }
    let mut argv = vec![
        "csi-driver".to_string(),
        "--node-id=n1".into(),
        "--volume-group=vg0".into(),
        "--lvm=/bin/sh".into(),
        "--restrict-scan=false".into(),
        "--no-device-mapper-check".into(),
        format!("--endpoint=unix://{}", dir.join("csi.sock").display()),
        format!("--state-dir={}", dir.join("state").display()),
    ];
    argv.extend(extra.iter().cloned());
    <Args as clap::Parser>::parse_from(argv).config
}

/// Builds the driver from its configuration: resolves its programs, checks lvm answers,
/// narrows its device scan to the served VGs' PVs.
pub async fn build_driver(cfg: Config) -> anyhow::Result<driver::Driver> {
    build_driver_with(cfg, Arc::new(SystemRunner::new())).await
}

/// [`build_driver`] with the runner given: one that reports to metrics, or a fake in tests.
pub async fn build_driver_with(
    cfg: Config,
    runner: Arc<dyn Runner>,
) -> anyhow::Result<driver::Driver> {
    let programs = host_needs::resolve_programs(&cfg)?;
    build_driver_from(cfg, runner, programs).await
}

/// [`build_driver_with`] with the programs resolved (once, at start, by the caller).
pub async fn build_driver_from(
    cfg: Config,
    runner: Arc<dyn Runner>,
    programs: Programs,
) -> anyhow::Result<driver::Driver> {
    cfg.validate().map_err(anyhow::Error::msg)?;
    programs.log_absent();
    let lvm = Lvm::new(runner.clone(), programs.clone())?;
    lvm.set_timeout(cfg.command_timeout);
    // First of all: an earlier run's lvcreate may hold the VG's lock and must not commit
    // after the reads below, nor its luksFormat or mkfs write beside a retry.
    stop_orphans(&cfg).await?;
    // The socket already answers Probe: start-up's lvm runs at a lower CPU priority, so
    // that under load (or emulation) the first Probe is not queued behind lvm's scan.
    lvm.set_niceness(Some(STARTUP_NICENESS));
    // Both are needed before serving and neither depends on the other: one lvm start-up
    // cost instead of two. The one report of everything serves the device scope, the VG
    // checks and the reconcile below.
    let (version, report) = tokio::join!(lvm.version(), lvm.report(None));
    let version = version.context("lvm does not answer")?;
    tracing::info!(lvm = %version, "lvm found");
    if !cfg.no_device_mapper_check
        && let Some(why) = host_needs::device_mapper_missing()
    {
        tracing::warn!("{why}; Probe fails until it is there");
    }
    let report = match report {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the volume groups; lvm keeps scanning all devices");
            None
        }
    };
    if cfg.restrict_scan
        && let Some(report) = &report
    {
        let devices: Vec<String> = report
            .pvs
            .iter()
            .filter(|p| cfg.volume_groups.contains(&p.vg))
            .map(|p| p.name.clone())
            .collect();
        if devices.is_empty() {
            tracing::warn!(
                "no PV of the served volume groups found; lvm keeps scanning all devices"
            );
        } else {
            tracing::info!(devices = %devices.join(","), "lvm device scan restricted to the served PVs");
            lvm.set_device_scope(devices);
        }
    }
    for name in &cfg.volume_groups {
        match report.as_ref().and_then(|r| r.vg(name)) {
            Some(vg) if vg.is_shared() => {
                check_lock_type(&lvm, name, &vg.lock_type).await?;
            }
            Some(_) => {}
            None => {
                tracing::warn!(vg = %name, "served volume group is not available (Probe will fail until it is)");
            }
        }
    }
    let state = if cfg.mode.node() {
        let store = vglet_state::StateStore::open(&cfg.state_dir)
            .with_context(|| format!("state directory {:?}", cfg.state_dir))?;
        Some(store)
    } else {
        None
    };
    let creating = match cfg.keeps_create_intents() {
        true => node_state::create_intents::CreateIntents::load(state.clone()),
        false => Default::default(),
    };
    let driver = driver::Driver {
        crypt: vglet_volume::crypt::Crypt::new(runner.clone(), &programs).with_pbkdf(cfg.pbkdf()),
        fs: Filesystems::new(runner.clone(), programs),
        mounter: Arc::new(SystemMounter),
        inflight: Default::default(),
        vg_locks: Default::default(),
        vouched: Default::default(),
        creating,
        state,
        lvm,
        cfg,
    };
    if driver.cfg.mode.controller() {
        ops::snapshot::thaw_left_frozen_at_start();
        ops::reconcile::at_start_from(&driver, report.as_ref()).await;
    }
    if driver.cfg.mode.node() {
        ops::reconcile::first_formats_at_start(&driver, report.as_ref());
    }
    // RPCs are served from here on: their lvm runs at the driver's own priority.
    driver.lvm.set_niceness(None);
    Ok(driver)
}

/// How long start-up lets a command an earlier run left behind finish on its own (an lvm
/// command's commit, a luksFormat, an mkfs) before it kills it.
const ORPHAN_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// Nice levels start-up's lvm commands run below the driver (the RPCs' own run at its).
const STARTUP_NICENESS: i32 = 10;

/// Stops the commands an earlier run of this driver left running when it was killed, before
/// anything is read: a create it began must not commit after the reconcile looked (see
/// [`node_state::create_intents`]), a first luksFormat or mkfs must not write beside the
/// retry. One that cannot be stopped stops the start-up, loudly, rather than risk handing
/// out a half-made LV.
async fn stop_orphans(cfg: &Config) -> anyhow::Result<()> {
    let owner = cfg.runner_owner();
    let stopped = tokio::task::spawn_blocking(move || {
        vglet_runner::orphans::stop_orphans(
            &owner,
            ORPHAN_GRACE,
            std::time::Duration::from_secs(30),
        )
    })
    .await
    .context("stopping an earlier run's commands")?
    .context("an earlier run of this driver left commands running")?;
    for o in &stopped {
        match o.killed {
            true => {
                tracing::warn!(pid = o.pid, cmd = %o.argv, "killed a command an earlier run of this driver left running")
            }
            false => {
                tracing::warn!(pid = o.pid, cmd = %o.argv, "waited for a command an earlier run of this driver left running; it finished")
            }
        }
    }
    Ok(())
}

/// A shared VG whose lock type this lvm was not built with (idm on Debian's lvm2) could be
/// listed but never locked: refuse to start, saying so, rather than fail on every RPC.
async fn check_lock_type(lvm: &Lvm, vg: &str, lock_type: &str) -> anyhow::Result<()> {
    let supported = lvm
        .supported_lock_types()
        .await
        .context("cannot read lvm's build configuration")?;
    if supported.iter().any(|t| t.as_str() == lock_type) {
        return Ok(());
    }
    let names: Vec<&str> = supported.iter().map(|t| t.as_str()).collect();
    anyhow::bail!(
        "volume group {vg} uses lock type {lock_type}, which this lvm does not support (built with: {}); install an lvm2 built with --enable-lvmlockd-{lock_type}",
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    )
}

/// Serves until SIGTERM or SIGINT.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let metrics = Arc::new(metrics::Metrics::new());
    let runner = Arc::new(
        SystemRunner::with_observer(metrics.command_observer()).owned_by(cfg.runner_owner()),
    );
    run_with(cfg, runner, metrics, shutdown_signal()).await
}

/// [`run`] with the runner and the shutdown signal given.
///
/// The socket is served before start-up (lvm's version, the report, the reconcile) ends,
/// so that Probe answers within milliseconds of the process starting; see
/// [`service::server::serve_starting`]. A start-up that fails still fails the process: the server
/// stops, the socket is removed and the error is returned, as before serving existed. A
/// server that stayed up forever not ready would only hide the failure from the
/// operator behind a livenessprobe's restarts, which the error and exit do at once.
pub async fn run_with(
    cfg: Config,
    runner: Arc<dyn Runner>,
    metrics: Arc<metrics::Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let path = config::socket_path(&cfg.endpoint).map_err(anyhow::Error::msg)?;
    // What needs no lvm fails before anything is bound: the flags, then a missing program.
    cfg.validate().map_err(anyhow::Error::msg)?;
    let programs = host_needs::resolve_programs(&cfg)?;
    // Bound before serving CSI: a taken port must stop start-up, not lose metrics silently.
    let metrics_listener = match cfg.metrics_address {
        Some(addr) => Some(
            metrics::bind(addr)
                .await
                .with_context(|| format!("--metrics-address {addr}"))?,
        ),
        None => None,
    };
    let listener = service::server::bind(&path)?;
    let (startup, handle) = service::startup::Startup::new();
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(service::server::serve_starting(
        cfg.driver_name.clone(),
        cfg.mode,
        handle,
        metrics.clone(),
        listener,
        path,
        async move {
            tokio::select! {
                _ = shutdown => {}
                _ = server_stopped => {}
            }
        },
    ));
    let built = tokio::select! {
        built = build_driver_from(cfg, runner, programs) => built,
        // Shut down (or the server failed) before start-up ended: nothing was served but
        // Identity, nothing is left to finish.
        served = &mut server => {
            served.context("gRPC server task")??;
            tracing::info!("stopped during start-up");
            return Ok(());
        }
    };
    let driver = match built {
        Ok(d) => Arc::new(d),
        Err(e) => {
            startup.failed(&e);
            let _ = stop_server.send(());
            if let Ok(Err(serve_error)) = server.await {
                tracing::warn!(error = %serve_error, "gRPC server after failed start-up");
            }
            return Err(e);
        }
    };
    startup.ready(driver.clone());
    tracing::info!("start-up complete");
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(l) = metrics_listener {
        tokio::spawn(metrics::serve(l, metrics, driver, async {
            let _ = metrics_stopped.await;
        }));
    }
    let served = server.await.context("gRPC server task")?;
    let _ = stop_metrics.send(());
    served?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}
