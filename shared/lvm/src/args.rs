//! argv builders: every lvm command vglet runs, as pure functions, so tests can pin the
//! exact arguments. Each argv starts with the lvm subcommand; the program is `lvm` itself,
//! except for the lock managers' tools at the end, which name their program.

use crate::report::{LV_FIELDS, PV_FIELDS, PVSEG_FIELDS, SEG_FIELDS, VG_FIELDS};
use crate::requests::{Activation, LvCreate};
use crate::size::size_arg;

mod cache;
mod convert;
mod layout;
mod vg;
pub use cache::*;
pub use convert::*;
pub use layout::*;
pub use vg::*;

/// Options that go on every report and modifying command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommonOptions {
    /// `--devices a,b`: lvm reads these devices only. Empty means scan everything.
    pub devices: Vec<String>,
    /// `--config <text>`: an lvm.conf fragment for this call only.
    pub config: Option<String>,
    /// `lvcreate --setautoactivation n` for LVs created inactive (lvm >= 2.03.12).
    pub setautoactivation: bool,
}

impl CommonOptions {
    fn start(&self, subcommand: &str) -> Vec<String> {
        let mut argv = vec![subcommand.to_string()];
        if !self.devices.is_empty() {
            argv.push("--devices".into());
            argv.push(self.devices.join(","));
        }
        if let Some(config) = &self.config {
            argv.push("--config".into());
            argv.push(config.clone());
        }
        argv
    }
}

fn vg_lv(vg: &str, lv: &str) -> String {
    format!("{vg}/{lv}")
}

pub fn version() -> Vec<String> {
    vec!["version".to_string()]
}

/// One report with the VG, its PVs, its LVs and their first segments' types.
pub fn fullreport(vg: Option<&str>, common: &CommonOptions) -> Vec<String> {
    let mut argv = common.start("fullreport");
    argv.extend(["--reportformat", "json", "--units", "b", "--nosuffix"].map(String::from));
    for (subreport, fields) in [
        ("vg", VG_FIELDS),
        ("pv", PV_FIELDS),
        ("lv", LV_FIELDS),
        ("pvseg", PVSEG_FIELDS),
        ("seg", SEG_FIELDS),
    ] {
        argv.push("--configreport".into());
        argv.push(subreport.into());
        argv.push("-o".into());
        argv.push(fields.join(","));
    }
    if let Some(vg) = vg {
        argv.push(vg.to_string());
    }
    argv
}

