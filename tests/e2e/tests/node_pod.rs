//! The node-local pod as operators install it, run for real: the containers of the
//! `vglet-node` DaemonSet, read from `kubectl kustomize deploy/node-local` (image, command,
//! args, env, volume mounts with their propagation, privileges; tests/e2e/node-pod/
//! pod-bundles.py turns them into OCI runtime bundles), run from the images
//! util/build-images.sh built, by crun (Debian's OCI runtime), on virtio disks, with the host
//! paths a kubelet gives them.
//!
//! Boot 1: the init containers disk-discover -> vg-init make and tag the VG, csi-driver serves
//! on the socket in kubelet's plugin directory, and csictl (from the guest's host side, as
//! kubelet would call it) creates, stages and publishes a volume under kubelet's directory;
//! the mounts made inside the container must appear in the host's mount table
//! (Bidirectional propagation), and data written there is checksummed. A raid1 volume
//! shows who monitors what the driver activates: a dmeventd that lvm started inside the
//! container, which dies with it, not the host's, until the host registers the VG's LVs
//! itself (`vgchange --monitor y`, the operator's step in init-containers/README.md). Boot 2 (a reboot on
//! the same disks): nothing is mounted or active; the `vglet-reviver-node-local` container
//! restores the staging and publish mounts and the data is intact; the init containers,
//! run again as on every pod start, find nothing to do and exit 0.
//!
//! kubelet's directory and vglet's state directory live on a small ext4 disk bind-mounted
//! at their real paths in both boots, as they do on a node's root filesystem.

use std::path::Path;
use std::time::{Duration, Instant};

use vglet_e2e::pod::{
    PERSIST, Running, SOCKET, STAGING, TARGET, assert_unmounted, bundles, checksum, csictl,
    persistent_host_paths, prepare, probe_ready, run_to_end, stage_publish, wait_until,
};
use vglet_e2e::{in_guest, lvs, mount_at, sh};

const NODE: &str = "node-a";
const VG: &str = "vg0";

fn vm(name: &str) -> vglet_vmh::Vm {
    vglet_vmh::Vm::new(name)
        .mem_mib(1536)
        .cpus(2)
        .modules(["dm_mod", "dm_raid", "raid1", "ext4"])
        .udev(false)
        .timeout(Duration::from_secs(600))
}

