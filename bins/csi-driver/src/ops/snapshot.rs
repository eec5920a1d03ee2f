//! CSI snapshots as LVM snapshots.
//!
//! - Snapshot id `<vg>/<snapshot LV>`; the LV name is `snap-` + the tail of
//!   [`lv_name_for`]`(name)`, so it is deterministic (a retried CreateSnapshot finds it) and
//!   can never collide with a volume's `csi-` LV.
//! - Thin volumes get thin snapshots (instant, no size, inactive with activation-skip).
//!   Thick volumes (linear, striped, RAID) get classic COW snapshots sized as a percentage
//!   of the origin (`snapshotSizePercent` in the VolumeSnapshotClass, default 100: lvm's
//!   "full size", which can never overflow and become invalid).
//! - Consistency: lvm suspends the origin's device-mapper device with `lockfs` while it
//!   creates the snapshot, and that suspend freezes a mounted filesystem (freeze_bdev) and
//!   thaws it after, wherever the controller runs. An extra `fsfreeze -f` around lvcreate
//!   must NOT be added: measured on Debian 12 (kernel 6.1, lvm 2.03.16), the suspend then
//!   fails with EBUSY, and for a thick snapshot lvm leaves a half-made LV behind ("Manual
//!   intervention required"). So every snapshot holds the filesystem as a freeze would.
//! - Encrypted volumes (`vglet.encryption=luks2`): the snapshot is of the LV, so it holds
//!   the ciphertext with the LUKS header and its key slots: a volume restored from it opens
//!   with the source's key (see `docs/encryption.md`). The filesystem is on the dm-crypt
//!   mapping above the LV, where lvm's suspend of the LV freezes nothing, so it is frozen
//!   on the mapping (FIFREEZE on its mount, [`with_source_held`]) around the lvcreate; the
//!   LV below has no filesystem of its own, so lvm's suspend of it does not meet the
//!   EBUSY above. A driver killed inside that freeze leaves the filesystem frozen: the
//!   restarted driver thaws every mount of its mappings before it serves
//!   ([`thaw_left_frozen_at_start`]). The snapshot LV carries the encryption tag, and
//!   CreateVolume restores it only into an encrypted class.
//! - Snapshots are refused on shared (lvmlockd) VGs: a COW snapshot or thin pool needs the
//!   origin active exclusively on the controller's host.
//! - Deleting a snapshot removes only the snapshot LV; an origin never depends on its
//!   snapshots. The other way round see [`thick_snapshots_of`].

use std::time::{SystemTime, UNIX_EPOCH};

use tonic::Status;
use vglet_csi_proto::prost_types::Timestamp;
use vglet_csi_proto::v1::*;
use vglet_lvm::naming::lv_name_for;
use vglet_lvm::{Lv, LvmError, Report, SnapshotCreate, SnapshotKind};

use crate::driver::Driver;
use crate::rules::error::VolumeError;
use crate::rules::params;
use crate::rules::volume_id::{self, VolumeId};
use crate::status::{IntoStatus, invalid, lvm_status};

use vglet_lvm::tags::SnapshotTags;

pub const SNAPSHOT_LV_PREFIX: &str = "snap-";

/// The LV name of a CSI snapshot name.
pub fn snapshot_lv_name(csi_name: &str) -> String {
    let volume_form = lv_name_for(csi_name);
    let tail = volume_form
        .strip_prefix(vglet_lvm::naming::LV_NAME_PREFIX)
        .unwrap_or(&volume_form);
    format!("{SNAPSHOT_LV_PREFIX}{tail}")
}

/// A snapshot LV of ours.
#[derive(Debug, Clone)]
pub struct OwnedSnapshot {
    pub id: VolumeId,
    pub lv: Lv,
    pub tags: SnapshotTags,
}

impl OwnedSnapshot {
    pub fn is_thin(&self) -> bool {
        self.lv.segtype == "thin"
    }

    /// A thick snapshot whose COW area overflowed is invalid (lv_attr state `I`) and its
    /// data is gone; thin snapshots and healthy COW snapshots are usable at once.
    pub fn ready(&self) -> bool {
        self.lv.attr.chars().nth(4) != Some('I')
    }

    pub fn message(&self) -> Snapshot {
        Snapshot {
            size_bytes: self.tags.size as i64,
            snapshot_id: self.id.to_string(),
            source_volume_id: self.tags.source.clone(),
            creation_time: Some(Timestamp {
                seconds: self.tags.created,
                nanos: 0,
            }),
            ready_to_use: self.ready(),
            group_snapshot_id: String::new(),
        }
    }
}

