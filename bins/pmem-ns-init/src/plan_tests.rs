use super::*;

const MIB: u64 = 1 << 20;
/// An emulated 1 GiB NVDIMM: the 128 KiB label area is not part of the region.
const REGION_SIZE: u64 = 1_073_610_752;
const ALIGN: u64 = 16 * MIB;

fn region(n: u32, namespaces: Vec<Namespace>, free: u64) -> Region {
    Region {
        dev: format!("region{n}"),
        size: REGION_SIZE,
        align: Some(ALIGN),
        available_size: free,
        max_available_extent: Some(free),
        kind: "pmem".into(),
        iset_id: Some(1),
        persistence_domain: None,
        mappings: Vec::new(),
        namespaces,
    }
}

fn ns(dev: &str, name: Option<&str>, mode: &str, size: u64) -> Namespace {
    Namespace {
        dev: dev.into(),
        mode: mode.into(),
        size,
        uuid: Some("u".into()),
        name: name.map(String::from),
        blockdev: Some(dev.replace("namespace", "pmem")),
        sector_size: None,
        align: None,
        map: None,
        state: None,
    }
}

fn config(fsdax: u8, sector: u8) -> Config {
    Config {
        fsdax_percent: fsdax,
        sector_percent: sector,
        max_namespace_size: None,
        fsdax_align: None,
    }
}

fn creates(plan: &Plan) -> Vec<(String, &'static str, String, u64)> {
    plan.creates
        .iter()
        .map(|c| (c.region.clone(), c.mode.as_str(), c.name.clone(), c.size))
        .collect()
}

fn warnings(plan: &Plan) -> Vec<&str> {
    plan.notes
        .iter()
        .filter(|n| n.severity >= Severity::Warn)
        .map(|n| n.message.as_str())
        .collect()
}

#[test]
fn names_round_trip() {
    assert_eq!(
        own_name(PmemMode::Fsdax, "region0", None),
        "vglet-fsdax-region0"
    );
    assert_eq!(
        own_name(PmemMode::Sector, "region12", Some(3)),
        "vglet-sector-region12-3"
    );
    assert_eq!(
        parse_own_name("vglet-fsdax-region0"),
        Some((PmemMode::Fsdax, "region0".into(), None))
    );
    assert_eq!(
        parse_own_name("vglet-sector-region12-3"),
        Some((PmemMode::Sector, "region12".into(), Some(3)))
    );
    for foreign in [
        "handmade",
        "vglet-devdax-region0",
        "vglet-fsdax-",
        "vglet-fsdax-region",
        "vglet-fsdax-regionX",
        "vglet-fsdax-region0-",
        "vglet-fsdax-region0-a",
        "vglet-fsdax-region0-1-2",
        "pmem-csi",
    ] {
        assert_eq!(parse_own_name(foreign), None, "{foreign}");
    }
}

#[test]
fn seventy_thirty_on_fresh_labelled_regions() {
    let regions = [region(0, vec![], 1008 * MIB), region(1, vec![], 1008 * MIB)];
    let plan = plan(&regions, &config(70, 30));
    // Capacity 1008 MiB (size rounded down to 16 MiB); 70% = 705.6 -> 704 MiB, 30% = 302.4
    // -> 288 MiB.
    assert_eq!(
        creates(&plan),
        [
            (
                "region0".into(),
                "fsdax",
                "vglet-fsdax-region0".into(),
                704 * MIB
            ),
            (
                "region0".into(),
                "sector",
                "vglet-sector-region0".into(),
                288 * MIB
            ),
            (
                "region1".into(),
                "fsdax",
                "vglet-fsdax-region1".into(),
                704 * MIB
            ),
            (
                "region1".into(),
                "sector",
                "vglet-sector-region1".into(),
                288 * MIB
            ),
        ]
    );
    assert!(warnings(&plan).is_empty(), "{:?}", plan.notes);
    assert!(!plan.refused());
}

#[test]
fn defaults_give_everything_to_fsdax() {
    let plan = plan(&[region(0, vec![], 1008 * MIB)], &config(100, 0));
    assert_eq!(
        creates(&plan),
        [(
            "region0".into(),
            "fsdax",
            "vglet-fsdax-region0".into(),
            1008 * MIB
        )]
    );
}

