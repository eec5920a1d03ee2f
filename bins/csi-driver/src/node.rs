//! CSI Node service: activation, formatting and mounts on this node. Every RPC first looks
//! at the real state (LV active? mounted? which device?) and does only what is missing, so a
//! repeated call is a no-op and a half-done one is finished.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tonic::{Request, Response, Status};
use vglet_csi_proto::v1::node_server::Node;
use vglet_csi_proto::v1::*;
use vglet_lvm::Activation;
use vglet_lvm::tags::VgPmem;
use vglet_mount::{Create, MountEntry, MountProof, Resolved};
use vglet_state::{Record, StateError, Target, VolumeLock};

use crate::capability::{self, Capability, VgKind};
use crate::driver::{Driver, OwnedVolume};
use crate::health;
use crate::staged;
use crate::status::{invalid, lvm_status, mount_status};
use crate::volume_id::VolumeId;
use crate::vouched;

#[derive(Debug, Clone)]
pub struct NodeService {
    pub driver: Arc<Driver>,
}

fn parse_id(id: &str) -> Result<VolumeId, Status> {
    VolumeId::parse(id).map_err(|e| invalid("volume_id", e))
}

fn parse_path(field: &str, p: &str) -> Result<PathBuf, Status> {
    if p.is_empty() {
        return Err(invalid(field, "is required"));
    }
    let path = PathBuf::from(p);
    vglet_mount::validate_target_path(&path).map_err(|e| invalid(field, e))?;
    Ok(path)
}

/// A volume id as the node RPCs take it. An id not even of the form `<vg>/<lv>` (for
/// example csi-sanity's `fake-vol-id-1`) names no volume vglet could have issued: the
/// spec's row for it is "volume does not exist", NOT_FOUND, in every node RPC's table
/// (NodeStage, NodeUnstage, NodePublish, NodeUnpublish, NodeGetVolumeStats, NodeExpand).
/// It never reaches a command or a path. An id of that form with a name LVM would refuse
/// stays INVALID_ARGUMENT, like an empty one.
fn parse_node_id(id: &str) -> Result<VolumeId, Status> {
    if !id.is_empty() && !id.contains('/') {
        return Err(Status::not_found(format!(
            "volume_id {id:?} is not a volume of this driver (not of the form <vg>/<lv>)"
        )));
    }
    parse_id(id)
}

/// A path from the request resolved without following any symlink (see
/// [`vglet_mount::resolve`]): what every later step acts on.
fn resolve_path(field: &str, path: &Path, create: Create) -> Result<Resolved, Status> {
    vglet_mount::resolve(path, create).map_err(|e| mount_status(field, e))
}

/// The device numbers of the volume's LV on this node, proven by device-mapper to be the
/// LV with `lv_uuid` (not another one re-created under its name); `None` when it is not
/// active here.
fn volume_device(id: &VolumeId, lv_uuid: &str) -> Option<(u64, u64)> {
    let (numbers, uuid) = staged::dm_device(&staged::device_path(id))?;
    staged::dm_uuid_is_lv(&uuid, lv_uuid).then_some(numbers)
}

/// Whether `r` is a mount of the volume with device numbers `device` (`None`: not active
/// here, so nothing there can be its mount).
fn proof_at(r: &Resolved, device: Option<(u64, u64)>, block: bool) -> Result<MountProof, Status> {
    let id = r
        .identity()
        .map_err(|e| mount_status("inspecting the path", e))?;
    Ok(match device {
        Some(d) => vglet_mount::mount_proof(&id, d, block),
        None if id.mount_root => MountProof::Foreign,
        None => MountProof::NotMounted,
    })
}

/// The mount at `path`, if any (top of the stack).
fn mounted_at(path: &Path) -> Result<Option<MountEntry>, Status> {
    vglet_mount::mount_at(path).map_err(|e| mount_status("reading the mount table", e))
}

/// (major, minor) of a block device node.
fn device_numbers(dev: &Path) -> Result<(u64, u64), Status> {
    let md = std::fs::metadata(dev)
        .map_err(|e| Status::failed_precondition(format!("device {}: {e}", dev.display())))?;
    let rdev = md.rdev();
    Ok((nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev)))
}

/// How a volume is activated on this node. Local VGs: plain activation. Shared VGs:
/// exclusive, except raw block with a multi-node mode and reader-only modes (shared lock).
pub(crate) fn activation_for(kind: VgKind, cap: &Capability) -> Activation {
    use vglet_csi_proto::v1::volume_capability::access_mode::Mode;
    match kind {
        VgKind::Local => Activation::Local,
        VgKind::Shared => match cap.mode {
            Mode::MultiNodeMultiWriter
            | Mode::MultiNodeSingleWriter
            | Mode::MultiNodeReaderOnly
                if cap.is_block() || cap.is_read_only_mode() =>
            {
                Activation::Shared
            }
            _ => Activation::Exclusive,
        },
    }
}

fn state_status(context: &str, e: StateError) -> Status {
    match e {
        StateError::Locked(id) => Status::aborted(format!(
            "volume {id} is being restored by the reviver; retry later"
        )),
        e => Status::internal(format!("{context}: {e}")),
    }
}

/// The LV a NodeStageVolume works on, as the lvm read describes it or as this process's
/// CreateVolume remembered it ([`crate::vouched`]).
#[derive(Debug, Clone)]
struct StageTarget {
    id: VolumeId,
    lv_uuid: String,
    /// What the volume was created as ("block" or a filesystem); `None` for a static
    /// volume, whose content only the device itself can tell.
    created_as: Option<String>,
    adopted: bool,
    kind: VgKind,
    fsdax: bool,
    dev: PathBuf,
    /// The first-format tag on the LV (shared VGs), see [`crate::first_format`].
    formatting_tag: Option<String>,
}

impl StageTarget {
    fn from_lvm(v: &OwnedVolume, vg: &vglet_lvm::Vg) -> StageTarget {
        StageTarget {
            id: v.id.clone(),
            lv_uuid: v.lv.uuid.clone(),
            created_as: v.fs().map(str::to_string),
            adopted: v.adopted.is_some(),
            kind: Driver::vg_kind(vg),
            // The VG's tags, not the volume context, say whether this is fsdax memory: a
            // PV made by hand in such a VG gets DAX as well.
            fsdax: VgPmem::from_tags(&vg.tags).is_fsdax(),
            dev: NodeService::device_path(v),
            formatting_tag: crate::first_format::tag_on(&v.lv.tags),
        }
    }
}

