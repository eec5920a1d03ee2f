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
//! Snapshots of an encrypted volume are refused.
//!
//! Crashes of the first format: the driver and its cryptsetup are killed with SIGKILL once
//! luksFormat has written its header and is computing its key slot's PBKDF (cryptsetup's
//! default cost, the only driver here without the `--luks-*` cost flags), and the driver
//! and mkfs on the mapping at mkfs's start: the first-format mark is there, the retry's
//! NodeStage succeeds, data written after it reads back after a restage.
//!
//! Key rotation: a stage whose secret carries the new `passphrase` and the old key as
//! `previousPassphrase`, killed (driver and cryptsetup) between luksAddKey and
//! luksKillSlot, leaves both keys opening the volume; the retry converges: the old key no
//! longer opens it, the new one does, the data is intact. A wrong node-expand key is
//! FAILED_PRECONDITION with LV, mapping and filesystem sizes unchanged. A thin volume is
//! encrypted like the others; refusals (fsdax, an unknown encryption, a clone) name their
//! reason. Throughout, /proc/*/cmdline is sampled and must never show a key; the driver's
//! TRACE logs and every file under the state directory must not hold one either.

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
const NEW: &str = "e2e-New-Key-R0tat3d-4hWqTz";
const KEYS: [&str; 3] = [KEY, WRONG, NEW];
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
            "dm_thin_pool",
            "ext4",
        ])
        // cryptsetup leaves /dev/mapper/<name> to udev.
        .udev(true)
        // 880 s were measured on a host loaded with four builds (load 10 on 2 cores).
        .timeout(Duration::from_secs(1500));
    run_guest_test("guest_encryption", vm);
}

