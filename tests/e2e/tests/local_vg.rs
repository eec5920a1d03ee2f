//! End to end on a node-local VG, in a real kernel: csi-driver in `--mode all` drives real
//! LVM, mkfs and mounts inside a QEMU guest. Every step is checked against the kernel and
//! LVM (mount table, lvs, file contents), not only against the driver's answers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::Code;
use vglet_csi_proto::v1::volume_capability::{AccessType, access_mode::Mode};
use vglet_csi_proto::v1::*;
use vglet_e2e::req;
use vglet_e2e::{
    Clients, DriverProcess, clients, in_guest, lvs, mount_at, run_guest_test, sh, wait_probe_ready,
};

const VG: &str = "e2evg";
const MIB: i64 = 1 << 20;

#[test]
fn local_vg_lifecycle_in_guest() {
    if in_guest() {
        return;
    }
    let vm = vglet_vmh::Vm::new("e2e-local")
        .mem_mib(1536)
        .cpus(2)
        .fresh_disk("d1", 2 << 30)
        .fresh_disk("d2", 2 << 30)
        .modules(["dm_mod", "ext4", "xfs"])
        .udev(false)
        .timeout(Duration::from_secs(900));
    run_guest_test("guest_local_vg_lifecycle", vm);
}

fn mount_cap(fs: &str, mode: Mode) -> VolumeCapability {
    req::mount_cap(fs, &["noatime"], mode)
}

fn create_req(name: &str, bytes: i64, cap: VolumeCapability) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![cap],
        parameters: HashMap::from([("volumeGroup".to_string(), VG.to_string())]),
        ..Default::default()
    }
}

/// CreateVolume that must succeed; the volume.
async fn create(c: &mut Clients, name: &str, bytes: i64, cap: VolumeCapability) -> Volume {
    c.controller
        .create_volume(create_req(name, bytes, cap))
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e:?}"))
        .into_inner()
        .volume
        .unwrap()
}

fn stage_req(id: &str, staging: &Path, cap: VolumeCapability) -> NodeStageVolumeRequest {
    NodeStageVolumeRequest {
        volume_id: id.into(),
        staging_target_path: staging.display().to_string(),
        volume_capability: Some(cap),
        ..Default::default()
    }
}

fn publish_req(
    id: &str,
    staging: &Path,
    target: &Path,
    cap: VolumeCapability,
) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: id.into(),
        staging_target_path: staging.display().to_string(),
        target_path: target.display().to_string(),
        volume_capability: Some(cap),
        readonly: false,
        ..Default::default()
    }
}

fn unpublish_req(id: &str, target: &Path) -> NodeUnpublishVolumeRequest {
    NodeUnpublishVolumeRequest {
        volume_id: id.into(),
        target_path: target.display().to_string(),
    }
}

fn size_of(path: &Path) -> u64 {
    sh(&format!(
        "df -B1 --output=size {} | tail -1",
        path.display()
    ))
    .trim()
    .parse()
    .unwrap()
}

fn lv_of(id: &str) -> String {
    id.split_once('/').unwrap().1.to_string()
}

fn step(s: &str) {
    eprintln!("\n--- e2e: {s}");
}

#[test]
#[ignore = "runs inside the QEMU guest through local_vg_lifecycle_in_guest"]
fn guest_local_vg_lifecycle() {
    assert!(in_guest(), "run through local_vg_lifecycle_in_guest");
    sh(&format!(
        "pvcreate -q /dev/vda /dev/vdb && vgcreate -q {VG} /dev/vda /dev/vdb"
    ));
    // An LV the driver did not create: it must never be touched.
    sh(&format!(
        "lvcreate -q -y -n foreign -L 8M {VG} && mkfs.ext4 -q /dev/{VG}/foreign"
    ));
    let socket = PathBuf::from("/run/vglet/e2e.sock");
    let driver = DriverProcess::start_logged(
        &[
            "--mode",
            "all",
            "--node-id",
            "e2e-node",
            "--volume-group",
            VG,
        ],
        &socket,
        Path::new("/tmp/e2e-local-driver.log"),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = clients(&socket).await;
        identity(&mut c).await;
        for (fs, size) in [("ext4", 64 * MIB), ("xfs", 320 * MIB)] {
            filesystem_lifecycle(&mut c, &driver, fs, size).await;
        }
        block_lifecycle(&mut c, &driver).await;
        vouched_stage(&mut c, &driver).await;
        optimistic_create(&mut c, &driver).await;
        bad_input(&mut c).await;
        pagination(&mut c).await;
        concurrent_same_name(&mut c).await;
    });
    let left: Vec<String> = lvs(VG).into_iter().map(|l| l.0).collect();
    assert_eq!(
        left,
        vec!["foreign".to_string()],
        "only the foreign LV may remain"
    );
    sh(&format!("blkid -p /dev/{VG}/foreign | grep -q ext4"));
    eprintln!("\nE2E LOCAL VG: ALL STEPS PASSED");
}

