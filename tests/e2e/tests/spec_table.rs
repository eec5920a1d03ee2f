//! The CSI spec's error tables, row by row, against csi-driver `--mode all` on a real VG in
//! a guest: every Identity and Controller RPC, and the node RPCs' id and required-field
//! rows. Each row asserts the code, and the world (`lvs`, the mount table, the files and
//! the volumes' checksums) is compared before and after: a refused request changes
//! nothing. DeleteVolume of volumes in use (a raw block volume staged and published with
//! no process holding it, a mounted filesystem, a device held open by a process, a staged
//! block volume) is FAILED_PRECONDITION with the LV and its data intact.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tonic::{Code, Status};
use vglet_csi_proto::v1::volume_capability::access_mode::Mode;
use vglet_csi_proto::v1::volume_content_source::{SnapshotSource, Type, VolumeSource};
use vglet_csi_proto::v1::*;
use vglet_e2e::{
    Clients, DriverProcess, clients, in_guest, lvs, req, run_guest_test, sh, wait_probe_ready,
};

const VG: &str = "specvg";
const MIB: i64 = 1 << 20;
const STATE: &str = "/var/lib/vglet-spec/state";
/// Never issued by vglet: not of the form `<vg>/<lv>` (csi-sanity's ids).
const FAKE_VOL: &str = "fake-vol-id-12345";
const FAKE_SNAP: &str = "non-existing-snapshot-id";

#[test]
fn spec_table_in_guest() {
    if in_guest() {
        return;
    }
    let vm = vglet_vmh::Vm::new("e2e-spec-table")
        .mem_mib(1024)
        .cpus(2)
        .fresh_disk("d1", 1 << 30)
        .modules(["dm_mod", "dm_snapshot", "ext4"])
        .udev(false)
        .timeout(Duration::from_secs(600));
    run_guest_test("guest_spec_table", vm);
}

fn fs_cap() -> VolumeCapability {
    req::mount_cap("ext4", &[], Mode::SingleNodeWriter)
}

fn blk_cap() -> VolumeCapability {
    req::block_cap(Mode::SingleNodeWriter)
}

fn create_req(name: &str, bytes: i64, cap: VolumeCapability) -> CreateVolumeRequest {
    req::create_volume(name, bytes, cap, VG)
}

fn from_source(name: &str, source: Type) -> CreateVolumeRequest {
    CreateVolumeRequest {
        volume_content_source: Some(VolumeContentSource {
            r#type: Some(source),
        }),
        ..create_req(name, 8 * MIB, blk_cap())
    }
}

fn snapshot_source(id: &str) -> Type {
    Type::Snapshot(SnapshotSource {
        snapshot_id: id.into(),
    })
}

fn volume_source(id: &str) -> Type {
    Type::Volume(VolumeSource {
        volume_id: id.into(),
    })
}

fn stage_req(id: &str, staging: &Path, cap: Option<VolumeCapability>) -> NodeStageVolumeRequest {
    NodeStageVolumeRequest {
        volume_id: id.into(),
        staging_target_path: staging.display().to_string(),
        volume_capability: cap,
        ..Default::default()
    }
}

fn publish_req(
    id: &str,
    staging: &Path,
    target: &Path,
    cap: Option<VolumeCapability>,
) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: id.into(),
        staging_target_path: staging.display().to_string(),
        target_path: target.display().to_string(),
        volume_capability: cap,
        ..Default::default()
    }
}

fn node_expand_req(id: &str, path: &str) -> NodeExpandVolumeRequest {
    NodeExpandVolumeRequest {
        volume_id: id.into(),
        volume_path: path.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: 128 * MIB,
            limit_bytes: 0,
        }),
        ..Default::default()
    }
}

fn expand_req(id: &str, required: i64, limit: i64) -> ControllerExpandVolumeRequest {
    ControllerExpandVolumeRequest {
        volume_id: id.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: required,
            limit_bytes: limit,
        }),
        ..Default::default()
    }
}

fn delete_req(id: &str) -> DeleteVolumeRequest {
    DeleteVolumeRequest {
        volume_id: id.into(),
        ..Default::default()
    }
}

fn dev_of(id: &str) -> String {
    format!("/dev/{id}")
}

fn step(s: &str) {
    eprintln!("\n--- spec table: {s}");
}

/// What a refused request must leave alone.
#[derive(Debug, PartialEq, Eq)]
struct World {
    lvs: Vec<(String, u64, String)>,
    /// (mount point, fs type, source) of every mount.
    mounts: Vec<String>,
    /// Every path under the test's directories and the state directory (lock files aside:
    /// see the lock-file hygiene issue), with each regular file's checksum.
    files: Vec<String>,
    /// sha256 of each raw block volume's whole device.
    devices: Vec<String>,
}

