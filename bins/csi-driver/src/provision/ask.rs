//! A CreateVolumeRequest checked in everything that needs no lvm state: the name, the
//! StorageClass parameters (with the mutable parameters applied), the capacity range, the capabilities (except the rule that
//! depends on the VG's kind), the fsType agreement and the content source's id. A request
//! wrong by itself never costs an lvm read.

use vglet_csi_proto::v1::volume_content_source::Type;
use vglet_csi_proto::v1::{CreateVolumeRequest, TopologyRequirement};
use vglet_lvm::tags::Content;

use crate::rules::capability::{self, Capability};
use crate::rules::capacity::Range;
use crate::rules::error::VolumeError;
use crate::rules::mutable;
use crate::rules::params::{self, Params};
use crate::rules::volume_id::{self, VolumeId};

/// CSI names are free-form; this bound keeps the encoded tag far below LVM's 1024 bytes.
pub const MAX_NAME_LEN: usize = 256;

/// The content source a request names, by id (looked up in the plan's report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceId {
    Snapshot(VolumeId),
    Volume(VolumeId),
}

/// A CreateVolumeRequest, checked.
#[derive(Debug, Clone)]
pub struct Ask {
    /// The CSI name.
    pub name: String,
    /// The LV name derived from it.
    pub lv_name: String,
    /// The StorageClass parameters with the mutable parameters applied.
    pub params: Params,
    pub range: Range,
    /// Parsed; the VG-kind rule is checked by the plan, once the VG is known.
    pub caps: Vec<Capability>,
    /// What the capabilities ask the volume to hold.
    pub content: Content,
    pub requirement: Option<TopologyRequirement>,
    pub source: Option<SourceId>,
    /// The cache the class asks for from birth (`mutable_parameters.cache`): attached by
    /// ControllerModifyVolume's plan once the volume exists, on a retry too.
    pub cache: Option<crate::rules::cache::CacheWish>,
}

pub fn validate_name(name: &str) -> Result<(), VolumeError> {
    if name.is_empty() {
        return Err(VolumeError::invalid("name", "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(VolumeError::invalid(
            "name",
            format!("must be at most {MAX_NAME_LEN} bytes"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(VolumeError::invalid(
            "name",
            "must not contain control characters",
        ));
    }
    Ok(())
}

impl Ask {
    pub fn check(req: &CreateVolumeRequest) -> Result<Ask, VolumeError> {
        validate_name(&req.name)?;
        // The class's mutable parameters are the volume's from birth: applied over the
        // StorageClass's, which must not say otherwise.
        let mutable = mutable::parse("mutable_parameters", &req.mutable_parameters)?;
        let params = if mutable.is_empty() {
            params::parse("parameters", &req.parameters)?
        } else {
            let merged = mutable::apply_to_parameters(
                "parameters",
                &req.parameters,
                "mutable_parameters",
                &mutable,
            )?;
            params::parse("parameters", &merged)?
        };
        // What can be refused before any lvm read (the VG's own kind is the plan's).
        if let Some(crate::rules::cache::CacheWish::Mode { mode, .. }) = mutable.cache {
            if params.layout.lv_type == vglet_lvm::LvType::Thin {
                return Err(VolumeError::invalid(
                    "mutable_parameters.cache",
                    format!(
                        "{mode} asked for a thin volume: lvm caches a thin pool as a whole (lvmthin(7)), not one thin volume"
                    ),
                ));
            }
            if let Some(m) = params.pmem_mode {
                return Err(VolumeError::invalid(
                    "mutable_parameters.cache",
                    format!(
                        "{mode} asked for a volume on {m} persistent memory, the fast tier itself; neither dm-cache nor dm-writecache passes DAX through"
                    ),
                ));
            }
        }
        let range = Range::parse("capacity_range", req.capacity_range.as_ref())?;
        let caps = capability::parse_all("volume_capabilities", &req.volume_capabilities)?;
        let content = capability::content_of(&caps);
        if let (Some(want), Some(fs)) = (&params.fs_type, content.fs())
            && want != fs
        {
            return Err(VolumeError::invalid(
                "parameters.fsType",
                format!(
                    "{want:?} contradicts the volume capability's fs type {fs:?} (set csi.storage.k8s.io/fstype in the StorageClass; kubelet mounts with that one)"
                ),
            ));
        }
        let source = match &req.volume_content_source {
            None => None,
            Some(cs) => Some(match &cs.r#type {
                None => {
                    return Err(VolumeError::invalid(
                        "volume_content_source",
                        "snapshot or volume is required",
                    ));
                }
                Some(Type::Snapshot(s)) => SourceId::Snapshot(volume_id::lookup(
                    "volume_content_source.snapshot.snapshot_id",
                    "snapshot",
                    &s.snapshot_id,
                )?),
                Some(Type::Volume(v)) => SourceId::Volume(volume_id::lookup(
                    "volume_content_source.volume.volume_id",
                    "volume",
                    &v.volume_id,
                )?),
            }),
        };
        Ok(Ask {
            name: req.name.clone(),
            lv_name: vglet_lvm::naming::lv_name_for(&req.name),
            params,
            range,
            caps,
            content,
            requirement: req.accessibility_requirements.clone(),
            source,
            cache: mutable.cache,
        })
    }
}
