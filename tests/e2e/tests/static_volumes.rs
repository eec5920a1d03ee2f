//! Static volumes in a real kernel: an LV created and filled by hand, outside vglet, is
//! refused until the operator tags it; once tagged it stages and publishes with its data
//! intact (never formatted), survives an unstage/restage, grows, and DeleteVolume removes
//! it only with the separate delete opt-in. A blank or wrongly-typed adopted LV is refused,
//! not formatted; a raw block static volume hands out the bytes written before.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tonic::Code;
use vglet_csi_proto::v1::volume_capability::access_mode::Mode;
use vglet_csi_proto::v1::*;
use vglet_e2e::req;
use vglet_e2e::rpc::{delete, unstage};
use vglet_e2e::{Clients, DriverProcess, clients, in_guest, lvs, mount_at, run_guest_test, sh};

const VG: &str = "statvg";
const ADOPT: &str = "vglet.adopt=lvm.vglet.io";
const DELETE: &str = "vglet.adopt.delete=lvm.vglet.io";
const MIB: i64 = 1 << 20;

#[test]
fn static_volumes_in_guest() {
    if in_guest() {
        return;
    }
    let vm = vglet_vmh::Vm::new("e2e-static")
        .mem_mib(1536)
        .cpus(2)
        .fresh_disk("d1", 1 << 30)
        .modules(["dm_mod", "ext4", "xfs"])
        .udev(false)
        .timeout(Duration::from_secs(900));
    run_guest_test("guest_static_volumes", vm);
}

fn mount_cap(fs: &str) -> VolumeCapability {
    req::mount_cap(fs, &[], Mode::SingleNodeWriter)
}

fn block_cap() -> VolumeCapability {
    req::block_cap(Mode::SingleNodeWriter)
}

async fn stage(
    c: &mut Clients,
    id: &str,
    path: &Path,
    cap: VolumeCapability,
) -> Result<(), tonic::Status> {
    std::fs::create_dir_all(path).unwrap();
    let t = Instant::now();
    let r = c
        .node
        .node_stage_volume(NodeStageVolumeRequest {
            volume_id: id.into(),
            staging_target_path: path.display().to_string(),
            volume_capability: Some(cap),
            // What a static PV's volumeAttributes may carry: must not matter.
            volume_context: HashMap::from([("vglet.io/adopt".into(), "true".into())]),
            ..Default::default()
        })
        .await
        .map(drop);
    eprintln!("  stage {id}: {:?} in {:?}", r.as_ref().err(), t.elapsed());
    r
}

async fn publish(c: &mut Clients, id: &str, staging: &Path, target: &Path, cap: VolumeCapability) {
    c.node
        .node_publish_volume(NodePublishVolumeRequest {
            volume_id: id.into(),
            staging_target_path: staging.display().to_string(),
            target_path: target.display().to_string(),
            volume_capability: Some(cap),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("publish {id}: {e:?}"));
}

async fn unpublish(c: &mut Clients, id: &str, target: &Path) {
    c.node
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: id.into(),
            target_path: target.display().to_string(),
        })
        .await
        .unwrap_or_else(|e| panic!("unpublish {id}: {e:?}"));
}

/// Deterministic, incompressible-looking content, so a formatted or zeroed LV cannot pass.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// (name, size, tags) of one LV; None when it does not exist.
fn lv(name: &str) -> Option<(String, u64, String)> {
    lvs(VG).into_iter().find(|l| l.0 == name)
}

fn blkid_type(dev: &str) -> String {
    sh(&format!("blkid -p -o value -s TYPE {dev} || true"))
        .trim()
        .to_string()
}

