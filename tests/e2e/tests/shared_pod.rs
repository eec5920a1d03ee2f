//! The shared (lvmlockd + sanlock) model as operators install it, run for real on two hosts
//! that see one LUN: two QEMU guests share one raw disk, and on each the containers of the
//! `vglet-shared-node` DaemonSet, and on host a also those of the `vglet-controller`
//! Deployment and (after its reboot) of the `vglet-reviver-shared` DaemonSet, are read from
//! `kubectl kustomize deploy/shared` (vglet_e2e::pod, tests/e2e/node-pod/pod-bundles.py) and
//! run by crun from the images util/build-images.sh built. What the manifests leave to the
//! host (deploy/README.md, "Shared VGs"; docs/host-preparation.md, 4.1-4.2) is done on each
//! guest's host side: sanlock and lvmlockd run as host daemons with `use_lvmlockd = 1` and a
//! host_id of their own, and host a creates the VG once by hand (`vgcreate --shared`). Each
//! host has kubelet's and vglet's directories on a small disk of its own, as on a node's
//! root filesystem, so that they survive host a's reboot.
//!
//! Then: the `vg-init` init container joins each host to the VG (lockstart, the host tag
//! that names the node), the node plugins serve in kubelet's plugin directory, the
//! controller's csi-driver on its pod's socket. csictl, from each guest's host side as
//! kubelet and the provisioner would call them: a volume is created by the controller,
//! staged, published and written on a (checksum); b's NodeStage is refused with
//! FAILED_PRECONDITION naming node host-a.
//!
//! Host a reboots: its guest powers off with the volume mounted, its LV active and its
//! locks held (nothing is unmounted, deactivated or released: an unclean reboot), and a new
//! guest boots on the same shared disk and the same persistent disk while b keeps running.
//! After the host's lock managers are up, nothing is mounted, the LV is inactive and the
//! VG's lockspace is not started; the `vglet-reviver-shared` container starts the lockspace,
//! re-activates the LV exclusively and restores both mounts with the data intact (checksum).
//! The node pod and the controller start again (vg-init finds the lockspace started), and
//! b's NodeStage is refused naming host-a again: a holds the LV's lock after its reboot.
//!
//! Then the hand-over: a unpublishes and unstages; b stages it and reads the same checksum;
//! the controller's DeleteVolume is refused with FAILED_PRECONDITION naming node host-b
//! while b holds the LV lock, and succeeds once b has unstaged.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vglet_e2e::pod::{
    PERSIST, Running, SOCKET, STAGING, TARGET, assert_unmounted, bundles, checksum, container,
    csictl, csictl_refused, names, persistent_host_paths, prepare, probe_ready, run_init,
    stage_publish, wait_until, work,
};
use vglet_e2e::two_hosts::{Sync, start_sanlock_lvmlockd};
use vglet_e2e::{in_guest, lvs, mount_at, sh};

/// The VG name of deploy/settings/settings.yaml (`sharedVG`).
const VG: &str = "vgshared";
const MODEL: &str = "shared";
const NODE_DS: &str = "vglet-shared-node";
const CONTROLLER: &str = "vglet-controller";
const REVIVER: &str = "vglet-reviver-shared";
/// The disks of every guest, in the order they are attached: the shared LUN, then the
/// host's own persistent disk.
const SHARED_DISK: &str = "/dev/vda";
const PERSIST_DISK: &str = "/dev/vdb";

