//! vglet's CSI driver as a library: the binary only parses flags and calls [`run`].

pub mod capability;
pub mod capacity;
pub mod config;
pub mod controller;
pub mod driver;
pub mod identity;
pub mod inflight;
pub mod node;
pub mod params;
pub mod server;
pub mod status;
pub mod volume_id;

use std::sync::Arc;

use anyhow::Context;
use vglet_lvm::Lvm;
use vglet_mount::{Filesystems, SystemMounter};
use vglet_runner::{Runner, SystemRunner};

pub use config::{Config, Mode};

/// Builds the driver from its configuration: resolves lvm, checks it answers, narrows its
/// device scan to the served VGs' PVs.
pub async fn build_driver(cfg: Config) -> anyhow::Result<driver::Driver> {
    cfg.validate().map_err(anyhow::Error::msg)?;
    let runner: Arc<dyn Runner> = Arc::new(SystemRunner::new());
    let lvm_path = vglet_runner::resolve_program(&cfg.lvm.to_string_lossy())
        .with_context(|| format!("lvm binary {:?} not found", cfg.lvm))?;
    let lvm = Lvm::with_binary(runner.clone(), lvm_path);
    lvm.set_timeout(cfg.command_timeout);
    let version = lvm.version().await.context("lvm does not answer")?;
    tracing::info!(lvm = %version, "lvm found");
    if cfg.restrict_scan {
        match lvm.report(None).await {
            Ok(report) => {
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
                    tracing::info!(?devices, "lvm device scan restricted to the served PVs");
                    lvm.set_device_scope(devices);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list PVs; lvm keeps scanning all devices"),
        }
    }
    for vg in &cfg.volume_groups {
        if let Err(e) = lvm.vg(vg).await {
            tracing::warn!(vg = %vg, error = %e, "served volume group is not available (Probe will fail until it is)");
        }
    }
    Ok(driver::Driver {
        fs: Filesystems::new(runner.clone()),
        mounter: Arc::new(SystemMounter),
        inflight: Default::default(),
        vg_locks: Default::default(),
        lvm,
        cfg,
    })
}

/// Serves until SIGTERM or SIGINT.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let path = server::socket_path(&cfg.endpoint).map_err(anyhow::Error::msg)?;
    let driver = Arc::new(build_driver(cfg).await?);
    let listener = server::bind(&path)?;
    server::serve(driver, listener, path, shutdown_signal()).await?;
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
