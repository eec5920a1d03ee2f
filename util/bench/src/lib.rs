//! vglet-bench: csi-driver's figures beside their floor (the bare commands), measured in one
//! run inside the VM. `util/bench/run.sh` boots the guest and writes docs/benchmarks.md.

pub mod csi;
pub mod floor;
pub mod populate;
pub mod report;
pub mod scenarios;
pub mod stats;
pub mod sysinfo;

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::csi::Clients;
use crate::report::{Config, Memory, Report};
use crate::scenarios::{Bench, settle};

/// What to measure and how much.
#[derive(Debug, Clone)]
pub struct Plan {
    pub devices: Vec<String>,
    pub vg: String,
    pub driver_bin: PathBuf,
    pub work: PathBuf,
    pub cycles: usize,
    pub scale_cycles: usize,
    pub burst: usize,
    pub stage_reps: usize,
    pub start_reps: usize,
    /// VG sizes of the scale rows, ascending; the unrelated devices join the first.
    pub scale_lvs: Vec<usize>,
    pub scale_devices: usize,
    pub volume_bytes: u64,
    pub stage_bytes: u64,
    pub environment: String,
    pub driver_log: String,
}

/// Makes the VG on the given (blank) devices, runs every scenario and returns the report.
pub async fn run(plan: &Plan) -> Result<Report> {
    std::fs::create_dir_all(&plan.work)?;
    // 5,000 LVs' metadata (about 2 MB of text) needs a larger metadata area than lvm's
    // default 1 MiB; vglet and the floor share the VG, so both pay for it alike.
    let mut args = vec!["-q", "-y", "--metadatasize", "16m", plan.vg.as_str()];
    args.extend(plan.devices.iter().map(String::as_str));
    floor::run("vgcreate", &args).context("creating the benchmark VG")?;
    let bench = Bench {
        vg: plan.vg.clone(),
        driver_bin: plan.driver_bin.clone(),
        work: plan.work.clone(),
        volume_bytes: plan.volume_bytes,
        driver_log: plan.driver_log.clone(),
    };

    let (startup, driver) = bench.start_driver(plan.start_reps).await?;
    eprintln!(
        "bench: start to Probe answered: {:?}; to Probe ready: {:?}; csi-driver --version: {:?}",
        startup.served, startup.ready, startup.process
    );
    let mut c = Clients::connect(&driver.socket).await?;
    settle().await;
    let mut memory = Memory {
        idle_rss_kib: driver.memory_kib()?.0,
        ..Default::default()
    };

    let mut latency = vec![bench.latency(&mut c, "empty VG", plan.cycles).await?];
    let burst = if plan.burst > 0 {
        let b = bench
            .burst(&c, plan.burst, || {
                if let Ok((rss, _)) = driver.memory_kib() {
                    memory.after_burst_rss_kib = rss;
                }
            })
            .await?;
        Some(b)
    } else {
        None
    };
    let mut stage = Vec::new();
    if plan.stage_reps > 0 {
        for fs in ["ext4", "xfs"] {
            stage.push(
                bench
                    .stage(&mut c, fs, plan.stage_reps, plan.stage_bytes)
                    .await?,
            );
        }
    }
    for (i, &lvs) in plan.scale_lvs.iter().enumerate() {
        if plan.scale_cycles == 0 || lvs == 0 {
            break;
        }
        populate::pop_lvs(&plan.vg, lvs, "lvm.vglet.io", &plan.work)?;
        let s = format!("{} LVs", thousands(lvs));
        latency.push(bench.latency(&mut c, &s, plan.scale_cycles).await?);
        if i == 0 && plan.scale_devices > 0 {
            let devs =
                populate::unrelated_devices(&plan.work.join("unrelated"), plan.scale_devices)?;
            let s = format!("{s} + {} unrelated devices", devs.len());
            latency.push(bench.latency(&mut c, &s, plan.scale_cycles).await?);
            for d in devs {
                let _ = floor::run("losetup", &["-d", &d.display().to_string()]);
            }
        }
    }
    memory.peak_rss_kib = driver.memory_kib()?.1;
    drop(driver);

    Ok(Report {
        date: sysinfo::now(),
        machine: sysinfo::machine(&plan.environment, &plan.driver_bin),
        config: Config {
            cycles: plan.cycles,
            scale_cycles: plan.scale_cycles,
            burst: plan.burst,
            stage_reps: plan.stage_reps,
            volume_bytes: plan.volume_bytes,
            stage_bytes: plan.stage_bytes,
        },
        startup: Some(startup.ready),
        probe_served: Some(startup.served),
        process_start: Some(startup.process),
        memory,
        latency,
        burst,
        stage,
    })
}

/// 5000 → "5,000", as the report writes counts.
fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