#[test]
fn rerun_creates_only_what_is_missing() {
    let done = vec![
        ns(
            "namespace0.0",
            Some("vglet-fsdax-region0"),
            "fsdax",
            676 * MIB,
        ),
        ns(
            "namespace0.1",
            Some("vglet-sector-region0"),
            "sector",
            286 * MIB,
        ),
    ];
    let half = vec![ns(
        "namespace1.0",
        Some("vglet-fsdax-region1"),
        "fsdax",
        676 * MIB,
    )];
    let regions = [
        region(0, done, 32 * MIB),
        region(1, half, (1008 - 704) * MIB),
    ];
    let plan = plan(&regions, &config(70, 30));
    assert_eq!(
        creates(&plan),
        [(
            "region1".into(),
            "sector",
            "vglet-sector-region1".into(),
            288 * MIB
        )]
    );
    assert!(
        plan.notes
            .iter()
            .any(|n| n.region == "region0" && n.message == "region0: nothing to create")
    );
}

#[test]
fn foreign_namespaces_take_space_and_are_left_alone() {
    let foreign = vec![
        ns("namespace0.0", Some("handmade"), "fsdax", 62 * MIB),
        ns("namespace0.1", None, "raw", 16 * MIB),
    ];
    // 1008 - 64 - 16 = 928 MiB free: fsdax gets its 704, sector only 224 of its 288.
    let plan = plan(&[region(0, foreign, 928 * MIB)], &config(70, 30));
    assert_eq!(
        creates(&plan),
        [
            (
                "region0".into(),
                "fsdax",
                "vglet-fsdax-region0".into(),
                704 * MIB
            ),
            (
                "region0".into(),
                "sector",
                "vglet-sector-region0".into(),
                224 * MIB
            ),
        ]
    );
    let w = warnings(&plan);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("gets 224 MiB instead of 288 MiB"), "{}", w[0]);
    let infos: Vec<_> = plan.notes.iter().map(|n| n.message.as_str()).collect();
    assert!(
        infos.contains(
            &"leaving foreign namespace namespace0.0 (\"handmade\", fsdax, 62 MiB) alone"
        )
    );
    assert!(infos.contains(&"leaving foreign namespace namespace0.1 (raw, 16 MiB) alone"));
}

#[test]
fn a_full_region_is_a_message_not_a_failure() {
    let foreign = vec![ns("namespace0.0", Some("someone"), "fsdax", 990 * MIB)];
    let plan = plan(&[region(0, foreign, 0)], &config(70, 30));
    assert!(plan.creates.is_empty());
    assert!(!plan.refused());
    let w = warnings(&plan);
    assert_eq!(w.len(), 2);
    assert!(
        w[0].starts_with("region0 is full: no room for vglet-fsdax-region0 (704 MiB planned); 0 B free, other namespaces: namespace0.0 (\"someone\""),
        "{}",
        w[0]
    );
}

#[test]
fn free_space_is_used_in_whole_alignment_units() {
    // 40 MiB free but only 32 usable in 16 MiB units.
    let plan = plan(&[region(0, vec![], 40 * MIB)], &config(100, 0));
    assert_eq!(plan.creates[0].size, 32 * MIB);
}

#[test]
fn cap_splits_a_share_into_indexed_namespaces() {
    let mut cfg = config(70, 30);
    cfg.max_namespace_size = Some(300 * MIB); // rounds down to 288 MiB
    let plan = plan(&[region(0, vec![], 1008 * MIB)], &cfg);
    assert_eq!(
        creates(&plan),
        [
            (
                "region0".into(),
                "fsdax",
                "vglet-fsdax-region0-0".into(),
                288 * MIB
            ),
            (
                "region0".into(),
                "fsdax",
                "vglet-fsdax-region0-1".into(),
                288 * MIB
            ),
            (
                "region0".into(),
                "fsdax",
                "vglet-fsdax-region0-2".into(),
                128 * MIB
            ),
            // 288 MiB fits under the cap: one namespace, no index.
            (
                "region0".into(),
                "sector",
                "vglet-sector-region0".into(),
                288 * MIB
            ),
        ]
    );
    // A re-run after the first two were made creates the third only.
    let made = vec![
        ns(
            "namespace0.0",
            Some("vglet-fsdax-region0-0"),
            "fsdax",
            280 * MIB,
        ),
        ns(
            "namespace0.1",
            Some("vglet-fsdax-region0-1"),
            "fsdax",
            280 * MIB,
        ),
    ];
    let plan2 = super::plan(&[region(0, made, 432 * MIB)], &cfg);
    let names: Vec<_> = plan2.creates.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["vglet-fsdax-region0-2", "vglet-sector-region0"]);
}

