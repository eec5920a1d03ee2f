//! The cache tier's mutable parameters and rules: `cache` (`none`, `cache`, `writecache`)
//! and `cacheSize`, and what a volume must be for a cache to go in front of it. Pure; the
//! plan in `ops::modify` decides the steps from these. docs/storageclass-parameters.md
//! ("Cache tier") is the reference.

use std::collections::HashMap;

use vglet_lvm::CacheMode;
use vglet_lvm::tags::{FAST_PV_TAG, VgPmem};
use vglet_lvm::{Lv, Pv, Vg};

use crate::rules::error::VolumeError;

/// `none`, `cache` (dm-cache, writethrough) or `writecache` (dm-writecache).
pub const CACHE: &str = "cache";
/// The cache LV's size when one is attached (`1Gi`, `512Mi`; docs/units.md). Default:
/// [`DEFAULT_PERCENT`] of the volume, at least [`MIN_CACHE_SIZE`].
pub const CACHE_SIZE: &str = "cacheSize";

/// The default cache size, in percent of the volume's size.
pub const DEFAULT_PERCENT: u64 = 10;
/// The smallest cache: dm-cache keeps its metadata in the cachevol too, and lvm refuses
/// cachevols of a few extents.
pub const MIN_CACHE_SIZE: u64 = 32 << 20;

/// What a class asks of a volume's cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheWish {
    /// No cache: an attached one is written back and detached.
    None,
    /// A cache of this mode; `size` when the class gives `cacheSize`.
    Mode { mode: CacheMode, size: Option<u64> },
}

impl CacheWish {
    pub fn describe(self) -> String {
        match self {
            CacheWish::None => "no cache".into(),
            CacheWish::Mode { mode, .. } => format!("a {mode} cache"),
        }
    }

    /// The size of the cache LV to make for a volume of `volume_size` bytes.
    pub fn size_for(self, volume_size: u64) -> Option<u64> {
        match self {
            CacheWish::None => None,
            CacheWish::Mode { size: Some(s), .. } => Some(s),
            CacheWish::Mode { size: None, .. } => {
                Some((volume_size / 100 * DEFAULT_PERCENT).max(MIN_CACHE_SIZE))
            }
        }
    }
}

/// The cache keys of a mutable-parameters map `raw` (`field` is the request's field name);
/// `None` when it gives neither. Other keys are the caller's.
pub fn parse(field: &str, raw: &HashMap<String, String>) -> Result<Option<CacheWish>, VolumeError> {
    let mode = raw.get(CACHE).map(|v| v.trim());
    let size = raw.get(CACHE_SIZE).map(|v| v.trim());
    let size = match size {
        None => None,
        Some(s) => {
            let f = format!("{field}.{CACHE_SIZE}");
            let bytes =
                vglet_common::size::parse_size(s).map_err(|e| VolumeError::invalid(&f, e))?;
            if bytes < MIN_CACHE_SIZE {
                return Err(VolumeError::invalid(
                    &f,
                    format!(
                        "{s:?} is below the smallest cache, {}",
                        vglet_common::size::format_size(MIN_CACHE_SIZE)
                    ),
                ));
            }
            Some(bytes)
        }
    };
    match (mode, size) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(VolumeError::invalid(
            format!("{field}.{CACHE_SIZE}"),
            format!("applies only with {field}.{CACHE}: cache or writecache"),
        )),
        (Some("none"), Some(_)) => Err(VolumeError::invalid(
            format!("{field}.{CACHE_SIZE}"),
            format!("is the size of a cache, and {field}.{CACHE} is none"),
        )),
        (Some("none"), None) => Ok(Some(CacheWish::None)),
        (Some(m), size) => match CacheMode::parse(m) {
            Some(mode) => Ok(Some(CacheWish::Mode { mode, size })),
            None => Err(VolumeError::invalid(
                format!("{field}.{CACHE}"),
                format!("{m:?} is not a cache mode; use none, cache or writecache"),
            )),
        },
    }
}

fn cache_field() -> String {
    format!("mutable_parameters.{CACHE}")
}

