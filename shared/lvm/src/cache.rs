//! A fast tier in front of a volume: lvm's dm-cache and dm-writecache with a cachevol
//! (lvmcache(7)). What is pure lives here: the cache modes, the cache LV's name, what a
//! report says about a volume's cache, and its statistics.
//!
//! The shape on lvm 2.03.16 (seen in the guest, tests/e2e/tests/cache_tier.rs):
//! - the cache LV is an ordinary linear LV on the fast PVs (`vglet.fast`) until
//!   `lvconvert --type cache|writecache --cachevol <cache LV> VG/LV` attaches it, online,
//!   to a mounted LV; lvm then hides it as `[<cache LV>_cvol]` (its tags go along), the
//!   volume's segment type becomes `cache` or `writecache`, its `pool_lv` names the cachevol,
//!   and the original data becomes `[<lv>_corig]` / `[<lv>_wcorig]`;
//! - `lvconvert --uncache VG/LV` detaches and removes the cache LV. It first writes every
//!   dirty block back: dm-writecache is switched to its cleaner mode and lvm waits for it
//!   to drain ("This command can be cancelled and rerun to complete writecache detach"), a
//!   dm-cache in writeback mode is flushed by its cleaner policy. An interrupted detach
//!   leaves the cache attached (and cleaning); running it again finishes it. No write is
//!   lost either way: until lvm swaps the table, every block is either on the origin or
//!   still in the cache the table reads through.
//! - `lvremove` of a cached LV removes its cachevol too.

use sha2::{Digest, Sha256};

use crate::report::{Lv, Pv};
use crate::tags::FAST_PV_TAG;

/// Which kernel cache sits in front of a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheMode {
    /// dm-cache in writethrough mode: reads and writes of hot blocks are served from the
    /// fast PV, every write also reaches the origin before it completes. Losing the fast
    /// PV loses nothing.
    Cache,
    /// dm-writecache: writes complete on the fast PV and are written back later; reads are
    /// left to the page cache. Losing the fast PV before a detach loses the writes not
    /// yet written back.
    Writecache,
}

impl CacheMode {
    pub const ALL: [CacheMode; 2] = [CacheMode::Cache, CacheMode::Writecache];

    /// The parameter value, lvm's `--type` and the volume's segment type while attached.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheMode::Cache => "cache",
            CacheMode::Writecache => "writecache",
        }
    }

    pub fn parse(s: &str) -> Option<CacheMode> {
        CacheMode::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// The mode of an LV whose first segment has this type; `None` when it is not cached.
    pub fn of_segtype(segtype: &str) -> Option<CacheMode> {
        CacheMode::parse(segtype)
    }
}

impl std::fmt::Display for CacheMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The prefix of every cache LV's name. Not a CSI volume's prefix (`csi-`), so no volume
/// name can collide with it.
pub const CACHE_LV_PREFIX: &str = "vglet-cache.";

/// The name of the cache LV of volume LV `lv`: short and fixed in length whatever the
/// volume's name (`vglet-cache.<16 hex>`, 28 bytes; hidden `[..._cvol]` while attached),
/// derived from the name so that a retry finds the one it made. Holds no string lvm
/// reserves.
pub fn cache_lv_name(lv: &str) -> String {
    let digest = Sha256::digest(lv.as_bytes());
    format!("{CACHE_LV_PREFIX}{}", &hex::encode(digest)[..16])
}

/// Whether `pv` is of its VG's fast tier (tagged [`FAST_PV_TAG`] by vg-init).
pub fn is_fast(pv: &Pv) -> bool {
    pv.tags.iter().any(|t| t == FAST_PV_TAG)
}

/// The PVs a VG's ordinary allocations may use (a new volume, its growth, new raid images),
/// as lvm's positional PV arguments: `None` when no PV of `pvs` (the VG's) is fast, so lvm
/// may use any; otherwise the others, by name (missing ones left out), which may be none.
/// The fast tier's room is kept for caches: lvm allocates only on the PVs named, and
/// refuses ("Insufficient suitable allocatable extents") rather than spill onto another.
pub fn data_pvs<'a>(pvs: impl IntoIterator<Item = &'a Pv>) -> Option<Vec<String>> {
    let pvs: Vec<&Pv> = pvs.into_iter().collect();
    if !pvs.iter().any(|p| is_fast(p)) {
        return None;
    }
    Some(
        pvs.iter()
            .filter(|p| !is_fast(p) && p.name.starts_with("/dev/"))
            .map(|p| p.name.clone())
            .collect(),
    )
}

/// A volume's attached cache, as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub mode: CacheMode,
    /// The cachevol as lvm names it while attached, without brackets
    /// (`vglet-cache.<hex>_cvol`).
    pub cachevol: String,
}

/// What is attached in front of `lv`; `None` for an uncached LV.
pub fn attached(lv: &Lv) -> Option<Attached> {
    let mode = CacheMode::of_segtype(&lv.segtype)?;
    Some(Attached {
        mode,
        cachevol: lv
            .pool_lv
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    })
}

