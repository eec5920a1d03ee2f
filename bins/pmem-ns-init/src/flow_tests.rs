//! The whole run against a simulated ndctl (a FakeRunner holding region state), so the
//! exact commands, their order and the exit statuses are pinned.

use std::sync::{Arc, Mutex};

use clap::Parser;
use vglet_ndctl::{Mapping, Namespace, Region};
use vglet_runner::{Command, FakeRunner, Reply};

use super::*;

const MIB: u64 = 1 << 20;
const SIZE: u64 = 1_073_610_752;

#[derive(Debug, Clone)]
struct Sim {
    regions: Vec<Region>,
    /// blkid's answer for every device: exit 2 (nothing) unless set.
    blkid_finds: Option<String>,
    /// create-namespace stderr to fail with, for one region.
    fail_create: Option<(String, String)>,
}

fn region(n: u32, labelled: bool) -> Region {
    Region {
        dev: format!("region{n}"),
        size: SIZE,
        align: Some(16 * MIB),
        available_size: if labelled { 1008 * MIB } else { 0 },
        max_available_extent: Some(if labelled { 1008 * MIB } else { 0 }),
        kind: "pmem".into(),
        iset_id: labelled.then_some(1000 + i64::from(n)),
        persistence_domain: Some("unknown".into()),
        mappings: Vec::new(),
        namespaces: if labelled {
            Vec::new()
        } else {
            vec![Namespace {
                dev: format!("namespace{n}.0"),
                mode: "raw".into(),
                size: SIZE,
                uuid: None,
                name: None,
                blockdev: Some(format!("pmem{n}")),
                sector_size: Some(512),
                align: None,
                map: None,
                state: None,
            }]
        },
    }
}

fn arg<'a>(args: &'a [String], flag: &str) -> &'a str {
    let i = args.iter().position(|a| a == flag).unwrap();
    &args[i + 1]
}

fn handle(sim: &Mutex<Sim>, c: &Command) -> Reply {
    let mut sim = sim.lock().unwrap();
    let args = c.arg_strings();
    if c.program_name() == "blkid" {
        return match &sim.blkid_finds {
            Some(t) => Reply::ok(format!("DEVNAME={}\nTYPE={t}\n", args[3])),
            None => Reply::fail(2, ""),
        };
    }
    match args[0].as_str() {
        "list" if args.contains(&"--dimms".to_string()) => {
            let with_maps: Vec<Region> = sim
                .regions
                .iter()
                .map(|r| {
                    let n = r.number().unwrap();
                    Region {
                        namespaces: Vec::new(),
                        mappings: vec![Mapping {
                            dimm: format!("nmem{n}"),
                            offset: 0,
                            length: SIZE,
                        }],
                        ..r.clone()
                    }
                })
                .collect();
            Reply::ok(serde_json::json!({"dimms": [], "regions": with_maps}).to_string())
        }
        "list" => Reply::ok(serde_json::json!({"regions": sim.regions}).to_string()),
        "disable-region" | "enable-region" => Reply::ok(""),
        "init-labels" => {
            for dimm in &args[1..] {
                let n: u32 = dimm.trim_start_matches("nmem").parse().unwrap();
                let r = sim
                    .regions
                    .iter_mut()
                    .find(|r| r.number() == Some(n.into()))
                    .unwrap();
                *r = region(n, true);
            }
            Reply::ok(format!("initialized {} nmem", args.len() - 1))
        }
        "create-namespace" => {
            let region = arg(&args, "--region").to_string();
            if let Some((r, stderr)) = &sim.fail_create
                && *r == region
            {
                return Reply::fail(237, stderr.clone());
            }
            let size: u64 = arg(&args, "--size").parse().unwrap();
            let mode = arg(&args, "--mode").to_string();
            let name = arg(&args, "--name").to_string();
            let r = sim.regions.iter_mut().find(|r| r.dev == region).unwrap();
            assert!(size <= r.available_size, "simulated ndctl: no space");
            assert_eq!(size % r.align(), 0, "simulated ndctl: misaligned size");
            r.available_size -= size;
            r.max_available_extent = Some(r.available_size);
            let n = r.number().unwrap();
            let id = r.namespaces.len();
            let base = if id == 0 {
                format!("pmem{n}")
            } else {
                format!("pmem{n}.{id}")
            };
            let ns = Namespace {
                dev: format!("namespace{n}.{id}"),
                mode: mode.clone(),
                size: size - size / 64,
                uuid: Some(format!("uuid-{n}-{id}")),
                name: Some(name),
                blockdev: Some(if mode == "sector" {
                    format!("{base}s")
                } else {
                    base
                }),
                sector_size: Some(512),
                align: None,
                map: None,
                state: None,
            };
            r.namespaces.push(ns.clone());
            Reply::ok(serde_json::to_string_pretty(&ns).unwrap())
        }
        other => Reply::fail(1, format!("simulated ndctl: unexpected {other}")),
    }
}

