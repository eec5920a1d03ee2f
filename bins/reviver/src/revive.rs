//! One pass over the node's records: VGs, lockspaces, activation, staging mounts, publish
//! bind mounts, in that order, each only when missing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use vglet_lvm::tags::Claim;
use vglet_lvm::{Lv, Lvm, LvmError, Vg};
use vglet_mount::{CheckOutcome, Create, Filesystems, Kind, MountError, MountProof, Mounter};
use vglet_state::{Record, StateError, StateStore};
use vglet_volume::host::NodeHost;
use vglet_volume::{VolumeNode, options};

use crate::report::{Outcome, Report, VolumeReport};

#[derive(Debug)]
pub struct Reviver {
    pub lvm: Lvm,
    pub fs: Filesystems,
    pub mounter: Arc<dyn Mounter>,
    pub store: StateStore,
    /// How long to wait for a volume's lock (the node service may be mid-RPC on it).
    pub lock_wait: Duration,
    /// The node's read side (the kernel; a fake in tests).
    pub host: Arc<dyn NodeHost>,
}

/// A VG as this pass found it: its LVs, or why it cannot be used.
type VgState = Result<(Vg, Vec<Lv>), String>;

/// Why a volume was not restored; the message goes into the report as is.
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

/// Why an encrypted volume is not revived (its report's reason).
const NEEDS_KEY: &str =
    "encrypted: needs its key, which only kubelet's NodeStageVolume brings; left to kubelet";

fn is_shared(vg: &Vg) -> bool {
    !matches!(vg.lock_type.as_str(), "" | "none")
}

