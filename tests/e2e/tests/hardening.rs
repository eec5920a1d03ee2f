//! Reliability under load and failure, in a real kernel: 50 concurrent creates and deletes,
//! an lvm command hung on a frozen device (killed at its timeout, no child left behind), a
//! full VG, and the Prometheus metrics checked against LVM's own numbers.
//!
//! The VG's first PV is a device-mapper linear device over a virtio disk, so the test can
//! freeze it (`dmsetup suspend`): every read of it then blocks, which is what a dead SAN
//! path or a hung multipath device does to lvm.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tonic::Code;
use vglet_csi_proto::v1::volume_capability::access_mode::Mode;
use vglet_csi_proto::v1::*;
use vglet_e2e::req;
use vglet_e2e::{Clients, DriverProcess, clients, in_guest, lvs, run_guest_test, sh};

const VG: &str = "hardvg";
const DM: &str = "hardpv";
const MIB: i64 = 1 << 20;
const METRICS: &str = "127.0.0.1:9808";

#[test]
fn hardening_in_guest() {
    if in_guest() {
        return;
    }
    let vm = vglet_vmh::Vm::new("e2e-hardening")
        .mem_mib(2048)
        .cpus(2)
        .fresh_disk("d1", 1 << 30)
        .fresh_disk("d2", 1 << 30)
        .modules(["dm_mod", "dm_thin_pool", "dm_raid", "raid1"])
        .udev(false)
        .timeout(Duration::from_secs(900));
    run_guest_test("guest_hardening", vm);
}

fn step(s: &str) {
    eprintln!("\n--- hardening: {s}");
}

fn block_cap() -> VolumeCapability {
    req::block_cap(Mode::SingleNodeWriter)
}

fn create_req(name: &str, bytes: i64) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![block_cap()],
        parameters: HashMap::from([("volumeGroup".to_string(), VG.to_string())]),
        ..Default::default()
    }
}

fn delete_req(id: &str) -> DeleteVolumeRequest {
    DeleteVolumeRequest {
        volume_id: id.into(),
        ..Default::default()
    }
}

fn vgs_field(field: &str) -> u64 {
    sh(&format!(
        "vgs --noheadings --units b --nosuffix -o {field} {VG}"
    ))
    .trim()
    .parse()
    .unwrap()
}

/// Owned (vglet-tagged) LVs of the VG.
fn owned_lvs() -> Vec<String> {
    lvs(VG)
        .into_iter()
        .filter(|l| l.2.contains("vglet.owner="))
        .map(|l| l.0)
        .collect()
}

/// (pid, state, ppid) of every process whose command name is `comm`.
fn processes(comm: &str) -> Vec<(u32, char, u32)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...; comm may hold spaces, so split at the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if &stat[open + 1..close] != comm {
            continue;
        }
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = rest.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        found.push((pid, state, ppid));
    }
    found
}

/// Waits until no `lvm` process exists; returns what was still there at the deadline.
fn wait_no_lvm(limit: Duration) -> Vec<(u32, char, u32)> {
    let start = Instant::now();
    loop {
        let left = processes("lvm");
        if left.is_empty() || start.elapsed() > limit {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Listening TCP sockets as "ADDR:PORT" in /proc/net/tcp's hex notation.
fn tcp_listeners() -> Vec<String> {
    let mut out = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 3 && f[3] == "0A" {
                out.push(f[1].to_string());
            }
        }
    }
    out
}

/// One HTTP/1.1 GET; returns (status line, body).
fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics listener");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    let status = head.lines().next().unwrap_or_default().to_string();
    // hyper answers a small fixed body with Content-Length, never chunked.
    (status, body.to_string())
}

/// Exposition text to {`name{labels}` -> value}; comments skipped.
fn parse_exposition(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn metric(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("metric {key} missing; have: {:#?}", m.keys()))
}