#[test]
fn node_pod_in_guest() {
    if in_guest() || vglet_vmh::skip_vm_tests("node_pod_in_guest") {
        return;
    }
    prepare("node-local", &["vglet-node", "vglet-reviver-node-local"]);
    let w = vglet_vmh::WorkDir::new("node-pod").expect("work dir");
    // disk-discover's default minimum size is 10G: disks of 11 GiB (sparse).
    let d1 = w.sparse_file("d1.img", 11 << 30).unwrap();
    let d2 = w.sparse_file("d2.img", 11 << 30).unwrap();
    let persist = w.sparse_file("persist.img", 128 << 20).unwrap();
    let t = Instant::now();
    vglet_e2e::run_guest_test(
        "guest_node_pod_boot1",
        vm("e2e-node-pod-1").disk(&persist).disk(&d1).disk(&d2),
    );
    let boot1 = t.elapsed();
    let t = Instant::now();
    vglet_e2e::run_guest_test(
        "guest_node_pod_boot2",
        vm("e2e-node-pod-2").disk(&persist).disk(&d1).disk(&d2),
    );
    eprintln!(
        "node pod: first boot {:.1}s, second boot {:.1}s",
        boot1.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
}

/// The node pod's containers, with what an operator sets for this cluster: the device
/// globs (the guest has no udev, so no /dev/disk/by-id).
fn node_pod() -> Vec<serde_json::Value> {
    bundles(
        "node-local",
        "vglet-node",
        NODE,
        &[
            "--env",
            "disk-discover:VGLET_DISCOVER_GLOBS=/dev/vdb,/dev/vdc",
        ],
    )
}

fn step(s: &str) {
    eprintln!("\n=== node pod: {s}");
}

/// kubelet's and vglet's directories on the persistent disk (/dev/vda) at their real
/// paths, as on a node's root filesystem, and what else kubelet and the node's boot provide.
fn host_paths(fresh: bool) {
    persistent_host_paths("/dev/vda", fresh);
}

/// `seg_monitor` of an LV from `lvs` JSON on the host: what the host's dmeventd monitors.
fn seg_monitor(lv: &str) -> String {
    let out = sh(&format!(
        "lvs --reportformat json -o lv_name,seg_monitor {lv}"
    ));
    let v: serde_json::Value = serde_json::from_str(&out).expect("lvs JSON");
    v["report"][0]["lv"][0]["seg_monitor"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Whether a dmeventd runs in another PID namespace than this (the host's): one that lvm
/// started inside a container.
fn dmeventd_in_other_pid_namespace() -> bool {
    let ours = std::fs::read_link("/proc/self/ns/pid").unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "dmeventd")
        })
        .any(|e| std::fs::read_link(e.path().join("ns/pid")).is_ok_and(|ns| ns != ours))
}

fn vg_tags() -> String {
    sh(&format!("vgs --noheadings -o vg_tags {VG}"))
        .trim()
        .to_string()
}

#[test]
#[ignore = "runs inside the QEMU guest through node_pod_in_guest"]
fn guest_node_pod_boot1() {
    assert!(in_guest());
    host_paths(true);
    let pod = node_pod();
    let names: Vec<&str> = pod.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["disk-discover", "vg-init", "csi-driver"],
        "the vglet containers of the rendered DaemonSet, in order"
    );

    step("init containers: disk-discover -> vg-init, from the rendered manifests");
    for c in pod.iter().filter(|c| c["init"] == true) {
        assert_eq!(run_to_end(c), 0, "init container {} failed", c["name"]);
    }
    let pvs = sh(&format!("pvs --noheadings -o pv_name -S vg_name={VG}"));
    let mut pvs: Vec<&str> = pvs.split_whitespace().collect();
    pvs.sort();
    assert_eq!(pvs, ["/dev/vdb", "/dev/vdc"], "the VG's PVs");
    let tags = vg_tags();
    assert!(tags.contains("vglet.managed=true"), "VG tags: {tags}");

    step("csi-driver serves on the socket in kubelet's plugin directory");
    let driver = pod.iter().find(|c| c["name"] == "csi-driver").unwrap();
    let _driver = Running::start(driver);
    wait_until("csi-driver's Probe", Duration::from_secs(120), || {
        probe_ready(SOCKET)
    });

    step("create, stage, publish and write a volume (csictl, as kubelet would)");
    let v = csictl(
        SOCKET,
        &[
            "controller",
            "create",
            "pvc-node-pod",
            "--size",
            "64Mi",
            "--param",
            "volumeGroup=vg0",
            "--fs-type",
            "ext4",
            "--requisite-topology",
            &format!("topology.vglet.io/node={NODE}"),
        ],
    );
    eprintln!("created: {v}");
    let id = v["volume_id"].as_str().expect("volume_id").to_string();
    let lv = id.split_once('/').unwrap().1.to_string();
    assert!(
        lvs(VG)
            .iter()
            .any(|(n, _, tags)| *n == lv && tags.contains("vglet.owner=lvm.vglet.io")),
        "no LV {lv} owned by vglet in {VG}: {:?}",
        lvs(VG)
    );
    stage_publish(&id);
    // The mounts were made in the container's mount namespace; kubelet and the pods see them
    // only through Bidirectional propagation of kubelet's directory.
    let (fs, src, _) = mount_at(Path::new(STAGING)).expect("staging mount in the host's table");
    assert_eq!(fs, "ext4", "staging mount {src}");
    assert!(
        src.contains(&format!("{VG}-{lv}")) || src.contains(&format!("{VG}/{lv}")),
        "staging mount source {src}"
    );
    let (fs, _, _) = mount_at(Path::new(TARGET)).expect("publish mount in the host's table");
    assert_eq!(fs, "ext4");
    sh(&format!(
        "dd if=/dev/urandom of={TARGET}/data bs=1M count=8 status=none && sync"
    ));
    let sum = checksum();
    std::fs::write(format!("{PERSIST}/sum"), format!("{id} {sum}\n")).unwrap();

    step("a raid1 volume: who monitors it (dmeventd; init-containers/README.md, \"dmeventd\")");
    csictl(
        SOCKET,
        &[
            "controller",
            "create",
            "pvc-node-pod-raid1",
            "--size",
            "64Mi",
            "--param",
            "volumeGroup=vg0",
            "--param",
            "type=raid1",
            "--requisite-topology",
            &format!("topology.vglet.io/node={NODE}"),
        ],
    );
    let raid = "vg0/csi-pvc-node-pod-raid1";
    // The host's lvm.conf (mounted over the image's) leaves activation/monitoring at lvm's
    // default, 1: lvm in the container registered the LV with a dmeventd it started in the
    // container (the host's dmeventd FIFOs in /run are not shared), which the host's lvm
    // does not see.
    assert!(
        dmeventd_in_other_pid_namespace(),
        "no dmeventd in the container: {}",
        sh("ps -eo pid,ppid,args")
    );
    assert_eq!(seg_monitor(raid), "not monitored", "on the host");
    // What the operator does on the host (docs): register vglet's LVs with the host's own
    // dmeventd, which outlives every container.
    sh(&format!("vgchange --monitor y {VG}"));
    assert_eq!(
        seg_monitor(raid),
        "monitored",
        "after vgchange --monitor y on the host"
    );
    // A reboot: nothing is unmounted or deactivated; only the page cache is written out.
    drop(_driver);
    assert!(
        !dmeventd_in_other_pid_namespace(),
        "the container's dmeventd outlived its container"
    );
    assert_eq!(
        seg_monitor(raid),
        "monitored",
        "the host's registration once the container is gone"
    );
    sh("sync");
    eprintln!("\nNODE POD BOOT 1: PASSED");
}

