//! Snapshots, restores and clones in a real kernel, for thin and thick volumes: a snapshot
//! taken while the volume is mounted and being written restores to a clean filesystem
//! holding the data of the snapshot moment, though the origin changed since; a clone of a
//! live volume holds its current data; deleting snapshots never harms the origin; a thick
//! origin cannot be deleted or expanded while it has snapshots.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tonic::Code;
use vglet_csi_proto::v1::volume_capability::{
    AccessMode, AccessType, MountVolume, access_mode::Mode,
};
use vglet_csi_proto::v1::volume_content_source::{SnapshotSource, Type, VolumeSource};
use vglet_csi_proto::v1::*;
use vglet_e2e::req::params;
use vglet_e2e::rpc::{delete, unstage};
use vglet_e2e::{Clients, DriverProcess, clients, in_guest, lvs, run_guest_test, sh};

const VG: &str = "snapvg";
const MIB: i64 = 1 << 20;

#[test]
fn snapshots_in_guest() {
    if in_guest() {
        return;
    }
    let vm = vglet_vmh::Vm::new("e2e-snapshots")
        .mem_mib(1536)
        .cpus(2)
        .fresh_disk("d1", 1 << 30)
        .fresh_disk("d2", 1 << 30)
        .modules(["dm_mod", "dm_snapshot", "dm_thin_pool", "ext4"])
        .udev(false)
        .timeout(Duration::from_secs(900));
    run_guest_test("guest_snapshots", vm);
}

fn cap() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: "ext4".into(),
            mount_flags: vec![],
            volume_mount_group: String::new(),
        })),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
    }
}

fn lv_of(id: &str) -> &str {
    id.split_once('/').unwrap().1
}

