//! argv builders for a volume's cache tier (lvmcache(7)): the cache LV on the fast PVs,
//! attaching it in front of a volume, detaching it.

use super::{CommonOptions, vg_lv};
use crate::cache::CacheMode;
use crate::size::size_arg;
use crate::tags::FAST_PV_TAG;

/// The cache LV `name` of `size` bytes, tagged `tags`, allocated only on the VG's PVs
/// tagged [`FAST_PV_TAG`] (`@vglet.fast` is lvm's PV list by tag). Activated and zeroed
/// like any new LV; the attach overwrites it anyway.
pub fn lvcreate_cache_lv(
    vg: &str,
    name: &str,
    size: u64,
    tags: &[String],
    common: &CommonOptions,
) -> Vec<String> {
    let mut argv = common.start("lvcreate");
    argv.extend(["-y", "--wipesignatures", "y", "-Z", "y"].map(String::from));
    argv.extend(["-n".to_string(), name.to_string()]);
    argv.extend(["-L".to_string(), size_arg(size)]);
    for tag in tags {
        argv.extend(["--addtag".to_string(), tag.clone()]);
    }
    argv.push(vg.to_string());
    argv.push(format!("@{FAST_PV_TAG}"));
    argv
}

/// Attaches the cache LV `cachevol` in front of `vg/lv`, online. dm-cache is asked for
/// writethrough by name, whatever lvm.conf's allocation/cache_mode says: a write completes
/// only once it is on the origin, so losing the fast PV loses nothing.
pub fn lvconvert_attach_cache(
    vg: &str,
    lv: &str,
    mode: CacheMode,
    cachevol: &str,
    common: &CommonOptions,
) -> Vec<String> {
    let mut argv = common.start("lvconvert");
    argv.extend(["-y", "--type", mode.as_str(), "--cachevol", cachevol].map(String::from));
    if mode == CacheMode::Cache {
        argv.extend(["--cachemode", "writethrough"].map(String::from));
    }
    argv.push(vg_lv(vg, lv));
    argv
}

/// Detaches `vg/lv`'s cache and removes the cache LV. lvm writes every dirty block back
/// first and waits for it (see [`crate::cache`]); run again after an interruption, it
/// finishes the detach.
pub fn lvconvert_uncache(vg: &str, lv: &str, common: &CommonOptions) -> Vec<String> {
    let mut argv = common.start("lvconvert");
    argv.extend(["-y", "--uncache"].map(String::from));
    argv.push(vg_lv(vg, lv));
    argv
}

/// `lvs -a` of one hidden cachevol (`<cache LV>_cvol`) by name: its name and size in bytes
/// (see [`crate::cache::parse_cachevol_size`]). The selection compares lvm's own name,
/// without the brackets it prints for hidden LVs.
pub fn lvs_cachevol(vg: &str, cachevol: &str, common: &CommonOptions) -> Vec<String> {
    let mut argv = common.start("lvs");
    argv.extend(["-a", "--reportformat", "json", "--units", "b", "--nosuffix"].map(String::from));
    argv.extend(["-o".to_string(), "lv_name,lv_size".to_string()]);
    argv.extend(["-S".to_string(), format!(r#"lv_name="{cachevol}""#)]);
    argv.push(vg.to_string());
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn cache_lv_goes_on_the_fast_pvs_only() {
        let c = CommonOptions::default();
        assert_eq!(
            lvcreate_cache_lv(
                "vg0",
                "vglet-cache.00",
                64 << 20,
                &s(&["vglet.owner=d", "vglet.cache-of=csi-a"]),
                &c
            ),
            s(&[
                "lvcreate",
                "-y",
                "--wipesignatures",
                "y",
                "-Z",
                "y",
                "-n",
                "vglet-cache.00",
                "-L",
                "67108864b",
                "--addtag",
                "vglet.owner=d",
                "--addtag",
                "vglet.cache-of=csi-a",
                "vg0",
                "@vglet.fast"
            ])
        );
    }

    #[test]
    fn cachevol_read() {
        assert_eq!(
            lvs_cachevol("vg0", "vglet-cache.00_cvol", &CommonOptions::default()).join(" "),
            r#"lvs -a --reportformat json --units b --nosuffix -o lv_name,lv_size -S lv_name="vglet-cache.00_cvol" vg0"#
        );
    }

    #[test]
    fn attach_and_detach() {
        let c = CommonOptions::default();
        assert_eq!(
            lvconvert_attach_cache("vg0", "csi-a", CacheMode::Cache, "vglet-cache.00", &c),
            s(&[
                "lvconvert",
                "-y",
                "--type",
                "cache",
                "--cachevol",
                "vglet-cache.00",
                "--cachemode",
                "writethrough",
                "vg0/csi-a"
            ])
        );
        assert_eq!(
            lvconvert_attach_cache("vg0", "csi-a", CacheMode::Writecache, "vglet-cache.00", &c),
            s(&[
                "lvconvert",
                "-y",
                "--type",
                "writecache",
                "--cachevol",
                "vglet-cache.00",
                "vg0/csi-a"
            ])
        );
        assert_eq!(
            lvconvert_uncache("vg0", "csi-a", &c),
            s(&["lvconvert", "-y", "--uncache", "vg0/csi-a"])
        );
    }
}
