//! Every example of the documentation is run as written, checked offline, or says why not
//! (docs/examples.md): the code blocks of every markdown file, with the class their marker
//! comment gives, and the `--help` examples of disk-discover, vg-init, pmem-ns-init,
//! reviver and csi-driver, with the class `HELP` gives (csictl's: help_examples.rs).
//!
//! Host: `every_example_has_a_class` fails on a block or help example without a class;
//! `kubernetes_examples_validate_offline` validates the manifests. Guest: one boot runs
//! every `run`/`serve` example in its world (the worlds are built by `World::build` below,
//! described in docs/examples.md) and asserts exit status, key output and the `check:`
//! commands.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use vglet_e2e::examples::{
    Class, Example, Served, Shell, help_examples, markdown_examples, markdown_files, mismatches,
    parse_marker,
};
use vglet_e2e::{bin, bin_dir, in_guest, run_guest_test, sh};

/// The worlds a block may name (docs/examples.md, "Worlds").
const WORLDS: &[&str] = &["disks", "vg0", "legacy", "pmem", "pmem-labelled", "lockd"];

/// The binaries whose `--help` examples are classified here.
const BINARIES: &[&str] = &[
    "disk-discover",
    "vg-init",
    "pmem-ns-init",
    "reviver",
    "csi-driver",
];

/// Files whose unmarked blocks are not examples: only diagrams (no info string) and Rust
/// outlines are covered; a shell block added there still needs a marker.
const OUTLINES: &[(&str, &str)] = &[(
    "docs/architecture.md",
    "the internal contracts for developers: a diagram and API outlines, no commands",
)];