async fn create(
    c: &mut Clients,
    name: &str,
    kv: &[(&str, &str)],
    source: Option<Type>,
) -> Result<Volume, tonic::Status> {
    let t = Instant::now();
    let r = c
        .controller
        .create_volume(CreateVolumeRequest {
            name: name.into(),
            capacity_range: Some(CapacityRange {
                required_bytes: 64 * MIB,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![cap()],
            parameters: params(kv),
            volume_content_source: source.map(|t| VolumeContentSource { r#type: Some(t) }),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().volume.unwrap());
    eprintln!(
        "  create {name}: {:?} in {:?}",
        r.as_ref().map(|v| &v.volume_id),
        t.elapsed()
    );
    r
}

async fn stage(c: &mut Clients, id: &str, path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    c.node
        .node_stage_volume(NodeStageVolumeRequest {
            volume_id: id.into(),
            staging_target_path: path.display().to_string(),
            volume_capability: Some(cap()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("stage {id}: {e:?}"));
}

async fn snapshot(c: &mut Clients, name: &str, source: &str) -> Result<Snapshot, tonic::Status> {
    let t = Instant::now();
    let r = c
        .controller
        .create_snapshot(CreateSnapshotRequest {
            source_volume_id: source.into(),
            name: name.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().snapshot.unwrap());
    eprintln!(
        "  snapshot {name} of {source}: {:?} in {:?}",
        r.as_ref().map(|s| &s.snapshot_id),
        t.elapsed()
    );
    r
}

async fn delete_snapshot(c: &mut Clients, id: &str) {
    c.controller
        .delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: id.into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("delete snapshot {id}: {e:?}"));
}

async fn list(
    c: &mut Clients,
    source: &str,
    id: &str,
    max: i32,
    token: &str,
) -> ListSnapshotsResponse {
    c.controller
        .list_snapshots(ListSnapshotsRequest {
            max_entries: max,
            starting_token: token.into(),
            source_volume_id: source.into(),
            snapshot_id: id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path.join("file")).unwrap()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path.join("file"), text).unwrap();
    sh(&format!("sync -f {}", path.display()));
}

/// The restored filesystem must be clean as it is (no journal replay needed): what a
/// frozen filesystem looks like.
fn fsck_clean(id: &str) {
    sh(&format!("e2fsck -fn /dev/{id}"));
}

#[test]
#[ignore = "runs inside the QEMU guest through snapshots_in_guest"]
fn guest_snapshots() {
    assert!(in_guest(), "run through snapshots_in_guest");
    sh(&format!(
        "pvcreate -q /dev/vda /dev/vdb && vgcreate -q {VG} /dev/vda /dev/vdb && \
         lvcreate -q -y --type thin-pool -n pool0 -L 400m {VG} && \
         lvcreate -q -y -n foreign -L 8m {VG}"
    ));
    let socket = PathBuf::from("/run/vglet/snapshots.sock");
    let _driver = DriverProcess::start(
        &[
            "--mode",
            "all",
            "--node-id",
            "e2e-node",
            "--volume-group",
            VG,
            "--state-dir",
            "/run/vglet/state",
        ],
        &socket,
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = clients(&socket).await;
        scenario(
            &mut c,
            "thin",
            &[("volumeGroup", VG), ("type", "thin"), ("thinPool", "pool0")],
            "thin",
        )
        .await;
        scenario(&mut c, "thick", &[("volumeGroup", VG)], "linear").await;
    });
    let left: Vec<String> = lvs(VG).into_iter().map(|l| l.0).collect();
    assert_eq!(left, vec!["foreign".to_string(), "pool0".to_string()]);
    eprintln!("\nE2E SNAPSHOTS: ALL STEPS PASSED");
}

async fn scenario(c: &mut Clients, kind: &str, kv: &[(&str, &str)], segtype: &str) {
    eprintln!("\n--- e2e snapshots: {kind}");
    let base = PathBuf::from(format!("/run/e2e/snap/{kind}"));
    let a = create(c, &format!("{kind}-a"), kv, None).await.unwrap();
    let a_path = base.join("a");
    stage(c, &a.volume_id, &a_path).await;
    write(&a_path, &format!("v1-{kind}"));

    // Snapshot while the filesystem is busy being written.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let dir = a_path.join("busy");
        std::fs::create_dir_all(&dir).unwrap();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                std::fs::write(dir.join(format!("f{}", n % 50)), vec![n as u8; 256 << 10]).unwrap();
                n += 1;
            }
            n
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let s = snapshot(c, &format!("s-{kind}"), &a.volume_id)
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().unwrap();
    eprintln!("  {writes} files written around the snapshot");
    assert!(s.ready_to_use);
    assert_eq!(s.source_volume_id, a.volume_id);
    assert_eq!(s.size_bytes, a.capacity_bytes);

    // Idempotent by name; the same name for another source is a conflict.
    let again = snapshot(c, &format!("s-{kind}"), &a.volume_id)
        .await
        .unwrap();
    assert_eq!(again.snapshot_id, s.snapshot_id);
    let e = snapshot(c, &format!("s-{kind}"), &format!("{VG}/foreign"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    let e = snapshot(c, "s-foreign", &format!("{VG}/foreign"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    let by_source = list(c, &a.volume_id, "", 0, "").await;
    assert_eq!(by_source.entries.len(), 1);
    let by_id = list(c, "", &s.snapshot_id, 0, "").await;
    assert_eq!(
        by_id.entries[0].snapshot.as_ref().unwrap().snapshot_id,
        s.snapshot_id
    );
    assert!(
        list(c, "", &format!("{VG}/snap-nope"), 0, "")
            .await
            .entries
            .is_empty()
    );

    // The origin moves on.
    write(&a_path, &format!("v2-{kind}"));

    // Restore: the data of the snapshot moment, on a clean filesystem.
    let b = create(
        c,
        &format!("{kind}-b"),
        kv,
        Some(Type::Snapshot(SnapshotSource {
            snapshot_id: s.snapshot_id.clone(),
        })),
    )
    .await
    .unwrap();
    assert_eq!(
        b.content_source.as_ref().and_then(|s| s.r#type.clone()),
        Some(Type::Snapshot(SnapshotSource {
            snapshot_id: s.snapshot_id.clone()
        }))
    );
    fsck_clean(&b.volume_id);
    let b_path = base.join("b");
    stage(c, &b.volume_id, &b_path).await;
    assert_eq!(
        read(&b_path),
        format!("v1-{kind}"),
        "restore holds the snapshot moment"
    );
    assert_eq!(
        read(&a_path),
        format!("v2-{kind}"),
        "origin keeps its own data"
    );
    let seg = sh(&format!(
        "lvs --noheadings -o segtype {VG}/{}",
        lv_of(&b.volume_id)
    ));
    assert_eq!(seg.trim(), segtype);

    // Clone of the live, mounted volume: its current data.
    let cl = create(
        c,
        &format!("{kind}-c"),
        kv,
        Some(Type::Volume(VolumeSource {
            volume_id: a.volume_id.clone(),
        })),
    )
    .await
    .unwrap();
    fsck_clean(&cl.volume_id);
    let c_path = base.join("c");
    stage(c, &cl.volume_id, &c_path).await;
    assert_eq!(
        read(&c_path),
        format!("v2-{kind}"),
        "clone holds the source's data"
    );
    write(&c_path, "clone-changed");
    assert_eq!(
        read(&a_path),
        format!("v2-{kind}"),
        "writing the clone leaves the source alone"
    );

    if kind == "thick" {
        // A thick origin depends on its COW snapshots' stack: deleting or growing it waits.
        let e = delete(c, &a.volume_id).await.unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        // Refused for the snapshot, which DeleteVolume's read of the LV and the LVs whose
        // origin it is must find, before the in-use check.
        assert!(e.message().contains("copy-on-write snapshots"), "{e:?}");
        let e = c
            .controller
            .controller_expand_volume(ControllerExpandVolumeRequest {
                volume_id: a.volume_id.clone(),
                capacity_range: Some(CapacityRange {
                    required_bytes: 128 * MIB,
                    limit_bytes: 0,
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        delete_snapshot(c, &s.snapshot_id).await;
        assert_eq!(
            read(&a_path),
            format!("v2-{kind}"),
            "deleting the snapshot leaves the origin"
        );
        sh(&format!(
            "umount {} && e2fsck -fn /dev/{}",
            a_path.display(),
            a.volume_id
        ));
        unstage(c, &a.volume_id, &a_path).await;
        delete(c, &a.volume_id).await.unwrap();
    } else {
        // Thin snapshots are independent: the origin goes, the snapshot still restores.
        let s2 = snapshot(c, &format!("s-{kind}-2"), &a.volume_id)
            .await
            .unwrap();
        let p1 = list(c, "", "", 1, "").await;
        assert_eq!(p1.entries.len(), 1);
        assert!(!p1.next_token.is_empty());
        let p2 = list(c, "", "", 1, &p1.next_token).await;
        assert_eq!(p2.entries.len(), 1);
        assert!(p2.next_token.is_empty());
        assert_ne!(p1.entries[0].snapshot, p2.entries[0].snapshot);
        delete_snapshot(c, &s2.snapshot_id).await;
        unstage(c, &a.volume_id, &a_path).await;
        delete(c, &a.volume_id).await.unwrap();
        let d = create(
            c,
            &format!("{kind}-d"),
            kv,
            Some(Type::Snapshot(SnapshotSource {
                snapshot_id: s.snapshot_id.clone(),
            })),
        )
        .await
        .unwrap();
        let d_path = base.join("d");
        stage(c, &d.volume_id, &d_path).await;
        assert_eq!(read(&d_path), format!("v1-{kind}"));
        unstage(c, &d.volume_id, &d_path).await;
        delete(c, &d.volume_id).await.unwrap();
        delete_snapshot(c, &s.snapshot_id).await;
    }
    // Deleting a snapshot twice is fine.
    delete_snapshot(c, &s.snapshot_id).await;
    assert_eq!(
        read(&b_path),
        format!("v1-{kind}"),
        "restored volume outlives its snapshot"
    );
    for (v, p) in [(&b, &b_path), (&cl, &c_path)] {
        unstage(c, &v.volume_id, p).await;
        delete(c, &v.volume_id).await.unwrap();
    }
}