/// The record the reviver needs to put this volume back after a reboot.
fn stage_record(
    id: &VolumeId,
    lv_uuid: &str,
    driver: &str,
    kind: VgKind,
    cap: &Capability,
    staging: &Path,
) -> Record {
    Record {
        version: vglet_state::RECORD_VERSION,
        volume_id: id.to_string(),
        vg: id.vg.clone(),
        lv: id.lv.clone(),
        lv_uuid: lv_uuid.to_string(),
        driver: driver.to_string(),
        access: match &cap.access {
            capability::Access::Block => vglet_state::Access::Block,
            capability::Access::Mount {
                fs_type,
                mount_flags,
            } => vglet_state::Access::Mount {
                fs_type: fs_type.clone(),
                mount_flags: mount_flags.clone(),
            },
        },
        read_only: cap.is_read_only_mode(),
        activation: match activation_for(kind, cap) {
            Activation::Local => vglet_state::Activation::Local,
            Activation::Exclusive => vglet_state::Activation::Exclusive,
            Activation::Shared => vglet_state::Activation::Shared,
        },
        staging_path: staging.to_path_buf(),
        targets: Vec::new(),
    }
}

/// The refusal's suffix naming the holder of an LV's lock ([`crate::in_use::lock_holder`]).
fn holder_text(host_id: u64, vg_tags: &[String]) -> String {
    format!(
        "; the lock is held by {}",
        crate::in_use::lock_holder(host_id, vg_tags)
    )
}

impl NodeService {
    /// Makes the LV's device node exist on this node. Local VGs: plain activation.
    /// Shared VGs: exclusive, except raw block with a multi-node mode (shared lock).
    async fn activate(
        &self,
        v: &OwnedVolume,
        vg_tags: &[String],
        kind: VgKind,
        cap: &Capability,
    ) -> Result<(), Status> {
        let mode = activation_for(kind, cap);
        if v.lv.active && kind == VgKind::Local {
            return Ok(());
        }
        match self.driver.lvm.activate_lv(&v.id.vg, &v.id.lv, mode).await {
            Ok(()) => Ok(()),
            // Another node holds the LV lock: say so, naming it if its lease tells, and do
            // not retry here (the CO retries; a loop would only hide the conflict).
            Err(vglet_lvm::LvmError::Locked(msg)) => {
                let holder = match self.driver.lvm.lock_holder(&v.lv).await {
                    Some(id) => holder_text(id, vg_tags),
                    None => String::new(),
                };
                Err(Status::failed_precondition(format!(
                    "volume {} is in use on another node ({msg}){holder}",
                    v.id
                )))
            }
            Err(e) => Err(lvm_status(&format!("activating {}", v.id), e)),
        }
    }

    /// Unmounts; a mount that vanished meanwhile (a racing caller) is what we wanted.
    fn unmount(&self, path: &Path) -> Result<(), Status> {
        match self.driver.mounter.unmount(path) {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_mounted() => Ok(()),
            Err(e) => Err(mount_status(&format!("unmounting {}", path.display()), e)),
        }
    }

    /// The volume's cross-process lock, shared with the reviver: held for the whole RPC so
    /// that the mounts and the record change together.
    fn lock_state(&self, id: &VolumeId) -> Result<Option<VolumeLock>, Status> {
        self.driver
            .state
            .as_ref()
            .map(|s| s.try_lock(&id.to_string()))
            .transpose()
            .map_err(|e| state_status("locking the volume's state record", e))
    }