#[test]
fn shared_pod_two_hosts() {
    if in_guest() || vglet_vmh::skip_vm_tests("shared_pod_two_hosts") {
        return;
    }
    prepare(MODEL, &[NODE_DS, CONTROLLER, REVIVER]);
    vglet_e2e::bin("csictl");
    let w = vglet_vmh::WorkDir::new("shared-pod").expect("work dir");
    // Not on tmpfs: the shared disk is opened with O_DIRECT (cache=none).
    let disk = w.sparse_file("shared.img", 2 << 30).expect("shared disk");
    let persist_a = w.sparse_file("persist-a.img", 64 << 20).unwrap();
    let persist_b = w.sparse_file("persist-b.img", 64 << 20).unwrap();
    let sync = w.subdir("sync").expect("sync dir");
    let cmd = vglet_vmh::test_command("guest_shared_pod").expect("test command");
    let guest = |role: &str, boot: u32, persist: &Path| {
        vglet_vmh::Vm::new(format!("host-{role}"))
            .mem_mib(1024)
            .cpus(1)
            .shared_disk(&disk)
            .disk(persist)
            .share_dir(&sync)
            // lockstart on the second host needs udev on the host (tests/harness/README.md).
            .udev(true)
            .modules(["dm_mod", "ext4"])
            .env("VGLET_ROLE", role)
            .env("VGLET_BOOT", boot.to_string())
            .env("VGLET_SYNC", sync.display().to_string())
            // b runs through a's reboot.
            .timeout(Duration::from_secs(1200))
    };
    let start = Instant::now();
    let a = guest("a", 1, &persist_a)
        .spawn(&cmd)
        .expect("start guest a");
    let b = guest("b", 1, &persist_b)
        .spawn(&cmd)
        .expect("start guest b");
    let ra1 = a.wait();
    let a_down = start.elapsed();
    // Host a's reboot: a new guest on the same shared disk and the same persistent disk;
    // b keeps running meanwhile.
    let ra2 = match &ra1 {
        Ok(o) if o.exit_code == 0 => {
            let a2 = guest("a", 2, &persist_a).spawn(&cmd);
            if let Err(e) = &a2 {
                // b is waiting for a's second boot: let it stop now.
                let _ = std::fs::write(sync.join("FAIL-a"), format!("start of a's reboot: {e}"));
            }
            Some(a2.expect("start guest a after its reboot").wait())
        }
        _ => None,
    };
    let rb = b.wait();
    for file in ["timings-a", "timings-a-boot2", "timings-b"] {
        if let Ok(t) = std::fs::read_to_string(sync.join(file)) {
            eprintln!("{file}:\n{t}");
        }
    }
    eprintln!(
        "shared pod, two hosts and a reboot of host a: {:.0}s wall (host a's first boot ended \
         after {:.0}s)",
        start.elapsed().as_secs_f64(),
        a_down.as_secs_f64()
    );
    assert_eq!(ra1.expect("guest a ran").exit_code, 0, "host a failed");
    let ra2 = ra2.expect("host a rebooted");
    assert_eq!(
        ra2.expect("guest a ran again").exit_code,
        0,
        "host a failed after its reboot"
    );
    assert_eq!(rb.expect("guest b ran").exit_code, 0, "host b failed");
    for marker in ["a-boot1-PASS", "a-PASS", "b-PASS"] {
        assert!(sync.join(marker).exists(), "no {marker}");
    }
}

fn step(s: &Sync, what: &str) {
    eprintln!(
        "\n=== shared pod, host {} (boot {}): {what}",
        s.role, s.boot
    );
}

fn node_name(role: &str) -> String {
    format!("host-{role}")
}