#[test]
#[ignore = "runs inside the QEMU guest through hardening_in_guest"]
fn guest_hardening() {
    assert!(in_guest(), "run through hardening_in_guest");
    // The guest's init leaves loopback down; the metrics scrape needs it.
    sh("ip link set lo up");
    // The dm device starts 1 MiB into the disk, so the PV label inside it is not also seen
    // on /dev/vda itself (a duplicate PV would make lvm pick either). Without udev, dmsetup
    // leaves the /dev/mapper node to `mknodes`.
    let sectors: u64 = sh("blockdev --getsz /dev/vda").trim().parse().unwrap();
    sh(&format!(
        "dmsetup create {DM} --table '0 {} linear /dev/vda 2048' && dmsetup mknodes {DM}",
        sectors - 2048
    ));
    sh(&format!(
        "pvcreate -q /dev/mapper/{DM} /dev/vdb && vgcreate -q {VG} /dev/mapper/{DM} /dev/vdb"
    ));
    // Not driver volumes: they feed the thin pool and RAID gauges.
    sh(&format!(
        "lvcreate -q -y --type thin-pool -L 64M -n pool0 {VG} && \
         lvcreate -q -y --type raid1 -m 1 -L 8M -n mirror0 {VG}"
    ));

    let socket = PathBuf::from("/run/vglet/hardening.sock");
    let rt = tokio::runtime::Runtime::new().unwrap();
    {
        let _driver = DriverProcess::start(
            &[
                "--node-id",
                "hard-node",
                "--volume-group",
                VG,
                "--metrics-address",
                METRICS,
            ],
            &socket,
        );
        rt.block_on(async {
            let mut c = clients(&socket).await;
            let ids = fifty_concurrent_creates(&mut c).await;
            metrics_match_lvm(&ids).await;
            fifty_concurrent_deletes(&mut c, ids).await;
            vg_full(&mut c).await;
            oversized_maps(&mut c).await;
            metrics_after_deletes();
        });
    }

    {
        let _driver = DriverProcess::start(
            &[
                "--node-id",
                "hard-node",
                "--volume-group",
                VG,
                "--command-timeout",
                "5s",
            ],
            &socket,
        );
        step("no --metrics-address: nothing listens on TCP");
        assert!(
            tcp_listeners().is_empty(),
            "listening sockets without --metrics-address: {:?}",
            tcp_listeners()
        );
        rt.block_on(async {
            let mut c = clients(&socket).await;
            // The socket serves before start-up's own lvm commands end; those must be done
            // before the PV freezes.
            vglet_e2e::wait_probe_ready(&mut c).await;
            hung_command(&mut c).await;
        });
    }
    sh(&format!(
        "lvremove -q -y {VG}/pool0 {VG}/mirror0 && vgremove -q -y {VG} && dmsetup remove {DM}"
    ));
    eprintln!("\nHARDENING: ALL STEPS PASSED");
}

async fn fifty_concurrent_creates(c: &mut Clients) -> Vec<String> {
    step("50 concurrent CreateVolume with different names: 50 LVs, all succeed");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let mut ctl = c.controller.clone();
        let req = create_req(&format!("pvc-bulk-{i:02}"), 4 * MIB);
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            (ctl.create_volume(req).await, t.elapsed())
        }));
    }
    let mut ids = Vec::new();
    let mut slowest = Duration::ZERO;
    for t in tasks {
        let (r, took) = t.await.unwrap();
        slowest = slowest.max(took);
        let v = r.expect("CreateVolume of a distinct name must succeed");
        ids.push(v.into_inner().volume.unwrap().volume_id);
    }
    eprintln!(
        "  50 creates in {:.1} s (slowest RPC {:.1} s)",
        start.elapsed().as_secs_f64(),
        slowest.as_secs_f64()
    );
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50, "50 distinct volume ids");
    let owned = owned_lvs();
    assert_eq!(owned.len(), 50, "lvs shows 50 driver LVs: {owned:?}");
    // The creation markers of concurrent creates are removed in batches; one left behind
    // would make the start-up reconcile delete a volume the CO was told exists.
    let marked: Vec<String> = lvs(VG)
        .into_iter()
        .filter(|l| l.2.split(',').any(|t| t == "vglet.creating"))
        .map(|l| l.0)
        .collect();
    assert!(
        marked.is_empty(),
        "LVs still marked as creating: {marked:?}"
    );
    for id in &ids {
        let lv = id.split_once('/').unwrap().1;
        assert!(owned.iter().any(|o| o == lv), "{id} not in lvs");
    }
    ids
}

async fn fifty_concurrent_deletes(c: &mut Clients, ids: Vec<String>) {
    step("50 concurrent DeleteVolume: all succeed, no LV left");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for id in ids {
        let mut ctl = c.controller.clone();
        tasks.push(tokio::spawn(async move {
            ctl.delete_volume(delete_req(&id)).await
        }));
    }
    for t in tasks {
        t.await.unwrap().expect("DeleteVolume must succeed");
    }
    eprintln!("  50 deletes in {:.1} s", start.elapsed().as_secs_f64());
    assert!(owned_lvs().is_empty(), "left: {:?}", owned_lvs());
}

