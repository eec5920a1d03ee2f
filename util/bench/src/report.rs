//! What one run measured, as JSON and as the markdown table of docs/benchmarks.md.

use std::fmt::Write as _;

use serde::Serialize;

use crate::stats::{Summary, ratio};

#[derive(Debug, Serialize)]
pub struct Report {
    pub date: String,
    pub machine: Machine,
    pub config: Config,
    /// Spawn → first Probe answered ready (start-up's lvm reads and reconcile done).
    pub startup: Option<Summary>,
    /// Spawn → first Probe answered at all (ready or not): how soon the socket serves.
    pub probe_served: Option<Summary>,
    /// The floor of both: spawn → exit of `csi-driver --version`.
    pub process_start: Option<Summary>,
    pub memory: Memory,
    pub latency: Vec<Latency>,
    pub burst: Option<Burst>,
    pub stage: Vec<Stage>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    /// Where the guest ran (given by run.sh: host CPU, QEMU accelerator).
    pub environment: String,
    pub guest_cpu: String,
    pub guest_vcpus: usize,
    pub guest_mem_mib: u64,
    pub kernel: String,
    pub lvm: String,
    pub udev: bool,
    pub driver_build: String,
}

#[derive(Debug, Serialize)]
pub struct Config {
    pub cycles: usize,
    pub scale_cycles: usize,
    pub burst: usize,
    pub stage_reps: usize,
    pub volume_bytes: u64,
    pub stage_bytes: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Memory {
    pub idle_rss_kib: u64,
    pub after_burst_rss_kib: u64,
    pub peak_rss_kib: u64,
}

/// One create+delete latency scenario: each cycle of vglet beside a cycle of the floor.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub scenario: String,
    pub vglet_cycle: Option<Summary>,
    pub floor_cycle: Option<Summary>,
    pub vglet_create: Option<Summary>,
    pub floor_create: Option<Summary>,
    pub vglet_delete: Option<Summary>,
    pub floor_delete: Option<Summary>,
}

#[derive(Debug, Serialize)]
pub struct Burst {
    pub n: usize,
    pub vglet_create_s: f64,
    pub floor_create_s: f64,
    pub create_failures: usize,
    pub vglet_delete_s: f64,
    pub floor_delete_s: f64,
    pub delete_failures: usize,
}

#[derive(Debug, Serialize)]
pub struct Stage {
    pub fs: String,
    pub vglet: Option<Summary>,
    pub floor: Option<Summary>,
}

fn p50(s: &Option<Summary>) -> f64 {
    s.as_ref().map_or(f64::NAN, |s| s.p50_ms)
}

fn cell(s: &Option<Summary>) -> String {
    s.as_ref().map_or("–".into(), |s| {
        format!("{:.0} / {:.0} / {:.0}", s.p50_ms, s.p95_ms, s.p99_ms)
    })
}

/// `None`: a row with no target, shown for honesty beside one that has.
fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "missed",
        None => "–",
    }
}

