//! The measurements, each vglet figure beside its floor taken in the same run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use tokio::task::JoinSet;

use crate::csi::{Clients, DriverProcess};
use crate::floor;
use crate::report::{Burst, Latency, Stage};
use crate::stats::Summary;

/// Cold starts of the driver, from spawn.
#[derive(Debug, Clone)]
pub struct Startup {
    /// To the first Probe answered, ready or not.
    pub served: Summary,
    /// To the first Probe answered ready.
    pub ready: Summary,
    /// The floor: spawn to exit of `csi-driver --version`, the same binary loaded and run
    /// with nothing to serve.
    pub process: Summary,
}

/// Spawn → exit of `csi-driver --version`, `reps` times: what starting the process costs
/// on this machine before the driver does anything of its own.
pub fn process_start(driver_bin: &Path, reps: usize) -> Result<Summary> {
    let bin = driver_bin.display().to_string();
    let times = (0..reps.max(1))
        .map(|_| floor::run(&bin, &["--version"]))
        .collect::<Result<Vec<_>>>()?;
    Summary::of(&times).context("no start")
}

/// Spawn → first Probe answered, `reps` cold starts, with no VG and no guest needed: the
/// Identity service answers before the driver has read anything from lvm.
pub async fn probe_served(
    driver_bin: &Path,
    work: &Path,
    log: &str,
    reps: usize,
) -> Result<Summary> {
    let mut times = Vec::new();
    for _ in 0..reps.max(1) {
        let d =
            DriverProcess::start_until(driver_bin, "vglet-bench-none", work, log, false).await?;
        times.push(d.served_after);
    }
    Summary::of(&times).context("no start")
}

pub struct Bench {
    pub vg: String,
    pub driver_bin: PathBuf,
    pub work: PathBuf,
    pub volume_bytes: u64,
    /// csi-driver's tracing filter; its log goes to `work/driver.log`.
    pub driver_log: String,
}

fn progress(what: &str, i: usize, n: usize) {
    if (i + 1).is_multiple_of(25) || i + 1 == n {
        eprintln!("bench: {what}: {}/{n}", i + 1);
    }
}

impl Bench {
    /// Starts the driver `reps` times (each a cold process) and returns the spawn→Probe
    /// times and the last driver, left running.
    pub async fn start_driver(&self, reps: usize) -> Result<(Startup, DriverProcess)> {
        let (mut served, mut ready) = (Vec::new(), Vec::new());
        let mut last = None;
        for _ in 0..reps.max(1) {
            drop(last.take());
            let d = DriverProcess::start(&self.driver_bin, &self.vg, &self.work, &self.driver_log)
                .await?;
            served.push(d.served_after);
            ready.push(d.ready_after);
            last = Some(d);
        }
        let startup = Startup {
            served: Summary::of(&served).context("no start")?,
            ready: Summary::of(&ready).context("no start")?,
            process: process_start(&self.driver_bin, reps)?,
        };
        Ok((startup, last.unwrap()))
    }

    /// `cycles` rounds of (bare lvcreate + lvremove) and (CreateVolume + DeleteVolume),
    /// interleaved so that drift of the machine hits both alike.
    pub async fn latency(&self, c: &mut Clients, scenario: &str, cycles: usize) -> Result<Latency> {
        let (mut vc, mut fc, mut vcr, mut fcr, mut vd, mut fd) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let tag: String = scenario
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(8)
            .collect();
        for i in 0..cycles {
            let name = format!("fl-{tag}-{i}");
            let cr = floor::lvcreate(&self.vg, &name, self.volume_bytes)?;
            let rm = floor::lvremove(&self.vg, &name)?;
            fcr.push(cr);
            fd.push(rm);
            fc.push(cr + rm);

            let name = format!("lat-{tag}-{i}");
            let t = Instant::now();
            let id = c
                .create(&name, &self.vg, self.volume_bytes as i64, "ext4")
                .await?;
            let cr = t.elapsed();
            let t = Instant::now();
            c.delete(&id).await?;
            let rm = t.elapsed();
            vcr.push(cr);
            vd.push(rm);
            vc.push(cr + rm);
            progress(scenario, i, cycles);
        }
        Ok(Latency {
            scenario: scenario.into(),
            vglet_cycle: Summary::of(&vc),
            floor_cycle: Summary::of(&fc),
            vglet_create: Summary::of(&vcr),
            floor_create: Summary::of(&fcr),
            vglet_delete: Summary::of(&vd),
            floor_delete: Summary::of(&fd),
        })
    }

