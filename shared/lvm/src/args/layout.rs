//! argv builders for LVs with a layout (striped, RAID, thin) and for snapshots.

use super::{CommonOptions, lvcreate, vg_lv};
use crate::layout::{LayoutCreate, LvType, SnapshotCreate, SnapshotKind};
use crate::size::size_arg;

fn push_tags(argv: &mut Vec<String>, tags: &[String]) {
    for tag in tags {
        argv.extend(["--addtag".to_string(), tag.clone()]);
    }
}

/// `-I` takes KiB without a unit suffix ambiguity; stripe sizes are validated as powers of
/// two of at least 4 KiB before they get here.
fn stripe_size_arg(bytes: u64) -> String {
    format!("{}k", bytes / 1024)
}

/// lvcreate for any layout. Linear is exactly [`lvcreate`], so existing volumes and their
/// tests see no change. Thin LVs take a virtual size (`-V`) in an existing pool and no
/// zeroing flags: unprovisioned thin blocks read as zeroes, and writing zeroes would only
/// provision them.
pub fn lvcreate_layout(req: &LayoutCreate, common: &CommonOptions) -> Vec<String> {
    let layout = &req.layout;
    let lv = &req.lv;
    if layout.lv_type == LvType::Linear {
        return lvcreate(lv, common);
    }
    let mut argv = common.start("lvcreate");
    argv.push("-y".into());
    if layout.lv_type == LvType::Thin {
        argv.extend(["--type".to_string(), "thin".to_string()]);
        argv.extend(["-V".to_string(), size_arg(lv.size)]);
        argv.extend([
            "--thinpool".to_string(),
            layout.thin_pool.clone().unwrap_or_default(),
        ]);
        if !lv.activate {
            argv.push("-an".into());
        }
    } else {
        argv.extend(["--wipesignatures", "y", "-Z"].map(String::from));
        argv.push(if lv.activate { "y" } else { "n" }.into());
        if !lv.activate {
            argv.push("-an".into());
            if common.setautoactivation {
                argv.extend(["--setautoactivation", "n"].map(String::from));
            }
        }
        argv.extend(["--type".to_string(), layout.lv_type.as_str().to_string()]);
        if layout.lv_type.takes_stripes() {
            argv.extend(["-i".to_string(), layout.data_stripes().to_string()]);
            if let Some(size) = layout.stripe_size {
                argv.extend(["-I".to_string(), stripe_size_arg(size)]);
            }
        }
        if layout.lv_type == LvType::Raid1 {
            argv.extend(["-m".to_string(), layout.mirrors().to_string()]);
        }
        if layout.lv_type == LvType::Raid10 {
            argv.extend(["-m".to_string(), "1".to_string()]);
        }
        if layout.integrity {
            argv.extend(["--raidintegrity".to_string(), "y".to_string()]);
        }
        argv.extend(["-L".to_string(), size_arg(lv.size)]);
    }
    argv.extend(["-n".to_string(), lv.name.clone()]);
    push_tags(&mut argv, &lv.tags);
    argv.push(lv.vg.clone());
    if layout.lv_type != LvType::Thin {
        argv.extend(lv.pvs.iter().cloned());
    }
    argv
}

/// A snapshot of `vg/origin`. Thin: no size (the pool holds it); lvm marks it
/// activation-skip and leaves it inactive unless `activate` turns that off (`-kn`), which
/// makes it an ordinary active thin LV. Thick: a COW area of a percentage of the origin
/// (`100%ORIGIN` is lvm's "full size": the snapshot can never overflow).
pub fn lvcreate_snapshot(req: &SnapshotCreate, common: &CommonOptions) -> Vec<String> {
    let mut argv = common.start("lvcreate");
    argv.extend(["-y".to_string(), "-s".to_string()]);
    match req.kind {
        SnapshotKind::Thin { activate } => {
            if activate {
                argv.extend(["-kn".to_string(), "-ay".to_string()]);
            }
        }
        SnapshotKind::Thick { percent_of_origin } => {
            argv.extend(["-l".to_string(), format!("{percent_of_origin}%ORIGIN")]);
        }
    }
    argv.extend(["-n".to_string(), req.name.clone()]);
    push_tags(&mut argv, &req.tags);
    argv.push(vg_lv(&req.vg, &req.origin));
    argv
}

