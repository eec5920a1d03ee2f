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
//! (Bidirectional propagation), and data written there is checksummed. Boot 2 (a reboot on
//! the same disks): nothing is mounted or active; the `vglet-reviver-node-local` container
//! restores the staging and publish mounts and the data is intact; the init containers,
//! run again as on every pod start, find nothing to do and exit 0.
//!
//! kubelet's directory and vglet's state directory live on a small ext4 disk bind-mounted
//! at their real paths in both boots, as they do on a node's root filesystem.

use std::path::Path;
use std::time::{Duration, Instant};

use vglet_e2e::pod::{
    KUBELET, Running, SOCKET, STAGING, TARGET, bundles, checksum, csictl, kubelet_host, prepare,
    probe_ready, run_to_end, stage_publish, wait_until,
};
use vglet_e2e::{in_guest, lvs, mount_at, sh};

const NODE: &str = "node-a";
const VG: &str = "vg0";
const PERSIST: &str = "/persist";

fn vm(name: &str) -> vglet_vmh::Vm {
    vglet_vmh::Vm::new(name)
        .mem_mib(1536)
        .cpus(2)
        .modules(["dm_mod", "ext4"])
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

/// kubelet's and vglet's directories on the persistent disk at their real paths, as on a
/// node's root filesystem, and what else kubelet and the node's boot provide.
fn host_paths() {
    sh(&format!(
        "mkdir -p {PERSIST} && mount /dev/vda {PERSIST} && mkdir -p {PERSIST}/kubelet {PERSIST}/vglet \
         {KUBELET} /var/lib/vglet && mount --bind {PERSIST}/kubelet {KUBELET} \
         && mount --bind {PERSIST}/vglet /var/lib/vglet"
    ));
    kubelet_host();
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
    sh("mkfs.ext4 -q -L persist /dev/vda");
    host_paths();
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
    // A reboot: nothing is unmounted or deactivated; only the page cache is written out.
    drop(_driver);
    sh("sync");
    eprintln!("\nNODE POD BOOT 1: PASSED");
}

#[test]
#[ignore = "runs inside the QEMU guest through node_pod_in_guest"]
fn guest_node_pod_boot2() {
    assert!(in_guest());
    host_paths();
    let saved = std::fs::read_to_string(format!("{PERSIST}/sum")).unwrap();
    let (id, sum) = saved.trim().split_once(' ').unwrap();
    let lv = id.split_once('/').unwrap().1;

    step("after the reboot: nothing mounted, nothing active");
    assert!(
        mount_at(Path::new(STAGING)).is_none(),
        "staging still mounted"
    );
    assert!(
        mount_at(Path::new(TARGET)).is_none(),
        "target still mounted"
    );
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
// chain and reboot. The NVDIMM is labelled once by hand, as a new DIMM is on a real node
// (the manifest's pmem-ns-init does not pass --init-labels).

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
    sh("mkfs.ext4 -q -L persist /dev/vda");
    host_paths();
    sh("ndctl disable-region all && ndctl init-labels -f all && ndctl enable-region all");
    let pod = bundles("pmem", "vglet-node-pmem", NODE, &[]);
    step("init containers: pmem-ns-init -> disk-discover -> vg-init per mode");
    for c in pod.iter().filter(|c| c["init"] == true) {
        assert_eq!(run_to_end(c), 0, "init container {} failed", c["name"]);
    }
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
    host_paths();
    let saved = std::fs::read_to_string(format!("{PERSIST}/sum")).unwrap();
    let (_, sum) = saved.trim().split_once(' ').unwrap();
    assert!(
        mount_at(Path::new(TARGET)).is_none(),
        "target still mounted"
    );
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
    eprintln!("\nPMEM NODE POD BOOT 2: PASSED");
}