#[test]
#[ignore = "runs inside the QEMU guest through static_volumes_in_guest"]
fn guest_static_volumes() {
    assert!(in_guest(), "run through static_volumes_in_guest");
    let t0 = Instant::now();
    // Everything an operator would do by hand, before vglet ever sees the VG.
    let first = pattern(1, 3 << 20);
    std::fs::write("/run/first.bin", &first).unwrap();
    sh(&format!(
        "pvcreate -q /dev/vda && vgcreate -q {VG} /dev/vda && \
         lvcreate -q -y -n data -L 64m {VG} && mkfs.ext4 -q /dev/{VG}/data && \
         mkdir -p /mnt/pre && mount /dev/{VG}/data /mnt/pre && \
         cp /run/first.bin /mnt/pre/file && umount /mnt/pre && \
         lvcreate -q -y -Zy -Wy -n blank -L 16m --addtag {ADOPT} {VG} && \
         lvcreate -q -y -n other -L 320m --addtag {ADOPT} {VG} && mkfs.xfs -q /dev/{VG}/other && \
         lvcreate -q -y -n raw -L 16m {VG} && \
         dd if=/run/first.bin of=/dev/{VG}/raw bs=1M count=3 oflag=direct status=none"
    ));
    let before = lvs(VG);
    let socket = PathBuf::from("/run/vglet/static.sock");
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
        let id = format!("{VG}/data");
        let staging = PathBuf::from("/run/e2e/static/data-staging");
        let target = PathBuf::from("/run/e2e/static/data-target");

        eprintln!("\n--- not tagged: refused, untouched");
        let e = stage(&mut c, &id, &staging, mount_cap("ext4"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert!(
            e.message().contains(&format!("lvchange --addtag {ADOPT}")),
            "{e:?}"
        );
        assert!(mount_at(&staging).is_none());
        let e = delete(&mut c, &id).await.unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert_eq!(lvs(VG), before, "a refused LV must not change");
        assert_eq!(blkid_type(&format!("/dev/{VG}/data")), "ext4");

        eprintln!("\n--- tagged: stages with its data");
        sh(&format!("lvchange -q --addtag {ADOPT} {id}"));
        let tags_after_adopt = lv("data").unwrap().2;
        stage(&mut c, &id, &staging, mount_cap("ext4"))
            .await
            .unwrap();
        // Idempotent.
        stage(&mut c, &id, &staging, mount_cap("ext4"))
            .await
            .unwrap();
        let (fs, source, _) = mount_at(&staging).expect("staged");
        assert_eq!(fs, "ext4");
        eprintln!("  staged from {source}");
        publish(&mut c, &id, &staging, &target, mount_cap("ext4")).await;
        assert_eq!(std::fs::read(target.join("file")).unwrap(), first);
        let second = pattern(2, 1 << 20);
        std::fs::write(target.join("file2"), &second).unwrap();
        sh(&format!("sync -f {}", target.display()));
        unpublish(&mut c, &id, &target).await;
        unstage(&mut c, &id, &staging).await;
        assert!(mount_at(&staging).is_none());
        assert!(mount_at(&target).is_none());

        eprintln!("\n--- restaged: both files read back");
        stage(&mut c, &id, &staging, mount_cap("ext4"))
            .await
            .unwrap();
        publish(&mut c, &id, &staging, &target, mount_cap("ext4")).await;
        assert_eq!(std::fs::read(target.join("file")).unwrap(), first);
        assert_eq!(std::fs::read(target.join("file2")).unwrap(), second);

        eprintln!("\n--- reported, listed, expanded without vglet tags");
        let got = c
            .controller
            .controller_get_volume(ControllerGetVolumeRequest {
                volume_id: id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.volume.unwrap().capacity_bytes, 64 * MIB);
        let listed: Vec<String> = c
            .controller
            .list_volumes(ListVolumesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .entries
            .into_iter()
            .map(|e| e.volume.unwrap().volume_id)
            .collect();
        assert_eq!(
            listed,
            [format!("{VG}/blank"), id.clone(), format!("{VG}/other")]
        );
        let stats = c
            .node
            .node_get_volume_stats(NodeGetVolumeStatsRequest {
                volume_id: id.clone(),
                volume_path: target.display().to_string(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let total_before = stats.usage[0].total;
        let exp = c
            .controller
            .controller_expand_volume(ControllerExpandVolumeRequest {
                volume_id: id.clone(),
                capacity_range: Some(CapacityRange {
                    required_bytes: 96 * MIB,
                    limit_bytes: 0,
                }),
                volume_capability: Some(mount_cap("ext4")),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(exp.node_expansion_required);
        assert_eq!(lv("data").unwrap().1, 96 << 20);
        assert_eq!(
            lv("data").unwrap().2,
            tags_after_adopt,
            "expansion must not tag a static volume"
        );
        c.node
            .node_expand_volume(NodeExpandVolumeRequest {
                volume_id: id.clone(),
                volume_path: target.display().to_string(),
                staging_target_path: staging.display().to_string(),
                ..Default::default()
            })
            .await
            .unwrap();
        let stats = c
            .node
            .node_get_volume_stats(NodeGetVolumeStatsRequest {
                volume_id: id.clone(),
                volume_path: target.display().to_string(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        eprintln!(
            "  filesystem {} -> {} bytes",
            total_before, stats.usage[0].total
        );
        assert!(stats.usage[0].total > total_before + 24 * MIB);
        assert_eq!(std::fs::read(target.join("file")).unwrap(), first);
        unpublish(&mut c, &id, &target).await;
        unstage(&mut c, &id, &staging).await;

        eprintln!("\n--- delete: kept without the opt-in, removed with it");
        let e = delete(&mut c, &id).await.unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains(DELETE), "{e:?}");
        assert!(lv("data").is_some(), "deleted without the opt-in");
        sh(&format!("lvchange -q --addtag {DELETE} {id}"));
        delete(&mut c, &id).await.unwrap();
        assert!(lv("data").is_none(), "not removed with the opt-in");
        delete(&mut c, &id).await.unwrap();

        eprintln!("\n--- blank and wrongly typed static volumes: refused, not formatted");
        let blank = format!("{VG}/blank");
        let p = PathBuf::from("/run/e2e/static/blank");
        let e = stage(&mut c, &blank, &p, mount_cap("ext4"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains("never formatted"), "{e:?}");
        assert_eq!(blkid_type(&format!("/dev/{blank}")), "");
        assert!(mount_at(&p).is_none());
        let other = format!("{VG}/other");
        let p = PathBuf::from("/run/e2e/static/other");
        let e = stage(&mut c, &other, &p, mount_cap("ext4"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert_eq!(blkid_type(&format!("/dev/{other}")), "xfs");
        assert!(mount_at(&p).is_none());
        // With the filesystem it holds, it stages.
        stage(&mut c, &other, &p, mount_cap("xfs")).await.unwrap();
        assert_eq!(mount_at(&p).unwrap().0, "xfs");
        unstage(&mut c, &other, &p).await;

        eprintln!("\n--- raw block static volume");
        let raw = format!("{VG}/raw");
        sh(&format!("lvchange -q --addtag {ADOPT} {raw}"));
        let p = PathBuf::from("/run/e2e/static/raw-staging");
        let dev_target = PathBuf::from("/run/e2e/static/raw-target/dev");
        stage(&mut c, &raw, &p, block_cap()).await.unwrap();
        publish(&mut c, &raw, &p, &dev_target, block_cap()).await;
        let got = sh(&format!(
            "dd if={} bs=1M count=3 iflag=direct status=none | sha256sum",
            dev_target.display()
        ));
        let want = sh("sha256sum < /run/first.bin");
        assert_eq!(got, want, "raw block content differs");
        unpublish(&mut c, &raw, &dev_target).await;
        unstage(&mut c, &raw, &p).await;
        let e = delete(&mut c, &raw).await.unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    });
    let left: Vec<String> = lvs(VG).into_iter().map(|l| l.0).collect();
    assert_eq!(left, ["blank", "other", "raw"]);
    eprintln!(
        "\nE2E STATIC VOLUMES: ALL STEPS PASSED in {:?}",
        t0.elapsed()
    );
}
