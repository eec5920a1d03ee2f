//! ndctl's JSON. Its shape depends on what is listed and how many items there are: an
//! object `{"regions": [...]}` when regions carry namespaces, a bare array of regions
//! when none does, a bare object for a single item on some versions, objects nested per
//! bus with `-B`, nothing at all when nothing matches. [`parse_regions`] accepts all of
//! them by walking the document for region objects.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::NdctlError;

/// Fallback when an older ndctl omits the region's `align`: the 16 MiB that fsdax needs
/// to be cross-architecture compatible, which is also the kernel's default.
pub const DEFAULT_REGION_ALIGN: u64 = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    /// e.g. "region0".
    pub dev: String,
    #[serde(default)]
    pub size: u64,
    /// Namespace sizes must be multiples of this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub align: Option<u64>,
    #[serde(default)]
    pub available_size: u64,
    /// The largest contiguous free extent: what one new namespace can get.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_available_extent: Option<u64>,
    /// "pmem" or "blk".
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The interleave-set cookie. The kernel only exposes it once the region's DIMMs have
    /// a valid label index, so its absence is how a label-less region shows in ndctl's
    /// output (see [`Region::has_labels`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iset_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence_domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mappings: Vec<Mapping>,
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    /// e.g. "nmem0".
    pub dimm: String,
    #[serde(default)]
    pub offset: u64,
    #[serde(default)]
    pub length: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// e.g. "namespace0.1".
    pub dev: String,
    /// fsdax, sector, devdax or raw. A disabled sector namespace shows as raw.
    #[serde(default)]
    pub mode: String,
    /// Usable bytes: after the fsdax page map or the BTT, so a little less than the space
    /// the namespace takes from its region.
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Only labelled namespaces have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Block device name without /dev ("pmem0", "pmem0.1s"); absent when disabled or devdax.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blockdev: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sector_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub align: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<String>,
    /// "disabled" for idle namespaces (listed with `--idle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

impl Region {
    pub fn align(&self) -> u64 {
        self.align
            .filter(|a| *a > 0)
            .unwrap_or(DEFAULT_REGION_ALIGN)
    }

    /// What the next namespace can get.
    pub fn max_extent(&self) -> u64 {
        self.max_available_extent.unwrap_or(self.available_size)
    }

    pub fn is_pmem(&self) -> bool {
        self.kind == "pmem"
    }

    /// Whether namespaces can be carved out of this region. A label-less region (DIMMs
    /// without a label index, or platforms without label support) holds exactly one
    /// namespace spanning the whole region, reports no free space and no interleave-set
    /// cookie; ndctl then refuses any `--size`. A named namespace can only come from a
    /// label, so one is proof of labels too.
    pub fn has_labels(&self) -> bool {
        self.iset_id.is_some()
            || self.available_size > 0
            || self.namespaces.iter().any(|n| n.name.is_some())
    }

    /// The region number, for sorting region10 after region9.
    pub fn number(&self) -> Option<u64> {
        self.dev.strip_prefix("region")?.parse().ok()
    }

    /// Namespaces that exist: the kernel always lists an empty "seed" namespace per
    /// region with `--idle`, which is not one.
    pub fn real_namespaces(&self) -> impl Iterator<Item = &Namespace> {
        self.namespaces.iter().filter(|n| !n.is_seed())
    }
}

impl Namespace {
    pub fn is_seed(&self) -> bool {
        self.size == 0 && self.name.is_none()
    }

    pub fn is_enabled(&self) -> bool {
        self.state.as_deref() != Some("disabled")
    }

    /// /dev path of its block device, when it has one.
    pub fn blockdev_path(&self) -> Option<String> {
        self.blockdev
            .as_deref()
            .filter(|b| !b.is_empty())
            .map(|b| format!("/dev/{b}"))
    }
}

/// Every region in `ndctl list -R ...` output, sorted by number, whatever the shape.
pub fn parse_regions(text: &str) -> Result<Vec<Region>, NdctlError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| NdctlError::Parse(format!("ndctl list output is not JSON: {e}")))?;
    let mut regions = Vec::new();
    collect(&doc, &mut regions)?;
    regions.sort_by(|a, b| (a.number(), &a.dev).cmp(&(b.number(), &b.dev)));
    Ok(regions)
}

