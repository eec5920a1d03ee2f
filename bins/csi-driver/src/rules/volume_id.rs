//! Volume ids are `<vg>/<lv>`. They come back to us from the CO in every later RPC, so they
//! are untrusted input: both halves must be valid LVM names before they reach an lvm argv.

use std::fmt;

use vglet_lvm::naming::{validate_lv_name, validate_vg_name};

use crate::rules::error::VolumeError;

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

    /// Tells an id vglet could have issued from one it never did. The CSI spec answers
    /// the two differently: a missing required field is INVALID_ARGUMENT, while an id of a
    /// volume that does not exist is NOT_FOUND (or OK for the deletes); an id that is no
    /// valid `<vg>/<lv>` names a volume that cannot exist. Either way the id stays out of
    /// every command and path: only [`Parsed::Issued`] carries a usable id.
    pub fn parse_issued(id: &str) -> Result<Parsed, String> {
        if id.is_empty() {
            return Err("must not be empty".into());
        }
        Ok(match VolumeId::parse(id) {
            Ok(v) => Parsed::Issued(v),
            Err(why) => Parsed::NeverIssued(why),
        })
    }
}

/// The id a lookup RPC was handed (`what`: "volume", "snapshot"): INVALID_ARGUMENT when
/// the field is empty, NOT_FOUND when vglet never issued it (the spec's "Volume does not
/// exist | 5 NOT_FOUND" row of ValidateVolumeCapabilities, ControllerGetVolume,
/// ControllerExpandVolume, and CreateVolume's "Source does not exist").
pub fn lookup(field: &str, what: &str, id: &str) -> Result<VolumeId, VolumeError> {
    match VolumeId::parse_issued(id).map_err(|e| VolumeError::invalid(field, e))? {
        Parsed::Issued(v) => Ok(v),
        Parsed::NeverIssued(why) => Err(VolumeError::NotFound(format!(
            "{field}: no {what} has this id: {why}"
        ))),
    }
}

/// The id a delete RPC was handed: `None` when vglet never issued it, which the spec
/// answers OK ("If a volume corresponding to the specified volume_id does not exist ...
/// the Plugin MUST reply 0 OK", the same for snapshots).
pub fn to_delete(field: &str, id: &str) -> Result<Option<VolumeId>, VolumeError> {
    match VolumeId::parse_issued(id).map_err(|e| VolumeError::invalid(field, e))? {
        Parsed::Issued(v) => Ok(Some(v)),
        Parsed::NeverIssued(why) => {
            tracing::info!(%field, reason = %why, "never issued by this driver: nothing to delete");
            Ok(None)
        }
    }
}

/// Where a page of ListVolumes or ListSnapshots starts: after the id the previous page
/// ended with (`starting_token`), or at the start. Both lists are ordered by id, so deleting
/// between pages neither skips nor repeats any. A token that is no id of ours is ABORTED
/// (the spec's code for an invalid `starting_token`).
pub fn page_after(max_entries: i32, starting_token: &str) -> Result<Option<VolumeId>, VolumeError> {
    if max_entries < 0 {
        return Err(VolumeError::invalid("max_entries", "must not be negative"));
    }
    if starting_token.is_empty() {
        return Ok(None);
    }
    VolumeId::parse(starting_token).map(Some).map_err(|e| {
        VolumeError::Changed(format!(
            "starting_token {starting_token:?} is not valid: {e}"
        ))
    })
}

/// A non-empty id from the CO, see [`VolumeId::parse_issued`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Of the form vglet issues: the volume may exist.
    Issued(VolumeId),
    /// Not a valid `<vg>/<lv>`: no volume of vglet has this id; says why.
    NeverIssued(String),
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

    const HOSTILE: &[&str] = &[
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
    ];

    #[test]
    fn rejects_hostile_ids() {
        for bad in HOSTILE.iter().chain(&[""]) {
            assert!(VolumeId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn tells_never_issued_ids_from_missing_ones() {
        assert!(VolumeId::parse_issued("").is_err());
        assert_eq!(
            VolumeId::parse_issued("vg0/csi-pvc-1"),
            Ok(Parsed::Issued(VolumeId::new("vg0", "csi-pvc-1")))
        );
        // A well-formed id of a VG nobody serves is still of our form: the caller decides.
        assert_eq!(
            VolumeId::parse_issued("othervg/lv1"),
            Ok(Parsed::Issued(VolumeId::new("othervg", "lv1")))
        );
        for &never in HOSTILE
            .iter()
            .chain(&["fake-vol-id-123", "non-existing-snapshot-id"])
        {
            assert!(
                matches!(VolumeId::parse_issued(never), Ok(Parsed::NeverIssued(_))),
                "{never:?}"
            );
            let e = lookup("volume_id", "volume", never).unwrap_err();
            assert!(matches!(e, VolumeError::NotFound(_)), "{never:?}");
            assert_eq!(to_delete("volume_id", never).unwrap(), None);
        }
        for f in [
            lookup("volume_id", "volume", "")
                .map(drop)
                .map_err(crate::status::volume_status),
            to_delete("volume_id", "")
                .map(drop)
                .map_err(crate::status::volume_status),
        ] {
            assert_eq!(f.unwrap_err().code(), tonic::Code::InvalidArgument);
        }
        assert_eq!(
            to_delete("volume_id", "vg0/csi-a").unwrap(),
            Some(VolumeId::new("vg0", "csi-a"))
        );
    }

    #[test]
    fn pages_start_after_a_token_of_ours() {
        use crate::status::volume_status;
        assert_eq!(page_after(0, "").unwrap(), None);
        assert_eq!(
            page_after(10, "vg0/csi-a").unwrap(),
            Some(VolumeId::parse("vg0/csi-a").unwrap())
        );
        let code = |r: Result<Option<VolumeId>, VolumeError>| volume_status(r.unwrap_err()).code();
        assert_eq!(code(page_after(-1, "")), tonic::Code::InvalidArgument);
        assert_eq!(code(page_after(0, "../etc")), tonic::Code::Aborted);
    }
}
