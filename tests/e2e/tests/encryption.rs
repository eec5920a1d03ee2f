//! Encryption at rest (issue #21) against real cryptsetup and dm-crypt in the guest.
//!
//! Through the CSI socket: an encrypted (`encryption: luks2`) volume is created, staged
//! with its key from the node-stage secret, published, written (a marker string and random
//! data), checksummed. The marker is found through the mapping (the control) and not in the
//! raw LV. Unstage closes the mapping (`dmsetup ls`); a restage with the key reads the same
//! checksum. A wrong key is FAILED_PRECONDITION with `lvs`, `dmsetup ls` and the mount table
//! unchanged; no key is INVALID_ARGUMENT. After a simulated reboot (driver gone, mounts and
//! mapping gone) the reviver leaves the volume to kubelet ("needs key") and a new driver's
//! NodeStage brings it back. Expansion grows LV, mapping and filesystem (a wrong or missing
//! node-expand key is refused). A raw block volume on raid1 publishes the mapping.
//! Snapshots of an encrypted volume are refused. Throughout, /proc/*/cmdline is
//! sampled and must never show the key; the driver's TRACE log and every file under the
//! state directory must not hold it either.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tonic::Code;
use vglet_csi_proto::v1::volume_capability::access_mode::Mode;
use vglet_csi_proto::v1::*;
use vglet_e2e::{
    Clients, DriverProcess, bin, clients, in_guest, lvs, mount_at, req, run_guest_test,
    run_program, sh, wait_probe_ready,
};

const VG: &str = "cryvg";
const MIB: i64 = 1 << 20;
const STATE: &str = "/run/vglet/cry-state";
const SOCKET: &str = "/run/vglet/cry.sock";
const KEY: &str = "e2e-Key-7fQz9LmW2xVb-not-for-argv";
const WRONG: &str = "e2e-Wrong-Key-Pp3s";
const MARKER: &str = "VGLET-PLAINTEXT-MARKER-41d9c3";

#[test]
fn encryption_in_guest() {
    if in_guest() {
        return;
    }
    bin("reviver");
    let vm = vglet_vmh::Vm::new("e2e-crypt")
        .mem_mib(1536)
        .cpus(2)
        .fresh_disk("d1", 1 << 30)
        .fresh_disk("d2", 1 << 30)
        .modules([
            "dm_mod",
            "dm_crypt",
            "xts",
            "algif_skcipher",
            "dm_raid",
            "raid1",
            "ext4",
        ])
        // cryptsetup leaves /dev/mapper/<name> to udev.
        .udev(true)
        .timeout(Duration::from_secs(900));
    run_guest_test("guest_encryption", vm);
}

#[test]
#[ignore = "runs inside the QEMU guest through encryption_in_guest"]
fn guest_encryption() {
    assert!(in_guest(), "run through encryption_in_guest");
    sh(&format!(
        "pvcreate -q /dev/vda /dev/vdb && vgcreate -q {VG} /dev/vda /dev/vdb"
    ));
    // The key must never be in any process's argv while the calls run.
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (stop, samples, seen) = (stop.clone(), samples.clone(), seen.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for e in std::fs::read_dir("/proc").unwrap().flatten() {
                    if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
                        let text = String::from_utf8_lossy(&c);
                        if text.contains(KEY) || text.contains(WRONG) {
                            eprintln!("KEY IN ARGV: {text}");
                            seen.store(true, Ordering::Relaxed);
                        }
                    }
                }
                samples.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(scenario());
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let n = samples.load(Ordering::Relaxed);
    eprintln!("--- encryption: /proc/*/cmdline sampled {n} times");
    assert!(n > 50, "the sampler ran ({n} samples)");
    assert!(!seen.load(Ordering::Relaxed), "a key appeared in a cmdline");
    // Every file left under the state directory (none once all is unstaged; the records
    // of staged volumes were checked while they existed), and the driver's TRACE logs.
    state_files_hold_no_key(0);
    for log in ["/tmp/cry-driver-1.log", "/tmp/cry-driver-2.log"] {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(text.contains("TRACE"), "{log} is at trace");
        assert!(!text.contains(KEY) && !text.contains(WRONG), "key in {log}");
        eprintln!(
            "--- encryption: {log}: {} lines at trace, no key",
            text.lines().count()
        );
    }
}

/// Every file under the state directory (records, locks, marks): at least `min` of them,
/// none holding a key; returns how many records name a mapping.
fn state_files_hold_no_key(min: usize) -> usize {
    let files = sh(&format!("find {STATE} -type f"));
    let mut mappings = 0;
    for f in files.lines() {
        let bytes = std::fs::read(f).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(KEY) && !text.contains(WRONG), "key in {f}");
        mappings += usize::from(text.contains("\"crypt_mapping\""));
    }
    let n = files.lines().count();
    eprintln!("--- encryption: {n} state files checked, no key, {mappings} name a mapping");
    assert!(n >= min, "{n} state files, expected at least {min}");
    mappings
}

