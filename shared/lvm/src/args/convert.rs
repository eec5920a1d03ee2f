//! argv builders for changing an LV's redundancy online (lvmraid(7), "RAID TAKEOVER" and
//! `lvconvert -m`): the LV stays active and mounted; lvm allocates or frees the images and
//! the kernel synchronises new ones in the background.

use super::{CommonOptions, vg_lv};
use crate::images::{IMAGE_FIELDS, lv_and_sub_lvs_selection};

/// `lvs -a` of `vg/lv` and its sub-LVs, one row per segment with its devices (see
/// [`crate::images`]).
pub fn lvs_images(vg: &str, lv: &str, common: &CommonOptions) -> Vec<String> {
    let mut argv = common.start("lvs");
    argv.extend(["-a", "--reportformat", "json", "--units", "b", "--nosuffix"].map(String::from));
    argv.extend(["-o".to_string(), IMAGE_FIELDS.join(",")]);
    argv.extend(["-S".to_string(), lv_and_sub_lvs_selection(lv)]);
    argv.push(vg.to_string());
    argv
}

/// A linear LV becomes raid1 with `mirrors` additional images: `lvconvert -y --type raid1
/// -m N vg/lv [PV...]`. The original becomes image 0; lvm places each new image on a PV
/// that holds no other image of the LV, among `pvs` when any are named (the VG's data PVs,
/// [`crate::cache::data_pvs`]).
pub fn lvconvert_to_raid1(
    vg: &str,
    lv: &str,
    mirrors: u32,
    pvs: &[String],
    common: &CommonOptions,
) -> Vec<String> {
    let mut argv = common.start("lvconvert");
    argv.extend(["-y", "--type", "raid1", "-m"].map(String::from));
    argv.push(mirrors.to_string());
    argv.push(vg_lv(vg, lv));
    argv.extend(pvs.iter().cloned());
    argv
}

/// A raid1 LV keeps `mirrors` additional images (0: it becomes linear): `lvconvert -y -m N
/// vg/lv [PV...]`. When images are removed, lvm removes the ones on the PVs named
/// (lvconvert(8): the PV arguments name the devices the change applies to); naming them
/// is how the caller decides which copy stays. When images are added, the PVs named are
/// the ones lvm may put them on.
pub fn lvconvert_mirrors(
    vg: &str,
    lv: &str,
    mirrors: u32,
    pvs: &[String],
    common: &CommonOptions,
) -> Vec<String> {
    let mut argv = common.start("lvconvert");
    argv.extend(["-y", "-m"].map(String::from));
    argv.push(mirrors.to_string());
    argv.push(vg_lv(vg, lv));
    argv.extend(pvs.iter().cloned());
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(argv: &[String]) -> String {
        argv.join(" ")
    }

    #[test]
    fn redundancy_argv() {
        let c = CommonOptions::default();
        assert_eq!(
            s(&lvconvert_to_raid1("vg0", "csi-a", 2, &[], &c)),
            "lvconvert -y --type raid1 -m 2 vg0/csi-a"
        );
        // A VG with a fast tier: the new images go on the data PVs named.
        assert_eq!(
            s(&lvconvert_to_raid1(
                "vg0",
                "csi-a",
                1,
                &["/dev/vda".into(), "/dev/vdc".into()],
                &c
            )),
            "lvconvert -y --type raid1 -m 1 vg0/csi-a /dev/vda /dev/vdc"
        );
        assert_eq!(
            s(&lvconvert_mirrors("vg0", "csi-a", 1, &[], &c)),
            "lvconvert -y -m 1 vg0/csi-a"
        );
        assert_eq!(
            s(&lvconvert_mirrors(
                "vg0",
                "csi-a",
                0,
                &["/dev/vdb".into(), "/dev/vdc".into()],
                &c
            )),
            "lvconvert -y -m 0 vg0/csi-a /dev/vdb /dev/vdc"
        );
        let scoped = CommonOptions {
            devices: vec!["/dev/vda".into(), "/dev/vdb".into()],
            ..Default::default()
        };
        assert_eq!(
            s(&lvs_images("vg0", "csi-a", &scoped)),
            r#"lvs --devices /dev/vda,/dev/vdb -a --reportformat json --units b --nosuffix -o lv_name,segtype,devices,copy_percent -S lv_name="csi-a" || lv_name=~"^csi-a_" vg0"#
        );
    }
}
