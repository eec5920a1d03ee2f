//! State shared by the three CSI services.

use std::collections::HashMap;
use std::sync::Arc;

use vglet_lvm::tags::{self, Claim, VolumeTags};
use vglet_lvm::{Lv, Lvm, Report, Vg};
use vglet_mount::{Filesystems, Mounter};

use crate::config::Config;
use crate::inflight::{InFlight, VgWriteLocks};
use crate::rules::capability::VgKind;
use crate::rules::error::VolumeError;
use crate::rules::volume_id::VolumeId;

pub const TOPOLOGY_NODE_KEY: &str = "topology.vglet.io/node";
/// Prefix of the per-VG keys of shared VGs: `vg.vglet.io/<vg name>=true`.
pub const TOPOLOGY_VG_PREFIX: &str = "vg.vglet.io/";

/// The topology key of a shared VG. Kubernetes label names allow [A-Za-z0-9_.-] (LVM names
/// also allow '+', which is replaced) and at most 63 characters (validated at start-up).
pub fn vg_topology_key(vg: &str) -> String {
    format!("{TOPOLOGY_VG_PREFIX}{}", vg.replace('+', "_"))
}

/// Whether `vg` is node-local or shared: from LVM (its lock type), never from a flag that
/// could disagree.
pub fn kind_of(vg: &Vg) -> VgKind {
    match vg.is_shared() {
        false => VgKind::Local,
        true => VgKind::Shared,
    }
}

/// Where a volume of `vg` can be used, for a driver on node `node_id`: a node-local VG's
/// volumes on this node only; a shared VG's volumes on every node that sees the VG (not
/// pinned to the creating node).
pub fn volume_topology(node_id: &str, vg: &str, kind: VgKind) -> HashMap<String, String> {
    match kind {
        VgKind::Local => HashMap::from([(TOPOLOGY_NODE_KEY.to_string(), node_id.to_string())]),
        VgKind::Shared => HashMap::from([(vg_topology_key(vg), "true".to_string())]),
    }
}

/// Whether a topology segment from the CO (a node's whole topology, as kubelet reported
/// it) can reach volumes of `vg` made by the driver on node `node_id`.
pub fn segment_reaches(
    segments: &HashMap<String, String>,
    node_id: &str,
    vg: &str,
    kind: VgKind,
) -> bool {
    volume_topology(node_id, vg, kind)
        .iter()
        .all(|(k, v)| segments.get(k) == Some(v))
}

/// The VG `name` of `report`; as lvm's own "not found" when the report lacks it.
pub fn vg_in(report: &Report, name: &str, context: &str) -> Result<Vg, VolumeError> {
    report
        .vg(name)
        .cloned()
        .ok_or_else(|| VolumeError::lvm(context)(vglet_lvm::LvmError::VgNotFound(name.to_string())))
}

/// The driver never touches an LV it neither created (the ownership tag names `driver`)
/// nor was explicitly handed (the adopt tag names `driver`).
pub fn claim(driver: &str, id: &VolumeId, lv: Lv) -> Result<OwnedVolume, VolumeError> {
    match tags::claim(&lv.tags, driver) {
        Claim::Created(tags) => Ok(OwnedVolume {
            id: id.clone(),
            lv,
            tags,
            adopted: None,
        }),
        Claim::Adopted { may_delete } => {
            check_adoptable(&lv).map_err(|why| {
                VolumeError::Precondition(format!(
                    "logical volume {id} carries {} but cannot be a volume: {why}",
                    tags::adopt_tag(driver)
                ))
            })?;
            Ok(OwnedVolume {
                id: id.clone(),
                tags: VolumeTags {
                    owner: driver.to_string(),
                    name: String::new(),
                    size: lv.size,
                    fs: String::new(),
                },
                lv,
                adopted: Some(Adopted { may_delete }),
            })
        }
        Claim::Foreign => Err(VolumeError::Precondition(format!(
            "logical volume {id} carries vglet tags of another driver, snapshot or unfinished volume; refusing to touch it"
        ))),
        Claim::NotAdopted => Err(VolumeError::Precondition(format!(
            "logical volume {id} exists but was not created by {driver}; refusing to touch it. \
             To use it as a static volume, tag it: lvchange --addtag {} {id}",
            tags::adopt_tag(driver)
        ))),
    }
}

/// Only the volumes `driver` created: what CreateVolume may find under a name and what
/// start-up reconciliation may clean up. Adopted LVs are not among them.
pub fn ownership(driver: &str, id: &VolumeId, lv: &Lv) -> Result<VolumeTags, VolumeError> {
    match tags::claim(&lv.tags, driver) {
        Claim::Created(t) => Ok(t),
        _ => Err(VolumeError::Precondition(format!(
            "logical volume {id} exists but was not created by {driver}; refusing to touch it"
        ))),
    }
}

