//! Validation of CSI volume capabilities: which access types, modes, filesystems and mount
//! flags vglet serves. Everything here is checked before any command runs.

use tonic::Status;
use vglet_csi_proto::v1::VolumeCapability;
use vglet_csi_proto::v1::volume_capability::{AccessType, access_mode::Mode};

use crate::status::invalid;

/// Filesystems vglet creates and mounts.
pub const FS_TYPES: &[&str] = &["ext4", "xfs"];
pub const DEFAULT_FS: &str = "ext4";

/// The capability types live in the node-volume library, which the reviver shares.
pub use vglet_volume::capability::{Access, Capability, VgKind};

/// Validates one capability for a VG of `kind`. `field` names it in errors.
pub fn validate(
    field: &str,
    cap: Option<&VolumeCapability>,
    kind: VgKind,
) -> Result<Capability, Status> {
    let cap = cap.ok_or_else(|| invalid(field, "is required"))?;
    let mode_raw = cap
        .access_mode
        .as_ref()
        .ok_or_else(|| invalid(&format!("{field}.access_mode"), "is required"))?
        .mode;
    let mode = Mode::try_from(mode_raw).map_err(|_| {
        invalid(
            &format!("{field}.access_mode"),
            format!("unknown mode {mode_raw}"),
        )
    })?;
    let access = match &cap.access_type {
        None => {
            return Err(invalid(
                &format!("{field}.access_type"),
                "block or mount is required",
            ));
        }
        Some(AccessType::Block(_)) => Access::Block,
        Some(AccessType::Mount(m)) => {
            let fs_type = if m.fs_type.is_empty() {
                DEFAULT_FS.to_string()
            } else {
                m.fs_type.clone()
            };
            if !FS_TYPES.contains(&fs_type.as_str()) {
                return Err(invalid(
                    &format!("{field}.mount.fs_type"),
                    format!(
                        "{fs_type:?} is not supported; use one of {}",
                        FS_TYPES.join(", ")
                    ),
                ));
            }
            vglet_mount::parse_mount_flags(&m.mount_flags)
                .map_err(|e| invalid(&format!("{field}.mount.mount_flags"), e))?;
            if !m.volume_mount_group.is_empty() {
                return Err(invalid(
                    &format!("{field}.mount.volume_mount_group"),
                    "is not supported (VOLUME_MOUNT_GROUP is not advertised)",
                ));
            }
            Access::Mount {
                fs_type,
                mount_flags: m.mount_flags.clone(),
            }
        }
    };
    let mode_ok = match mode {
        Mode::Unknown => false,
        Mode::SingleNodeWriter
        | Mode::SingleNodeReaderOnly
        | Mode::SingleNodeSingleWriter
        | Mode::SingleNodeMultiWriter
        | Mode::MultiNodeReaderOnly => true,
        // Two writers on one filesystem from two kernels corrupt it; a shared VG can offer
        // multi-writer only for raw block (the application coordinates, e.g. live migration).
        Mode::MultiNodeSingleWriter | Mode::MultiNodeMultiWriter => {
            kind == VgKind::Shared && access == Access::Block
        }
    };
    if !mode_ok {
        let why = match (mode, kind) {
            (Mode::Unknown, _) => "access mode UNKNOWN is not allowed".to_string(),
            (_, VgKind::Local) => format!(
                "{} needs storage that several nodes see; this volume group is node-local",
                mode.as_str_name()
            ),
            (_, VgKind::Shared) => format!(
                "{} is offered only for raw block volumes, never for filesystems",
                mode.as_str_name()
            ),
        };
        return Err(invalid(&format!("{field}.access_mode"), why));
    }
    Ok(Capability { access, mode })
}

