//! CSI Node service, the gRPC adapter: each RPC parses and validates its request, reads
//! LVM only where the state record (or this process's CreateVolume, [`crate::node_state::vouched`])
//! cannot answer, activates, and leaves staging, publishing and the proven unmounts to the
//! node-volume library ([`vglet_volume::VolumeNode`], shared with the reviver), whose
//! errors map to codes in [`crate::status::volume_status`]. Every step first looks at the
//! real state (LV active? mounted? which device?) and does only what is missing, so a
//! repeated call is a no-op and a half-done one is finished.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::Instrument;
use vglet_csi_proto::v1::node_server::Node;
use vglet_csi_proto::v1::*;
use vglet_mount::{Create, MountEntry, MountProof, Resolved};
use vglet_state::{Record, StateError, VolumeLock};
use vglet_volume::host::{NodeHost, dm_device};
use vglet_volume::node::Unpublished;
use vglet_volume::{
    Proven, StageTarget, SystemHost, VolumeError, VolumeNode, activation_for, kind_of, record,
};

use crate::driver::{Driver, OwnedVolume};
use crate::node_state::staged;
use crate::node_state::vouched;
use crate::rules::capability::{self, Capability, VgKind};
use crate::rules::health;
use crate::rules::volume_id::VolumeId;
use crate::status::{IntoStatus, invalid, lvm_status, mount_status, volume_status};

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

/// The node's read side: the kernel (the library's unit tests use its fake).
static HOST: SystemHost = SystemHost;

/// The mount at `path`, if any (top of the stack).
fn mounted_at(path: &Path) -> Result<Option<MountEntry>, Status> {
    HOST.mount_at(path)
        .map_err(|e| mount_status("reading the mount table", e))
}

fn state_status(context: &str, e: StateError) -> Status {
    volume_status(VolumeError::state(context)(e))
}

/// The LV a NodeStageVolume works on, as the lvm read describes it.
fn stage_target(v: &OwnedVolume, vg: &vglet_lvm::Vg) -> StageTarget {
    StageTarget {
        vg: v.id.vg.clone(),
        lv: v.id.lv.clone(),
        lv_uuid: v.lv.uuid.clone(),
        created_as: v.content(),
        adopted: v.adopted.is_some(),
        kind: Driver::vg_kind(vg),
        fsdax: vglet_volume::options::is_fsdax_vg(&vg.tags),
        dev: device_of(v),
        formatting_tag: crate::node_state::first_format::tag_on(&v.lv.tags),
    }
}

fn device_of(v: &OwnedVolume) -> PathBuf {
    vglet_volume::lv_device_path(&v.id.vg, &v.id.lv, &v.lv.path)
}

/// What the LV's tags say of its encryption; a tag this driver does not know refuses the
/// volume (staged in the clear it would be the wrong volume).
fn encryption_of(
    id: &VolumeId,
    tags: &[String],
) -> Result<Option<vglet_lvm::tags::Encryption>, Status> {
    vglet_lvm::tags::Encryption::from_tags(tags).map_err(|t| {
        Status::failed_precondition(format!(
            "volume {id} carries the encryption tag {t}, which this driver does not know; not staged"
        ))
    })
}

/// The key of an encrypted volume from NodeStageVolume's secrets; `None` for a volume in
/// the clear. A missing key is the request's fault (the StorageClass names no
/// node-stage secret, or the secret lacks the key). The key's value is never in a message.
fn encryption_key<'a>(
    id: &VolumeId,
    tags: &[String],
    secrets: &'a std::collections::HashMap<String, String>,
) -> Result<Option<&'a str>, Status> {
    use vglet_volume::crypt::KEY_SECRET;
    if encryption_of(id, tags)?.is_none() {
        return Ok(None);
    }
    match secrets.get(KEY_SECRET) {
        Some(k) if !k.is_empty() => Ok(Some(k.as_str())),
        _ => Err(invalid(
            "secrets",
            format!(
                "volume {id} is encrypted and needs its key under {KEY_SECRET:?} in the node-stage secret (csi.storage.k8s.io/node-stage-secret-name and -namespace in the StorageClass)"
            ),
        )),
    }
}

