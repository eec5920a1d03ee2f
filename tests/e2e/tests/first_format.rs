//! A crash during a volume's first format never bricks it (issue #23), in a real kernel.
//!
//! The VG's PV is a dm-delay device, so that mkfs takes long enough to be killed at chosen
//! points: at its exec, once mkfs.xfs has written its "in progress" superblock, and part
//! of the way through. At each point the driver and its mkfs child are killed with
//! SIGKILL (the runner's children share the driver's process group but not its death, so
//! both are killed by pid); the reviver then must not mount the half-made volume; a new
//! driver's first NodeStage retry must succeed, the volume must hold data written after,
//! survive a restage, and pass `xfs_repair -n` / `e2fsck -fn`. Volumes with a complete
//! filesystem and data under a first-format mark (a local mark file, a shared VG's tag)
//! are mounted, never formatted (checksums); another signature under a mark is refused
//! with blkid's finding and left as it was. A crash between ControllerExpand and
//! NodeExpand converges on NodeExpand's retry. Every step's duration is printed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tonic::Code;
use vglet_csi_proto::v1::volume_capability::access_mode::Mode;
use vglet_csi_proto::v1::*;
use vglet_e2e::{
    Clients, DriverProcess, bin, clients, in_guest, lvs, mount_at, req, rpc, run_guest_test,
    run_program, sh, wait_probe_ready,
};

const VG: &str = "ffvg";
const MIB: i64 = 1 << 20;
const STATE: &str = "/run/vglet/ff-state";
const SOCKET: &str = "/run/vglet/ff.sock";

#[test]
fn first_format_crashes_in_guest() {
    if in_guest() {
        return;
    }
    bin("reviver");
    let vm = vglet_vmh::Vm::new("e2e-firstfmt")
        .mem_mib(1536)
        .cpus(2)
        .fresh_disk("d1", 3 << 30)
        .modules(["dm_mod", "dm_delay", "ext4", "xfs"])
        .udev(false)
        .timeout(Duration::from_secs(900));
    run_guest_test("guest_first_format_crashes", vm);
}

fn step(s: &str) {
    eprintln!("\n--- first_format: {s}");
}

/// Sectors of the disk under the delay target.
fn disk_sectors() -> u64 {
    sh("blockdev --getsz /dev/vda").trim().parse().unwrap()
}

/// The PV's dm table: the disk from 1 MiB on (so that the PV label inside it is not also
/// seen on /dev/vda itself, a duplicate PV), every read and write delayed by `ms`.
fn table(ms: u32) -> String {
    format!("0 {} delay /dev/vda 2048 {ms}", disk_sectors() - 2048)
}

/// Sets the delay of every read and write of the PV (0: none).
fn set_delay(ms: u32) {
    sh(&format!(
        "dmsetup suspend slow && dmsetup reload slow --table '{}' && dmsetup resume slow",
        table(ms)
    ));
}

fn fs_cap(fs: &str) -> VolumeCapability {
    req::mount_cap(fs, &[], Mode::SingleNodeWriter)
}