async fn vg_full(c: &mut Clients) {
    step("VG full: RESOURCE_EXHAUSTED naming the free bytes; nothing created");
    let free = vgs_field("vg_free");
    let size = vgs_field("vg_size");
    let want = free as i64 + 64 * MIB;
    assert!(
        (want as u64) < size,
        "request must fit the VG, not its free space"
    );
    let before = lvs(VG);
    let e = c
        .controller
        .create_volume(create_req("pvc-too-big", want))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message().contains(&free.to_string()),
        "message names the free bytes {free}: {}",
        e.message()
    );
    assert_eq!(lvs(VG), before);
}

/// `n` entries whose keys and values total about `bytes`.
fn big_map(n: usize, bytes: usize) -> HashMap<String, String> {
    (0..n)
        .map(|i| (format!("k{i}"), "x".repeat(bytes / n)))
        .collect()
}

async fn oversized_maps(c: &mut Clients) {
    step("request maps over the CSI size limit: INVALID_ARGUMENT naming the field; lvs unchanged");
    let before = lvs(VG);
    let staging = "/run/e2e/hard/staging";
    let mut failed = Vec::new();
    let mut expect = |what: &str, r: Result<(), tonic::Status>, field: &str| match r {
        Err(s) if s.code() == Code::InvalidArgument && s.message().starts_with(field) => {
            eprintln!("  {what:<40} {:?}: {}", s.code(), s.message())
        }
        other => failed.push(format!(
            "{what}: want INVALID_ARGUMENT on {field}, got {other:?}"
        )),
    };
    let mut req = create_req("pvc-maps", 64 * MIB);
    req.parameters.extend(big_map(200, 200));
    let r = c.controller.create_volume(req).await.map(drop);
    expect("CreateVolume, 201 parameters", r, "parameters: 201 entries");
    let mut req = create_req("pvc-maps", 64 * MIB);
    req.secrets = big_map(2, 8000);
    let r = c.controller.create_volume(req).await.map(drop);
    expect("CreateVolume, 8 KiB of secrets", r, "secrets: ");
    let mut req = create_req("pvc-maps", 64 * MIB);
    req.mutable_parameters = big_map(1, 5000);
    let r = c.controller.create_volume(req).await.map(drop);
    expect(
        "CreateVolume, 5 KB mutable_parameters",
        r,
        "mutable_parameters: ",
    );
    let r = c
        .node
        .node_stage_volume(NodeStageVolumeRequest {
            volume_id: format!("{VG}/csi-pvc-maps"),
            staging_target_path: staging.into(),
            volume_capability: Some(block_cap()),
            volume_context: big_map(4, 6000),
            ..Default::default()
        })
        .await
        .map(drop);
    expect(
        "NodeStageVolume, 6 KB volume_context",
        r,
        "volume_context: ",
    );
    let r = c
        .node
        .node_publish_volume(NodePublishVolumeRequest {
            volume_id: format!("{VG}/csi-pvc-maps"),
            staging_target_path: staging.into(),
            target_path: "/run/e2e/hard/target".into(),
            volume_capability: Some(block_cap()),
            publish_context: big_map(129, 129),
            ..Default::default()
        })
        .await
        .map(drop);
    expect(
        "NodePublishVolume, 129 publish_context",
        r,
        "publish_context: 129 entries",
    );
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    assert_eq!(lvs(VG), before, "lvs changed after oversized requests");
}

