//! Host preparation in a real kernel: the real `disk-discover` and `vg-init` binaries, chained
//! as init containers would run them, against virtio disks in a QEMU guest; then csi-driver
//! serves a volume from the VG they made. A second guest proves the shared (lvmlockd +
//! sanlock) path, including the refusals when the lock manager is not there.
//!
//! Disks are named by udev's /dev/disk/by-id/virtio-<serial> links (udev on): that is what
//! production inventories carry, and it makes vg-init match by-id paths against the kernel
//! names lvm reports for PVs. The by-id glob also cannot pick up anything but our disks.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use vglet_csi_proto::v1::volume_capability::access_mode::Mode;
use vglet_csi_proto::v1::*;
use vglet_devices::inventory::Inventory;
use vglet_e2e::req;
use vglet_e2e::{CmdOut, DriverProcess, bin, clients, in_guest, mount_at, run_program, sh};

const VG: &str = "hostvg";
const GIB: u64 = 1 << 30;
const INV: &str = "/run/vglet/inventory.json";

fn by_id(n: u32) -> String {
    format!("/dev/disk/by-id/virtio-d{n}")
}

fn vm(name: &str) -> vglet_vmh::Vm {
    vglet_vmh::Vm::new(name)
        .mem_mib(1536)
        .cpus(2)
        .udev(true)
        .modules(["dm_mod", "dm_thin_pool", "ext4"])
        .timeout(Duration::from_secs(900))
}

/// Boots `vm` to run guest test `name`; returns the guest's wall time.
fn boot(vm: vglet_vmh::Vm, name: &str) -> Duration {
    let out = vm.run_test(name).expect("guest run");
    assert_eq!(out.exit_code, 0, "guest test {name} failed");
    out.duration
}

fn binaries_ready() {
    for b in ["disk-discover", "vg-init", "csi-driver"] {
        bin(b);
    }
}

#[test]
fn host_prep_chain_in_guest() {
    if in_guest() || vglet_vmh::skip_vm_tests("host_prep_chain_in_guest") {
        return;
    }
    binaries_ready();
    let work = vglet_vmh::WorkDir::new("host-prep").expect("work dir");
    let disks: Vec<PathBuf> = (1..=7)
        .map(|n| work.sparse_file(&format!("d{n}.img"), GIB).unwrap())
        .collect();
    // d8 lives for the first boot only: an orphan PV, refused alike by both binaries.
    let mut first = vm("prep-boot1").fresh_disk("d8", GIB);
    for d in &disks[..6] {
        first = first.disk(d);
    }
    let t1 = boot(first, "guest_prep_first_boot");
    // Same six images (now holding the VG) plus one new blank disk.
    let mut second = vm("prep-boot2");
    for d in &disks {
        second = second.disk(d);
    }
    let t2 = boot(second, "guest_prep_second_boot");
    eprintln!(
        "host prep: first boot {:.1}s, second boot {:.1}s",
        t1.as_secs_f64(),
        t2.as_secs_f64()
    );
}

#[test]
fn shared_vg_init_in_guest() {
    if in_guest() || vglet_vmh::skip_vm_tests("shared_vg_init_in_guest") {
        return;
    }
    binaries_ready();
    let vm = vglet_vmh::Vm::new("prep-shared")
        .mem_mib(1024)
        .cpus(2)
        .udev(true)
        .fresh_disk("s1", GIB)
        .fresh_disk("s2", GIB)
        .modules(["dm_mod"])
        .timeout(Duration::from_secs(600));
    let t = boot(vm, "guest_shared_vg_init");
    eprintln!("shared vg-init guest: {:.1}s", t.as_secs_f64());
}

// ---------------------------------------------------------------- guest side

struct Timer(Instant, Vec<String>);

