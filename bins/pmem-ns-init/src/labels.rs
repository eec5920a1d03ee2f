//! `--init-labels`: turning a label-less region into one that can be divided.
//!
//! Writing label index blocks makes the kernel drop the region's label-less namespace (the
//! data stays on the media but is no longer reachable as that device). So it is done only
//! when that namespace is demonstrably unused, and only on DIMMs that back no other
//! region, since an index block covers the whole DIMM.

use std::path::Path;

use vglet_ndctl::Region;

use crate::Host;

/// The DIMMs to initialise, or why not.
pub async fn check(
    region: &Region,
    mappings: &[Region],
    host: &Host,
) -> Result<Vec<String>, String> {
    for ns in region.real_namespaces() {
        if ns.mode != "raw" {
            return Err(format!(
                "its label-less namespace {} is in {} mode: someone set it up, and writing \
                 labels would drop it; convert or empty it by hand first",
                ns.dev, ns.mode
            ));
        }
        let Some(bd) = ns.blockdev.as_deref().filter(|b| !b.is_empty()) else {
            continue;
        };
        let holders = host.sys_block.join(bd).join("holders");
        if let Some(h) = first_entry(&holders) {
            return Err(format!(
                "/dev/{bd} (its label-less namespace {}) is in use by {h}",
                ns.dev
            ));
        }
        if let Some(sig) = signature(host, bd).await? {
            return Err(format!(
                "/dev/{bd} (its label-less namespace {}) holds data ({sig}); wipe it by hand \
                 if it is not needed",
                ns.dev
            ));
        }
    }
    let dimms: Vec<String> = mappings
        .iter()
        .find(|m| m.dev == region.dev)
        .map(|m| m.mappings.iter().map(|d| d.dimm.clone()).collect())
        .unwrap_or_default();
    if dimms.is_empty() {
        return Err(
            "ndctl lists no DIMMs for it (no mappings): cannot tell what to initialise".into(),
        );
    }
    for other in mappings.iter().filter(|m| m.dev != region.dev) {
        if let Some(shared) = other.mappings.iter().find(|d| dimms.contains(&d.dimm)) {
            return Err(format!(
                "DIMM {} also backs {}, whose namespaces labels would destroy",
                shared.dimm, other.dev
            ));
        }
    }
    Ok(dimms)
}

fn first_entry(dir: &Path) -> Option<String> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
}

/// `Some("TYPE=xfs")` when blkid finds any signature; blkid exits 2 when there is none.
async fn signature(host: &Host, bd: &str) -> Result<Option<String>, String> {
    let dev = format!("/dev/{bd}");
    let blkid = host
        .programs
        .command(vglet_runner::Program::Blkid)
        .map_err(|e| format!("cannot probe {dev} for data: {e}"))?;
    let out = host
        .runner
        .run_unchecked(blkid.args(["-p", "-o", "export", &dev]))
        .await
        .map_err(|e| format!("cannot probe {dev} for data: {e}"))?;
    match out.code {
        Some(2) => Ok(None),
        Some(0) => {
            let text = out.stdout_lossy();
            let kind = text
                .lines()
                .find(|l| l.starts_with("TYPE=") || l.starts_with("PTTYPE="))
                .unwrap_or("a signature")
                .to_string();
            Ok(Some(kind))
        }
        _ => Err(format!(
            "cannot probe {dev} for data (blkid exit {:?}): {}",
            out.code,
            out.stderr_lossy().trim()
        )),
    }
}

/// How the region will look once labelled, for a dry run's plan.
pub fn as_labelled(region: &Region) -> Region {
    let capacity = region.size - region.size % region.align();
    Region {
        iset_id: Some(0),
        available_size: capacity,
        max_available_extent: Some(capacity),
        namespaces: Vec::new(),
        ..region.clone()
    }
}
