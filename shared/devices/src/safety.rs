//! Why a device must not be handed to vg-init. Pure functions over facts gathered
//! elsewhere (sysfs, mount table, blkid, lvm), so every rule is unit-tested without a host.
//! What a device holds (PV labels, data, holders) is judged by [`crate::taking::may_take`],
//! the rule vg-init applies too, without `--wipe`; the rest (mounts, partitions, media,
//! size) is disk-discover's own selection.
//! All reasons are collected, not just the first: an operator fixing one should not
//! discover the next on the following run.

use std::collections::BTreeSet;

use vglet_mount::{MountEntry, Signature};

use crate::sysfs::BlockDevice;
use crate::taking::{Content, DeviceFacts, LvmLabel, VgFacts, may_take};
use vglet_common::size::format_size;

/// What blkid said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureCheck {
    Blank,
    Found(Signature),
    /// blkid failed or timed out: unknown content is treated as data.
    Failed(String),
    /// Not probed (no medium: size 0).
    NotProbed,
}

/// What lvm says about a device that carries an LVM2_member signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PvStatus {
    NotPv,
    InVg {
        vg: String,
        /// Without dashes, as it appears in LVM dm uuids ("LVM-<vg uuid><lv uuid>").
        vg_uuid: String,
        lv_count: u64,
    },
    Orphan,
    /// A PV label that lvm did not report (filtered out, devices file, lvm missing).
    Unknown(String),
}

/// Everything the verdict depends on.
#[derive(Clone)]
pub struct SafetyInput<'a> {
    pub device: &'a BlockDevice,
    pub mounts: &'a [MountEntry],
    pub signature: &'a SignatureCheck,
    pub pv: &'a PvStatus,
    pub target_vg: Option<&'a str>,
    pub min_size: u64,
    /// dm uuid of each holder, by holder name (for holders that are dm devices).
    pub holder_dm_uuid: &'a dyn Fn(&str) -> Option<String>,
}

/// `reasons` empty means the device may be used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub reasons: Vec<String>,
    /// Set when the device is already a PV of the target VG.
    pub existing_pv_of: Option<String>,
}

impl Verdict {
    pub fn is_safe(&self) -> bool {
        self.reasons.is_empty()
    }
}

pub fn assess(input: &SafetyInput) -> Verdict {
    let dev = input.device;
    let mut v = Verdict::default();
    let existing_vg = match input.pv {
        PvStatus::InVg { vg, vg_uuid, .. } if Some(vg.as_str()) == input.target_vg => {
            v.existing_pv_of = Some(vg.clone());
            Some(vg_uuid.as_str())
        }
        _ => None,
    };

    v.reasons.extend(mount_reasons(dev, input.mounts));

    let label = match input.signature {
        SignatureCheck::Found(Signature::Content { type_name, .. })
            if type_name == "LVM2_member" =>
        {
            match input.pv {
                PvStatus::InVg { vg, lv_count, .. } => LvmLabel::InVg(VgFacts {
                    vg: vg.clone(),
                    lv_count: *lv_count,
                    pvs_not_requested: Vec::new(),
                }),
                PvStatus::Orphan => LvmLabel::Orphan,
                PvStatus::Unknown(why) => LvmLabel::Unlisted(why.clone()),
                PvStatus::NotPv => LvmLabel::Unlisted("lvm does not list it as a PV".into()),
            }
        }
        _ => LvmLabel::None,
    };
    let content = match input.signature {
        SignatureCheck::Blank | SignatureCheck::NotProbed => Content::Blank,
        SignatureCheck::Found(_) if label != LvmLabel::None => Content::Blank,
        SignatureCheck::Found(sig) => Content::Data(describe_signature(sig)),
        SignatureCheck::Failed(e) => Content::Unreadable(e.clone()),
    };

    // The LVs of the target VG sit on its PVs as dm holders; they are the expected use.
    let expected_holder = |h: &str| {
        existing_vg.is_some_and(|uuid| {
            !uuid.is_empty()
                && (input.holder_dm_uuid)(h).is_some_and(|u| u.starts_with(&format!("LVM-{uuid}")))
        })
    };
    let holders: Vec<String> = dev
        .holders
        .iter()
        .filter(|h| !expected_holder(h))
        .cloned()
        .collect();
    // disk-discover lists what vg-init may take without --wipe: the same rule, wipe off.
    if let Err(reasons) = may_take(
        input.target_vg,
        false,
        &DeviceFacts {
            holders: &holders,
            label: &label,
            content: &content,
        },
    ) {
        v.reasons.extend(reasons);
    }

    if !dev.partitions.is_empty() {
        let names: Vec<&str> = dev.partitions.iter().map(|p| p.name.as_str()).collect();
        v.reasons
            .push(format!("has partitions: {}", names.join(", ")));
    }
    for p in dev.partitions.iter().filter(|p| !p.holders.is_empty()) {
        v.reasons.push(format!(
            "partition {} in use by {} (holders)",
            p.name,
            p.holders.join(", ")
        ));
    }

    if dev.read_only {
        v.reasons.push("read-only".to_string());
    }
    if dev.removable {
        v.reasons.push("removable media".to_string());
    }
    if dev.size_bytes == 0 {
        v.reasons
            .push("size 0 (no medium, or no backing file)".to_string());
    } else if dev.size_bytes < input.min_size {
        v.reasons.push(format!(
            "smaller than --min-size ({} < {})",
            format_size(dev.size_bytes),
            format_size(input.min_size)
        ));
    }
    v
}

