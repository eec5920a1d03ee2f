//! State shared by the three CSI services.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::Status;
use vglet_lvm::{Lv, Lvm, Report, Vg, tags::VolumeTags};
use vglet_mount::{Filesystems, Mounter};

use crate::capability::VgKind;
use crate::config::Config;
use crate::inflight::{InFlight, VgWriteLocks};
use crate::status::lvm_status;
use crate::volume_id::VolumeId;

pub const TOPOLOGY_NODE_KEY: &str = "topology.vglet.io/node";
/// Prefix of the per-VG keys of shared VGs: `vg.vglet.io/<vg name>=true`.
pub const TOPOLOGY_VG_PREFIX: &str = "vg.vglet.io/";

/// The topology key of a shared VG. Kubernetes label names allow [A-Za-z0-9_.-] (LVM names
/// also allow '+', which is replaced) and at most 63 characters (validated at start-up).
pub fn vg_topology_key(vg: &str) -> String {
    format!("{TOPOLOGY_VG_PREFIX}{}", vg.replace('+', "_"))
}

#[derive(Debug)]
pub struct Driver {
    pub cfg: Config,
    pub lvm: Lvm,
    pub fs: Filesystems,
    pub mounter: Arc<dyn Mounter>,
    pub inflight: InFlight,
    pub vg_locks: VgWriteLocks,
    /// The node's record of staged/published volumes (node mode only).
    pub state: Option<vglet_state::StateStore>,
}

/// An LV this driver owns, with what its tags say.
#[derive(Debug, Clone)]
pub struct OwnedVolume {
    pub id: VolumeId,
    pub lv: Lv,
    pub tags: VolumeTags,
}

impl Driver {
    pub fn serves_vg(&self, vg: &str) -> bool {
        self.cfg.volume_groups.iter().any(|v| v == vg)
    }

    /// The VG's kind comes from LVM (its lock type), never from a flag that could disagree.
    pub fn vg_kind(vg: &Vg) -> VgKind {
        match vg.lock_type.as_str() {
            "" | "none" => VgKind::Local,
            _ => VgKind::Shared,
        }
    }

    /// Where a volume of `vg` can be used: a node-local VG's volumes on this node only; a
    /// shared VG's volumes on every node that sees the VG (not pinned to the creating node).
    pub fn volume_topology(&self, vg: &str, kind: VgKind) -> HashMap<String, String> {
        match kind {
            VgKind::Local => {
                HashMap::from([(TOPOLOGY_NODE_KEY.to_string(), self.cfg.node_id.clone())])
            }
            VgKind::Shared => HashMap::from([(vg_topology_key(vg), "true".to_string())]),
        }
    }

    /// Whether a topology segment from the CO (a node's whole topology, as kubelet reported
    /// it) can reach volumes of `vg`.
    pub fn segment_admits(
        &self,
        segments: &HashMap<String, String>,
        vg: &str,
        kind: VgKind,
    ) -> bool {
        self.volume_topology(vg, kind)
            .iter()
            .all(|(k, v)| segments.get(k) == Some(v))
    }

    /// This node's topology for NodeGetInfo: its name, plus one key per served shared VG
    /// that it sees right now.
    pub async fn node_topology(&self) -> HashMap<String, String> {
        let mut segments =
            HashMap::from([(TOPOLOGY_NODE_KEY.to_string(), self.cfg.node_id.clone())]);
        for name in &self.cfg.volume_groups {
            match self.lvm.vg(name).await {
                Ok(vg) if Self::vg_kind(&vg) == VgKind::Shared => {
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

    pub async fn vg(&self, name: &str) -> Result<Vg, Status> {
        self.lvm
            .vg(name)
            .await
            .map_err(|e| lvm_status(&format!("volume group {name}"), e))
    }

    /// Looks a volume id up: NOT_FOUND when the VG is not ours or the LV is missing;
    /// FAILED_PRECONDITION when the LV exists but was not created by this driver.
    pub async fn owned_volume(&self, id: &VolumeId) -> Result<OwnedVolume, Status> {
        Ok(self.volume_in_vg(id).await?.0)
    }

    /// [`Self::owned_volume`] with its VG and the whole report they came from: one
    /// `lvm fullreport` for everything an RPC needs to know before it acts.
    pub async fn volume_in_vg(&self, id: &VolumeId) -> Result<(OwnedVolume, Vg, Report), Status> {
        if !self.serves_vg(&id.vg) {
            return Err(Status::not_found(format!(
                "volume {id}: volume group {} is not served by this driver",
                id.vg
            )));
        }
        let report = self
            .lvm
            .report(Some(&id.vg))
            .await
            .map_err(|e| lvm_status(&format!("volume {id}"), e))?;
        let vg = report.vg(&id.vg).cloned().ok_or_else(|| {
            lvm_status(
                &format!("volume {id}"),
                vglet_lvm::LvmError::VgNotFound(id.vg.clone()),
            )
        })?;
        let lv = report
            .lvs
            .iter()
            .find(|l| l.vg == id.vg && l.name == id.lv)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("volume {id} does not exist")))?;
        let tags = self.ownership(id, &lv)?;
        let v = OwnedVolume {
            id: id.clone(),
            lv,
            tags,
        };
        Ok((v, vg, report))
    }

    /// The driver never touches an LV it did not create: the ownership tag must name us.
    pub fn ownership(&self, id: &VolumeId, lv: &Lv) -> Result<VolumeTags, Status> {
        match VolumeTags::from_tags(&lv.tags) {
            Some(t) if t.owner == self.cfg.driver_name => Ok(t),
            _ => Err(Status::failed_precondition(format!(
                "logical volume {id} exists but was not created by {}; refusing to touch it",
                self.cfg.driver_name
            ))),
        }
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