impl Timer {
    fn new() -> Timer {
        Timer(Instant::now(), Vec::new())
    }
    fn step(&mut self, what: &str) {
        let line = format!("{:6.1}s  {what}", self.0.elapsed().as_secs_f64());
        eprintln!("\n--- host-prep: {line}");
        self.1.push(line);
    }
    fn summary(&self) {
        eprintln!("\n--- host-prep timings:\n{}", self.1.join("\n"));
    }
}

fn discover() -> (CmdOut, Inventory) {
    let _ = std::fs::create_dir_all("/run/vglet");
    let out = run_program(
        &bin("disk-discover"),
        &[
            "--glob",
            "/dev/disk/by-id/virtio-d*",
            "--min-size",
            "512Mi",
            "--target-vg",
            VG,
            "--output",
            INV,
        ],
    );
    assert_eq!(out.code, 0, "disk-discover failed");
    let inv = Inventory::from_json(&std::fs::read_to_string(INV).unwrap()).unwrap();
    (out, inv)
}

fn vg_init(args: &[&str]) -> (CmdOut, serde_json::Value) {
    let out = run_program(&bin("vg-init"), args);
    let json = out
        .stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("vg-init JSON"))
        .unwrap_or(serde_json::Value::Null);
    (out, json)
}

fn canonical(p: &str) -> String {
    std::fs::canonicalize(p).unwrap().display().to_string()
}

/// PV names of a VG (lvm's kernel names), sorted.
fn pvs_of(vg: &str) -> Vec<String> {
    let out = sh(&format!(
        "pvs --noheadings -o pv_name --select vg_name={vg} 2>/dev/null"
    ));
    let mut v: Vec<String> = out.split_whitespace().map(str::to_string).collect();
    v.sort();
    v
}

/// What must not change when nothing is to be done: vg_seqno moves on every metadata write.
fn vg_fingerprint(vg: &str) -> String {
    sh(&format!(
        "vgs --noheadings -o vg_name,pv_count,lv_count,vg_seqno,vg_tags {vg}"
    ))
    .trim()
    .to_string()
}

fn blkid(dev: &str) -> String {
    // -p: probe the device itself, not blkid's cache. Exit 2 = nothing found.
    sh(&format!("blkid -p -o export {dev} || true"))
}

fn expected(ns: &[u32]) -> Vec<String> {
    let mut v: Vec<String> = ns.iter().map(|n| canonical(&by_id(*n))).collect();
    v.sort();
    v
}