/// The class of each `--help` example: (binary, example as help_examples() gives it,
/// marker). Each group starts from a clean world, like a markdown file; inside a group the
/// examples run in this order.
const HELP: &[&[(&str, &str, &str)]] = &[
    &[
        (
            "disk-discover",
            "disk-discover --glob '/dev/nvme*n1' --min-size 100Gi --output /run/vglet/inventory.json",
            // The guest has virtio disks only: this proves the flags and the written
            // inventory, not a selection.
            "example: run in disks
             check: jq -e '.version == 1 and .devices == []' /run/vglet/inventory.json",
        ),
        (
            "disk-discover",
            "disk-discover --glob '/dev/disk/by-id/wwn-0x5000c500*' --target-vg vg0 --min-devices 2",
            "example: run in disks
             expect: \"path\": \"/dev/disk/by-id/wwn-0x5000c500aa000001\"
             expect: \"path\": \"/dev/disk/by-id/wwn-0x5000c500aa000002\"",
        ),
        (
            "disk-discover",
            "disk-discover --explain --glob '/dev/sd*' --exclude-glob /dev/sda",
            "example: run in disks
             expect: not matched by any include pattern; holds an ext4 filesystem",
        ),
        (
            "disk-discover",
            "VGLET_DISCOVER_GLOBS='/dev/disk/by-id/nvme-*' VGLET_DISCOVER_EXCLUDE_GLOBS='/dev/disk/by-id/*-part*' VGLET_MIN_SIZE=10G disk-discover",
            "example: run in disks
             expect: \"path\": \"/dev/disk/by-id/nvme-vglet_disk_1\"
             expect: \"path\": \"/dev/disk/by-id/nvme-vglet_disk_2\"",
        ),
    ],
    &[
        (
            "vg-init",
            "disk-discover --glob '/dev/disk/by-id/nvme-*' --target-vg vg0 --output /run/vglet/inventory.json",
            "example: run in disks
             check: jq -e '.devices | length == 2' /run/vglet/inventory.json",
        ),
        (
            "vg-init",
            "vg-init --vg vg0 --inventory /run/vglet/inventory.json --tag team=a",
            "example: run in disks
             check: vgs --noheadings -o vg_tags vg0 | grep -q team=a
             check: vgs --noheadings -o vg_tags vg0 | grep -q vglet.managed=true
             check: test \"$(vgs --noheadings -o pv_count vg0 | tr -d ' ')\" = 2",
        ),
    ],
    // Fresh DIMMs are label-less: the example that labels them goes first, while they are.
    &[(
        "pmem-ns-init",
        "pmem-ns-init --init-labels --use-for-fsdax 100 --output /run/vglet/pmem.json",
        "example: run in pmem
         check: jq -e '[.namespaces[].mode] == [\"fsdax\", \"fsdax\"]' /run/vglet/pmem.json",
    )],
    &[(
        "pmem-ns-init",
        "pmem-ns-init --output /run/vglet/pmem.json",
        "example: run in pmem-labelled
         check: jq -e '[.namespaces[].name] == [\"vglet-fsdax-region0\", \"vglet-fsdax-region1\"]' /run/vglet/pmem.json",
    )],
    &[(
        "pmem-ns-init",
        "pmem-ns-init --use-for-fsdax 70 --use-for-sector 30 --max-namespace-size 256Gi --region region0 --region 1 --output /run/vglet/pmem.json",
        "example: run in pmem-labelled
         check: jq -e '[.namespaces[].mode] | sort == [\"fsdax\", \"fsdax\", \"sector\", \"sector\"]' /run/vglet/pmem.json",
    )],
    &[
        (
            "pmem-ns-init",
            "pmem-ns-init --region region0 --output pmem-r0.json",
            "example: run in pmem-labelled
             check: jq -e '[.namespaces[].region] == [\"region0\"]' pmem-r0.json",
        ),
        (
            "pmem-ns-init",
            "disk-discover --pmem-namespaces pmem-r0.json --pmem-mode fsdax --output inv.json",
            "example: run in pmem-labelled
             check: jq -e '.devices | length == 1' inv.json",
        ),
        (
            "pmem-ns-init",
            "vg-init --vg pmem-fsdax-region0 --inventory inv.json",
            "example: run in pmem-labelled
             check: vgs --noheadings -o vg_tags pmem-fsdax-region0 | grep -q vglet.pmem=fsdax
             check: vgs --noheadings -o vg_tags pmem-fsdax-region0 | grep -q vglet.pmem-region=region0",
        ),
    ],
    &[
        (
            "reviver",
            "reviver --volume-group vg0",
            "example: run in vg0",
        ),
        (
            "reviver",
            "reviver --state-dir /var/lib/vglet/state --json",
            "example: run in vg0
             check: reviver --state-dir /var/lib/vglet/state --json | jq -e .",
        ),
        (
            "reviver",
            "reviver --volume-group vg0 --watch --interval 60s",
            "example: serve in vg0
             ready: grep -q 'pass done' \"$EXAMPLE_LOG\"",
        ),
    ],
    &[(
        "csi-driver",
        "csi-driver --mode all --node-id node1 --volume-group vg0 --endpoint unix:///run/vglet/csi.sock",
        "example: serve in vg0
         ready: csictl --endpoint unix:///run/vglet/csi.sock identity probe",
    )],
    &[(
        "csi-driver",
        "NODE_ID=node1 VGLET_VOLUME_GROUPS=vg0,vg1 csi-driver --mode node",
        "example: serve in vg0
         ready: csictl identity info",
    )],
    // A SAS disk (vdd) with an NVMe disk (vda) as its fast tier: only the NVMe PV is tagged.
    &[(
        "vg-init",
        "vg-init --vg vg0 --device /dev/vdd --fast-device /dev/vda",
        "example: run in disks
         expect: \"action\":\"created\"
         check: pvs --noheadings -o pv_tags /dev/vda | grep -qx ' *vglet.fast'
         check: test -z \"$(pvs --noheadings -o pv_tags /dev/vdd | tr -d ' ')\"
         check: test \"$(vgs --noheadings -o pv_count vg0 | tr -d ' ')\" = 2",
    )],
    // The one host of a shared VG here; two hosts share one: tests/e2e/tests/shared_vg.rs.
    &[(
        "vg-init",
        "vg-init --vg svg --device /dev/mapper/lun1 --shared --lock-type sanlock",
        "example: run in lockd
         expect: \"action\":\"created\"
         check: vgs --noheadings -o vg_lock_type svg | grep -q sanlock
         check: lvmlockctl --info | grep -qx 'LS sanlock lvm_svg'",
    )],
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// One file's blocks, or one `HELP` group: run in order, from a clean world.
struct Group {
    name: String,
    examples: Vec<Example>,
}

fn markdown_groups() -> Vec<Group> {
    let root = repo_root();
    markdown_files(&root)
        .into_iter()
        .map(|rel| {
            let label = rel.display().to_string();
            let text = std::fs::read_to_string(root.join(&rel)).unwrap();
            let mut examples = markdown_examples(&label, &text);
            if let Some((_, why)) = OUTLINES.iter().find(|(f, _)| *f == label) {
                for e in &mut examples {
                    if e.class.is_err() && (e.lang.is_empty() || e.lang == "rust") {
                        e.class = Ok(Class::NotRun(why.to_string()));
                    }
                }
            }
            Group {
                name: label,
                examples,
            }
        })
        .collect()
}

fn help_text(name: &str) -> String {
    let out = Command::new(bin(name)).arg("--help").output().unwrap();
    assert!(out.status.success(), "{name} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The examples each binary's `--help` shows.
fn help_found() -> BTreeMap<String, Vec<String>> {
    BINARIES
        .iter()
        .map(|b| (b.to_string(), help_examples(&help_text(b))))
        .collect()
}

fn help_groups() -> Vec<Group> {
    HELP.iter()
        .map(|g| Group {
            name: format!("{} --help", g[0].0),
            examples: g
                .iter()
                .map(|(b, text, marker)| Example {
                    origin: format!("{b} --help"),
                    lang: String::new(),
                    text: text.to_string(),
                    class: parse_marker(marker),
                })
                .collect(),
        })
        .collect()
}

/// Everything wrong with the classification: blocks without a (valid) class, worlds that do
/// not exist, help examples without an entry in `HELP` and entries whose example is gone.
fn problems(groups: &[Group], help: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut wrong = Vec::new();
    for e in groups.iter().flat_map(|g| &g.examples) {
        match &e.class {
            Err(why) => wrong.push(format!("{}: {why}", e.origin)),
            Ok(c) => {
                if let Some(w) = c.world().filter(|w| !WORLDS.contains(w)) {
                    wrong.push(format!("{}: no world {w:?} (worlds: {WORLDS:?})", e.origin));
                }
            }
        }
    }
    let listed: Vec<(&str, &str)> = HELP
        .iter()
        .flat_map(|g| g.iter())
        .map(|(b, t, _)| (*b, *t))
        .collect();
    for (b, found) in help {
        for f in found {
            if !listed.contains(&(b.as_str(), f.as_str())) {
                wrong.push(format!("{b} --help: no entry in HELP for {f:?}"));
            }
        }
    }
    for (b, t) in listed {
        if !help.get(b).is_some_and(|f| f.iter().any(|x| x == t)) {
            wrong.push(format!("HELP: {b} --help no longer shows {t:?}"));
        }
    }
    wrong
}

fn kind(c: &Class) -> &'static str {
    match c {
        Class::Run { .. } => "run",
        Class::Serve { .. } => "serve",
        Class::OfflineKubernetes => "offline kubernetes",
        Class::NotRun(_) => "not run",
    }
}

#[test]
fn every_example_has_a_class() {
    if in_guest() {
        return;
    }
    let mut groups = markdown_groups();
    let md = groups.iter().map(|g| g.examples.len()).sum::<usize>();
    groups.extend(help_groups());
    let wrong = problems(&groups, &help_found());
    assert!(
        wrong.is_empty(),
        "examples without a class (docs/examples.md says how to give one):\n{}",
        wrong.join("\n")
    );
    let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        let src = if g.name.ends_with("--help") {
            "--help"
        } else {
            "markdown"
        };
        for e in &g.examples {
            *counts
                .entry((src, kind(e.class.as_ref().unwrap())))
                .or_default() += 1;
        }
        let _ = i;
    }
    eprintln!("{md} markdown blocks; by source and class: {counts:?}");
    // The check looks at what matters: the runnable classes are there.
    assert!(
        counts.get(&("markdown", "run")).is_some_and(|n| *n >= 5),
        "{counts:?}"
    );
}

#[test]
fn an_unclassified_block_or_help_example_fails_the_check() {
    if in_guest() {
        return;
    }
    let doc =
        "Intro\n\n```sh\nvg-init --vg vg0\n```\n\n<!-- example: run in mars -->\n```sh\nx\n```\n";
    let mut groups = vec![Group {
        name: "new.md".into(),
        examples: markdown_examples("new.md", doc),
    }];
    groups.extend(help_groups());
    let mut help = help_found();
    help.get_mut("reviver")
        .unwrap()
        .push("reviver --new-flag".into());
    help.get_mut("vg-init")
        .unwrap()
        .retain(|e| !e.contains("team=a"));
    let wrong = problems(&groups, &help);
    for want in [
        "new.md:3: no `<!-- example:",
        "new.md:8: no world \"mars\"",
        "reviver --help: no entry in HELP for \"reviver --new-flag\"",
        "HELP: vg-init --help no longer shows",
    ] {
        assert!(
            wrong.iter().any(|w| w.starts_with(want)),
            "{want}: {wrong:#?}"
        );
    }
    assert_eq!(wrong.len(), 4, "{wrong:#?}");
}

/// Validates `yaml` with util/validate-manifests.sh; Ok(output) when it passes.
fn validate_manifest(name: &str, yaml: &str) -> Result<String, String> {
    let dir = repo_root().join("target/doc-examples");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(repo_root().join("util/validate-manifests.sh"))
        .arg(&file)
        .current_dir(repo_root())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

#[test]
fn kubernetes_examples_validate_offline() {
    if in_guest() {
        return;
    }
    let mut n = 0;
    for e in markdown_groups().iter().flat_map(|g| &g.examples) {
        if e.class != Ok(Class::OfflineKubernetes) {
            continue;
        }
        let name = e.origin.replace(['/', ':'], "_");
        if let Err(out) = validate_manifest(&name, &e.text) {
            panic!("{}: not valid Kubernetes objects:\n{out}", e.origin);
        }
        // The validator is strict: the same block with a misspelt field fails.
        let broken = e.text.replacen("spec:", "spec:\n  nosuchfield: 1", 1);
        assert!(
            validate_manifest(&format!("{name}-broken"), &broken).is_err(),
            "{}: a misspelt field passed",
            e.origin
        );
        n += 1;
    }
    assert!(n > 0, "no offline kubernetes example found");
}

// ---------------------------------------------------------------- guest side

#[test]
fn doc_examples_run_in_guest() {
    if in_guest() {
        return;
    }
    for b in BINARIES.iter().chain(&["csictl"]) {
        bin(b);
    }
    let vm = vglet_vmh::Vm::new("e2e-docs")
        .mem_mib(1536)
        .fresh_disk("d1", 16 << 30)
        .fresh_disk("d2", 16 << 30)
        .fresh_disk("d3", 16 << 30)
        .fresh_disk("d4", 16 << 30)
        .fresh_disk("d5", 16 << 30)
        // 2 GiB: the namespaces must reach disk-discover's default --min-size (1 GiB).
        .fresh_pmem("pm0", 2 << 30)
        .fresh_pmem("pm1", 2 << 30)
        .modules([
            "dm_mod",
            "dm_thin_pool",
            "ext4",
            "xfs",
            "nfit",
            "nd_pmem",
            "nd_btt",
            "dax_pmem",
        ])
        .timeout(Duration::from_secs(900));
    run_guest_test("guest_doc_examples", vm);
}

const WORK: &str = "/tmp/doc-examples";
/// A block still running after this has hung (the longest takes ~10 s).
const BLOCK_LIMIT: Duration = Duration::from_secs(120);
/// The disks a world may write to (vdc keeps its ext4 for good).
const BLANK: &str = "/dev/vda /dev/vdb /dev/vdd /dev/vde";
/// Whether a pmem world was built since the last clean (ndctl is slow: skip it otherwise).
static PMEM_USED: AtomicBool = AtomicBool::new(false);
/// Whether the lock managers run (the `lockd` world).
static LOCKD_USED: AtomicBool = AtomicBool::new(false);

/// The guest's state for one group: what its world provides, and the servers its `serve`
/// blocks started.
struct World {
    name: String,
    served: Vec<(String, Served)>,
}

impl World {
    /// Back to a clean guest (servers stopped by the caller): no mounts of ours, no VG, PV
    /// or signature on the blank disks, no namespace, no files of the stages (every mount of
    /// a /dev node is ours: the guest's own are 9p, overlay and pseudo filesystems). Panics with
    /// what is left when it cannot.
    fn clean() {
        let pmem = PMEM_USED.swap(false, Ordering::Relaxed);
        let lockd = LOCKD_USED.swap(false, Ordering::Relaxed);
        let script = format!(
            "findmnt -rn -o TARGET,SOURCE | awk '$2 ~ \"^/dev/\" {{print $1}}' \
               | sort -r | xargs -r -n1 umount
             vgs=$(vgs --noheadings -o vg_name)
             [ -z \"$vgs\" ] || vgchange -q -an $vgs >/dev/null
             if {lockd}; then
               [ -z \"$vgs\" ] || vgchange -q --lockstop $vgs >/dev/null 2>&1
               lvmlockctl --quit; sanlock shutdown -f 1 >/dev/null
               sed -i '/use_lvmlockd = 1/d' /etc/lvm/lvm.conf; rm -f /etc/lvm/lvmlocal.conf
             fi
             dmsetup remove_all
             wipefs -aq {BLANK}
             if {pmem}; then
               for d in /dev/pmem*; do [ -b \"$d\" ] && wipefs -aq \"$d\"; done
               ndctl disable-namespace all >/dev/null 2>&1
               ndctl destroy-namespace -f all >/dev/null 2>&1 || true
             fi
             rm -rf /run/vglet /var/lib/vglet /var/lib/kubelet /dev/disk
             test -z \"$(vgs --noheadings; pvs --noheadings)\""
        );
        sh(&script);
        let _ = std::fs::remove_dir_all(WORK);
        std::fs::create_dir_all(WORK).unwrap();
    }

    fn build(name: &str) -> World {
        let t = Instant::now();
        Self::clean();
        match name {
            "disks" => Self::disks(),
            "vg0" => {
                Self::disks();
                sh(
                    "pvcreate -q /dev/vda && vgcreate -q vg0 /dev/vda && mkdir -p /var/lib/vglet/state",
                );
            }
            "legacy" => {
                Self::disks();
                sh("pvcreate -q /dev/vda && vgcreate -q vg0 /dev/vda && mkdir -p /var/lib/vglet/state
                    lvcreate -q -y -L 64m -n legacy-data vg0 && mkfs.ext4 -q /dev/vg0/legacy-data");
            }
            "pmem" => {
                PMEM_USED.store(true, Ordering::Relaxed);
                // Zeroed label areas: what fresh DIMMs have.
                sh("ndctl disable-region all >/dev/null 2>&1; ndctl zero-labels all >/dev/null 2>&1
                    ndctl enable-region all >/dev/null 2>&1; mkdir -p /run/vglet");
            }
            "pmem-labelled" => {
                PMEM_USED.store(true, Ordering::Relaxed);
                sh("ndctl disable-region all >/dev/null 2>&1; ndctl init-labels -f all >/dev/null 2>&1
                    ndctl enable-region all >/dev/null 2>&1; mkdir -p /run/vglet");
            }
            "lockd" => {
                Self::disks();
                LOCKD_USED.store(true, Ordering::Relaxed);
                // As host-preparation.md 4.1 has it, with a 2 s sanlock I/O timeout (the
                // default 10 s makes a lockstart take half a minute) and no watchdog.
                sh("set -e
                    sed -i 's/^global {/global {\\n\\tuse_lvmlockd = 1/' /etc/lvm/lvm.conf
                    printf 'local {\\n\\thost_id = 1\\n}\\n' > /etc/lvm/lvmlocal.conf
                    mkdir -p /run/lvm /run/sanlock
                    sanlock daemon -w 0 -U root -G root && lvmlockd -g sanlock -o 2
                    for i in $(seq 150); do lvmlockctl --info >/dev/null 2>&1 && break; sleep 0.2; done
                    lvmlockctl --info >/dev/null
                    dmsetup create lun1 --table \"0 $(blockdev --getsz /dev/vde) linear /dev/vde 0\"
                    dmsetup mknodes lun1  # no udev to make /dev/mapper/lun1
                    ln -s ../../vdd /dev/disk/by-id/wwn-0x600a0b800026b2a2000011a94fd1b6c4");
            }
            other => panic!("no world {other}"),
        }
        eprintln!(
            "--- world {name} built in {:.1}s",
            t.elapsed().as_secs_f64()
        );
        World {
            name: name.to_string(),
            served: Vec::new(),
        }
    }

    /// Two blank NVMe-named disks and one holding ext4, two blank SAS-named ones: the links
    /// udev would make (the guest runs without udev, and has virtio disks only).
    fn disks() {
        sh("mkdir -p /dev/disk/by-id /run/vglet
            cd /dev/disk/by-id
            ln -s ../../vda nvme-vglet_disk_1; ln -s ../../vdb nvme-vglet_disk_2
            ln -s ../../vdc nvme-vglet_disk_3
            ln -s ../../vdd wwn-0x5000c500aa000001; ln -s ../../vde wwn-0x5000c500aa000002
            [ \"$(blkid -o value -s TYPE /dev/vdc)\" = ext4 ] || mkfs.ext4 -q /dev/vdc");
    }

    /// Stops the servers; each must still have been running.
    fn stop(self, failures: &mut Vec<String>) {
        for (origin, mut s) in self.served {
            if !s.running() {
                failures.push(format!(
                    "{origin}: the server exited while the blocks after it ran:\n{}",
                    s.output()
                ));
            }
        }
    }
}

fn guest_shell() -> Shell {
    std::fs::create_dir_all(format!("{WORK}-scratch")).unwrap();
    Shell {
        cwd: PathBuf::from(WORK),
        env: vec![
            (
                "PATH".into(),
                format!(
                    "{}:{}",
                    bin_dir().display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            ),
            ("NODE_NAME".into(), "n1".into()),
        ],
        scratch: PathBuf::from(format!("{WORK}-scratch")),
    }
}

#[test]
#[ignore = "runs inside a guest through doc_examples_run_in_guest"]
fn guest_doc_examples() {
    assert!(in_guest(), "run through doc_examples_run_in_guest");
    let start = Instant::now();
    // lvm.conf gives this host a system ID (host-preparation.md's --system-id auto needs one).
    sh("sed -i 's/^\\s*#\\s*system_id_source = \"none\"/\\tsystem_id_source = \"uname\"/' /etc/lvm/lvm.conf
        test -n \"$(lvm systemid)\"");
    // Markdown first, then the help groups, the lock managers' world last.
    let mut groups = markdown_groups();
    groups.extend(help_groups());
    let shell = guest_shell();
    let mut failures = Vec::new();
    let mut ran = 0;
    for g in &groups {
        let mut world: Option<World> = None;
        for e in &g.examples {
            let Ok(class) = &e.class else { continue };
            let Some(name) = class.world() else { continue };
            if world.as_ref().is_none_or(|w| w.name != name) {
                if let Some(w) = world.take() {
                    w.stop(&mut failures);
                }
                world = Some(World::build(name));
            }
            let w = world.as_mut().unwrap();
            let t = Instant::now();
            eprintln!("\n=== {} ({})\n{}", e.origin, name, e.text.trim_end());
            ran += 1;
            match class {
                Class::Run {
                    exit,
                    expect,
                    check,
                    ..
                } => {
                    let out = shell.run(&e.text, BLOCK_LIMIT);
                    eprintln!(
                        "{}--> exit {} in {:.1}s",
                        out.output,
                        out.code,
                        t.elapsed().as_secs_f64()
                    );
                    let mut wrong = mismatches(&out, *exit, expect);
                    for c in check {
                        let r = shell.run(c, BLOCK_LIMIT);
                        if r.code != 0 {
                            wrong.push(format!(
                                "check `{c}` failed (exit {}): {}",
                                r.code, r.output
                            ));
                        }
                    }
                    if !wrong.is_empty() {
                        failures.push(format!("{}:\n  {}", e.origin, wrong.join("\n  ")));
                    }
                }
                Class::Serve { ready, .. } => match shell.serve(&e.text, ready, BLOCK_LIMIT) {
                    Ok(s) => {
                        eprintln!(
                            "{}--> serving after {:.1}s",
                            s.output(),
                            t.elapsed().as_secs_f64()
                        );
                        w.served.push((e.origin.clone(), s));
                    }
                    Err(why) => failures.push(format!("{}: {why}", e.origin)),
                },
                _ => unreachable!("only run and serve have a world"),
            }
        }
        if let Some(w) = world.take() {
            w.stop(&mut failures);
        }
    }
    World::clean();
    eprintln!(
        "\n{ran} examples run in {:.1}s, {} failed",
        start.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