/// Activates an LV even when it carries the activation-skip flag (thin snapshots do): the
/// controller reads a kept snapshot to copy it into a thick volume.
pub fn lvchange_activate_ignoring_skip(vg: &str, lv: &str, common: &CommonOptions) -> Vec<String> {
    let mut argv = common.start("lvchange");
    argv.extend(["-ay".to_string(), "-K".to_string(), vg_lv(vg, lv)]);
    argv
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LvCreate;
    use crate::layout::Layout;

    fn s(argv: &[String]) -> String {
        argv.join(" ")
    }

    fn plain() -> CommonOptions {
        CommonOptions {
            setautoactivation: true,
            ..Default::default()
        }
    }

    fn req(layout: Layout, activate: bool) -> LayoutCreate {
        LayoutCreate {
            lv: LvCreate {
                vg: "vg0".into(),
                name: "csi-a".into(),
                size: 64 << 20,
                tags: vec!["vglet.owner=x".into()],
                activate,
                pvs: vec![],
            },
            layout,
        }
    }

    fn of(t: LvType) -> Layout {
        Layout {
            lv_type: t,
            ..Default::default()
        }
    }

    #[test]
    fn linear_is_the_plain_lvcreate() {
        let r = req(Layout::linear(), true);
        assert_eq!(lvcreate_layout(&r, &plain()), lvcreate(&r.lv, &plain()));
    }

    #[test]
    fn striped_with_stripe_size() {
        let mut l = of(LvType::Striped);
        l.stripes = Some(3);
        l.stripe_size = Some(128 << 10);
        assert_eq!(
            s(&lvcreate_layout(&req(l, true), &plain())),
            "lvcreate -y --wipesignatures y -Z y --type striped -i 3 -I 128k -L 67108864b -n csi-a --addtag vglet.owner=x vg0"
        );
    }

    #[test]
    fn raid_types() {
        let p = plain();
        assert_eq!(
            s(&lvcreate_layout(&req(of(LvType::Raid0), true), &p)),
            "lvcreate -y --wipesignatures y -Z y --type raid0 -i 2 -L 67108864b -n csi-a --addtag vglet.owner=x vg0"
        );
        let mut l = of(LvType::Raid1);
        l.mirrors = Some(2);
        l.integrity = true;
        assert_eq!(
            s(&lvcreate_layout(&req(l, true), &p)),
            "lvcreate -y --wipesignatures y -Z y --type raid1 -m 2 --raidintegrity y -L 67108864b -n csi-a --addtag vglet.owner=x vg0"
        );
        assert_eq!(
            s(&lvcreate_layout(&req(of(LvType::Raid5), true), &p)),
            "lvcreate -y --wipesignatures y -Z y --type raid5 -i 2 -L 67108864b -n csi-a --addtag vglet.owner=x vg0"
        );
        assert_eq!(
            s(&lvcreate_layout(&req(of(LvType::Raid6), true), &p)),
            "lvcreate -y --wipesignatures y -Z y --type raid6 -i 3 -L 67108864b -n csi-a --addtag vglet.owner=x vg0"
        );
        assert_eq!(
            s(&lvcreate_layout(&req(of(LvType::Raid10), true), &p)),
            "lvcreate -y --wipesignatures y -Z y --type raid10 -i 2 -m 1 -L 67108864b -n csi-a --addtag vglet.owner=x vg0"
        );
        assert_eq!(
            s(&lvcreate_layout(&req(of(LvType::Raid1), false), &p)),
            "lvcreate -y --wipesignatures y -Z n -an --setautoactivation n --type raid1 -m 1 -L 67108864b -n csi-a --addtag vglet.owner=x vg0"
        );
    }

    #[test]
    fn thin_takes_a_virtual_size_in_its_pool() {
        let mut l = of(LvType::Thin);
        l.thin_pool = Some("pool0".into());
        let mut r = req(l, true);
        // A thin LV's blocks are its pool's: no PV list, even when one is given.
        r.lv.pvs = vec!["/dev/vda".into()];
        assert_eq!(
            s(&lvcreate_layout(&r, &plain())),
            "lvcreate -y --type thin -V 67108864b --thinpool pool0 -n csi-a --addtag vglet.owner=x vg0"
        );
    }

    #[test]
    fn layouts_go_on_the_pvs_named() {
        let mut r = req(of(LvType::Raid1), true);
        r.lv.pvs = vec!["/dev/vda".into(), "/dev/vdc".into()];
        assert_eq!(
            s(&lvcreate_layout(&r, &plain())),
            "lvcreate -y --wipesignatures y -Z y --type raid1 -m 1 -L 67108864b -n csi-a --addtag vglet.owner=x vg0 /dev/vda /dev/vdc"
        );
        let mut r = req(of(LvType::Linear), true);
        r.lv.pvs = vec!["/dev/vda".into()];
        assert!(s(&lvcreate_layout(&r, &plain())).ends_with(" vg0 /dev/vda"));
    }

    fn snap(kind: SnapshotKind) -> SnapshotCreate {
        SnapshotCreate {
            vg: "vg0".into(),
            origin: "csi-a".into(),
            name: "snap-b".into(),
            tags: vec!["vglet.owner=x".into()],
            kind,
        }
    }

    #[test]
    fn snapshots() {
        let scoped = CommonOptions {
            devices: vec!["/dev/vda".into()],
            ..plain()
        };
        assert_eq!(
            s(&lvcreate_snapshot(
                &snap(SnapshotKind::Thin { activate: false }),
                &plain()
            )),
            "lvcreate -y -s -n snap-b --addtag vglet.owner=x vg0/csi-a"
        );
        assert_eq!(
            s(&lvcreate_snapshot(
                &snap(SnapshotKind::Thin { activate: true }),
                &scoped
            )),
            "lvcreate --devices /dev/vda -y -s -kn -ay -n snap-b --addtag vglet.owner=x vg0/csi-a"
        );
        assert_eq!(
            s(&lvcreate_snapshot(
                &snap(SnapshotKind::Thick {
                    percent_of_origin: 50
                }),
                &plain()
            )),
            "lvcreate -y -s -l 50%ORIGIN -n snap-b --addtag vglet.owner=x vg0/csi-a"
        );
        assert_eq!(
            s(&lvchange_activate_ignoring_skip("vg0", "snap-b", &plain())),
            "lvchange -ay -K vg0/snap-b"
        );
    }
}