/// Whether a cache may go in front of volume `id` (its LV `lv` in VG `vg`); the rule that
/// forbids it otherwise, as INVALID_ARGUMENT naming `mutable_parameters.cache`.
pub fn admits(id: &str, lv: &Lv, vg: &Vg) -> Result<(), VolumeError> {
    let refuse = |why: String| Err(VolumeError::invalid(cache_field(), why));
    if lv.segtype == "thin" {
        return refuse(format!(
            "volume {id} is a thin volume: its blocks are thin pool {}'s, which lvm caches as a whole (lvmthin(7)), not one thin volume at a time",
            lv.pool_lv
        ));
    }
    admits_vg(id, vg)?;
    if lv.segtype.ends_with("pool") || lv.segtype == "snapshot" {
        return refuse(format!(
            "volume {id} is a {}, which cannot be cached",
            lv.segtype
        ));
    }
    Ok(())
}

/// Whether a volume `id` of VG `vg` may have a cache at all (not in a shared VG, not on
/// persistent memory): what CreateVolume checks before it creates anything.
pub fn admits_vg(id: &str, vg: &Vg) -> Result<(), VolumeError> {
    let refuse = |why: String| Err(VolumeError::invalid(cache_field(), why));
    if vg.is_shared() {
        return refuse(format!(
            "volume {id} is in shared volume group {}: a cache is activated with its volume exclusively on one host, while a shared volume may be active on several, each with its own page of the cache; caches of shared volumes are not offered",
            vg.name
        ));
    }
    if let mode @ (VgPmem::Mode(_) | VgPmem::Bad) = VgPmem::from_tags(&vg.tags) {
        let what = match mode.mode() {
            Some(m) => format!("{} persistent memory", m.as_str()),
            None => "persistent memory".into(),
        };
        return refuse(format!(
            "volume {id} is on {what} (volume group {}): it is the fast tier itself, and neither dm-cache nor dm-writecache passes DAX through, so an fsdax volume would lose DAX",
            vg.name
        ));
    }
    Ok(())
}

