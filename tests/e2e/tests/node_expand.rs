//! Node-local expansion through NodeExpandVolume alone (`--expansion node`), in a real
//! kernel: the controller does not advertise EXPAND_VOLUME (so the external-resizer only
//! marks the claim for the node), and NodeExpandVolume extends the LV, then grows the
//! filesystem. Asserted against lvs, df, blockdev and checksums of the data.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::Code;
use vglet_csi_proto::v1::volume_capability::access_mode::Mode;
use vglet_csi_proto::v1::*;
use vglet_e2e::{Clients, DriverProcess, clients, in_guest, lvs, req, run_guest_test, sh};

const VG: &str = "nxvg";
const MIB: i64 = 1 << 20;

#[test]
fn node_expand_in_guest() {
    if in_guest() {
        return;
    }
    let vm = vglet_vmh::Vm::new("e2e-node-expand")
        .mem_mib(1024)
        .cpus(2)
        .fresh_disk("d1", 1 << 30)
        .modules(["dm_mod", "ext4"])
        .udev(false)
        .timeout(Duration::from_secs(600));
    run_guest_test("guest_node_expand", vm);
}

fn step(s: &str) {
    eprintln!("\n--- e2e: {s}");
}

fn lv_size(id: &str) -> i64 {
    let lv = id.split_once('/').unwrap().1;
    lvs(VG).into_iter().find(|l| l.0 == lv).unwrap().1 as i64
}

fn df_size(path: &Path) -> i64 {
    sh(&format!(
        "df -B1 --output=size {} | tail -1",
        path.display()
    ))
    .trim()
    .parse()
    .unwrap()
}

fn expand_req(
    id: &str,
    path: &Path,
    required: i64,
    limit: i64,
    cap: &VolumeCapability,
) -> NodeExpandVolumeRequest {
    NodeExpandVolumeRequest {
        volume_id: id.into(),
        volume_path: path.display().to_string(),
        capacity_range: Some(CapacityRange {
            required_bytes: required,
            limit_bytes: limit,
        }),
        volume_capability: Some(cap.clone()),
        ..Default::default()
    }
}

