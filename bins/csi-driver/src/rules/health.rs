//! Volume health (CSI `VolumeCondition`) from what LVM and the mount table say. Pure: the
//! callers read the LV, its thin pool and the mount entry, so the rules are unit-tested
//! without a kernel.

use vglet_csi_proto::v1::VolumeCondition;
use vglet_lvm::Lv;
use vglet_mount::MountEntry;

/// A thin pool at or above this use (data or metadata) is reported: at 100 % writes to every
/// thin volume in it fail or hang, so the CO should see it coming.
pub const THIN_POOL_NEAR_FULL_PERCENT: f64 = 90.0;

/// What the caller knows the volume should look like.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expect {
    /// The LV must be active here (the node has it staged). The controller cannot expect
    /// this: a shared VG's LVs are inactive on the controller by design.
    pub active: bool,
    /// The volume was published read-only, so a read-only mount is not a fault.
    pub read_only: bool,
}

/// Every problem found, joined; `abnormal` is false and the message "healthy" when there is
/// none.
///
/// - `lv`: the LV as LVM reports it, `None` when it is gone;
/// - `pool`: its thin pool, when it is a thin volume;
/// - `mount`: the filesystem mount of the volume on this node, if any.
pub fn volume_condition(
    lv: Option<&Lv>,
    pool: Option<&Lv>,
    mount: Option<&MountEntry>,
    expect: Expect,
) -> VolumeCondition {
    let mut problems: Vec<String> = Vec::new();
    match lv {
        None => problems.push("the logical volume is missing".into()),
        Some(lv) => lv_problems(lv, expect, &mut problems),
    }
    if let Some(pool) = pool {
        pool_problems(pool, &mut problems);
    }
    if let Some(m) = mount
        && m.readonly()
        && !expect.read_only
    {
        problems.push("filesystem is read-only, probably after an I/O error".into());
    }
    if problems.is_empty() {
        VolumeCondition {
            abnormal: false,
            message: "healthy".into(),
        }
    } else {
        VolumeCondition {
            abnormal: true,
            message: problems.join("; "),
        }
    }
}

fn lv_problems(lv: &Lv, expect: Expect, problems: &mut Vec<String>) {
    // lv_attr character 9 is the volume health; lv_health_status says the same in words
    // and is used only when the attr has nothing.
    let health = lv.attr.chars().nth(8).unwrap_or('-');
    let from_attr = match health {
        'p' => Some("a physical volume under this LV is missing (partial)"),
        'r' => Some("a RAID image failed and needs refresh or replacement"),
        'm' => Some("RAID scrubbing found mismatches"),
        'X' => Some("LV health is unknown to LVM"),
        'w' => Some("a writecache error occurred"),
        'F' => Some("the thin pool or VDO pool failed"),
        'D' => Some("the VDO pool is out of data space"),
        'M' => Some("the thin pool metadata is read-only"),
        _ => None,
    };
    let has_copies = lv.segtype.starts_with("raid") || lv.segtype == "mirror";
    match from_attr {
        // Degraded, not lost: say so, the urgency differs (replace the disk before the next
        // one fails).
        Some(m) if health == 'p' && has_copies && !lv.segtype.starts_with("raid0") => problems
            .push(format!(
                "{m}; the {} runs degraded on its remaining images",
                lv.segtype
            )),
        Some(m) => problems.push(m.into()),
        None if !lv.health_status.trim().is_empty() => {
            problems.push(format!("lvm reports {:?}", lv.health_status.trim()))
        }
        None => {}
    }
    if expect.active && !lv.active {
        problems.push("the logical volume is not active".into());
    }
    if has_copies
        && let Some(p) = lv.copy_percent
        && p < 100.0
    {
        problems.push(format!("RAID is not in sync ({p:.1}% synchronised)"));
    }
}

fn pool_problems(pool: &Lv, problems: &mut Vec<String>) {
    let name = format!("{}/{}", pool.vg, pool.name);
    if let Some(fault) = pool_fault(pool) {
        problems.push(format!("thin pool {name} {}", fault.describe(&name)));
        return;
    }
    for (what, pct) in [
        ("data", pool.data_percent),
        ("metadata", pool.metadata_percent),
    ] {
        if let Some(p) = pct
            && p >= THIN_POOL_NEAR_FULL_PERCENT
        {
            problems.push(format!(
                "thin pool {name} {what} is {p:.1}% full: {}",
                PoolFault::advice(what == "metadata", &name)
            ));
        }
    }
}

/// Why a thin pool cannot take writes (every thin volume in it is then abnormal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolFault {
    OutOfData,
    OutOfMetadata,
    /// Metadata switched read-only (lvm does so when metadata space ran out or on an error).
    ReadOnly,
    Failed,
    NeedsCheck,
}