/// RESOURCE_EXHAUSTED unless the VG's fast PVs (tagged [`FAST_PV_TAG`]) have `size` bytes
/// free between them (lvm spreads a linear cache LV over several when needed), counting
/// `freed` bytes more: the cache LV a detach planned before removes.
pub fn check_room(
    id: &str,
    vg: &Vg,
    pvs: &[&Pv],
    size: u64,
    freed: u64,
) -> Result<(), VolumeError> {
    let fast: Vec<&&Pv> = pvs
        .iter()
        .filter(|p| p.tags.iter().any(|t| t == FAST_PV_TAG))
        .collect();
    if fast.is_empty() {
        return Err(VolumeError::NoSpace(format!(
            "volume {id} cannot get a cache: volume group {} has no fast physical volume (none tagged {FAST_PV_TAG}; add one with vg-init --fast-device)",
            vg.name
        )));
    }
    let extent = vg.extent_size.max(1);
    let need = vglet_lvm::round_up(size, extent);
    let free: u64 = fast.iter().map(|p| p.free).sum::<u64>() + freed;
    if free < need {
        return Err(VolumeError::NoSpace(format!(
            "volume {id} needs a cache of {need} bytes; the fast physical volumes of volume group {} ({}) have {free} bytes free{}",
            vg.name,
            fast.iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            if freed > 0 {
                format!(" once its present cache ({freed} bytes) is detached")
            } else {
                String::new()
            }
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn p(kv: &[(&str, &str)]) -> Result<Option<CacheWish>, VolumeError> {
        parse("mutable_parameters", &map(kv))
    }

    #[test]
    fn keys_and_values() {
        assert_eq!(p(&[]).unwrap(), None);
        assert_eq!(p(&[("cache", "none")]).unwrap(), Some(CacheWish::None));
        assert_eq!(
            p(&[("cache", " writecache ")]).unwrap(),
            Some(CacheWish::Mode {
                mode: CacheMode::Writecache,
                size: None
            })
        );
        assert_eq!(
            p(&[("cache", "cache"), ("cacheSize", "64Mi")]).unwrap(),
            Some(CacheWish::Mode {
                mode: CacheMode::Cache,
                size: Some(64 << 20)
            })
        );
        let e = |kv: &[(&str, &str)]| p(kv).unwrap_err().to_string();
        assert!(e(&[("cache", "dm-cache")]).starts_with("mutable_parameters.cache: "));
        assert!(e(&[("cache", "Cache")]).contains("none, cache or writecache"));
        assert!(e(&[("cacheSize", "1Gi")]).contains("only with mutable_parameters.cache"));
        assert!(e(&[("cache", "none"), ("cacheSize", "1Gi")]).contains("is none"));
        assert!(
            e(&[("cache", "cache"), ("cacheSize", "1m")])
                .starts_with("mutable_parameters.cacheSize: ")
        );
        assert!(e(&[("cache", "cache"), ("cacheSize", "1Mi")]).contains("smallest cache"));
    }

    #[test]
    fn default_size_is_a_tenth_with_a_floor() {
        let w = CacheWish::Mode {
            mode: CacheMode::Cache,
            size: None,
        };
        assert_eq!(w.size_for(10 << 30), Some((10u64 << 30) / 100 * 10));
        assert_eq!(w.size_for(256 << 20), Some(MIN_CACHE_SIZE));
        assert_eq!(CacheWish::None.size_for(1 << 30), None);
    }

    fn vg(tags: &[&str], lock: &str) -> Vg {
        Vg {
            name: "vg0".into(),
            extent_size: 4 << 20,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            lock_type: lock.into(),
            ..Default::default()
        }
    }

    fn lv(segtype: &str) -> Lv {
        Lv {
            name: "csi-a".into(),
            segtype: segtype.into(),
            pool_lv: if segtype == "thin" {
                "pool0".into()
            } else {
                String::new()
            },
            ..Default::default()
        }
    }

    #[test]
    fn refusals_name_the_rule() {
        admits("vg0/csi-a", &lv("linear"), &vg(&[], "")).unwrap();
        admits("vg0/csi-a", &lv("raid1"), &vg(&[], "")).unwrap();
        for (l, v, want) in [
            (lv("thin"), vg(&[], ""), "thin volume"),
            (lv("linear"), vg(&[], "sanlock"), "shared volume group"),
            (lv("linear"), vg(&["vglet.pmem=fsdax"], ""), "lose DAX"),
            (
                lv("linear"),
                vg(&["vglet.pmem=sector"], ""),
                "sector persistent memory",
            ),
            (
                lv("linear"),
                vg(&["vglet.pmem=what"], ""),
                "persistent memory",
            ),
        ] {
            let e = admits("vg0/csi-a", &l, &v).unwrap_err();
            assert!(matches!(e, VolumeError::Invalid { .. }), "{e:?}");
            let m = e.to_string();
            assert!(
                m.starts_with("mutable_parameters.cache: ") && m.contains(want),
                "{m}"
            );
        }
    }

    #[test]
    fn room_on_the_fast_pvs_only() {
        let pv = |name: &str, free: u64, fast: bool| Pv {
            name: name.into(),
            vg: "vg0".into(),
            free,
            tags: if fast {
                vec![FAST_PV_TAG.into()]
            } else {
                vec![]
            },
            ..Default::default()
        };
        let v = vg(&[], "");
        let slow = pv("/dev/vda", 10 << 30, false);
        let fast = pv("/dev/vdb", 100 << 20, true);
        let e = check_room("vg0/csi-a", &v, &[&slow], 64 << 20, 0).unwrap_err();
        assert!(
            matches!(&e, VolumeError::NoSpace(m) if m.contains("no fast physical volume")),
            "{e:?}"
        );
        check_room("vg0/csi-a", &v, &[&slow, &fast], 64 << 20, 0).unwrap();
        // 98 MiB rounds up to 100 MiB of extents: fits exactly; 101 MiB does not.
        check_room("vg0/csi-a", &v, &[&slow, &fast], 98 << 20, 0).unwrap();
        let e = check_room("vg0/csi-a", &v, &[&slow, &fast], 101 << 20, 0).unwrap_err();
        assert!(
            matches!(&e, VolumeError::NoSpace(m) if m.contains("/dev/vdb")),
            "{e:?}"
        );
        // A resize: the present 64 MiB cache goes first, so 164 MiB fit, 168 do not.
        check_room("vg0/csi-a", &v, &[&slow, &fast], 164 << 20, 64 << 20).unwrap();
        let e = check_room("vg0/csi-a", &v, &[&slow, &fast], 168 << 20, 64 << 20).unwrap_err();
        assert!(
            matches!(&e, VolumeError::NoSpace(m) if m.contains("once its present cache (67108864 bytes) is detached")),
            "{e:?}"
        );
    }
}