#[test]
#[ignore = "runs inside the QEMU guest through encryption_in_guest"]
fn guest_encryption() {
    assert!(in_guest(), "run through encryption_in_guest");
    sh(&format!(
        "pvcreate -q /dev/vda /dev/vdb && vgcreate -q {VG} /dev/vda /dev/vdb && lvcreate -q -y --type thin-pool -n pool0 -L 128m {VG}"
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
                        if KEYS.iter().any(|k| text.contains(k)) {
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
    let logs = sh("ls /tmp/cry-driver-*.log");
    assert!(logs.lines().count() >= 5, "{logs}");
    for log in logs.lines() {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(text.contains("TRACE"), "{log} is at trace");
        assert!(!KEYS.iter().any(|k| text.contains(k)), "key in {log}");
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
        assert!(!KEYS.iter().any(|k| text.contains(k)), "key in {f}");
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

/// A driver logging at TRACE to /tmp/cry-driver-`n`.log. `cheap`: the key slots it writes
/// cost the least cryptsetup allows (`--luks-pbkdf-memory 32`... see below) instead of
/// cryptsetup's benchmarked default, which takes about 15 s per luksFormat in this guest.
fn start_driver(n: usize, cheap: bool) -> DriverProcess {
    let log = PathBuf::from(format!("/tmp/cry-driver-{n}.log"));
    let mut args = vec![
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
    ];
    if cheap {
        args.extend([
            "--luks-pbkdf-memory",
            "32768",
            "--luks-pbkdf-iterations",
            "4",
        ]);
    }
    DriverProcess::start_logged(&args, Path::new(SOCKET), &log)
}

/// Pids whose argv matches `pred` (the words of /proc/PID/cmdline).
fn pids_with(pred: impl Fn(&[&str]) -> bool) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&c);
            let words: Vec<&str> = text.split('\0').filter(|w| !w.is_empty()).collect();
            if pred(&words) {
                out.push(pid);
            }
        }
    }
    out
}

fn cryptsetup_doing(verb: &str) -> Option<i32> {
    pids_with(|w| w.first().is_some_and(|p| p.ends_with("cryptsetup")) && w.contains(&verb))
        .first()
        .copied()
}

fn alive(pid: i32) -> bool {
    // A zombie is dead for our purpose: it no longer writes.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Waits (polling every ms) for a process `find` names; panics after 60 s.
async fn wait_for(what: &str, find: impl Fn() -> Option<i32>) -> i32 {
    let t0 = Instant::now();
    loop {
        if let Some(p) = find() {
            return p;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "{what} never ran");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// SIGKILL of the one running driver and of `child` at once (a node crash, a killed pod:
/// the driver's children do not die with it otherwise), then waits until both are gone.
async fn kill_driver_and(child: i32) {
    let drivers = pids_with(|w| w.first().is_some_and(|p| p.ends_with("/csi-driver")));
    assert_eq!(drivers.len(), 1, "one driver runs: {drivers:?}");
    unsafe {
        libc::kill(drivers[0], libc::SIGKILL);
        libc::kill(child, libc::SIGKILL);
    }
    while alive(child) || alive(drivers[0]) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The first 4 KiB of a device, read past the page cache.
fn head_of(dev: &str) -> Vec<u8> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    #[repr(C, align(4096))]
    struct Block([u8; 4096]);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(dev)
        .unwrap();
    let mut b = Box::new(Block([0; 4096]));
    f.read_exact(&mut b.0).unwrap();
    b.0.to_vec()
}

/// The LUKS header's key slots (`None`: cryptsetup reads no header).
fn key_slots(dev: &str) -> Option<usize> {
    // Not through run_program: its echo of the whole JSON would fill the log.
    let out = std::process::Command::new("/sbin/cryptsetup")
        .args(["luksDump", "--dump-json-metadata", dev])
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Some(v["keyslots"].as_object().unwrap().len())
}

/// Whether `key` opens the LUKS header on `dev` (fed on stdin, never in argv).
fn key_opens(dev: &str, key: &str) -> bool {
    use std::io::Write;
    let mut child = std::process::Command::new("/sbin/cryptsetup")
        .args(["open", "--test-passphrase", "--key-file", "-", dev])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(key.as_bytes())
        .unwrap();
    let st = child.wait().unwrap();
    match st.code() {
        Some(0) => true,
        // 2: no key slot opens with this key; 1: the header has no key slot at all.
        Some(1 | 2) => false,
        c => panic!("cryptsetup --test-passphrase {dev}: exit {c:?}"),
    }
}

fn mark_path(id: &str) -> PathBuf {
    Path::new(STATE)
        .join("formatting")
        .join(format!("{}.json", id.replace('/', "%2F")))
}

async fn connect(d: &DriverProcess) -> Clients {
    let mut c = clients(&d.socket).await;
    wait_probe_ready(&mut c).await;
    c
}

/// Writes a marker file and random data at `dir`; their checksums.
fn write_data(dir: &Path) -> String {
    let t = dir.display();
    sh(&format!(
        "for i in $(seq 50); do echo {MARKER}; done > {t}/marker && dd if=/dev/urandom of={t}/data bs=1M count=2 status=none && sync"
    ));
    sh(&format!("cd {t} && sha256sum marker data"))
}

fn sums_at(dir: &Path) -> String {
    sh(&format!("cd {} && sha256sum marker data", dir.display()))
}

fn rotation_secrets() -> HashMap<String, String> {
    HashMap::from([
        ("passphrase".to_string(), NEW.to_string()),
        ("previousPassphrase".to_string(), KEY.to_string()),
    ])
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

/// kill -9 of the driver and cryptsetup inside the first luksFormat, with cryptsetup's
/// default PBKDF cost (a driver without the cost flags); then of the driver and mkfs on
/// the mapping. Each retry's NodeStage succeeds; returns the driver that did it.
async fn first_format_crashes() -> (DriverProcess, Clients) {
    step("kill -9 of the driver and cryptsetup during the first luksFormat");
    let d = start_driver(0, false);
    let mut c = connect(&d).await;
    let id = create(&mut c, "cry-crash", fs_cap(), &[]).await;
    let raw = format!("/dev/{id}");
    let mut node = c.node.clone();
    let r = stage_req(&id, fs_cap(), Some(KEY));
    let stage = tokio::spawn(async move { node.node_stage_volume(r).await });
    let t0 = Instant::now();
    let pid = wait_for("luksFormat", || cryptsetup_doing("luksFormat")).await;
    // Until its header is on the disk: from then on cryptsetup computes the key slot's
    // PBKDF, nearly all of luksFormat's time.
    while !head_of(&raw).starts_with(b"LUKS\xba\xbe") {
        assert!(alive(pid), "luksFormat ended before its header was seen");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let header_at = t0.elapsed();
    assert!(alive(pid), "the kill point is inside luksFormat");
    kill_driver_and(pid).await;
    drop(d);
    let e = stage
        .await
        .unwrap()
        .expect_err("the killed stage has no answer");
    eprintln!(
        "killed {:.2} s into the stage, once the LUKS header was written; the stage saw: {}",
        header_at.as_secs_f64(),
        e.message()
    );
    assert!(
        mark_path(&id).exists(),
        "the mark was written before luksFormat"
    );
    assert_eq!(
        key_slots(&raw),
        Some(0),
        "an interrupted luksFormat leaves a header without a key slot"
    );
    assert!(!key_opens(&raw, KEY), "no key opens that header");

    let d = start_driver(1, true);
    let mut c = connect(&d).await;
    timed(
        "NodeStage after the crash (luksFormat again + open + mkfs)",
        c.node
            .node_stage_volume(stage_req(&id, fs_cap(), Some(KEY))),
    )
    .await
    .unwrap_or_else(|e| panic!("the first retry after the crash must succeed: {e:?}"));
    assert!(
        !mark_path(&id).exists(),
        "the mark goes after mkfs and the mount"
    );
    assert_eq!(key_slots(&raw), Some(1));
    assert_eq!(
        mount_at(&staging(&id)).map(|m| m.0).as_deref(),
        Some("ext4")
    );
    let sum = write_data(&staging(&id));
    unstage(&mut c, &id).await;
    c.node
        .node_stage_volume(stage_req(&id, fs_cap(), Some(KEY)))
        .await
        .unwrap_or_else(|e| panic!("restage: {e:?}"));
    assert_eq!(
        sums_at(&staging(&id)),
        sum,
        "the data reads back after a restage"
    );
    assert_eq!(key_slots(&raw), Some(1), "never formatted again");
    unstage(&mut c, &id).await;

    step("kill -9 of the driver and mkfs on the mapping");
    let id = create(&mut c, "cry-mkfs", fs_cap(), &[]).await;
    let mut node = c.node.clone();
    let r = stage_req(&id, fs_cap(), Some(KEY));
    let stage = tokio::spawn(async move { node.node_stage_volume(r).await });
    let mkfs = wait_for("mkfs on the mapping", || {
        pids_with(|w| {
            w.first()
                .is_some_and(|p| p.contains("mkfs.") || p.ends_with("mke2fs"))
                && w.iter().any(|a| a.starts_with("/dev/mapper/"))
        })
        .first()
        .copied()
    })
    .await;
    kill_driver_and(mkfs).await;
    drop(d);
    let _ = stage
        .await
        .unwrap()
        .expect_err("the killed stage has no answer");
    assert!(mark_path(&id).exists(), "the mark is there through mkfs");
    assert!(
        dm_names().lines().any(|l| l == mapping(&id)),
        "the crash left the mapping open: {}",
        dm_names()
    );
    let d = start_driver(2, true);
    let mut c = connect(&d).await;
    timed(
        "NodeStage after the crash in mkfs (reuse the mapping, mkfs again)",
        c.node
            .node_stage_volume(stage_req(&id, fs_cap(), Some(KEY))),
    )
    .await
    .unwrap_or_else(|e| panic!("the first retry after the crash must succeed: {e:?}"));
    assert!(!mark_path(&id).exists());
    let sum = write_data(&staging(&id));
    unstage(&mut c, &id).await;
    assert!(!dm_names().lines().any(|l| l == mapping(&id)));
    c.node
        .node_stage_volume(stage_req(&id, fs_cap(), Some(KEY)))
        .await
        .unwrap();
    assert_eq!(sums_at(&staging(&id)), sum);
    unstage(&mut c, &id).await;
    (d, c)
}

async fn unstage(c: &mut Clients, id: &str) {
    c.node
        .node_unstage_volume(req::unstage(id, &staging(id).display().to_string()))
        .await
        .unwrap_or_else(|e| panic!("unstage {id}: {e:?}"));
}

/// Key rotation of the unstaged volume `id` from KEY to NEW, killed once between
/// luksAddKey and luksKillSlot; returns the driver that finished it.
async fn rotation(d: DriverProcess, c: Clients, id: &str, sum: &str) -> (DriverProcess, Clients) {
    let raw = format!("/dev/{id}");
    step("key rotation, killed between luksAddKey and luksKillSlot");
    let rotate = NodeStageVolumeRequest {
        secrets: rotation_secrets(),
        ..stage_req(id, fs_cap(), None)
    };
    let mut node = c.node.clone();
    let r = rotate.clone();
    let stage = tokio::spawn(async move { node.node_stage_volume(r).await });
    let pid = wait_for("luksKillSlot", || cryptsetup_doing("luksKillSlot")).await;
    // Stopped at once, so that it removes nothing before the kill.
    unsafe {
        libc::kill(pid, libc::SIGSTOP);
    }
    kill_driver_and(pid).await;
    drop(d);
    drop(c);
    let _ = stage
        .await
        .unwrap()
        .expect_err("the killed stage has no answer");
    assert!(
        key_opens(&raw, KEY),
        "after luksAddKey the old key still opens"
    );
    assert!(key_opens(&raw, NEW), "after luksAddKey the new key opens");
    assert_eq!(key_slots(&raw), Some(2));

    let d = start_driver(3, true);
    let mut c = connect(&d).await;
    timed(
        "NodeStage retrying the rotation (luksKillSlot + open)",
        c.node.node_stage_volume(rotate.clone()),
    )
    .await
    .unwrap_or_else(|e| panic!("the rotation's retry must succeed: {e:?}"));
    assert!(
        !key_opens(&raw, KEY),
        "the old key no longer opens the volume"
    );
    assert!(key_opens(&raw, NEW), "the new key opens it");
    assert_eq!(key_slots(&raw), Some(1));
    assert_eq!(sums_at(&staging(id)), sum, "the data is intact");
    unstage(&mut c, id).await;

    step("after the rotation: the old key alone is refused, the new one stages");
    let before = snapshot_of_state();
    let e = c
        .node
        .node_stage_volume(stage_req(id, fs_cap(), Some(KEY)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert_eq!(snapshot_of_state(), before);
    // The rotation's secret left in place: checks only, nothing changes.
    timed(
        "NodeStage with the rotation's secret after it converged",
        c.node.node_stage_volume(rotate),
    )
    .await
    .unwrap();
    assert_eq!(key_slots(&raw), Some(1));
    assert_eq!(sums_at(&staging(id)), sum);
    unstage(&mut c, id).await;
    c.node
        .node_stage_volume(stage_req(id, fs_cap(), Some(NEW)))
        .await
        .unwrap_or_else(|e| panic!("stage with the new key: {e:?}"));
    assert_eq!(sums_at(&staging(id)), sum);
    (d, c)
}

/// An encrypted thin volume: ciphertext in the raw LV, the data back after a restage.
async fn thin(c: &mut Clients) {
    step("thin + encryption");
    let id = create(
        c,
        "cry-thin",
        fs_cap(),
        &[("type", "thin"), ("thinPool", "pool0")],
    )
    .await;
    let segtype = sh(&format!("lvs --noheadings -o segtype {VG}/{}", lv_of(&id)));
    assert_eq!(segtype.trim(), "thin");
    c.node
        .node_stage_volume(stage_req(&id, fs_cap(), Some(KEY)))
        .await
        .unwrap_or_else(|e| panic!("stage thin: {e:?}"));
    let sum = write_data(&staging(&id));
    let (through, raw) = (
        marker_count(&format!("/dev/mapper/{}", mapping(&id))),
        marker_count(&format!("/dev/{id}")),
    );
    eprintln!("thin marker count: through the mapping {through}, in the raw LV {raw}");
    assert!(through >= 1);
    assert_eq!(raw, 0, "marker in the raw thin LV");
    unstage(c, &id).await;
    assert!(!dm_names().lines().any(|l| l == mapping(&id)));
    c.node
        .node_stage_volume(stage_req(&id, fs_cap(), Some(KEY)))
        .await
        .unwrap();
    assert_eq!(sums_at(&staging(&id)), sum);
    unstage(c, &id).await;
}

/// What cannot work is refused at CreateVolume with the reason, and nothing is created.
async fn refusals(c: &mut Clients, encrypted: &str) {
    step("refusals: fsdax, an unknown encryption, a clone of an encrypted volume");
    let before = lvs(VG);
    let ask = |name: &str, extra: &[(&str, &str)]| {
        let mut r = req::create_volume(name, 64 * MIB, fs_cap(), VG);
        for (k, v) in extra {
            r.parameters.insert(k.to_string(), v.to_string());
        }
        r
    };
    let cases = [
        (
            ask("cry-dax", &[("encryption", "luks2"), ("pmemMode", "fsdax")]),
            "DAX bypasses dm-crypt",
        ),
        (
            ask("cry-luks1", &[("encryption", "luks1")]),
            "luks2 or none",
        ),
        (
            CreateVolumeRequest {
                volume_content_source: Some(VolumeContentSource {
                    r#type: Some(volume_content_source::Type::Volume(
                        volume_content_source::VolumeSource {
                            volume_id: encrypted.into(),
                        },
                    )),
                }),
                ..ask("cry-clone", &[])
            },
            "is encrypted",
        ),
    ];
    for (r, why) in cases {
        let name = r.name.clone();
        let e = c.controller.create_volume(r).await.unwrap_err();
        eprintln!("{name}: {:?} {}", e.code(), e.message());
        assert_eq!(e.code(), Code::InvalidArgument, "{name}: {e:?}");
        assert!(e.message().contains(why), "{name}: {e:?}");
    }
    assert_eq!(lvs(VG), before, "nothing created");
}

async fn scenario() {
    let t0 = Instant::now();
    let (d, mut c) = first_format_crashes().await;
    eprintln!(
        "--- encryption: crash steps took {:.1} s",
        t0.elapsed().as_secs_f64()
    );

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
    // A wrong key is checked before anything grows (cryptsetup resize alone checks it
    // only when the kernel keyring holds the volume key).
    let lv_size = || lvs(VG).into_iter().find(|l| l.0 == lv_of(&id)).unwrap().1;
    let lv_before = lv_size();
    let e = c
        .node
        .node_expand_volume(expand(Some(WRONG)))
        .await
        .unwrap_err();
    eprintln!(
        "NodeExpand with a wrong key: {:?} {}",
        e.code(),
        e.message()
    );
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("does not open"), "{e:?}");
    assert_eq!(
        (size_of(&format!("/dev/mapper/{map}")), fs_size(), lv_size()),
        (map_before, fs_before, lv_before),
        "a wrong key changes nothing"
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
    c.node
        .node_unstage_volume(req::unstage(&id, &staging(&id).display().to_string()))
        .await
        .unwrap();
    let (d, mut c) = rotation(d, c, &id, &sum).await;

    thin(&mut c).await;
    refusals(&mut c, &id).await;

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
    let d = start_driver(4, true);
    let mut c = connect(&d).await;
    c.node
        .node_stage_volume(stage_req(&id, fs_cap(), Some(NEW)))
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