fn world(devices: &[&str]) -> World {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut mounts: Vec<String> = info
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let g: Vec<&str> = post.split(' ').collect();
            Some(format!("{} {} {}", f[4], g[0], g[1]))
        })
        .collect();
    mounts.sort();
    // One exec each: in the guest an exec costs ~50 ms, and this runs after every node row.
    let dirs = format!("/run/spec {STATE}");
    let listing = sh(&format!(
        "find {dirs} -path '*/.locks' -prune -o -print | sort; \
         find {dirs} -path '*/.locks' -prune -o -type f -exec sha256sum {{}} + | sort"
    ));
    let files = listing.lines().map(str::to_string).collect();
    let devices = if devices.is_empty() {
        Vec::new()
    } else {
        sh(&format!("sha256sum {}", devices.join(" ")))
            .lines()
            .map(str::to_string)
            .collect()
    };
    World {
        lvs: lvs(VG),
        mounts,
        files,
        devices,
    }
}

/// The rows and their outcomes.
#[derive(Default)]
struct Table {
    failed: Vec<String>,
    rows: usize,
}

impl Table {
    fn check(&mut self, what: &str, want: Code, got: Result<(), Status>) {
        self.rows += 1;
        let (code, msg) = match &got {
            Ok(()) => (Code::Ok, String::new()),
            Err(s) => (s.code(), s.message().to_string()),
        };
        eprintln!("  {what:<70} {code:?} {msg}");
        if code != want {
            self.failed
                .push(format!("{what}: want {want:?}, got {code:?} {msg}"));
        }
    }

    fn changed(&mut self, what: &str, before: &World, after: &World) {
        if before != after {
            self.failed.push(format!(
                "{what}: the world changed:\nbefore {before:#?}\nafter {after:#?}"
            ));
        }
    }
}

/// A row: the call's code against the spec's.
macro_rules! row {
    ($t:expr, $what:expr, $code:expr, $call:expr) => {
        $t.check($what, $code, $call.await.map(drop))
    };
}

#[test]
#[ignore = "runs inside the QEMU guest through spec_table_in_guest"]
fn guest_spec_table() {
    assert!(in_guest(), "run through spec_table_in_guest");
    sh(&format!(
        "pvcreate -q /dev/vda && vgcreate -q {VG} /dev/vda"
    ));
    sh(&format!("lvcreate -q -y -n foreign -L 8M {VG}"));
    // Things a node RPC given a wrong path must not touch: a foreign tmpfs with a file, a
    // plain file.
    sh(
        "mkdir -p /run/spec/foreign-tmpfs && mount -t tmpfs spec-foreign /run/spec/foreign-tmpfs \
        && echo keep > /run/spec/foreign-tmpfs/file && echo keep > /run/spec/plain-file",
    );
    let socket = PathBuf::from("/run/vglet/spec.sock");
    let _driver = DriverProcess::start_logged(
        &[
            "--mode",
            "all",
            "--node-id",
            "spec-node",
            "--volume-group",
            VG,
            "--state-dir",
            STATE,
        ],
        &socket,
        Path::new("/tmp/spec-driver.log"),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut t = Table::default();
    rt.block_on(async {
        let mut c = clients(&socket).await;
        wait_probe_ready(&mut c).await;
        walk(&mut c, &mut t).await;
    });
    assert!(
        t.failed.is_empty(),
        "{} of {} rows failed:\n{}",
        t.failed.len(),
        t.rows,
        t.failed.join("\n")
    );
    let left: Vec<String> = lvs(VG).into_iter().map(|l| l.0).collect();
    assert_eq!(left, ["foreign"], "only the foreign LV remains");
    eprintln!("\nSPEC TABLE: {} ROWS PASSED", t.rows);
}

async fn create(c: &mut Clients, name: &str, bytes: i64, cap: VolumeCapability) -> String {
    c.controller
        .create_volume(create_req(name, bytes, cap))
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e:?}"))
        .into_inner()
        .volume
        .unwrap()
        .volume_id
}

/// Fixtures: a mounted ext4 volume with a file, a raw block volume staged and published
/// with a pattern written through the pod's device file (no process keeps it open), a raw
/// block volume held open by a process, and a volume with a snapshot.
struct Fixtures {
    fs: String,
    fs_staging: PathBuf,
    fs_target: PathBuf,
    blk: String,
    blk_staging: PathBuf,
    blk_target: PathBuf,
    held: String,
    src: String,
    snap: String,
}

