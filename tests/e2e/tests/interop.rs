//! Issue 22, in a real kernel: a client that sends the socket path as `:authority`
//! (Python grpcio) is answered; a thin pool filled to 100 % makes its other thin volume
//! abnormal in ControllerGetVolume, ListVolumes and NodeGetVolumeStats, and the
//! `vglet_thin_pool_full` metric says so; 100 volumes churned through the node leave no
//! per-volume file in the state directory.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vglet_csi_proto::v1::volume_capability::access_mode::Mode;
use vglet_csi_proto::v1::*;
use vglet_e2e::{Clients, DriverProcess, clients, in_guest, req, rpc, run_guest_test, sh};

const VG: &str = "intvg";
const POOL: &str = "pool0";
const MIB: i64 = 1 << 20;
const METRICS: &str = "127.0.0.1:9811";
const STATE: &str = "/run/e2e-interop/state";
const CHURN: usize = 100;

/// The venv with grpcio, beside the binaries (target/pyvenv): the guest sees it read-only.
fn venv() -> PathBuf {
    vglet_e2e::bin_dir().parent().unwrap().join("pyvenv")
}

fn client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/grpcio_identity.py")
}

/// Makes the venv (pip from PyPI) unless grpcio already imports in it.
fn ensure_grpcio() -> PathBuf {
    let python = venv().join("bin/python");
    let ok = |p: &Path| {
        Command::new(p)
            .args(["-c", "import grpc"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ok(&python) {
        let run = |prog: &Path, args: &[&str]| {
            let s = Command::new(prog).args(args).status().expect("spawn");
            assert!(s.success(), "{} {args:?} failed", prog.display());
        };
        run(
            Path::new("python3"),
            &["-m", "venv", venv().to_str().unwrap()],
        );
        run(&venv().join("bin/pip"), &["install", "-q", "grpcio"]);
        assert!(ok(&python), "grpcio does not import after pip install");
    }
    python
}

fn grpcio_identity(python: &Path, socket: &Path) -> String {
    let out = Command::new(python)
        .arg(client_script())
        .arg(socket)
        .output()
        .expect("spawn python");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "grpcio client failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// On the host (no device-mapper needed for Identity): grpcio's path authority is
/// answered by the real driver; Probe's answer is the driver's own (no VG here).
#[test]
fn grpcio_client_on_the_host() {
    if in_guest() {
        return;
    }
    let python = ensure_grpcio();
    let dir = std::env::temp_dir().join(format!("vglet-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("csi.sock");
    let state = dir.join("state");
    let driver = DriverProcess::start(
        &[
            "--node-id",
            "host",
            "--volume-group",
            "vglet-interop-absent",
            "--state-dir",
            state.to_str().unwrap(),
        ],
        &socket,
    );
    assert_eq!(
        grpcio_identity(&python, &socket),
        "name=lvm.vglet.io probe=FAILED_PRECONDITION"
    );
    drop(driver);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn interop_in_guest() {
    if in_guest() {
        return;
    }
    ensure_grpcio();
    let vm = vglet_vmh::Vm::new("e2e-interop")
        .mem_mib(1536)
        .cpus(2)
        .fresh_disk("d1", 2 << 30)
        .modules(["dm_mod", "dm_thin_pool"])
        .udev(false)
        .timeout(Duration::from_secs(1200));
    run_guest_test("guest_interop", vm);
}

fn step(s: &str) {
    eprintln!("\n--- e2e: {s}");
}

#[test]
#[ignore = "runs inside the QEMU guest through interop_in_guest"]
fn guest_interop() {
    assert!(in_guest(), "run through interop_in_guest");
    // The metrics listener is on 127.0.0.1: the guest's loopback starts down.
    sh("ip link set lo up");
    sh(&format!(
        "pvcreate -q /dev/vda && vgcreate -q {VG} /dev/vda"
    ));
    // Not a driver volume: the pool the thin volumes go to. --errorwhenfull: a full pool
    // fails writes at once instead of queueing them for 60 s.
    sh(&format!(
        "lvcreate -q -y --type thin-pool -L 32M -n {POOL} {VG} && \
         lvchange -q --errorwhenfull y {VG}/{POOL} && lvs -o lv_when_full {VG}/{POOL}"
    ));
    let socket = PathBuf::from("/run/vglet/interop.sock");
    let _driver = DriverProcess::start_logged(
        &[
            "--mode",
            "all",
            "--node-id",
            "int-node",
            "--volume-group",
            VG,
            "--state-dir",
            STATE,
            "--metrics-address",
            METRICS,
        ],
        &socket,
        Path::new("/tmp/e2e-interop-driver.log"),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = clients(&socket).await;
        vglet_e2e::wait_probe_ready(&mut c).await;

        step("grpcio (path as :authority): GetPluginInfo and Probe answered");
        let python = venv().join("bin/python");
        assert_eq!(
            grpcio_identity(&python, &socket),
            "name=lvm.vglet.io probe=ready"
        );

        full_pool(&mut c).await;
        churn(&socket).await;
    });
    eprintln!("\nE2E INTEROP: ALL STEPS PASSED");
}

fn thin_params() -> std::collections::HashMap<String, String> {
    req::params(&[
        ("volumeGroup", VG),
        ("type", "thin"),
        ("thinPool", POOL),
        ("overprovisionRatio", "4"),
    ])
}

async fn create(c: &mut Clients, name: &str, bytes: i64, params: &[(&str, &str)]) -> String {
    let mut parameters = req::params(params);
    if parameters.is_empty() {
        parameters = thin_params();
    }
    c.controller
        .create_volume(CreateVolumeRequest {
            name: name.into(),
            capacity_range: Some(CapacityRange {
                required_bytes: bytes,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![req::block_cap(Mode::SingleNodeWriter)],
            parameters,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e:?}"))
        .into_inner()
        .volume
        .unwrap()
        .volume_id
}

/// Stages and publishes a block volume; the target path.
async fn stage_publish(c: &mut Clients, id: &str, dir: &Path) -> (PathBuf, PathBuf) {
    let staging = dir.join("staging");
    let target = dir.join("pod/volume");
    std::fs::create_dir_all(&staging).unwrap();
    let cap = req::block_cap(Mode::SingleNodeWriter);
    c.node
        .node_stage_volume(NodeStageVolumeRequest {
            volume_id: id.into(),
            staging_target_path: staging.display().to_string(),
            volume_capability: Some(cap.clone()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("stage {id}: {e:?}"));
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
    (staging, target)
}

async fn unpublish_unstage(c: &mut Clients, id: &str, staging: &Path, target: &Path) {
    c.node
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: id.into(),
            target_path: target.display().to_string(),
        })
        .await
        .unwrap_or_else(|e| panic!("unpublish {id}: {e:?}"));
    rpc::unstage(c, id, staging).await;
}

async fn controller_condition(c: &mut Clients, id: &str) -> VolumeCondition {
    c.controller
        .controller_get_volume(ControllerGetVolumeRequest {
            volume_id: id.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("ControllerGetVolume {id}: {e:?}"))
        .into_inner()
        .status
        .unwrap()
        .volume_condition
        .unwrap()
}

async fn listed_condition(c: &mut Clients, id: &str) -> VolumeCondition {
    let list = c
        .controller
        .list_volumes(ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    list.entries
        .into_iter()
        .find(|e| e.volume.as_ref().unwrap().volume_id == id)
        .unwrap_or_else(|| panic!("{id} not listed"))
        .status
        .unwrap()
        .volume_condition
        .unwrap()
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics listener");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

async fn full_pool(c: &mut Clients) {
    step("thin pool: two thin volumes, both healthy while the pool has room");
    // 64 MiB promised in a 32 MiB pool: the writer fills the pool before its own end.
    let writer = create(c, "thin-writer", 64 * MIB, &[]).await;
    let other = create(c, "thin-other", 16 * MIB, &[]).await;
    for id in [&writer, &other] {
        let cond = controller_condition(c, id).await;
        assert!(!cond.abnormal, "{id}: {}", cond.message);
    }
    let dir = PathBuf::from("/run/e2e-interop/writer");
    let (staging, target) = stage_publish(c, &writer, &dir).await;

    step("fill the pool from the writer until the device refuses (ENOSPC/EIO)");
    let dd = Command::new("timeout")
        .args(["300", "dd", "if=/dev/zero", "bs=1M", "oflag=direct"])
        .arg(format!("of={}", target.display()))
        .output()
        .unwrap();
    let dd_err = String::from_utf8_lossy(&dd.stderr);
    eprintln!("dd: {:?} {dd_err}", dd.status);
    assert_ne!(dd.status.code(), Some(124), "dd hung on the full pool");
    assert!(!dd.status.success(), "dd wrote 64 MiB into a 32 MiB pool");
    assert!(
        dd_err.contains("No space left on device") || dd_err.contains("Input/output error"),
        "{dd_err}"
    );
    let pool_state = sh(&format!(
        "lvs --noheadings -o lv_name,lv_attr,data_percent,metadata_percent,lv_health_status {VG}"
    ));
    eprintln!("lvm 2.03.16 on a full pool (name attr data% meta% health):\n{pool_state}");

    step("the OTHER thin volume is abnormal, naming the pool and what to do");
    let pool_name = format!("thin pool {VG}/{POOL}");
    for (how, cond) in [
        ("ControllerGetVolume", controller_condition(c, &other).await),
        ("ListVolumes", listed_condition(c, &other).await),
        ("ListVolumes (writer)", listed_condition(c, &writer).await),
    ] {
        eprintln!("{how}: {cond:?}");
        assert!(cond.abnormal, "{how}: {}", cond.message);
        assert!(cond.message.contains(&pool_name), "{how}: {}", cond.message);
        assert!(cond.message.contains("lvextend"), "{how}: {}", cond.message);
    }
    let stats = c
        .node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: writer.clone(),
            volume_path: target.display().to_string(),
            staging_target_path: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .volume_condition
        .unwrap();
    eprintln!("NodeGetVolumeStats: {stats:?}");
    assert!(
        stats.abnormal && stats.message.contains(&pool_name),
        "{stats:?}"
    );

    step("metrics: vglet_thin_pool_full is 1 for the pool");
    let body = tokio::task::spawn_blocking(|| http_get(METRICS, "/metrics"))
        .await
        .unwrap();
    let line = format!("vglet_thin_pool_full{{vg=\"{VG}\",pool=\"{POOL}\"}} 1");
    assert!(body.lines().any(|l| l == line), "no {line:?} in\n{body}");

    step("extend the pool: the other volume is healthy again");
    sh(&format!("lvextend -q -L +64M {VG}/{POOL}"));
    let cond = controller_condition(c, &other).await;
    assert!(!cond.abnormal, "after lvextend: {}", cond.message);

    unpublish_unstage(c, &writer, &staging, &target).await;
    for id in [&writer, &other] {
        rpc::delete(c, id)
            .await
            .unwrap_or_else(|e| panic!("delete {id}: {e:?}"));
    }
}

/// Every file under the state directory, relative to it.
fn state_files() -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::from(STATE)];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else {
                out.push(e.path().strip_prefix(STATE).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

async fn churn(socket: &Path) {
    step(&format!(
        "churn {CHURN} raw block volumes: create, stage, publish, unpublish, unstage, delete"
    ));
    assert!(state_files().is_empty(), "{:?}", state_files());
    // Four clients at once: lvm serialises per VG, the rest overlaps.
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let socket = socket.to_path_buf();
            tokio::spawn(async move {
                let mut c = clients(&socket).await;
                let mut mid_run = 0;
                for i in (w..CHURN).step_by(4) {
                    let name = format!("churn-{i}");
                    let id = create(&mut c, &name, 4 * MIB, &[("volumeGroup", VG)]).await;
                    let dir = PathBuf::from(format!("/run/e2e-interop/churn/{i}"));
                    let (staging, target) = stage_publish(&mut c, &id, &dir).await;
                    // While staged, the volume has its record and lock file.
                    mid_run = mid_run.max(state_files().len());
                    unpublish_unstage(&mut c, &id, &staging, &target).await;
                    rpc::delete(&mut c, &id)
                        .await
                        .unwrap_or_else(|e| panic!("delete {id}: {e:?}"));
                }
                mid_run
            })
        })
        .collect();
    let mut mid_run = 0;
    for w in workers {
        mid_run = mid_run.max(w.await.unwrap());
    }
    assert!(
        mid_run >= 2,
        "a staged volume left no file: the count proves nothing"
    );
    let left = state_files();
    eprintln!("state files while staged (max): {mid_run}; after the churn: {left:?}");
    assert!(left.is_empty(), "per-volume files left: {left:?}");
    assert!(
        vglet_e2e::lvs(VG)
            .iter()
            .all(|l| !l.0.starts_with("csi-churn"))
    );
}