/// The old key of a key rotation in NodeStageVolume's secrets
/// ([`vglet_volume::crypt::PREVIOUS_KEY_SECRET`]), if given and not empty.
fn previous_key(secrets: &std::collections::HashMap<String, String>) -> Option<&[u8]> {
    secrets
        .get(vglet_volume::crypt::PREVIOUS_KEY_SECRET)
        .filter(|k| !k.is_empty())
        .map(String::as_bytes)
}

/// The key NodeExpandVolume of an encrypted volume needs for `cryptsetup resize`: the
/// node-expand secret's [`vglet_volume::crypt::KEY_SECRET`].
fn expand_key<'a>(
    id: &VolumeId,
    secrets: &'a std::collections::HashMap<String, String>,
) -> Result<&'a str, Status> {
    use vglet_volume::crypt::KEY_SECRET;
    match secrets.get(KEY_SECRET) {
        Some(k) if !k.is_empty() => Ok(k.as_str()),
        _ => Err(invalid(
            "secrets",
            format!(
                "volume {id} is encrypted; growing it needs its key under {KEY_SECRET:?} in the node-expand secret (csi.storage.k8s.io/node-expand-secret-name and -namespace in the StorageClass)"
            ),
        )),
    }
}

/// The refusal's suffix naming the holder of an LV's lock ([`crate::ops::in_use::lock_holder`]).
fn holder_text(host_id: u64, vg_tags: &[String]) -> String {
    format!(
        "; the lock is held by {}",
        crate::ops::in_use::lock_holder(host_id, vg_tags)
    )
}

