//! Volume ids are `<vg>/<lv>`. They come back to us from the CO in every later RPC, so they
//! are untrusted input: both halves must be valid LVM names before they reach an lvm argv.

use std::fmt;

use vglet_lvm::naming::{validate_lv_name, validate_vg_name};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VolumeId {
    pub vg: String,
    pub lv: String,
}

impl VolumeId {
    pub fn new(vg: impl Into<String>, lv: impl Into<String>) -> Self {
        VolumeId {
            vg: vg.into(),
            lv: lv.into(),
        }
    }

    /// Parses and validates; the error says which rule was broken.
    pub fn parse(id: &str) -> Result<VolumeId, String> {
        if id.is_empty() {
            return Err("must not be empty".into());
        }
        let Some((vg, lv)) = id.split_once('/') else {
            return Err(format!(
                "{id:?} is not of the form <volume group>/<logical volume>"
            ));
        };
        validate_vg_name(vg).map_err(|e| format!("{id:?}: volume group part: {e}"))?;
        validate_lv_name(lv).map_err(|e| format!("{id:?}: logical volume part: {e}"))?;
        Ok(VolumeId::new(vg, lv))
    }
}

impl fmt::Display for VolumeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.vg, self.lv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_good_ids() {
        let id = VolumeId::parse("vg0/csi-pvc-1").unwrap();
        assert_eq!(id, VolumeId::new("vg0", "csi-pvc-1"));
        assert_eq!(id.to_string(), "vg0/csi-pvc-1");
    }

    #[test]
    fn rejects_hostile_ids() {
        for bad in [
            "",
            "novg",
            "../x",
            "vg/lv;rm",
            "vg/lv/extra",
            "/lv",
            "vg/",
            "vg/..",
            "vg/.",
            "vg/-x",
            "vg/a b",
            "vg/$(reboot)",
            "v g/lv",
            "vg/snapshot1",
        ] {
            assert!(VolumeId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