fn snapshot_of(driver: &Driver, id: VolumeId, lv: &Lv) -> Option<OwnedSnapshot> {
    snapshot_owned_by(&driver.cfg.driver_name, id, lv)
}

/// `lv` as a snapshot of driver `driver`, if it is one.
pub(crate) fn snapshot_owned_by(driver: &str, id: VolumeId, lv: &Lv) -> Option<OwnedSnapshot> {
    let tags = SnapshotTags::from_tags(&lv.tags)?;
    (tags.owner == driver).then(|| OwnedSnapshot {
        id,
        lv: lv.clone(),
        tags,
    })
}

/// Looks a snapshot id up: NOT_FOUND when missing (or its VG not served), FAILED_PRECONDITION
/// when the LV is not a snapshot of ours.
pub async fn owned_snapshot(driver: &Driver, id: &VolumeId) -> Result<OwnedSnapshot, Status> {
    if !driver.serves_vg(&id.vg) {
        return Err(Status::not_found(format!(
            "snapshot {id}: volume group {} is not served by this driver",
            id.vg
        )));
    }
    let report = driver
        .lvm
        .report(Some(&id.vg))
        .await
        .map_err(|e| lvm_status(&format!("snapshot {id}"), e))?;
    snapshot_in(&driver.cfg.driver_name, &report, id).status()
}

/// [`owned_snapshot`] of a served VG, found in `report` (a read of that VG).
pub(crate) fn snapshot_in(
    driver: &str,
    report: &Report,
    id: &VolumeId,
) -> Result<OwnedSnapshot, VolumeError> {
    crate::driver::vg_in(report, &id.vg, &format!("snapshot {id}"))?;
    let lv = report
        .lv(&id.vg, &id.lv)
        .ok_or_else(|| VolumeError::NotFound(format!("snapshot {id} does not exist")))?;
    snapshot_owned_by(driver, id.clone(), lv).ok_or_else(|| {
        VolumeError::Precondition(format!(
            "logical volume {id} is not a snapshot created by {driver}"
        ))
    })
}