/// Validates a list of capabilities (CreateVolume, ValidateVolumeCapabilities). All must be
/// satisfiable by one volume: mixing block with mount, or two filesystems, is rejected.
pub fn validate_all(
    field: &str,
    caps: &[VolumeCapability],
    kind: VgKind,
) -> Result<Vec<Capability>, Status> {
    if caps.is_empty() {
        return Err(invalid(field, "at least one volume capability is required"));
    }
    let parsed = caps
        .iter()
        .enumerate()
        .map(|(i, c)| validate(&format!("{field}[{i}]"), Some(c), kind))
        .collect::<Result<Vec<_>, _>>()?;
    let block = parsed.iter().filter(|c| c.is_block()).count();
    if block != 0 && block != parsed.len() {
        return Err(invalid(
            field,
            "cannot ask for block and mount access on one volume",
        ));
    }
    let mut fs: Vec<&str> = parsed.iter().filter_map(|c| c.fs_type()).collect();
    fs.dedup();
    if fs.len() > 1 {
        return Err(invalid(
            field,
            format!("asks for several filesystems: {}", fs.join(", ")),
        ));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vglet_csi_proto::v1::volume_capability::{AccessMode, BlockVolume, MountVolume};

    fn cap(access: AccessType, mode: Mode) -> VolumeCapability {
        VolumeCapability {
            access_type: Some(access),
            access_mode: Some(AccessMode { mode: mode as i32 }),
        }
    }
    fn mount(fs: &str, flags: &[&str]) -> AccessType {
        AccessType::Mount(MountVolume {
            fs_type: fs.into(),
            mount_flags: flags.iter().map(|s| s.to_string()).collect(),
            volume_mount_group: String::new(),
        })
    }
    fn block() -> AccessType {
        AccessType::Block(BlockVolume {})
    }

    #[test]
    fn default_fs_is_ext4() {
        let c = validate(
            "c",
            Some(&cap(mount("", &[]), Mode::SingleNodeWriter)),
            VgKind::Local,
        )
        .unwrap();
        assert_eq!(c.fs_type(), Some("ext4"));
    }

    #[test]
    fn rejects_unknown_fs_and_flags() {
        for c in [
            cap(mount("btrfs", &[]), Mode::SingleNodeWriter),
            cap(mount("ext4", &["bogus"]), Mode::SingleNodeWriter),
            cap(mount("xfs", &["noatime,suid"]), Mode::SingleNodeWriter),
        ] {
            let e = validate("c", Some(&c), VgKind::Local).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        }
    }

    #[test]
    fn multi_node_writers_rejected_on_local_vg() {
        for m in [Mode::MultiNodeMultiWriter, Mode::MultiNodeSingleWriter] {
            let e = validate("c", Some(&cap(block(), m)), VgKind::Local).unwrap_err();
            assert!(e.message().contains("node-local"), "{e:?}");
        }
    }

    #[test]
    fn multi_node_writer_block_only_on_shared_vg() {
        assert!(
            validate(
                "c",
                Some(&cap(block(), Mode::MultiNodeMultiWriter)),
                VgKind::Shared
            )
            .is_ok()
        );
        assert!(
            validate(
                "c",
                Some(&cap(mount("xfs", &[]), Mode::MultiNodeMultiWriter)),
                VgKind::Shared
            )
            .is_err()
        );
    }

    #[test]
    fn reader_only_is_read_only() {
        let c = validate(
            "c",
            Some(&cap(mount("xfs", &[]), Mode::MultiNodeReaderOnly)),
            VgKind::Local,
        )
        .unwrap();
        assert!(c.is_read_only_mode());
    }

    #[test]
    fn unknown_mode_and_missing_parts_rejected() {
        assert!(validate("c", Some(&cap(block(), Mode::Unknown)), VgKind::Local).is_err());
        assert!(validate("c", None, VgKind::Local).is_err());
        let no_type = VolumeCapability {
            access_type: None,
            access_mode: Some(AccessMode {
                mode: Mode::SingleNodeWriter as i32,
            }),
        };
        assert!(validate("c", Some(&no_type), VgKind::Local).is_err());
    }

    #[test]
    fn mixed_block_and_mount_rejected() {
        let caps = [
            cap(block(), Mode::SingleNodeWriter),
            cap(mount("ext4", &[]), Mode::SingleNodeWriter),
        ];
        assert!(validate_all("caps", &caps, VgKind::Local).is_err());
        assert!(validate_all("caps", &[], VgKind::Local).is_err());
    }
}
