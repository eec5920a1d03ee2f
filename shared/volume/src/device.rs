//! An LV's device node, and the device-mapper uuid that proves a device is that very LV
//! (not another one re-created under its name).

use std::path::PathBuf;

/// The device node of LV `lv` in VG `vg`, as LVM names it.
pub fn device_path(vg: &str, lv: &str) -> PathBuf {
    PathBuf::from(format!("/dev/{vg}/{lv}"))
}

/// The device node of an LV as an lvm report gives it (`lv_path`), or the name LVM gives
/// it when the report has none (an inactive LV, some lvm versions).
pub fn lv_device_path(vg: &str, lv: &str, lv_path: &str) -> PathBuf {
    if lv_path.is_empty() {
        device_path(vg, lv)
    } else {
        PathBuf::from(lv_path)
    }
}

/// The VG's and the LV's uuid in the device-mapper uuid LVM gives an LV's own device:
/// `LVM-`, then both without dashes (32 characters each). A suffix (`-real`, `-cow`, ...)
/// marks one of LVM's internal layers, never the LV's own device: `None`.
pub fn dm_lv_ids(dm_uuid: &str) -> Option<(&str, &str)> {
    let ids = dm_uuid.trim_end().strip_prefix("LVM-")?;
    (ids.len() == 64 && ids.is_ascii()).then(|| ids.split_at(32))
}

/// An lvm uuid as device-mapper spells it: without dashes.
pub fn without_dashes(lvm_uuid: &str) -> String {
    lvm_uuid.chars().filter(|c| *c != '-').collect()
}

/// Whether a device-mapper uuid is the one LVM gives the LV `lv_uuid` (see [`dm_lv_ids`]).
pub fn dm_uuid_is_lv(dm_uuid: &str, lv_uuid: &str) -> bool {
    dm_lv_ids(dm_uuid).is_some_and(|(_, lv)| lv == without_dashes(lv_uuid))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LV_UUID: &str = "f3kLtQ-cNnV-Qp2W-VMbU-hT0R-7cdn-9Zv0xw";
    const VG_UUID: &str = "AbCdEfGhIjKlMnOpQrStUvWxYz012345";

    fn dm_uuid() -> String {
        format!("LVM-{VG_UUID}{}", LV_UUID.replace('-', ""))
    }

    #[test]
    fn paths() {
        assert_eq!(device_path("vg0", "a"), PathBuf::from("/dev/vg0/a"));
        assert_eq!(lv_device_path("vg0", "a", ""), PathBuf::from("/dev/vg0/a"));
        assert_eq!(
            lv_device_path("vg0", "a", "/dev/mapper/x"),
            PathBuf::from("/dev/mapper/x")
        );
    }

    #[test]
    fn dm_uuids() {
        assert!(dm_uuid_is_lv(&dm_uuid(), LV_UUID));
        assert!(dm_uuid_is_lv(&format!("{}\n", dm_uuid()), LV_UUID));
        // An internal layer of the LV, another LV of the VG, not LVM at all, truncated.
        assert!(!dm_uuid_is_lv(&format!("{}-real", dm_uuid()), LV_UUID));
        assert!(!dm_uuid_is_lv(
            &format!("LVM-{VG_UUID}{}", "x".repeat(32)),
            LV_UUID
        ));
        assert!(!dm_uuid_is_lv(
            &format!("CRYPT-{VG_UUID}{}", LV_UUID.replace('-', "")),
            LV_UUID
        ));
        assert!(!dm_uuid_is_lv(&dm_uuid()[..60], LV_UUID));
        assert!(!dm_uuid_is_lv(&dm_uuid(), ""));
    }
}