/// Creates, stages and publishes a volume; its id.
async fn provision(
    c: &mut Clients,
    name: &str,
    bytes: i64,
    cap: &VolumeCapability,
    staging: &Path,
    target: &Path,
) -> String {
    std::fs::create_dir_all(staging).unwrap();
    let id = c
        .controller
        .create_volume(req::create_volume(name, bytes, cap.clone(), VG))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
        .volume_id;
    c.node
        .node_stage_volume(NodeStageVolumeRequest {
            volume_id: id.clone(),
            staging_target_path: staging.display().to_string(),
            volume_capability: Some(cap.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    c.node
        .node_publish_volume(NodePublishVolumeRequest {
            volume_id: id.clone(),
            staging_target_path: staging.display().to_string(),
            target_path: target.display().to_string(),
            volume_capability: Some(cap.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    id
}

async fn teardown(c: &mut Clients, id: &str, staging: &Path, target: &Path) {
    c.node
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: id.into(),
            target_path: target.display().to_string(),
        })
        .await
        .unwrap();
    vglet_e2e::rpc::unstage(c, id, staging).await;
    vglet_e2e::rpc::delete(c, id).await.unwrap();
}

fn lvextends(driver: &DriverProcess, mark: u64) -> Vec<String> {
    driver
        .commands_since(mark)
        .into_iter()
        .filter(|l| l.contains("lvextend"))
        .collect()
}

#[test]
#[ignore = "runs inside the QEMU guest through node_expand_in_guest"]
fn guest_node_expand() {
    assert!(in_guest(), "run through node_expand_in_guest");
    sh(&format!(
        "pvcreate -q /dev/vda && vgcreate -q {VG} /dev/vda"
    ));
    let socket = PathBuf::from("/run/vglet/nx.sock");
    let driver = DriverProcess::start_logged(
        &[
            "--mode",
            "all",
            "--node-id",
            "nx-node",
            "--volume-group",
            VG,
            "--expansion",
            "node",
        ],
        &socket,
        Path::new("/tmp/nx-driver.log"),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = clients(&socket).await;
        vglet_e2e::wait_probe_ready(&mut c).await;
        capabilities(&mut c).await;
        filesystem(&mut c, &driver).await;
        block(&mut c, &driver).await;
    });
    assert!(lvs(VG).is_empty(), "every volume was deleted");
    eprintln!("\nE2E NODE EXPAND: ALL STEPS PASSED");
}

async fn capabilities(c: &mut Clients) {
    step("capabilities: no controller EXPAND_VOLUME, node EXPAND_VOLUME, plugin ONLINE");
    use controller_service_capability::rpc::Type as C;
    use node_service_capability::rpc::Type as N;
    let ctl: Vec<i32> = c
        .controller
        .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities
        .into_iter()
        .filter_map(|cap| match cap.r#type {
            Some(controller_service_capability::Type::Rpc(r)) => Some(r.r#type),
            _ => None,
        })
        .collect();
    assert!(ctl.contains(&(C::CreateDeleteVolume as i32)), "{ctl:?}");
    assert!(!ctl.contains(&(C::ExpandVolume as i32)), "{ctl:?}");
    let node: Vec<i32> = c
        .node
        .node_get_capabilities(NodeGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities
        .into_iter()
        .filter_map(|cap| match cap.r#type {
            Some(node_service_capability::Type::Rpc(r)) => Some(r.r#type),
            _ => None,
        })
        .collect();
    assert!(node.contains(&(N::ExpandVolume as i32)), "{node:?}");
    let plugin = c
        .identity
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    assert!(plugin.iter().any(|p| matches!(
        p.r#type,
        Some(plugin_capability::Type::VolumeExpansion(v))
            if v.r#type == plugin_capability::volume_expansion::Type::Online as i32
    )));
}

async fn filesystem(c: &mut Clients, driver: &DriverProcess) {
    let cap = req::mount_cap("ext4", &[], Mode::SingleNodeWriter);
    let staging = PathBuf::from("/run/nx/fs/staging");
    let target = PathBuf::from("/run/nx/fs/pods/mount");
    step("ext4: create 64 MiB, stage, publish, write data");
    let id = provision(c, "pvc-nx-fs", 64 * MIB, &cap, &staging, &target).await;
    sh(&format!(
        "dd if=/dev/urandom of={}/data bs=1M count=16 status=none conv=fsync",
        target.display()
    ));
    let sum = sh(&format!("sha256sum < {}/data", target.display()));
    let df_before = df_size(&target);

    step("ext4: NodeExpandVolume alone extends the LV (rounded to extents) and the fs");
    let asked = 150 * MIB + 1;
    let want = 152 * MIB; // whole 4 MiB extents
    let mark = driver.log_mark();
    let got = c
        .node
        .node_expand_volume(expand_req(&id, &target, asked, 0, &cap))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.capacity_bytes, want);
    assert_eq!(lv_size(&id), want, "lvs shows the new size");
    assert_eq!(lvextends(driver, mark).len(), 1, "one lvextend");
    let df_after = df_size(&target);
    assert!(
        df_after > df_before + 80 * MIB,
        "df: the filesystem grew from {df_before} to {df_after}"
    );
    sh("echo 3 > /proc/sys/vm/drop_caches");
    assert_eq!(
        sh(&format!("sha256sum < {}/data", target.display())),
        sum,
        "data intact"
    );

    step("ext4: the same NodeExpandVolume again is OK and runs no lvextend");
    let mark = driver.log_mark();
    let again = c
        .node
        .node_expand_volume(expand_req(&id, &target, asked, 0, &cap))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.capacity_bytes, want);
    assert!(lvextends(driver, mark).is_empty());
    assert_eq!(lv_size(&id), want);

    step("ext4: refused requests change nothing (VG too small; limit below the rounding)");
    let e = c
        .node
        .node_expand_volume(expand_req(&id, &target, 4 << 30, 0, &cap))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    let e = c
        .node
        .node_expand_volume(expand_req(&id, &target, 160 * MIB + 1, 161 * MIB, &cap))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    assert_eq!(lv_size(&id), want, "lvs unchanged after the refusals");
    assert_eq!(df_size(&target), df_after);

    step("ext4: LV extended but fs not grown (a crash in between): a retry converges");
    let lv_dev = format!("/dev/{id}");
    sh(&format!("lvextend -q -L 200M {lv_dev}"));
    let mark = driver.log_mark();
    let retry = c
        .node
        .node_expand_volume(expand_req(&id, &target, 200 * MIB, 0, &cap))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry.capacity_bytes, 200 * MIB);
    assert!(lvextends(driver, mark).is_empty());
    let df_retry = df_size(&target);
    assert!(
        df_retry > df_after + 40 * MIB,
        "df: {df_after} -> {df_retry}"
    );
    assert_eq!(sh(&format!("sha256sum < {}/data", target.display())), sum);
    teardown(c, &id, &staging, &target).await;
}

async fn block(c: &mut Clients, driver: &DriverProcess) {
    let cap = req::block_cap(Mode::SingleNodeWriter);
    let staging = PathBuf::from("/run/nx/block/staging");
    let target = PathBuf::from("/run/nx/block/pods/dev/volume");
    step("block: create 32 MiB, stage, publish, write a pattern");
    let id = provision(c, "pvc-nx-block", 32 * MIB, &cap, &staging, &target).await;
    sh("dd if=/dev/urandom of=/tmp/nx-pattern bs=1M count=4 status=none");
    sh(&format!(
        "dd if=/tmp/nx-pattern of={} bs=1M oflag=direct conv=fsync status=none",
        target.display()
    ));

    step("block: NodeExpandVolume alone extends the LV; the device shows it");
    let mark = driver.log_mark();
    let got = c
        .node
        .node_expand_volume(expand_req(&id, &target, 96 * MIB, 0, &cap))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.capacity_bytes, 96 * MIB);
    assert_eq!(lv_size(&id), 96 * MIB);
    assert_eq!(lvextends(driver, mark).len(), 1);
    let dev_size: i64 = sh(&format!("blockdev --getsize64 {}", target.display()))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        dev_size,
        96 * MIB,
        "blockdev --getsize64 of the published device"
    );
    sh(&format!(
        "dd if={} of=/tmp/nx-readback bs=1M count=4 iflag=direct status=none && cmp /tmp/nx-pattern /tmp/nx-readback",
        target.display()
    ));
    let again = c
        .node
        .node_expand_volume(expand_req(&id, &target, 96 * MIB, 0, &cap))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.capacity_bytes, 96 * MIB);
    teardown(c, &id, &staging, &target).await;
}