async fn metrics_match_lvm(ids: &[String]) {
    step("metrics: families present, values agree with LVM");
    assert_eq!(
        tcp_listeners(),
        vec!["0100007F:2650".to_string()],
        "only the configured address listens"
    );
    let (status, body) = tokio::task::spawn_blocking(|| http_get(METRICS, "/metrics"))
        .await
        .unwrap();
    assert!(status.contains("200"), "{status}");
    assert!(body.trim_end().ends_with("# EOF"), "complete exposition");
    let m = parse_exposition(&body);
    assert!(
        metric(
            &m,
            "vglet_rpc_requests_total{method=\"CreateVolume\",code=\"OK\"}"
        ) >= 50.0
    );
    assert!(
        metric(
            &m,
            "vglet_rpc_duration_seconds_count{method=\"CreateVolume\"}"
        ) >= 50.0
    );
    assert!(
        metric(
            &m,
            "vglet_rpc_duration_seconds_sum{method=\"CreateVolume\"}"
        ) > 0.0
    );
    assert!(
        metric(
            &m,
            "vglet_command_duration_seconds_count{program=\"lvm\",outcome=\"ok\"}"
        ) >= 50.0
    );
    assert_eq!(
        metric(&m, &format!("vglet_vg_size_bytes{{vg=\"{VG}\"}}")) as u64,
        vgs_field("vg_size")
    );
    assert_eq!(
        metric(&m, &format!("vglet_vg_free_bytes{{vg=\"{VG}\"}}")) as u64,
        vgs_field("vg_free")
    );
    assert_eq!(
        metric(&m, &format!("vglet_volumes{{vg=\"{VG}\"}}")) as usize,
        ids.len()
    );
    let data = metric(
        &m,
        &format!("vglet_thin_pool_data_percent{{vg=\"{VG}\",pool=\"pool0\"}}"),
    );
    let meta = metric(
        &m,
        &format!("vglet_thin_pool_metadata_percent{{vg=\"{VG}\",pool=\"pool0\"}}"),
    );
    assert!((0.0..=100.0).contains(&data) && (0.0..100.0).contains(&meta) && meta > 0.0);
    let sync = metric(
        &m,
        &format!("vglet_raid_sync_percent{{vg=\"{VG}\",lv=\"mirror0\"}}"),
    );
    assert!((0.0..=100.0).contains(&sync), "{sync}");
    eprintln!("  thin pool data {data}% metadata {meta}%, mirror0 sync {sync}%");
    let (status, _) = tokio::task::spawn_blocking(|| http_get(METRICS, "/other"))
        .await
        .unwrap();
    assert!(status.contains("404"), "{status}");
}

fn metrics_after_deletes() {
    step("metrics: after the cache expires, the VG gauges follow LVM again");
    std::thread::sleep(Duration::from_secs(6));
    let (_, body) = http_get(METRICS, "/metrics");
    let m = parse_exposition(&body);
    assert_eq!(metric(&m, &format!("vglet_volumes{{vg=\"{VG}\"}}")), 0.0);
    assert_eq!(
        metric(&m, &format!("vglet_vg_free_bytes{{vg=\"{VG}\"}}")) as u64,
        vgs_field("vg_free")
    );
    assert!(
        metric(
            &m,
            "vglet_rpc_requests_total{method=\"CreateVolume\",code=\"RESOURCE_EXHAUSTED\"}"
        ) >= 1.0
    );
    assert!(
        metric(
            &m,
            "vglet_rpc_requests_total{method=\"DeleteVolume\",code=\"OK\"}"
        ) >= 50.0
    );
}

async fn hung_command(c: &mut Clients) {
    step("frozen PV: the hung lvm is killed at --command-timeout 5s, the RPC fails fast");
    assert!(processes("lvm").is_empty(), "no lvm running before");
    sh(&format!("dmsetup suspend --noudevsync {DM}"));
    let start = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        c.controller
            .create_volume(create_req("pvc-frozen", 4 * MIB)),
    )
    .await
    .expect("CreateVolume must answer, not hang with the device");
    let took = start.elapsed();
    let e = r.expect_err("CreateVolume on a frozen PV cannot succeed");
    eprintln!(
        "  answered {:?} after {:.1} s: {}",
        e.code(),
        took.as_secs_f64(),
        e.message()
    );
    assert!(
        matches!(e.code(), Code::DeadlineExceeded | Code::Unavailable),
        "{e:?}"
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");

    // SIGKILL is delivered at once, but a process blocked on a frozen device can only
    // finish dying once its outstanding I/O completes; so look before and after resume.
    let before_resume = wait_no_lvm(Duration::from_secs(5));
    eprintln!("  lvm processes 5 s after the timeout, device still frozen: {before_resume:?}");
    for (pid, state, _) in &before_resume {
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        eprintln!("    pid {pid} state {state} wchan {wchan}");
        assert_ne!(*state, 'Z', "zombie lvm {pid}: not reaped by the driver");
    }
    sh(&format!("dmsetup resume --noudevsync {DM}"));
    let after_resume = wait_no_lvm(Duration::from_secs(10));
    assert!(
        after_resume.is_empty(),
        "lvm left behind (zombie or running) after resume: {after_resume:?}"
    );

    step("the driver keeps working after the device thaws");
    let v = c
        .controller
        .create_volume(create_req("pvc-after-thaw", 4 * MIB))
        .await
        .expect("CreateVolume after resume")
        .into_inner()
        .volume
        .unwrap();
    c.controller
        .delete_volume(delete_req(&v.volume_id))
        .await
        .expect("DeleteVolume after resume");
    assert!(owned_lvs().is_empty(), "left: {:?}", owned_lvs());
}