#[test]
fn a_changed_layout_adds_nothing_and_says_why() {
    let mut cfg = config(70, 0);
    cfg.max_namespace_size = Some(256 * MIB);
    let old = vec![ns(
        "namespace0.0",
        Some("vglet-fsdax-region0"),
        "fsdax",
        676 * MIB,
    )];
    let plan = plan(&[region(0, old, 320 * MIB)], &cfg);
    assert!(plan.creates.is_empty());
    let w = warnings(&plan);
    assert_eq!(w.len(), 1);
    assert!(
        w[0].contains("already has vglet-fsdax-region0, laid out with other"),
        "{}",
        w[0]
    );
}

#[test]
fn label_less_regions_are_refused_with_the_way_out() {
    let mut r = region(0, vec![ns("namespace0.0", None, "raw", REGION_SIZE)], 0);
    r.iset_id = None;
    let plan = plan(&[r], &config(70, 30));
    assert!(plan.creates.is_empty());
    assert!(plan.refused());
    let msg = &plan.notes[0].message;
    assert!(msg.starts_with("region0 is label-less"), "{msg}");
    assert!(msg.contains("namespace0.0 (raw, 1023.9 MiB)"), "{msg}");
    assert!(msg.contains("--init-labels"), "{msg}");
}

#[test]
fn impossible_settings_and_other_region_types() {
    let mut cfg = config(100, 0);
    cfg.max_namespace_size = Some(8 * MIB);
    let plan1 = plan(&[region(0, vec![], 1008 * MIB)], &cfg);
    assert!(plan1.refused());
    assert!(plan1.creates.is_empty());

    // 1% of 1008 MiB is 10 MiB: below the alignment.
    let plan2 = plan(&[region(0, vec![], 1008 * MIB)], &config(99, 1));
    assert_eq!(plan2.creates.len(), 1);
    assert!(warnings(&plan2)[0].contains("1% of region0"));

    let mut blk = region(3, vec![], 1008 * MIB);
    blk.kind = "blk".into();
    let plan3 = plan(&[blk], &config(100, 0));
    assert!(plan3.creates.is_empty() && !plan3.refused());
}

#[test]
fn fsdax_align_goes_to_fsdax_only_and_own_names_need_their_region() {
    let mut cfg = config(50, 50);
    cfg.fsdax_align = Some(2 * MIB);
    // A namespace named for region1 inside region0 is not ours there.
    let odd = vec![ns(
        "namespace0.0",
        Some("vglet-fsdax-region1"),
        "fsdax",
        16 * MIB,
    )];
    let plan = plan(&[region(0, odd, 992 * MIB)], &cfg);
    assert_eq!(plan.creates[0].align, Some(2 * MIB));
    assert_eq!(plan.creates[1].align, None);
    assert_eq!(plan.creates[0].name, "vglet-fsdax-region0");
    assert!(plan.notes.iter().any(|n| {
        n.message
            .starts_with("leaving foreign namespace namespace0.0")
    }));
}

#[test]
fn disabled_and_mode_changed_own_namespaces_are_kept_and_reported() {
    let mut disabled = ns(
        "namespace0.1",
        Some("vglet-sector-region0"),
        "raw",
        288 * MIB,
    );
    disabled.state = Some("disabled".into());
    disabled.blockdev = None;
    let changed = ns(
        "namespace0.0",
        Some("vglet-fsdax-region0"),
        "devdax",
        688 * MIB,
    );
    let plan = plan(
        &[region(0, vec![changed, disabled], 32 * MIB)],
        &config(70, 30),
    );
    assert!(plan.creates.is_empty());
    let w = warnings(&plan);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].contains("is in devdax mode"));
    assert!(w[1].contains("is disabled"));
}