#[test]
#[ignore = "runs inside the QEMU guest through node_pod_in_guest"]
fn guest_node_pod_boot2() {
    assert!(in_guest());
    host_paths(false);
    let saved = std::fs::read_to_string(format!("{PERSIST}/sum")).unwrap();
    let (id, sum) = saved.trim().split_once(' ').unwrap();
    let lv = id.split_once('/').unwrap().1;

    step("after the reboot: nothing mounted, nothing active");
    assert_unmounted("after the reboot");
    let active = sh(&format!("lvs --noheadings -o lv_active {VG}/{lv}"));
    assert!(!active.contains("active"), "LV active after boot: {active}");

    step("the reviver container (vglet-reviver-node-local) restores the mounts");
    let reviver = bundles("node-local", "vglet-reviver-node-local", NODE, &[]);
    assert_eq!(reviver.len(), 1, "{reviver:?}");
    {
        // Its manifest runs it with --watch: it keeps running; stop it once the mounts are back.
        let _r = Running::start(&reviver[0]);
        wait_until("the reviver's mounts", Duration::from_secs(180), || {
            mount_at(Path::new(TARGET)).is_some()
        });
    }
    let (fs, src, _) = mount_at(Path::new(STAGING)).expect("staging mount restored");
    assert_eq!(fs, "ext4", "restored staging mount {src}");
    assert!(
        mount_at(Path::new(TARGET)).is_some(),
        "publish mount restored"
    );
    assert_eq!(checksum(), sum, "data differs after the reboot");

    step("the node pod starts again: its init containers find nothing to do");
    let before = vg_tags();
    for c in node_pod().iter().filter(|c| c["init"] == true) {
        assert_eq!(run_to_end(c), 0, "init container {} on restart", c["name"]);
    }
    assert_eq!(vg_tags(), before, "a re-run changed the VG's tags");
    eprintln!("\nNODE POD BOOT 2: PASSED");
}

