//! The one answer to "may this device go into the VG": disk-discover lists what vg-init may
//! take without `--wipe`, vg-init takes it, and both ask [`may_take`]. Each gathers the
//! facts its own way (sysfs, blkid and an lvm report; wipefs and an lvm report) and says
//! what the content is in its own words; the rule itself is here, once.
//!
//! The orphan PV (an LVM2 label that lvm lists in no VG) is not taken without `--wipe`.
//! A PV created with `--metadatacopies 0` carries no VG metadata of its own: while the
//! PVs that hold its VG's metadata are not visible here (another host's disks on a shared
//! LUN, a half-attached array), lvm reports it as an orphan although its extents hold that
//! VG's data. Reusing it silently (vgextend over the label) would hand another host's data
//! to this VG; so it is taken only when the operator names it with `--wipe`, which says
//! what it destroys first.

/// What lvm says about the device's LVM2 label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LvmLabel {
    /// No LVM2 label.
    None,
    /// A PV lvm lists in a VG.
    InVg(VgFacts),
    /// An LVM2 label lvm lists in no VG.
    Orphan,
    /// An LVM2 label lvm does not list: why it cannot be seen, in words (another host's
    /// system ID, an lvm.conf filter, the report failed).
    Unlisted(String),
}

/// The VG a PV belongs to, as far as taking the PV goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VgFacts {
    pub vg: String,
    pub lv_count: u64,
    /// Its other PVs that the request does not name: wiping this one would break the VG.
    pub pvs_not_requested: Vec<String>,
}

/// What else is on the device, described by the caller ("holds an ext4 filesystem").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Blank,
    Data(String),
    /// The signatures could not be read: unknown content counts as data no wipe may touch.
    Unreadable(String),
}

/// The facts [`may_take`] decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFacts<'a> {
    /// Holders (device-mapper, md) other than the target VG's own LVs.
    pub holders: &'a [String],
    pub label: &'a LvmLabel,
    pub content: &'a Content,
}

/// How a device may be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Take {
    /// Already a PV of the target VG.
    Member,
    /// Blank: pvcreate, then into the VG.
    Fresh,
    /// Only after `wipefs --all` (then as [`Take::Fresh`]); what the wipe erases besides the
    /// caller's list of signatures ("the empty VG old's PV label"), empty for plain data.
    AfterWipe(String),
}

