//! Staging, publishing and the unmounts of what is provably a volume's, on this node.
//!
//! Every path a CO hands over is resolved first ([`vglet_mount::resolve`]); mounts go onto
//! the resolved file's `/proc/self/fd/N` name, unmounts only where the state record names
//! the path and the mount there is the volume's LV (its device numbers, the LV proven by
//! its device-mapper uuid).

use std::path::{Path, PathBuf};

use vglet_lvm::Lvm;
use vglet_lvm::tags::Content;
use vglet_mount::{Create, Filesystems, MountProof, Mounter, Resolved};
use vglet_state::{Record, StateStore, Target};

use crate::capability::{Access, Capability, VgKind};
use crate::error::VolumeError;
use crate::first_format::{self, Mark, Plan};
use crate::host::{NodeHost, dm_device};
use crate::options;
use crate::record;

/// What the node works with: the read side, the mounter, the filesystem tools, lvm (the
/// first-format tag of shared VGs) and the state records (`None`: no state directory).
#[derive(Debug, Clone, Copy)]
pub struct VolumeNode<'a> {
    pub host: &'a dyn NodeHost,
    pub mounter: &'a dyn Mounter,
    pub fs: &'a Filesystems,
    pub lvm: &'a Lvm,
    pub store: Option<&'a StateStore>,
}

/// The LV a stage works on, as an lvm read describes it or as this process's CreateVolume
/// remembered it.
#[derive(Debug, Clone)]
pub struct StageTarget {
    pub vg: String,
    pub lv: String,
    pub lv_uuid: String,
    /// What the volume was created to hold; `None` for a static volume, whose content only
    /// the device itself can tell.
    pub created_as: Option<Content>,
    pub adopted: bool,
    pub kind: VgKind,
    /// The VG's tags say it is fsdax persistent memory: the mount gets DAX.
    pub fsdax: bool,
    /// The device the filesystem is on.
    pub dev: PathBuf,
    /// The first-format tag on the LV (shared VGs), see [`crate::first_format`].
    pub formatting_tag: Option<String>,
}

impl StageTarget {
    pub fn volume_id(&self) -> String {
        format!("{}/{}", self.vg, self.lv)
    }

    fn mark(&self) -> Mark {
        Mark {
            vg: self.vg.clone(),
            lv: self.lv.clone(),
            lv_uuid: self.lv_uuid.clone(),
            kind: self.kind,
            tag: self.formatting_tag.clone(),
        }
    }

    /// The capability must agree with what the volume was created as. A static volume
    /// has no record of that; staging checks its content instead.
    pub fn check_capability(&self, cap: &Capability) -> Result<(), VolumeError> {
        let want = cap.content();
        match &self.created_as {
            Some(made) if *made != want => Err(VolumeError::invalid(
                "volume_capability",
                format!(
                    "volume {} was created as \"{made}\", not \"{want}\"",
                    self.volume_id()
                ),
            )),
            _ => Ok(()),
        }?;
        if let Access::Mount { mount_flags, .. } = &cap.access {
            vglet_mount::check_dax_flags(mount_flags, self.fsdax)
                .map_err(|e| VolumeError::invalid("volume_capability.mount.mount_flags", e))?;
        }
        Ok(())
    }
}

/// A staged volume, ready to be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proven {
    pub cap: Capability,
    /// What is bind-mounted onto the target: the staging path or the device node.
    pub source: PathBuf,
    /// The device numbers a mount of `source` shows.
    pub source_numbers: (u64, u64),
}

/// What an unpublish found at the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unpublished {
    /// The volume's mount was removed (or was not there): the record may drop the target.
    Done,
    /// Something else is mounted there, or the path cannot be reached without a symlink:
    /// nothing touched, and the record keeps the target.
    LeftAlone,
}