impl Reviver {
    /// The node-volume library over the reviver's host, mounter, tools and records.
    fn vol(&self) -> VolumeNode<'_> {
        VolumeNode {
            host: self.host.as_ref(),
            mounter: self.mounter.as_ref(),
            fs: &self.fs,
            lvm: &self.lvm,
            store: Some(&self.store),
        }
    }

    /// One pass. `wait` bounds the wait for the VGs; `progress` draws a bar on a terminal.
    /// Only an unreadable state directory is an error; everything else is in the report.
    pub async fn pass(
        &self,
        wanted_vgs: &[String],
        wait: Duration,
        progress: bool,
    ) -> Result<Report, StateError> {
        let (records, bad) = self.store.list()?;
        let mut report = Report::default();
        for b in bad {
            let name = b
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let id = name
                .strip_suffix(vglet_state::RECORD_SUFFIX)
                .and_then(vglet_state::decode_file_name)
                .unwrap_or_else(|| b.path.display().to_string());
            tracing::error!(record = %b.path.display(), reason = %b.reason, "unreadable state record skipped");
            report.push(VolumeReport::failed(
                id,
                format!(
                    "state record {} is unreadable ({}); skipped, nothing done",
                    b.path.display(),
                    b.reason
                ),
            ));
        }
        let mut vg_names: BTreeSet<String> = wanted_vgs.iter().cloned().collect();
        vg_names.extend(records.iter().map(|r| r.vg.clone()));
        let vgs = self.prepare_vgs(&vg_names, wait).await;
        for name in wanted_vgs {
            if let Some(Err(reason)) = vgs.get(name) {
                report.missing_vgs.push(format!(
                    "{reason} (awaited with --volume-group, waited {})",
                    vglet_common::duration::format_duration(wait)
                ));
            }
        }

        let bar = if progress && !records.is_empty() {
            let bar = ProgressBar::new(records.len() as u64);
            if let Ok(style) =
                ProgressStyle::with_template("{bar:30} {pos}/{len} volumes  {wide_msg}")
            {
                bar.set_style(style);
            }
            bar
        } else {
            ProgressBar::hidden()
        };
        // Log lines of the passes are written around the bar, never into it.
        let logs = (!bar.is_hidden()).then(|| vglet_common::logging::LogsAround::bar(&bar));
        for record in &records {
            bar.set_message(record.volume_id.clone());
            let v = self.revive_locked(record, &vgs).await;
            report.push(v);
            bar.inc(1);
        }
        bar.finish_and_clear();
        drop(logs);
        Ok(report)
    }

    /// Waits (bounded) until every VG is visible, then starts the lockspaces of shared ones
    /// and reads their LVs.
    async fn prepare_vgs(
        &self,
        names: &BTreeSet<String>,
        wait: Duration,
    ) -> BTreeMap<String, VgState> {
        use tracing::instrument::WithSubscriber;
        let deadline = Instant::now() + wait;
        let mut found: BTreeMap<String, VgState> = BTreeMap::new();
        let mut logged: Option<Vec<String>> = None;
        loop {
            for name in names {
                if matches!(found.get(name), Some(Ok(_))) {
                    continue;
                }
                // Polled every second while waiting: the runner's line for each failed lvm
                // command (its whole argv) would repeat every time, so the poll is muted and
                // the wait logs one line per change of what is missing, with lvm's reason.
                let vg = self
                    .lvm
                    .vg(name)
                    .with_subscriber(tracing::subscriber::NoSubscriber::default())
                    .await;
                let state = match vg {
                    Ok(vg) => Ok((vg, Vec::new())),
                    Err(e) => Err(format!("volume group {name}: {e}")),
                };
                found.insert(name.clone(), state);
            }
            let missing: Vec<String> = found
                .iter()
                .filter(|(_, s)| s.is_err())
                .map(|(n, _)| n.clone())
                .collect();
            let reasons = || {
                found
                    .values()
                    .filter_map(|s| s.as_ref().err().cloned())
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            if missing.is_empty() || Instant::now() >= deadline {
                if !missing.is_empty() {
                    tracing::warn!(
                        missing = %missing.join(","),
                        waited = %vglet_common::duration::format_duration(wait),
                        reason = %reasons(),
                        "volume groups did not appear"
                    );
                } else if logged.is_some() {
                    tracing::info!("all volume groups are there");
                }
                break;
            }
            if logged.as_ref() != Some(&missing) {
                tracing::info!(missing = %missing.join(","), reason = %reasons(), "waiting for volume groups");
                logged = Some(missing);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let started = if found
            .values()
            .any(|s| matches!(s, Ok((vg, _)) if is_shared(vg)))
        {
            self.lvm
                .started_lockspaces()
                .await
                .map_err(|e| e.to_string())
        } else {
            Ok(Vec::new())
        };
        for (name, state) in found.iter_mut() {
            let Ok((vg, _)) = state else { continue };
            if is_shared(vg) {
                let ready = match &started {
                    Ok(list) if list.contains(name) => Ok(()),
                    Ok(_) => {
                        tracing::info!(vg = %name, "starting the lockspace");
                        self.lvm
                            .lockstart_vg(name, vglet_lvm::LOCK_START_BOUND)
                            .await
                            .map_err(|e| format!("starting the lockspace of {name}: {e}"))
                    }
                    Err(e) => Err(format!("shared volume group {name}: {e}")),
                };
                if let Err(e) = ready {
                    *state = Err(e);
                    continue;
                }
            }
            *state = match self.lvm.lvs(name).await {
                Ok(lvs) => Ok((vg.clone(), lvs)),
                Err(e) => Err(format!("listing the LVs of {name}: {e}")),
            };
        }
        found
    }

    async fn revive_locked(
        &self,
        record: &Record,
        vgs: &BTreeMap<String, VgState>,
    ) -> VolumeReport {
        let id = record.volume_id.clone();
        // The node service holds the same lock during its RPCs: whatever it is doing to this
        // volume finishes first, and the record is read again afterwards.
        let _lock = match self.store.lock(&id, self.lock_wait) {
            Ok(l) => l,
            Err(e) => return VolumeReport::failed(id, e.to_string()),
        };
        let record = match self.store.get(&id) {
            Ok(Some(r)) => r,
            Ok(None) => {
                let mut v = VolumeReport::new(id);
                v.outcome = Outcome::Removed;
                v.reason = Some("unstaged by the node service meanwhile".into());
                return v;
            }
            Err(e) => return VolumeReport::failed(id, e.to_string()),
        };
        let mut v = VolumeReport::new(id);
        match self.revive(&record, vgs, &mut v.actions).await {
            Ok(Some(why)) if record.crypt_mapping.is_some() && why == NEEDS_KEY => {
                v.outcome = Outcome::NeedsKey;
                v.reason = Some(why);
            }
            Ok(Some(removed)) => {
                v.outcome = Outcome::Removed;
                v.reason = Some(removed);
            }
            Ok(None) if v.actions.is_empty() => v.outcome = Outcome::AlreadyFine,
            Ok(None) => v.outcome = Outcome::Restored,
            Err(Failure(reason)) => {
                v.outcome = Outcome::Failed;
                v.reason = Some(reason);
            }
        }
        v
    }

    /// `Ok(Some(why))` when the record was removed because its LV is gone, or
    /// [`NEEDS_KEY`] for an encrypted volume, left alone.
    async fn revive(
        &self,
        record: &Record,
        vgs: &BTreeMap<String, VgState>,
        actions: &mut Vec<String>,
    ) -> Result<Option<String>, Failure> {
        let (vg, lvs) = match vgs.get(&record.vg) {
            Some(Ok(state)) => state,
            Some(Err(e)) => return Err(Failure(e.clone())),
            None => return Err(Failure(format!("volume group {} not checked", record.vg))),
        };
        let lv = lvs.iter().find(|l| l.name == record.lv);
        let lv = match lv {
            Some(lv) if record.lv_uuid.is_empty() || lv.uuid == record.lv_uuid => lv,
            other => {
                // The VG was read successfully and the LV is not in it (or another LV took
                // its name): the volume was deleted. Its record can only mislead now.
                let why = match other {
                    Some(lv) => format!(
                        "LV {} was re-created (uuid {} instead of {}); stale record removed",
                        record.volume_id, lv.uuid, record.lv_uuid
                    ),
                    None => format!(
                        "LV {} no longer exists; its record was removed",
                        record.volume_id
                    ),
                };
                tracing::warn!(volume = %record.volume_id, "{why}");
                self.store.remove(&record.volume_id)?;
                return Ok(Some(why));
            }
        };
        // A static volume (adopted) comes back like a created one, for as long as it keeps
        // the adopt tag: withdrawing it withdraws the permission to mount it again.
        match vglet_lvm::tags::claim(&lv.tags, &record.driver) {
            Claim::Created(_) | Claim::Adopted { .. } => {}
            Claim::Foreign | Claim::NotAdopted => {
                return Err(Failure(format!(
                    "LV {} carries neither the ownership nor the adopt tag of {}; not touched",
                    record.volume_id, record.driver
                )));
            }
        }
        // The key was never stored here, so an encrypted volume cannot be opened now.
        // Nothing is activated, opened or mounted (mounting the LV would mount its
        // ciphertext); kubelet calls NodeStageVolume again, with the key, before the pod runs.
        if record.crypt_mapping.is_some() {
            tracing::info!(volume = %record.volume_id, "encrypted; {NEEDS_KEY}");
            return Ok(Some(NEEDS_KEY.to_string()));
        }
        if !lv.active {
            // The mode the node service chose at stage (`vglet_volume::activation_for`).
            let mode = record.activation;
            self.lvm
                .activate_lv(&record.vg, &record.lv, mode)
                .await
                .map_err(|e| match e {
                    LvmError::Locked(m) => {
                        Failure(format!("activation refused, held by another host: {m}"))
                    }
                    e => Failure(format!("activating: {e}")),
                })?;
            actions.push(format!("activated ({mode:?})").to_lowercase());
        }
        let dev = vglet_volume::lv_device_path(&record.vg, &record.lv, &lv.path);
        wait_for_device(self.host.as_ref(), &dev).await;
        let dev_numbers = self
            .host
            .device_numbers(&dev)
            .ok_or_else(|| Failure(format!("device {} is not there", dev.display())))?;
        let source = match record.fs_type() {
            Some(fs) => {
                // As at NodeStage: the VG's tags say whether the mount gets DAX.
                let fsdax = options::is_fsdax_vg(&vg.tags);
                self.stage(record, fs, &dev, dev_numbers, fsdax, actions)
                    .await?;
                record.staging_path.clone()
            }
            None => dev.clone(),
        };
        let mut dropped = Vec::new();
        let mut failures = Vec::new();
        for t in &record.targets {
            match self.publish(record, &source, dev_numbers, t, actions) {
                Ok(true) => {}
                Ok(false) => dropped.push(t.path.clone()),
                Err(Failure(e)) => failures.push(e),
            }
        }
        if !dropped.is_empty() {
            let mut r = record.clone();
            for p in &dropped {
                r.remove_target(p);
            }
            self.store.put(&r)?;
        }
        if failures.is_empty() {
            Ok(None)
        } else {
            Err(Failure(failures.join("; ")))
        }
    }

    /// The staging mount of a filesystem volume.
    async fn stage(
        &self,
        record: &Record,
        fs: &str,
        dev: &Path,
        dev_numbers: (u64, u64),
        fsdax: bool,
        actions: &mut Vec<String>,
    ) -> Result<(), Failure> {
        // Resolved (and created) without following a symlink anywhere, as NodeStage did;
        // the mount goes onto what was resolved.
        let staging = vglet_mount::resolve(&record.staging_path, Create::Dir)?;
        let shown = staging.path().display().to_string();
        let vol = self.vol();
        match vol.proof_at(&staging, Some(dev_numbers), false)? {
            MountProof::Ours => {
                let m = self.host.mount_at(staging.path())?;
                if options::dax_as_needed(m.as_ref(), fsdax).is_err() {
                    return Err(Failure(format!(
                        "staging path {shown} is mounted without DAX, but the volume is on fsdax persistent memory"
                    )));
                }
                return Ok(());
            }
            MountProof::Foreign => {
                let m = self.host.mount_at(staging.path())?;
                return Err(Failure(format!(
                    "staging path {shown} has another device mounted ({})",
                    m.as_ref().and_then(|m| m.source.as_deref()).unwrap_or("?")
                )));
            }
            MountProof::NotMounted => {}
        }
        let in_use = !self.host.mounts_of_device(dev_numbers)?.is_empty();
        // ext4 records in its superblock whether it needs a check (unclean journal, errors,
        // mount count); fsck -p acts only then. xfs replays its log at mount and has no
        // such flag, so it is checked only when the mount fails. A filesystem mounted
        // elsewhere (a bind target left behind) must not be checked at all.
        if fs == "ext4" && !in_use {
            match self.fs.check(fs, dev).await? {
                CheckOutcome::Clean | CheckOutcome::NeedsLogReplay => {}
                CheckOutcome::Repaired => {
                    actions.push("fsck -p fixed the filesystem (journal replay or repairs)".into())
                }
                CheckOutcome::Corrupt { detail } => {
                    return Err(Failure(format!(
                        "fsck found errors it cannot repair automatically; not mounted: {detail}"
                    )));
                }
            }
        }
        let flags = match &record.access {
            vglet_state::Access::Mount { mount_flags, .. } => mount_flags.as_slice(),
            vglet_state::Access::Block => &[],
        };
        let opts = options::staging_mount_options(flags, record.read_only, fs, fsdax)?;
        if let Err(e) = self.mounter.mount(dev, &staging.proc_path(), fs, &opts) {
            let mut why = format!("mounting {} at {shown}: {e}", dev.display());
            if fs == "xfs"
                && !in_use
                && let Ok(CheckOutcome::Corrupt { detail }) = self.fs.check(fs, dev).await
            {
                why.push_str(&format!("; xfs_repair -n: {detail}"));
            }
            return Err(Failure(why));
        }
        vol.require_dax(&record.volume_id, &staging, dev_numbers, fsdax)?;
        actions.push(if fsdax {
            format!("mounted {shown} with DAX")
        } else {
            format!("mounted {shown}")
        });
        Ok(())
    }

    /// One publish bind mount. `Ok(false)`: its directory is gone (the pod was deleted while
    /// the node was down), so it is dropped from the record instead of recreated.
    fn publish(
        &self,
        record: &Record,
        source: &Path,
        dev_numbers: (u64, u64),
        t: &vglet_state::Target,
        actions: &mut Vec<String>,
    ) -> Result<bool, Failure> {
        let target = &t.path;
        let block = record.is_block();
        // A target whose directory is gone (the pod was deleted while the node was down)
        // is dropped; one reached only through a symlink is refused, never followed.
        let parent = match target.parent() {
            Some(p) => vglet_mount::resolve(p, Create::Nothing).map(Some),
            None => Ok(None),
        };
        let parent_is_dir = match parent {
            Ok(Some(p)) => self.host.identity(&p)?.kind == Kind::Dir,
            Ok(None) | Err(MountError::NotFound { .. }) => false,
            Err(e) => return Err(e.into()),
        };
        if !parent_is_dir {
            actions.push(format!(
                "dropped target {} (its directory is gone)",
                target.display()
            ));
            return Ok(false);
        }
        let create = if block { Create::File } else { Create::Dir };
        let at = vglet_mount::resolve(target, create)?;
        let vol = self.vol();
        match vol.proof_at(&at, Some(dev_numbers), block)? {
            MountProof::Ours => return Ok(true),
            MountProof::Foreign => {
                return Err(Failure(format!(
                    "target {} has something else mounted",
                    target.display()
                )));
            }
            MountProof::NotMounted => {}
        }
        vol.bind_onto(
            &record.volume_id,
            block,
            source,
            dev_numbers,
            &at,
            t.read_only,
        )?;
        actions.push(format!("bound {}", target.display()));
        Ok(true)
    }
}

/// Without udev the node appears with activation; with udev it may lag a moment.
async fn wait_for_device(host: &dyn NodeHost, dev: &Path) {
    let start = Instant::now();
    while host.device_numbers(dev).is_none() && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use vglet_mount::RecordingMounter;
    use vglet_runner::{FakeRunner, Reply};
    use vglet_state::{Access, Target};

    use super::*;

    const ONE_VG: &str = include_str!("../../../shared/lvm/tests/fixtures/fullreport_one_vg.json");

    fn reviver(dir: &Path) -> (Reviver, FakeRunner, Arc<RecordingMounter>) {
        let (r, runner, mounter, _) = reviver_on(dir, vglet_volume::FakeHost::new(), false);
        (r, runner, mounter)
    }

    /// A reviver over `host`; with `host_mounts` the host is the mounter as well.
    fn reviver_on(
        dir: &Path,
        host: vglet_volume::FakeHost,
        host_mounts: bool,
    ) -> (
        Reviver,
        FakeRunner,
        Arc<RecordingMounter>,
        vglet_volume::FakeHost,
    ) {
        let runner = FakeRunner::with(|c| {
            let argv = c.arg_strings();
            match argv[0].as_str() {
                "fullreport" if argv.iter().any(|a| a == "nosuch") => Reply::fail(
                    5,
                    "  Volume group \"nosuch\" not found\n  Cannot process volume group nosuch\n",
                ),
                "fullreport" => Reply::ok(ONE_VG),
                _ => Reply::ok(""),
            }
        });
        let runner_arc: Arc<dyn vglet_runner::Runner> = Arc::new(runner.clone());
        let mounter = Arc::new(RecordingMounter::new());
        let r = Reviver {
            lvm: Lvm::with_binary(runner_arc.clone(), "/sbin/lvm".into()),
            fs: Filesystems::new(runner_arc, vglet_runner::Programs::all_in("/sbin")),
            mounter: if host_mounts {
                Arc::new(host.clone())
            } else {
                mounter.clone()
            },
            store: StateStore::open(dir).unwrap(),
            lock_wait: Duration::from_millis(200),
            host: Arc::new(host.clone()),
        };
        (r, runner, mounter, host)
    }

    fn record(vg: &str, lv: &str, uuid: &str) -> Record {
        Record {
            version: vglet_state::RECORD_VERSION,
            volume_id: format!("{vg}/{lv}"),
            vg: vg.into(),
            lv: lv.into(),
            lv_uuid: uuid.into(),
            driver: "lvm.vglet.io".into(),
            access: Access::Mount {
                fs_type: "ext4".into(),
                mount_flags: vec![],
            },
            read_only: false,
            activation: vglet_state::Activation::Local,
            staging_path: "/nonexistent/staging".into(),
            targets: vec![Target {
                path: "/nonexistent/target".into(),
                read_only: false,
            }],
            crypt_mapping: None,
        }
    }

    /// The reviver has no key: an encrypted volume's record is reported and kept, and
    /// nothing is activated, opened or mounted for it (not even the LV's ciphertext).
    #[tokio::test]
    async fn an_encrypted_volume_is_left_to_kubelet() {
        let d = tempfile::tempdir().unwrap();
        let (r, runner, mounter) = reviver(d.path());
        let mut rec = record(
            "vgletx",
            "csi-pvc-1",
            "7VQg9j-boUs-LlJL-ck0B-xD2S-fFrX-PfylpR",
        );
        rec.crypt_mapping = Some("vglet-crypt-vgletx-csi--pvc--1".into());
        r.store.put(&rec).unwrap();
        let report = r.pass(&[], Duration::ZERO, false).await.unwrap();
        let v = &report.volumes[0];
        assert_eq!(v.outcome, Outcome::NeedsKey, "{report:#?}");
        assert!(v.reason.as_deref().unwrap().contains("kubelet"), "{v:?}");
        assert!(v.actions.is_empty(), "{v:?}");
        assert!(!report.any_failed());
        assert_eq!(report.summary.needs_key, 1);
        assert!(report.text().contains("1 encrypted left to kubelet"));
        assert!(r.store.get("vgletx/csi-pvc-1").unwrap().is_some());
        assert!(mounter.calls().is_empty(), "{:?}", mounter.calls());
        let lines = runner.call_lines();
        assert!(
            lines
                .iter()
                .all(|l| !l.contains("lvchange") && !l.contains("cryptsetup")),
            "{lines:?}"
        );
    }

    #[tokio::test]
    async fn gone_lvs_drop_their_records_and_nothing_else_is_touched() {
        let d = tempfile::tempdir().unwrap();
        let (r, runner, mounter) = reviver(d.path());
        r.store.put(&record("vgletx", "csi-gone", "u")).unwrap();
        // Same name, another uuid: the recorded volume was deleted and a new one created.
        r.store
            .put(&record("vgletx", "csi-pvc-1", "old-uuid"))
            .unwrap();
        // No ownership tag: never touched, record kept.
        r.store
            .put(&record(
                "vgletx",
                "other",
                "xMNYIv-GCrQ-6hE6-gx1d-DlnH-BX33-8em5mE",
            ))
            .unwrap();
        // The VG is missing: failed, record kept (it may come back).
        r.store.put(&record("nosuch", "lv", "u")).unwrap();
        let truncated = r.store.path_of("vgletx/csi-cut").unwrap();
        std::fs::write(&truncated, b"{\"version\": 1, \"volume_id\": \"vg").unwrap();

        let report = r.pass(&[], Duration::ZERO, false).await.unwrap();
        let outcome = |id: &str| {
            report
                .volumes
                .iter()
                .find(|v| v.volume_id == id)
                .unwrap_or_else(|| panic!("{id} missing from {report:#?}"))
                .clone()
        };
        assert_eq!(outcome("vgletx/csi-gone").outcome, Outcome::Removed);
        let recreated = outcome("vgletx/csi-pvc-1");
        assert_eq!(recreated.outcome, Outcome::Removed);
        assert!(recreated.reason.unwrap().contains("re-created"));
        let foreign = outcome("vgletx/other");
        assert_eq!(foreign.outcome, Outcome::Failed);
        assert!(foreign.reason.unwrap().contains("ownership"));
        let missing = outcome("nosuch/lv");
        assert_eq!(missing.outcome, Outcome::Failed);
        assert!(missing.reason.unwrap().contains("nosuch"), "{report:#?}");
        let cut = outcome("vgletx/csi-cut");
        assert_eq!(cut.outcome, Outcome::Failed);
        assert!(cut.reason.unwrap().contains("unreadable"));
        assert!(report.any_failed());
        assert_eq!(report.summary.removed, 2);
        assert_eq!(report.summary.failed, 3);

        assert!(r.store.get("vgletx/csi-gone").unwrap().is_none());
        assert!(r.store.get("vgletx/csi-pvc-1").unwrap().is_none());
        assert!(r.store.get("vgletx/other").unwrap().is_some());
        assert!(r.store.get("nosuch/lv").unwrap().is_some());
        assert!(truncated.exists(), "a damaged record is never deleted");
        // Only reads: no activation, no removal, no mount.
        assert!(
            runner
                .call_lines()
                .iter()
                .all(|l| l.starts_with("lvm fullreport")),
            "{:?}",
            runner.call_lines()
        );
        assert!(mounter.calls().is_empty());
    }

    #[tokio::test]
    async fn a_volume_locked_by_the_node_service_is_reported_busy() {
        let d = tempfile::tempdir().unwrap();
        let (r, _, _) = reviver(d.path());
        r.store.put(&record("vgletx", "csi-gone", "u")).unwrap();
        let _held = r.store.try_lock("vgletx/csi-gone").unwrap();
        let report = r.pass(&[], Duration::ZERO, false).await.unwrap();
        assert_eq!(report.volumes[0].outcome, Outcome::Failed);
        assert!(
            report.volumes[0]
                .reason
                .as_ref()
                .unwrap()
                .contains("locked")
        );
        assert!(r.store.get("vgletx/csi-gone").unwrap().is_some());
    }

    #[tokio::test]
    async fn a_volume_comes_back_on_resolved_paths_and_a_symlinked_target_is_refused() {
        const UUID: &str = "7VQg9j-boUs-LlJL-ck0B-xD2S-fFrX-PfylpR";
        let d = tempfile::tempdir().unwrap();
        let host = vglet_volume::FakeHost::new();
        host.add_device(Path::new("/dev/vgletx/csi-pvc-1"), (253, 7), None);
        let (r, runner, _, host) = reviver_on(&d.path().join("state"), host, true);
        let (staging, pod, elsewhere) = (
            d.path().join("staging/pvc-1"),
            d.path().join("pods/a/vol"),
            d.path().join("elsewhere"),
        );
        std::fs::create_dir_all(pod.parent().unwrap()).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, d.path().join("pods/link")).unwrap();
        let mut rec = record("vgletx", "csi-pvc-1", UUID);
        rec.staging_path = staging.clone();
        rec.targets = vec![
            Target {
                path: pod.clone(),
                read_only: true,
            },
            Target {
                path: d.path().join("pods/link/vol"),
                read_only: false,
            },
        ];
        r.store.put(&rec).unwrap();

        let report = r.pass(&[], Duration::ZERO, false).await.unwrap();
        let v = &report.volumes[0];
        // The symlinked target fails the volume; the good one is restored all the same.
        assert_eq!(v.outcome, Outcome::Failed, "{report:#?}");
        assert!(v.reason.as_ref().unwrap().contains("symlink"), "{v:#?}");
        let mounts = host.mounts();
        assert_eq!(mounts.len(), 2, "{mounts:#?}");
        assert!(mounts[0].path == staging && mounts[0].device == (253, 7));
        assert!(mounts[1].path == pod && mounts[1].read_only && mounts[1].device == (253, 7));
        assert!(
            std::fs::read_dir(&elsewhere).unwrap().next().is_none(),
            "nothing made or mounted through the link"
        );
        assert!(
            runner
                .call_lines()
                .iter()
                .any(|l| l.contains("lvchange") || l.contains("-ay")),
            "{:?}",
            runner.call_lines()
        );
        // Again: what is there is proven by the resolved paths; nothing mounted twice.
        host.clear_calls();
        r.pass(&[], Duration::ZERO, false).await.unwrap();
        assert_eq!(host.mounts().len(), 2);
        assert!(
            host.calls().iter().all(|c| !matches!(
                c,
                vglet_mount::MountCall::Mount { .. } | vglet_mount::MountCall::Bind { .. }
            )),
            "{:?}",
            host.calls()
        );
    }
}