async fn identity(c: &mut Clients) {
    step("identity: Probe answers from the start, then becomes ready");
    // The socket exists before start-up's lvm reads end: Probe answers at once (not ready
    // while start-up runs) and turns ready when it is done.
    let ready_at_once = wait_probe_ready(c).await;
    eprintln!("first Probe already ready: {ready_at_once}");
    let info = c
        .identity
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "lvm.vglet.io");
    assert!(!info.vendor_version.is_empty());
    let probe = c
        .identity
        .probe(ProbeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(probe.ready, Some(true));
    let caps = c
        .identity
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .unwrap();
    assert_eq!(caps.into_inner().capabilities.len(), 3);
    let node = c
        .node
        .node_get_info(NodeGetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(node.node_id, "e2e-node");
    assert_eq!(
        node.accessible_topology
            .unwrap()
            .segments
            .get("topology.vglet.io/node")
            .map(String::as_str),
        Some("e2e-node")
    );
}

/// Publishes (after a stage) and asserts that the driver ran no lvm command for it: the
/// stage record and the staging mount prove the volume.
async fn publish_without_lvm(
    c: &mut Clients,
    driver: &DriverProcess,
    req: NodePublishVolumeRequest,
) {
    let mark = driver.log_mark();
    c.node.node_publish_volume(req).await.unwrap();
    let commands = driver.commands_since(mark);
    assert!(
        !commands.iter().any(|l| l.contains("lvm")),
        "NodePublishVolume after NodeStageVolume ran lvm:\n{}",
        commands.join("\n")
    );
}

/// The commands since `mark` that ran lvm, and those that ran blkid.
fn lvm_and_blkid(driver: &DriverProcess, mark: u64) -> (Vec<String>, Vec<String>) {
    let commands = driver.commands_since(mark);
    let of = |tool: &str| -> Vec<String> {
        commands
            .iter()
            .filter(|l| l.contains(&format!("/{tool} ")))
            .cloned()
            .collect()
    };
    (of("lvm"), of("blkid"))
}

/// NodeStageVolume of a volume this driver process created: what CreateVolume learned
/// (the LV's uuid, checked against device-mapper) replaces the lvm read, and a head still
/// zeroed by lvcreate replaces blkid. An LV re-created under the name reads lvm, and a
/// head with something on it is probed by blkid as before.
async fn vouched_stage(c: &mut Clients, driver: &DriverProcess) {
    let cap = mount_cap("ext4", Mode::SingleNodeWriter);
    let base = PathBuf::from("/run/e2e/vouched");
    let staging = base.join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let id = create(c, "pvc-e2e-vouched", 64 * MIB, cap.clone())
        .await
        .volume_id;

    step("vouched: another filesystem is refused without reading lvm");
    let mark = driver.log_mark();
    let e = c
        .node
        .node_stage_volume(stage_req(
            &id,
            &staging,
            mount_cap("xfs", Mode::SingleNodeWriter),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(mount_at(&staging).is_none());
    assert!(lvm_and_blkid(driver, mark).0.is_empty());

    step("vouched: first stage runs mkfs and mount only (no lvm read, no blkid)");
    let mark = driver.log_mark();
    c.node
        .node_stage_volume(stage_req(&id, &staging, cap.clone()))
        .await
        .unwrap();
    let (lvm, blkid) = lvm_and_blkid(driver, mark);
    assert!(
        lvm.is_empty(),
        "stage of a volume created here ran lvm:\n{}",
        lvm.join("\n")
    );
    assert!(
        blkid.is_empty(),
        "zeroed head still probed:\n{}",
        blkid.join("\n")
    );
    assert!(
        driver
            .commands_since(mark)
            .iter()
            .any(|l| l.contains("mkfs.ext4")),
        "the fresh volume was formatted"
    );
    assert_eq!(mount_at(&staging).expect("staged").0, "ext4");
    std::fs::write(staging.join("kept.txt"), "vouched data\n").unwrap();
    vglet_e2e::rpc::unstage(c, &id, &staging).await;

    step("vouched: the second stage keeps the data (blkid sees the filesystem, no mkfs)");
    let mark = driver.log_mark();
    c.node
        .node_stage_volume(stage_req(&id, &staging, cap.clone()))
        .await
        .unwrap();
    let (lvm, blkid) = lvm_and_blkid(driver, mark);
    assert!(lvm.is_empty(), "{lvm:?}");
    assert_eq!(blkid.len(), 1, "a written head is probed: {blkid:?}");
    assert!(
        !driver
            .commands_since(mark)
            .iter()
            .any(|l| l.contains("mkfs"))
    );
    assert_eq!(
        std::fs::read_to_string(staging.join("kept.txt")).unwrap(),
        "vouched data\n"
    );
    vglet_e2e::rpc::unstage(c, &id, &staging).await;

    step("vouched: an LV re-created under the name (new uuid) sends NodeStage to the lvm read");
    let tags = sh(&format!("lvs --noheadings -o lv_tags {id}"));
    let add: String = tags
        .trim()
        .split(',')
        .map(|t| format!(" --addtag {t}"))
        .collect();
    sh(&format!(
        "lvremove -q -y {id} && lvcreate -q -y -Wy -Zy -L 64M -n {} {add} {VG}",
        lv_of(&id)
    ));
    let mark = driver.log_mark();
    c.node
        .node_stage_volume(stage_req(&id, &staging, cap.clone()))
        .await
        .unwrap();
    assert!(
        lvm_and_blkid(driver, mark)
            .0
            .iter()
            .any(|l| l.contains("fullreport")),
        "the lvm read decided"
    );
    assert_eq!(mount_at(&staging).expect("staged").0, "ext4");
    assert!(
        !staging.join("kept.txt").exists(),
        "a new LV, a new filesystem"
    );
    vglet_e2e::rpc::unstage(c, &id, &staging).await;

    step("vouched: something written on a fresh volume's head is never formatted over");
    let id2 = create(c, "pvc-e2e-vouched-2", 64 * MIB, cap.clone())
        .await
        .volume_id;
    let dev2 = format!("/dev/{id2}");
    sh(&format!("mkswap -q {dev2}"));
    let mark = driver.log_mark();
    let e = c
        .node
        .node_stage_volume(stage_req(&id2, &staging, cap.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("swap"), "{e:?}");
    let (lvm, blkid) = lvm_and_blkid(driver, mark);
    assert!(lvm.is_empty(), "{lvm:?}");
    assert_eq!(blkid.len(), 1, "blkid decided");
    assert!(mount_at(&staging).is_none());
    assert_eq!(
        sh(&format!("blkid -p -o value -s TYPE {dev2}")).trim(),
        "swap"
    );

    for v in [&id, &id2] {
        vglet_e2e::rpc::delete(c, v).await.unwrap();
    }
}

/// GetCapacity reads the VG: the read an optimistic CreateVolume may rely on.
async fn read_vg(c: &mut Clients) {
    c.controller
        .get_capacity(GetCapacityRequest::default())
        .await
        .unwrap();
}

/// CreateVolume with one served VG and a recent read of it runs lvcreate without reading
/// again: lvm itself refuses an existing name or missing space, and then the read decides
/// exactly as without the attempt.
async fn optimistic_create(c: &mut Clients, driver: &DriverProcess) {
    let cap = mount_cap("ext4", Mode::SingleNodeWriter);

    step("optimistic create: lvcreate and the marker's removal, no read");
    read_vg(c).await;
    let mark = driver.log_mark();
    let vol = create(c, "pvc-e2e-optimistic", 64 * MIB, cap.clone()).await;
    let (lvm, _) = lvm_and_blkid(driver, mark);
    assert!(
        lvm.iter().any(|l| l.contains("lvcreate")) && !lvm.iter().any(|l| l.contains("fullreport")),
        "{lvm:#?}"
    );
    let lv = lvs(VG)
        .into_iter()
        .find(|l| l.0 == lv_of(&vol.volume_id))
        .expect("lvs shows the new LV");
    assert_eq!(lv.1 as i64, 64 * MIB);
    assert!(
        lv.2.contains("vglet.owner=lvm.vglet.io") && !lv.2.contains("vglet.creating"),
        "{}",
        lv.2
    );

    step("optimistic create: a retry is answered by the read, the same volume");
    let mark = driver.log_mark();
    let again = create(c, "pvc-e2e-optimistic", 64 * MIB, cap.clone()).await;
    assert_eq!(again.volume_id, vol.volume_id);
    assert_eq!(again.capacity_bytes, 64 * MIB);
    let (lvm, _) = lvm_and_blkid(driver, mark);
    assert!(!lvm.iter().any(|l| l.contains("lvcreate")), "{lvm:#?}");

    step("optimistic create: an LV of the name that is not ours is refused and left alone");
    sh(&format!(
        "lvcreate -q -y -n csi-pvc-e2e-collide -L 8M {VG} && mkfs.ext4 -q /dev/{VG}/csi-pvc-e2e-collide"
    ));
    read_vg(c).await;
    let mark = driver.log_mark();
    let e = c
        .controller
        .create_volume(create_req("pvc-e2e-collide", 64 * MIB, cap.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    let (lvm, _) = lvm_and_blkid(driver, mark);
    assert!(
        lvm.iter().any(|l| l.contains("lvcreate")),
        "lvm refused the optimistic lvcreate: {lvm:#?}"
    );
    assert!(
        lvm.iter().any(|l| l.contains("fullreport")),
        "then the read decided: {lvm:#?}"
    );
    let foreign = lvs(VG)
        .into_iter()
        .find(|l| l.0 == "csi-pvc-e2e-collide")
        .expect("the foreign LV is still there");
    assert_eq!(foreign.1, 8 << 20);
    assert_eq!(foreign.2, "", "no tag was written on it");
    sh(&format!(
        "blkid -p /dev/{VG}/csi-pvc-e2e-collide | grep -q ext4"
    ));
    sh(&format!("lvremove -q -y {VG}/csi-pvc-e2e-collide"));

    step("optimistic create: space taken since the last read is refused by lvm, then by the read");
    // The read still shows the space; an operator takes all of it afterwards.
    read_vg(c).await;
    sh(&format!("lvcreate -q -y -n filler -l 100%FREE {VG}"));
    let before = lvs(VG);
    let mark = driver.log_mark();
    let e = c
        .controller
        .create_volume(create_req("pvc-e2e-no-space", 64 * MIB, cap.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    let (lvm, _) = lvm_and_blkid(driver, mark);
    assert!(
        lvm.iter().any(|l| l.contains("lvcreate")),
        "the optimistic lvcreate was tried: {lvm:#?}"
    );
    assert!(
        lvm.iter().any(|l| l.contains("fullreport")),
        "then the read decided: {lvm:#?}"
    );
    assert_eq!(lvs(VG), before, "nothing created");
    sh(&format!("lvremove -q -y {VG}/filler"));

    vglet_e2e::rpc::delete(c, &vol.volume_id).await.unwrap();
}

async fn filesystem_lifecycle(c: &mut Clients, driver: &DriverProcess, fs: &str, size: i64) {
    let name = format!("pvc-e2e-{fs}");
    let cap = mount_cap(fs, Mode::SingleNodeWriter);
    let base = PathBuf::from(format!("/run/e2e/{fs}"));
    let staging = base.join("staging");
    let target = base.join("pods/vol/mount");
    std::fs::create_dir_all(&staging).unwrap();

    step(&format!("{fs}: create"));
    let vol = create(c, &name, size, cap.clone()).await;
    let id = vol.volume_id.clone();
    assert_eq!(vol.capacity_bytes, size);
    let lv = lvs(VG)
        .into_iter()
        .find(|l| l.0 == lv_of(&id))
        .expect("lvs shows the new LV");
    assert_eq!(lv.1 as i64, size);
    assert!(lv.2.contains("vglet.owner=lvm.vglet.io"), "tags: {}", lv.2);
    assert!(lv.2.contains(&format!("vglet.fs={fs}")), "tags: {}", lv.2);

    step(&format!(
        "{fs}: create again is idempotent; incompatible size is ALREADY_EXISTS"
    ));
    let again = create(c, &name, size, cap.clone()).await;
    assert_eq!(again.volume_id, id);
    assert_eq!(again.capacity_bytes, size);
    let e = c
        .controller
        .create_volume(create_req(&name, size * 4, cap.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    let other_fs = if fs == "ext4" { "xfs" } else { "ext4" };
    let e = c
        .controller
        .create_volume(create_req(
            &name,
            size,
            mount_cap(other_fs, Mode::SingleNodeWriter),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");

    step(&format!("{fs}: stage (mkfs + mount), twice"));
    let mark = driver.log_mark();
    c.node
        .node_stage_volume(stage_req(&id, &staging, cap.clone()))
        .await
        .unwrap();
    // The log does show the commands, so their absence after a publish means something.
    assert!(
        driver
            .commands_since(mark)
            .iter()
            .any(|l| l.contains(&format!("mkfs.{fs}"))),
        "NodeStageVolume's mkfs is not in the driver's log"
    );
    let m = mount_at(&staging).expect("staging path is mounted");
    assert_eq!(m.0, fs);
    assert!(m.2.contains("noatime"), "mount flags honoured: {}", m.2);
    c.node
        .node_stage_volume(stage_req(&id, &staging, cap.clone()))
        .await
        .unwrap();

    step(&format!("{fs}: publish, twice, without any lvm command"));
    publish_without_lvm(c, driver, publish_req(&id, &staging, &target, cap.clone())).await;
    assert_eq!(mount_at(&target).expect("target is mounted").0, fs);
    publish_without_lvm(c, driver, publish_req(&id, &staging, &target, cap.clone())).await;
    // The record proves only what it holds: another filesystem goes to the lvm read,
    // which refuses it as before.
    let e = c
        .node
        .node_publish_volume(publish_req(
            &id,
            &staging,
            &base.join("pods/other/mount"),
            mount_cap(other_fs, Mode::SingleNodeWriter),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(mount_at(&base.join("pods/other/mount")).is_none());

    step(&format!("{fs}: write known content"));
    let content = format!("vglet e2e {fs} {}\n", "x".repeat(1000));
    std::fs::write(target.join("hello.txt"), &content).unwrap();
    sh("sync");

    step(&format!("{fs}: unpublish + unstage, twice each"));
    c.node
        .node_unpublish_volume(unpublish_req(&id, &target))
        .await
        .unwrap();
    assert!(mount_at(&target).is_none());
    assert!(!target.exists(), "the driver removes the target it created");
    // The record says staged, the kernel says otherwise (unmounted behind the driver's
    // back): not published, and staging again repairs it.
    sh(&format!("umount {}", staging.display()));
    let e = c
        .node
        .node_publish_volume(publish_req(&id, &staging, &target, cap.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(mount_at(&target).is_none());
    c.node
        .node_stage_volume(stage_req(&id, &staging, cap.clone()))
        .await
        .unwrap();
    assert!(mount_at(&staging).is_some());
    c.node
        .node_unpublish_volume(unpublish_req(&id, &target))
        .await
        .unwrap();
    vglet_e2e::rpc::unstage(c, &id, &staging).await;
    assert!(mount_at(&staging).is_none());
    vglet_e2e::rpc::unstage(c, &id, &staging).await;

    step(&format!(
        "{fs}: stage + publish again: the content reads back (no reformat)"
    ));
    c.node
        .node_stage_volume(stage_req(&id, &staging, cap.clone()))
        .await
        .unwrap();
    c.node
        .node_publish_volume(publish_req(&id, &staging, &target, cap.clone()))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(target.join("hello.txt")).unwrap(),
        content
    );

    step(&format!(
        "{fs}: read-only publish of the same volume elsewhere"
    ));
    let ro_target = base.join("pods/ro/mount");
    let mut ro = publish_req(&id, &staging, &ro_target, cap.clone());
    ro.readonly = true;
    c.node.node_publish_volume(ro.clone()).await.unwrap();
    assert!(
        mount_at(&ro_target)
            .unwrap()
            .2
            .split(',')
            .any(|o| o == "ro")
    );
    assert!(
        std::fs::write(ro_target.join("nope"), "x").is_err(),
        "read-only publish is writable"
    );
    c.node
        .node_unpublish_volume(unpublish_req(&id, &ro_target))
        .await
        .unwrap();

    step(&format!("{fs}: expand online"));
    let before = size_of(&target);
    let new_size = size + 128 * MIB;
    let exp = c
        .controller
        .controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: id.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes: new_size,
                limit_bytes: 0,
            }),
            volume_capability: Some(cap.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(exp.capacity_bytes, new_size);
    assert!(exp.node_expansion_required);
    assert_eq!(
        lvs(VG).into_iter().find(|l| l.0 == lv_of(&id)).unwrap().1 as i64,
        new_size
    );
    let nexp = c
        .node
        .node_expand_volume(NodeExpandVolumeRequest {
            volume_id: id.clone(),
            volume_path: target.display().to_string(),
            capacity_range: Some(CapacityRange {
                required_bytes: new_size,
                limit_bytes: 0,
            }),
            staging_target_path: staging.display().to_string(),
            volume_capability: Some(cap.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(nexp.capacity_bytes, new_size);
    let after = size_of(&target);
    assert!(
        after > before + 100 * MIB as u64,
        "df: filesystem grew from {before} to {after}"
    );
    assert_eq!(
        std::fs::read_to_string(target.join("hello.txt")).unwrap(),
        content
    );
    // Same request again: nothing to do, same answer.
    let exp2 = c
        .controller
        .controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: id.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes: new_size,
                limit_bytes: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(exp2.capacity_bytes, new_size);

    step(&format!("{fs}: stats, get, validate"));
    let stats = c
        .node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: id.clone(),
            volume_path: target.display().to_string(),
            staging_target_path: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.usage.len(), 2, "bytes and inodes");
    assert_eq!(stats.usage[0].total as u64, after);
    assert!(stats.usage[1].total > 0);
    assert!(!stats.volume_condition.unwrap().abnormal);
    let got = c
        .controller
        .controller_get_volume(ControllerGetVolumeRequest {
            volume_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.volume.unwrap().capacity_bytes, new_size);
    let valid = c
        .controller
        .validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
            volume_id: id.clone(),
            volume_capabilities: vec![cap.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(valid.confirmed.is_some(), "{}", valid.message);

    step(&format!("{fs}: tear down and delete"));
    c.node
        .node_unpublish_volume(unpublish_req(&id, &target))
        .await
        .unwrap();
    vglet_e2e::rpc::unstage(c, &id, &staging).await;
    c.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(lvs(VG).iter().all(|l| l.0 != lv_of(&id)), "LV is gone");
    c.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
}

async fn block_lifecycle(c: &mut Clients, driver: &DriverProcess) {
    let cap = req::block_cap(Mode::SingleNodeWriter);
    let staging = PathBuf::from("/run/e2e/block/staging");
    let target = PathBuf::from("/run/e2e/block/pods/dev/volume");
    std::fs::create_dir_all(&staging).unwrap();
    step("block: create, stage, publish");
    let vol = create(c, "pvc-e2e-block", 16 * MIB, cap.clone()).await;
    let id = vol.volume_id;
    c.node
        .node_stage_volume(stage_req(&id, &staging, cap.clone()))
        .await
        .unwrap();
    publish_without_lvm(c, driver, publish_req(&id, &staging, &target, cap.clone())).await;
    publish_without_lvm(c, driver, publish_req(&id, &staging, &target, cap.clone())).await;
    assert!(mount_at(&target).is_some(), "block target is a bind mount");

    step("block: dd through the published file, read back from the LV");
    sh("dd if=/dev/urandom of=/tmp/pattern bs=1M count=4 status=none");
    sh(&format!(
        "dd if=/tmp/pattern of={} bs=1M oflag=direct conv=fsync status=none",
        target.display()
    ));
    let lv_dev = format!("/dev/{}", id);
    sh(&format!(
        "dd if={lv_dev} of=/tmp/readback bs=1M count=4 iflag=direct status=none && cmp /tmp/pattern /tmp/readback"
    ));

    let stats = c
        .node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: id.clone(),
            volume_path: target.display().to_string(),
            staging_target_path: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.usage[0].total, 16 * MIB);

    step("block: tear down");
    c.node
        .node_unpublish_volume(unpublish_req(&id, &target))
        .await
        .unwrap();
    assert!(mount_at(&target).is_none());
    assert!(!target.exists());
    vglet_e2e::rpc::unstage(c, &id, &staging).await;
    c.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(lvs(VG).iter().all(|l| l.0 != lv_of(&id)));
}

/// Every bad request gets its code and leaves LVM exactly as it was.
async fn bad_input(c: &mut Clients) {
    step("bad input: each gets the right code and changes nothing");
    let good = mount_cap("ext4", Mode::SingleNodeWriter);
    // A real volume of ours for the requests that need one (staged nowhere).
    let ours = create(c, "pvc-e2e-bad", 8 * MIB, good.clone())
        .await
        .volume_id;
    let before = lvs(VG);
    let vg_size: i64 = sh(&format!(
        "vgs --noheadings --units b --nosuffix -o vg_size {VG}"
    ))
    .trim()
    .parse()
    .unwrap();

    let mut cases: Vec<(&str, Code, Result<(), tonic::Status>)> = Vec::new();
    macro_rules! case {
        ($what:expr, $code:expr, $call:expr) => {
            cases.push(($what, $code, $call.await.map(|_| ())));
        };
    }
    let ctl = &mut c.controller;
    case!(
        "empty name",
        Code::InvalidArgument,
        ctl.create_volume(create_req("", MIB, good.clone()))
    );
    case!(
        "negative capacity",
        Code::InvalidArgument,
        ctl.create_volume(create_req("pvc-neg", -1, good.clone()))
    );
    let mut r = create_req("pvc-lim", 10 * MIB, good.clone());
    r.capacity_range = Some(CapacityRange {
        required_bytes: 10 * MIB,
        limit_bytes: 5 * MIB,
    });
    case!(
        "required above limit",
        Code::InvalidArgument,
        ctl.create_volume(r)
    );
    let mut r = create_req("pvc-round", MIB, good.clone());
    r.capacity_range = Some(CapacityRange {
        required_bytes: MIB,
        limit_bytes: 2 * MIB,
    });
    case!(
        "extent rounding passes limit",
        Code::OutOfRange,
        ctl.create_volume(r)
    );
    case!(
        "huge capacity",
        Code::OutOfRange,
        ctl.create_volume(create_req("pvc-huge", 1 << 50, good.clone()))
    );
    case!(
        "more than free",
        Code::ResourceExhausted,
        ctl.create_volume(create_req("pvc-full", vg_size - 4 * MIB, good.clone()))
    );
    let mut r = create_req("pvc-vg", MIB, good.clone());
    r.parameters.insert("volumeGroup".into(), "nosuchvg".into());
    case!("unknown VG", Code::InvalidArgument, ctl.create_volume(r));
    let mut r = create_req("pvc-param", MIB, good.clone());
    r.parameters.insert("volumegroup".into(), VG.into());
    case!(
        "unknown parameter",
        Code::InvalidArgument,
        ctl.create_volume(r)
    );
    let mut r = create_req("pvc-nocap", MIB, good.clone());
    r.volume_capabilities.clear();
    case!("no capability", Code::InvalidArgument, ctl.create_volume(r));
    case!(
        "multi-node writer on local VG",
        Code::InvalidArgument,
        ctl.create_volume(create_req(
            "pvc-rwx",
            MIB,
            mount_cap("ext4", Mode::MultiNodeMultiWriter)
        ))
    );
    case!(
        "unknown access mode",
        Code::InvalidArgument,
        ctl.create_volume(create_req("pvc-unk", MIB, mount_cap("ext4", Mode::Unknown)))
    );
    case!(
        "unsupported fs",
        Code::InvalidArgument,
        ctl.create_volume(create_req(
            "pvc-btrfs",
            MIB,
            mount_cap("btrfs", Mode::SingleNodeWriter)
        ))
    );
    let mut bad_flags = mount_cap("ext4", Mode::SingleNodeWriter);
    if let Some(AccessType::Mount(m)) = &mut bad_flags.access_type {
        m.mount_flags = vec!["suid,dev".into()];
    }
    case!(
        "mount flag injection",
        Code::InvalidArgument,
        ctl.create_volume(create_req("pvc-flags", MIB, bad_flags))
    );
    // An id vglet never issued names no volume: the spec's OK for a delete.
    for id in ["../x", "vg/lv;rm", "e2evg/../../etc", "e2evg/a b"] {
        case!(
            "never-issued volume id (delete)",
            Code::Ok,
            ctl.delete_volume(DeleteVolumeRequest {
                volume_id: id.into(),
                ..Default::default()
            })
        );
    }
    case!(
        "empty volume id (delete)",
        Code::InvalidArgument,
        ctl.delete_volume(DeleteVolumeRequest::default())
    );
    case!(
        "volume id in a VG not served",
        Code::FailedPrecondition,
        ctl.delete_volume(DeleteVolumeRequest {
            volume_id: "othervg/lv1".into(),
            ..Default::default()
        })
    );
    case!(
        "delete an LV we did not create",
        Code::FailedPrecondition,
        ctl.delete_volume(DeleteVolumeRequest {
            volume_id: format!("{VG}/foreign"),
            ..Default::default()
        })
    );
    case!(
        "expand an LV we did not create",
        Code::FailedPrecondition,
        ctl.controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: format!("{VG}/foreign"),
            capacity_range: Some(CapacityRange {
                required_bytes: 64 * MIB,
                limit_bytes: 0
            }),
            ..Default::default()
        })
    );
    case!(
        "expand a missing volume",
        Code::NotFound,
        ctl.controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: format!("{VG}/csi-nope"),
            capacity_range: Some(CapacityRange {
                required_bytes: 64 * MIB,
                limit_bytes: 0
            }),
            ..Default::default()
        })
    );
    case!(
        "expand without capacity",
        Code::InvalidArgument,
        ctl.controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: ours.clone(),
            ..Default::default()
        })
    );
    case!(
        "expand beyond the VG",
        Code::ResourceExhausted,
        ctl.controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: ours.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes: vg_size - 4 * MIB,
                limit_bytes: 0
            }),
            ..Default::default()
        })
    );
    case!(
        "list with a bad token",
        Code::Aborted,
        ctl.list_volumes(ListVolumesRequest {
            starting_token: "garbage".into(),
            max_entries: 0
        })
    );
    case!(
        "list with negative max",
        Code::InvalidArgument,
        ctl.list_volumes(ListVolumesRequest {
            starting_token: String::new(),
            max_entries: -1
        })
    );
    case!(
        "validate a missing volume",
        Code::NotFound,
        ctl.validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
            volume_id: format!("{VG}/csi-nope"),
            volume_capabilities: vec![good.clone()],
            ..Default::default()
        })
    );
    case!(
        "get a missing volume",
        Code::NotFound,
        ctl.controller_get_volume(ControllerGetVolumeRequest {
            volume_id: format!("{VG}/csi-nope")
        })
    );
    case!(
        "snapshot of a foreign LV",
        Code::FailedPrecondition,
        ctl.create_snapshot(CreateSnapshotRequest {
            source_volume_id: format!("{VG}/foreign"),
            name: "s".into(),
            ..Default::default()
        })
    );
    case!(
        "snapshot without a name",
        Code::InvalidArgument,
        ctl.create_snapshot(CreateSnapshotRequest {
            source_volume_id: ours.clone(),
            name: String::new(),
            ..Default::default()
        })
    );
    case!(
        "snapshot with an unknown parameter",
        Code::InvalidArgument,
        ctl.create_snapshot(CreateSnapshotRequest {
            source_volume_id: ours.clone(),
            name: "s".into(),
            parameters: HashMap::from([("size".to_string(), "5".to_string())]),
            ..Default::default()
        })
    );

    let node = &mut c.node;
    let staging = PathBuf::from("/run/e2e/bad/staging");
    std::fs::create_dir_all(&staging).unwrap();
    case!(
        "stage: missing staging path",
        Code::InvalidArgument,
        node.node_stage_volume(stage_req(&ours, Path::new(""), good.clone()))
    );
    case!(
        "stage: relative staging path",
        Code::InvalidArgument,
        node.node_stage_volume(NodeStageVolumeRequest {
            volume_id: ours.clone(),
            staging_target_path: "rel/path".into(),
            volume_capability: Some(good.clone()),
            ..Default::default()
        })
    );
    case!(
        "stage: .. in staging path",
        Code::InvalidArgument,
        node.node_stage_volume(NodeStageVolumeRequest {
            volume_id: ours.clone(),
            staging_target_path: "/run/e2e/../../etc".into(),
            volume_capability: Some(good.clone()),
            ..Default::default()
        })
    );
    case!(
        "stage: no capability",
        Code::InvalidArgument,
        node.node_stage_volume(NodeStageVolumeRequest {
            volume_id: ours.clone(),
            staging_target_path: staging.display().to_string(),
            ..Default::default()
        })
    );
    case!(
        "stage: missing volume",
        Code::NotFound,
        node.node_stage_volume(stage_req(&format!("{VG}/csi-nope"), &staging, good.clone()))
    );
    case!(
        "stage: foreign LV",
        Code::FailedPrecondition,
        node.node_stage_volume(stage_req(&format!("{VG}/foreign"), &staging, good.clone()))
    );
    case!(
        "stage: malformed id",
        Code::InvalidArgument,
        node.node_stage_volume(stage_req("vg/lv;rm", &staging, good.clone()))
    );
    case!(
        "stage: capability disagrees with volume",
        Code::InvalidArgument,
        node.node_stage_volume(stage_req(
            &ours,
            &staging,
            req::block_cap(Mode::SingleNodeWriter)
        ))
    );
    case!(
        "publish: missing target path",
        Code::InvalidArgument,
        node.node_publish_volume(publish_req(&ours, &staging, Path::new(""), good.clone()))
    );
    case!(
        "publish: before stage",
        Code::FailedPrecondition,
        node.node_publish_volume(publish_req(
            &ours,
            &staging,
            Path::new("/run/e2e/bad/target"),
            good.clone()
        ))
    );
    case!(
        "unpublish: relative target",
        Code::InvalidArgument,
        node.node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: ours.clone(),
            target_path: "x/y".into()
        })
    );
    case!(
        "stats: missing path",
        Code::NotFound,
        node.node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: ours.clone(),
            volume_path: "/run/e2e/none".into(),
            staging_target_path: String::new()
        })
    );
    case!(
        "node expand: not mounted",
        Code::NotFound,
        node.node_expand_volume(NodeExpandVolumeRequest {
            volume_id: ours.clone(),
            volume_path: "/run/e2e/bad/staging".into(),
            ..Default::default()
        })
    );

    let mut failed = Vec::new();
    for (what, want, got) in &cases {
        let code = match got {
            Ok(()) => Code::Ok,
            Err(s) => s.code(),
        };
        let msg = got
            .as_ref()
            .err()
            .map(|s| s.message().to_string())
            .unwrap_or_default();
        eprintln!("  {:<45} {:?} ({msg})", what, code);
        if code != *want {
            failed.push(format!("{what}: want {want:?}, got {code:?} {msg}"));
        }
    }
    assert!(
        failed.is_empty(),
        "bad-input cases with the wrong code:\n{}",
        failed.join("\n")
    );
    assert_eq!(lvs(VG), before, "lvs changed after bad input");
    eprintln!("  {} bad-input cases, lvs unchanged", cases.len());
    c.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: ours,
            ..Default::default()
        })
        .await
        .unwrap();
}