/// Mounts of the device or any of its partitions, by device number (a path comparison
/// would miss /dev/disk/by-* and /dev/root sources).
fn mount_reasons(dev: &BlockDevice, mounts: &[MountEntry]) -> Vec<String> {
    let mut own = BTreeSet::new();
    let mut parts = BTreeSet::new();
    for m in mounts {
        if (m.major, m.minor) == (dev.major, dev.minor) {
            own.insert(m.mount_point.display().to_string());
        }
        for p in &dev.partitions {
            if (m.major, m.minor) == (p.major, p.minor) {
                parts.insert((p.name.clone(), m.mount_point.display().to_string()));
            }
        }
    }
    let mut reasons = Vec::new();
    if !own.is_empty() {
        reasons.push(format!(
            "mounted at {}",
            own.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    for (p, mp) in parts {
        reasons.push(format!("partition {p} mounted at {mp}"));
    }
    reasons
}

pub fn describe_signature(sig: &Signature) -> String {
    match sig {
        Signature::Content { type_name, usage } => {
            let t = type_name.as_str();
            match usage.as_deref() {
                _ if t == "swap" => "holds swap space".to_string(),
                Some("filesystem") => format!("holds {} {t} filesystem", article(t)),
                Some("raid") => format!("is a RAID member ({t})"),
                Some("crypto") => format!("holds an encrypted volume ({t})"),
                _ => format!("holds {} {t} signature", article(t)),
            }
        }
        Signature::PartitionTable(t) => format!("holds {} {t} partition table", article(t)),
        Signature::Ambivalent(d) => format!("holds several signatures ({d})"),
    }
}

/// "an ext4", "an xfs", "a btrfs".
fn article(word: &str) -> &'static str {
    match word.chars().next().map(|c| c.to_ascii_lowercase()) {
        Some('a' | 'e' | 'i' | 'o' | 'u' | 'x') => "an",
        _ => "a",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysfs::PartitionInfo;
    use std::path::PathBuf;

    fn disk() -> BlockDevice {
        crate::sysfs::fake::block_device("sdb", 8, 16)
    }

    fn mount(major: u32, minor: u32, at: &str) -> MountEntry {
        MountEntry {
            mount_id: 1,
            parent_id: 0,
            major,
            minor,
            root: PathBuf::from("/"),
            mount_point: PathBuf::from(at),
            fs_type: "ext4".into(),
            source: None,
            options: vec!["rw".into()],
        }
    }

    fn no_dm(_: &str) -> Option<String> {
        None
    }

    fn run(dev: &BlockDevice, mounts: &[MountEntry], sig: SignatureCheck, pv: PvStatus) -> Verdict {
        assess(&SafetyInput {
            device: dev,
            mounts,
            signature: &sig,
            pv: &pv,
            target_vg: Some("vg0"),
            min_size: 1 << 30,
            holder_dm_uuid: &no_dm,
        })
    }

    fn content(t: &str, usage: &str) -> SignatureCheck {
        SignatureCheck::Found(Signature::Content {
            type_name: t.into(),
            usage: Some(usage.into()),
        })
    }

    #[test]
    fn blank_disk_is_safe() {
        let v = run(&disk(), &[], SignatureCheck::Blank, PvStatus::NotPv);
        assert!(v.is_safe(), "{v:?}");
    }

    #[test]
    fn collects_every_reason() {
        let mut d = disk();
        d.read_only = true;
        d.removable = true;
        d.size_bytes = 100 << 20;
        d.holders = vec!["md0".into()];
        d.partitions = vec![PartitionInfo {
            name: "sdb1".into(),
            major: 8,
            minor: 17,
            holders: vec!["dm-2".into()],
        }];
        let mounts = [
            mount(8, 16, "/data"),
            mount(8, 17, "/boot"),
            mount(8, 18, "/x"),
        ];
        let v = run(&d, &mounts, content("ext4", "filesystem"), PvStatus::NotPv);
        assert_eq!(
            v.reasons,
            [
                "mounted at /data",
                "partition sdb1 mounted at /boot",
                "holds an ext4 filesystem; not taken without --wipe",
                "in use by md0 (holders: device-mapper, md, ...); never taken, not even with --wipe",
                "has partitions: sdb1",
                "partition sdb1 in use by dm-2 (holders)",
                "read-only",
                "removable media",
                "smaller than --min-size (100 MiB < 1 GiB)",
            ]
        );
    }

    #[test]
    fn signatures_are_described() {
        let d = disk();
        // The description only; the rule's "not taken without --wipe" is taking.rs's.
        let one = |s| {
            run(&d, &[], s, PvStatus::NotPv)
                .reasons
                .into_iter()
                .map(|r| r.replace("; not taken without --wipe", ""))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            one(SignatureCheck::Found(Signature::PartitionTable(
                "gpt".into()
            ))),
            ["holds a gpt partition table"]
        );
        assert_eq!(
            one(content("linux_raid_member", "raid")),
            ["is a RAID member (linux_raid_member)"]
        );
        assert_eq!(one(content("swap", "other")), ["holds swap space"]);
        assert_eq!(
            one(content("xfs", "filesystem")),
            ["holds an xfs filesystem"]
        );
        assert_eq!(
            one(content("crypto_LUKS", "crypto")),
            ["holds an encrypted volume (crypto_LUKS)"]
        );
        assert!(one(SignatureCheck::Failed("blkid timed out".into()))[0].contains("timed out"));
        assert!(one(SignatureCheck::NotProbed).is_empty());
    }

    #[test]
    fn lvm_pvs() {
        let d = disk();
        let pv = content("LVM2_member", "raid");
        let other = PvStatus::InVg {
            vg: "other".into(),
            vg_uuid: "u1".into(),
            lv_count: 2,
        };
        assert_eq!(
            run(&d, &[], pv.clone(), other).reasons,
            ["a PV of VG other, which has 2 LV(s); never taken, not even with --wipe"]
        );
        assert!(
            run(&d, &[], pv.clone(), PvStatus::Orphan).reasons[0]
                .starts_with("an orphan LVM PV (an LVM2 label in no VG this host sees")
        );
        assert!(
            run(&d, &[], pv.clone(), PvStatus::Unknown("lvm failed".into())).reasons[0]
                .contains("lvm failed")
        );

        // A PV of the target VG is offered, and its own LVs do not count as "in use"; a
        // foreign holder still does.
        let mut d = disk();
        d.holders = vec!["dm-0".into(), "dm-1".into()];
        let dm = |h: &str| match h {
            "dm-0" => Some("LVM-aaaabbbbXXXX".to_string()),
            _ => Some("CRYPT-LUKS2-zzz".to_string()),
        };
        let target = PvStatus::InVg {
            vg: "vg0".into(),
            vg_uuid: "aaaabbbb".into(),
            lv_count: 1,
        };
        let v = assess(&SafetyInput {
            device: &d,
            mounts: &[],
            signature: &pv,
            pv: &target,
            target_vg: Some("vg0"),
            min_size: 1 << 30,
            holder_dm_uuid: &dm,
        });
        assert_eq!(v.existing_pv_of.as_deref(), Some("vg0"));
        assert_eq!(
            v.reasons,
            ["in use by dm-1 (holders: device-mapper, md, ...); never taken, not even with --wipe"]
        );
        d.holders.pop();
        let v = assess(&SafetyInput {
            device: &d,
            mounts: &[],
            signature: &pv,
            pv: &target,
            target_vg: Some("vg0"),
            min_size: 1 << 30,
            holder_dm_uuid: &dm,
        });
        assert!(v.is_safe(), "{v:?}");
    }

    #[test]
    fn empty_device() {
        let mut d = disk();
        d.size_bytes = 0;
        assert_eq!(
            run(&d, &[], SignatureCheck::NotProbed, PvStatus::NotPv).reasons,
            ["size 0 (no medium, or no backing file)"]
        );
    }
}