impl NodeService {
    /// The node-volume library over this driver's mounter, tools and records.
    fn vol(&self) -> VolumeNode<'_> {
        VolumeNode {
            host: &HOST,
            mounter: self.driver.mounter.as_ref(),
            fs: &self.driver.fs,
            lvm: &self.driver.lvm,
            store: self.driver.state.as_ref(),
        }
    }

    /// The device numbers of the volume's LV on this node, proven to be the LV with
    /// `lv_uuid`; `None` when it is not active here.
    fn volume_device(&self, id: &VolumeId, lv_uuid: &str) -> Option<(u64, u64)> {
        self.vol().volume_device(&id.vg, &id.lv, lv_uuid)
    }

    /// Makes the LV's device node exist on this node, as [`activation_for`] says.
    async fn activate(
        &self,
        v: &OwnedVolume,
        vg_tags: &[String],
        kind: VgKind,
        cap: &Capability,
    ) -> Result<(), Status> {
        let mode = activation_for(kind, cap);
        if !vglet_volume::activation::needs_activation(kind, v.lv.active) {
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

    /// The volume's state record; an unreadable one counts as none (the reviver reports it).
    fn record_of(&self, id: &VolumeId) -> Option<Record> {
        record::record_of(self.driver.state.as_ref(), &id.to_string())
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
        match self.driver.volume_in_vg(id).await.map_err(volume_status) {
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

    /// A publish proven by the volume's state record and the kernel, without lvm (see
    /// [`staged`]); `None` when they do not prove it, and the lvm read must decide.
    fn staged_without_lvm(
        &self,
        id: &VolumeId,
        cap: Option<&VolumeCapability>,
        staging: &Path,
    ) -> Result<Option<(Record, Proven)>, Status> {
        let Some(store) = &self.driver.state else {
            return Ok(None);
        };
        let record = match store.get(&id.to_string()) {
            // An encrypted volume is published from its mapping, which the lvm read below
            // proves; the record's proof is of the LV itself.
            Ok(Some(r)) if r.crypt_mapping.is_some() => return Ok(None),
            Ok(Some(r)) => r,
            Ok(None) => return Ok(None),
            Err(e) => {
                tracing::debug!(error = %e, "state record unreadable; reading lvm");
                return Ok(None);
            }
        };
        let dm = dm_device(&HOST, &vglet_volume::device_path(&id.vg, &id.lv));
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
        let ask = staged::PublishAsk {
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
    ) -> Result<(Record, Proven), Status> {
        let (v, vg, _) = self.driver.volume_in_vg(id).await.status()?;
        let target = stage_target(&v, &vg);
        let cap = capability::validate("volume_capability", cap, target.kind).status()?;
        target.check_capability(&cap).map_err(volume_status)?;
        let record = record::stage_record(&target, &self.driver.cfg.driver_name, &cap, staging);
        let encrypted = encryption_of(id, &v.lv.tags)?.is_some();
        let (source, source_numbers) = if cap.is_block() && encrypted {
            // Raw block of an encrypted volume: the mapping, never the LV's ciphertext.
            let mapped = self.vol().volume_device(&id.vg, &id.lv, &v.lv.uuid);
            let lv = self.vol().lv_device(&id.vg, &id.lv, &v.lv.uuid);
            match (mapped, vglet_volume::crypt::mapping_name(&id.vg, &id.lv)) {
                (Some(m), Some(name)) if Some(m) != lv => {
                    (vglet_volume::crypt::mapping_path(&name), m)
                }
                _ => {
                    return Err(Status::failed_precondition(format!(
                        "encrypted volume {id} is not open on this node; NodeStageVolume first"
                    )));
                }
            }
        } else if cap.is_block() {
            let dev = target.dev;
            match HOST.device_numbers(&dev) {
                Some(numbers) if v.lv.active => (dev, numbers),
                _ => {
                    return Err(Status::failed_precondition(format!(
                        "volume {id} is not active on this node; NodeStageVolume first"
                    )));
                }
            }
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
            Proven {
                cap,
                source,
                source_numbers,
            },
        ))
    }

    /// A volume NodeStageVolume may stage without reading lvm: this process created it
    /// and the kernel shows that very LV active here (see [`crate::node_state::vouched`]); `None` sends
    /// the caller to the lvm read.
    fn vouched_target(&self, id: &VolumeId) -> Option<StageTarget> {
        let vouched = self.driver.vouched.get(id)?;
        if !self.driver.serves_vg(&id.vg) {
            return None;
        }
        let dev = vglet_volume::device_path(&id.vg, &id.lv);
        if !vouched::device_is_lv(&HOST, &dev, &vouched.lv_uuid) {
            tracing::debug!("the LV created here is not active under its uuid; reading lvm");
            return None;
        }
        Some(StageTarget {
            vg: id.vg.clone(),
            lv: id.lv.clone(),
            lv_uuid: vouched.lv_uuid,
            created_as: Some(vouched.content),
            adopted: false,
            // Vouched only for node-local VGs without fsdax memory.
            kind: VgKind::Local,
            fsdax: false,
            dev,
            formatting_tag: None,
        })
    }
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_stage_volume(
        &self,
        req: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        let req = req.into_inner();
        crate::rules::limits::check(&req).status()?;
        let id = parse_node_id(&req.volume_id)?;
        let span = tracing::info_span!("NodeStageVolume", volume_id = %id);
        // Each handler's span travels with its future (`.instrument`): an entered guard
        // held across awaits is exited on another thread and corrupts the subscriber.
        async move {
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
                    let (v, vg, _) = self.driver.volume_in_vg(&id).await.status()?;
                    (stage_target(&v, &vg), Some((v, vg)))
                }
            };
            let kind = target.kind;
            let cap = capability::validate("volume_capability", req.volume_capability.as_ref(), kind)
                .status()?;
            target.check_capability(&cap).map_err(volume_status)?;
            // The LV's tag says whether it is encrypted (a vouched volume never is); the key
            // and cryptsetup are checked before anything is activated or opened.
            let key = match &read {
                Some((v, _)) => encryption_key(&id, &v.lv.tags, &req.secrets)?,
                None => None,
            };
            if key.is_some() {
                self.driver.crypt.available().map_err(volume_status)?;
            }
            // One staging path per volume: a second one would mount it twice.
            if let Some(first) = self
                .record_of(&id)
                .and_then(|r| record::staged_elsewhere(&r, &target.lv_uuid, &staging))
            {
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
            // The StorageClass's mkfsOptions, validated by CreateVolume and again by the mount
            // layer's per-filesystem allow-list before they reach mkfs.
            let mkfs_options: Vec<String> = req
                .volume_context
                .get(crate::rules::params::CONTEXT_MKFS_OPTIONS)
                .map(|o| o.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default();
            let mut target = target;
            let mut mapping = None;
            if let Some(key) = key {
                let lv_dev = target.dev.clone();
                // Inside the first-format mark: luksFormat, a key rotation, open; `target`
                // is the mapping afterwards.
                let opened = self
                    .vol()
                    .open_encrypted(
                        &self.driver.crypt,
                        &mut target,
                        &cap,
                        vglet_volume::crypt::Keys {
                            key: key.as_bytes(),
                            previous: previous_key(&req.secrets),
                        },
                    )
                    .await
                    .map_err(volume_status)?;
                mapping = Some((opened, HOST.device_numbers(&lv_dev)));
            }
            let mut record =
                record::stage_record(&target, &self.driver.cfg.driver_name, &cap, &staging);
            record.crypt_mapping = mapping
                .is_some()
                .then(|| vglet_volume::crypt::mapping_name(&id.vg, &id.lv))
                .flatten();
            let staged = self
                .vol()
                .stage(&target, &staging_dir, &cap, &mkfs_options, record)
                .await;
            if let (Err(_), Some((true, lv_numbers))) = (&staged, mapping) {
                // Nothing of this call's open is left behind a failed stage.
                if let Err(e) = self
                    .driver
                    .crypt
                    .close_if_ours(&HOST, &id.vg, &id.lv, lv_numbers)
                    .await
                {
                    tracing::warn!(error = %e, "cannot close the mapping opened for a failed stage");
                }
            }
            staged.map_err(volume_status)?;
            Ok(Response::new(NodeStageVolumeResponse {}))
        }
        .instrument(span)
        .await
    }

    async fn node_unstage_volume(
        &self,
        req: Request<NodeUnstageVolumeRequest>,
    ) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        let req = req.into_inner();
        let id = parse_node_id(&req.volume_id)?;
        let span = tracing::info_span!("NodeUnstageVolume", volume_id = %id);
        async move {
            let staging_asked = parse_path("staging_target_path", &req.staging_target_path)?;
            let staging = vglet_mount::normalize_path(&staging_asked);
            let _guard = self.driver.inflight.acquire(&id.to_string())?;
            let _lock = self.lock_state(&id)?;
            let store = self.driver.state.as_ref();
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
                    record::remove_record(store, &id.to_string()).map_err(volume_status)?;
                }
                return Ok(Response::new(NodeUnstageVolumeResponse {}));
            };
            let device = self.volume_device(&id, &lv_uuid);
            let vol = self.vol();
            let left = vol
                .remaining_publishes(record.as_ref(), device, &staging)
                .map_err(volume_status)?;
            if !left.is_empty() {
                let left: Vec<String> = left.iter().map(|p| p.display().to_string()).collect();
                return Err(Status::failed_precondition(format!(
                    "volume {id} is still published at {}; NodeUnpublishVolume first",
                    left.join(", ")
                )));
            }
            let id_text = id.to_string();
            if vol
                .unstage_at(&id_text, record.as_ref(), device, &staging_asked)
                .map_err(volume_status)?
                == Unpublished::LeftAlone
            {
                // The record stays: the volume's mount may be under this one.
                return Ok(Response::new(NodeUnstageVolumeResponse {}));
            }
            // An encrypted volume's mapping goes once nothing is mounted from it, only when it
            // is proven to sit on this LV, and before the record: a failed close is retried by
            // the CO's next NodeUnstageVolume, which must still find the record.
            let lv_numbers = vol.lv_device(&id.vg, &id.lv, &lv_uuid);
            self.driver
                .crypt
                .close_if_ours(&HOST, &id.vg, &id.lv, lv_numbers)
                .await
                .map_err(volume_status)?;
            // Only once nothing is mounted: a record may outlive its mount (the reviver then
            // mounts it again), a mount must never outlive its record.
            record::remove_record(store, &id_text).map_err(volume_status)?;
            // Shared VGs must give the LV lock back so another node can take the volume; local
            // LVs stay active (cheap, and the next stage on this node skips activation). The
            // record's activation says which; only a volume without one needs the VG read.
            let shared = match &record {
                _ if !self.driver.serves_vg(&id.vg) => false,
                Some(r) => kind_of(r.activation) == VgKind::Shared,
                None => self
                    .driver
                    .vg(&id.vg)
                    .await
                    .is_ok_and(|vg| Driver::vg_kind(&vg) == VgKind::Shared),
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
        .instrument(span)
        .await
    }

    async fn node_publish_volume(
        &self,
        req: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        let req = req.into_inner();
        crate::rules::limits::check(&req).status()?;
        let id = parse_node_id(&req.volume_id)?;
        let span = tracing::info_span!("NodePublishVolume", volume_id = %id);
        async move {
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
            let readonly = req.readonly || proven.cap.is_read_only_mode();
            if let Some(other) = self.single_writer_conflict(&id, &proven.cap, readonly, &target) {
                return Err(Status::failed_precondition(format!(
                    "volume {id} is SINGLE_NODE_SINGLE_WRITER and already published read/write at {}; it can only be published once as read/write",
                    other.display()
                )));
            }
            self.vol()
                .publish(
                    &id.to_string(),
                    &proven,
                    &staging_asked,
                    &target_asked,
                    readonly,
                    record,
                )
                .map_err(volume_status)?;
            Ok(Response::new(NodePublishVolumeResponse {}))
        }
        .instrument(span)
        .await
    }

    async fn node_unpublish_volume(
        &self,
        req: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let req = req.into_inner();
        let id = parse_node_id(&req.volume_id)?;
        let span = tracing::info_span!("NodeUnpublishVolume", volume_id = %id);
        async move {
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
            let recorded = record
                .as_ref()
                .is_some_and(|r| record::names_target(r, &target));
            if self.driver.state.is_some() && !recorded {
                tracing::info!(target = %target.display(), "not published there; nothing touched");
                return ok();
            }
            let Some(lv_uuid) = self.lv_uuid_of(&id, record.as_ref()).await? else {
                return ok();
            };
            let device = self.volume_device(&id, &lv_uuid);
            if self
                .vol()
                .unpublish_at(record.as_ref(), device, &target_asked)
                .map_err(volume_status)?
                == Unpublished::LeftAlone
            {
                return ok();
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
        .instrument(span)
        .await
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
        let v = self.driver.usable_volume(&id).await.status()?;
        let at = vglet_mount::resolve(asked, Create::Nothing).map_err(|e| {
            Status::not_found(format!(
                "volume_path {} of volume {id}: {e}",
                path.display()
            ))
        })?;
        let here = at
            .identity()
            .map_err(|e| mount_status("inspecting volume_path", e))?;
        let device = self
            .volume_device(&id, &v.lv.uuid)
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
        crate::rules::limits::check(&req).status()?;
        let id = parse_node_id(&req.volume_id)?;
        let span = tracing::info_span!("NodeExpandVolume", volume_id = %id);
        async move {
            let asked = parse_path("volume_path", &req.volume_path)?;
            // Resolved only to refuse a symlinked path; the grow tools take the path by name.
            let at = vglet_mount::resolve(&asked, Create::Nothing).map_err(|e| match e {
                e @ vglet_mount::MountError::NotFound { .. } => mount_status("volume_path", e),
                e => invalid("volume_path", e),
            })?;
            let path = at.path().to_path_buf();
            let range =
                crate::rules::capacity::Range::parse("capacity_range", req.capacity_range.as_ref())
                    .status()?;
            let _guard = self.driver.inflight.acquire(&id.to_string())?;
            let (v, vg, report) = self.driver.volume_in_vg(&id).await.status()?;
            // An encrypted volume's filesystem is on its mapping, which `cryptsetup resize`
            // grows after the LV, keyed by the node-expand secret; it must be open here.
            let crypt_key = match encryption_of(&id, &v.lv.tags)? {
                None => None,
                Some(_) => Some(expand_key(&id, &req.secrets)?),
            };
            let lv_numbers = self.vol().lv_device(&id.vg, &id.lv, &v.lv.uuid);
            let mapping = match crypt_key {
                Some(_) => Some(
                    self.driver
                        .crypt
                        .open_mapping(&HOST, &id.to_string(), &id.vg, &id.lv, lv_numbers)
                        .map_err(volume_status)?,
                ),
                None => None,
            };
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
                && self.driver.cfg.expansion == crate::config::Expansion::Node;
            if range.required > v.lv.size && !extend_here {
                return Err(Status::out_of_range(format!(
                    "volume {id} is {} bytes, smaller than the {} bytes asked; expand it on the controller first",
                    v.lv.size, range.required
                )));
            }
            let is_block = v.content().is_some_and(|c| c.is_block())
                || req.volume_capability.as_ref().is_some_and(|c| {
                    matches!(c.access_type, Some(volume_capability::AccessType::Block(_)))
                })
                // A static volume without a capability: a raw block volume is published as a
                // device file, a filesystem as a directory.
                || (v.content().is_none()
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
                let fs_type = match v.content() {
                    Some(vglet_lvm::tags::Content::Filesystem(fs)) => fs,
                    _ => mount.fs_type.clone(),
                };
                let dev = match &mapping {
                    Some((name, _)) => vglet_volume::crypt::mapping_path(name),
                    None => device_of(&v),
                };
                let here = at
                    .identity()
                    .map_err(|e| mount_status("inspecting volume_path", e))?;
                let numbers = HOST.device_numbers(&dev).ok_or_else(|| {
                    Status::failed_precondition(format!("device {} is not there", dev.display()))
                })?;
                if vglet_mount::mount_proof(&here, numbers, false) != MountProof::Ours {
                    return Err(Status::not_found(format!(
                        "{} is not a mount of volume {id}",
                        path.display()
                    )));
                }
                Some((fs_type, dev))
            };
            // The key is checked before anything grows: `cryptsetup resize` itself checks it
            // only when the kernel keyring holds the volume key, and a refused key must
            // leave LV, mapping and filesystem as they were.
            if let Some(key) = crypt_key {
                self.driver
                    .crypt
                    .check_key(&id.to_string(), &device_of(&v), key.as_bytes())
                    .await
                    .map_err(volume_status)?;
            }
            // Only now, with the path proven to be this volume's: a bad request changes nothing.
            let size = if extend_here {
                crate::ops::expand::grow_lv(&self.driver, &v, &vg, &report, range)
                    .await
                    .status()?
            } else {
                v.lv.size
            };
            if let Some(key) = crypt_key {
                self.driver
                    .crypt
                    .resize(
                        &HOST,
                        &id.to_string(),
                        &id.vg,
                        &id.lv,
                        lv_numbers,
                        key.as_bytes(),
                    )
                    .await
                    .map_err(volume_status)?;
            }
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
        .instrument(span)
        .await
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