/// The pool's fault, from `lv_attr` (9th character), `lv_health_status` and the use
/// percentages: lvm 2.03.16 reports a full pool in some of them, depending on how it
/// filled (and `data_percent` reaches 100 before the kernel flags the pool).
pub fn pool_fault(pool: &Lv) -> Option<PoolFault> {
    let by_attr = match pool.attr.chars().nth(8) {
        Some('F') => Some(PoolFault::Failed),
        Some('D') => Some(PoolFault::OutOfData),
        Some('M') => Some(PoolFault::ReadOnly),
        _ => None,
    };
    let by_status = match pool.health_status.trim() {
        "failed" => Some(PoolFault::Failed),
        "out_of_data" => Some(PoolFault::OutOfData),
        "metadata_read_only" => Some(PoolFault::ReadOnly),
        "needs_check" => Some(PoolFault::NeedsCheck),
        _ => None,
    };
    let full = |p: Option<f64>| p.is_some_and(|p| p >= 100.0);
    by_attr.or(by_status).or_else(|| {
        if full(pool.metadata_percent) {
            Some(PoolFault::OutOfMetadata)
        } else if full(pool.data_percent) {
            Some(PoolFault::OutOfData)
        } else {
            None
        }
    })
}

impl PoolFault {
    /// What is wrong and what to do, for the pool named `name` (`vg/pool`).
    fn describe(self, name: &str) -> String {
        match self {
            PoolFault::OutOfData => format!(
                "is out of data space, writes to its thin volumes fail: {}",
                Self::advice(false, name)
            ),
            PoolFault::OutOfMetadata => format!(
                "is out of metadata space, writes to its thin volumes fail: {}",
                Self::advice(true, name)
            ),
            PoolFault::ReadOnly => format!(
                "metadata is read-only, writes to its thin volumes fail: {}, then repair it \
                 (lvconvert --repair {name})",
                Self::advice(true, name)
            ),
            PoolFault::Failed => {
                format!("has failed: repair it (lvconvert --repair {name}) or restore it")
            }
            PoolFault::NeedsCheck => {
                format!("needs a check: deactivate it and run lvconvert --repair {name}")
            }
        }
    }