/// The size of cachevol `cachevol` in the stdout of [`crate::args::lvs_cachevol`]; `None`
/// when lvm showed no such LV.
pub fn parse_cachevol_size(stdout: &str, cachevol: &str) -> Result<Option<u64>, String> {
    let start = stdout
        .find('{')
        .ok_or_else(|| "no JSON object in lvm output".to_string())?;
    let root: serde_json::Value =
        serde_json::from_str(&stdout[start..]).map_err(|e| format!("invalid JSON: {e}"))?;
    let rows = root["report"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["lv"].as_array())
        .flatten();
    for row in rows {
        let name = row["lv_name"].as_str().unwrap_or_default();
        if name.trim_start_matches('[').trim_end_matches(']') != cachevol {
            continue;
        }
        let size = match &row["lv_size"] {
            serde_json::Value::String(s) => s.parse::<u64>().ok(),
            serde_json::Value::Number(n) => n.as_u64(),
            _ => None,
        };
        return size
            .map(Some)
            .ok_or_else(|| format!("{cachevol}: no lv_size in {row}"));
    }
    Ok(None)
}

/// A cached LV's statistics as lvm reports them (blocks of the cache's own block size;
/// counters since activation). `None` where lvm printed nothing: not that kind of cache,
/// or the LV is inactive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// dm-cache.
    pub total_blocks: Option<u64>,
    pub used_blocks: Option<u64>,
    pub dirty_blocks: Option<u64>,
    pub read_hits: Option<u64>,
    pub read_misses: Option<u64>,
    pub write_hits: Option<u64>,
    pub write_misses: Option<u64>,
    /// dm-writecache.
    pub writecache_total_blocks: Option<u64>,
    pub writecache_free_blocks: Option<u64>,
    pub writecache_writeback_blocks: Option<u64>,
    pub writecache_error: Option<u64>,
}

impl CacheStats {
    /// Blocks that hold data not yet on the origin: dm-cache's dirty blocks, or the used
    /// blocks of a writecache (every block it holds is a write not yet written back).
    pub fn dirty(&self) -> Option<u64> {
        self.dirty_blocks.or_else(|| {
            Some(
                self.writecache_total_blocks?
                    .saturating_sub(self.writecache_free_blocks?),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_names() {
        assert_eq!(CacheMode::parse("cache"), Some(CacheMode::Cache));
        assert_eq!(CacheMode::parse("writecache"), Some(CacheMode::Writecache));
        assert_eq!(CacheMode::parse("none"), None);
        assert_eq!(CacheMode::of_segtype("linear"), None);
        let n = cache_lv_name("csi-pvc-1");
        assert_eq!(n.len(), CACHE_LV_PREFIX.len() + 16);
        assert_eq!(n, cache_lv_name("csi-pvc-1"), "stable across retries");
        assert_ne!(n, cache_lv_name("csi-pvc-2"));
        crate::naming::validate_lv_name(&n).unwrap();
        crate::naming::validate_lv_name(&format!("{n}_cvol")).unwrap_err();
    }

    #[test]
    fn data_pvs_leave_the_fast_tier_out() {
        let pv = |name: &str, tags: &[&str]| Pv {
            name: name.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        };
        let slow = pv("/dev/vda", &[]);
        let other = pv("/dev/vdc", &["ops.team"]);
        let fast = pv("/dev/vdb", &["vglet.fast"]);
        let lost = pv("[unknown]", &[]);
        assert_eq!(data_pvs([&slow, &other]), None, "no fast tier: any PV");
        assert_eq!(
            data_pvs([&slow, &fast, &other, &lost]),
            Some(vec!["/dev/vda".to_string(), "/dev/vdc".to_string()])
        );
        assert_eq!(data_pvs([&fast]), Some(vec![]), "only fast PVs: none");
        assert!(is_fast(&fast) && !is_fast(&other));
    }

    #[test]
    fn cachevol_size_from_lvs() {
        let out = r#"  {
      "report": [
          {
              "lv": [
                  {"lv_name":"[vglet-cache.0123456789abcdef_cvol]", "lv_size":"50331648"}
              ]
          }
      ]
  }"#;
        assert_eq!(
            parse_cachevol_size(out, "vglet-cache.0123456789abcdef_cvol"),
            Ok(Some(48 << 20))
        );
        assert_eq!(parse_cachevol_size(out, "vglet-cache.ff_cvol"), Ok(None));
        assert!(parse_cachevol_size("garbage", "x").is_err());
    }

    #[test]
    fn attached_reads_segtype_and_pool() {
        let lv = Lv {
            segtype: "writecache".into(),
            pool_lv: "[vglet-cache.0123456789abcdef_cvol]".into(),
            ..Default::default()
        };
        assert_eq!(
            attached(&lv),
            Some(Attached {
                mode: CacheMode::Writecache,
                cachevol: "vglet-cache.0123456789abcdef_cvol".into()
            })
        );
        assert_eq!(
            attached(&Lv {
                segtype: "linear".into(),
                ..Default::default()
            }),
            None
        );
    }

    #[test]
    fn dirty_blocks_of_each_kind() {
        let c = CacheStats {
            dirty_blocks: Some(3),
            ..Default::default()
        };
        assert_eq!(c.dirty(), Some(3));
        let w = CacheStats {
            writecache_total_blocks: Some(127100),
            writecache_free_blocks: Some(106588),
            ..Default::default()
        };
        assert_eq!(w.dirty(), Some(20512));
        assert_eq!(CacheStats::default().dirty(), None);
    }
}