#[test]
#[ignore = "runs inside the QEMU guest through host_prep_chain_in_guest"]
fn guest_prep_first_boot() {
    assert!(in_guest());
    let mut t = Timer::new();
    t.step("setup: ext4 on d5, a foreign VG with an LV on d6, an orphan PV on d8");
    sh(&format!("mkfs.ext4 -q {}", by_id(5)));
    sh(&format!("pvcreate -q {}", by_id(8)));
    sh(&format!(
        "vgcreate -q othervg {} && lvcreate -q -an -L 8m -n keep othervg",
        by_id(6)
    ));
    let blkid5 = blkid(&by_id(5));
    let blkid6 = blkid(&by_id(6));
    assert!(blkid5.contains("TYPE=ext4") && blkid6.contains("TYPE=LVM2_member"));
    let other_before = vg_fingerprint("othervg");

    t.step("disk-discover over all six disks");
    let (_, inv) = discover();
    let chosen: Vec<&str> = inv.devices.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(chosen, (1..=4).map(by_id).collect::<Vec<_>>());
    for n in [5, 6, 8] {
        let s = inv
            .skipped
            .iter()
            .find(|s| s.path == by_id(n))
            .unwrap_or_else(|| panic!("d{n} not in skipped: {:?}", inv.skipped));
        assert!(!s.reasons.is_empty(), "d{n} skipped without a reason");
        eprintln!("d{n} skipped: {:?}", s.reasons);
    }
    let orphan = &inv
        .skipped
        .iter()
        .find(|s| s.path == by_id(8))
        .unwrap()
        .reasons;
    assert!(
        orphan[0].starts_with("an orphan LVM PV")
            && orphan[0].ends_with("not taken without --wipe"),
        "{orphan:?}"
    );
    let blkid8 = blkid(&by_id(8));

    t.step("vg-init from the inventory: creates the VG");
    let (out, json) = vg_init(&["--vg", VG, "--inventory", INV, "--tag", "team=storage"]);
    assert_eq!(out.code, 0, "vg-init create");
    assert_eq!(json["action"], "created");
    assert_eq!(json["added"].as_array().unwrap().len(), 4);
    assert_eq!(pvs_of(VG), expected(&[1, 2, 3, 4]));
    let tags = sh(&format!("vgs --noheadings -o vg_tags {VG}"));
    for want in ["vglet.managed=true", "vglet.vg-init=", "team=storage"] {
        assert!(tags.contains(want), "{want} missing from {tags}");
    }
    // 16 MiB metadata areas, room for thousands of LVs.
    let mda = sh(&format!(
        "pvs --noheadings --units b --nosuffix -o pv_mda_size {}",
        by_id(1)
    ));
    assert!(mda.trim().parse::<u64>().unwrap() >= 16 << 20, "mda {mda}");
    assert_eq!(blkid(&by_id(5)), blkid5, "d5 changed");
    assert_eq!(blkid(&by_id(6)), blkid6, "d6 changed");
    assert_eq!(vg_fingerprint("othervg"), other_before, "othervg changed");
    assert_eq!(pvs_of("othervg"), expected(&[6]));

    t.step("the chain again: nothing to do");
    let before = vg_fingerprint(VG);
    let (_, inv) = discover();
    assert_eq!(inv.devices.len(), 4);
    assert!(
        inv.devices
            .iter()
            .all(|d| d.existing_pv_of.as_deref() == Some(VG))
    );
    let (out, json) = vg_init(&["--vg", VG, "--inventory", INV, "--tag", "team=storage"]);
    assert_eq!(out.code, 4, "re-run must be nothing to do");
    assert_eq!(json["action"], "unchanged");
    assert_eq!(vg_fingerprint(VG), before, "a no-op run wrote metadata");

    t.step("d5 (ext4) explicitly, without --wipe: refused");
    let (out, json) = vg_init(&["--vg", VG, "--device", &by_id(5)]);
    assert_eq!(out.code, 3);
    assert_eq!(json["action"], "refused");
    assert!(out.stderr.contains("holds data: ext4"), "{}", out.stderr);
    assert!(out.stderr.contains("not taken without --wipe"));
    t.step("d6 (PV of a VG with an LV) with --wipe: refused always");
    let (out, _) = vg_init(&["--vg", VG, "--device", &by_id(6), "--wipe"]);
    assert_eq!(out.code, 3);
    assert!(
        out.stderr
            .contains("a PV of VG othervg, which has 1 LV(s); never taken, not even with --wipe"),
        "{}",
        out.stderr
    );
    t.step("d5 with --wipe --dry-run: the plan, no change");
    let (out, json) = vg_init(&["--vg", VG, "--device", &by_id(5), "--wipe", "--dry-run"]);
    assert_eq!(out.code, 0);
    assert_eq!(json["dry_run"], true);
    assert!(out.stderr.contains("plan: wipe"), "{}", out.stderr);
    assert_eq!(blkid(&by_id(5)), blkid5);
    assert_eq!(vg_fingerprint(VG), before);
    assert_eq!(vg_fingerprint("othervg"), other_before);

    t.step("d5 with --wipe: says what it destroys, then takes it");
    let (out, json) = vg_init(&["--vg", VG, "--device", &by_id(5), "--wipe"]);
    assert_eq!(out.code, 0);
    assert!(
        out.stderr.contains(&format!(
            "--wipe: erasing signatures on {}: ext4 at offset",
            by_id(5)
        )),
        "{}",
        out.stderr
    );
    assert_eq!(json["action"], "extended");
    assert_eq!(json["wiped"][0], by_id(5));
    assert_eq!(pvs_of(VG), expected(&[1, 2, 3, 4, 5]));
    assert_eq!(vg_fingerprint("othervg"), other_before);

    t.step("d8 (orphan PV) without --wipe: refused with disk-discover's reason, unchanged");
    let before = vg_fingerprint(VG);
    let (out, json) = vg_init(&["--vg", VG, "--device", &by_id(8)]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(json["action"], "refused");
    assert!(out.stderr.contains(&orphan[0]), "{}", out.stderr);
    assert_eq!(blkid(&by_id(8)), blkid8, "d8 changed");
    assert_eq!(vg_fingerprint(VG), before, "a refusal wrote metadata");
    t.step("d8 with --wipe: says it destroys the orphan PV label, then takes it");
    let (out, json) = vg_init(&["--vg", VG, "--device", &by_id(8), "--wipe"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "--wipe: erasing signatures on {}: an orphan PV label: LVM2_member at offset",
            by_id(8)
        )),
        "{}",
        out.stderr
    );
    assert_eq!(json["action"], "extended");
    assert_eq!(json["wiped"][0], by_id(8));
    assert_eq!(pvs_of(VG), expected(&[1, 2, 3, 4, 5, 8]));
    // d8 does not come back for the second boot.
    sh(&format!(
        "vgreduce -q {VG} {0} && pvremove -q {0}",
        by_id(8)
    ));
    assert_eq!(pvs_of(VG), expected(&[1, 2, 3, 4, 5]));
    t.summary();
    eprintln!("\nHOST PREP FIRST BOOT: ALL STEPS PASSED");
}

