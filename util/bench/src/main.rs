use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

/// Measures csi-driver against its floor, the bare commands it wraps, in one run:
/// CreateVolume+DeleteVolume latency vs lvcreate+lvremove, a burst of concurrent creates vs
/// sequential lvcreate, NodeStage+NodePublish vs mkfs+mount+bind, the same latency with a
/// thousand LVs and fifty unrelated block devices, memory and start-up time.
///
/// Runs as root on a machine with device-mapper, on blank devices it turns into a VG (it
/// destroys what is on them). Normally started by util/bench/run.sh inside the VM.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// Blank block devices for the benchmark VG (all data on them is lost).
    #[arg(long = "device", required_unless_present = "probe_only")]
    devices: Vec<String>,
    /// Only measure spawn → first Probe answered (`--start-reps` cold starts) and print
    /// it: needs no devices, no VG, no root and no guest, since Identity answers before
    /// the driver reads anything from lvm.
    #[arg(long)]
    probe_only: bool,
    /// Name of the VG to create.
    #[arg(long, default_value = "benchvg")]
    vg: String,
    /// The csi-driver binary (default: beside this one).
    #[arg(long)]
    driver: Option<PathBuf>,
    /// Scratch directory (socket, mount points, fixture images).
    #[arg(long, default_value = "/tmp/vglet-bench")]
    work: PathBuf,
    /// Create+delete cycles on the empty VG (each of vglet and of the floor).
    #[arg(long, default_value_t = 200)]
    cycles: usize,
    /// Cycles in each scale scenario (1,000 LVs; + unrelated devices); 0 skips them.
    #[arg(long, default_value_t = 50)]
    scale_cycles: usize,
    /// VG sizes (LVs) of the scale rows, ascending, comma-separated: the VG grows from one
    /// to the next. The first row is also run with the unrelated devices.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    scale_lvs: Vec<usize>,
    /// Unrelated loop devices in the second scale scenario.
    #[arg(long, default_value_t = 50)]
    scale_devices: usize,
    /// Volumes in the burst; 0 skips it.
    #[arg(long, default_value_t = 100)]
    burst: usize,
    /// NodeStage+NodePublish runs per filesystem; 0 skips them.
    #[arg(long, default_value_t = 5)]
    stage_reps: usize,
    /// Cold starts of the driver measured to a served Probe.
    #[arg(long, default_value_t = 5)]
    start_reps: usize,
    /// Volume size in the latency and burst scenarios, MiB.
    #[arg(long, default_value_t = 64)]
    volume_mib: u64,
    /// Volume size in the stage scenario, MiB.
    #[arg(long, default_value_t = 1024)]
    stage_mib: u64,
    /// Where the guest runs, for the report (run.sh fills it in).
    #[arg(long, env = "VGLET_BENCH_ENVIRONMENT", default_value = "unknown")]
    environment: String,
    /// csi-driver's log filter (`VGLET_LOG`); the log is written to WORK/driver.log.
    #[arg(long, default_value = "warn")]
    driver_log: String,
    /// Writes bench.json and bench.md here.
    #[arg(long, default_value = ".")]
    out: PathBuf,
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    let driver_bin = match a.driver {
        Some(d) => d,
        None => std::env::current_exe()?
            .parent()
            .context("binary directory")?
            .join("csi-driver"),
    };
    if a.probe_only {
        std::fs::create_dir_all(&a.work)?;
        let s =
            vglet_bench::scenarios::probe_served(&driver_bin, &a.work, &a.driver_log, a.start_reps)
                .await?;
        let floor = vglet_bench::scenarios::process_start(&driver_bin, a.start_reps)?;
        println!(
            "spawn → first Probe answered ({} starts): p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms; \
             spawn → exit of csi-driver --version: p50 {:.1} ms",
            a.start_reps.max(1),
            s.p50_ms,
            s.p95_ms,
            s.p99_ms,
            floor.p50_ms
        );
        return Ok(());
    }
    let plan = vglet_bench::Plan {
        devices: a.devices,
        vg: a.vg,
        driver_bin,
        work: a.work,
        cycles: a.cycles,
        scale_cycles: a.scale_cycles,
        burst: a.burst,
        stage_reps: a.stage_reps,
        start_reps: a.start_reps,
        scale_lvs: a.scale_lvs,
        scale_devices: a.scale_devices,
        volume_bytes: a.volume_mib << 20,
        stage_bytes: a.stage_mib << 20,
        environment: a.environment,
        driver_log: a.driver_log,
    };
    let report = vglet_bench::run(&plan).await?;
    std::fs::create_dir_all(&a.out)?;
    std::fs::write(
        a.out.join("bench.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let md = report.markdown();
    std::fs::write(a.out.join("bench.md"), &md)?;
    println!("{md}");
    Ok(())
}
