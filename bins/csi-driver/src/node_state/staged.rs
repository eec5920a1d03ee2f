//! Whether a NodePublishVolume can trust what this node already knows, instead of an lvm
//! read (~300 ms under emulation, 20-50 ms on hardware, on every pod start).
//!
//! NodeStageVolume read LVM, checked ownership and capability, and wrote the volume's state
//! record. A publish after it is proven by that record and by the kernel alone: the device
//! node `/dev/<vg>/<lv>` exists (the LV is active here), device-mapper names that device
//! with the LV uuid the record holds (the same LV, not one re-created under the name), and
//! for a filesystem the staging mount is of that very device. Anything that does not agree
//! exactly is not refused here but left to the lvm read, which decides as it always did:
//! this is a shortcut for the ordinary case, never a second set of rules.

use std::path::Path;

use vglet_csi_proto::v1::VolumeCapability;
use vglet_mount::MountEntry;
use vglet_state::{Record, Target};
use vglet_volume::{Access, Capability, activation_for, device_path, dm_uuid_is_lv, kind_of};

/// What a publish the record and the kernel prove gives (the library's, which binds it).
pub use vglet_volume::Proven;
/// Kept here for the controller's in-use check, which compares dm uuids too.
pub use vglet_volume::without_dashes;

use crate::rules::capability;
use crate::rules::volume_id::VolumeId;

/// What the kernel shows of the volume, gathered without running any command.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// (major, minor) of `/dev/<vg>/<lv>`; `None` when there is no such device node.
    pub device: Option<(u64, u64)>,
    /// That device's device-mapper uuid (`/sys/dev/block/M:m/dm/uuid`).
    pub dm_uuid: Option<String>,
    /// The mount at the staging path.
    pub staging_mount: Option<MountEntry>,
}

/// What a NodePublishVolume asks, as far as the proof needs it.
#[derive(Debug, Clone, Copy)]
pub struct PublishAsk<'a> {
    pub id: &'a VolumeId,
    pub cap: Option<&'a VolumeCapability>,
    pub staging: &'a Path,
    /// This driver's name, which the record must carry.
    pub driver_name: &'a str,
    /// The volume's VG is one this driver serves.
    pub served: bool,
}

/// The publish that stands in the way of another read/write publish at `target` of a
/// SINGLE_NODE_SINGLE_WRITER volume: the spec's "can only be published once as read/write
/// at a single workload on a single node". Read-only publishes are not limited by it, and
/// SINGLE_NODE_MULTI_WRITER (and SINGLE_NODE_WRITER, which Kubernetes' ReadWriteOnce uses
/// for several pods on one node) allow any number; the record's targets say what is
/// published.
pub fn single_writer_conflict<'a>(
    cap: &Capability,
    read_only: bool,
    targets: &'a [Target],
    target: &Path,
) -> Option<&'a Target> {
    use vglet_csi_proto::v1::volume_capability::access_mode::Mode;
    if cap.mode != Mode::SingleNodeSingleWriter || read_only {
        return None;
    }
    targets
        .iter()
        .find(|t| !t.read_only && vglet_mount::normalize_path(&t.path) != target)
}