impl VolumeNode<'_> {
    /// The device numbers of the volume's LV on this node, proven by device-mapper to be
    /// the LV with `lv_uuid`; `None` when it is not active here.
    ///
    /// For an encrypted volume whose mapping is open on that LV, the mapping's numbers:
    /// what the volume is mounted and published from (see [`crate::crypt`]).
    pub fn volume_device(&self, vg: &str, lv: &str, lv_uuid: &str) -> Option<(u64, u64)> {
        let numbers = self.lv_device(vg, lv, lv_uuid)?;
        match crate::crypt::mapping_name(vg, lv)
            .map(|n| crate::crypt::mapping_state(self.host, &n, Some(numbers)))
        {
            Some(crate::crypt::Mapping::OnLv(mapping)) => Some(mapping),
            _ => Some(numbers),
        }
    }

    /// The LV's own device numbers, proven by device-mapper to be the LV with `lv_uuid`.
    pub fn lv_device(&self, vg: &str, lv: &str, lv_uuid: &str) -> Option<(u64, u64)> {
        let (numbers, uuid) = dm_device(self.host, &crate::device::device_path(vg, lv))?;
        crate::device::dm_uuid_is_lv(&uuid, lv_uuid).then_some(numbers)
    }

    /// Whether `r` is a mount of the volume with device numbers `device` (`None`: not
    /// active here, so nothing there can be its mount).
    pub fn proof_at(
        &self,
        r: &Resolved,
        device: Option<(u64, u64)>,
        block: bool,
    ) -> Result<MountProof, VolumeError> {
        let id = self
            .host
            .identity(r)
            .map_err(VolumeError::mount("inspecting the path"))?;
        Ok(match device {
            Some(d) => vglet_mount::mount_proof(&id, d, block),
            None if id.mount_root => MountProof::Foreign,
            None => MountProof::NotMounted,
        })
    }

    /// Unmounts; a mount that vanished meanwhile (a racing caller) is what we wanted.
    fn unmount(&self, path: &Path) -> Result<(), VolumeError> {
        match self.mounter.unmount(path) {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_mounted() => Ok(()),
            Err(e) => Err(VolumeError::mount(format!("unmounting {}", path.display()))(e)),
        }
    }

    /// Unmounts the mount `r` resolved to, which the caller proved to be the volume's
    /// (device numbers `device`). The descriptor is given up first (an open one keeps the
    /// mount busy); the unmount then goes through the resolved parent directory and the
    /// name, only if the name still leads to the very mount proven (its mount id), never
    /// through a symlink. Afterwards the name must no longer show a mount of the volume
    /// (stacked mounts). Returns what is at the name now.
    pub fn unmount_proven(
        &self,
        r: Resolved,
        device: (u64, u64),
        block: bool,
    ) -> Result<Option<Resolved>, VolumeError> {
        let at = r
            .release_for_unmount()
            .map_err(VolumeError::mount("preparing the unmount"))?;
        if !at
            .is_same_mount()
            .map_err(VolumeError::mount("checking the mount"))?
        {
            return Err(VolumeError::Changed(format!(
                "the mount at {} changed while it was being unmounted; nothing unmounted, retry",
                at.path().display()
            )));
        }
        self.unmount(&at.proc_path())?;
        let now = match at.reopen() {
            Ok(now) => now,
            Err(_) => return Ok(None),
        };
        if self.proof_at(&now, Some(device), block)? == MountProof::Ours {
            return Err(VolumeError::Internal(format!(
                "{} is still mounted after unmount (stacked mounts?)",
                at.path().display()
            )));
        }
        Ok(Some(now))
    }

    /// Looks at the name `r` was resolved from again and unmounts what is there only when
    /// it is a mount of the volume; `false` when it was not.
    pub fn unmount_if_ours(
        &self,
        r: &Resolved,
        device: Option<(u64, u64)>,
        block: bool,
    ) -> Result<bool, VolumeError> {
        let now = r
            .reopen()
            .map_err(VolumeError::mount("looking at the path again"))?;
        match (self.proof_at(&now, device, block)?, device) {
            (MountProof::Ours, Some(d)) => self.unmount_proven(now, d, block).map(|_| true),
            _ => Ok(false),
        }
    }

    /// Undoes a mount made by this call when its record could not be written: a mount the
    /// reviver does not know of would not come back after a reboot.
    fn undo_mount(&self, r: &Resolved, device: (u64, u64), block: bool) {
        if let Err(e) = self.unmount_if_ours(r, Some(device), block) {
            tracing::error!(path = %r.path().display(), error = %e,
                "cannot undo the mount whose state record failed; the CO's retry records it");
        }
    }

    /// A fresh staging mount of an fsdax volume must show DAX in the mount table;
    /// otherwise it is unmounted again, so that no one uses the volume believing it is DAX.
    pub fn require_dax(
        &self,
        volume: &str,
        staging: &Resolved,
        device: (u64, u64),
        fsdax: bool,
    ) -> Result<(), VolumeError> {
        let m = self
            .host
            .mount_at(staging.path())
            .map_err(VolumeError::mount("reading the mount table"))?;
        let Err(shown) = options::dax_as_needed(m.as_ref(), fsdax) else {
            return Ok(());
        };
        self.unmount_if_ours(staging, Some(device), false)?;
        Err(VolumeError::Precondition(format!(
            "volume {volume} is on fsdax persistent memory, but the kernel mounted it without DAX (mount options {shown}); unmounted again"
        )))
    }

    /// Whether the start of a volume we created still holds lvcreate's zeroes, so that
    /// nothing was ever written there and blkid need not run. Any doubt (a device that
    /// cannot be read directly) answers no, and blkid decides.
    fn head_untouched(&self, t: &StageTarget) -> bool {
        if t.adopted {
            return false;
        }
        match self.host.head_is_zeroed(&t.dev) {
            Ok(zeroed) => zeroed,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the device's start directly; probing with blkid");
                false
            }
        }
    }

    /// Opens (and on first use formats) an encrypted volume's mapping for a stage, inside
    /// the first-format mark: the mark is written before luksFormat and stays until the
    /// filesystem's first mount ([`VolumeNode::stage`] removes it); a raw block volume has
    /// nothing after the open, so its mark goes once the mapping is proven open. Returns
    /// whether this call opened the mapping. `t.dev` is the LV before, the mapping after,
    /// and `t` carries the mark's tag (shared VGs) on to the stage.
    pub async fn open_encrypted(
        &self,
        crypt: &crate::crypt::Crypt,
        t: &mut StageTarget,
        cap: &Capability,
        keys: crate::crypt::Keys<'_>,
    ) -> Result<bool, VolumeError> {
        let id = t.volume_id();
        let mut mark = t.mark();
        let marked = !t.adopted && mark.found(self.store)?;
        let empty_head = self.head_untouched(t);
        let p = crypt
            .prepare(
                self.host, self.fs, &id, &t.vg, &t.lv, &t.dev, t.adopted, empty_head, marked,
            )
            .await?;
        if p.plan.formats() && !marked {
            let what = match &cap.access {
                Access::Mount { fs_type, .. } => fs_type.as_str(),
                _ => "luks2",
            };
            mark.set(self.store, self.lvm, what).await?;
        }
        t.formatting_tag = mark.tag.clone();
        let (mapped, opened) = crypt.act(self.host, &id, &t.dev, &p, keys).await?;
        if cap.is_block() && (marked || p.plan.formats()) {
            mark.clear(self.store, self.lvm).await;
            t.formatting_tag = None;
        }
        t.dev = mapped;
        Ok(opened)
    }

    /// Stages the volume at the resolved (and created) `staging` directory, the LV being
    /// active: for a filesystem, mkfs when the device holds nothing (or, under a
    /// first-format mark, what an interrupted first format left), then the mount; then
    /// the state record `record`. A repeated stage only finds the mount there.
    pub async fn stage(
        &self,
        t: &StageTarget,
        staging: &Resolved,
        cap: &Capability,
        mkfs_options: &[String],
        record: Record,
    ) -> Result<(), VolumeError> {
        let mounted = if cap.is_block() {
            false
        } else {
            self.stage_filesystem(t, staging, cap, mkfs_options).await?
        };
        if !mounted && !cap.is_block() {
            // Staged already (the kernel mounted it, so its mkfs finished): a first-format
            // mark a crash left after that mount is done with.
            t.mark().clear(self.store, self.lvm).await;
        }
        if let Err(e) = record::save_stage(self.store, record) {
            if let (true, Some(device)) = (mounted, self.host.device_numbers(&t.dev)) {
                self.undo_mount(staging, device, false);
            }
            return Err(e);
        }
        Ok(())
    }

    /// The filesystem part of [`VolumeNode::stage`]; `true` when this call mounted it.
    async fn stage_filesystem(
        &self,
        t: &StageTarget,
        staging: &Resolved,
        cap: &Capability,
        mkfs_options: &[String],
    ) -> Result<bool, VolumeError> {
        let (dev, fsdax) = (t.dev.as_path(), t.fsdax);
        let volume = t.volume_id();
        let Access::Mount {
            fs_type,
            mount_flags,
        } = &cap.access
        else {
            return Ok(false);
        };
        // Everything the request can get wrong is checked before the device is touched.
        let opts =
            options::staging_mount_options(mount_flags, cap.is_read_only_mode(), fs_type, fsdax)
                .map_err(|e| VolumeError::invalid("volume_capability.mount.mount_flags", e))?;
        let mkfs_options = options::mkfs_options(fs_type, mkfs_options, fsdax)
            .map_err(|e| VolumeError::invalid("volume_context", e))?;
        let numbers = self.host.device_numbers(dev).ok_or_else(|| {
            VolumeError::Precondition(format!("device {} is not there", dev.display()))
        })?;
        // What is at the resolved staging directory itself decides, not a mount table
        // entry found by its name.
        let here = self
            .host
            .identity(staging)
            .map_err(VolumeError::mount("inspecting the staging path"))?;
        let mount_at = || {
            self.host
                .mount_at(staging.path())
                .map_err(VolumeError::mount("reading the mount table"))
        };
        if here.mount_root {
            if vglet_mount::mount_proof(&here, numbers, false) != MountProof::Ours {
                let m = mount_at()?;
                return Err(VolumeError::AlreadyExists(format!(
                    "staging path {} already has another device mounted ({})",
                    staging.path().display(),
                    m.as_ref().and_then(|m| m.source.as_deref()).unwrap_or("?")
                )));
            }
            if cap.is_read_only_mode() != here.read_only {
                return Err(VolumeError::AlreadyExists(format!(
                    "volume {volume} is already staged at {} with another read-only setting",
                    staging.path().display()
                )));
            }
            if options::dax_as_needed(mount_at()?.as_ref(), fsdax).is_err() {
                return Err(VolumeError::Precondition(format!(
                    "volume {volume} is on fsdax persistent memory but staged at {} without DAX; unstage it and stage it again",
                    staging.path().display()
                )));
            }
            return Ok(false);
        }
        // Any signature counts, partition tables included: mkfs only ever runs on a device
        // that holds nothing at all, or, under a first-format mark, nothing but what our own
        // interrupted mkfs left (see [`crate::first_format`]).
        let mut mark = t.mark();
        let marked = !t.adopted && mark.found(self.store)?;
        let found = if self.head_untouched(t) {
            tracing::debug!(device = %dev.display(), "start of the LV still zeroed by lvcreate: empty");
            None
        } else {
            self.fs
                .detect_any_signature(dev)
                .await
                .map_err(VolumeError::mount("probing the device"))?
        };
        let plan = first_format::plan(
            &volume,
            dev,
            fs_type,
            t.adopted,
            marked,
            found.as_ref(),
            || self.host.mkfs_progress(dev, fs_type),
        )?;
        if plan.formats() {
            if !marked {
                mark.set(self.store, self.lvm, fs_type).await?;
            }
            tracing::info!(device = %dev.display(), fs = %fs_type, "formatting");
            if plan == Plan::FormatAgain {
                self.fs
                    .mkfs_over_half_made(dev, fs_type, &mkfs_options)
                    .await
            } else {
                self.fs.mkfs(dev, fs_type, &mkfs_options).await
            }
            .map_err(VolumeError::mount(format!(
                "mkfs.{fs_type} on {}",
                dev.display()
            )))?;
        }
        // Onto the resolved directory: mount(2) follows /proc/self/fd/N to exactly it.
        // mount(2) rather than fsopen/fsmount: the checked options (flags + data string)
        // go to the kernel as they always did, with no per-option fsconfig translation.
        self.mounter
            .mount(dev, &staging.proc_path(), fs_type, &opts)
            .map_err(|e| {
                let hint = if fsdax {
                    " (fsdax volume mounted with dax=always: xfs must be without reflink, ext4 with page-sized blocks)"
                } else {
                    ""
                };
                VolumeError::mount(format!(
                    "mounting {} at {}{hint}",
                    dev.display(),
                    staging.path().display()
                ))(e)
            })?;
        self.require_dax(&volume, staging, numbers, fsdax)?;
        // mkfs and the first mount succeeded: the first format is over.
        if marked || plan.formats() {
            mark.clear(self.store, self.lvm).await;
        }
        tracing::info!(staging = %staging.path().display(), dax = fsdax, "staged");
        Ok(true)
    }

    /// Publishes a staged volume at `target_asked`: a bind of the staging mount (or of the
    /// device node, raw block) onto the resolved target, read-only when asked, then the
    /// target in the record (`record` is written when the volume has none yet). A repeat
    /// finds the bind there and only records it.
    pub fn publish(
        &self,
        volume: &str,
        proven: &Proven,
        staging_asked: &Path,
        target_asked: &Path,
        readonly: bool,
        record: Record,
    ) -> Result<(), VolumeError> {
        let target = vglet_mount::normalize_path(target_asked);
        let record_target = Target {
            path: target.clone(),
            read_only: readonly,
        };
        // kubelet normally creates the parent; other COs (and csictl) may not. Resolution
        // creates what is missing, relative to each resolved parent, and refuses a symlink
        // in any component.
        let block = proven.cap.is_block();
        let create = if block { Create::File } else { Create::Dir };
        let target_at = vglet_mount::resolve(target_asked, create)
            .map_err(VolumeError::mount("target_path"))?;
        let here = self
            .host
            .identity(&target_at)
            .map_err(VolumeError::mount("inspecting the target path"))?;
        match vglet_mount::mount_proof(&here, proven.source_numbers, block) {
            MountProof::Ours => {
                if readonly != here.read_only {
                    return Err(VolumeError::AlreadyExists(format!(
                        "volume {volume} is already published at {} with another read-only setting",
                        target.display()
                    )));
                }
                return record::save_target(self.store, record, record_target);
            }
            MountProof::Foreign => {
                return Err(VolumeError::AlreadyExists(format!(
                    "target path {} already has something else mounted",
                    target.display()
                )));
            }
            MountProof::NotMounted => {}
        }
        let source = if block {
            proven.source.as_path()
        } else {
            staging_asked
        };
        self.bind_onto(
            volume,
            block,
            source,
            proven.source_numbers,
            &target_at,
            readonly,
        )?;
        if let Err(e) = record::save_target(self.store, record, record_target) {
            self.undo_mount(&target_at, proven.source_numbers, block);
            return Err(e);
        }
        tracing::info!(target = %target.display(), readonly, "published");
        Ok(())
    }

    /// The bind itself, onto a resolved target where nothing is mounted. Its source is
    /// resolved as well: for a filesystem the staging mount at `source`, proven to be of
    /// the volume's device (`numbers`), for raw block the device node the driver names.
    pub fn bind_onto(
        &self,
        volume: &str,
        block: bool,
        source: &Path,
        numbers: (u64, u64),
        target_at: &Resolved,
        readonly: bool,
    ) -> Result<(), VolumeError> {
        let staging_at;
        let source = if block {
            source.to_path_buf()
        } else {
            staging_at = vglet_mount::resolve(source, Create::Nothing)
                .map_err(VolumeError::mount("staging_target_path"))?;
            if self.proof_at(&staging_at, Some(numbers), false)? != MountProof::Ours {
                return Err(VolumeError::Precondition(format!(
                    "volume {volume} is not staged at {}; NodeStageVolume first",
                    staging_at.path().display()
                )));
            }
            staging_at.proc_path()
        };
        self.mounter
            .bind(&source, &target_at.proc_path(), readonly)
            .map_err(VolumeError::mount(format!(
                "bind-mounting {}",
                target_at.path().display()
            )))
    }

    /// Where the volume is still published on this node: each recorded target that is
    /// still a mount of the volume's device, and (filesystems) any other mount of its
    /// device besides the staging mount, recorded or not.
    pub fn remaining_publishes(
        &self,
        record: Option<&Record>,
        device: Option<(u64, u64)>,
        staging: &Path,
    ) -> Result<Vec<PathBuf>, VolumeError> {
        let Some(device) = device else {
            return Ok(Vec::new());
        };
        let block = record.is_some_and(Record::is_block);
        let mut left = Vec::new();
        for t in record.map(|r| r.targets.as_slice()).unwrap_or_default() {
            if let Ok(r) = vglet_mount::resolve(&t.path, Create::Nothing)
                && self.proof_at(&r, Some(device), block)? == MountProof::Ours
            {
                left.push(r.path().to_path_buf());
            }
        }
        if !block {
            let mounts = self
                .host
                .mounts_of_device(device)
                .map_err(VolumeError::mount("reading the mount table"))?;
            for m in mounts {
                if m.mount_point != staging && !left.contains(&m.mount_point) {
                    left.push(m.mount_point);
                }
            }
        }
        Ok(left)
    }

    /// Unmounts the staging mount at `staging_asked` if it is the volume's. `LeftAlone`:
    /// something else is mounted there (the volume's mount may be under it), so the
    /// record must stay. A path that cannot be reached without a symlink is refused when
    /// the volume has a record, and not this volume's staging path otherwise.
    pub fn unstage_at(
        &self,
        volume: &str,
        record: Option<&Record>,
        device: Option<(u64, u64)>,
        staging_asked: &Path,
    ) -> Result<Unpublished, VolumeError> {
        match vglet_mount::resolve(staging_asked, Create::Nothing) {
            Ok(r) => match (self.proof_at(&r, device, false)?, device) {
                (MountProof::Ours, Some(d)) => drop(self.unmount_proven(r, d, false)?),
                (MountProof::NotMounted, _) => {}
                _ => {
                    tracing::warn!("something else is mounted at the staging path; left alone");
                    return Ok(Unpublished::LeftAlone);
                }
            },
            Err(vglet_mount::MountError::NotFound { .. }) => {}
            Err(e @ vglet_mount::MountError::InvalidPath { .. }) if record.is_some() => {
                return Err(VolumeError::Precondition(format!(
                    "the staging path of volume {volume} cannot be reached without following a symlink, so its mount is left alone: {e}"
                )));
            }
            Err(vglet_mount::MountError::InvalidPath { .. }) => {
                return Ok(Unpublished::LeftAlone);
            }
            Err(e) => return Err(VolumeError::mount("resolving staging_target_path")(e)),
        }
        Ok(Unpublished::Done)
    }

    /// Removes the volume's publish at `target_asked` if what is mounted there is the
    /// volume's LV, then the file or directory (only an empty one, through the resolved
    /// parent). Anything else mounted there is left alone.
    pub fn unpublish_at(
        &self,
        record: Option<&Record>,
        device: Option<(u64, u64)>,
        target_asked: &Path,
    ) -> Result<Unpublished, VolumeError> {
        let target = vglet_mount::normalize_path(target_asked);
        let r = match vglet_mount::resolve(target_asked, Create::Nothing) {
            Ok(r) => r,
            Err(vglet_mount::MountError::NotFound { .. }) => return Ok(Unpublished::Done),
            Err(e @ vglet_mount::MountError::InvalidPath { .. }) => {
                tracing::warn!(error = %e, "the target cannot be reached without a symlink; left alone");
                return Ok(Unpublished::LeftAlone);
            }
            Err(e) => return Err(VolumeError::mount("resolving target_path")(e)),
        };
        // A record without its access kind (no record at all): either proof.
        let kinds: &[bool] = match record {
            Some(rec) => &[rec.is_block()],
            None => &[false, true],
        };
        let mut proof = MountProof::NotMounted;
        let mut ours_as = None;
        for block in kinds {
            match self.proof_at(&r, device, *block)? {
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
                return Ok(Unpublished::LeftAlone);
            }
            _ => Some(r),
        };
        // The spec asks the SP to remove the file or directory it created there; only an
        // empty one is taken, through the resolved parent.
        if let Some(below) = below
            && !below
                .remove_created()
                .map_err(VolumeError::mount("removing the target"))?
        {
            tracing::warn!(target = %target.display(), "the target is not empty; left in place");
        }
        Ok(Unpublished::Done)
    }
}