    fn advice(metadata: bool, name: &str) -> String {
        let vg = name.split('/').next().unwrap_or(name);
        let how = if metadata {
            format!("lvextend --poolmetadatasize +SIZE {name}")
        } else {
            format!("lvextend -L +SIZE {name}")
        };
        format!(
            "extend the pool ({how}), after growing the VG (vgextend {vg} DEVICE) if it has no free space"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn lv(attr: &str) -> Lv {
        Lv {
            vg: "vg0".into(),
            name: "csi-a".into(),
            attr: attr.into(),
            active: attr.chars().nth(4) == Some('a'),
            segtype: "linear".into(),
            ..Default::default()
        }
    }

    fn mount(opts: &[&str]) -> MountEntry {
        MountEntry {
            mount_id: 1,
            parent_id: 0,
            major: 253,
            minor: 0,
            root: PathBuf::from("/"),
            mount_point: PathBuf::from("/staging"),
            fs_type: "ext4".into(),
            source: Some("/dev/vg0/csi-a".into()),
            options: opts.iter().map(|s| s.to_string()).collect(),
        }
    }

    const NODE: Expect = Expect {
        active: true,
        read_only: false,
    };

    #[test]
    fn healthy_linear_volume() {
        let c = volume_condition(Some(&lv("-wi-ao----")), None, Some(&mount(&["rw"])), NODE);
        assert!(!c.abnormal, "{}", c.message);
        assert_eq!(c.message, "healthy");
    }

    #[test]
    fn missing_and_inactive() {
        let c = volume_condition(None, None, None, NODE);
        assert!(c.abnormal);
        assert!(c.message.contains("missing"), "{}", c.message);
        let c = volume_condition(Some(&lv("-wi-------")), None, None, NODE);
        assert!(c.message.contains("not active"), "{}", c.message);
        // The controller of a shared VG holds its LVs inactive: not a fault there.
        let c = volume_condition(Some(&lv("-wi-------")), None, None, Expect::default());
        assert!(!c.abnormal, "{}", c.message);
    }

    #[test]
    fn attr_health_characters() {
        for (attr, word) in [
            ("-wi-ao--p-", "partial"),
            ("rwi-aor-r-", "refresh"),
            ("rwi-aor-m-", "mismatches"),
            ("-wi-XX--X-", "unknown"),
        ] {
            let c = volume_condition(Some(&lv(attr)), None, None, Expect::default());
            assert!(c.abnormal, "{attr}");
            assert!(c.message.contains(word), "{attr}: {}", c.message);
        }
        let mut l = lv("-wi-ao----");
        l.health_status = "partial".into();
        let c = volume_condition(Some(&l), None, None, NODE);
        assert!(c.message.contains("\"partial\""), "{}", c.message);
    }

    #[test]
    fn raid_with_a_missing_leg_is_degraded() {
        let mut r = lv("rwi-aor-p-");
        r.segtype = "raid1".into();
        r.copy_percent = Some(100.0);
        let c = volume_condition(Some(&r), None, None, NODE);
        assert!(c.abnormal);
        assert_eq!(
            c.message,
            "a physical volume under this LV is missing (partial); the raid1 runs degraded on \
             its remaining images"
        );
        // A stripe set has no copy to run on.
        r.segtype = "raid0".into();
        let c = volume_condition(Some(&r), None, None, NODE);
        assert!(!c.message.contains("degraded"), "{}", c.message);
    }

    #[test]
    fn raid_out_of_sync() {
        let mut r = lv("rwi-aor---");
        r.segtype = "raid1".into();
        r.copy_percent = Some(37.5);
        let c = volume_condition(Some(&r), None, None, NODE);
        assert!(c.abnormal);
        assert!(c.message.contains("37.5% synchronised"), "{}", c.message);
        r.copy_percent = Some(100.0);
        assert!(!volume_condition(Some(&r), None, None, NODE).abnormal);
    }

    #[test]
    fn thin_pool_near_full() {
        let mut thin = lv("Vwi-aotz--");
        thin.segtype = "thin".into();
        let mut pool = lv("twi-aotz--");
        pool.name = "pool0".into();
        pool.segtype = "thin-pool".into();
        pool.data_percent = Some(50.0);
        pool.metadata_percent = Some(10.0);
        assert!(!volume_condition(Some(&thin), Some(&pool), None, NODE).abnormal);
        pool.data_percent = Some(95.0);
        pool.metadata_percent = Some(91.0);
        let c = volume_condition(Some(&thin), Some(&pool), None, NODE);
        assert!(
            c.message.contains("vg0/pool0 data is 95.0% full"),
            "{}",
            c.message
        );
        assert!(
            c.message.contains("metadata is 91.0% full"),
            "{}",
            c.message
        );
    }

    #[test]
    fn full_or_failed_pool_makes_every_thin_volume_abnormal() {
        let mut thin = lv("Vwi-aotz--");
        thin.segtype = "thin".into();
        let pool = |attr: &str, status: &str, data: f64, meta: f64| {
            let mut p = lv(attr);
            p.name = "pool0".into();
            p.segtype = "thin-pool".into();
            p.health_status = status.into();
            p.data_percent = Some(data);
            p.metadata_percent = Some(meta);
            p
        };
        for (p, fault, words) in [
            (
                pool("twi-aotzD-", "", 100.0, 10.0),
                PoolFault::OutOfData,
                "out of data space",
            ),
            (
                pool("twi-aotz--", "out_of_data", 99.0, 10.0),
                PoolFault::OutOfData,
                "lvextend -L +SIZE vg0/pool0",
            ),
            (
                pool("twi-aotz--", "", 100.0, 10.0),
                PoolFault::OutOfData,
                "vgextend vg0 DEVICE",
            ),
            (
                pool("twi-aotz--", "", 50.0, 100.0),
                PoolFault::OutOfMetadata,
                "--poolmetadatasize",
            ),
            (
                pool("twi-aotzM-", "", 50.0, 10.0),
                PoolFault::ReadOnly,
                "read-only",
            ),
            (
                pool("twi-aotz--", "metadata_read_only", 50.0, 10.0),
                PoolFault::ReadOnly,
                "--repair",
            ),
            (
                pool("twi-aotzF-", "", 0.0, 0.0),
                PoolFault::Failed,
                "has failed",
            ),
            (
                pool("twi-aotz--", "needs_check", 0.0, 0.0),
                PoolFault::NeedsCheck,
                "needs a check",
            ),
        ] {
            assert_eq!(
                pool_fault(&p),
                Some(fault),
                "{} {}",
                p.attr,
                p.health_status
            );
            let c = volume_condition(Some(&thin), Some(&p), None, Expect::default());
            assert!(c.abnormal);
            assert!(
                c.message.starts_with("thin pool vg0/pool0 "),
                "{}",
                c.message
            );
            assert!(c.message.contains(words), "{words}: {}", c.message);
        }
        let ok = pool("twi-aotz--", "", 89.9, 10.0);
        assert_eq!(pool_fault(&ok), None);
        assert!(!volume_condition(Some(&thin), Some(&ok), None, Expect::default()).abnormal);
    }

    #[test]
    fn read_only_filesystem_unless_published_read_only() {
        let l = lv("-wi-ao----");
        let c = volume_condition(
            Some(&l),
            None,
            Some(&mount(&["ro", "errors=remount-ro"])),
            NODE,
        );
        assert!(c.abnormal);
        assert_eq!(
            c.message,
            "filesystem is read-only, probably after an I/O error"
        );
        let ro = Expect {
            active: true,
            read_only: true,
        };
        assert!(!volume_condition(Some(&l), None, Some(&mount(&["ro"])), ro).abnormal);
    }

    #[test]
    fn several_problems_are_all_named() {
        let c = volume_condition(Some(&lv("-wi-----p-")), None, Some(&mount(&["ro"])), NODE);
        assert_eq!(c.message.matches("; ").count(), 2, "{}", c.message);
    }
}
