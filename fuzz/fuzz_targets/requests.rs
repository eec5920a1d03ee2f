//! Random CSI requests (protobuf bytes) through the pure validators that run before any
//! command or path is touched: none may panic, whatever the bytes.
#![no_main]

use std::path::Path;

use csi_driver::rules::capability::{self, VgKind};
use csi_driver::rules::capacity::Range;
use csi_driver::rules::params;
use csi_driver::rules::volume_id::VolumeId;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use vglet_csi_proto::v1::{
    ControllerExpandVolumeRequest, CreateVolumeRequest, NodePublishVolumeRequest,
    NodeStageVolumeRequest, ValidateVolumeCapabilitiesRequest,
};

const EXTENT: u64 = 4 << 20;

fn range(r: Option<&vglet_csi_proto::v1::CapacityRange>) {
    if let Ok(range) = Range::parse("capacity_range", r)
        && let Ok(size) = range.lv_size(EXTENT)
    {
        assert!(size > 0 && size % EXTENT == 0, "{range:?} -> {size}");
        assert!(range.accepts(size), "{range:?} -> {size}");
    }
}

fn caps(c: &[vglet_csi_proto::v1::VolumeCapability]) {
    for kind in [VgKind::Local, VgKind::Shared] {
        let _ = capability::validate_all("volume_capabilities", c, kind);
    }
}

fn path(p: &str) {
    let _ = vglet_mount::validate_target_path(Path::new(p));
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => {
            if let Ok(r) = CreateVolumeRequest::decode(body) {
                let _ = params::parse("parameters", &r.parameters);
                range(r.capacity_range.as_ref());
                caps(&r.volume_capabilities);
                let _ = vglet_lvm::naming::lv_name_for(&r.name);
            }
        }
        1 => {
            if let Ok(r) = NodeStageVolumeRequest::decode(body) {
                let _ = VolumeId::parse(&r.volume_id);
                path(&r.staging_target_path);
                for kind in [VgKind::Local, VgKind::Shared] {
                    let _ = capability::validate(
                        "volume_capability",
                        r.volume_capability.as_ref(),
                        kind,
                    );
                }
            }
        }
        2 => {
            if let Ok(r) = NodePublishVolumeRequest::decode(body) {
                let _ = VolumeId::parse(&r.volume_id);
                path(&r.staging_target_path);
                path(&r.target_path);
                if let Some(c) = &r.volume_capability {
                    caps(std::slice::from_ref(c));
                }
            }
        }
        3 => {
            if let Ok(r) = ControllerExpandVolumeRequest::decode(body) {
                let _ = VolumeId::parse(&r.volume_id);
                range(r.capacity_range.as_ref());
            }
        }
        _ => {
            if let Ok(r) = ValidateVolumeCapabilitiesRequest::decode(body) {
                let _ = VolumeId::parse(&r.volume_id);
                caps(&r.volume_capabilities);
                let _ = params::parse("parameters", &r.parameters);
            }
        }
    }
});