fn step(s: &str) {
    eprintln!("\n--- encryption: {s}");
}

fn start_driver(n: usize) -> DriverProcess {
    let log = PathBuf::from(format!("/tmp/cry-driver-{n}.log"));
    DriverProcess::start_logged(
        &[
            "--log",
            "trace",
            "--mode",
            "all",
            "--node-id",
            "cry-node",
            "--volume-group",
            VG,
            "--state-dir",
            STATE,
        ],
        Path::new(SOCKET),
        &log,
    )
}

fn fs_cap() -> VolumeCapability {
    req::mount_cap("ext4", &[], Mode::SingleNodeWriter)
}

fn secrets(key: &str) -> HashMap<String, String> {
    HashMap::from([("passphrase".to_string(), key.to_string())])
}

async fn create(
    c: &mut Clients,
    name: &str,
    cap: VolumeCapability,
    extra: &[(&str, &str)],
) -> String {
    let mut r = req::create_volume(name, 64 * MIB, cap, VG);
    r.parameters.insert("encryption".into(), "luks2".into());
    for (k, v) in extra {
        r.parameters.insert(k.to_string(), v.to_string());
    }
    c.controller
        .create_volume(r)
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e:?}"))
        .into_inner()
        .volume
        .unwrap()
        .volume_id
}

fn stage_req(id: &str, cap: VolumeCapability, key: Option<&str>) -> NodeStageVolumeRequest {
    NodeStageVolumeRequest {
        volume_id: id.into(),
        staging_target_path: staging(id).display().to_string(),
        volume_capability: Some(cap),
        secrets: key.map(secrets).unwrap_or_default(),
        ..Default::default()
    }
}

fn publish_req(id: &str, cap: VolumeCapability, target: &Path) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: id.into(),
        staging_target_path: staging(id).display().to_string(),
        target_path: target.display().to_string(),
        volume_capability: Some(cap),
        ..Default::default()
    }
}

fn staging(id: &str) -> PathBuf {
    PathBuf::from(format!("/run/cry-staging/{}", lv_of(id)))
}

fn lv_of(id: &str) -> &str {
    id.split_once('/').unwrap().1
}

fn mapping(id: &str) -> String {
    format!("vglet-crypt-{VG}-{}", lv_of(id).replace('-', "--"))
}

/// How often `MARKER` occurs in the device, read from the disk (caches dropped).
fn marker_count(dev: &str) -> u64 {
    sh("sync; echo 3 > /proc/sys/vm/drop_caches");
    sh(&format!("grep -c -a {MARKER} {dev} || true"))
        .trim()
        .parse()
        .unwrap()
}

fn dm_names() -> String {
    sh("dmsetup ls | awk '{print $1}' | sort")
}

/// Everything a refused call must leave as it was.
fn snapshot_of_state() -> (Vec<(String, u64, String)>, String, String) {
    let mounts = sh("awk '{print $4, $5, $9, $10}' /proc/self/mountinfo | sort");
    (lvs(VG), dm_names(), mounts)
}

async fn timed<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    let t = Instant::now();
    let r = f.await;
    eprintln!("--- encryption: {what}: {} ms", t.elapsed().as_millis());
    r
}