async fn pagination(c: &mut Clients) {
    step("ListVolumes pagination over 5 volumes, 2 per page");
    let cap = req::block_cap(Mode::SingleNodeWriter);
    let mut ids = Vec::new();
    for i in 0..5 {
        let v = create(c, &format!("pvc-page-{i}"), 4 * MIB, cap.clone()).await;
        ids.push(v.volume_id);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let resp = c
            .controller
            .list_volumes(ListVolumesRequest {
                max_entries: 2,
                starting_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(resp.entries.len() <= 2);
        pages += 1;
        seen.extend(
            resp.entries
                .into_iter()
                .map(|e| e.volume.unwrap().volume_id),
        );
        if resp.next_token.is_empty() {
            break;
        }
        token = resp.next_token;
    }
    ids.sort();
    assert_eq!(
        seen, ids,
        "every volume exactly once, in order; the foreign LV is not listed"
    );
    assert_eq!(pages, 3);
    let cap_resp = c
        .controller
        .get_capacity(GetCapacityRequest::default())
        .await
        .unwrap()
        .into_inner();
    let free: i64 = sh(&format!(
        "vgs --noheadings --units b --nosuffix -o vg_free {VG}"
    ))
    .trim()
    .parse()
    .unwrap();
    assert_eq!(cap_resp.available_capacity, free, "GetCapacity = VG free");
    for id in ids {
        c.controller
            .delete_volume(DeleteVolumeRequest {
                volume_id: id,
                ..Default::default()
            })
            .await
            .unwrap();
    }
}

async fn concurrent_same_name(c: &mut Clients) {
    step("10 concurrent CreateVolume with one name: one LV, every success names it");
    let cap = req::block_cap(Mode::SingleNodeWriter);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let mut ctl = c.controller.clone();
        let req = create_req("pvc-race", 4 * MIB, cap.clone());
        tasks.push(tokio::spawn(async move { ctl.create_volume(req).await }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => ids.push(r.into_inner().volume.unwrap().volume_id),
            Err(s) => assert_eq!(s.code(), Code::Aborted, "{s:?}"),
        }
    }
    assert!(!ids.is_empty());
    ids.dedup();
    assert_eq!(ids.len(), 1);
    assert_eq!(lvs(VG).iter().filter(|l| l.0 == lv_of(&ids[0])).count(), 1);
    // A retry after the race settles succeeds with the same volume.
    let again = create(c, "pvc-race", 4 * MIB, cap).await;
    assert_eq!(again.volume_id, ids[0]);
    c.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: ids[0].clone(),
            ..Default::default()
        })
        .await
        .unwrap();
}