/// Whether a device may go into `target` (`None`: into no VG yet, as disk-discover without
/// `--target-vg`), with `wipe` the operator's `--wipe`. `Err` holds every reason it may not.
pub fn may_take(target: Option<&str>, wipe: bool, d: &DeviceFacts) -> Result<Take, Vec<String>> {
    const NEVER: &str = "never taken, not even with --wipe";
    let mut reasons = Vec::new();
    let take = match (d.label, d.content) {
        (_, Content::Unreadable(e)) => {
            reasons.push(format!("its signatures could not be read ({e}); {NEVER}"));
            None
        }
        (LvmLabel::InVg(v), _) if Some(v.vg.as_str()) == target => Some(Take::Member),
        (LvmLabel::InVg(v), _) if v.lv_count > 0 => {
            reasons.push(format!(
                "a PV of VG {}, which has {} LV(s); {NEVER}",
                v.vg, v.lv_count
            ));
            None
        }
        (LvmLabel::InVg(v), _) if !wipe => {
            reasons.push(format!(
                "a PV of VG {} (no LVs); not taken without --wipe",
                v.vg
            ));
            None
        }
        (LvmLabel::InVg(v), _) if !v.pvs_not_requested.is_empty() => {
            reasons.push(format!(
                "a PV of VG {}, which also has {}; wiping it would break that VG",
                v.vg,
                v.pvs_not_requested.join(", ")
            ));
            None
        }
        (LvmLabel::InVg(v), _) => {
            Some(Take::AfterWipe(format!("the empty VG {}'s PV label", v.vg)))
        }
        (LvmLabel::Orphan, _) if !wipe => {
            reasons.push(
                "an orphan LVM PV (an LVM2 label in no VG this host sees; a PV of a VG whose \
                 metadata is on disks not visible here looks the same); not taken without --wipe"
                    .to_string(),
            );
            None
        }
        (LvmLabel::Orphan, _) => Some(Take::AfterWipe("an orphan PV label".to_string())),
        (LvmLabel::Unlisted(why), _) => {
            reasons.push(format!(
                "an LVM PV of a VG this host cannot see ({why}): {NEVER}"
            ));
            None
        }
        (LvmLabel::None, Content::Blank) => Some(Take::Fresh),
        (LvmLabel::None, Content::Data(what)) if !wipe => {
            reasons.push(format!("{what}; not taken without --wipe"));
            None
        }
        (LvmLabel::None, Content::Data(_)) => Some(Take::AfterWipe(String::new())),
    };
    if !d.holders.is_empty() {
        reasons.push(format!(
            "in use by {} (holders: device-mapper, md, ...); {NEVER}",
            d.holders.join(", ")
        ));
    }
    match take {
        Some(t) if reasons.is_empty() => Ok(t),
        _ => Err(reasons),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(label: &'a LvmLabel, content: &'a Content) -> DeviceFacts<'a> {
        DeviceFacts {
            holders: &[],
            label,
            content,
        }
    }

    fn in_vg(vg: &str, lv_count: u64, others: &[&str]) -> LvmLabel {
        LvmLabel::InVg(VgFacts {
            vg: vg.into(),
            lv_count,
            pvs_not_requested: others.iter().map(|s| s.to_string()).collect(),
        })
    }

    /// Every case, with and without --wipe: the table both binaries follow.
    #[test]
    fn the_rule() {
        let blank = Content::Blank;
        let data = Content::Data("holds an ext4 filesystem".into());
        let t = |label: &LvmLabel, content: &Content, wipe| {
            may_take(Some("vg0"), wipe, &facts(label, content))
        };
        for wipe in [false, true] {
            assert_eq!(t(&LvmLabel::None, &blank, wipe), Ok(Take::Fresh));
            assert_eq!(t(&in_vg("vg0", 3, &[]), &blank, wipe), Ok(Take::Member));
            let e = t(&in_vg("old", 1, &[]), &blank, wipe).unwrap_err();
            assert_eq!(
                e,
                ["a PV of VG old, which has 1 LV(s); never taken, not even with --wipe"]
            );
            let e = t(
                &LvmLabel::Unlisted("foreign system ID".into()),
                &blank,
                wipe,
            );
            assert!(
                e.unwrap_err()[0]
                    .starts_with("an LVM PV of a VG this host cannot see (foreign system ID)")
            );
            let e = t(
                &LvmLabel::None,
                &Content::Unreadable("timed out".into()),
                wipe,
            );
            assert!(e.unwrap_err()[0].contains("could not be read (timed out)"));
        }
        assert_eq!(
            t(&LvmLabel::None, &data, false),
            Err(vec![
                "holds an ext4 filesystem; not taken without --wipe".to_string()
            ])
        );
        assert_eq!(
            t(&LvmLabel::None, &data, true),
            Ok(Take::AfterWipe(String::new()))
        );
        assert_eq!(
            t(&in_vg("old", 0, &[]), &blank, false),
            Err(vec![
                "a PV of VG old (no LVs); not taken without --wipe".to_string()
            ])
        );
        assert_eq!(
            t(&in_vg("old", 0, &[]), &blank, true),
            Ok(Take::AfterWipe("the empty VG old's PV label".into()))
        );
        assert!(
            t(&in_vg("old", 0, &["/dev/vdz"]), &blank, true).unwrap_err()[0]
                .contains("which also has /dev/vdz; wiping it would break that VG")
        );
        // The orphan PV: never silently reused (it may be another VG's PV without metadata).
        let e = t(&LvmLabel::Orphan, &blank, false).unwrap_err();
        assert!(e[0].starts_with("an orphan LVM PV"), "{e:?}");
        assert!(e[0].ends_with("not taken without --wipe"), "{e:?}");
        assert_eq!(
            t(&LvmLabel::Orphan, &blank, true),
            Ok(Take::AfterWipe("an orphan PV label".into()))
        );
    }

    #[test]
    fn holders_are_never_taken_and_every_reason_is_given() {
        let holders = vec!["dm-3".to_string()];
        let data = Content::Data("holds an xfs filesystem".into());
        let d = DeviceFacts {
            holders: &holders,
            label: &LvmLabel::None,
            content: &data,
        };
        assert_eq!(
            may_take(Some("vg0"), false, &d),
            Err(vec![
                "holds an xfs filesystem; not taken without --wipe".to_string(),
                "in use by dm-3 (holders: device-mapper, md, ...); never taken, not even with --wipe"
                    .to_string(),
            ])
        );
        let blank = Content::Blank;
        let d = DeviceFacts {
            content: &blank,
            ..d
        };
        assert_eq!(may_take(Some("vg0"), true, &d).unwrap_err().len(), 1);
    }

    /// Without a target VG every PV of a VG is another VG's.
    #[test]
    fn no_target_means_no_member() {
        let label = in_vg("vg0", 0, &[]);
        let e = may_take(None, false, &facts(&label, &Content::Blank)).unwrap_err();
        assert_eq!(e, ["a PV of VG vg0 (no LVs); not taken without --wipe"]);
    }
}