async fn scenario() {
    let d = start_driver(1);
    let mut c = clients(&d.socket).await;
    wait_probe_ready(&mut c).await;

    step("create an encrypted filesystem volume");
    let id = create(&mut c, "cry-fs", fs_cap(), &[]).await;
    let tags = lvs(VG).into_iter().find(|l| l.0 == lv_of(&id)).unwrap().2;
    assert!(tags.contains("vglet.encryption=luks2"), "{tags}");
    let raw = format!("/dev/{id}");
    let map = mapping(&id);

    step("stage without a key: INVALID_ARGUMENT, nothing changed");
    let before = snapshot_of_state();
    let e = c
        .node
        .node_stage_volume(stage_req(&id, fs_cap(), None))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("passphrase"), "{e:?}");
    assert_eq!(snapshot_of_state(), before);

    step("first stage: luksFormat, open, mkfs, mount on the mapping");
    timed(
        "first NodeStage (luksFormat + open + mkfs)",
        c.node
            .node_stage_volume(stage_req(&id, fs_cap(), Some(KEY))),
    )
    .await
    .unwrap_or_else(|e| panic!("stage: {e:?}"));
    assert!(dm_names().lines().any(|l| l == map), "{}", dm_names());
    let (fs, source, _) = mount_at(&staging(&id)).expect("staged");
    assert_eq!(fs, "ext4");
    eprintln!("staging mount source: {source}");
    assert_eq!(
        sh(&format!("blkid -p -o value -s TYPE {raw}")).trim(),
        "crypto_LUKS"
    );
    // The mapping sits on the LV (its only slave).
    let lv_dev = sh(&format!("lsblk -ndo MAJ:MIN {raw}")).trim().to_string();
    let slaves = sh(&format!(
        "cat /sys/block/$(basename $(readlink -f /dev/mapper/{map}))/slaves/*/dev"
    ));
    assert_eq!(slaves.trim(), lv_dev);
    // A repeated stage reuses the mapping.
    timed(
        "repeated NodeStage (reuse)",
        c.node
            .node_stage_volume(stage_req(&id, fs_cap(), Some(KEY))),
    )
    .await
    .unwrap();

    step("publish, write a marker and data, checksum");
    let target = PathBuf::from("/run/cry-pods/fs");
    c.node
        .node_publish_volume(publish_req(&id, fs_cap(), &target))
        .await
        .unwrap_or_else(|e| panic!("publish: {e:?}"));
    let t = target.display();
    sh(&format!(
        "for i in $(seq 200); do echo {MARKER}; done > {t}/marker && dd if=/dev/urandom of={t}/data bs=1M count=4 status=none && sync"
    ));
    let sum = sh(&format!("cd {t} && sha256sum marker data"));
    let through_mapping = marker_count(&format!("/dev/mapper/{map}"));
    let in_raw = marker_count(&raw);
    eprintln!("marker count: through the mapping {through_mapping}, in the raw LV {in_raw}");
    assert!(
        through_mapping >= 1,
        "the control: the marker is on the mapping"
    );
    assert_eq!(in_raw, 0, "the marker is in the raw LV");
    // The staged volume's record names its mapping, and no file there holds the key.
    assert_eq!(state_files_hold_no_key(1), 1);

    step("stats; snapshots of encrypted volumes are refused");
    let st = c
        .node
        .node_get_volume_stats(req::stats(&id, &t.to_string()))
        .await
        .unwrap_or_else(|e| panic!("stats: {e:?}"))
        .into_inner();
    assert!(!st.usage.is_empty());
    let e = c
        .controller
        .create_snapshot(CreateSnapshotRequest {
            source_volume_id: id.clone(),
            name: "cry-snap".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("encrypted"), "{e:?}");

    step("expansion: lvextend, cryptsetup resize (keyed by the node-expand secret), resize2fs");
    let size_of = |dev: &str| -> u64 {
        sh(&format!("blockdev --getsize64 {dev}"))
            .trim()
            .parse()
            .unwrap()
    };
    let fs_size = || -> u64 {
        sh(&format!("df -B1 --output=size {t} | tail -1"))
            .trim()
            .parse()
            .unwrap()
    };
    let (map_before, fs_before) = (size_of(&format!("/dev/mapper/{map}")), fs_size());
    let r = c
        .controller
        .controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: id.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes: 128 * MIB,
                limit_bytes: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("controller expand: {e:?}"))
        .into_inner();
    assert!(r.node_expansion_required);
    let expand = |key: Option<&str>| NodeExpandVolumeRequest {
        volume_id: id.clone(),
        volume_path: t.to_string(),
        capacity_range: Some(CapacityRange {
            required_bytes: 128 * MIB,
            limit_bytes: 0,
        }),
        secrets: key.map(secrets).unwrap_or_default(),
        ..Default::default()
    };
    let e = c.node.node_expand_volume(expand(None)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    // Only informative: whether resize checks the key depends on where cryptsetup keeps
    // the volume key (kernel keyring or not); a wrong key can only fail, never harm.
    let wrong = c.node.node_expand_volume(expand(Some(WRONG))).await;
    eprintln!(
        "NodeExpand with a wrong key: {:?}",
        wrong.map_err(|e| e.code())
    );
    timed(
        "NodeExpand (cryptsetup resize + resize2fs)",
        c.node.node_expand_volume(expand(Some(KEY))),
    )
    .await
    .unwrap_or_else(|e| panic!("node expand: {e:?}"));
    let (map_after, fs_after) = (size_of(&format!("/dev/mapper/{map}")), fs_size());
    eprintln!(
        "mapping {map_before} -> {map_after} bytes, filesystem {fs_before} -> {fs_after} bytes"
    );
    assert_eq!(
        map_after - map_before,
        64 * MIB as u64,
        "the mapping grew with the LV"
    );
    assert!(
        fs_after > fs_before + 32 * MIB as u64,
        "the filesystem grew"
    );
    assert_eq!(sh(&format!("cd {t} && sha256sum marker data")), sum);

    step("unpublish, unstage: mapping closed");
    c.node
        .node_unpublish_volume(req::unpublish(&id, &t.to_string()))
        .await
        .unwrap();
    timed(
        "NodeUnstage (umount + close)",
        c.node
            .node_unstage_volume(req::unstage(&id, &staging(&id).display().to_string())),
    )
    .await
    .unwrap_or_else(|e| panic!("unstage: {e:?}"));
    assert!(!dm_names().lines().any(|l| l == map), "{}", dm_names());
    assert_eq!(mount_at(&staging(&id)), None);

    step("wrong key: FAILED_PRECONDITION, lvs / dmsetup / mounts unchanged");
    let before = snapshot_of_state();
    let e = timed(
        "NodeStage with a wrong key",
        c.node
            .node_stage_volume(stage_req(&id, fs_cap(), Some(WRONG))),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    eprintln!("wrong key answer: {}", e.message());
    assert_eq!(snapshot_of_state(), before);
    assert_eq!(
        sh(&format!("blkid -p -o value -s TYPE {raw}")).trim(),
        "crypto_LUKS"
    );

    step("restage with the key: the same data");
    timed(
        "NodeStage of the existing LUKS volume (open)",
        c.node
            .node_stage_volume(stage_req(&id, fs_cap(), Some(KEY))),
    )
    .await
    .unwrap_or_else(|e| panic!("restage: {e:?}"));
    let again = sh(&format!(
        "cd {} && sha256sum marker data",
        staging(&id).display()
    ));
    assert_eq!(again, sum);

    step("raw block on raid1: the mapping is published, not the LV");
    let bid = create(
        &mut c,
        "cry-blk",
        req::block_cap(Mode::SingleNodeWriter),
        &[("type", "raid1")],
    )
    .await;
    let bmap = mapping(&bid);
    c.node
        .node_stage_volume(stage_req(
            &bid,
            req::block_cap(Mode::SingleNodeWriter),
            Some(KEY),
        ))
        .await
        .unwrap_or_else(|e| panic!("stage block: {e:?}"));
    let btarget = PathBuf::from("/run/cry-pods/blk");
    c.node
        .node_publish_volume(publish_req(
            &bid,
            req::block_cap(Mode::SingleNodeWriter),
            &btarget,
        ))
        .await
        .unwrap_or_else(|e| panic!("publish block: {e:?}"));
    let published = sh(&format!("stat -c %t:%T {}", btarget.display()));
    let mapped = sh(&format!("stat -L -c %t:%T /dev/mapper/{bmap}"));
    assert_eq!(published, mapped, "the publish is the mapping's device");
    sh(&format!(
        "for i in $(seq 100); do echo {MARKER}; done | dd of={} bs=4k conv=fsync status=none",
        btarget.display()
    ));
    let (through, raw_count) = (
        marker_count(&format!("/dev/mapper/{bmap}")),
        marker_count(&format!("/dev/{bid}")),
    );
    eprintln!("raid1 block marker count: through the mapping {through}, in the raw LV {raw_count}");
    assert!(through >= 1);
    assert_eq!(raw_count, 0, "marker in the raw raid1 LV");
    assert_eq!(
        state_files_hold_no_key(2),
        2,
        "both staged volumes' records"
    );
    c.node
        .node_unpublish_volume(req::unpublish(&bid, &btarget.display().to_string()))
        .await
        .unwrap();
    c.node
        .node_unstage_volume(req::unstage(&bid, &staging(&bid).display().to_string()))
        .await
        .unwrap_or_else(|e| panic!("unstage block: {e:?}"));
    assert!(!dm_names().lines().any(|l| l == bmap), "{}", dm_names());

    step("simulated reboot: the reviver leaves the encrypted volume to kubelet");
    drop(c);
    drop(d);
    sh(&format!(
        "umount {} && cryptsetup close {map}",
        staging(&id).display()
    ));
    let before = snapshot_of_state();
    let out = run_program(
        &bin("reviver"),
        &[
            "--state-dir",
            STATE,
            "--volume-group",
            VG,
            "--wait-timeout",
            "30s",
        ],
    );
    assert_eq!(out.code, 0, "reviver: {}", out.stderr);
    assert!(
        out.stdout.contains("needs key, left to kubelet"),
        "{}",
        out.stdout
    );
    assert_eq!(snapshot_of_state(), before, "the reviver changed nothing");

    step("kubelet's NodeStage after the reboot, with the key");
    let d = start_driver(2);
    let mut c = clients(&d.socket).await;
    wait_probe_ready(&mut c).await;
    c.node
        .node_stage_volume(stage_req(&id, fs_cap(), Some(KEY)))
        .await
        .unwrap_or_else(|e| panic!("stage after reboot: {e:?}"));
    let again = sh(&format!(
        "cd {} && sha256sum marker data",
        staging(&id).display()
    ));
    assert_eq!(again, sum);
    c.node
        .node_unstage_volume(req::unstage(&id, &staging(&id).display().to_string()))
        .await
        .unwrap();
    assert!(!dm_names().lines().any(|l| l == map));
    drop(d);
}
