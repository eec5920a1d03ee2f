//! The result document for disk-discover, and its atomic write.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use vglet_devices::inventory::{PMEM_NAMESPACES_VERSION, PmemNamespace, PmemNamespaces};
use vglet_ndctl::{PmemMode, Region};

use crate::plan::is_own;

/// Our namespaces that have a block device, in region order. Disabled ones and ones whose
/// mode was changed to something without a block device are left out (the plan warned).
pub fn document(regions: &[Region]) -> PmemNamespaces {
    let mut namespaces = Vec::new();
    for region in regions {
        let mut own: Vec<PmemNamespace> = region
            .real_namespaces()
            .filter(|n| is_own(n, &region.dev) && n.is_enabled())
            .filter(|n| PmemMode::parse(&n.mode).is_some())
            .filter_map(|n| {
                Some(PmemNamespace {
                    name: n.name.clone()?,
                    dev: n.dev.clone(),
                    blockdev: n.blockdev_path()?,
                    region: region.dev.clone(),
                    mode: n.mode.clone(),
                    size_bytes: n.size,
                })
            })
            .collect();
        own.sort_by(|a, b| a.name.cmp(&b.name));
        namespaces.extend(own);
    }
    PmemNamespaces {
        version: PMEM_NAMESPACES_VERSION,
        generator: format!("pmem-ns-init {}", vglet_common::VERSION),
        namespaces,
    }
}

pub fn to_json(doc: &PmemNamespaces) -> String {
    serde_json::to_string_pretty(doc).expect("document serialises") + "\n"
}

/// To `path` atomically, or to stdout.
pub fn write(path: Option<&Path>, doc: &PmemNamespaces) -> anyhow::Result<()> {
    let json = to_json(doc);
    match path {
        Some(p) => write_atomic(p, json.as_bytes()),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(json.as_bytes())
                .and_then(|_| stdout.flush())
                .context("writing the result to stdout")
        }
    }
}

/// The next stage must never read half a document (see vglet_common::atomic_file).
pub fn write_atomic(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    vglet_common::atomic_file::write_atomic(path, data)
        .with_context(|| format!("writing the result to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_lists_our_namespaces_only_and_disk_discover_reads_it() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/ndctl/tests/fixtures/list-mixed-full.json"
        ))
        .unwrap();
        let regions = vglet_ndctl::parse_regions(&text).unwrap();
        let doc = document(&regions);
        let got: Vec<_> = doc
            .namespaces
            .iter()
            .map(|n| {
                (
                    n.name.as_str(),
                    n.blockdev.as_str(),
                    n.region.as_str(),
                    n.mode.as_str(),
                )
            })
            .collect();
        // "nosize" in region0 is foreign.
        assert_eq!(
            got,
            [
                ("vglet-fsdax-region0", "/dev/pmem0", "region0", "fsdax"),
                ("vglet-sector-region0", "/dev/pmem0.1s", "region0", "sector"),
                ("vglet-sector-region1", "/dev/pmem1s", "region1", "sector"),
            ]
        );
        assert_eq!(doc.namespaces[0].size_bytes, 725_614_592);
        assert_eq!(doc.namespaces[0].dev, "namespace0.0");
        let back = PmemNamespaces::from_json(&to_json(&doc)).unwrap();
        assert_eq!(back, doc);
    }

    #[test]
    fn disabled_namespaces_are_left_out() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/ndctl/tests/fixtures/list-idle-disabled.json"
        ))
        .unwrap();
        let doc = document(&vglet_ndctl::parse_regions(&text).unwrap());
        let names: Vec<_> = doc.namespaces.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["vglet-fsdax-region0", "vglet-fsdax-region1"]);
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("pmem.json");
        write_atomic(&out, b"one").unwrap();
        std::fs::write(tmp.path().join(".pmem.json.tmp"), b"stale").unwrap();
        write_atomic(&out, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "two");
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["pmem.json"]);
        assert!(write_atomic(&tmp.path().join("missing/x.json"), b"x").is_err());
    }
}
