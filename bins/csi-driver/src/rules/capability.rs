//! Validation of CSI volume capabilities: which access types, modes, filesystems and mount
//! flags vglet serves. Everything here is checked before any command runs.

use vglet_csi_proto::v1::VolumeCapability;
use vglet_csi_proto::v1::volume_capability::{AccessType, access_mode::Mode};
use vglet_lvm::tags::Content;

use crate::rules::error::VolumeError;

/// Filesystems vglet creates and mounts: the mount crate's one list.
pub const FS_TYPES: &[&str] = vglet_mount::SUPPORTED_FILESYSTEMS;
pub const DEFAULT_FS: &str = "ext4";

/// The capability types live in the node-volume library, which the reviver shares.
pub use vglet_volume::capability::{Access, Capability, VgKind};

/// Validates one capability for a VG of `kind`. `field` names it in errors.
pub fn validate(
    field: &str,
    cap: Option<&VolumeCapability>,
    kind: VgKind,
) -> Result<Capability, VolumeError> {
    let cap = parse(field, cap)?;
    check_kind(field, &cap, kind)?;
    Ok(cap)
}

/// One capability checked in everything that does not depend on the VG it will be served
/// from: what a request can be refused for before anything is read.
pub fn parse(field: &str, cap: Option<&VolumeCapability>) -> Result<Capability, VolumeError> {
    let cap = cap.ok_or_else(|| VolumeError::invalid(field, "is required"))?;
    let mode_raw = cap
        .access_mode
        .as_ref()
        .ok_or_else(|| VolumeError::invalid(format!("{field}.access_mode"), "is required"))?
        .mode;
    let mode = Mode::try_from(mode_raw).map_err(|_| {
        VolumeError::invalid(
            format!("{field}.access_mode"),
            format!("unknown mode {mode_raw}"),
        )
    })?;
    let access = match &cap.access_type {
        None => {
            return Err(VolumeError::invalid(
                format!("{field}.access_type"),
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
                return Err(VolumeError::invalid(
                    format!("{field}.mount.fs_type"),
                    format!(
                        "{fs_type:?} is not supported; use one of {}",
                        FS_TYPES.join(", ")
                    ),
                ));
            }
            vglet_mount::parse_mount_flags(&m.mount_flags)
                .map_err(|e| VolumeError::invalid(format!("{field}.mount.mount_flags"), e))?;
            if !m.volume_mount_group.is_empty() {
                return Err(VolumeError::invalid(
                    format!("{field}.mount.volume_mount_group"),
                    "is not supported (VOLUME_MOUNT_GROUP is not advertised)",
                ));
            }
            Access::Mount {
                fs_type,
                mount_flags: m.mount_flags.clone(),
            }
        }
    };
    if mode == Mode::Unknown {
        return Err(VolumeError::invalid(
            format!("{field}.access_mode"),
            "access mode UNKNOWN is not allowed",
        ));
    }
    Ok(Capability { access, mode })
}

/// The rule that depends on the VG: which access modes a VG of `kind` serves.
pub fn check_kind(field: &str, cap: &Capability, kind: VgKind) -> Result<(), VolumeError> {
    let mode = cap.mode;
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
            kind == VgKind::Shared && cap.access == Access::Block
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
        return Err(VolumeError::invalid(format!("{field}.access_mode"), why));
    }
    Ok(())
}

/// Validates a list of capabilities (CreateVolume, ValidateVolumeCapabilities). All must be
/// satisfiable by one volume: mixing block with mount, or two filesystems, is rejected.
pub fn validate_all(
    field: &str,
    caps: &[VolumeCapability],
    kind: VgKind,
) -> Result<Vec<Capability>, VolumeError> {
    let parsed = parse_all(field, caps)?;
    check_all_kind(field, &parsed, kind)?;
    Ok(parsed)
}

/// [`validate_all`] without the VG's kind: [`parse`] for each, and one volume for all.
pub fn parse_all(field: &str, caps: &[VolumeCapability]) -> Result<Vec<Capability>, VolumeError> {
    if caps.is_empty() {
        return Err(VolumeError::invalid(
            field,
            "at least one volume capability is required",
        ));
    }
    let parsed = caps
        .iter()
        .enumerate()
        .map(|(i, c)| parse(&format!("{field}[{i}]"), Some(c)))
        .collect::<Result<Vec<_>, _>>()?;
    let block = parsed.iter().filter(|c| c.is_block()).count();
    if block != 0 && block != parsed.len() {
        return Err(VolumeError::invalid(
            field,
            "cannot ask for block and mount access on one volume",
        ));
    }
    let mut fs: Vec<&str> = parsed.iter().filter_map(|c| c.fs_type()).collect();
    fs.dedup();
    if fs.len() > 1 {
        return Err(VolumeError::invalid(
            field,
            format!("asks for several filesystems: {}", fs.join(", ")),
        ));
    }
    Ok(parsed)
}

/// [`check_kind`] for each of the capabilities [`parse_all`] returned from `field`.
pub fn check_all_kind(field: &str, caps: &[Capability], kind: VgKind) -> Result<(), VolumeError> {
    caps.iter()
        .enumerate()
        .try_for_each(|(i, c)| check_kind(&format!("{field}[{i}]"), c, kind))
}

/// What the capabilities [`parse_all`] returned ask the volume to hold.
pub fn content_of(caps: &[Capability]) -> Content {
    match caps.first().and_then(Capability::fs_type) {
        Some(fs) => Content::Filesystem(fs.to_string()),
        None => Content::Block,
    }
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
            assert!(matches!(e, VolumeError::Invalid { .. }), "{e:?}");
        }
    }

    #[test]
    fn multi_node_writers_rejected_on_local_vg() {
        for m in [Mode::MultiNodeMultiWriter, Mode::MultiNodeSingleWriter] {
            let e = validate("c", Some(&cap(block(), m)), VgKind::Local).unwrap_err();
            assert!(e.to_string().contains("node-local"), "{e:?}");
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
