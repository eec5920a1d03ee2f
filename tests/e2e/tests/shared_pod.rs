//! The shared (lvmlockd + sanlock) model as operators install it, run for real on two hosts
//! that see one LUN: two QEMU guests share one raw disk, and on each the containers of the
//! `vglet-shared-node` DaemonSet, and on host a also those of the `vglet-controller`
//! Deployment, are read from `kubectl kustomize deploy/shared` (vglet_e2e::pod,
//! tests/e2e/node-pod/pod-bundles.py) and run by crun from the images util/build-images.sh
//! built. What the manifests leave to the host (deploy/README.md, "Shared VGs";
//! docs/host-preparation.md, 4.1-4.2) is done on each guest's host side: sanlock and
//! lvmlockd run as host daemons with `use_lvmlockd = 1` and a host_id of their own, and host
//! a creates the VG once by hand (`vgcreate --shared`).
//!
//! Then: the `vg-init` init container joins each host to the VG (lockstart, the host tag
//! that names the node), the node plugins serve in kubelet's plugin directory, the
//! controller's csi-driver on its pod's socket. csictl, from each guest's host side as
//! kubelet and the provisioner would call them: a volume is created by the controller,
//! staged, published and written on a (checksum); b's NodeStage is refused with
//! FAILED_PRECONDITION naming node host-a; a unpublishes and unstages; b stages it and reads
//! the same checksum; the controller's DeleteVolume is refused with FAILED_PRECONDITION
//! naming node host-b while b holds the LV lock, and succeeds once b has unstaged.

use std::path::Path;
use std::time::{Duration, Instant};

use vglet_e2e::pod::{
    Running, SOCKET, STAGING, TARGET, bundles, checksum, container, csictl, csictl_refused,
    kubelet_host, names, prepare, probe_ready, run_init, stage_publish, wait_until, work,
};
use vglet_e2e::two_hosts::{Sync, start_sanlock_lvmlockd};
use vglet_e2e::{in_guest, lvs, mount_at, sh};

/// The VG name of deploy/settings/settings.yaml (`sharedVG`).
const VG: &str = "vgshared";
const MODEL: &str = "shared";
const NODE_DS: &str = "vglet-shared-node";
const CONTROLLER: &str = "vglet-controller";