// PMEM: the vglet-node-pmem DaemonSet (pmem-ns-init first) on an emulated NVDIMM, the same
// chain and reboot. The NVDIMM starts label-less, as a new DIMM does: the manifest's
// pmem-ns-init (--init-labels through VGLET_INIT_LABELS, deploy/settings' pmemInitLabels)
// writes its labels on the first start, and, started again after the reboot with the
// volume mounted on the region, changes nothing.

const PMEM_FSDAX_VG: &str = "pmem-fsdax-region0";

#[test]
fn pmem_node_pod_in_guest() {
    if in_guest() || vglet_vmh::skip_vm_tests("pmem_node_pod_in_guest") {
        return;
    }
    prepare("pmem", &["vglet-node-pmem", "vglet-reviver-pmem"]);
    let w = vglet_vmh::WorkDir::new("pmem-node-pod").expect("work dir");
    let nvdimm = w.sparse_file("pm0.img", 1 << 30).unwrap();
    let persist = w.sparse_file("persist.img", 128 << 20).unwrap();
    let pmem_vm = |name: &str| {
        vglet_vmh::Vm::new(name)
            .mem_mib(1536)
            .cpus(2)
            .pmem(&nvdimm)
            .disk(&persist)
            .modules(["nfit", "nd_pmem", "nd_btt", "dax_pmem", "dm_mod", "ext4"])
            .udev(false)
            .timeout(Duration::from_secs(600))
    };
    vglet_e2e::run_guest_test("guest_pmem_node_pod_boot1", pmem_vm("e2e-pmem-pod-1"));
    vglet_e2e::run_guest_test("guest_pmem_node_pod_boot2", pmem_vm("e2e-pmem-pod-2"));
}

/// The named NVDIMM namespaces (`ndctl list -N` JSON) as (name, mode), sorted.
fn pmem_namespaces() -> Vec<(String, String)> {
    let out = sh("ndctl list -N");
    let v: serde_json::Value = if out.trim().is_empty() {
        serde_json::Value::Array(Vec::new())
    } else {
        serde_json::from_str(&out).expect("ndctl list JSON")
    };
    // One namespace is printed as an object, several as an array.
    let list = match v {
        serde_json::Value::Array(a) => a,
        other => vec![other],
    };
    let mut named: Vec<(String, String)> = list
        .iter()
        .filter_map(|n| {
            let name = n["name"].as_str()?;
            Some((name.to_string(), n["mode"].as_str()?.to_string()))
        })
        .collect();
    named.sort();
    named
}

fn staging_has_dax() -> bool {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    mounts
        .lines()
        .filter(|l| l.split(' ').nth(1) == Some(STAGING))
        .any(|l| {
            l.split(' ')
                .nth(3)
                .unwrap_or("")
                .split(',')
                .any(|o| o == "dax=always")
        })
}