fn host_id(role: &str) -> u32 {
    if role == "a" { 1 } else { 2 }
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

/// The first row of an lvm JSON report (`vgs`/`lvs --reportformat json`); binary fields
/// as "1"/"0".
fn report_row(cmd: &str, kind: &str) -> serde_json::Value {
    let out = sh(&format!(
        "{cmd} --reportformat json --units b --nosuffix --binary"
    ));
    let v: serde_json::Value = serde_json::from_str(&out).expect("lvm JSON report");
    v["report"][0][kind][0].clone()
}

fn vg_field(field: &str) -> String {
    report_row(&format!("vgs -o {field} {VG}"), "vg")[field]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn lv_field(id: &str, field: &str) -> String {
    report_row(&format!("lvs -o {field} {id}"), "lv")[field]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// lv_attr's fifth character is `a` while the LV is active on this host.
fn active_here(id: &str) -> bool {
    lv_field(id, "lv_attr").chars().nth(4) == Some('a')
}

/// Whether this host's lvmlockd has started the VG's lockspace.
fn lockspace_started() -> bool {
    sh("lvmlockctl --info").contains(&format!("lvm_{VG}"))
}

/// The staging mount is ext4 on the volume's LV, and the publish mount exists, in the host's
/// mount table: made inside a container (the node plugin's, the reviver's), they reach the
/// host only through Bidirectional propagation of kubelet's directory.
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
    assert_unmounted("after NodeUnpublish + NodeUnstage");
    assert!(!active_here(id), "unstage releases the LV (and its lock)");
}

/// The host's side of one boot: sanlock and lvmlockd, kubelet's and vglet's directories on
/// the host's persistent disk (made on the first boot).
fn host_services(s: &mut Sync) {
    step(
        s,
        "host services: sanlock + lvmlockd, kubelet's directories",
    );
    let id = host_id(&s.role);
    s.time("sanlock + lvmlockd up (host)", || {
        start_sanlock_lvmlockd(id)
    });
    // As a plain directory of the guest's root (an overlay), kubelet's directory did not
    // carry the mounts made in the node plugin's container into the host's mount table; on
    // a disk of its own (a mount, as in node_pod.rs) it does.
    persistent_host_paths(PERSIST_DISK, s.boot == 1);
}

/// The pods that serve on a host: the node pod (its init container vg-init joins the VG,
/// then its csi-driver), and on host a also the controller. Returns once they answer Probe.
fn start_pods(s: &mut Sync) -> (Running, Option<Running>) {
    let role = s.role.clone();
    let node = node_name(&role);
    step(s, "the node pod's init container vg-init joins the VG");
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
    let id = host_id(&role);
    assert!(
        tags.contains(&format!("vglet.sanlock-host.{id}={node}")),
        "VG tags: {tags}"
    );
    assert!(lockspace_started(), "no lockspace lvm_{VG} after vg-init");

    step(
        s,
        "csi-driver serves (node plugin; on a also the controller)",
    );
    let driver = Running::start(container(&pod, "csi-driver"));
    let controller = (role == "a").then(|| {
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
    (driver, controller)
}

/// Runs `steps`; when they fail, prints the lock managers' own accounts of what failed
/// (their logs go nowhere else here) before the panic goes on.
fn with_lock_dumps(role: &str, steps: impl FnOnce()) {
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(steps));
    if let Err(e) = out {
        eprintln!(
            "lvmlockd on host {role}:\n{}\nsanlock on host {role}:\n{}\nkubelet's mounts:\n{}",
            sh("lvmlockctl --dump 2>&1 | tail -60 || true"),
            sh("sanlock client log_dump 2>&1 | tail -40 || true"),
            sh("grep kubelet /proc/self/mountinfo || true")
        );
        std::panic::resume_unwind(e);
    }
}

#[test]
#[ignore = "runs inside two QEMU guests through shared_pod_two_hosts"]
fn guest_shared_pod() {
    assert!(in_guest(), "run through shared_pod_two_hosts");
    let mut s = Sync::from_env();
    let role = s.role.clone();
    if role == "a" && s.boot == 2 {
        a_after_reboot(&mut s);
        s.signal("a-PASS");
        eprintln!("\nSHARED POD (host a, after its reboot): PASSED");
        return;
    }
    host_services(&mut s);
    if role == "a" {
        // docs/host-preparation.md 4.2: the VG is made once, by hand, on one host.
        s.time("vgcreate --shared (host a, by hand)", || {
            sh(&format!(
                "vgcreate --shared --locktype sanlock {VG} {SHARED_DISK}"
            ))
        });
        s.signal("a-vg");
    } else {
        s.wait("a-vg");
    }
    let pods = start_pods(&mut s);
    s.signal(&format!("{role}-serving"));
    with_lock_dumps(&role, || {
        if role == "a" {
            s.wait("b-serving");
            a_before_reboot(&mut s);
        } else {
            b_steps(&mut s);
        }
    });
    if role == "a" {
        // The reboot: the pods stop (kubelet's SIGTERM), then the guest powers off with the
        // volume mounted, its LV active and the locks held; only the page cache is written.
        drop(pods);
        sh("sync");
        s.signal("a-boot1-PASS");
        eprintln!("\nSHARED POD (host a, before its reboot): PASSED");
    } else {
        drop(pods);
        s.signal("b-PASS");
        eprintln!("\nSHARED POD (host b): PASSED");
    }
}

fn a_before_reboot(s: &mut Sync) {
    let ctl = controller_socket();
    step(
        s,
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
    assert_eq!(lv_field(&id, "lv_active_exclusively"), "1");
    sh(&format!(
        "dd if=/dev/urandom of={TARGET}/data bs=1M count=8 status=none && sync"
    ));
    let sum = checksum();
    s.signal_value("a-holds", &format!("{id} {sum}"));
    s.wait("b-refused");
}

/// Host a's second boot: the reviver container restores what the first boot left, then
/// the pods serve again and the hand-over goes on.
fn a_after_reboot(s: &mut Sync) {
    let held = s.wait("a-holds");
    let (id, sum) = held.split_once(' ').unwrap();
    host_services(s);
    with_lock_dumps("a", || {
        step(
            s,
            "after the reboot: nothing mounted or active, no lockspace",
        );
        // The staging directory (made by the first boot under kubelet's directory, which
        // is on the persistent disk).
        let staging = Path::new(PERSIST)
            .join("kubelet")
            .join(STAGING.strip_prefix("/var/lib/kubelet/").unwrap());
        assert!(
            staging.is_dir() && Path::new(STAGING).is_dir(),
            "kubelet's directory did not survive the reboot"
        );
        assert_unmounted("after the reboot");
        assert!(!lockspace_started(), "lockspace lvm_{VG} started by itself");
        assert!(!active_here(id), "LV {id} active after the boot");
        let records = PathBuf::from("/var/lib/vglet/state");
        assert!(
            std::fs::read_dir(&records).map_or(0, |d| d.count()) > 0,
            "no state records in {} after the reboot",
            records.display()
        );

        step(
            s,
            "the reviver container (vglet-reviver-shared) restores the volume",
        );
        let reviver = bundles(MODEL, REVIVER, &node_name("a"), &[]);
        assert_eq!(names(&reviver), ["reviver"], "{reviver:?}");
        let t = Instant::now();
        {
            // Its manifest runs it with --watch: it keeps running; stop it once the mounts
            // are back.
            let _r = Running::start(&reviver[0]);
            wait_until("the reviver's mounts", Duration::from_secs(240), || {
                mount_at(Path::new(TARGET)).is_some()
            });
        }
        s.record(
            "reviver container: lockspace, activation, mounts",
            t.elapsed(),
        );
        assert!(lockspace_started(), "the reviver did not start lvm_{VG}");
        assert_eq!(vg_field("vg_lock_type"), "sanlock");
        assert_eq!(
            lv_field(id, "lv_active_exclusively"),
            "1",
            "the recorded activation mode (-aey) after the revival"
        );
        assert_mounted(id);
        assert_eq!(checksum(), sum, "data differs after the reboot");
    });

    let pods = start_pods(s);
    s.signal("a-revived");
    with_lock_dumps("a", || a_steps_after_reboot(s, id, sum));
    drop(pods);
}

fn a_steps_after_reboot(s: &mut Sync, id: &str, sum: &str) {
    let ctl = controller_socket();
    s.wait("b-refused-again");
    step(s, "unpublish, unstage: the LV lock is released");
    assert_eq!(checksum(), sum);
    unpublish_unstage(id);
    s.signal("a-released");

    s.wait("b-holds");
    step(
        s,
        "DeleteVolume while b holds the LV: refused, naming host-b",
    );
    let (code, msg) = csictl_refused(&ctl, &["controller", "delete", id]);
    assert_eq!(code, "FAILED_PRECONDITION", "{msg}");
    assert!(
        msg.contains("node host-b (sanlock host_id 2)"),
        "the refusal names the holder: {msg}"
    );
    let lv = id.split_once('/').unwrap().1;
    assert!(
        lvs(VG).iter().any(|(n, _, _)| n == lv),
        "the refused DeleteVolume removed the LV"
    );
    s.signal("a-delete-refused");

    s.wait("b-released");
    step(s, "DeleteVolume once b has unstaged");
    csictl(&ctl, &["controller", "delete", id]);
    assert!(
        !lvs(VG).iter().any(|(n, _, _)| n == lv),
        "LV {lv} still there: {:?}",
        lvs(VG)
    );
}

/// b's NodeStage of `id` while a holds its LV: refused with FAILED_PRECONDITION naming
/// host-a, and nothing half-done.
fn b_refused(id: &str) {
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
}

fn b_steps(s: &mut Sync) {
    let held = s.wait("a-holds");
    let (id, sum) = held.split_once(' ').unwrap();
    step(s, "NodeStage while a holds the LV: refused, naming host-a");
    b_refused(id);
    s.signal("b-refused");

    // a reboots now; b leaves the volume alone meanwhile (with a's host lease expired and
    // no watchdog, sanlock would give b the lease of a host that may still write).
    // a's reboot: its power-off, a new boot, sanlock's fencing wait (about 80 s) and the
    // reviver.
    s.wait_up_to("a-revived", Duration::from_secs(900));
    step(
        s,
        "NodeStage after a's reboot: refused again, a holds the lock again",
    );
    b_refused(id);
    s.signal("b-refused-again");

    s.wait("a-released");
    step(s, "stage and publish a's volume: the same data");
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
