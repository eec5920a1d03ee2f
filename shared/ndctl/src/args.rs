//! argv builders: every ndctl command vglet runs, as pure functions, so tests can pin the
//! exact arguments. Each argv starts with the ndctl subcommand.

/// Namespace modes vglet creates: the one PMEM mode enum, whose words are also the VG tag's
/// (vglet.pmem=). devdax and raw are never created: neither gives a block device that LVM
/// can use safely.
pub use vglet_lvm::tags::PmemMode;

/// Regions with their namespaces. `-i` includes disabled namespaces: a namespace someone
/// disabled still holds its name and its space, and must not be created a second time.
pub fn list_regions() -> Vec<String> {
    ["list", "--regions", "--namespaces", "--idle"]
        .map(String::from)
        .to_vec()
}

/// Regions with their DIMM mappings: which DIMMs `init-labels` would write to.
pub fn list_region_mappings() -> Vec<String> {
    ["list", "--regions", "--dimms"].map(String::from).to_vec()
}

/// One `create-namespace` request. ndctl prints the new namespace as JSON on stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateNamespace {
    pub region: String,
    pub mode: PmemMode,
    pub name: String,
    /// Bytes; a multiple of the region's alignment.
    pub size: u64,
    /// fsdax page-mapping alignment (`--align`); ndctl's default (2 MiB) when `None`.
    pub align: Option<u64>,
}

pub fn create_namespace(req: &CreateNamespace) -> Vec<String> {
    let mut argv: Vec<String> = [
        "create-namespace",
        "--mode",
        req.mode.as_str(),
        "--name",
        &req.name,
        "--size",
        &req.size.to_string(),
        "--region",
        &req.region,
    ]
    .map(String::from)
    .to_vec();
    if let Some(align) = req.align {
        argv.extend(["--align".to_string(), align.to_string()]);
    }
    argv
}

pub fn disable_namespace(dev: &str) -> Vec<String> {
    vec!["disable-namespace".into(), dev.into()]
}

pub fn disable_region(region: &str) -> Vec<String> {
    vec!["disable-region".into(), region.into()]
}

pub fn enable_region(region: &str) -> Vec<String> {
    vec!["enable-region".into(), region.into()]
}

/// Writes label index blocks. No `--force`: on a DIMM that already has a valid index ndctl
/// then refuses instead of wiping every namespace label on it.
pub fn init_labels(dimms: &[String]) -> Vec<String> {
    let mut argv = vec!["init-labels".to_string()];
    argv.extend(dimms.iter().cloned());
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv() {
        assert_eq!(
            list_regions(),
            ["list", "--regions", "--namespaces", "--idle"]
        );
        assert_eq!(list_region_mappings(), ["list", "--regions", "--dimms"]);
        let req = CreateNamespace {
            region: "region1".into(),
            mode: PmemMode::Sector,
            name: "vglet-sector-region1".into(),
            size: 288 << 20,
            align: None,
        };
        assert_eq!(
            create_namespace(&req),
            [
                "create-namespace",
                "--mode",
                "sector",
                "--name",
                "vglet-sector-region1",
                "--size",
                "301989888",
                "--region",
                "region1"
            ]
        );
        let req = CreateNamespace {
            mode: PmemMode::Fsdax,
            align: Some(2 << 20),
            ..req
        };
        assert_eq!(
            create_namespace(&req)[2..],
            [
                "fsdax",
                "--name",
                "vglet-sector-region1",
                "--size",
                "301989888",
                "--region",
                "region1",
                "--align",
                "2097152"
            ]
        );
        assert_eq!(
            disable_namespace("namespace0.1"),
            ["disable-namespace", "namespace0.1"]
        );
        assert_eq!(disable_region("region0"), ["disable-region", "region0"]);
        assert_eq!(enable_region("region0"), ["enable-region", "region0"]);
        assert_eq!(
            init_labels(&["nmem0".into(), "nmem1".into()]),
            ["init-labels", "nmem0", "nmem1"]
        );
        assert_eq!(PmemMode::parse("sector"), Some(PmemMode::Sector));
        assert_eq!(PmemMode::parse("devdax"), None);
    }
}