impl Report {
    /// The headline rows: each target, its measured value and whether it is met (`None`
    /// when the row has no target).
    pub fn targets(&self) -> Vec<(String, String, String, Option<bool>)> {
        let mut rows = Vec::new();
        if let Some(l) = self.latency.first() {
            let r = ratio(p50(&l.vglet_cycle), p50(&l.floor_cycle));
            rows.push((
                "create+delete p50, vglet / bare lvcreate+lvremove".into(),
                "≤ 1.10".into(),
                format!("{r:.2}"),
                Some(r <= 1.10),
            ));
        }
        // The VG-size rows (not the one with unrelated devices): each within 1.2× its
        // floor, and the largest's ratio within 10 % of the first's (flat cost).
        let sized: Vec<(&str, f64)> = self
            .latency
            .iter()
            .skip(1)
            .filter(|l| !l.scenario.contains("unrelated"))
            .map(|l| {
                let r = ratio(p50(&l.vglet_cycle), p50(&l.floor_cycle));
                (l.scenario.as_str(), r)
            })
            .collect();
        for (name, r) in &sized {
            rows.push((
                format!("create+delete p50 with {name} in the VG, vglet / bare"),
                "≤ 1.20".into(),
                format!("{r:.2}"),
                Some(*r <= 1.2),
            ));
        }
        if let (Some((first, a)), Some((last, b))) = (sized.first(), sized.last())
            && sized.len() > 1
        {
            let drift = b / a;
            rows.push((
                format!("ratio at {last} / ratio at {first}"),
                "within 10 %".into(),
                format!("{drift:.2}"),
                Some((drift - 1.0).abs() <= 0.10),
            ));
        }
        if let Some(b) = &self.burst {
            let r = b.vglet_create_s / b.floor_create_s;
            rows.push((
                format!(
                    "burst of {} concurrent CreateVolume / {} sequential lvcreate",
                    b.n, b.n
                ),
                "≤ 1.20, 0 failures".into(),
                format!("{r:.2}, {} failures", b.create_failures),
                Some(r <= 1.2 && b.create_failures == 0),
            ));
            let r = b.vglet_delete_s / b.floor_delete_s;
            rows.push((
                format!(
                    "burst of {} concurrent DeleteVolume / {} sequential lvremove",
                    b.n, b.n
                ),
                "(no target)".into(),
                format!("{r:.2}, {} failures", b.delete_failures),
                Some(b.delete_failures == 0),
            ));
        }
        for s in &self.stage {
            let r = ratio(p50(&s.vglet), p50(&s.floor));
            rows.push((
                format!("NodeStage+NodePublish {} / mkfs+mount+bind", s.fs),
                "≤ 1.10".into(),
                format!("{r:.2}"),
                Some(r <= 1.10),
            ));
        }
        let mib = self.memory.idle_rss_kib as f64 / 1024.0;
        rows.push((
            "resident memory, idle".into(),
            "≤ 15 MiB".into(),
            format!("{mib:.1} MiB"),
            Some(mib <= 15.0),
        ));
        // The target is about the socket serving (kubelet and the sidecars Probe until
        // ready); how long start-up's reads take is shown beside it.
        // Against the bare process start of the same run, a fair floor under emulation.
        if let Some(s) = &self.probe_served {
            let (goal, ok, floor) = match &self.process_start {
                Some(f) => (
                    "≤ 1.5 × the process start",
                    s.p50_ms <= 1.5 * f.p50_ms,
                    format!(
                        " ({:.2} × the process start alone, {:.0} ms)",
                        s.p50_ms / f.p50_ms,
                        f.p50_ms
                    ),
                ),
                None => ("≤ 100 ms", s.p50_ms <= 100.0, String::new()),
            };
            rows.push((
                "start to a served Probe (p50)".into(),
                goal.into(),
                format!("{:.0} ms{floor}", s.p50_ms),
                Some(ok),
            ));
        }
        if let Some(s) = &self.startup {
            rows.push((
                "start to Probe ready (p50)".into(),
                "(no target)".into(),
                format!("{:.0} ms", s.p50_ms),
                None,
            ));
        }
        rows
    }

    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let c = &self.config;
        let mut s = String::new();
        let _ = writeln!(s, "## Run of {}\n", self.date);
        let _ = writeln!(
            s,
            "Environment: {}; guest: {} × {} vCPU, {} MiB, kernel {}, {}, udev {}; csi-driver {} build.\n",
            m.environment,
            m.guest_cpu,
            m.guest_vcpus,
            m.guest_mem_mib,
            m.kernel,
            m.lvm,
            if m.udev { "on" } else { "off" },
            m.driver_build
        );
        let _ = writeln!(s, "| target | goal | measured | |\n|---|---|---|---|");
        for (what, goal, got, ok) in self.targets() {
            let _ = writeln!(s, "| {what} | {goal} | {got} | {} |", verdict(ok));
        }
        let _ = writeln!(
            s,
            "\n### Create + delete latency (ms, p50 / p95 / p99; {} cycles, {} cycles in the scale rows; {} MiB volumes)\n",
            c.cycles,
            c.scale_cycles,
            c.volume_bytes >> 20
        );
        let _ = writeln!(
            s,
            "| VG state | vglet cycle | bare cycle | ratio p50 | vglet create | lvcreate | vglet delete | lvremove |\n|---|---|---|---|---|---|---|---|"
        );
        for l in &self.latency {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.2} | {} | {} | {} | {} |",
                l.scenario,
                cell(&l.vglet_cycle),
                cell(&l.floor_cycle),
                ratio(p50(&l.vglet_cycle), p50(&l.floor_cycle)),
                cell(&l.vglet_create),
                cell(&l.floor_create),
                cell(&l.vglet_delete),
                cell(&l.floor_delete)
            );
        }
        if let Some(b) = &self.burst {
            let _ = writeln!(
                s,
                "\n### Burst of {n}\n\n| | vglet, {n} concurrent | bare, {n} sequential | ratio | failures |\n|---|---|---|---|---|\n| create | {:.1} s | {:.1} s | {:.2} | {} |\n| delete | {:.1} s | {:.1} s | {:.2} | {} |",
                b.vglet_create_s,
                b.floor_create_s,
                b.vglet_create_s / b.floor_create_s,
                b.create_failures,
                b.vglet_delete_s,
                b.floor_delete_s,
                b.vglet_delete_s / b.floor_delete_s,
                b.delete_failures,
                n = b.n
            );
        }
        if !self.stage.is_empty() {
            let _ = writeln!(
                s,
                "\n### NodeStage + NodePublish of a fresh {} MiB volume (ms, p50 / p95 / p99; {} runs)\n\n| fs | vglet | mkfs + mount + bind | ratio p50 |\n|---|---|---|---|",
                c.stage_bytes >> 20,
                c.stage_reps
            );
            for st in &self.stage {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {:.2} |",
                    st.fs,
                    cell(&st.vglet),
                    cell(&st.floor),
                    ratio(p50(&st.vglet), p50(&st.floor))
                );
            }
        }
        let mem = &self.memory;
        let _ = writeln!(
            s,
            "\n### Memory and start-up\n\n| | |\n|---|---|\n| RSS idle | {:.1} MiB |\n| RSS after the burst | {:.1} MiB |\n| peak RSS | {:.1} MiB |\n| spawn → first Probe answered | {} |\n| spawn → Probe ready | {} |\n| spawn → exit of `csi-driver --version` (floor) | {} |",
            mem.idle_rss_kib as f64 / 1024.0,
            mem.after_burst_rss_kib as f64 / 1024.0,
            mem.peak_rss_kib as f64 / 1024.0,
            cell(&self.probe_served) + " ms",
            cell(&self.startup) + " ms",
            cell(&self.process_start) + " ms"
        );
        s
    }
}