fn collect(v: &Value, out: &mut Vec<Region>) -> Result<(), NdctlError> {
    match v {
        Value::Array(items) => items.iter().try_for_each(|i| collect(i, out)),
        Value::Object(map) => {
            let is_region = map
                .get("dev")
                .and_then(Value::as_str)
                .is_some_and(|d| d.starts_with("region"));
            if is_region {
                let r: Region = serde_json::from_value(v.clone())
                    .map_err(|e| NdctlError::Parse(format!("unexpected region JSON: {e}")))?;
                out.push(r);
                return Ok(());
            }
            // {"regions": [...]}, {"buses": [...]}, a bus with "regions": the containers.
            for key in ["regions", "buses"] {
                if let Some(inner) = map.get(key) {
                    collect(inner, out)?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The namespace `create-namespace` printed: one object (or, defensively, a one-item array).
pub fn parse_namespace(text: &str) -> Result<Namespace, NdctlError> {
    let doc: Value = serde_json::from_str(text.trim()).map_err(|e| {
        NdctlError::Parse(format!(
            "create-namespace output is not JSON: {e}: {text:?}"
        ))
    })?;
    let obj = match doc {
        Value::Array(mut items) if items.len() == 1 => items.remove(0),
        other => other,
    };
    serde_json::from_value(obj)
        .map_err(|e| NdctlError::Parse(format!("unexpected namespace JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn label_less_regions() {
        // Fresh emulated NVDIMMs (QEMU, label area present but no index block yet).
        let regions = parse_regions(&fixture("list-labelless.json")).unwrap();
        let names: Vec<_> = regions.iter().map(|r| r.dev.as_str()).collect();
        assert_eq!(names, ["region0", "region1"], "sorted by number");
        let r = &regions[0];
        assert!(!r.has_labels());
        assert!(r.is_pmem());
        assert_eq!(r.align(), 16 << 20);
        assert_eq!(r.size, 1_073_610_752);
        assert_eq!(r.max_extent(), 0);
        let ns: Vec<_> = r.real_namespaces().collect();
        assert_eq!(ns.len(), 1);
        assert_eq!(ns[0].mode, "raw");
        assert_eq!(ns[0].size, r.size);
        assert_eq!(ns[0].blockdev_path().as_deref(), Some("/dev/pmem0"));
        assert_eq!(ns[0].name, None);
    }

    #[test]
    fn labelled_regions_without_namespaces_come_as_a_bare_array() {
        let text = fixture("list-labelled-empty.json");
        assert!(text.trim_start().starts_with('['));
        let regions = parse_regions(&text).unwrap();
        assert_eq!(regions.len(), 2);
        for r in &regions {
            assert!(r.has_labels());
            assert_eq!(r.available_size, 1_056_964_608);
            assert_eq!(r.max_extent(), 1_056_964_608);
            assert!(r.namespaces.is_empty());
        }
    }

    #[test]
    fn regions_with_namespaces_come_in_an_object() {
        let text = fixture("list-mixed-full.json");
        assert!(text.trim_start().starts_with('{'));
        let regions = parse_regions(&text).unwrap();
        let r0 = &regions[0];
        assert_eq!(r0.dev, "region0");
        assert_eq!(r0.max_extent(), 0);
        let sector = r0
            .namespaces
            .iter()
            .find(|n| n.name.as_deref() == Some("vglet-sector-region0"))
            .unwrap();
        assert_eq!(sector.mode, "sector");
        assert_eq!(sector.blockdev_path().as_deref(), Some("/dev/pmem0.1s"));
        assert_eq!(sector.sector_size, Some(4096));
        let fsdax = r0
            .namespaces
            .iter()
            .find(|n| n.dev == "namespace0.0")
            .unwrap();
        assert_eq!(fsdax.mode, "fsdax");
        assert_eq!(fsdax.align, Some(2 << 20));
        assert_eq!(fsdax.map.as_deref(), Some("dev"));
        assert!(fsdax.is_enabled());
        assert_eq!(regions[1].namespaces[0].blockdev.as_deref(), Some("pmem1s"));
    }

    #[test]
    fn idle_listing_has_seeds_and_disabled_namespaces() {
        let regions = parse_regions(&fixture("list-idle-disabled.json")).unwrap();
        let r1 = &regions[1];
        assert_eq!(r1.namespaces.len(), 3);
        let real: Vec<_> = r1.real_namespaces().map(|n| n.dev.as_str()).collect();
        assert_eq!(real, ["namespace1.0", "namespace1.1"]);
        let disabled = r1
            .namespaces
            .iter()
            .find(|n| n.dev == "namespace1.1")
            .unwrap();
        assert!(!disabled.is_enabled());
        assert_eq!(
            disabled.mode, "raw",
            "a disabled sector namespace shows as raw"
        );
        assert_eq!(disabled.name.as_deref(), Some("vglet-sector-region1"));
        assert_eq!(disabled.blockdev_path(), None);
    }

    #[test]
    fn bus_nested_listing_with_mappings() {
        let regions = parse_regions(&fixture("list-dimms-vvv.json")).unwrap();
        assert_eq!(regions.len(), 2);
        assert_eq!(regions[0].mappings.len(), 1);
        assert_eq!(regions[0].mappings[0].dimm, "nmem0");
        assert_eq!(regions[1].mappings[0].dimm, "nmem1");
    }

    #[test]
    fn single_objects_and_empty_output() {
        assert!(parse_regions("").unwrap().is_empty());
        assert!(parse_regions("  \n").unwrap().is_empty());
        let one = r#"{"dev":"region3","size":33554432,"available_size":33554432,"type":"pmem"}"#;
        let regions = parse_regions(one).unwrap();
        assert_eq!(regions.len(), 1);
        assert_eq!(regions[0].align(), DEFAULT_REGION_ALIGN);
        assert!(regions[0].has_labels());
        // Namespaces without regions are not regions.
        assert!(
            parse_regions(&fixture("list-one-namespace.json"))
                .unwrap()
                .is_empty()
        );
        assert!(matches!(parse_regions("{oops"), Err(NdctlError::Parse(_))));
        let sorted = parse_regions(r#"[{"dev":"region10"},{"dev":"region9"}]"#).unwrap();
        assert_eq!(sorted[0].dev, "region9");
    }

    #[test]
    fn created_namespaces() {
        let ns = parse_namespace(&fixture("create-fsdax.json")).unwrap();
        assert_eq!(ns.dev, "namespace0.0");
        assert_eq!(ns.mode, "fsdax");
        assert_eq!(ns.name.as_deref(), Some("vglet-fsdax-region0"));
        assert_eq!(ns.size, 725_614_592);
        let ns = parse_namespace(&fixture("create-sector.json")).unwrap();
        assert_eq!(ns.blockdev_path().as_deref(), Some("/dev/pmem0.1s"));
        let ns = parse_namespace(&fixture("list-one-namespace.json")).unwrap();
        assert_eq!(ns.dev, "namespace0.0");
        assert!(parse_namespace("").is_err());
    }
}