/// Volume `id` of `driver` in `report` (a read of its VG), with its VG: NOT_FOUND-like when
/// the LV is missing, a precondition when it is not ours (see [`claim`]).
pub fn volume_in(
    driver: &str,
    report: &Report,
    id: &VolumeId,
) -> Result<(OwnedVolume, Vg), VolumeError> {
    let vg = vg_in(report, &id.vg, &format!("volume {id}"))?;
    let lv = report
        .lv(&id.vg, &id.lv)
        .cloned()
        .ok_or_else(|| VolumeError::NotFound(format!("volume {id} does not exist")))?;
    Ok((claim(driver, id, lv)?, vg))
}

/// [`volume_in`], refusing adopted LVs: for the operations that use a volume as the source
/// of new LVs (snapshots, clones), which static volumes do not support.
pub fn created_volume_in(
    driver: &str,
    report: &Report,
    id: &VolumeId,
) -> Result<(OwnedVolume, Vg), VolumeError> {
    let (v, vg) = volume_in(driver, report, id)?;
    if v.adopted.is_some() {
        return Err(VolumeError::Precondition(format!(
            "volume {id} is a static volume (adopted, not created by {driver}); snapshots and clones of static volumes are not supported"
        )));
    }
    Ok((v, vg))
}

#[derive(Debug)]
pub struct Driver {
    pub cfg: Config,
    pub lvm: Lvm,
    pub fs: Filesystems,
    /// cryptsetup for encrypted volumes (node mode; refused where it is absent).
    pub crypt: vglet_volume::crypt::Crypt,
    pub mounter: Arc<dyn Mounter>,
    pub inflight: InFlight,
    pub vg_locks: VgWriteLocks,
    /// The node's record of staged/published volumes (node mode only).
    pub state: Option<vglet_state::StateStore>,
    /// Volumes this process created, which NodeStageVolume may stage without an lvm read.
    pub vouched: crate::node_state::vouched::VouchedVolumes,
    /// Creates in flight in node-local VGs, recorded in the state directory instead of
    /// the `vglet.creating` LV tag.
    pub creating: crate::node_state::create_intents::CreateIntents,
}

/// An LV this driver may act on, with what its tags say.
#[derive(Debug, Clone)]
pub struct OwnedVolume {
    pub id: VolumeId,
    pub lv: Lv,
    /// For an adopted LV, stand-ins: no name, the LV's size and an empty fs (use
    /// [`OwnedVolume::fs`]); nothing of them is ever written to the LV.
    pub tags: VolumeTags,
    /// Set when the LV was created elsewhere and handed over with the adopt tag.
    pub adopted: Option<Adopted>,
}

/// A static volume: an LV the operator handed to the driver (see docs/static-volumes.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adopted {
    /// `vglet.adopt.delete=<driver>` is set too: DeleteVolume may remove the LV.
    pub may_delete: bool,
}

impl OwnedVolume {
    /// What the volume was created to hold; `None` for an adopted LV, whose content only the
    /// device itself can tell.
    pub fn content(&self) -> Option<vglet_lvm::tags::Content> {
        self.adopted.is_none().then(|| self.tags.content())
    }
}

/// Whether an adopt-tagged LV can serve as a volume at all: LVM's internal sub-LVs, pools
/// and copy-on-write snapshot stores hold no filesystem of their own, and writing to them
/// (or removing them) would corrupt what they serve.
pub fn check_adoptable(lv: &Lv) -> Result<(), String> {
    if lv.is_hidden() {
        return Err("it is an internal logical volume of LVM".into());
    }
    if lv.segtype.ends_with("pool") {
        return Err(format!("it is a {}", lv.segtype));
    }
    let roles: Vec<&str> = lv.role.split(',').collect();
    if roles.contains(&"thicksnapshot") || lv.attr.starts_with(['s', 'S']) {
        return Err("it is a copy-on-write snapshot".into());
    }
    Ok(())
}

impl Driver {
    pub fn serves_vg(&self, vg: &str) -> bool {
        self.cfg.volume_groups.iter().any(|v| v == vg)
    }

    /// See [`kind_of`].
    pub fn vg_kind(vg: &Vg) -> VgKind {
        kind_of(vg)
    }

    /// See [`volume_topology`].
    pub fn volume_topology(&self, vg: &str, kind: VgKind) -> HashMap<String, String> {
        volume_topology(&self.cfg.node_id, vg, kind)
    }

    /// See [`segment_reaches`].
    pub fn segment_admits(
        &self,
        segments: &HashMap<String, String>,
        vg: &str,
        kind: VgKind,
    ) -> bool {
        segment_reaches(segments, &self.cfg.node_id, vg, kind)
    }