async fn fixtures(c: &mut Clients) -> Fixtures {
    step("fixtures");
    let fs = create(c, "pvc-spec-fs", 64 * MIB, fs_cap()).await;
    let fs_staging = PathBuf::from("/run/spec/fs/staging");
    let fs_target = PathBuf::from("/run/spec/fs/pods/p1/mount");
    std::fs::create_dir_all(&fs_staging).unwrap();
    c.node
        .node_stage_volume(stage_req(&fs, &fs_staging, Some(fs_cap())))
        .await
        .unwrap();
    c.node
        .node_publish_volume(publish_req(&fs, &fs_staging, &fs_target, Some(fs_cap())))
        .await
        .unwrap();
    sh(&format!(
        "head -c 1048576 /dev/urandom > {0}/data && sync",
        fs_target.display()
    ));

    let blk = create(c, "pvc-spec-blk", 16 * MIB, blk_cap()).await;
    let blk_staging = PathBuf::from("/run/spec/blk/staging");
    let blk_target = PathBuf::from("/run/spec/blk/pods/p1/dev/volume");
    std::fs::create_dir_all(&blk_staging).unwrap();
    c.node
        .node_stage_volume(stage_req(&blk, &blk_staging, Some(blk_cap())))
        .await
        .unwrap();
    c.node
        .node_publish_volume(publish_req(
            &blk,
            &blk_staging,
            &blk_target,
            Some(blk_cap()),
        ))
        .await
        .unwrap();
    sh(&format!(
        "dd if=/dev/urandom of={} bs=1M count=16 oflag=direct conv=fsync status=none",
        blk_target.display()
    ));

    let held = create(c, "pvc-spec-held", 8 * MIB, blk_cap()).await;
    let src = create(c, "pvc-spec-src", 8 * MIB, blk_cap()).await;
    sh(&format!(
        "dd if=/dev/urandom of={} bs=1M count=8 oflag=direct conv=fsync status=none",
        dev_of(&src)
    ));
    let snap = c
        .controller
        .create_snapshot(CreateSnapshotRequest {
            source_volume_id: src.clone(),
            name: "snap-spec-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap()
        .snapshot_id;
    Fixtures {
        fs,
        fs_staging,
        fs_target,
        blk,
        blk_staging,
        blk_target,
        held,
        src,
        snap,
    }
}

/// Waits until lvm reports the LV's device open (lv_attr's sixth character).
fn wait_open(id: &str, open: bool) {
    let start = Instant::now();
    loop {
        let attr = sh(&format!("lvs --noheadings -o lv_attr {id}"));
        if (attr.trim().chars().nth(5) == Some('o')) == open {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{id} open={open} never seen: {attr}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn walk(c: &mut Clients, t: &mut Table) {
    let f = fixtures(c).await;
    let missing_vol = format!("{VG}/csi-nope");
    let missing_snap = format!("{VG}/snap-nope");
    let fs_target = f.fs_target.display().to_string();
    let fs_staging = f.fs_staging.display().to_string();
    // Raw block devices only: a mounted ext4's device changes under it (lazy inode table
    // init, atime), its files' checksums stand for it.
    let devs = [dev_of(&f.blk), dev_of(&f.src)];
    let devs: Vec<&str> = devs.iter().map(String::as_str).collect();

    // A process holds the third block volume's device open (it is not staged).
    let mut holder = Command::new("bash")
        .args(["-c", &format!("exec 3<{}; exec sleep 600", dev_of(&f.held))])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    wait_open(&f.held, true);

    let before = world(&devs);

    step("Identity");
    let ctl = &mut c.controller;
    row!(
        t,
        "GetPluginInfo",
        Code::Ok,
        c.identity.get_plugin_info(GetPluginInfoRequest {})
    );
    row!(
        t,
        "GetPluginCapabilities",
        Code::Ok,
        c.identity
            .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
    );
    row!(t, "Probe", Code::Ok, c.identity.probe(ProbeRequest {}));

    step("CreateVolume");
    row!(
        t,
        "CreateVolume: name missing",
        Code::InvalidArgument,
        ctl.create_volume(create_req("", MIB, fs_cap()))
    );
    let mut r = create_req("pvc-spec-nocap", MIB, fs_cap());
    r.volume_capabilities.clear();
    row!(
        t,
        "CreateVolume: volume_capabilities missing",
        Code::InvalidArgument,
        ctl.create_volume(r)
    );
    row!(
        t,
        "CreateVolume: unsupported capability (multi-node writer, local VG)",
        Code::InvalidArgument,
        ctl.create_volume(create_req(
            "pvc-spec-rwx",
            MIB,
            req::mount_cap("ext4", &[], Mode::MultiNodeMultiWriter)
        ))
    );
    row!(
        t,
        "CreateVolume: name exists, incompatible size (ALREADY_EXISTS)",
        Code::AlreadyExists,
        ctl.create_volume(create_req("pvc-spec-fs", 128 * MIB, fs_cap()))
    );
    let mut r = create_req("pvc-spec-range", MIB, fs_cap());
    r.capacity_range = Some(CapacityRange {
        required_bytes: 1,
        limit_bytes: 1,
    });
    row!(
        t,
        "CreateVolume: unsupported capacity (limit below one extent)",
        Code::OutOfRange,
        ctl.create_volume(r)
    );
    row!(
        t,
        "CreateVolume: capacity larger than the VG",
        Code::OutOfRange,
        ctl.create_volume(create_req("pvc-spec-huge", 64 << 30, fs_cap()))
    );
    row!(
        t,
        "CreateVolume: source snapshot never issued (NOT_FOUND)",
        Code::NotFound,
        ctl.create_volume(from_source("pvc-spec-s1", snapshot_source(FAKE_SNAP)))
    );
    row!(
        t,
        "CreateVolume: source snapshot missing (NOT_FOUND)",
        Code::NotFound,
        ctl.create_volume(from_source("pvc-spec-s2", snapshot_source(&missing_snap)))
    );
    row!(
        t,
        "CreateVolume: source volume never issued (NOT_FOUND)",
        Code::NotFound,
        ctl.create_volume(from_source("pvc-spec-s3", volume_source(FAKE_VOL)))
    );
    row!(
        t,
        "CreateVolume: source volume missing (NOT_FOUND)",
        Code::NotFound,
        ctl.create_volume(from_source("pvc-spec-s4", volume_source(&missing_vol)))
    );

    step("DeleteVolume");
    row!(
        t,
        "DeleteVolume: volume_id missing",
        Code::InvalidArgument,
        ctl.delete_volume(delete_req(""))
    );
    row!(
        t,
        "DeleteVolume: never issued (OK)",
        Code::Ok,
        ctl.delete_volume(delete_req(FAKE_VOL))
    );
    row!(
        t,
        "DeleteVolume: missing (OK)",
        Code::Ok,
        ctl.delete_volume(delete_req(&missing_vol))
    );
    row!(
        t,
        "DeleteVolume: raw block staged + published, no opener (in use)",
        Code::FailedPrecondition,
        ctl.delete_volume(delete_req(&f.blk))
    );
    row!(
        t,
        "DeleteVolume: mounted filesystem (in use)",
        Code::FailedPrecondition,
        ctl.delete_volume(delete_req(&f.fs))
    );
    row!(
        t,
        "DeleteVolume: device held open by a process (in use)",
        Code::FailedPrecondition,
        ctl.delete_volume(delete_req(&f.held))
    );
    row!(
        t,
        "DeleteVolume: volume with a snapshot",
        Code::FailedPrecondition,
        ctl.delete_volume(delete_req(&f.src))
    );
    row!(
        t,
        "DeleteVolume: an LV vglet did not create",
        Code::FailedPrecondition,
        ctl.delete_volume(delete_req(&format!("{VG}/foreign")))
    );
    let e = ctl.delete_volume(delete_req(&f.blk)).await.unwrap_err();
    assert!(
        e.message()
            .contains("published at /run/spec/blk/pods/p1/dev/volume"),
        "the refusal says what holds it: {e:?}"
    );

    step("ControllerPublish/Unpublish (not offered)");
    row!(
        t,
        "ControllerPublishVolume",
        Code::Unimplemented,
        ctl.controller_publish_volume(ControllerPublishVolumeRequest {
            volume_id: f.fs.clone(),
            node_id: "spec-node".into(),
            volume_capability: Some(fs_cap()),
            ..Default::default()
        })
    );
    row!(
        t,
        "ControllerUnpublishVolume",
        Code::Unimplemented,
        ctl.controller_unpublish_volume(ControllerUnpublishVolumeRequest {
            volume_id: f.fs.clone(),
            node_id: "spec-node".into(),
            ..Default::default()
        })
    );

    step("ValidateVolumeCapabilities");
    let validate = |id: &str, caps: Vec<VolumeCapability>| ValidateVolumeCapabilitiesRequest {
        volume_id: id.into(),
        volume_capabilities: caps,
        ..Default::default()
    };
    row!(
        t,
        "ValidateVolumeCapabilities: volume_id missing",
        Code::InvalidArgument,
        ctl.validate_volume_capabilities(validate("", vec![fs_cap()]))
    );
    row!(
        t,
        "ValidateVolumeCapabilities: volume_capabilities missing",
        Code::InvalidArgument,
        ctl.validate_volume_capabilities(validate(&f.fs, vec![]))
    );
    row!(
        t,
        "ValidateVolumeCapabilities: never issued (NOT_FOUND)",
        Code::NotFound,
        ctl.validate_volume_capabilities(validate(FAKE_VOL, vec![fs_cap()]))
    );
    row!(
        t,
        "ValidateVolumeCapabilities: missing (NOT_FOUND)",
        Code::NotFound,
        ctl.validate_volume_capabilities(validate(&missing_vol, vec![fs_cap()]))
    );
    let v = ctl
        .validate_volume_capabilities(validate(&f.fs, vec![fs_cap()]))
        .await
        .unwrap()
        .into_inner();
    t.check(
        "ValidateVolumeCapabilities: confirmed",
        Code::Ok,
        v.confirmed
            .map(drop)
            .ok_or_else(|| Status::internal(v.message)),
    );

    step("ListVolumes, GetCapacity, ControllerGetCapabilities");
    row!(
        t,
        "ListVolumes: starting_token not ours (ABORTED)",
        Code::Aborted,
        ctl.list_volumes(ListVolumesRequest {
            starting_token: "garbage".into(),
            max_entries: 0
        })
    );
    row!(
        t,
        "ListVolumes: negative max_entries",
        Code::InvalidArgument,
        ctl.list_volumes(ListVolumesRequest {
            starting_token: String::new(),
            max_entries: -1
        })
    );
    row!(
        t,
        "ListVolumes",
        Code::Ok,
        ctl.list_volumes(ListVolumesRequest::default())
    );
    row!(
        t,
        "GetCapacity",
        Code::Ok,
        ctl.get_capacity(GetCapacityRequest::default())
    );
    row!(
        t,
        "ControllerGetCapabilities",
        Code::Ok,
        ctl.controller_get_capabilities(ControllerGetCapabilitiesRequest {})
    );

    step("Snapshots");
    let snap_req = |name: &str, source: &str| CreateSnapshotRequest {
        source_volume_id: source.into(),
        name: name.into(),
        ..Default::default()
    };
    row!(
        t,
        "CreateSnapshot: name missing",
        Code::InvalidArgument,
        ctl.create_snapshot(snap_req("", &f.src))
    );
    row!(
        t,
        "CreateSnapshot: source_volume_id missing",
        Code::InvalidArgument,
        ctl.create_snapshot(snap_req("snap-spec-2", ""))
    );
    row!(
        t,
        "CreateSnapshot: name exists with another source (ALREADY_EXISTS)",
        Code::AlreadyExists,
        ctl.create_snapshot(snap_req("snap-spec-1", &f.held))
    );
    row!(
        t,
        "CreateSnapshot: name exists, source never issued (ALREADY_EXISTS)",
        Code::AlreadyExists,
        ctl.create_snapshot(snap_req("snap-spec-1", FAKE_VOL))
    );
    row!(
        t,
        "CreateSnapshot: source never issued (NOT_FOUND)",
        Code::NotFound,
        ctl.create_snapshot(snap_req("snap-spec-3", FAKE_VOL))
    );
    let del_snap = |id: &str| DeleteSnapshotRequest {
        snapshot_id: id.into(),
        ..Default::default()
    };
    row!(
        t,
        "DeleteSnapshot: snapshot_id missing",
        Code::InvalidArgument,
        ctl.delete_snapshot(del_snap(""))
    );
    row!(
        t,
        "DeleteSnapshot: never issued (OK)",
        Code::Ok,
        ctl.delete_snapshot(del_snap(FAKE_SNAP))
    );
    row!(
        t,
        "DeleteSnapshot: missing (OK)",
        Code::Ok,
        ctl.delete_snapshot(del_snap(&missing_snap))
    );
    for (what, by_id, by_source) in [
        (
            "ListSnapshots: snapshot_id never issued (empty)",
            FAKE_SNAP,
            "",
        ),
        (
            "ListSnapshots: snapshot_id missing (empty)",
            missing_snap.as_str(),
            "",
        ),
        ("ListSnapshots: source never issued (empty)", "", FAKE_VOL),
    ] {
        let got = ctl
            .list_snapshots(ListSnapshotsRequest {
                snapshot_id: by_id.into(),
                source_volume_id: by_source.into(),
                ..Default::default()
            })
            .await
            .and_then(|r| match r.into_inner().entries.len() {
                0 => Ok(()),
                n => Err(Status::internal(format!("{n} entries"))),
            });
        t.check(what, Code::Ok, got);
    }
    let listed = ctl
        .list_snapshots(ListSnapshotsRequest {
            snapshot_id: f.snap.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(listed.len(), 1, "the real snapshot is listed by its id");
    row!(
        t,
        "ListSnapshots: starting_token not ours (ABORTED)",
        Code::Aborted,
        ctl.list_snapshots(ListSnapshotsRequest {
            starting_token: "garbage".into(),
            ..Default::default()
        })
    );
    row!(
        t,
        "GetSnapshot (not offered)",
        Code::Unimplemented,
        ctl.get_snapshot(GetSnapshotRequest {
            snapshot_id: f.snap.clone(),
            ..Default::default()
        })
    );

    step("ControllerExpandVolume");
    row!(
        t,
        "ControllerExpandVolume: volume_id missing",
        Code::InvalidArgument,
        ctl.controller_expand_volume(expand_req("", 128 * MIB, 0))
    );
    row!(
        t,
        "ControllerExpandVolume: capacity_range missing",
        Code::InvalidArgument,
        ctl.controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: f.fs.clone(),
            ..Default::default()
        })
    );
    row!(
        t,
        "ControllerExpandVolume: never issued (NOT_FOUND)",
        Code::NotFound,
        ctl.controller_expand_volume(expand_req(FAKE_VOL, 128 * MIB, 0))
    );
    row!(
        t,
        "ControllerExpandVolume: missing (NOT_FOUND)",
        Code::NotFound,
        ctl.controller_expand_volume(expand_req(&missing_vol, 128 * MIB, 0))
    );
    row!(
        t,
        "ControllerExpandVolume: limit_bytes below the current size (OUT_OF_RANGE)",
        Code::OutOfRange,
        ctl.controller_expand_volume(expand_req(&f.fs, 0, 32 * MIB))
    );
    row!(
        t,
        "ControllerExpandVolume: beyond the VG's free space",
        Code::ResourceExhausted,
        ctl.controller_expand_volume(expand_req(&f.fs, 1000 * MIB, 0))
    );

    step("ControllerGetVolume, ControllerModifyVolume");
    let get = |id: &str| ControllerGetVolumeRequest {
        volume_id: id.into(),
    };
    row!(
        t,
        "ControllerGetVolume: volume_id missing",
        Code::InvalidArgument,
        ctl.controller_get_volume(get(""))
    );
    row!(
        t,
        "ControllerGetVolume: never issued (NOT_FOUND)",
        Code::NotFound,
        ctl.controller_get_volume(get(FAKE_VOL))
    );
    row!(
        t,
        "ControllerGetVolume: missing (NOT_FOUND)",
        Code::NotFound,
        ctl.controller_get_volume(get(&missing_vol))
    );
    row!(
        t,
        "ControllerGetVolume",
        Code::Ok,
        ctl.controller_get_volume(get(&f.fs))
    );
    let modify = |id: &str, kv: &[(&str, &str)]| ControllerModifyVolumeRequest {
        volume_id: id.into(),
        mutable_parameters: kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    row!(
        t,
        "ControllerModifyVolume: volume_id missing",
        Code::InvalidArgument,
        ctl.controller_modify_volume(modify("", &[("type", "linear")]))
    );
    row!(
        t,
        "ControllerModifyVolume: never issued (NOT_FOUND)",
        Code::NotFound,
        ctl.controller_modify_volume(modify(FAKE_VOL, &[("type", "linear")]))
    );
    row!(
        t,
        "ControllerModifyVolume: missing (NOT_FOUND)",
        Code::NotFound,
        ctl.controller_modify_volume(modify(&missing_vol, &[("type", "linear")]))
    );
    row!(
        t,
        "ControllerModifyVolume: unknown mutable parameter",
        Code::InvalidArgument,
        ctl.controller_modify_volume(modify(&f.fs, &[("volumeGroup", VG)]))
    );
    row!(
        t,
        "ControllerModifyVolume: a type not changed online (raid5)",
        Code::InvalidArgument,
        ctl.controller_modify_volume(modify(&f.fs, &[("type", "raid5")]))
    );
    row!(
        t,
        "ControllerModifyVolume: raid1 in a VG of one PV (RESOURCE_EXHAUSTED)",
        Code::ResourceExhausted,
        ctl.controller_modify_volume(modify(&f.fs, &[("type", "raid1")]))
    );
    row!(
        t,
        "ControllerModifyVolume: already as asked (OK, nothing changed)",
        Code::Ok,
        ctl.controller_modify_volume(modify(&f.fs, &[("type", "linear")]))
    );

    let after = world(&devs);
    t.changed("Identity and Controller rows", &before, &after);

    step("in use until released: each release makes the next delete possible");
    holder.kill().unwrap();
    holder.wait().unwrap();
    wait_open(&f.held, false);
    row!(
        t,
        "DeleteVolume: the process let go (OK)",
        Code::Ok,
        c.controller.delete_volume(delete_req(&f.held))
    );
    c.node
        .node_unpublish_volume(req::unpublish(&f.blk, &f.blk_target.display().to_string()))
        .await
        .unwrap();
    let staged_only = world(&devs);
    let e = c
        .controller
        .delete_volume(delete_req(&f.blk))
        .await
        .map(drop);
    let msg = e.as_ref().err().map(|s| s.message().to_string());
    t.check(
        "DeleteVolume: raw block staged, not published (in use)",
        Code::FailedPrecondition,
        e,
    );
    assert!(
        msg.is_some_and(|m| m.contains("staged at /run/spec/blk/staging")),
        "the refusal names the staging path"
    );
    t.changed(
        "DeleteVolume of the staged block volume",
        &staged_only,
        &world(&devs),
    );
    c.node
        .node_unstage_volume(req::unstage(&f.blk, &f.blk_staging.display().to_string()))
        .await
        .unwrap();
    row!(
        t,
        "DeleteVolume: block released (OK)",
        Code::Ok,
        c.controller.delete_volume(delete_req(&f.blk))
    );
    assert!(
        lvs(VG).iter().all(|l| format!("{VG}/{}", l.0) != f.blk),
        "deleted once released"
    );

    // node rows: the id and required-field rows of the node RPCs. The never-issued and
    // missing-volume rows want the spec's NOT_FOUND, which the node-safety change makes
    // the node service answer; each row must also leave everything as it was.
    step("node rows");
    let devs = [dev_of(&f.src)];
    let devs: Vec<&str> = devs.iter().map(String::as_str).collect();
    let mut prev = world(&devs);
    let node_before = world(&devs);
    macro_rules! node_row {
        ($what:expr, $code:expr, $call:expr) => {{
            row!(t, $what, $code, $call);
            let now = world(&devs);
            t.changed($what, &prev, &now);
            prev = now;
        }};
    }
    let n = &mut c.node;
    let fs = f.fs.as_str();
    node_row!(
        "NodeStageVolume: volume_id missing",
        Code::InvalidArgument,
        n.node_stage_volume(stage_req("", &f.fs_staging, Some(fs_cap())))
    );
    node_row!(
        "NodeStageVolume: staging_target_path missing",
        Code::InvalidArgument,
        n.node_stage_volume(stage_req(fs, Path::new(""), Some(fs_cap())))
    );
    node_row!(
        "NodeStageVolume: volume_capability missing",
        Code::InvalidArgument,
        n.node_stage_volume(stage_req(fs, &f.fs_staging, None))
    );
    node_row!(
        "NodeStageVolume: never issued (NOT_FOUND)",
        Code::NotFound,
        n.node_stage_volume(stage_req(
            FAKE_VOL,
            Path::new("/run/spec/new-staging"),
            Some(fs_cap())
        ))
    );
    node_row!(
        "NodeStageVolume: missing (NOT_FOUND)",
        Code::NotFound,
        n.node_stage_volume(stage_req(
            &missing_vol,
            Path::new("/run/spec/new-staging"),
            Some(fs_cap())
        ))
    );
    let new_target = Path::new("/run/spec/new-target");
    node_row!(
        "NodePublishVolume: volume_id missing",
        Code::InvalidArgument,
        n.node_publish_volume(publish_req("", &f.fs_staging, new_target, Some(fs_cap())))
    );
    node_row!(
        "NodePublishVolume: target_path missing",
        Code::InvalidArgument,
        n.node_publish_volume(publish_req(
            fs,
            &f.fs_staging,
            Path::new(""),
            Some(fs_cap())
        ))
    );
    node_row!(
        "NodePublishVolume: volume_capability missing",
        Code::InvalidArgument,
        n.node_publish_volume(publish_req(fs, &f.fs_staging, new_target, None))
    );
    node_row!(
        "NodePublishVolume: never issued (NOT_FOUND)",
        Code::NotFound,
        n.node_publish_volume(publish_req(
            FAKE_VOL,
            &f.fs_staging,
            new_target,
            Some(fs_cap())
        ))
    );
    node_row!(
        "NodePublishVolume: missing (NOT_FOUND)",
        Code::NotFound,
        n.node_publish_volume(publish_req(
            &missing_vol,
            &f.fs_staging,
            new_target,
            Some(fs_cap())
        ))
    );
    node_row!(
        "NodeUnpublishVolume: volume_id missing",
        Code::InvalidArgument,
        n.node_unpublish_volume(req::unpublish("", &fs_target))
    );
    node_row!(
        "NodeUnpublishVolume: target_path missing",
        Code::InvalidArgument,
        n.node_unpublish_volume(req::unpublish(fs, ""))
    );
    node_row!(
        "NodeUnpublishVolume: never issued, at another volume's publish (NOT_FOUND)",
        Code::NotFound,
        n.node_unpublish_volume(req::unpublish(FAKE_VOL, &fs_target))
    );
    // A well-formed id with no such volume, at a path this volume is not published at: the
    // spec's idempotency rule ("not published at target_path: 0 OK") and issue #15's
    // "OK when this volume is not published there, without touching anything" win over the
    // NOT_FOUND row, which would leave kubelet retrying a pod's teardown forever after the LV
    // vanished. The world check after each row proves nothing was touched.
    node_row!(
        "NodeUnpublishVolume: missing, at a foreign tmpfs (OK, untouched)",
        Code::Ok,
        n.node_unpublish_volume(req::unpublish(&missing_vol, "/run/spec/foreign-tmpfs"))
    );
    node_row!(
        "NodeUnpublishVolume: missing, at a plain file (OK, untouched)",
        Code::Ok,
        n.node_unpublish_volume(req::unpublish(&missing_vol, "/run/spec/plain-file"))
    );
    node_row!(
        "NodeUnstageVolume: volume_id missing",
        Code::InvalidArgument,
        n.node_unstage_volume(req::unstage("", &fs_staging))
    );
    node_row!(
        "NodeUnstageVolume: staging_target_path missing",
        Code::InvalidArgument,
        n.node_unstage_volume(req::unstage(fs, ""))
    );
    node_row!(
        "NodeUnstageVolume: never issued, at another volume's staging (NOT_FOUND)",
        Code::NotFound,
        n.node_unstage_volume(req::unstage(FAKE_VOL, &fs_staging))
    );
    node_row!(
        "NodeUnstageVolume: missing, at another volume's staging (OK, untouched)",
        Code::Ok,
        n.node_unstage_volume(req::unstage(&missing_vol, &fs_staging))
    );
    node_row!(
        "NodeGetVolumeStats: volume_id missing",
        Code::InvalidArgument,
        n.node_get_volume_stats(req::stats("", &fs_target))
    );
    node_row!(
        "NodeGetVolumeStats: volume_path missing",
        Code::InvalidArgument,
        n.node_get_volume_stats(req::stats(fs, ""))
    );
    node_row!(
        "NodeGetVolumeStats: never issued (NOT_FOUND)",
        Code::NotFound,
        n.node_get_volume_stats(req::stats(FAKE_VOL, &fs_target))
    );
    node_row!(
        "NodeGetVolumeStats: missing (NOT_FOUND)",
        Code::NotFound,
        n.node_get_volume_stats(req::stats(&missing_vol, &fs_target))
    );
    node_row!(
        "NodeGetVolumeStats: relative volume_path (NOT_FOUND)",
        Code::NotFound,
        n.node_get_volume_stats(req::stats(fs, "run/spec/fs/pods/p1/mount"))
    );
    node_row!(
        "NodeGetVolumeStats: a path that is not the volume's mount (NOT_FOUND)",
        Code::NotFound,
        n.node_get_volume_stats(req::stats(fs, "/run/spec/foreign-tmpfs"))
    );
    node_row!(
        "NodeGetVolumeStats",
        Code::Ok,
        n.node_get_volume_stats(req::stats(fs, &fs_target))
    );
    node_row!(
        "NodeExpandVolume: volume_id missing",
        Code::InvalidArgument,
        n.node_expand_volume(node_expand_req("", &fs_target))
    );
    node_row!(
        "NodeExpandVolume: volume_path missing",
        Code::InvalidArgument,
        n.node_expand_volume(node_expand_req(fs, ""))
    );
    node_row!(
        "NodeExpandVolume: never issued (NOT_FOUND)",
        Code::NotFound,
        n.node_expand_volume(node_expand_req(FAKE_VOL, &fs_target))
    );
    node_row!(
        "NodeExpandVolume: missing (NOT_FOUND)",
        Code::NotFound,
        n.node_expand_volume(node_expand_req(&missing_vol, &fs_target))
    );
    node_row!(
        "NodeGetCapabilities",
        Code::Ok,
        n.node_get_capabilities(NodeGetCapabilitiesRequest {})
    );
    node_row!(
        "NodeGetInfo",
        Code::Ok,
        n.node_get_info(NodeGetInfoRequest {})
    );
    t.changed("node rows", &node_before, &prev);

    step("clean up: released volumes delete");
    c.node
        .node_unpublish_volume(req::unpublish(&f.fs, &fs_target))
        .await
        .unwrap();
    c.node
        .node_unstage_volume(req::unstage(&f.fs, &fs_staging))
        .await
        .unwrap();
    row!(
        t,
        "DeleteVolume: filesystem released (OK)",
        Code::Ok,
        c.controller.delete_volume(delete_req(&f.fs))
    );
    c.controller
        .delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: f.snap.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    row!(
        t,
        "DeleteVolume: snapshot gone (OK)",
        Code::Ok,
        c.controller.delete_volume(delete_req(&f.src))
    );
}