fn mount_cap() -> VolumeCapability {
    req::mount_cap("ext4", &[], Mode::SingleNodeWriter)
}

#[test]
#[ignore = "runs inside the QEMU guest through host_prep_chain_in_guest"]
fn guest_prep_second_boot() {
    assert!(in_guest());
    let mut t = Timer::new();
    t.step("after reboot, with a seventh blank disk");
    let before = pvs_of(VG);
    assert_eq!(before, expected(&[1, 2, 3, 4, 5]));
    let other_before = vg_fingerprint("othervg");
    let (_, inv) = discover();
    assert!(
        inv.devices
            .iter()
            .any(|d| d.path == by_id(7) && d.existing_pv_of.is_none())
    );
    assert!(inv.skipped.iter().any(|s| s.path == by_id(6)));
    let (out, json) = vg_init(&["--vg", VG, "--inventory", INV, "--tag", "team=storage"]);
    assert_eq!(out.code, 0, "extend");
    assert_eq!(json["action"], "extended");
    assert_eq!(json["added"], serde_json::json!([by_id(7)]));
    assert_eq!(pvs_of(VG), expected(&[1, 2, 3, 4, 5, 7]));
    assert_eq!(vg_fingerprint("othervg"), other_before);

    t.step("thin pool on the prepared VG, then a no-op re-run");
    let (out, json) = vg_init(&[
        "--vg",
        VG,
        "--inventory",
        INV,
        "--tag",
        "team=storage",
        "--thin-pool",
        "pool",
        "--thin-pool-size",
        "10%",
    ]);
    assert_eq!(out.code, 0);
    assert_eq!(json["action"], "updated");
    let seg = sh(&format!("lvs --noheadings -o segtype {VG}/pool"));
    assert_eq!(seg.trim(), "thin-pool");
    let (out, _) = vg_init(&[
        "--vg",
        VG,
        "--inventory",
        INV,
        "--tag",
        "team=storage",
        "--thin-pool",
        "pool",
        "--nothing-to-do-exit-code",
        "0",
    ]);
    assert_eq!(out.code, 0, "--nothing-to-do-exit-code 0");

    t.step("csi-driver serves a volume from the VG");
    let socket = PathBuf::from("/run/vglet/prep.sock");
    let _driver = DriverProcess::start(
        &[
            "--mode",
            "all",
            "--node-id",
            "prep-node",
            "--volume-group",
            VG,
        ],
        &socket,
    );
    let staging = PathBuf::from("/var/lib/vglet/staging/v1");
    let target = PathBuf::from("/var/lib/kubelet/pods/p1/volumes/v1");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = clients(&socket).await;
        let vol = c
            .controller
            .create_volume(CreateVolumeRequest {
                name: "prep-v1".into(),
                capacity_range: Some(CapacityRange {
                    required_bytes: 64 << 20,
                    limit_bytes: 0,
                }),
                volume_capabilities: vec![mount_cap()],
                parameters: HashMap::from([("volumeGroup".to_string(), VG.to_string())]),
                ..Default::default()
            })
            .await
            .expect("create")
            .into_inner()
            .volume
            .unwrap();
        c.node
            .node_stage_volume(NodeStageVolumeRequest {
                volume_id: vol.volume_id.clone(),
                staging_target_path: staging.display().to_string(),
                volume_capability: Some(mount_cap()),
                ..Default::default()
            })
            .await
            .expect("stage");
        c.node
            .node_publish_volume(NodePublishVolumeRequest {
                volume_id: vol.volume_id.clone(),
                staging_target_path: staging.display().to_string(),
                target_path: target.display().to_string(),
                volume_capability: Some(mount_cap()),
                ..Default::default()
            })
            .await
            .expect("publish");
    });
    let (fs, source, _) = mount_at(&target).expect("published mount");
    assert_eq!(fs, "ext4");
    eprintln!("published from {source}");
    std::fs::write(target.join("hello.txt"), b"prepared by vg-init\n").unwrap();
    sh("sync");
    assert_eq!(
        std::fs::read_to_string(staging.join("hello.txt")).unwrap(),
        "prepared by vg-init\n"
    );
    let lvs = vglet_e2e::lvs(VG);
    assert!(lvs.iter().any(|l| l.2.contains("vglet.owner=")), "{lvs:?}");
    t.summary();
    eprintln!("\nHOST PREP SECOND BOOT: ALL STEPS PASSED");
}