/// The lvm selection of the LVs named `lvs` and of the LVs whose origin is one of them
/// (their thick and thin snapshots): `lv_name="a" || origin="a" || ...`. LV names are
/// validated against lvm's rules before use, so none holds a quote.
pub fn lvs_and_snapshots_selection(lvs: &[String]) -> String {
    lvs.iter()
        .map(|lv| format!(r#"lv_name="{lv}" || origin="{lv}""#))
        .collect::<Vec<_>>()
        .join(" || ")
}

/// [`fullreport`] of one VG limited to the LVs `lvs` and the LVs whose origin is one of
/// them: the VG and its PVs in full, only those LVs and their segments, no PV segments.
/// lvm still reads the whole VG's metadata, but with many LVs the report it prints (and
/// the driver parses) is a few rows instead of all of them. Each `--configreport`'s `-S`
/// applies to that subreport only (lvmreport(7)), verified against lvm 2.03.16.
pub fn fullreport_of_lvs(vg: &str, lvs: &[String], common: &CommonOptions) -> Vec<String> {
    let selection = lvs_and_snapshots_selection(lvs);
    let mut argv = common.start("fullreport");
    argv.extend(["--reportformat", "json", "--units", "b", "--nosuffix"].map(String::from));
    for (subreport, fields, select) in [
        ("vg", VG_FIELDS, None),
        ("pv", PV_FIELDS, None),
        ("lv", LV_FIELDS, Some(selection.as_str())),
        // fullreport always prints a pvseg subreport; a selection that matches no row
        // keeps it empty.
        ("pvseg", PVSEG_FIELDS, Some("pvseg_start<0")),
        ("seg", SEG_FIELDS, Some(selection.as_str())),
    ] {
        argv.push("--configreport".into());
        argv.push(subreport.into());
        argv.push("-o".into());
        argv.push(fields.join(","));
        if let Some(select) = select {
            argv.push("-S".into());
            argv.push(select.to_string());
        }
    }
    argv.push(vg.to_string());
    argv
}

/// A linear LV. Signatures are always wiped; the start is zeroed only when the LV is
/// activated, because lvm can only zero an active LV (`-an` requires `-Z n`).
pub fn lvcreate(req: &LvCreate, common: &CommonOptions) -> Vec<String> {
    let mut argv = common.start("lvcreate");
    argv.extend(["-y", "--wipesignatures", "y", "-Z"].map(String::from));
    argv.push(if req.activate { "y" } else { "n" }.into());
    if !req.activate {
        argv.push("-an".into());
        if common.setautoactivation {
            // An inactive LV in a shared VG must stay inactive at boot until a node asks
            // for it with the right lock mode.
            argv.extend(["--setautoactivation", "n"].map(String::from));
        }
    }
    argv.extend(["-n".to_string(), req.name.clone()]);
    argv.extend(["-L".to_string(), size_arg(req.size)]);
    for tag in &req.tags {
        argv.extend(["--addtag".to_string(), tag.clone()]);
    }
    argv.push(req.vg.clone());
    argv.extend(req.pvs.iter().cloned());
    argv
}

pub fn lvremove(vg: &str, lv: &str, common: &CommonOptions) -> Vec<String> {
    let mut argv = common.start("lvremove");
    argv.extend(["-y".to_string(), vg_lv(vg, lv)]);
    argv
}

/// Grow to `size` bytes, rounded up to whole sectors (lvm rounds further to extents), on
/// the PVs `pvs` only (empty: any; see [`crate::cache::data_pvs`]).
pub fn lvextend(
    vg: &str,
    lv: &str,
    size: u64,
    pvs: &[String],
    common: &CommonOptions,
) -> Vec<String> {
    let mut argv = common.start("lvextend");
    argv.extend(["-L".to_string(), size_arg(size), vg_lv(vg, lv)]);
    argv.extend(pvs.iter().cloned());
    argv
}

/// lvextend of a shared-VG LV that another host holds active: `--lockopt skiplv` leaves the
/// LV lock to its holder while the VG lock still guards the metadata; the holder then
/// reloads its table with `lvchange --refresh`.
pub fn lvextend_skip_lv_lock(
    vg: &str,
    lv: &str,
    size: u64,
    pvs: &[String],
    common: &CommonOptions,
) -> Vec<String> {
    let mut argv = common.start("lvextend");
    argv.extend(["--lockopt".to_string(), "skiplv".to_string()]);
    argv.extend(["-L".to_string(), size_arg(size), vg_lv(vg, lv)]);
    argv.extend(pvs.iter().cloned());
    argv
}

pub fn lvchange_activate(
    vg: &str,
    lv: &str,
    mode: Activation,
    common: &CommonOptions,
) -> Vec<String> {
    let mut argv = common.start("lvchange");
    argv.extend([mode.flag().to_string(), vg_lv(vg, lv)]);
    argv
}

pub fn lvchange_deactivate(vg: &str, lv: &str, common: &CommonOptions) -> Vec<String> {
    let mut argv = common.start("lvchange");
    argv.extend(["-an".to_string(), vg_lv(vg, lv)]);
    argv
}

/// Reload the LV's dm table from metadata: after another host extended a shared LV.
pub fn lvchange_refresh(vg: &str, lv: &str, common: &CommonOptions) -> Vec<String> {
    let mut argv = common.start("lvchange");
    argv.extend(["--refresh".to_string(), vg_lv(vg, lv)]);
    argv
}

fn lvchange_tags(
    flag: &str,
    vg: &str,
    lv: &str,
    tags: &[String],
    common: &CommonOptions,
) -> Vec<String> {
    let mut argv = common.start("lvchange");
    for tag in tags {
        argv.extend([flag.to_string(), tag.clone()]);
    }
    argv.push(vg_lv(vg, lv));
    argv
}

/// `lvchange --deltag TAG vg/lv1 vg/lv2 ...`: one metadata commit for many LVs.
pub fn lvchange_del_tag_many(
    vg: &str,
    lvs: &[String],
    tag: &str,
    common: &CommonOptions,
) -> Vec<String> {
    let mut argv = common.start("lvchange");
    argv.extend(["--deltag".to_string(), tag.to_string()]);
    argv.extend(lvs.iter().map(|lv| vg_lv(vg, lv)));
    argv
}

pub fn lvchange_add_tags(
    vg: &str,
    lv: &str,
    tags: &[String],
    common: &CommonOptions,
) -> Vec<String> {
    lvchange_tags("--addtag", vg, lv, tags, common)
}

pub fn lvchange_del_tags(
    vg: &str,
    lv: &str,
    tags: &[String],
    common: &CommonOptions,
) -> Vec<String> {
    lvchange_tags("--deltag", vg, lv, tags, common)
}

/// `lvmlockctl --info`: the lockspaces lvmlockd has started ([`vglet_runner::Program::Lvmlockctl`]).
pub fn lvmlockctl_info() -> Vec<String> {
    vec!["--info".into()]
}

/// `sanlock direct read_leader -r <resource>`: who holds (or last held) a lease, read from
/// disk ([`vglet_runner::Program::Sanlock`]).
pub fn sanlock_read_leader(resource: &str) -> Vec<String> {
    vec![
        "direct".into(),
        "read_leader".into(),
        "-r".into(),
        resource.to_string(),
    ]
}

/// The program and argv that ask a lock manager whether it runs on this host; `None` for
/// idm, where lvmlockd talks to the drives itself and there is no daemon to ask.
pub fn lock_manager_status(
    lock_type: crate::LockType,
) -> Option<(vglet_runner::Program, Vec<String>)> {
    use vglet_runner::Program;
    match lock_type {
        crate::LockType::Sanlock => {
            Some((Program::Sanlock, vec!["client".into(), "status".into()]))
        }
        crate::LockType::Dlm => Some((Program::DlmTool, vec!["status".into()])),
        crate::LockType::Idm => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> CommonOptions {
        CommonOptions {
            setautoactivation: true,
            ..Default::default()
        }
    }

    fn scoped() -> CommonOptions {
        CommonOptions {
            devices: vec!["/dev/sdb".into(), "/dev/sdc".into()],
            config: None,
            setautoactivation: true,
        }
    }

    fn s(argv: &[String]) -> String {
        argv.join(" ")
    }

    /// The fullreport argv, verified against lvm 2.03.16.
    pub(crate) const FULLREPORT_FIELDS: &str = "--reportformat json --units b --nosuffix \
        --configreport vg -o vg_name,vg_uuid,vg_attr,vg_size,vg_free,vg_extent_size,vg_extent_count,vg_free_count,pv_count,vg_missing_pv_count,lv_count,vg_tags,vg_lock_type,vg_systemid \
        --configreport pv -o pv_name,vg_name,pv_uuid,pv_attr,pv_size,pv_free,pv_tags \
        --configreport lv -o vg_name,lv_name,lv_uuid,lv_attr,lv_size,lv_active,lv_tags,lv_path,lv_dm_path,lv_layout,lv_role,pool_lv,origin,data_percent,metadata_percent,copy_percent,lv_health_status,lv_lock_args,cache_total_blocks,cache_used_blocks,cache_dirty_blocks,cache_read_hits,cache_read_misses,cache_write_hits,cache_write_misses,writecache_total_blocks,writecache_free_blocks,writecache_writeback_blocks,writecache_error \
        --configreport pvseg -o pvseg_start \
        --configreport seg -o lv_uuid,seg_start,segtype";

    #[test]
    fn fullreport_argv() {
        assert_eq!(
            s(&fullreport(Some("vg0"), &plain())),
            format!("fullreport {FULLREPORT_FIELDS} vg0")
        );
        assert_eq!(
            s(&fullreport(None, &scoped())),
            format!("fullreport --devices /dev/sdb,/dev/sdc {FULLREPORT_FIELDS}")
        );
    }

    #[test]
    fn fullreport_of_lvs_argv() {
        let argv = fullreport_of_lvs("vg0", &["csi-a".into(), "csi-b+1.x".into()], &scoped());
        let sel =
            r#"lv_name="csi-a" || origin="csi-a" || lv_name="csi-b+1.x" || origin="csi-b+1.x""#;
        let want: Vec<String> = [
            "fullreport",
            "--devices",
            "/dev/sdb,/dev/sdc",
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "--configreport",
            "vg",
            "-o",
            &VG_FIELDS.join(","),
            "--configreport",
            "pv",
            "-o",
            &PV_FIELDS.join(","),
            "--configreport",
            "lv",
            "-o",
            &LV_FIELDS.join(","),
            "-S",
            sel,
            "--configreport",
            "pvseg",
            "-o",
            "pvseg_start",
            "-S",
            "pvseg_start<0",
            "--configreport",
            "seg",
            "-o",
            "lv_uuid,seg_start,segtype",
            "-S",
            sel,
            "vg0",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(argv, want);
    }

    fn create(activate: bool) -> LvCreate {
        LvCreate {
            vg: "vg0".into(),
            name: "csi-a".into(),
            size: 12 * 1024 * 1024,
            tags: vec!["vglet.owner=x".into(), "vglet.size=1".into()],
            activate,
            pvs: vec![],
        }
    }

    #[test]
    fn lvcreate_active() {
        assert_eq!(
            s(&lvcreate(&create(true), &plain())),
            "lvcreate -y --wipesignatures y -Z y -n csi-a -L 12582912b --addtag vglet.owner=x --addtag vglet.size=1 vg0"
        );
    }

    #[test]
    fn lvcreate_inactive_scoped() {
        assert_eq!(
            s(&lvcreate(&create(false), &scoped())),
            "lvcreate --devices /dev/sdb,/dev/sdc -y --wipesignatures y -Z n -an --setautoactivation n -n csi-a -L 12582912b --addtag vglet.owner=x --addtag vglet.size=1 vg0"
        );
        let old = CommonOptions::default();
        assert_eq!(
            s(&lvcreate(&create(false), &old)),
            "lvcreate -y --wipesignatures y -Z n -an -n csi-a -L 12582912b --addtag vglet.owner=x --addtag vglet.size=1 vg0"
        );
    }

    #[test]
    fn lvcreate_and_lvextend_on_named_pvs() {
        let mut req = create(true);
        req.pvs = vec!["/dev/vda".into(), "/dev/vdc".into()];
        assert!(
            s(&lvcreate(&req, &plain())).ends_with(" vg0 /dev/vda /dev/vdc"),
            "{}",
            s(&lvcreate(&req, &plain()))
        );
        let pvs = ["/dev/vda".to_string()];
        assert_eq!(
            s(&lvextend("vg0", "lv0", 16 << 20, &pvs, &plain())),
            "lvextend -L 16777216b vg0/lv0 /dev/vda"
        );
        assert_eq!(
            s(&lvextend_skip_lv_lock(
                "vg0",
                "lv0",
                16 << 20,
                &pvs,
                &plain()
            )),
            "lvextend --lockopt skiplv -L 16777216b vg0/lv0 /dev/vda"
        );
    }

    #[test]
    fn lvcreate_rounds_to_sectors() {
        let mut req = create(true);
        req.size = 1000;
        assert!(s(&lvcreate(&req, &plain())).contains(" -L 1024b "));
    }

    #[test]
    fn config_goes_after_the_subcommand() {
        let c = CommonOptions {
            devices: vec!["/dev/loop0".into()],
            config: Some("global { activation = 0 }".into()),
            setautoactivation: true,
        };
        assert_eq!(
            lvremove("vg0", "lv0", &c),
            vec![
                "lvremove",
                "--devices",
                "/dev/loop0",
                "--config",
                "global { activation = 0 }",
                "-y",
                "vg0/lv0"
            ]
        );
    }

    #[test]
    fn modify_argvs() {
        let p = plain();
        assert_eq!(s(&lvremove("vg0", "lv0", &p)), "lvremove -y vg0/lv0");
        assert_eq!(
            s(&lvextend("vg0", "lv0", 16 << 20, &[], &p)),
            "lvextend -L 16777216b vg0/lv0"
        );
        assert_eq!(
            s(&lvchange_activate("vg0", "lv0", Activation::Local, &p)),
            "lvchange -ay vg0/lv0"
        );
        assert_eq!(
            s(&lvchange_activate("vg0", "lv0", Activation::Exclusive, &p)),
            "lvchange -aey vg0/lv0"
        );
        assert_eq!(
            s(&lvchange_activate("vg0", "lv0", Activation::Shared, &p)),
            "lvchange -asy vg0/lv0"
        );
        assert_eq!(
            s(&lvchange_deactivate("vg0", "lv0", &p)),
            "lvchange -an vg0/lv0"
        );
        assert_eq!(
            s(&lvchange_refresh("vg0", "lv0", &p)),
            "lvchange --refresh vg0/lv0"
        );
        let tags = vec!["a=b".to_string(), "c".to_string()];
        assert_eq!(
            s(&lvchange_add_tags("vg0", "lv0", &tags, &p)),
            "lvchange --addtag a=b --addtag c vg0/lv0"
        );
        assert_eq!(
            s(&lvchange_del_tags("vg0", "lv0", &tags, &scoped())),
            "lvchange --devices /dev/sdb,/dev/sdc --deltag a=b --deltag c vg0/lv0"
        );
        assert_eq!(version(), vec!["version"]);
    }
}
