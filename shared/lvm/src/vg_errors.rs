//! lvm's refusals when preparing devices and VGs, classified from stderr like
//! [`crate::classify`] does for LV operations. These are answers ("this device is not
//! yours"), not failures, and vg-init reports them as refusals.

use std::sync::LazyLock;

use regex::Regex;

use crate::errors::{LvmError, relevant};

/// Why lvm would not take a device or create a VG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VgRefusal {
    /// A signature was found and pvcreate was not allowed to wipe it.
    Signature(String),
    /// The device is a PV of another VG.
    InOtherVg(String),
    /// lvm's filter or devices file excludes it, or it is partitioned / in use.
    Excluded(String),
    /// `vgcreate` of a name that exists (a concurrent run won the race).
    VgExists(String),
}

impl VgRefusal {
    pub fn message(&self) -> &str {
        match self {
            VgRefusal::Signature(m)
            | VgRefusal::InOtherVg(m)
            | VgRefusal::Excluded(m)
            | VgRefusal::VgExists(m) => m,
        }
    }
}

fn re(p: &str) -> Regex {
    Regex::new(p).expect("valid regex")
}

// Wording of lvm2 2.03 (lib/metadata/pv_manip.c, tools/toollib.c, tools/vgcreate.c).
static SIGNATURE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)signature detected on|Aborted wiping of|existing signatures? left on the device")
});
static OTHER_VG: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"(?i)is already in volume group|of volume group "[^"]*" without -ff|belongs to volume group|Can't initialize physical volume"#,
    )
});
static EXCLUDED: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)excluded by a filter|not found \(or ignored by filtering\)|device is partitioned|Can't open .* exclusively|not in devices file|is used by",
    )
});
static VG_EXISTS: LazyLock<Regex> = LazyLock::new(|| {
    re(r#"(?i)A volume group called \S+ already exists|Volume group "[^"]*" already exists"#)
});

/// The refusal in lvm's stderr, or `None`.
pub fn classify_vg_stderr(stderr: &str) -> Option<VgRefusal> {
    let text = relevant(stderr);
    // pvcreate's prompt is a WARNING line, which `relevant` drops; look at all of it.
    if SIGNATURE.is_match(stderr) {
        return Some(VgRefusal::Signature(stderr_summary(stderr)));
    }
    if VG_EXISTS.is_match(&text) {
        return Some(VgRefusal::VgExists(text));
    }
    if OTHER_VG.is_match(&text) {
        return Some(VgRefusal::InOtherVg(text));
    }
    if EXCLUDED.is_match(&text) {
        return Some(VgRefusal::Excluded(text));
    }
    None
}

/// The refusal behind a failed command, if it was one.
pub fn vg_refusal(err: &LvmError) -> Option<VgRefusal> {
    match err {
        LvmError::Command(e) => classify_vg_stderr(e.stderr()),
        _ => None,
    }
}

fn stderr_summary(stderr: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals() {
        let e = classify_vg_stderr(
            "WARNING: ext4 signature detected on /dev/vdb at offset 1080. Wipe it? [y/n]: [n]\n  Aborted wiping of ext4.\n  1 existing signature left on the device.\n",
        );
        assert!(
            matches!(&e, Some(VgRefusal::Signature(m)) if m.contains("ext4 signature")),
            "{e:?}"
        );
        for s in [
            "  Physical volume '/dev/vdf' is already in volume group 'other'\n  Unable to add physical volume '/dev/vdf' to volume group 'vg0'\n",
            "  Can't initialize physical volume \"/dev/vdf\" of volume group \"other\" without -ff\n",
        ] {
            assert!(
                matches!(classify_vg_stderr(s), Some(VgRefusal::InOtherVg(_))),
                "{s}"
            );
        }
        for s in [
            "  Cannot use /dev/vda: device is partitioned\n",
            "  Device /dev/sdx excluded by a filter.\n",
            "  Can't open /dev/vdb exclusively.  Mounted filesystem?\n",
        ] {
            assert!(
                matches!(classify_vg_stderr(s), Some(VgRefusal::Excluded(_))),
                "{s}"
            );
        }
        let e = classify_vg_stderr("  A volume group called vg0 already exists.\n").unwrap();
        assert_eq!(
            e,
            VgRefusal::VgExists("A volume group called vg0 already exists.".into())
        );
        assert_eq!(classify_vg_stderr("  Some other error\n"), None);
    }
}