/// Whether the request, its record and what the kernel shows agree on everything the lvm
/// read would have established; `Err` says what did not (logged, then the lvm read runs).
pub fn prove(ask: &PublishAsk, record: &Record, seen: &Observed) -> Result<Proven, &'static str> {
    let PublishAsk {
        id,
        cap,
        staging,
        driver_name,
        served,
    } = *ask;
    if !served {
        return Err("the volume group is not served");
    }
    if record.volume_id != id.to_string() || record.vg != id.vg || record.lv != id.lv {
        return Err("the record is of another volume");
    }
    if record.driver != driver_name {
        return Err("the record is of another driver");
    }
    if record.staging_path != staging {
        return Err("the volume was staged at another path");
    }
    if record.lv_uuid.is_empty() {
        return Err("the record has no LV uuid");
    }
    let kind = kind_of(record.activation);
    let cap = capability::validate("volume_capability", cap, kind)
        .map_err(|_| "the capability is not valid as it stands")?;
    let same_access = match (&cap.access, &record.access) {
        (Access::Block, vglet_state::Access::Block) => true,
        (
            Access::Mount { fs_type, .. },
            vglet_state::Access::Mount {
                fs_type: staged, ..
            },
        ) => fs_type == staged,
        _ => false,
    };
    if !same_access {
        return Err("the capability's access type differs from the staged one");
    }
    if cap.is_read_only_mode() != record.read_only {
        return Err("the capability's read-only mode differs from the staged one");
    }
    if activation_for(kind, &cap) != record.activation {
        return Err("the capability needs another activation than the staged one");
    }
    let Some(numbers) = seen.device else {
        return Err("the device node is missing");
    };
    if !seen
        .dm_uuid
        .as_deref()
        .is_some_and(|u| dm_uuid_is_lv(u, &record.lv_uuid))
    {
        return Err("the device is not the recorded LV");
    }
    let source = if cap.is_block() {
        device_path(&id.vg, &id.lv)
    } else {
        match &seen.staging_mount {
            Some(m) if (m.major as u64, m.minor as u64) == numbers => staging.to_path_buf(),
            Some(_) => return Err("another device is mounted at the staging path"),
            None => return Err("nothing is mounted at the staging path"),
        }
    };
    Ok(Proven {
        cap,
        source,
        source_numbers: numbers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vglet_csi_proto::v1::volume_capability::{
        AccessMode, AccessType, BlockVolume, MountVolume, access_mode::Mode,
    };
    use vglet_volume::VgKind;

    const LV_UUID: &str = "f3kLtQ-cNnV-Qp2W-VMbU-hT0R-7cdn-9Zv0xw";
    const VG_UUID: &str = "AbCdEfGhIjKlMnOpQrStUvWxYz012345";

    fn dm_uuid() -> String {
        format!("LVM-{VG_UUID}{}", LV_UUID.replace('-', ""))
    }

    fn id() -> VolumeId {
        VolumeId::parse("vg0/csi-pvc-1").unwrap()
    }

    fn mount_cap(fs: &str, mode: Mode) -> VolumeCapability {
        VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume {
                fs_type: fs.into(),
                ..Default::default()
            })),
            access_mode: Some(AccessMode { mode: mode as i32 }),
        }
    }

    fn block_cap(mode: Mode) -> VolumeCapability {
        VolumeCapability {
            access_type: Some(AccessType::Block(BlockVolume {})),
            access_mode: Some(AccessMode { mode: mode as i32 }),
        }
    }

    fn record(access: vglet_state::Access) -> Record {
        Record {
            version: vglet_state::RECORD_VERSION,
            volume_id: "vg0/csi-pvc-1".into(),
            vg: "vg0".into(),
            lv: "csi-pvc-1".into(),
            lv_uuid: LV_UUID.into(),
            driver: "lvm.vglet.io".into(),
            access,
            read_only: false,
            activation: vglet_state::Activation::Local,
            staging_path: "/stage/pvc-1".into(),
            targets: Vec::new(),
            crypt_mapping: None,
        }
    }

    fn ext4() -> vglet_state::Access {
        vglet_state::Access::Mount {
            fs_type: "ext4".into(),
            mount_flags: vec![],
        }
    }

    fn mount_of(numbers: (u32, u32)) -> MountEntry {
        MountEntry {
            mount_id: 40,
            parent_id: 1,
            major: numbers.0,
            minor: numbers.1,
            root: "/".into(),
            mount_point: "/stage/pvc-1".into(),
            fs_type: "ext4".into(),
            source: Some("/dev/mapper/vg0-csi--pvc--1".into()),
            options: vec!["rw".into()],
        }
    }

    fn seen() -> Observed {
        Observed {
            device: Some((253, 3)),
            dm_uuid: Some(format!("{}\n", dm_uuid())),
            staging_mount: Some(mount_of((253, 3))),
        }
    }

    fn check(
        cap: &VolumeCapability,
        record: &Record,
        seen: &Observed,
    ) -> Result<Proven, &'static str> {
        let id = id();
        let ask = PublishAsk {
            id: &id,
            cap: Some(cap),
            staging: Path::new("/stage/pvc-1"),
            driver_name: "lvm.vglet.io",
            served: true,
        };
        prove(&ask, record, seen)
    }

    #[test]
    fn single_writer_is_published_read_write_once() {
        use crate::rules::capability::validate;
        let cap = |mode| validate("c", Some(&mount_cap("ext4", mode)), VgKind::Local).unwrap();
        let rw = Target {
            path: "/pods/a/vol/".into(),
            read_only: false,
        };
        let ro = Target {
            path: "/pods/b/vol".into(),
            read_only: true,
        };
        let single = cap(Mode::SingleNodeSingleWriter);
        let targets = [ro.clone(), rw.clone()];
        let other = Path::new("/pods/c/vol");
        assert_eq!(
            single_writer_conflict(&single, false, &targets, other),
            Some(&rw)
        );
        // The same target again (its recorded path not normalised) is the idempotent repeat.
        assert_eq!(
            single_writer_conflict(&single, false, &targets, Path::new("/pods/a/vol")),
            None
        );
        assert_eq!(single_writer_conflict(&single, true, &targets, other), None);
        assert_eq!(
            single_writer_conflict(&single, false, std::slice::from_ref(&ro), other),
            None
        );
        for mode in [Mode::SingleNodeMultiWriter, Mode::SingleNodeWriter] {
            assert_eq!(
                single_writer_conflict(&cap(mode), false, &targets, other),
                None
            );
        }
    }

    #[test]
    fn a_staged_filesystem_is_proven_by_its_staging_mount() {
        let p = check(
            &mount_cap("ext4", Mode::SingleNodeWriter),
            &record(ext4()),
            &seen(),
        )
        .unwrap();
        assert_eq!(p.source, Path::new("/stage/pvc-1"));
        assert_eq!(p.source_numbers, (253, 3));
        assert!(!p.cap.is_block());
        // An empty fs_type is the default filesystem, as NodeStage took it.
        assert!(
            check(
                &mount_cap("", Mode::SingleNodeWriter),
                &record(ext4()),
                &seen()
            )
            .is_ok()
        );
    }

    #[test]
    fn a_staged_block_volume_is_proven_by_its_device_node() {
        let mut s = seen();
        s.staging_mount = None;
        let p = check(
            &block_cap(Mode::SingleNodeWriter),
            &record(vglet_state::Access::Block),
            &s,
        )
        .unwrap();
        assert_eq!(p.source, Path::new("/dev/vg0/csi-pvc-1"));
        assert_eq!(p.source_numbers, (253, 3));
    }

    #[test]
    fn not_staged_or_another_device_goes_to_lvm() {
        let cap = mount_cap("ext4", Mode::SingleNodeWriter);
        let r = record(ext4());
        let mut s = seen();
        s.staging_mount = None;
        assert!(check(&cap, &r, &s).is_err(), "unmounted staging path");
        s.staging_mount = Some(mount_of((253, 9)));
        assert!(check(&cap, &r, &s).is_err(), "another device staged");
        let mut s = seen();
        s.device = None;
        assert!(check(&cap, &r, &s).is_err(), "LV not active here");
        let mut s = seen();
        s.dm_uuid = Some(format!("LVM-{VG_UUID}{}", "y".repeat(32)));
        assert!(
            check(&cap, &r, &s).is_err(),
            "an LV re-created under the name"
        );
        s.dm_uuid = None;
        assert!(check(&cap, &r, &s).is_err(), "dm uuid unreadable");
    }

    #[test]
    fn a_record_of_something_else_goes_to_lvm() {
        let cap = mount_cap("ext4", Mode::SingleNodeWriter);
        let mut r = record(ext4());
        r.volume_id = "vg0/csi-pvc-2".into();
        assert!(check(&cap, &r, &seen()).is_err());
        let mut r = record(ext4());
        r.driver = "other.example.com".into();
        assert!(check(&cap, &r, &seen()).is_err());
        let mut r = record(ext4());
        r.staging_path = "/stage/elsewhere".into();
        assert!(check(&cap, &r, &seen()).is_err());
        let mut r = record(ext4());
        r.lv_uuid = String::new();
        assert!(
            check(&cap, &r, &seen()).is_err(),
            "an old record without uuid"
        );
        let id = id();
        let ask = PublishAsk {
            id: &id,
            cap: Some(&cap),
            staging: Path::new("/stage/pvc-1"),
            driver_name: "lvm.vglet.io",
            served: false,
        };
        let served = prove(&ask, &record(ext4()), &seen());
        assert!(served.is_err(), "a VG no longer served");
    }

    #[test]
    fn a_capability_the_record_does_not_match_goes_to_lvm() {
        let r = record(ext4());
        for (cap, why) in [
            (
                mount_cap("xfs", Mode::SingleNodeWriter),
                "another filesystem",
            ),
            (block_cap(Mode::SingleNodeWriter), "block for a filesystem"),
            (
                mount_cap("ext4", Mode::SingleNodeReaderOnly),
                "read-only for a writable staging",
            ),
            (mount_cap("ext4", Mode::Unknown), "an invalid mode"),
        ] {
            assert!(check(&cap, &r, &seen()).is_err(), "{why}");
        }
        assert!(
            check(
                &mount_cap("ext4", Mode::SingleNodeWriter),
                &record(vglet_state::Access::Block),
                &seen()
            )
            .is_err(),
            "a filesystem for a block volume"
        );
        let mut ro = record(ext4());
        ro.read_only = true;
        assert!(
            check(&mount_cap("ext4", Mode::SingleNodeWriter), &ro, &seen()).is_err(),
            "writable for a read-only staging"
        );
        assert!(check(&mount_cap("ext4", Mode::SingleNodeReaderOnly), &ro, &seen()).is_ok());
    }

    #[test]
    fn shared_volume_groups_keep_their_activation() {
        let mut r = record(vglet_state::Access::Block);
        r.activation = vglet_state::Activation::Exclusive;
        let mut s = seen();
        s.staging_mount = None;
        assert!(check(&block_cap(Mode::SingleNodeWriter), &r, &s).is_ok());
        // Multi-node block takes a shared lock: an exclusively staged volume is not that.
        assert!(check(&block_cap(Mode::MultiNodeMultiWriter), &r, &s).is_err());
        r.activation = vglet_state::Activation::Shared;
        assert!(check(&block_cap(Mode::MultiNodeMultiWriter), &r, &s).is_ok());
    }
}