#[test]
fn shared_pod_two_hosts() {
    if in_guest() || vglet_vmh::skip_vm_tests("shared_pod_two_hosts") {
        return;
    }
    prepare(MODEL, &[NODE_DS, CONTROLLER]);
    vglet_e2e::bin("csictl");
    let w = vglet_vmh::WorkDir::new("shared-pod").expect("work dir");
    // Not on tmpfs: the shared disk is opened with O_DIRECT (cache=none).
    let disk = w.sparse_file("shared.img", 2 << 30).expect("shared disk");
    let sync = w.subdir("sync").expect("sync dir");
    let cmd = vglet_vmh::test_command("guest_shared_pod").expect("test command");
    let guest = |role: &str| {
        vglet_vmh::Vm::new(format!("host-{role}"))
            .mem_mib(1024)
            .cpus(1)
            .shared_disk(&disk)
            .share_dir(&sync)
            // lockstart on the second host needs udev on the host (tests/harness/README.md).
            .udev(true)
            .modules(["dm_mod", "ext4"])
            .env("VGLET_ROLE", role)
            .env("VGLET_SYNC", sync.display().to_string())
            .timeout(Duration::from_secs(900))
    };
    let start = Instant::now();
    let a = guest("a").spawn(&cmd).expect("start guest a");
    let b = guest("b").spawn(&cmd).expect("start guest b");
    let ra = a.wait();
    let rb = b.wait();
    for role in ["a", "b"] {
        if let Ok(t) = std::fs::read_to_string(sync.join(format!("timings-{role}"))) {
            eprintln!("timings of host {role}:\n{t}");
        }
    }
    eprintln!(
        "shared pod, two hosts: {:.0}s wall",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(ra.expect("guest a ran").exit_code, 0, "host a failed");
    assert_eq!(rb.expect("guest b ran").exit_code, 0, "host b failed");
    assert!(sync.join("a-PASS").exists() && sync.join("b-PASS").exists());
}

fn step(role: &str, s: &str) {
    eprintln!("\n=== shared pod, host {role}: {s}");
}

fn node_name(role: &str) -> String {
    format!("host-{role}")
}

/// The controller pod's socket: its emptyDir, which pod-bundles.py makes under the model's
/// work directory.
fn controller_socket() -> String {
    work(MODEL)
        .join(CONTROLLER)
        .join("emptydir/socket-dir/csi.sock")
        .display()
        .to_string()
}

fn vg_field(field: &str) -> String {
    sh(&format!("vgs --noheadings -o {field} {VG}"))
        .trim()
        .to_string()
}

/// lv_attr's fifth character is `a` while the LV is active on this host.
fn active_here(id: &str) -> bool {
    sh(&format!("lvs --noheadings -o lv_attr {id}"))
        .trim()
        .chars()
        .nth(4)
        == Some('a')
}

/// The staging mount is ext4 on the volume's LV, and the publish mount exists, in the host's
/// mount table: made inside the node plugin's container, they reach the host only through
/// Bidirectional propagation of kubelet's directory.
fn assert_mounted(id: &str) {
    let lv = id.split_once('/').unwrap().1;
    let (fs, src, _) = mount_at(Path::new(STAGING)).expect("staging mount in the host's table");
    assert_eq!(fs, "ext4", "staging mount {src}");
    assert!(
        src.contains(&format!("{VG}-{lv}")) || src.contains(&format!("{VG}/{lv}")),
        "staging mount source {src}"
    );
    let (fs, _, _) = mount_at(Path::new(TARGET)).expect("publish mount in the host's table");
    assert_eq!(fs, "ext4");
}

fn unpublish_unstage(id: &str) {
    csictl(SOCKET, &["node", "unpublish", id, "--target-path", TARGET]);
    csictl(SOCKET, &["node", "unstage", id, "--staging-path", STAGING]);
    assert!(
        mount_at(Path::new(TARGET)).is_none(),
        "target still mounted"
    );
    assert!(
        mount_at(Path::new(STAGING)).is_none(),
        "staging still mounted"
    );
    assert!(!active_here(id), "unstage releases the LV (and its lock)");
}

#[test]
#[ignore = "runs inside two QEMU guests through shared_pod_two_hosts"]
fn guest_shared_pod() {
    assert!(in_guest(), "run through shared_pod_two_hosts");
    let mut s = Sync::from_env();
    let role = s.role.clone();
    let node = node_name(&role);
    let host_id = if role == "a" { 1 } else { 2 };

    step(
        &role,
        "host services: sanlock + lvmlockd, kubelet's directories",
    );
    s.time("sanlock + lvmlockd up (host)", || {
        start_sanlock_lvmlockd(host_id)
    });
    // kubelet's directory as its own mount, as in node_pod.rs (there on a disk of its own).
    // As a plain directory of the guest's root (an overlay), the staging and publish mounts
    // made in the node plugin's container did not reach the host's mount table.
    sh("mkdir -p /var/lib/kubelet && mount --bind /var/lib/kubelet /var/lib/kubelet");
    kubelet_host();
    if role == "a" {
        // docs/host-preparation.md 4.2: the VG is made once, by hand, on one host.
        s.time("vgcreate --shared (host a, by hand)", || {
            sh(&format!(
                "vgcreate --shared --locktype sanlock {VG} /dev/vda"
            ))
        });
        s.signal("a-vg");
    } else {
        s.wait("a-vg");
    }

    step(&role, "the node pod's init container vg-init joins the VG");
    let pod = bundles(MODEL, NODE_DS, &node, &[]);
    assert_eq!(
        names(&pod),
        ["vg-init", "csi-driver"],
        "the vglet containers of the rendered DaemonSet, in order"
    );
    let t = Instant::now();
    // A host whose lvmlock LV is not active yet (b here; every host after a reboot) fails
    // its first lockstart in a container: lvm activates the LV without udev, so its
    // /dev/mapper node appears only when the command ends, after lvmlockd has already
    // looked for it ("prepare_lockspace_san stat error 2": "invalid parameters for
    // sanlock"). kubelet restarts the init container; the second run finds the node.
    let vg_init = container(&pod, "vg-init");
    let runs = run_init(vg_init, 3, |_| {
        let dump = sh("lvmlockctl --dump 2>&1 | grep -E 'stat error|prepare_lockspace' || true");
        eprintln!("lvmlockd after the failed lockstart:\n{dump}");
    });
    s.record(
        &format!("vg-init container (lockstart, host tag): {runs} run(s)"),
        t.elapsed(),
    );
    assert_eq!(vg_field("vg_lock_type"), "sanlock");
    let tags = vg_field("vg_tags");
    assert!(
        tags.contains(&format!("vglet.sanlock-host.{host_id}={node}")),
        "VG tags: {tags}"
    );
    let ls = sh("lvmlockctl --info");
    assert!(ls.contains(&format!("lvm_{VG}")), "lockspace: {ls}");

    step(
        &role,
        "csi-driver serves (node plugin; on a also the controller)",
    );
    let _driver = Running::start(container(&pod, "csi-driver"));
    let _controller = (role == "a").then(|| {
        let ctl = bundles(MODEL, CONTROLLER, &node, &[]);
        assert_eq!(
            names(&ctl),
            ["csi-driver"],
            "the controller's vglet container"
        );
        Running::start(&ctl[0])
    });
    let t = Instant::now();
    wait_until("the node plugin's Probe", Duration::from_secs(120), || {
        probe_ready(SOCKET)
    });
    if role == "a" {
        wait_until("the controller's Probe", Duration::from_secs(120), || {
            probe_ready(&controller_socket())
        });
    }
    s.record("csi-driver container(s) ready", t.elapsed());
    let info = csictl(SOCKET, &["node", "info"]);
    assert!(
        info.to_string().contains(&format!("vg.vglet.io/{VG}")),
        "node info: {info}"
    );
    s.signal(&format!("{role}-serving"));

    let steps = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if role == "a" {
            s.wait("b-serving");
            a_steps(&mut s);
        } else {
            b_steps(&mut s);
        }
    }));
    if let Err(e) = steps {
        // The lock managers' own accounts of what failed (their logs go nowhere else here).
        eprintln!(
            "lvmlockd on host {role}:\n{}\nsanlock on host {role}:\n{}\nkubelet's mounts:\n{}",
            sh("lvmlockctl --dump 2>&1 | tail -60 || true"),
            sh("sanlock client log_dump 2>&1 | tail -40 || true"),
            sh("grep kubelet /proc/self/mountinfo || true")
        );
        std::panic::resume_unwind(e);
    }
    s.signal(&format!("{role}-PASS"));
    eprintln!("\nSHARED POD (host {role}): PASSED");
}

