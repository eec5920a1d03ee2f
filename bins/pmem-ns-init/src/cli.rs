//! pmem-ns-init's flags; every one has an environment variable so an init container can be
//! configured without args.

use std::path::PathBuf;

pub const AFTER_HELP: &str = "\
Examples:
  # Everything as fsdax (the default), result for disk-discover:
  pmem-ns-init --output /run/vglet/pmem.json

  # 70% fsdax, 30% sector, no namespace above 256 GiB, regions 0 and 1 only:
  pmem-ns-init --use-for-fsdax 70 --use-for-sector 30 --max-namespace-size 256Gi \\
      --region region0 --region 1 --output /run/vglet/pmem.json

  # Fresh DIMMs come up label-less; write label index blocks first (only while the
  # label-less namespace is unused), then carve:
  pmem-ns-init --init-labels --use-for-fsdax 100 --output /run/vglet/pmem.json

  # The chain to one VG per region and mode (vg-init tags the VG vglet.pmem=fsdax and
  # vglet.pmem-region=region0 from the inventory; csi-driver picks it by pmemMode):
  pmem-ns-init --region region0 --output pmem-r0.json
  disk-discover --pmem-namespaces pmem-r0.json --pmem-mode fsdax --output inv.json
  vg-init --vg pmem-fsdax-region0 --inventory inv.json

Layout:
  Each region's capacity (its size rounded down to its alignment, 16 MiB on most
  platforms) is shared out by percent: fsdax first, then sector. Shares are rounded down
  to the alignment and the rest stays free. Namespaces are named vglet-<mode>-<region>,
  or vglet-<mode>-<region>-<i> when --max-namespace-size splits a share; only those are
  ever considered ours. Foreign namespaces are left alone: they only take space, and a
  share that no longer fits gets what is free (with a warning).
  Idempotent: a re-run creates only what is missing. Nothing is ever resized or destroyed;
  a namespace laid out with other settings is kept and reported.

Output:
  The namespaces of ours in the selected regions (JSON, version 1: name, dev, blockdev,
  region, mode, size_bytes) go to --output, written atomically, or to stdout. It is
  written after every run that could list the regions, so disk-discover sees what
  exists even when some step failed.

Exit status:
  0 something was created (or labels written), 1 failed, 2 usage error, 3 refused
  (label-less region without --init-labels, --init-labels on a region in use,
  impossible settings), 4 nothing to do (--nothing-to-do-exit-code).";

#[derive(Debug, Clone, clap::Args)]
pub struct Cli {
    /// Percent of each region's capacity to use for fsdax namespaces (DAX-capable).
    #[arg(long, value_name = "PCT", env = "VGLET_USE_FOR_FSDAX", default_value_t = 100,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    pub use_for_fsdax: u8,

    /// Percent of each region's capacity to use for sector namespaces (BTT: atomic sector
    /// updates, no DAX).
    #[arg(long, value_name = "PCT", env = "VGLET_USE_FOR_SECTOR", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    pub use_for_sector: u8,

    /// Split a mode's share into namespaces of at most SIZE (rounded down to the region's
    /// alignment). Bytes or a suffix: Ki Mi Gi Ti (1024) or k M G T (1000).
    #[arg(long, value_name = "SIZE", env = "VGLET_MAX_NAMESPACE_SIZE", value_parser = parse_size_arg)]
    pub max_namespace_size: Option<u64>,

    /// Only this region (`region0` or `0`; repeatable; env: comma-separated). Default: all.
    #[arg(
        long = "region",
        value_name = "REGION",
        env = "VGLET_PMEM_REGIONS",
        value_delimiter = ','
    )]
    pub regions: Vec<String>,

    /// Write label index blocks on the DIMMs of label-less regions so they can be divided.
    /// Destroys the region's label-less namespace: refused while it is in use (not raw
    /// mode, holds any signature, or something is built on it) or when a DIMM also
    /// backs another region.
    #[arg(long, env = "VGLET_INIT_LABELS")]
    pub init_labels: bool,

    /// fsdax page-mapping alignment passed to ndctl (--align); ndctl's default is 2 MiB.
    #[arg(long, value_name = "SIZE", env = "VGLET_FSDAX_ALIGN", value_parser = parse_size_arg)]
    pub fsdax_align: Option<u64>,

    /// Write the result (PmemNamespaces JSON) to FILE, atomically, instead of stdout.
    #[arg(long, value_name = "FILE", env = "VGLET_PMEM_OUTPUT")]
    pub output: Option<PathBuf>,

    /// Print what would be done and change nothing (no output file either).
    #[arg(long, env = "VGLET_DRY_RUN")]
    pub dry_run: bool,

    /// Exit status when everything already exists.
    #[arg(long, env = "VGLET_NOTHING_TO_DO_EXIT_CODE", default_value_t = 4,
          value_parser = clap::value_parser!(u8))]
    pub nothing_to_do_exit_code: u8,

    /// Path of the ndctl binary (resolved in the usual sbin/bin directories by default).
    #[arg(long, value_name = "PATH", env = "VGLET_NDCTL")]
    pub ndctl: Option<PathBuf>,
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    vglet_devices::parse_size(s)
}

/// `region0` or `0` → `region0`.
pub fn normalise_region(s: &str) -> Result<String, String> {
    let s = s.trim();
    let number = s.strip_prefix("region").unwrap_or(s);
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "--region {s:?}: expected a region name like region0 (or its number)"
        ));
    }
    Ok(format!("region{number}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Args;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("pmem-ns-init").chain(args.iter().copied()))
    }

    #[test]
    fn flags_parse_with_defaults() {
        let a = parse(&[]).unwrap().cli;
        assert_eq!((a.use_for_fsdax, a.use_for_sector), (100, 0));
        assert_eq!(a.max_namespace_size, None);
        assert!(!a.init_labels && !a.dry_run);
        assert_eq!(a.nothing_to_do_exit_code, 4);
        let a = parse(&[
            "--use-for-fsdax",
            "70",
            "--use-for-sector",
            "30",
            "--max-namespace-size",
            "256Gi",
            "--region",
            "region0",
            "--region",
            "1",
            "--init-labels",
            "--output",
            "/run/x.json",
            "--dry-run",
            "--nothing-to-do-exit-code",
            "0",
        ])
        .unwrap()
        .cli;
        assert_eq!((a.use_for_fsdax, a.use_for_sector), (70, 30));
        assert_eq!(a.max_namespace_size, Some(256 << 30));
        assert_eq!(a.regions, ["region0", "1"]);
        assert!(a.init_labels && a.dry_run);
        assert_eq!(a.nothing_to_do_exit_code, 0);
        assert!(parse(&["--use-for-fsdax", "101"]).is_err());
        assert!(parse(&["--use-for-sector", "-1"]).is_err());
        assert!(parse(&["--max-namespace-size", "lots"]).is_err());
    }

    #[test]
    fn regions_normalise() {
        assert_eq!(normalise_region("region3").unwrap(), "region3");
        assert_eq!(normalise_region(" 12 ").unwrap(), "region12");
        for bad in ["", "region", "regionX", "namespace0.0", "r1"] {
            assert!(normalise_region(bad).is_err(), "{bad:?}");
        }
    }
}