struct World {
    fake: FakeRunner,
    sim: Arc<Mutex<Sim>>,
    host: Host,
    dir: tempfile::TempDir,
}

fn world(regions: Vec<Region>) -> World {
    let sim = Arc::new(Mutex::new(Sim {
        regions,
        blkid_finds: None,
        fail_create: None,
    }));
    let s = sim.clone();
    let fake = FakeRunner::with(move |c| handle(&s, c));
    let runner: Arc<dyn Runner> = Arc::new(fake.clone());
    let dir = tempfile::tempdir().unwrap();
    let host = Host {
        ndctl: Ndctl::with_binary(runner.clone(), "/usr/bin/ndctl".into()),
        runner,
        programs: vglet_runner::Programs::all_in("/usr/sbin"),
        sys_block: dir.path().join("sys-block"),
        progress: false,
    };
    World {
        fake,
        sim,
        host,
        dir,
    }
}

impl World {
    fn cli(&self, args: &[&str]) -> Cli {
        let out = self.dir.path().join("pmem.json");
        let mut argv = vec!["pmem-ns-init", "--output", out.to_str().unwrap()];
        argv.extend_from_slice(args);
        Args::try_parse_from(argv).unwrap().cli
    }

    fn output(&self) -> Option<PmemNamespaces> {
        std::fs::read_to_string(self.dir.path().join("pmem.json"))
            .ok()
            .map(|t| PmemNamespaces::from_json(&t).unwrap())
    }

    /// Non-list commands run so far.
    fn changes(&self) -> Vec<String> {
        self.fake
            .call_lines()
            .into_iter()
            .filter(|l| !l.starts_with("ndctl list"))
            .collect()
    }
}

#[tokio::test]
async fn creates_then_has_nothing_to_do() {
    let w = world(vec![region(1, true), region(0, true)]);
    let cli = w.cli(&["--use-for-fsdax", "70", "--use-for-sector", "30"]);
    let out = run(&cli, &w.host).await.unwrap();
    assert_eq!(out.exit, EXIT_OK);
    assert_eq!(
        w.changes(),
        [
            "ndctl create-namespace --mode fsdax --name vglet-fsdax-region0 --size 738197504 --region region0",
            "ndctl create-namespace --mode sector --name vglet-sector-region0 --size 301989888 --region region0",
            "ndctl create-namespace --mode fsdax --name vglet-fsdax-region1 --size 738197504 --region region1",
            "ndctl create-namespace --mode sector --name vglet-sector-region1 --size 301989888 --region region1",
        ]
    );
    assert_eq!(out.created.len(), 4);
    let doc = w.output().unwrap();
    let got: Vec<_> = doc
        .namespaces
        .iter()
        .map(|n| (n.name.as_str(), n.blockdev.as_str(), n.mode.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("vglet-fsdax-region0", "/dev/pmem0", "fsdax"),
            ("vglet-sector-region0", "/dev/pmem0.1s", "sector"),
            ("vglet-fsdax-region1", "/dev/pmem1", "fsdax"),
            ("vglet-sector-region1", "/dev/pmem1.1s", "sector"),
        ]
    );
    assert_eq!(out.document.as_ref(), Some(&doc));

    let before = w.fake.calls().len();
    let again = run(&cli, &w.host).await.unwrap();
    assert_eq!(again.exit, 4);
    assert!(again.created.is_empty());
    assert_eq!(w.fake.calls().len(), before + 2, "two lists, nothing else");
    assert_eq!(w.output().unwrap(), doc);

    let cli0 = w.cli(&[
        "--use-for-fsdax",
        "70",
        "--use-for-sector",
        "30",
        "--nothing-to-do-exit-code",
        "0",
    ]);
    assert_eq!(run(&cli0, &w.host).await.unwrap().exit, 0);
}

#[tokio::test]
async fn region_filter_and_unknown_regions() {
    let w = world(vec![region(0, true), region(1, true)]);
    let out = run(&w.cli(&["--region", "1"]), &w.host).await.unwrap();
    assert_eq!(out.exit, EXIT_OK);
    assert_eq!(
        w.changes(),
        [
            "ndctl create-namespace --mode fsdax --name vglet-fsdax-region1 --size 1056964608 --region region1"
        ]
    );
    let doc = w.output().unwrap();
    assert_eq!(doc.namespaces.len(), 1);
    assert_eq!(doc.namespaces[0].region, "region1");

    let out = run(&w.cli(&["--region", "region7"]), &w.host)
        .await
        .unwrap();
    assert_eq!(out.exit, EXIT_REFUSED);
    assert!(
        out.notes[0].message.contains("region0, region1"),
        "{:?}",
        out.notes
    );
}