    /// `n` CreateVolume at once (a StatefulSet scaling up) against `n` sequential lvcreate,
    /// then the same for deletion. `after_create` is called while the volumes exist.
    pub async fn burst(
        &self,
        c: &Clients,
        n: usize,
        mut after_create: impl FnMut(),
    ) -> Result<Burst> {
        let names: Vec<String> = (0..n).map(|i| format!("burst-{i}")).collect();
        let t = Instant::now();
        for (i, name) in names.iter().enumerate() {
            floor::lvcreate(&self.vg, &format!("fl-{name}"), self.volume_bytes)?;
            progress("burst floor lvcreate", i, n);
        }
        let floor_create = t.elapsed();
        let t = Instant::now();
        for (i, name) in names.iter().enumerate() {
            floor::lvremove(&self.vg, &format!("fl-{name}"))?;
            progress("burst floor lvremove", i, n);
        }
        let floor_delete = t.elapsed();

        let mut set = JoinSet::new();
        let t = Instant::now();
        for name in &names {
            let (mut c, name, vg, bytes) =
                (c.clone(), name.clone(), self.vg.clone(), self.volume_bytes);
            set.spawn(async move { c.create(&name, &vg, bytes as i64, "ext4").await });
        }
        let mut ids = Vec::new();
        let mut create_failures = 0;
        while let Some(r) = set.join_next().await {
            match r? {
                Ok(id) => ids.push(id),
                Err(e) => {
                    eprintln!("bench: burst create failed: {e:#}");
                    create_failures += 1
                }
            }
        }
        let vglet_create = t.elapsed();
        eprintln!("bench: burst of {n} creates done in {vglet_create:?}");
        after_create();
        let t = Instant::now();
        for id in &ids {
            let (mut c, id) = (c.clone(), id.clone());
            set.spawn(async move { c.delete(&id).await.map(|_| id) });
        }
        let mut delete_failures = 0;
        while let Some(r) = set.join_next().await {
            if let Err(e) = r? {
                eprintln!("bench: burst delete failed: {e:#}");
                delete_failures += 1;
            }
        }
        let vglet_delete = t.elapsed();
        eprintln!("bench: burst of {n} deletes done in {vglet_delete:?}");
        Ok(Burst {
            n,
            vglet_create_s: vglet_create.as_secs_f64(),
            floor_create_s: floor_create.as_secs_f64(),
            create_failures,
            vglet_delete_s: vglet_delete.as_secs_f64(),
            floor_delete_s: floor_delete.as_secs_f64(),
            delete_failures,
        })
    }

    /// NodeStage + NodePublish of a fresh volume against mkfs + mount + bind mount of a
    /// fresh LV; creation and teardown are not timed.
    pub async fn stage(&self, c: &mut Clients, fs: &str, reps: usize, bytes: u64) -> Result<Stage> {
        let (mut vt, mut ft) = (vec![], vec![]);
        let staging = self.work.join("staging");
        let target = self.work.join("pod").join("volume");
        std::fs::create_dir_all(&staging)?;
        std::fs::create_dir_all(target.parent().context("parent")?)?;
        for i in 0..reps {
            let name = format!("fl-stage-{fs}-{i}");
            floor::lvcreate(&self.vg, &name, bytes)?;
            std::fs::create_dir_all(&target)?;
            let dev = Path::new("/dev").join(&self.vg).join(&name);
            let t = Instant::now();
            floor::mkfs(fs, &dev)?;
            floor::mount(&dev, &staging, fs)?;
            floor::bind(&staging, &target)?;
            ft.push(t.elapsed());
            floor::umount(&target)?;
            floor::umount(&staging)?;
            std::fs::remove_dir(&target)?;
            floor::lvremove(&self.vg, &name)?;

            let vol = c
                .create_volume(&format!("stage-{fs}-{i}"), &self.vg, bytes as i64, fs)
                .await?;
            let id = vol.volume_id;
            let t = Instant::now();
            c.stage(&id, &staging, fs, &vol.volume_context).await?;
            c.publish(&id, &staging, &target, fs).await?;
            vt.push(t.elapsed());
            ensure!(
                vglet_mount::is_mount_point(&target)?,
                "NodePublishVolume returned but {} is not a mount point",
                target.display()
            );
            c.unpublish(&id, &target).await?;
            c.unstage(&id, &staging).await?;
            c.delete(&id).await?;
            progress(&format!("stage {fs}"), i, reps);
        }
        Ok(Stage {
            fs: fs.into(),
            vglet: Summary::of(&vt),
            floor: Summary::of(&ft),
        })
    }
}

/// Settles before an idle measurement: the runtime's worker threads park, start-up buffers
/// are freed.
pub async fn settle() {
    tokio::time::sleep(Duration::from_secs(3)).await;
}