fn a_steps(s: &mut Sync) {
    let ctl = controller_socket();
    step(
        "a",
        "the controller creates a volume; a stages, publishes, writes",
    );
    let v = s.time("CreateVolume (controller container)", || {
        csictl(
            &ctl,
            &[
                "controller",
                "create",
                "pvc-shared-pod",
                "--size",
                "64Mi",
                "--param",
                &format!("volumeGroup={VG}"),
                "--fs-type",
                "ext4",
            ],
        )
    });
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
    assert!(!active_here(&id), "a new shared LV is left inactive");
    s.time("NodeStage + NodePublish on a", || stage_publish(&id));
    assert_mounted(&id);
    assert!(active_here(&id));
    sh(&format!(
        "dd if=/dev/urandom of={TARGET}/data bs=1M count=8 status=none && sync"
    ));
    let sum = checksum();
    s.signal_value("a-holds", &format!("{id} {sum}"));

    s.wait("b-refused");
    step("a", "unpublish, unstage: the LV lock is released");
    unpublish_unstage(&id);
    s.signal("a-released");

    s.wait("b-holds");
    step(
        "a",
        "DeleteVolume while b holds the LV: refused, naming host-b",
    );
    let (code, msg) = csictl_refused(&ctl, &["controller", "delete", &id]);
    assert_eq!(code, "FAILED_PRECONDITION", "{msg}");
    assert!(
        msg.contains("node host-b (sanlock host_id 2)"),
        "the refusal names the holder: {msg}"
    );
    assert!(
        lvs(VG).iter().any(|(n, _, _)| *n == lv),
        "the refused DeleteVolume removed the LV"
    );
    s.signal("a-delete-refused");

    s.wait("b-released");
    step("a", "DeleteVolume once b has unstaged");
    csictl(&ctl, &["controller", "delete", &id]);
    assert!(
        !lvs(VG).iter().any(|(n, _, _)| *n == lv),
        "LV {lv} still there: {:?}",
        lvs(VG)
    );
}

fn b_steps(s: &mut Sync) {
    let held = s.wait("a-holds");
    let (id, sum) = held.split_once(' ').unwrap();
    step(
        "b",
        "NodeStage while a holds the LV: refused, naming host-a",
    );
    sh(&format!("mkdir -p {STAGING}"));
    let (code, msg) = csictl_refused(
        SOCKET,
        &[
            "node",
            "stage",
            id,
            "--staging-path",
            STAGING,
            "--fs-type",
            "ext4",
        ],
    );
    assert_eq!(code, "FAILED_PRECONDITION", "{msg}");
    assert!(
        msg.contains("node host-a (sanlock host_id 1)"),
        "the refusal names the holder: {msg}"
    );
    assert!(
        mount_at(Path::new(STAGING)).is_none(),
        "nothing half-done after the refusal"
    );
    assert!(!active_here(id), "the refused stage activated the LV");
    s.signal("b-refused");

    s.wait("a-released");
    step("b", "stage and publish a's volume: the same data");
    s.time("NodeStage + NodePublish on b", || stage_publish(id));
    assert_mounted(id);
    assert_eq!(checksum(), sum, "the data a wrote, read on b");
    s.signal("b-holds");

    s.wait("a-delete-refused");
    assert_eq!(checksum(), sum, "data after the refused DeleteVolume");
    unpublish_unstage(id);
    s.signal("b-released");
    s.wait("a-PASS");
}