#[tokio::test]
async fn label_less_regions_are_refused_without_init_labels() {
    let w = world(vec![region(0, false)]);
    let out = run(&w.cli(&[]), &w.host).await.unwrap();
    assert_eq!(out.exit, EXIT_REFUSED);
    assert!(w.changes().is_empty());
    assert!(
        out.notes
            .iter()
            .any(|n| n.message.contains("--init-labels"))
    );
    // The (empty) result is still written: disk-discover then simply finds nothing.
    assert!(w.output().unwrap().namespaces.is_empty());
}

#[tokio::test]
async fn init_labels_then_carves() {
    let w = world(vec![region(0, false), region(1, false)]);
    let out = run(
        &w.cli(&[
            "--init-labels",
            "--use-for-fsdax",
            "50",
            "--use-for-sector",
            "50",
        ]),
        &w.host,
    )
    .await
    .unwrap();
    assert_eq!(out.exit, EXIT_OK, "{:?}", out.notes);
    assert_eq!(out.labelled, ["region0", "region1"]);
    let changes = w.changes();
    assert_eq!(
        changes[..4],
        [
            "blkid -p -o export /dev/pmem0",
            "ndctl disable-region region0",
            "ndctl init-labels nmem0",
            "ndctl enable-region region0",
        ]
    );
    assert_eq!(
        changes
            .iter()
            .filter(|c| c.contains("create-namespace"))
            .count(),
        4
    );
    assert_eq!(w.output().unwrap().namespaces.len(), 4);
}

#[tokio::test]
async fn init_labels_is_refused_on_a_region_in_use() {
    let w = world(vec![region(0, false)]);
    w.sim.lock().unwrap().blkid_finds = Some("xfs".into());
    let out = run(&w.cli(&["--init-labels"]), &w.host).await.unwrap();
    assert_eq!(out.exit, EXIT_REFUSED);
    assert_eq!(w.changes(), ["blkid -p -o export /dev/pmem0"]);
    let refusals: Vec<_> = out
        .notes
        .iter()
        .filter(|n| n.severity == Severity::Refused)
        .collect();
    assert_eq!(
        refusals.len(),
        1,
        "one clear message, not two: {refusals:?}"
    );
    assert!(
        refusals[0].message.contains("holds data (TYPE=xfs)"),
        "{}",
        refusals[0].message
    );

    // Configured by hand (not raw) or held by dm: refused before probing.
    let w = world(vec![region(0, false)]);
    w.sim.lock().unwrap().regions[0].namespaces[0].mode = "fsdax".into();
    assert_eq!(
        run(&w.cli(&["--init-labels"]), &w.host).await.unwrap().exit,
        EXIT_REFUSED
    );
    assert!(w.changes().is_empty());
    let w = world(vec![region(0, false)]);
    std::fs::create_dir_all(w.host.sys_block.join("pmem0/holders/dm-0")).unwrap();
    let out = run(&w.cli(&["--init-labels"]), &w.host).await.unwrap();
    assert_eq!(out.exit, EXIT_REFUSED);
    assert!(
        out.notes
            .iter()
            .any(|n| n.message.contains("in use by dm-0"))
    );
    assert!(w.changes().is_empty());
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let w = world(vec![region(0, false), region(1, true)]);
    let out = run(&w.cli(&["--dry-run", "--init-labels"]), &w.host)
        .await
        .unwrap();
    assert_eq!(out.exit, EXIT_OK);
    assert!(out.document.is_none());
    assert!(w.output().is_none());
    assert_eq!(w.changes(), ["blkid -p -o export /dev/pmem0"]);
    assert!(out.notes.iter().any(|n| {
        n.message
            .starts_with("would write label index blocks on nmem0")
    }));
}

#[tokio::test]
async fn a_failed_creation_fails_the_run_but_the_rest_is_done_and_written() {
    let w = world(vec![region(0, true), region(1, true)]);
    w.sim.lock().unwrap().fail_create = Some((
        "region1".into(),
        "  Error: namespace1.0 misaligned to 16M, adjust region alignment and retry\n".into(),
    ));
    let out = run(&w.cli(&[]), &w.host).await.unwrap();
    assert_eq!(out.exit, EXIT_FAILED);
    assert_eq!(out.created, ["vglet-fsdax-region0"]);
    assert_eq!(w.output().unwrap().namespaces.len(), 1);
}

#[tokio::test]
async fn usage_errors() {
    let w = world(vec![region(0, true)]);
    for args in [
        &["--use-for-fsdax", "70", "--use-for-sector", "40"][..],
        &["--region", "namespace0.0"],
        &["--max-namespace-size", "0"],
    ] {
        let e = run(&w.cli(args), &w.host).await.unwrap_err();
        assert!(e.downcast_ref::<UsageError>().is_some(), "{args:?}: {e}");
    }
    assert!(w.fake.calls().is_empty());
}