    /// Records a staged volume, keeping the targets of an earlier record (a repeated stage
    /// of a published volume). A damaged earlier record is replaced.
    fn save_stage(&self, mut record: Record) -> Result<(), Status> {
        let Some(store) = &self.driver.state else {
            return Ok(());
        };
        match store.get(&record.volume_id) {
            Ok(Some(old)) => record.targets = old.targets,
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "replacing an unreadable state record"),
        }
        store
            .put(&record)
            .map_err(|e| state_status("recording the staged volume", e))
    }

    /// Adds a publish target to the volume's record (writing a whole record if there is
    /// none, e.g. a volume staged before records existed).
    fn save_target(&self, base: Record, target: Target) -> Result<(), Status> {
        let Some(store) = &self.driver.state else {
            return Ok(());
        };
        let mut record = match store.get(&base.volume_id) {
            Ok(Some(old)) => old,
            Ok(None) => base,
            Err(e) => {
                tracing::warn!(error = %e, "replacing an unreadable state record");
                base
            }
        };
        if record.set_target(target) {
            store
                .put(&record)
                .map_err(|e| state_status("recording the published volume", e))?;
        }
        Ok(())
    }

    /// Undoes a mount made by this call when its record could not be written: a mount the
    /// reviver does not know of would not come back after a reboot.
    fn undo_mount(&self, r: &Resolved, device: (u64, u64), block: bool) {
        if let Err(e) = self.unmount_if_ours(r, Some(device), block) {
            tracing::error!(path = %r.path().display(), error = %e.message(),
                "cannot undo the mount whose state record failed; the CO's retry records it");
        }
    }

    /// Unmounts the mount `r` resolved to, which the caller proved to be the volume's
    /// (device numbers `device`). The descriptor is given up first (an open one keeps the
    /// mount busy); the unmount then goes through the resolved parent directory and the
    /// name, only if the name still leads to the very mount proven (its mount id), never
    /// through a symlink. Afterwards the name must no longer show a mount of the volume
    /// (stacked mounts). Returns what is at the name now.
    fn unmount_proven(
        &self,
        r: Resolved,
        device: (u64, u64),
        block: bool,
    ) -> Result<Option<Resolved>, Status> {
        let at = r
            .release_for_unmount()
            .map_err(|e| mount_status("preparing the unmount", e))?;
        if !at
            .is_same_mount()
            .map_err(|e| mount_status("checking the mount", e))?
        {
            return Err(Status::aborted(format!(
                "the mount at {} changed while it was being unmounted; nothing unmounted, retry",
                at.path().display()
            )));
        }
        self.unmount(&at.proc_path())?;
        let now = match at.reopen() {
            Ok(now) => now,
            Err(_) => return Ok(None),
        };
        if proof_at(&now, Some(device), block)? == MountProof::Ours {
            return Err(Status::internal(format!(
                "{} is still mounted after unmount (stacked mounts?)",
                at.path().display()
            )));
        }
        Ok(Some(now))
    }

    /// Looks at the name `r` was resolved from again and unmounts what is there only when
    /// it is a mount of the volume; `false` when it was not.
    fn unmount_if_ours(
        &self,
        r: &Resolved,
        device: Option<(u64, u64)>,
        block: bool,
    ) -> Result<bool, Status> {
        let now = r
            .reopen()
            .map_err(|e| mount_status("looking at the path again", e))?;
        match (proof_at(&now, device, block)?, device) {
            (MountProof::Ours, Some(d)) => self.unmount_proven(now, d, block).map(|_| true),
            _ => Ok(false),
        }
    }

    fn remove_record(&self, id: &VolumeId) -> Result<(), Status> {
        match &self.driver.state {
            Some(store) => store
                .remove(&id.to_string())
                .map_err(|e| state_status("removing the state record", e)),
            None => Ok(()),
        }
    }

    /// The volume's state record; an unreadable one counts as none (the reviver reports it).
    fn record_of(&self, id: &VolumeId) -> Option<Record> {
        let store = self.driver.state.as_ref()?;
        store
            .get(&id.to_string())
            .inspect_err(|e| tracing::warn!(error = %e, "state record unreadable"))
            .ok()
            .flatten()
    }

    /// The LV uuid of the volume: from its record, or else from an lvm read. `None` when
    /// no LV of this driver has that id (missing, foreign, or in a VG not served): then
    /// nothing on this node can be the volume's, and nothing may be touched for it.
    async fn lv_uuid_of(
        &self,
        id: &VolumeId,
        record: Option<&Record>,
    ) -> Result<Option<String>, Status> {
        if let Some(r) = record.filter(|r| !r.lv_uuid.is_empty()) {
            return Ok(Some(r.lv_uuid.clone()));
        }
        match self.driver.volume_in_vg(id).await.map_err(Status::from) {
            Ok((v, _, _)) => Ok(Some(v.lv.uuid.clone())),
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::NotFound
                        | tonic::Code::FailedPrecondition
                        | tonic::Code::InvalidArgument
                ) =>
            {
                tracing::info!(why = %s.message(), "no volume of this driver by that id");
                Ok(None)
            }
            Err(s) => Err(s),
        }
    }

    /// Where the volume is still published on this node: each recorded target that is
    /// still a mount of the volume's device, and (filesystems) any other mount of its
    /// device besides the staging mount, recorded or not.
    fn remaining_publishes(
        &self,
        record: Option<&Record>,
        device: Option<(u64, u64)>,
        staging: &Path,
    ) -> Result<Vec<PathBuf>, Status> {
        let Some(device) = device else {
            return Ok(Vec::new());
        };
        let block = record.is_some_and(Record::is_block);
        let mut left = Vec::new();
        for t in record.map(|r| r.targets.as_slice()).unwrap_or_default() {
            if let Ok(r) = vglet_mount::resolve(&t.path, Create::Nothing)
                && proof_at(&r, Some(device), block)? == MountProof::Ours
            {
                left.push(r.path().to_path_buf());
            }
        }
        if !block {
            let (major, minor) = (device.0 as u32, device.1 as u32);
            let mounts = vglet_mount::mounts_of_device(major, minor)
                .map_err(|e| mount_status("reading the mount table", e))?;
            for m in mounts {
                if m.mount_point != staging && !left.contains(&m.mount_point) {
                    left.push(m.mount_point);
                }
            }
        }
        Ok(left)
    }

    /// The other path at which this very LV is staged per its record, if any.
    fn staged_elsewhere(&self, id: &VolumeId, lv_uuid: &str, staging: &Path) -> Option<PathBuf> {
        let r = self.record_of(id)?;
        let same_lv = r.lv_uuid.is_empty() || r.lv_uuid == lv_uuid;
        let at = vglet_mount::normalize_path(&r.staging_path);
        (same_lv && at != staging).then_some(at)
    }

    /// A publish of a SINGLE_NODE_SINGLE_WRITER volume that a new read/write one at
    /// `target` would be a second of (see [`staged::single_writer_conflict`]).
    fn single_writer_conflict(
        &self,
        id: &VolumeId,
        cap: &Capability,
        read_only: bool,
        target: &Path,
    ) -> Option<PathBuf> {
        let record = self.record_of(id)?;
        staged::single_writer_conflict(cap, read_only, &record.targets, target)
            .map(|t| t.path.clone())
    }

    fn device_path(v: &OwnedVolume) -> PathBuf {
        if v.lv.path.is_empty() {
            crate::staged::device_path(&v.id)
        } else {
            PathBuf::from(&v.lv.path)
        }
    }

    /// The capability must agree with what the volume was created as. A static volume
    /// has no record of that; staging checks its content instead.
    fn check_matches_volume(
        cap: &Capability,
        id: &VolumeId,
        created_as: Option<&str>,
    ) -> Result<(), Status> {
        let want = cap.fs_type().unwrap_or("block");
        match created_as {
            Some(fs) if fs != want => Err(invalid(
                "volume_capability",
                format!("volume {id} was created as {fs:?}, not {want:?}"),
            )),
            _ => Ok(()),
        }
    }

    /// A fresh staging mount of an fsdax volume must show DAX in the mount table (xfs turns
    /// `dax=always` off by itself on a device without DAX support); otherwise it is
    /// unmounted again, so that no one uses the volume believing it is DAX.
    fn require_dax(
        &self,
        id: &VolumeId,
        staging: &Resolved,
        device: (u64, u64),
    ) -> Result<(), Status> {
        let m = mounted_at(staging.path())?;
        if m.as_ref().is_some_and(vglet_mount::mount_has_dax) {
            return Ok(());
        }
        let shown = m.map(|m| m.options.join(",")).unwrap_or_default();
        self.unmount_if_ours(staging, Some(device), false)?;
        Err(Status::failed_precondition(format!(
            "volume {id} is on fsdax persistent memory, but the kernel mounted it without DAX (mount options {shown}); unmounted again"
        )))
    }

    /// A publish proven by the volume's state record and the kernel, without lvm (see
    /// [`staged`]); `None` when they do not prove it, and the lvm read must decide.
    fn staged_without_lvm(
        &self,
        id: &VolumeId,
        cap: Option<&VolumeCapability>,
        staging: &Path,
    ) -> Result<Option<(Record, staged::Proven)>, Status> {
        let Some(store) = &self.driver.state else {
            return Ok(None);
        };
        let record = match store.get(&id.to_string()) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(None),
            Err(e) => {
                tracing::debug!(error = %e, "state record unreadable; reading lvm");
                return Ok(None);
            }
        };
        let dm = staged::dm_device(&staged::device_path(id));
        let seen = staged::Observed {
            device: dm.as_ref().map(|(numbers, _)| *numbers),
            dm_uuid: dm.map(|(_, uuid)| uuid),
            staging_mount: if cap.is_some_and(|c| {
                matches!(c.access_type, Some(volume_capability::AccessType::Mount(_)))
            }) {
                mounted_at(staging)?
            } else {
                None
            },
        };
        let ask = staged::Ask {
            id,
            cap,
            staging,
            driver_name: &self.driver.cfg.driver_name,
            served: self.driver.serves_vg(&id.vg),
        };
        match staged::prove(&ask, &record, &seen) {
            Ok(p) => Ok(Some((record, p))),
            Err(why) => {
                tracing::debug!(why, "staged volume not proven by its record; reading lvm");
                Ok(None)
            }
        }
    }

    /// What an lvm read says of a volume to publish: that it is ours, matches the
    /// capability and is staged here (FAILED_PRECONDITION otherwise). The record returned
    /// is the one to add the target to when the volume has none yet.
    async fn staged_from_lvm(
        &self,
        id: &VolumeId,
        cap: Option<&VolumeCapability>,
        staging: &Path,
    ) -> Result<(Record, staged::Proven), Status> {
        let (v, vg, _) = self.driver.volume_in_vg(id).await?;
        let kind = Driver::vg_kind(&vg);
        let cap = capability::validate("volume_capability", cap, kind)?;
        Self::check_matches_volume(&cap, id, v.fs())?;
        let record = stage_record(
            id,
            &v.lv.uuid,
            &self.driver.cfg.driver_name,
            kind,
            &cap,
            staging,
        );
        let (source, source_numbers) = if cap.is_block() {
            let dev = Self::device_path(&v);
            if !v.lv.active || !dev.exists() {
                return Err(Status::failed_precondition(format!(
                    "volume {id} is not active on this node; NodeStageVolume first"
                )));
            }
            let numbers = device_numbers(&dev)?;
            (dev, numbers)
        } else {
            let Some(m) = mounted_at(staging)? else {
                return Err(Status::failed_precondition(format!(
                    "volume {id} is not staged at {}; NodeStageVolume first",
                    staging.display()
                )));
            };
            (staging.to_path_buf(), (m.major as u64, m.minor as u64))
        };
        Ok((
            record,
            staged::Proven {
                cap,
                source,
                source_numbers,
            },
        ))
    }

    /// A volume NodeStageVolume may stage without reading lvm: this process created it
    /// and the kernel shows that very LV active here (see [`crate::vouched`]); `None` sends
    /// the caller to the lvm read.
    fn vouched_target(&self, id: &VolumeId) -> Option<StageTarget> {
        let vouched = self.driver.created.get(id)?;
        if !self.driver.serves_vg(&id.vg) {
            return None;
        }
        let dev = staged::device_path(id);
        if !vouched::device_is_lv(&dev, &vouched.lv_uuid) {
            tracing::debug!("the LV created here is not active under its uuid; reading lvm");
            return None;
        }
        Some(StageTarget {
            id: id.clone(),
            lv_uuid: vouched.lv_uuid,
            created_as: Some(vouched.created_as),
            adopted: false,
            // Vouched only for node-local VGs without fsdax memory.
            kind: VgKind::Local,
            fsdax: false,
            dev,
            formatting_tag: None,
        })
    }

    /// Whether the start of a volume we created still holds lvcreate's zeroes, so that
    /// nothing was ever written there and blkid need not run (see [`vglet_mount::head_is_zeroed`]).
    /// Any doubt (a device that cannot be read directly) answers no, and blkid decides.
    fn head_untouched(t: &StageTarget) -> bool {
        if t.adopted {
            return false;
        }
        match vglet_mount::head_is_zeroed(&t.dev) {
            Ok(zeroed) => zeroed,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the device's start directly; probing with blkid");
                false
            }
        }
    }

    async fn stage_filesystem(
        &self,
        t: &StageTarget,
        staging: &Resolved,
        cap: &Capability,
        mkfs_options: &[String],
    ) -> Result<bool, Status> {
        let (dev, fsdax) = (t.dev.as_path(), t.fsdax);
        let capability::Access::Mount {
            fs_type,
            mount_flags,
        } = &cap.access
        else {
            return Ok(false);
        };
        // Everything the request can get wrong is checked before the device is touched.
        let mut flags = mount_flags.clone();
        if cap.is_read_only_mode() {
            flags.push("ro".into());
        }
        flags.extend(vglet_mount::implied_mount_flags(fs_type));
        let opts = vglet_mount::volume_mount_options(&flags, fsdax)
            .map_err(|e| invalid("volume_capability.mount.mount_flags", e))?;
        let mkfs_options = if fsdax {
            vglet_mount::fsdax_mkfs_options(fs_type, mkfs_options, vglet_mount::page_size())
                .map_err(|e| invalid("volume_context", e))?
        } else {
            mkfs_options.to_vec()
        };
        let numbers = device_numbers(dev)?;
        // What is at the resolved staging directory itself decides, not a mount table
        // entry found by its name.
        let here = staging
            .identity()
            .map_err(|e| mount_status("inspecting the staging path", e))?;
        if here.mount_root {
            if vglet_mount::mount_proof(&here, numbers, false) != MountProof::Ours {
                let m = mounted_at(staging.path())?;
                return Err(Status::already_exists(format!(
                    "staging path {} already has another device mounted ({})",
                    staging.path().display(),
                    m.as_ref().and_then(|m| m.source.as_deref()).unwrap_or("?")
                )));
            }
            if cap.is_read_only_mode() != here.read_only {
                return Err(Status::already_exists(format!(
                    "volume {} is already staged at {} with another read-only setting",
                    t.id,
                    staging.path().display()
                )));
            }
            if fsdax
                && !mounted_at(staging.path())?
                    .as_ref()
                    .is_some_and(vglet_mount::mount_has_dax)
            {
                return Err(Status::failed_precondition(format!(
                    "volume {} is on fsdax persistent memory but staged at {} without DAX; unstage it and stage it again",
                    t.id,
                    staging.path().display()
                )));
            }
            return Ok(false);
        }
        // Any signature counts, partition tables included: mkfs only ever runs on a device
        // that holds nothing at all, or, under a first-format mark, nothing but what our own
        // interrupted mkfs left (see [`crate::first_format`]).
        let store = self.driver.state.as_ref();
        let mut mark = crate::first_format::Mark {
            id: t.id.clone(),
            lv_uuid: t.lv_uuid.clone(),
            kind: t.kind,
            tag: t.formatting_tag.clone(),
        };
        let marked = !t.adopted && mark.found(store)?;
        let found = if Self::head_untouched(t) {
            tracing::debug!(device = %dev.display(), "start of the LV still zeroed by lvcreate: empty");
            None
        } else {
            self.driver
                .fs
                .detect_any_signature(dev)
                .await
                .map_err(|e| mount_status("probing the device", e))?
        };
        let plan = crate::first_format::plan(
            &t.id,
            dev,
            fs_type,
            t.adopted,
            marked,
            found.as_ref(),
            || vglet_mount::mkfs_progress(dev, fs_type),
        )?;
        if plan.formats() {
            if !marked {
                mark.set(store, &self.driver.lvm, fs_type).await?;
            }
            tracing::info!(device = %dev.display(), fs = %fs_type, "formatting");
            let fs = &self.driver.fs;
            if plan == crate::first_format::Plan::FormatAgain {
                fs.mkfs_over_half_made(dev, fs_type, &mkfs_options).await
            } else {
                fs.mkfs(dev, fs_type, &mkfs_options).await
            }
            .map_err(|e| mount_status(&format!("mkfs.{fs_type} on {}", dev.display()), e))?;
        }
        // Onto the resolved directory: mount(2) follows /proc/self/fd/N to exactly it.
        // mount(2) rather than fsopen/fsmount: the checked options (flags + data string)
        // go to the kernel as they always did, with no per-option fsconfig translation.
        self.driver
            .mounter
            .mount(dev, &staging.proc_path(), fs_type, &opts)
            .map_err(|e| {
                let hint = if fsdax {
                    " (fsdax volume mounted with dax=always: xfs must be without reflink, ext4 with page-sized blocks)"
                } else {
                    ""
                };
                mount_status(
                    &format!(
                        "mounting {} at {}{hint}",
                        dev.display(),
                        staging.path().display()
                    ),
                    e,
                )
            })?;
        if fsdax {
            self.require_dax(&t.id, staging, numbers)?;
        }
        // mkfs and the first mount succeeded: the first format is over.
        if marked || plan.formats() {
            mark.clear(store, &self.driver.lvm).await;
        }
        tracing::info!(staging = %staging.path().display(), dax = fsdax, "staged");
        Ok(true)
    }
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_stage_volume(
        &self,
        req: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        let req = req.into_inner();
        crate::limits::check(&req)?;
        let id = parse_node_id(&req.volume_id)?;
        let span = tracing::info_span!("NodeStageVolume", volume_id = %id);
        let _e = span.enter();
        let staging_asked = parse_path("staging_target_path", &req.staging_target_path)?;
        let staging = vglet_mount::normalize_path(&staging_asked);
        if req.volume_capability.is_none() {
            return Err(invalid("volume_capability", "is required"));
        }
        let _guard = self.driver.inflight.acquire(&id.to_string())?;
        let _lock = self.lock_state(&id)?;
        let (target, read) = match self.vouched_target(&id) {
            Some(t) => (t, None),
            None => {
                let (v, vg, _) = self.driver.volume_in_vg(&id).await?;
                (StageTarget::from_lvm(&v, &vg), Some((v, vg)))
            }
        };
        let kind = target.kind;
        let cap = capability::validate("volume_capability", req.volume_capability.as_ref(), kind)?;
        Self::check_matches_volume(&cap, &id, target.created_as.as_deref())?;
        if let capability::Access::Mount { mount_flags, .. } = &cap.access {
            vglet_mount::check_dax_flags(mount_flags, target.fsdax)
                .map_err(|e| invalid("volume_capability.mount.mount_flags", e))?;
        }
        // One staging path per volume: a second one would mount it twice.
        if let Some(first) = self.staged_elsewhere(&id, &target.lv_uuid, &staging) {
            return Err(Status::failed_precondition(format!(
                "volume {id} is already staged at {}; NodeUnstageVolume it there first",
                first.display()
            )));
        }
        // Resolved (and created) before anything is activated or formatted: a symlink
        // anywhere in the path is refused here and never followed later. A raw block
        // volume mounts nothing there, but its record names the path all the same.
        let staging_dir = resolve_path("staging_target_path", &staging_asked, Create::Dir)?;
        // A vouched target is active already; the one the lvm read found may need it.
        if let Some((v, vg)) = &read {
            self.activate(v, &vg.tags, kind, &cap).await?;
        }
        let mounted = if cap.is_block() {
            false
        } else {
            // The StorageClass's mkfsOptions, validated by CreateVolume and again by the
            // mount layer's per-filesystem allow-list before they reach mkfs.
            let mkfs_options: Vec<String> = req
                .volume_context
                .get(crate::params::CONTEXT_MKFS_OPTIONS)
                .map(|o| o.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default();
            self.stage_filesystem(&target, &staging_dir, &cap, &mkfs_options)
                .await?
        };
        if !mounted && !cap.is_block() {
            // Staged already (the kernel mounted it, so its mkfs finished): a first-format
            // mark a crash left after that mount is done with.
            crate::first_format::Mark {
                id: id.clone(),
                lv_uuid: target.lv_uuid.clone(),
                kind,
                tag: target.formatting_tag.clone(),
            }
            .clear(self.driver.state.as_ref(), &self.driver.lvm)
            .await;
        }
        let record = stage_record(
            &id,
            &target.lv_uuid,
            &self.driver.cfg.driver_name,
            kind,
            &cap,
            &staging,
        );
        if let Err(e) = self.save_stage(record) {
            if let (true, Ok(device)) = (mounted, device_numbers(&target.dev)) {
                self.undo_mount(&staging_dir, device, false);
            }
            return Err(e);
        }
        Ok(Response::new(NodeStageVolumeResponse {}))
    }

    async fn node_unstage_volume(
        &self,
        req: Request<NodeUnstageVolumeRequest>,
    ) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        let req = req.into_inner();
        let id = parse_node_id(&req.volume_id)?;
        let span = tracing::info_span!("NodeUnstageVolume", volume_id = %id);
        let _e = span.enter();
        let staging_asked = parse_path("staging_target_path", &req.staging_target_path)?;
        let staging = vglet_mount::normalize_path(&staging_asked);
        let _guard = self.driver.inflight.acquire(&id.to_string())?;
        let _lock = self.lock_state(&id)?;
        // Only what is provably this volume's is touched: its record names this staging
        // path, and what is mounted there is its LV. Anything else is not this volume
        // staged here, which is an OK with nothing changed (the spec's idempotent row).
        let record = self.record_of(&id);
        if let Some(r) = &record
            && vglet_mount::normalize_path(&r.staging_path) != staging
        {
            tracing::info!(staged_at = %r.staging_path.display(), "not staged at this path; nothing touched");
            return Ok(Response::new(NodeUnstageVolumeResponse {}));
        }
        let Some(lv_uuid) = self.lv_uuid_of(&id, record.as_ref()).await? else {
            if record.is_some() {
                // The LV is gone: nothing of it can be mounted (lvremove refuses an open
                // LV), only the record is left.
                self.remove_record(&id)?;
            }
            return Ok(Response::new(NodeUnstageVolumeResponse {}));
        };
        let device = volume_device(&id, &lv_uuid);
        let left = self.remaining_publishes(record.as_ref(), device, &staging)?;
        if !left.is_empty() {
            let left: Vec<String> = left.iter().map(|p| p.display().to_string()).collect();
            return Err(Status::failed_precondition(format!(
                "volume {id} is still published at {}; NodeUnpublishVolume first",
                left.join(", ")
            )));
        }
        match vglet_mount::resolve(&staging_asked, Create::Nothing) {
            Ok(r) => match (proof_at(&r, device, false)?, device) {
                (MountProof::Ours, Some(d)) => drop(self.unmount_proven(r, d, false)?),
                (MountProof::NotMounted, _) => {}
                _ => {
                    // The record stays: the volume's mount may be under this one.
                    tracing::warn!("something else is mounted at the staging path; left alone");
                    return Ok(Response::new(NodeUnstageVolumeResponse {}));
                }
            },
            Err(vglet_mount::MountError::NotFound { .. }) => {}
            Err(e @ vglet_mount::MountError::InvalidPath { .. }) if record.is_some() => {
                return Err(Status::failed_precondition(format!(
                    "the staging path of volume {id} cannot be reached without following a symlink, so its mount is left alone: {e}"
                )));
            }
            Err(vglet_mount::MountError::InvalidPath { .. }) => {
                return Ok(Response::new(NodeUnstageVolumeResponse {}));
            }
            Err(e) => return Err(mount_status("resolving staging_target_path", e)),
        }
        // Only once nothing is mounted: a record may outlive its mount (the reviver then
        // mounts it again), a mount must never outlive its record.
        self.remove_record(&id)?;
        // Shared VGs must give the LV lock back so another node can take the volume; local
        // LVs stay active (cheap, and the next stage on this node skips activation).
        let shared = match self.driver.serves_vg(&id.vg) {
            true => self
                .driver
                .vg(&id.vg)
                .await
                .is_ok_and(|vg| Driver::vg_kind(&vg) == VgKind::Shared),
            false => false,
        };
        if shared {
            match self.driver.lvm.deactivate_lv(&id.vg, &id.lv).await {
                Ok(()) | Err(vglet_lvm::LvmError::LvNotFound(_)) => {}
                Err(e) => return Err(lvm_status(&format!("deactivating {id}"), e)),
            }
        }
        tracing::info!("unstaged");
        Ok(Response::new(NodeUnstageVolumeResponse {}))
    }

    async fn node_publish_volume(
        &self,
        req: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        let req = req.into_inner();
        crate::limits::check(&req)?;
        let id = parse_node_id(&req.volume_id)?;
        let span = tracing::info_span!("NodePublishVolume", volume_id = %id);
        let _e = span.enter();
        let target_asked = parse_path("target_path", &req.target_path)?;
        let target = vglet_mount::normalize_path(&target_asked);
        let staging_asked = parse_path("staging_target_path", &req.staging_target_path)?;
        let staging = vglet_mount::normalize_path(&staging_asked);
        if req.volume_capability.is_none() {
            return Err(invalid("volume_capability", "is required"));
        }
        let _guard = self.driver.inflight.acquire(&id.to_string())?;
        let _lock = self.lock_state(&id)?;
        let cap_req = req.volume_capability.as_ref();
        let (record, proven) = match self.staged_without_lvm(&id, cap_req, &staging)? {
            Some(known) => known,
            None => self.staged_from_lvm(&id, cap_req, &staging).await?,
        };
        let staged::Proven {
            cap,
            source,
            source_numbers,
        } = proven;
        let readonly = req.readonly || cap.is_read_only_mode();
        if let Some(other) = self.single_writer_conflict(&id, &cap, readonly, &target) {
            return Err(Status::failed_precondition(format!(
                "volume {id} is SINGLE_NODE_SINGLE_WRITER and already published read/write at {}; it can only be published once as read/write",
                other.display()
            )));
        }
        let record_target = Target {
            path: target.clone(),
            read_only: readonly,
        };
        // kubelet normally creates the parent; other COs (and csictl) may not. Resolution
        // creates what is missing, relative to each resolved parent, and refuses a symlink
        // in any component.
        let block = cap.is_block();
        let create = if block { Create::File } else { Create::Dir };
        let target_at = resolve_path("target_path", &target_asked, create)?;
        let here = target_at
            .identity()
            .map_err(|e| mount_status("inspecting the target path", e))?;
        match vglet_mount::mount_proof(&here, source_numbers, block) {
            MountProof::Ours => {
                if readonly != here.read_only {
                    return Err(Status::already_exists(format!(
                        "volume {id} is already published at {} with another read-only setting",
                        target.display()
                    )));
                }
                self.save_target(record, record_target)?;
                return Ok(Response::new(NodePublishVolumeResponse {}));
            }
            MountProof::Foreign => {
                return Err(Status::already_exists(format!(
                    "target path {} already has something else mounted",
                    target.display()
                )));
            }
            MountProof::NotMounted => {}
        }
        // The bind's source is resolved as well: the staging mount itself, proven to be
        // of the volume's device, or the device node the driver names.
        let staging_at;
        let source = if block {
            source
        } else {
            staging_at = resolve_path("staging_target_path", &staging_asked, Create::Nothing)?;
            if proof_at(&staging_at, Some(source_numbers), false)? != MountProof::Ours {
                return Err(Status::failed_precondition(format!(
                    "volume {id} is not staged at {}; NodeStageVolume first",
                    staging.display()
                )));
            }
            staging_at.proc_path()
        };
        self.driver
            .mounter
            .bind(&source, &target_at.proc_path(), readonly)
            .map_err(|e| mount_status(&format!("bind-mounting {}", target.display()), e))?;
        if let Err(e) = self.save_target(record, record_target) {
            self.undo_mount(&target_at, source_numbers, block);
            return Err(e);
        }
        tracing::info!(target = %target.display(), readonly, "published");
        Ok(Response::new(NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(
        &self,
        req: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let req = req.into_inner();
        let id = parse_node_id(&req.volume_id)?;
        let span = tracing::info_span!("NodeUnpublishVolume", volume_id = %id);
        let _e = span.enter();
        let target_asked = parse_path("target_path", &req.target_path)?;
        let target = vglet_mount::normalize_path(&target_asked);
        let _guard = self.driver.inflight.acquire(&id.to_string())?;
        let _lock = self.lock_state(&id)?;
        let ok = || Ok(Response::new(NodeUnpublishVolumeResponse {}));
        // Only a target the volume's record names is unmounted or removed, and only when
        // what is mounted there is the volume's LV; anything else means this volume is
        // not published there: OK, nothing touched. Without a state directory there are
        // no records, and the device proof alone decides.
        let record = self.record_of(&id);
        let recorded = record.as_ref().is_some_and(|r| {
            r.targets
                .iter()
                .any(|t| vglet_mount::normalize_path(&t.path) == target)
        });
        if self.driver.state.is_some() && !recorded {
            tracing::info!(target = %target.display(), "not published there; nothing touched");
            return ok();
        }
        let Some(lv_uuid) = self.lv_uuid_of(&id, record.as_ref()).await? else {
            return ok();
        };
        let device = volume_device(&id, &lv_uuid);
        match vglet_mount::resolve(&target_asked, Create::Nothing) {
            Ok(r) => {
                // A record without its access kind (no record at all): either proof.
                let kinds: &[bool] = match &record {
                    Some(rec) => &[rec.is_block()],
                    None => &[false, true],
                };
                let mut proof = MountProof::NotMounted;
                let mut ours_as = None;
                for block in kinds {
                    match proof_at(&r, device, *block)? {
                        MountProof::Ours => {
                            ours_as = Some(*block);
                            break;
                        }
                        p => proof = p,
                    }
                }
                let below = match (ours_as, device) {
                    (Some(block), Some(d)) => self.unmount_proven(r, d, block)?,
                    _ if proof == MountProof::Foreign => {
                        // The record keeps the target: the volume may be mounted below.
                        tracing::warn!(target = %target.display(),
                            "something else is mounted at the target; left alone");
                        return ok();
                    }
                    _ => Some(r),
                };
                // The spec asks the SP to remove the file or directory it created there;
                // only an empty one is taken, through the resolved parent.
                if let Some(below) = below
                    && !below
                        .remove_created()
                        .map_err(|e| mount_status("removing the target", e))?
                {
                    tracing::warn!(target = %target.display(), "the target is not empty; left in place");
                }
            }
            Err(vglet_mount::MountError::NotFound { .. }) => {}
            Err(e @ vglet_mount::MountError::InvalidPath { .. }) => {
                tracing::warn!(error = %e, "the target cannot be reached without a symlink; left alone");
                return ok();
            }
            Err(e) => return Err(mount_status("resolving target_path", e)),
        }
        if let (Some(store), Some(mut rec)) = (&self.driver.state, record) {
            rec.targets
                .retain(|t| vglet_mount::normalize_path(&t.path) != target);
            store
                .put(&rec)
                .map_err(|e| state_status("updating the state record", e))?;
        }
        tracing::info!("unpublished");
        ok()
    }

    async fn node_get_volume_stats(
        &self,
        req: Request<NodeGetVolumeStatsRequest>,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        use volume_usage::Unit;
        let req = req.into_inner();
        let id = parse_node_id(&req.volume_id)?;
        if req.volume_path.is_empty() {
            return Err(invalid("volume_path", "is required"));
        }
        // A relative path, or one that is not the volume's mount (or device), is not a
        // path of this volume: NOT_FOUND, the spec's row, and never another filesystem's
        // numbers.
        let asked = Path::new(&req.volume_path);
        if !asked.is_absolute() {
            return Err(Status::not_found(format!(
                "volume_path {:?} is not an absolute path, so not a path of volume {id}",
                req.volume_path
            )));
        }
        let path = vglet_mount::normalize_path(&parse_path("volume_path", &req.volume_path)?);
        let v = self.driver.usable_volume(&id).await?;
        let at = vglet_mount::resolve(asked, Create::Nothing).map_err(|e| {
            Status::not_found(format!(
                "volume_path {} of volume {id}: {e}",
                path.display()
            ))
        })?;
        let here = at
            .identity()
            .map_err(|e| mount_status("inspecting volume_path", e))?;
        let device = volume_device(&id, &v.lv.uuid)
            .ok_or_else(|| Status::not_found(format!("volume {id} is not active on this node")))?;
        let is_volume = match here.kind {
            vglet_mount::Kind::Dir => {
                vglet_mount::mount_proof(&here, device, false) == MountProof::Ours
            }
            vglet_mount::Kind::BlockDevice => here.rdev == device,
            _ => false,
        };
        if !is_volume {
            return Err(Status::not_found(format!(
                "{} is not a mount or device of volume {id}",
                path.display()
            )));
        }
        let cond;
        // A read-only mount is only a fault when the volume was not published read-only.
        let record = self
            .driver
            .state
            .as_ref()
            .and_then(|st| st.get(&id.to_string()).ok().flatten());
        let read_only = record.as_ref().is_some_and(|r| {
            r.read_only || r.targets.iter().any(|t| t.path == path && t.read_only)
        });
        let pool = match v.lv.pool_lv.as_str() {
            "" => None,
            pool => self.driver.lvm.lv(&id.vg, pool).await.ok().flatten(),
        };
        let usage = if here.kind == vglet_mount::Kind::Dir {
            let mount = mounted_at(&path)?;
            cond = health::volume_condition(
                Some(&v.lv),
                pool.as_ref(),
                mount.as_ref(),
                health::Expect {
                    active: true,
                    read_only,
                },
            );
            let s =
                vglet_mount::fs_stats(&at.proc_path()).map_err(|e| mount_status("statvfs", e))?;
            vec![
                VolumeUsage {
                    available: s.available_bytes as i64,
                    total: s.total_bytes as i64,
                    used: s.used_bytes as i64,
                    unit: Unit::Bytes as i32,
                },
                VolumeUsage {
                    available: s.free_inodes as i64,
                    total: s.total_inodes as i64,
                    used: s.used_inodes as i64,
                    unit: Unit::Inodes as i32,
                },
            ]
        } else {
            cond = health::volume_condition(
                Some(&v.lv),
                pool.as_ref(),
                None,
                health::Expect {
                    active: true,
                    read_only,
                },
            );
            let size = vglet_mount::block_device_size(&at.proc_path())
                .map_err(|e| mount_status("device size", e))?;
            vec![VolumeUsage {
                available: 0,
                total: size as i64,
                used: 0,
                unit: Unit::Bytes as i32,
            }]
        };
        Ok(Response::new(NodeGetVolumeStatsResponse {
            usage,
            volume_condition: Some(cond),
        }))
    }

    async fn node_expand_volume(
        &self,
        req: Request<NodeExpandVolumeRequest>,
    ) -> Result<Response<NodeExpandVolumeResponse>, Status> {
        let req = req.into_inner();
        crate::limits::check(&req)?;
        let id = parse_node_id(&req.volume_id)?;
        let span = tracing::info_span!("NodeExpandVolume", volume_id = %id);
        let _e = span.enter();
        let asked = parse_path("volume_path", &req.volume_path)?;
        // Resolved only to refuse a symlinked path; the grow tools take the path by name.
        let at = vglet_mount::resolve(&asked, Create::Nothing).map_err(|e| match e {
            e @ vglet_mount::MountError::NotFound { .. } => mount_status("volume_path", e),
            e => invalid("volume_path", e),
        })?;
        let path = at.path().to_path_buf();
        let range = crate::capacity::Range::parse("capacity_range", req.capacity_range.as_ref())?;
        let _guard = self.driver.inflight.acquire(&id.to_string())?;
        let (v, vg, report) = self.driver.volume_in_vg(&id).await?;
        let shared = Driver::vg_kind(&vg) == VgKind::Shared;
        if shared {
            // The controller may have extended the LV from another host; this node's
            // device-mapper table only learns the new size on refresh.
            self.driver
                .lvm
                .refresh_lv(&id.vg, &id.lv)
                .await
                .map_err(|e| lvm_status(&format!("refreshing {id}"), e))?;
        }
        // `--expansion node`: the resizer left the LV to this node, which holds the VG. A
        // shared VG's LV is the controller's to extend, under its lock, whatever the setting.
        let extend_here = range.required > v.lv.size
            && !shared
            && self.driver.cfg.expansion == crate::expand::Expansion::Node;
        if range.required > v.lv.size && !extend_here {
            return Err(Status::out_of_range(format!(
                "volume {id} is {} bytes, smaller than the {} bytes asked; expand it on the controller first",
                v.lv.size, range.required
            )));
        }
        let is_block = v.fs() == Some("block")
            || req.volume_capability.as_ref().is_some_and(|c| {
                matches!(c.access_type, Some(volume_capability::AccessType::Block(_)))
            })
            // A static volume without a capability: a raw block volume is published as a
            // device file, a filesystem as a directory.
            || (v.fs().is_none()
                && req.volume_capability.is_none()
                && at.identity().is_ok_and(|i| i.kind != vglet_mount::Kind::Dir));
        let fs = if is_block {
            None
        } else {
            let mount = mounted_at(&path)?.ok_or_else(|| {
                Status::not_found(format!("volume {id} is not mounted at {}", path.display()))
            })?;
            // A static volume's filesystem is whatever the kernel mounted (staging refused
            // any other than the capability's).
            let fs_type = v.fs().unwrap_or(&mount.fs_type).to_string();
            let dev = Self::device_path(&v);
            let here = at
                .identity()
                .map_err(|e| mount_status("inspecting volume_path", e))?;
            if vglet_mount::mount_proof(&here, device_numbers(&dev)?, false) != MountProof::Ours {
                return Err(Status::not_found(format!(
                    "{} is not a mount of volume {id}",
                    path.display()
                )));
            }
            Some((fs_type, dev))
        };
        // Only now, with the path proven to be this volume's: a bad request changes nothing.
        let size = if extend_here {
            crate::expand::grow_lv(&self.driver, &v, &vg, &report, range).await?
        } else {
            v.lv.size
        };
        if let Some((fs_type, dev)) = fs {
            self.driver
                .fs
                .grow(&fs_type, &dev, &path)
                .await
                .map_err(|e| mount_status(&format!("growing the filesystem of {id}"), e))?;
            tracing::info!(bytes = size, "filesystem grown");
        }
        Ok(Response::new(NodeExpandVolumeResponse {
            capacity_bytes: size as i64,
        }))
    }

    async fn node_get_capabilities(
        &self,
        _req: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        use node_service_capability::{Rpc, Type, rpc::Type as R};
        let caps = [
            R::StageUnstageVolume,
            R::GetVolumeStats,
            R::ExpandVolume,
            R::VolumeCondition,
            R::SingleNodeMultiWriter,
        ];
        Ok(Response::new(NodeGetCapabilitiesResponse {
            capabilities: caps
                .into_iter()
                .map(|r| NodeServiceCapability {
                    r#type: Some(Type::Rpc(Rpc { r#type: r as i32 })),
                })
                .collect(),
        }))
    }

    async fn node_get_info(
        &self,
        _req: Request<NodeGetInfoRequest>,
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        Ok(Response::new(NodeGetInfoResponse {
            node_id: self.driver.cfg.node_id.clone(),
            max_volumes_per_node: 0,
            accessible_topology: Some(Topology {
                segments: self.driver.node_topology().await,
            }),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::{holder_text, parse_node_id};

    #[test]
    fn ids_not_of_the_form_are_not_found_malformed_ones_invalid() {
        use tonic::Code;
        assert_eq!(parse_node_id("vg0/csi-pvc-1").unwrap().lv, "csi-pvc-1");
        for (id, code) in [
            ("fake-vol-id-1", Code::NotFound),
            ("non-existing-snapshot-id", Code::NotFound),
            ("", Code::InvalidArgument),
            ("vg/lv;rm", Code::InvalidArgument),
            ("../x", Code::InvalidArgument),
            ("vg/", Code::InvalidArgument),
        ] {
            assert_eq!(parse_node_id(id).unwrap_err().code(), code, "{id:?}");
        }
    }

    #[test]
    fn a_refusal_names_the_holding_node_when_vg_init_recorded_it() {
        let tags = vec![vglet_lvm::tags::sanlock_host_tag(2, "worker-2")];
        assert_eq!(
            holder_text(2, &tags),
            "; the lock is held by node worker-2 (sanlock host_id 2)"
        );
        assert_eq!(
            holder_text(3, &tags),
            "; the lock is held by the host with sanlock host_id 3"
        );
    }
}