#[test]
#[ignore = "runs inside the QEMU guest through shared_vg_init_in_guest"]
fn guest_shared_vg_init() {
    assert!(in_guest());
    let mut t = Timer::new();
    let s1 = by_id_s(1);
    let s2 = by_id_s(2);
    let shared = |extra: &[&str]| {
        let mut a = vec!["--vg", "svg", "--device", s1.as_str(), "--shared"];
        a.extend_from_slice(extra);
        vg_init(&a)
    };
    let nothing_created = |why: &str| {
        let vgs = sh("vgs --noheadings -o vg_name 2>/dev/null || true");
        assert!(
            !vgs.split_whitespace().any(|v| v == "svg"),
            "{why}: a VG was created: {vgs}"
        );
        assert_eq!(blkid(&s1), "", "{why}: {s1} was written to");
    };

    t.step("idm: refused, this lvm is not built for it");
    let (out, json) = shared(&["--lock-type", "idm"]);
    assert_eq!(out.code, 3);
    assert_eq!(json["action"], "refused");
    assert!(
        out.stderr
            .contains("lock type idm is not supported by this lvm"),
        "{}",
        out.stderr
    );
    nothing_created("idm");

    t.step("sanlock on an unprepared host: refused with every missing piece named");
    let (out, _) = shared(&["--lock-type", "sanlock"]);
    assert_eq!(out.code, 3);
    for want in [
        "use_lvmlockd = 1",
        "lvmlockd is not running",
        "sanlock lock manager is not running",
        "host_id",
    ] {
        assert!(out.stderr.contains(want), "{want}: {}", out.stderr);
    }
    nothing_created("unprepared");

    t.step("--system-id auto: refused without a host system ID, then stamped with it");
    let (out, _) = vg_init(&["--vg", "sysvg", "--device", &s2, "--system-id", "auto"]);
    assert_eq!(out.code, 3);
    assert!(out.stderr.contains("no lvm system ID"), "{}", out.stderr);
    assert_eq!(blkid(&s2), "");
    sh(
        r#"sed -i 's/^\(\s*\)# system_id_source = "none"/\1system_id_source = "uname"/' /etc/lvm/lvm.conf"#,
    );
    let (out, json) = vg_init(&["--vg", "sysvg", "--device", &s2, "--system-id", "auto"]);
    assert_eq!(out.code, 0);
    let host = sh("uname -n").trim().to_string();
    assert_eq!(json["system_id"], host.as_str());
    assert_eq!(sh("vgs --noheadings -o systemid sysvg").trim(), host);

    t.step("lvm configured for lvmlockd, lvmlockd not running: refused");
    sh(r"sed -i 's/^\(\s*\)# use_lvmlockd = 0/\1use_lvmlockd = 1/' /etc/lvm/lvm.conf");
    sh("printf 'local {\\n  host_id = 1\\n}\\n' > /etc/lvm/lvmlocal.conf");
    let (out, _) = shared(&["--lock-type", "sanlock"]);
    assert_eq!(out.code, 3);
    assert!(
        out.stderr.contains("lvmlockd is not running"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("use_lvmlockd"), "{}", out.stderr);
    nothing_created("no lvmlockd");

    t.step("sanlock + lvmlockd running: the shared VG is created and its lockspace started");
    sh(
        "mkdir -p /run/lvm /run/sanlock && sanlock daemon -w 0 -U root -G root && lvmlockd -g sanlock -o 2",
    );
    let start = Instant::now();
    let mut ok = false;
    while start.elapsed() < Duration::from_secs(20) {
        if std::process::Command::new("lvmlockctl")
            .arg("--info")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(ok, "lvmlockd did not come up");
    let (out, json) = shared(&["--lock-type", "sanlock", "--tag", "site=a"]);
    assert_eq!(out.code, 0, "shared create");
    assert_eq!(json["action"], "created");
    assert_eq!(json["shared"], true);
    assert_eq!(json["lock_type"], "sanlock");
    assert_eq!(sh("vgs --noheadings -o vg_lock_type svg").trim(), "sanlock");
    let info = sh("lvmlockctl --info");
    assert!(info.contains("lvm_svg"), "lockspace not listed: {info}");
    let mda = sh(&format!(
        "pvs --noheadings --units b --nosuffix -o pv_mda_size {s1}"
    ));
    assert!(mda.trim().parse::<u64>().unwrap() >= 16 << 20, "mda {mda}");
    sh("lvcreate -q -an -L 8m -n probe svg");

    t.step("re-run: nothing to do");
    let (out, json) = shared(&["--lock-type", "sanlock", "--tag", "site=a"]);
    assert_eq!(out.code, 4);
    assert_eq!(json["action"], "unchanged");

    t.step("lockspace stopped: a re-run starts it again");
    sh("vgchange --lockstop svg");
    assert!(!sh("lvmlockctl --info").contains("lvm_svg"));
    let (out, json) = shared(&["--lock-type", "sanlock", "--tag", "site=a"]);
    assert_eq!(out.code, 0, "lockstart");
    assert_eq!(json["action"], "updated");
    assert!(sh("lvmlockctl --info").contains("lvm_svg"));
    sh("lvcreate -q -an -L 8m -n probe2 svg");
    t.summary();
    eprintln!("\nSHARED VG-INIT: ALL STEPS PASSED");
}

fn by_id_s(n: u32) -> String {
    format!("/dev/disk/by-id/virtio-s{n}")
}