#[test]
#[ignore = "runs inside the QEMU guest through pmem_node_pod_in_guest"]
fn guest_pmem_node_pod_boot1() {
    assert!(in_guest());
    host_paths(true);
    assert!(
        pmem_namespaces().is_empty(),
        "a fresh NVDIMM has no named namespaces (it is label-less): {:?}",
        pmem_namespaces()
    );
    let pod = bundles("pmem", "vglet-node-pmem", NODE, &[]);
    step(
        "init containers: pmem-ns-init (labels the fresh DIMM) -> disk-discover -> vg-init per mode",
    );
    for c in pod.iter().filter(|c| c["init"] == true) {
        assert_eq!(run_to_end(c), 0, "init container {} failed", c["name"]);
    }
    // Names need labels: a label-less region has one unnamed raw namespace.
    assert_eq!(
        pmem_namespaces(),
        [
            ("vglet-fsdax-region0".to_string(), "fsdax".to_string()),
            ("vglet-sector-region0".to_string(), "sector".to_string())
        ],
        "the namespaces pmem-ns-init made after writing the labels"
    );
    for (vg, mode) in [(PMEM_FSDAX_VG, "fsdax"), ("pmem-sector-region0", "sector")] {
        let tags = sh(&format!("vgs --noheadings -o vg_tags {vg}"));
        assert!(
            tags.contains(&format!("vglet.pmem={mode}")),
            "{vg} tags: {tags}"
        );
    }
    let driver = pod.iter().find(|c| c["name"] == "csi-driver").unwrap();
    let _driver = Running::start(driver);
    wait_until("csi-driver's Probe", Duration::from_secs(120), || {
        probe_ready(SOCKET)
    });
    step("an fsdax volume: created, staged with DAX, published, written");
    let v = csictl(
        SOCKET,
        &[
            "controller",
            "create",
            "pvc-node-pod",
            "--size",
            "64Mi",
            "--param",
            "pmemMode=fsdax",
            "--fs-type",
            "ext4",
            "--requisite-topology",
            &format!("topology.vglet.io/node={NODE}"),
        ],
    );
    let id = v["volume_id"].as_str().expect("volume_id").to_string();
    assert!(id.starts_with(&format!("{PMEM_FSDAX_VG}/")), "{id}");
    stage_publish(&id);
    assert!(
        staging_has_dax(),
        "staging mount without dax=always in the host's table"
    );
    assert!(
        mount_at(Path::new(TARGET)).is_some(),
        "publish mount in the host's table"
    );
    sh(&format!(
        "dd if=/dev/urandom of={TARGET}/data bs=1M count=8 status=none && sync"
    ));
    std::fs::write(format!("{PERSIST}/sum"), format!("{id} {}\n", checksum())).unwrap();
    drop(_driver);
    sh("sync");
    eprintln!("\nPMEM NODE POD BOOT 1: PASSED");
}

#[test]
#[ignore = "runs inside the QEMU guest through pmem_node_pod_in_guest"]
fn guest_pmem_node_pod_boot2() {
    assert!(in_guest());
    host_paths(false);
    let saved = std::fs::read_to_string(format!("{PERSIST}/sum")).unwrap();
    let (_, sum) = saved.trim().split_once(' ').unwrap();
    assert_unmounted("after the reboot");
    step("the reviver container (vglet-reviver-pmem) restores the DAX mounts");
    let reviver = bundles("pmem", "vglet-reviver-pmem", NODE, &[]);
    assert_eq!(reviver.len(), 1, "{reviver:?}");
    {
        let _r = Running::start(&reviver[0]);
        wait_until("the reviver's mounts", Duration::from_secs(180), || {
            mount_at(Path::new(TARGET)).is_some()
        });
    }
    assert!(
        staging_has_dax(),
        "restored staging mount without dax=always"
    );
    assert_eq!(checksum(), sum, "data differs after the reboot");

    step("pmem-ns-init starts again (--init-labels) with the volume mounted: changes nothing");
    let before = pmem_namespaces();
    let pod = bundles("pmem", "vglet-node-pmem", NODE, &[]);
    let ns_init = pod
        .iter()
        .find(|c| c["image"] == "pmem-ns-init")
        .expect("the pmem-ns-init container");
    assert_eq!(run_to_end(ns_init), 0, "pmem-ns-init on restart");
    assert_eq!(pmem_namespaces(), before, "a re-run changed the namespaces");
    assert!(
        staging_has_dax(),
        "the staging mount after pmem-ns-init's re-run"
    );
    assert_eq!(checksum(), sum, "data after pmem-ns-init's re-run");
    eprintln!("\nPMEM NODE POD BOOT 2: PASSED");
}
