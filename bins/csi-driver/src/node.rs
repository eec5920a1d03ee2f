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
use vglet_mount::MountEntry;
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

fn blocking_err(context: &str, e: impl std::fmt::Display) -> Status {
    Status::internal(format!("{context}: {e}"))
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

fn same_device(m: &MountEntry, dev: (u64, u64)) -> bool {
    (m.major as u64, m.minor as u64) == dev
}

fn is_read_only(m: &MountEntry) -> bool {
    m.options.iter().any(|o| o == "ro")
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

/// Names the host holding an LV's sanlock lease: its node (from the tag vg-init wrote on
/// that host) when known, and always its host_id, which is what sanlock itself reports.
fn holder_text(host_id: u64, vg_tags: &[String]) -> String {
    match vglet_lvm::tags::sanlock_host_node(vg_tags, host_id) {
        Some(node) => format!("; the lock is held by node {node} (sanlock host_id {host_id})"),
        None => format!("; the lock is held by the host with sanlock host_id {host_id}"),
    }
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
    fn undo_mount(&self, path: &Path) {
        if let Err(e) = self.driver.mounter.unmount(path) {
            tracing::error!(path = %path.display(), error = %e,
                "cannot undo the mount whose state record failed; the CO's retry records it");
        }
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
    fn require_dax(&self, id: &VolumeId, staging: &Path) -> Result<(), Status> {
        let m = mounted_at(staging)?;
        if m.as_ref().is_some_and(vglet_mount::mount_has_dax) {
            return Ok(());
        }
        let shown = m.map(|m| m.options.join(",")).unwrap_or_default();
        self.unmount(staging)?;
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
        staging: &Path,
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
        if let Some(m) = mounted_at(staging)? {
            if !same_device(&m, numbers) {
                return Err(Status::already_exists(format!(
                    "staging path {} already has another device mounted ({})",
                    staging.display(),
                    m.source.as_deref().unwrap_or("?")
                )));
            }
            if cap.is_read_only_mode() != is_read_only(&m) {
                return Err(Status::already_exists(format!(
                    "volume {} is already staged at {} with another read-only setting",
                    t.id,
                    staging.display()
                )));
            }
            if fsdax && !vglet_mount::mount_has_dax(&m) {
                return Err(Status::failed_precondition(format!(
                    "volume {} is on fsdax persistent memory but staged at {} without DAX; unstage it and stage it again",
                    t.id,
                    staging.display()
                )));
            }
            return Ok(false);
        }
        vglet_mount::ensure_dir(staging).map_err(|e| mount_status("creating staging path", e))?;
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
        self.driver
            .mounter
            .mount(dev, staging, fs_type, &opts)
            .map_err(|e| {
                let hint = if fsdax {
                    " (fsdax volume mounted with dax=always: xfs must be without reflink, ext4 with page-sized blocks)"
                } else {
                    ""
                };
                mount_status(
                    &format!("mounting {} at {}{hint}", dev.display(), staging.display()),
                    e,
                )
            })?;
        if fsdax {
            self.require_dax(&t.id, staging)?;
        }
        // mkfs and the first mount succeeded: the first format is over.
        if marked || plan.formats() {
            mark.clear(store, &self.driver.lvm).await;
        }
        tracing::info!(staging = %staging.display(), dax = fsdax, "staged");
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
        let id = parse_id(&req.volume_id)?;
        let span = tracing::info_span!("NodeStageVolume", volume_id = %id);
        let _e = span.enter();
        let staging = parse_path("staging_target_path", &req.staging_target_path)?;
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
            self.stage_filesystem(&target, &staging, &cap, &mkfs_options)
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
            if mounted {
                self.undo_mount(&staging);
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
        let id = parse_id(&req.volume_id)?;
        let span = tracing::info_span!("NodeUnstageVolume", volume_id = %id);
        let _e = span.enter();
        let staging = parse_path("staging_target_path", &req.staging_target_path)?;
        let _guard = self.driver.inflight.acquire(&id.to_string())?;
        let _lock = self.lock_state(&id)?;
        if mounted_at(&staging)?.is_some() {
            self.unmount(&staging)?;
            if mounted_at(&staging)?.is_some() {
                return Err(Status::internal(format!(
                    "{} is still mounted after unmount (stacked mounts?)",
                    staging.display()
                )));
            }
        }
        // Only once nothing is mounted: a record may outlive its mount (the reviver then
        // mounts it again), a mount must never outlive its record.
        if let Some(store) = &self.driver.state {
            store
                .remove(&id.to_string())
                .map_err(|e| state_status("removing the state record", e))?;
        }
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
        let id = parse_id(&req.volume_id)?;
        let span = tracing::info_span!("NodePublishVolume", volume_id = %id);
        let _e = span.enter();
        let target = parse_path("target_path", &req.target_path)?;
        let staging = parse_path("staging_target_path", &req.staging_target_path)?;
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
        let record_target = Target {
            path: target.clone(),
            read_only: readonly,
        };

        if let Some(m) = mounted_at(&target)? {
            // A bind of a device node shows devtmpfs' numbers, so for block compare the
            // mounted file's own device numbers instead.
            let same = if cap.is_block() {
                device_numbers(&target).ok() == Some(source_numbers)
            } else {
                same_device(&m, source_numbers)
            };
            if !same {
                return Err(Status::already_exists(format!(
                    "target path {} already has something else mounted",
                    target.display()
                )));
            }
            if readonly != is_read_only(&m) {
                return Err(Status::already_exists(format!(
                    "volume {id} is already published at {} with another read-only setting",
                    target.display()
                )));
            }
            self.save_target(record, record_target)?;
            return Ok(Response::new(NodePublishVolumeResponse {}));
        }
        if cap.is_block() {
            // kubelet normally creates the parent; other COs (and csictl) may not.
            if let Some(parent) = target.parent() {
                vglet_mount::ensure_dir(parent)
                    .map_err(|e| mount_status("creating the target's directory", e))?;
            }
            vglet_mount::ensure_file(&target)
                .map_err(|e| mount_status("creating target file", e))?;
        } else {
            vglet_mount::ensure_dir(&target)
                .map_err(|e| mount_status("creating target path", e))?;
        }
        self.driver
            .mounter
            .bind(&source, &target, readonly)
            .map_err(|e| mount_status(&format!("bind-mounting {}", target.display()), e))?;
        if let Err(e) = self.save_target(record, record_target) {
            self.undo_mount(&target);
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
        let id = parse_id(&req.volume_id)?;
        let span = tracing::info_span!("NodeUnpublishVolume", volume_id = %id);
        let _e = span.enter();
        let target = parse_path("target_path", &req.target_path)?;
        let _guard = self.driver.inflight.acquire(&id.to_string())?;
        let _lock = self.lock_state(&id)?;
        if mounted_at(&target)?.is_some() {
            self.unmount(&target)?;
        }
        if mounted_at(&target)?.is_some() {
            return Err(Status::internal(format!(
                "{} is still mounted after unmount",
                target.display()
            )));
        }
        // The spec asks the SP to remove the file or directory it created at target_path.
        match std::fs::symlink_metadata(&target) {
            Ok(md) if md.is_dir() => std::fs::remove_dir(&target)
                .map_err(|e| blocking_err(&format!("removing {}", target.display()), e))?,
            Ok(_) => std::fs::remove_file(&target)
                .map_err(|e| blocking_err(&format!("removing {}", target.display()), e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(blocking_err(&format!("inspecting {}", target.display()), e)),
        }
        if let Some(store) = &self.driver.state {
            match store.remove_target(&id.to_string(), &target) {
                Ok(()) => {}
                // Nothing in an unreadable record can be edited; the reviver reports it.
                Err(e @ StateError::Bad { .. }) => {
                    tracing::warn!(error = %e, "state record unreadable; target not removed from it")
                }
                Err(e) => return Err(state_status("updating the state record", e)),
            }
        }
        tracing::info!("unpublished");
        Ok(Response::new(NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_volume_stats(
        &self,
        req: Request<NodeGetVolumeStatsRequest>,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        use volume_usage::Unit;
        let req = req.into_inner();
        let id = parse_id(&req.volume_id)?;
        let path = parse_path("volume_path", &req.volume_path)?;
        let v = self.driver.usable_volume(&id).await?;
        let md = std::fs::metadata(&path)
            .map_err(|e| Status::not_found(format!("volume_path {}: {e}", path.display())))?;
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
        let usage = if md.is_dir() {
            let mount = mounted_at(&path)?;
            if mount.is_none() {
                return Err(Status::not_found(format!(
                    "volume {id} is not mounted at {}",
                    path.display()
                )));
            }
            cond = health::volume_condition(
                Some(&v.lv),
                pool.as_ref(),
                mount.as_ref(),
                health::Expect {
                    active: true,
                    read_only,
                },
            );
            let s = vglet_mount::fs_stats(&path).map_err(|e| mount_status("statvfs", e))?;
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
            let size = vglet_mount::block_device_size(&path)
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
        let id = parse_id(&req.volume_id)?;
        let span = tracing::info_span!("NodeExpandVolume", volume_id = %id);
        let _e = span.enter();
        let path = parse_path("volume_path", &req.volume_path)?;
        let range = crate::capacity::Range::parse("capacity_range", req.capacity_range.as_ref())?;
        let _guard = self.driver.inflight.acquire(&id.to_string())?;
        let (v, vg, _) = self.driver.volume_in_vg(&id).await?;
        if Driver::vg_kind(&vg) == VgKind::Shared {
            // The controller may have extended the LV from another host; this node's
            // device-mapper table only learns the new size on refresh.
            self.driver
                .lvm
                .refresh_lv(&id.vg, &id.lv)
                .await
                .map_err(|e| lvm_status(&format!("refreshing {id}"), e))?;
        }
        if range.required > v.lv.size {
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
            || (v.fs().is_none() && req.volume_capability.is_none() && !path.is_dir());
        if !is_block {
            let mount = mounted_at(&path)?.ok_or_else(|| {
                Status::not_found(format!("volume {id} is not mounted at {}", path.display()))
            })?;
            // A static volume's filesystem is whatever the kernel mounted (staging refused
            // any other than the capability's).
            let fs_type = v.fs().unwrap_or(&mount.fs_type).to_string();
            let dev = Self::device_path(&v);
            if !same_device(&mount, device_numbers(&dev)?) {
                return Err(invalid(
                    "volume_path",
                    format!("{} is not a mount of volume {id}", path.display()),
                ));
            }
            self.driver
                .fs
                .grow(&fs_type, &dev, &path)
                .await
                .map_err(|e| mount_status(&format!("growing the filesystem of {id}"), e))?;
            tracing::info!(bytes = v.lv.size, "filesystem grown");
        }
        Ok(Response::new(NodeExpandVolumeResponse {
            capacity_bytes: v.lv.size as i64,
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
    use super::holder_text;

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
