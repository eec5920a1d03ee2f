//! lvmlockd lockspaces as `lvmlockctl --info` reports them. A shared VG whose lockspace is
//! not started on this host can be read but not changed or activated here.

/// VG names with a started lockspace. lvmlockctl prints one `LS <lock manager> lvm_<vg>`
/// line per lockspace (after a `VG <vg> lock_type=...` line) and nothing when none runs.
pub fn parse_started(info: &str) -> Vec<String> {
    let mut vgs: Vec<String> = info
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("LS"))
                .then(|| words.nth(1))
                .flatten()
                .and_then(|ls| ls.strip_prefix("lvm_"))
                .map(str::to_string)
        })
        .filter(|vg| vg != "global")
        .collect();
    vgs.sort();
    vgs.dedup();
    vgs
}

/// The sanlock resource of an LV's lock, for `sanlock direct read_leader -r`: lvmlockd
/// keeps the lease of LV `uuid` at the offset in its `lv_lock_args` inside the VG's hidden
/// `lvmlock` LV. `None` when the lock args are not sanlock's `<version>:<offset>`.
pub fn sanlock_resource(vg: &str, lv_uuid: &str, lock_args: &str) -> Option<String> {
    let offset = lock_args.split_once(':')?.1;
    offset.parse::<u64>().ok()?;
    // device-mapper doubles hyphens inside VG and LV names.
    let dm_vg = vg.replace('-', "--");
    Some(format!(
        "lvm_{vg}:{lv_uuid}:/dev/mapper/{dm_vg}-lvmlock:{offset}"
    ))
}

/// `owner_id` from `sanlock direct read_leader` output: the sanlock host id of the host that
/// last acquired the lease (0 when nobody ever held it).
pub fn parse_leader_owner(out: &str) -> Option<u64> {
    out.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some("owner_id")).then(|| w.next()?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from lvm2 2.03.16 in the test guest, with one LV active exclusively.
    const INFO: &str = "VG svg lock_type=sanlock gNyFP5-KwwU-NWdz-ZOic-4oRk-fUhO-5FfRRh\n\
                        LS sanlock lvm_svg\n\
                        LK VG un ver 4\n\
                        LK LV ex d2WXpl-9xeW-41B7-0egT-27eZ-xwDO-3Idmfs\n";

    #[test]
    fn finds_started_lockspaces() {
        assert_eq!(parse_started(INFO), vec!["svg".to_string()]);
        let two = format!("{INFO}VG other lock_type=dlm x\nLS dlm lvm_other\n");
        assert_eq!(
            parse_started(&two),
            vec!["other".to_string(), "svg".to_string()]
        );
    }

    #[test]
    fn sanlock_resources_and_leaders() {
        assert_eq!(
            sanlock_resource("svg", "d2WXpl", "1.0.0:70254592").as_deref(),
            Some("lvm_svg:d2WXpl:/dev/mapper/svg-lvmlock:70254592")
        );
        assert_eq!(
            sanlock_resource("my-vg", "u", "1.0.0:1048576").as_deref(),
            Some("lvm_my-vg:u:/dev/mapper/my--vg-lvmlock:1048576")
        );
        assert!(sanlock_resource("svg", "u", "").is_none());
        assert!(sanlock_resource("svg", "u", "1.0.0:x").is_none());
        let out = "space_name lvm_svg\nresource_name d2WXpl\nowner_id 2\nowner_generation 1\n";
        assert_eq!(parse_leader_owner(out), Some(2));
        assert_eq!(parse_leader_owner("nothing"), None);
    }

    #[test]
    fn nothing_started() {
        assert!(parse_started("").is_empty());
        // A VG line alone (lockspace stopping) does not count as started.
        assert!(parse_started("VG svg lock_type=sanlock abc\n").is_empty());
    }
}