    /// This node's topology for NodeGetInfo: its name, plus one key per served shared VG
    /// that it sees right now.
    pub async fn node_topology(&self) -> HashMap<String, String> {
        let mut segments =
            HashMap::from([(TOPOLOGY_NODE_KEY.to_string(), self.cfg.node_id.clone())]);
        for name in &self.cfg.volume_groups {
            match self.lvm.vg(name).await {
                Ok(vg) if vg.is_shared() => {
                    segments.insert(vg_topology_key(name), "true".into());
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(vg = %name, error = %e, "volume group not visible; not in this node's topology")
                }
            }
        }
        segments
    }

    pub async fn vg(&self, name: &str) -> Result<Vg, VolumeError> {
        self.lvm
            .vg(name)
            .await
            .map_err(VolumeError::lvm(format!("volume group {name}")))
    }

    /// Looks a volume id up: NOT_FOUND when the VG is not ours or the LV is missing;
    /// FAILED_PRECONDITION when the LV exists but was not created by this driver. Adopted
    /// LVs are refused too (see [`created_volume_in`]).
    pub async fn owned_volume(&self, id: &VolumeId) -> Result<OwnedVolume, VolumeError> {
        let report = self.report_of(id).await?;
        Ok(created_volume_in(&self.cfg.driver_name, &report, id)?.0)
    }

    /// [`Self::owned_volume`] that also accepts LVs the operator handed over with the
    /// adopt tag: for staging, publishing, expanding, reporting and (only with the delete
    /// opt-in) deleting.
    pub async fn usable_volume(&self, id: &VolumeId) -> Result<OwnedVolume, VolumeError> {
        Ok(self.volume_in_vg(id).await?.0)
    }

    /// [`Self::usable_volume`] with its VG and the whole report they came from: one
    /// `lvm fullreport` for everything an RPC needs to know before it acts.
    pub async fn volume_in_vg(
        &self,
        id: &VolumeId,
    ) -> Result<(OwnedVolume, Vg, Report), VolumeError> {
        let report = self.report_of(id).await?;
        let (v, vg) = volume_in(&self.cfg.driver_name, &report, id)?;
        Ok((v, vg, report))
    }

    /// [`Driver::volume_in_vg`] from a read of the one LV and the LVs whose origin it is
    /// ([`vglet_lvm::Lvm::report_lv`]) instead of the whole VG: everything DeleteVolume
    /// decides on (the VG and its tags, the LV's ownership tags and open state, its thick
    /// snapshots), at a cost that does not grow with the VG's other LVs. The report holds
    /// neither a thin pool nor other volumes: not for a volume's condition or a plan.
    pub async fn volume_and_snapshots(
        &self,
        id: &VolumeId,
    ) -> Result<(OwnedVolume, Vg, Report), VolumeError> {
        self.check_served(id)?;
        let report = self
            .lvm
            .report_lv(&id.vg, &id.lv)
            .await
            .map_err(VolumeError::lvm(format!("volume {id}")))?;
        let (v, vg) = volume_in(&self.cfg.driver_name, &report, id)?;
        Ok((v, vg, report))
    }

    /// NOT_FOUND when the VG of volume `id` is not served.
    fn check_served(&self, id: &VolumeId) -> Result<(), VolumeError> {
        if !self.serves_vg(&id.vg) {
            return Err(VolumeError::NotFound(format!(
                "volume {id}: volume group {} is not served by this driver",
                id.vg
            )));
        }
        Ok(())
    }

    /// One read of the VG of volume `id`; NOT_FOUND when the VG is not served.
    async fn report_of(&self, id: &VolumeId) -> Result<Report, VolumeError> {
        self.check_served(id)?;
        self.lvm
            .report(Some(&id.vg))
            .await
            .map_err(VolumeError::lvm(format!("volume {id}")))
    }

    /// See [`claim`].
    pub fn claim(&self, id: &VolumeId, lv: Lv) -> Result<OwnedVolume, VolumeError> {
        claim(&self.cfg.driver_name, id, lv)
    }

    /// See [`ownership`].
    pub fn ownership(&self, id: &VolumeId, lv: &Lv) -> Result<VolumeTags, VolumeError> {
        ownership(&self.cfg.driver_name, id, lv)
    }

    /// Replaces the tags that differ between `old` and `new`.
    pub async fn retag(
        &self,
        id: &VolumeId,
        old: &VolumeTags,
        new: &VolumeTags,
    ) -> Result<(), vglet_lvm::LvmError> {
        let (old, new) = (old.to_tags(), new.to_tags());
        let gone: Vec<String> = old.iter().filter(|t| !new.contains(t)).cloned().collect();
        let added: Vec<String> = new.iter().filter(|t| !old.contains(t)).cloned().collect();
        if !added.is_empty() {
            self.lvm.add_lv_tags(&id.vg, &id.lv, &added).await?;
        }
        if !gone.is_empty() {
            self.lvm.del_lv_tags(&id.vg, &id.lv, &gone).await?;
        }
        Ok(())
    }
}