/// The thick (COW) snapshots of `vg/lv`. Such a snapshot lives inside its origin's
/// device-mapper stack: lvremove of the origin would take the snapshots with it, and lvm
/// refuses to resize the origin while they exist. So DeleteVolume answers
/// FAILED_PRECONDITION while any exists (the CSI spec's answer for a plugin whose snapshots
/// are not independent; Kubernetes retries the deletion until the VolumeSnapshots are
/// gone), and so does ControllerExpandVolume. Thin snapshots are independent of their
/// origin and never block either.
pub fn thick_snapshots_of<'a>(report: &'a Report, vg: &'a str, lv: &str) -> Vec<&'a Lv> {
    report
        .lvs_in(vg)
        .filter(|l| l.origin == lv && l.segtype != "thin" && !l.is_hidden())
        .collect()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The snapshot LV of this name in any served VG.
async fn find_by_name(driver: &Driver, lv_name: &str) -> Result<Option<(VolumeId, Lv)>, Status> {
    for vg in &driver.cfg.volume_groups {
        match driver.lvm.lv(vg, lv_name).await {
            Ok(Some(lv)) => return Ok(Some((VolumeId::new(vg.clone(), lv_name), lv))),
            Ok(None) | Err(LvmError::VgNotFound(_)) => {}
            Err(e) => return Err(lvm_status(&format!("looking up {vg}/{lv_name}"), e)),
        }
    }
    Ok(None)
}

pub async fn create(
    driver: &Driver,
    req: CreateSnapshotRequest,
) -> Result<CreateSnapshotResponse, Status> {
    if req.name.is_empty() {
        return Err(invalid("name", "must not be empty"));
    }
    if req.name.len() > 256 || req.name.chars().any(char::is_control) {
        return Err(invalid(
            "name",
            "must be at most 256 bytes without control characters",
        ));
    }
    if req.source_volume_id.is_empty() {
        return Err(invalid("source_volume_id", "must not be empty"));
    }
    let p = params::parse_snapshot("parameters", &req.parameters).status()?;
    let lv_name = snapshot_lv_name(&req.name);
    let _guard = driver.inflight.acquire(&format!("snapshot:{}", req.name))?;

    if let Some((id, lv)) = find_by_name(driver, &lv_name).await? {
        let snap = snapshot_of(driver, id.clone(), &lv).ok_or_else(|| {
            Status::already_exists(format!(
                "logical volume {id} exists and is not a snapshot of {}",
                driver.cfg.driver_name
            ))
        })?;
        // The name decides first: a snapshot of the name from another source is
        // ALREADY_EXISTS, whether or not the source asked for exists.
        if snap.tags.name != req.name || snap.tags.source != req.source_volume_id {
            return Err(Status::already_exists(format!(
                "snapshot {:?} exists with source {}, not {:?}",
                snap.tags.name, snap.tags.source, req.source_volume_id
            )));
        }
        tracing::info!(snapshot = %id, "snapshot already exists");
        return Ok(CreateSnapshotResponse {
            snapshot: Some(snap.message()),
        });
    }

    let source_id =
        volume_id::lookup("source_volume_id", "volume", &req.source_volume_id).status()?;
    let source = driver.owned_volume(&source_id).await.status()?;
    let encryption = vglet_lvm::tags::Encryption::from_tags(&source.lv.tags).map_err(|t| {
        Status::failed_precondition(format!(
            "volume {source_id} has an unknown encryption tag {t}; refusing to snapshot what this driver cannot restore"
        ))
    })?;
    let vg = driver.vg(&source_id.vg).await.status()?;
    if vg.is_shared() {
        return Err(Status::failed_precondition(format!(
            "volume {source_id} is in shared volume group {}; snapshots are supported on node-local volume groups only",
            vg.name
        )));
    }
    let thin = source.lv.segtype == "thin";
    let kind = if thin {
        SnapshotKind::Thin { activate: false }
    } else {
        let cow = vglet_lvm::round_up(
            source.lv.size / 100 * u64::from(p.size_percent),
            vg.extent_size,
        );
        if cow > vg.free {
            return Err(Status::resource_exhausted(format!(
                "volume group {} has {} bytes free; a {}% snapshot of {source_id} needs about {cow} bytes",
                vg.name, vg.free, p.size_percent
            )));
        }
        SnapshotKind::Thick {
            percent_of_origin: p.size_percent,
        }
    };
    let tags = SnapshotTags {
        owner: driver.cfg.driver_name.clone(),
        name: req.name.clone(),
        source: source_id.to_string(),
        created: now(),
        size: source.lv.size,
    };
    let id = VolumeId::new(vg.name.clone(), lv_name.clone());
    {
        let _w = driver.vg_locks.lock(&vg.name).await;
        let snap = SnapshotCreate {
            vg: vg.name.clone(),
            origin: source_id.lv.clone(),
            name: lv_name.clone(),
            tags: tags
                .to_tags()
                .into_iter()
                .chain(encryption.map(|e| e.tag()))
                .collect(),
            kind,
        };
        let create = driver.lvm.create_snapshot(&snap);
        with_source_held(&source_id, &source.lv, encryption.is_some(), create)
            .await?
            .map_err(|e| lvm_status(&format!("creating snapshot {id} of {source_id}"), e))?;
    }
    let lv = driver
        .lvm
        .lv(&vg.name, &lv_name)
        .await
        .map_err(|e| lvm_status(&format!("reading back {id}"), e))?
        .ok_or_else(|| Status::internal(format!("{id} vanished right after creation")))?;
    tracing::info!(snapshot = %id, source = %source_id, thin, encrypted = encryption.is_some(), "snapshot created");
    let snap = OwnedSnapshot { id, lv, tags };
    Ok(CreateSnapshotResponse {
        snapshot: Some(snap.message()),
    })
}

/// Runs `snapshot` (the lvcreate of a snapshot of volume `id`, LV `lv`) with the volume's
/// filesystem held still. A plain volume's is held by lvm's own suspend (see the module
/// doc); an encrypted volume's filesystem is on its mapping, which is frozen around the
/// lvcreate when it is mounted on this node ([`vglet_volume::crypt::snapshot_hold`]). The
/// thaw comes right after the lvcreate, whatever it answered.
pub(crate) async fn with_source_held<T>(
    id: &VolumeId,
    lv: &Lv,
    encrypted: bool,
    snapshot: impl std::future::Future<Output = T>,
) -> Result<T, Status> {
    use vglet_volume::crypt::SnapshotHold;
    if !encrypted {
        return Ok(snapshot.await);
    }
    let host = vglet_volume::SystemHost;
    let lv_numbers =
        vglet_volume::host::dm_device(&host, &vglet_volume::device_path(&id.vg, &id.lv))
            .and_then(|(n, dm_uuid)| vglet_volume::dm_uuid_is_lv(&dm_uuid, &lv.uuid).then_some(n));
    let hold = vglet_volume::crypt::snapshot_hold(&host, &id.vg, &id.lv, lv_numbers).status()?;
    let frozen = match &hold {
        SnapshotHold::Freeze(at, device) => {
            let (at, device) = (at.clone(), *device);
            let t = std::time::Instant::now();
            let frozen =
                tokio::task::spawn_blocking(move || vglet_mount::Frozen::freeze(&at, device))
                    .await
                    .map_err(|e| Status::internal(format!("freezing volume {id}: {e}")))?
                    .map_err(|e| {
                        Status::internal(format!(
                            "freezing the filesystem of encrypted volume {id}: {e}"
                        ))
                    })?;
            tracing::info!(volume = %id, at = %frozen.path().display(), elapsed_ms = t.elapsed().as_millis() as u64,
                "encrypted volume's filesystem frozen on its mapping for the snapshot");
            Some(frozen)
        }
        SnapshotHold::OpenUnmounted => {
            tracing::info!(volume = %id, "encrypted volume open here without a mount; its writes are held by lvm's suspend");
            None
        }
        SnapshotHold::NotOpen => {
            tracing::debug!(volume = %id, "encrypted volume not open here; snapshot of the LV as it is");
            None
        }
    };
    let out = snapshot.await;
    if let Some(f) = frozen {
        let at = f.path().display().to_string();
        f.thaw().map_err(|e| {
            Status::internal(format!(
                "thawing the filesystem of encrypted volume {id} after its snapshot: {e}"
            ))
        })?;
        tracing::info!(volume = %id, at = %at, "thawed");
    }
    Ok(out)
}

/// Thaws what a driver killed inside [`with_source_held`]'s freeze left frozen, before
/// anything is served (the lvcreate it ran was let finish or stopped by then).
pub(crate) fn thaw_left_frozen_at_start() {
    for at in vglet_volume::crypt::thaw_left_frozen(&vglet_volume::SystemHost) {
        tracing::warn!(at = %at.display(), "an encrypted volume's filesystem was left frozen by an interrupted snapshot; thawed");
    }
}

pub async fn delete(driver: &Driver, req: DeleteSnapshotRequest) -> Result<(), Status> {
    let Some(id) = volume_id::to_delete("snapshot_id", &req.snapshot_id).status()? else {
        return Ok(());
    };
    if !driver.serves_vg(&id.vg) {
        return Err(Status::failed_precondition(format!(
            "snapshot {id}: volume group {} is not served by this driver; refusing",
            id.vg
        )));
    }
    let _guard = driver.inflight.acquire(&id.to_string())?;
    match owned_snapshot(driver, &id).await {
        Err(s) if s.code() == tonic::Code::NotFound => {
            tracing::info!(snapshot = %id, "snapshot already gone");
            return Ok(());
        }
        Err(s) => return Err(s),
        Ok(_) => {}
    }
    let _w = driver.vg_locks.lock(&id.vg).await;
    match driver.lvm.remove_lv(&id.vg, &id.lv).await {
        Ok(()) | Err(LvmError::LvNotFound(_)) => {}
        Err(e) => return Err(lvm_status(&format!("removing snapshot {id}"), e)),
    }
    tracing::info!(snapshot = %id, "snapshot deleted");
    Ok(())
}

/// Ordered by snapshot id; the token is the last id returned (as for ListVolumes).
pub async fn list(
    driver: &Driver,
    req: ListSnapshotsRequest,
) -> Result<ListSnapshotsResponse, Status> {
    let after = volume_id::page_after(req.max_entries, &req.starting_token).status()?;
    // A filter id that cannot exist matches nothing; the spec wants an empty list, not an
    // error.
    let wanted_id = if req.snapshot_id.is_empty() {
        None
    } else {
        match VolumeId::parse(&req.snapshot_id) {
            Ok(id) => Some(id),
            Err(_) => return Ok(ListSnapshotsResponse::default()),
        }
    };
    let mut snaps: Vec<OwnedSnapshot> = Vec::new();
    for vg in &driver.cfg.volume_groups {
        if wanted_id.as_ref().is_some_and(|w| &w.vg != vg) {
            continue;
        }
        let report = match driver.lvm.report(Some(vg)).await {
            Ok(r) => r,
            Err(LvmError::VgNotFound(_)) => continue,
            Err(e) => return Err(lvm_status(&format!("listing {vg}"), e)),
        };
        for lv in report.lvs_in(vg) {
            let id = VolumeId::new(vg.clone(), lv.name.clone());
            if wanted_id.as_ref().is_some_and(|w| *w != id) {
                continue;
            }
            if let Some(s) = snapshot_of(driver, id, lv)
                && (req.source_volume_id.is_empty() || s.tags.source == req.source_volume_id)
            {
                snaps.push(s);
            }
        }
    }
    snaps.sort_by(|a, b| a.id.cmp(&b.id));
    let start = after
        .as_ref()
        .map(|a| snaps.partition_point(|s| &s.id <= a))
        .unwrap_or(0);
    let max = if req.max_entries == 0 {
        usize::MAX
    } else {
        req.max_entries as usize
    };
    let page: Vec<&OwnedSnapshot> = snaps[start..].iter().take(max).collect();
    let next_token = if start + page.len() < snaps.len() {
        page.last().map(|s| s.id.to_string()).unwrap_or_default()
    } else {
        String::new()
    };
    Ok(ListSnapshotsResponse {
        entries: page
            .into_iter()
            .map(|s| list_snapshots_response::Entry {
                snapshot: Some(s.message()),
            })
            .collect(),
        next_token,
    })
}

/// FAILED_PRECONDITION while the volume has thick snapshots (see [`thick_snapshots_of`]
/// for why): DeleteVolume and ControllerExpandVolume refuse such a volume alike.
pub fn refuse_with_thick_snapshots(
    report: &Report,
    id: &VolumeId,
    what: &str,
) -> Result<(), VolumeError> {
    let snaps: Vec<String> = thick_snapshots_of(report, &id.vg, &id.lv)
        .iter()
        .map(|l| format!("{}/{}", l.vg, l.name))
        .collect();
    if snaps.is_empty() {
        return Ok(());
    }
    Err(VolumeError::Precondition(format!(
        "volume {id} has copy-on-write snapshots ({}); it cannot be {what} until they are deleted",
        snaps.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SnapshotTags {
        SnapshotTags {
            owner: "lvm.vglet.io".into(),
            name: "snap 1/ü".into(),
            source: "vg0/csi-a".into(),
            created: 1_700_000_000,
            size: 64 << 20,
        }
    }

    #[test]
    fn tags_round_trip_and_are_valid() {
        let tags = sample().to_tags();
        for t in &tags {
            vglet_lvm::naming::validate_tag(t).unwrap();
        }
        let mut with_foreign = tags.clone();
        with_foreign.push("x=y".into());
        assert_eq!(SnapshotTags::from_tags(&with_foreign), Some(sample()));
        for missing in 0..tags.len() {
            let mut t = tags.clone();
            t.remove(missing);
            assert_eq!(SnapshotTags::from_tags(&t), None);
        }
        let mut t = tags.clone();
        t.push("vglet.source=vg0/other".into());
        assert_eq!(SnapshotTags::from_tags(&t), None);
        // A snapshot is never mistaken for a volume.
        assert_eq!(vglet_lvm::tags::VolumeTags::from_tags(&tags), None);
    }

    #[test]
    fn lv_names_are_distinct_from_volumes_and_valid() {
        for name in ["snapshot-1234", "a b", &"x".repeat(200), "pvc_rimage"] {
            let lv = snapshot_lv_name(name);
            assert!(lv.starts_with("snap-"), "{lv}");
            assert_ne!(lv, lv_name_for(name));
            vglet_lvm::naming::validate_volume("vg0", &lv).unwrap();
        }
        assert_eq!(snapshot_lv_name("s1"), "snap-s1");
        assert_ne!(snapshot_lv_name("a"), snapshot_lv_name("b"));
    }

    #[test]
    fn thick_snapshots_only_block_their_origin() {
        let lv = |name: &str, origin: &str, seg: &str| Lv {
            vg: "vg0".into(),
            name: name.into(),
            origin: origin.into(),
            segtype: seg.into(),
            ..Default::default()
        };
        let r = Report {
            lvs: vec![
                lv("csi-a", "", "linear"),
                lv("snap-1", "csi-a", "linear"),
                lv("csi-t", "", "thin"),
                lv("snap-2", "csi-t", "thin"),
            ],
            ..Default::default()
        };
        assert_eq!(thick_snapshots_of(&r, "vg0", "csi-a").len(), 1);
        assert!(thick_snapshots_of(&r, "vg0", "csi-t").is_empty());
        assert!(thick_snapshots_of(&r, "vg1", "csi-a").is_empty());
    }

    #[test]
    fn readiness_follows_the_invalid_flag() {
        let mk = |attr: &str| OwnedSnapshot {
            id: VolumeId::new("vg0", "snap-1"),
            lv: Lv {
                attr: attr.into(),
                ..Default::default()
            },
            tags: sample(),
        };
        assert!(mk("swi-a-s---").ready());
        assert!(!mk("swi-I-s---").ready());
        let m = mk("swi-a-s---").message();
        assert_eq!(m.size_bytes, 64 << 20);
        assert_eq!(m.source_volume_id, "vg0/csi-a");
        assert_eq!(m.creation_time.unwrap().seconds, 1_700_000_000);
    }
}