async fn create(c: &mut Clients, name: &str, bytes: i64, fs: &str) -> String {
    c.controller
        .create_volume(CreateVolumeRequest {
            name: name.into(),
            capacity_range: Some(CapacityRange {
                required_bytes: bytes,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![fs_cap(fs)],
            parameters: HashMap::from([("volumeGroup".to_string(), VG.to_string())]),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e:?}"))
        .into_inner()
        .volume
        .unwrap()
        .volume_id
}

fn stage_req(id: &str, fs: &str) -> NodeStageVolumeRequest {
    NodeStageVolumeRequest {
        volume_id: id.into(),
        staging_target_path: staging(id).display().to_string(),
        volume_capability: Some(fs_cap(fs)),
        ..Default::default()
    }
}

fn staging(id: &str) -> PathBuf {
    PathBuf::from(format!("/run/ff-staging/{}", lv_of(id)))
}

fn lv_of(id: &str) -> &str {
    id.split_once('/').unwrap().1
}

fn dev(id: &str) -> String {
    format!("/dev/{id}")
}

fn mark_path(id: &str) -> PathBuf {
    Path::new(STATE)
        .join("formatting")
        .join(format!("{}.json", id.replace('/', "%2F")))
}

fn lv_uuid(id: &str) -> String {
    sh(&format!("lvs --noheadings -o lv_uuid {id}"))
        .trim()
        .to_string()
}

/// A first-format mark as the driver writes it, for a volume whose format never began
/// here: the driver must treat it like its own.
fn write_mark(id: &str, fs: &str, started_unix: u64) {
    let m = serde_json::json!({
        "version": 1, "volume_id": id, "lv_uuid": lv_uuid(id), "fs_type": fs,
        "started_unix": started_unix,
    });
    std::fs::create_dir_all(Path::new(STATE).join("formatting")).unwrap();
    std::fs::write(mark_path(id), m.to_string()).unwrap();
}

fn checksum(path: &str) -> String {
    sh(&format!("sha256sum {path}"))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Writes 4 MiB of random data into the mounted volume; its checksum.
fn write_data(id: &str) -> String {
    let f = staging(id).join("data");
    sh(&format!(
        "dd if=/dev/urandom of={} bs=1M count=4 status=none conv=fsync",
        f.display()
    ));
    checksum(&f.display().to_string())
}

fn data_checksum(id: &str) -> String {
    checksum(&staging(id).join("data").display().to_string())
}

/// Pids whose command name is `comm`.
fn pids_named(pred: impl Fn(&str) -> bool) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(comm) = std::fs::read_to_string(e.path().join("comm"))
            && pred(comm.trim())
        {
            out.push(pid);
        }
    }
    out
}

fn is_mkfs(comm: &str) -> bool {
    comm.starts_with("mkfs.") || comm == "mke2fs"
}

/// The write system calls `pid` made so far (0 once it is gone).
fn write_calls(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("syscw:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
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

fn start_driver(n: usize) -> (DriverProcess, PathBuf) {
    let log = PathBuf::from(format!("/tmp/ff-driver-{n}.log"));
    let d = DriverProcess::start_logged(
        &[
            "--mode",
            "all",
            "--node-id",
            "ff-node",
            "--volume-group",
            VG,
            "--state-dir",
            STATE,
        ],
        Path::new(SOCKET),
        &log,
    );
    (d, log)
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

/// Whether any mount's device is `dev` (by device numbers).
fn mounted_anywhere(dev: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let rdev = std::fs::metadata(dev).unwrap().rdev();
    let numbers = format!("{}:{}", libc::major(rdev), libc::minor(rdev));
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(2) == Some(numbers.as_str()))
}

fn xfs_in_progress(dev: &str) -> bool {
    let h = head_of(dev);
    &h[..4] == b"XFSB" && h[126] != 0
}

#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// As soon as mkfs exists.
    Exec,
    /// Once the xfs primary superblock says "in progress" (the state of issue #23).
    XfsInProgress,
    /// Once mkfs made this many write system calls (`syscw` in /proc/PID/io): a point
    /// inside mkfs that does not depend on timing (strace on the host: mkfs.xfs makes 65
    /// writes on 320 MiB, mke2fs 318).
    Writes(u64),
}

struct Timings {
    lines: Vec<String>,
}

impl Timings {
    fn note(&mut self, what: String, d: Duration) {
        let line = format!("{what}: {:.2} s", d.as_secs_f64());
        eprintln!("TIMING {line}");
        self.lines.push(line);
    }
}

#[test]
#[ignore = "runs inside the QEMU guest through first_format_crashes_in_guest"]
fn guest_first_format_crashes() {
    assert!(in_guest(), "run through first_format_crashes_in_guest");
    // Without udev, dmsetup leaves the /dev/mapper node to `mknodes`.
    sh(&format!(
        "dmsetup create slow --table '{}' && dmsetup mknodes slow && pvcreate -q /dev/mapper/slow && vgcreate -q {VG} /dev/mapper/slow",
        table(0)
    ));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(scenario());
}

/// Delay per I/O (ms) while a first mkfs runs: enough for several kill points inside it.
fn delay_for(fs: &str) -> u32 {
    if fs == "xfs" { 20 } else { 8 }
}

async fn scenario() {
    let mut t = Timings { lines: Vec::new() };
    let mut boots = 0;
    let (mut driver, mut log) = start_driver(boots);
    let mut c = clients(Path::new(SOCKET)).await;
    wait_probe_ready(&mut c).await;

    step("reference volumes: a whole mkfs on the slowed PV, then data");
    let mut keep = Vec::new();
    for fs in ["xfs", "ext4"] {
        let id = create(&mut c, &format!("keep-{fs}"), 320 * MIB, fs).await;
        set_delay(delay_for(fs));
        let t0 = Instant::now();
        c.node.node_stage_volume(stage_req(&id, fs)).await.unwrap();
        let d = t0.elapsed();
        set_delay(0);
        t.note(
            format!("{fs}: first NodeStage with mkfs, {} ms/IO", delay_for(fs)),
            d,
        );
        assert!(!mark_path(&id).exists(), "the mark is gone after the stage");
        let sum = write_data(&id);
        keep.push((id, fs, sum));
    }

    step("a raw block volume has nothing to format: no mark, nothing written");
    let raw = c
        .controller
        .create_volume(CreateVolumeRequest {
            name: "raw".into(),
            capacity_range: Some(CapacityRange {
                required_bytes: 64 * MIB,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![req::block_cap(Mode::SingleNodeWriter)],
            parameters: HashMap::from([("volumeGroup".to_string(), VG.to_string())]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
        .volume_id;
    c.node
        .node_stage_volume(NodeStageVolumeRequest {
            volume_id: raw.clone(),
            staging_target_path: staging(&raw).display().to_string(),
            volume_capability: Some(req::block_cap(Mode::SingleNodeWriter)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!mark_path(&raw).exists(), "no mark for a raw block volume");
    assert!(
        head_of(&dev(&raw)).iter().all(|b| *b == 0),
        "nothing written"
    );
    rpc::unstage(&mut c, &raw, &staging(&raw)).await;
    rpc::delete(&mut c, &raw).await.unwrap();

    step(
        "another signature under a mark (swap, ext4 asked), and a stuck mark for the start-up report",
    );
    let swap = create(&mut c, "swap", 64 * MIB, "ext4").await;
    sh(&format!("mkswap -q {}", dev(&swap)));
    let swap_sum = checksum(&dev(&swap));
    write_mark(&swap, "ext4", 1);

    let points: [(&str, KillAt); 6] = [
        ("xfs", KillAt::Exec),
        ("xfs", KillAt::XfsInProgress),
        ("xfs", KillAt::Writes(40)),
        ("ext4", KillAt::Exec),
        ("ext4", KillAt::Writes(120)),
        ("ext4", KillAt::Writes(240)),
    ];
    for (i, (fs, at)) in points.into_iter().enumerate() {
        step(&format!("{fs}: kill -9 of the driver and mkfs at {at:?}"));
        let id = create(&mut c, &format!("crash-{i}"), 320 * MIB, fs).await;
        set_delay(delay_for(fs));
        let mut node = c.node.clone();
        let req = stage_req(&id, fs);
        let stage = tokio::spawn(async move { node.node_stage_volume(req).await });
        let t0 = Instant::now();
        let mkfs = loop {
            if let Some(p) = pids_named(is_mkfs).first() {
                break *p;
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "mkfs never started");
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let exec_at = t0.elapsed();
        match at {
            KillAt::Exec => {}
            KillAt::XfsInProgress => {
                while !xfs_in_progress(&dev(&id)) {
                    assert!(
                        alive(mkfs),
                        "mkfs.xfs ended before its in-progress superblock was seen"
                    );
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            KillAt::Writes(n) => {
                while write_calls(mkfs) < n {
                    assert!(alive(mkfs), "mkfs ended before {n} writes");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        let drivers = pids_named(|c| c == "csi-driver");
        assert_eq!(drivers.len(), 1, "one driver runs: {drivers:?}");
        let mkfs_ran = t0.elapsed() - exec_at;
        let (mkfs_alive, writes) = (alive(mkfs), write_calls(mkfs));
        assert!(mkfs_alive, "the kill point is inside mkfs");
        unsafe {
            libc::kill(drivers[0], libc::SIGKILL);
            libc::kill(mkfs, libc::SIGKILL);
        }
        while alive(mkfs) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(driver);
        let err = stage
            .await
            .unwrap()
            .expect_err("the killed stage has no answer");
        eprintln!(
            "killed after {:.2} s and {writes} writes of mkfs (still running: {mkfs_alive}); the stage saw: {}",
            mkfs_ran.as_secs_f64(),
            err.message()
        );
        set_delay(0);
        let blkid = run_program(Path::new("/sbin/blkid"), &["-p", &dev(&id)]);
        eprintln!(
            "left behind: blkid exit {} {:?}; xfs in progress: {}",
            blkid.code,
            blkid.stdout.trim(),
            xfs_in_progress(&dev(&id))
        );
        assert!(
            mark_path(&id).exists(),
            "the mark was written before mkfs ran"
        );
        if matches!(at, KillAt::XfsInProgress) {
            assert!(
                xfs_in_progress(&dev(&id)),
                "the state of issue #23 is reached"
            );
        }

        if i == 0 || i == 3 {
            step("the reviver does not mount a volume whose first stage never completed");
            let t1 = Instant::now();
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
            t.note("reviver pass".into(), t1.elapsed());
            assert_eq!(out.code, 0, "reviver: {}", out.stderr);
            assert_eq!(mount_at(&staging(&id)), None, "not mounted by the reviver");
            assert!(
                !mounted_anywhere(&dev(&id)),
                "the half-made volume is mounted nowhere"
            );
            for (k, _, _) in &keep {
                assert!(mount_at(&staging(k)).is_some(), "{k} is still staged");
            }
        }

        boots += 1;
        (driver, log) = start_driver(boots);
        c = clients(Path::new(SOCKET)).await;
        wait_probe_ready(&mut c).await;
        let t1 = Instant::now();
        c.node
            .node_stage_volume(stage_req(&id, fs))
            .await
            .unwrap_or_else(|e| panic!("the first retry after the crash must succeed: {e:?}"));
        t.note(format!("{fs} {at:?}: retried NodeStage"), t1.elapsed());
        let m = mount_at(&staging(&id)).expect("staged");
        assert_eq!(m.0, fs);
        assert!(
            !mark_path(&id).exists(),
            "the mark is cleared after mkfs and mount"
        );
        let sum = write_data(&id);
        rpc::unstage(&mut c, &id, &staging(&id)).await;
        let t2 = Instant::now();
        if fs == "xfs" {
            sh(&format!("xfs_repair -n {}", dev(&id)));
        } else {
            sh(&format!("e2fsck -fn {}", dev(&id)));
        }
        t.note(format!("{fs}: fsck -n"), t2.elapsed());
        c.node.node_stage_volume(stage_req(&id, fs)).await.unwrap();
        assert_eq!(
            data_checksum(&id),
            sum,
            "data written after the retry stays"
        );
        rpc::unstage(&mut c, &id, &staging(&id)).await;
        rpc::delete(&mut c, &id).await.unwrap();
        if i == 0 {
            let text = std::fs::read_to_string(&log).unwrap();
            assert!(
                text.lines()
                    .any(|l| l.contains("never finished") && l.contains(&swap)),
                "the start-up reports the stuck mark of {swap}"
            );
        }
    }

    step("a complete filesystem with data under a mark is mounted, never formatted");
    for (k, (id, fs, sum)) in keep.iter().enumerate() {
        rpc::unstage(&mut c, id, &staging(id)).await;
        if k == 0 {
            write_mark(id, fs, 1);
        } else {
            // The shared VG's form of the mark, on this local VG's LV: it is read the same.
            sh(&format!("lvchange -q --addtag vglet.formatting=1 {id}"));
        }
        c.node.node_stage_volume(stage_req(id, fs)).await.unwrap();
        assert_eq!(&data_checksum(id), sum, "{id}: data intact");
        assert!(!mark_path(id).exists(), "{id}: mark file cleared");
        let tags = lvs(VG).into_iter().find(|l| l.0 == lv_of(id)).unwrap().2;
        assert!(
            !tags.contains("vglet.formatting"),
            "{id}: tag cleared: {tags}"
        );
    }

    step("another signature under a mark: refused with blkid's finding, nothing changed");
    let e = c
        .node
        .node_stage_volume(stage_req(&swap, "ext4"))
        .await
        .unwrap_err();
    eprintln!("{}", e.message());
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("swap"), "{}", e.message());
    assert_eq!(checksum(&dev(&swap)), swap_sum, "device untouched");
    assert!(mark_path(&swap).exists());

    step("DeleteVolume removes the mark");
    rpc::delete(&mut c, &swap).await.unwrap();
    assert!(!mark_path(&swap).exists());

    step("crash between ControllerExpand and NodeExpand: the retried NodeExpand converges");
    for (id, fs, sum) in &keep {
        let before = sh(&format!(
            "df -B1 --output=size {} | tail -1",
            staging(id).display()
        ));
        let size = 640 * MIB;
        c.controller
            .controller_expand_volume(ControllerExpandVolumeRequest {
                volume_id: id.clone(),
                capacity_range: Some(CapacityRange {
                    required_bytes: size,
                    limit_bytes: 0,
                }),
                volume_capability: Some(fs_cap(fs)),
                ..Default::default()
            })
            .await
            .unwrap();
        unsafe {
            libc::kill(pids_named(|c| c == "csi-driver")[0], libc::SIGKILL);
        }
        drop(driver);
        boots += 1;
        (driver, log) = start_driver(boots);
        c = clients(Path::new(SOCKET)).await;
        wait_probe_ready(&mut c).await;
        let t1 = Instant::now();
        c.node
            .node_expand_volume(NodeExpandVolumeRequest {
                volume_id: id.clone(),
                volume_path: staging(id).display().to_string(),
                capacity_range: Some(CapacityRange {
                    required_bytes: size,
                    limit_bytes: 0,
                }),
                staging_target_path: staging(id).display().to_string(),
                volume_capability: Some(fs_cap(fs)),
                ..Default::default()
            })
            .await
            .unwrap();
        t.note(format!("{fs}: NodeExpand after the restart"), t1.elapsed());
        let after = sh(&format!(
            "df -B1 --output=size {} | tail -1",
            staging(id).display()
        ));
        let (b, a): (u64, u64) = (
            before.trim().parse().unwrap(),
            after.trim().parse().unwrap(),
        );
        assert!(a > b + 250 * MIB as u64, "{id}: grew from {b} to {a}");
        assert_eq!(&data_checksum(id), sum);
        rpc::unstage(&mut c, id, &staging(id)).await;
        rpc::delete(&mut c, id).await.unwrap();
    }
    let _ = log;
    drop(driver);
    eprintln!("\nTIMINGS\n{}", t.lines.join("\n"));
}
