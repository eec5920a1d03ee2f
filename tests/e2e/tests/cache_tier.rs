//! The cache tier on real LVM (issue #20): a VG of a slow disk with a fast disk tagged by
//! vg-init, and a mounted 256 MiB ext4 volume that gets a dm-cache, loses it, gets a
//! dm-writecache and loses it, online, through ControllerModifyVolume, while a writer keeps
//! appending checksummed records. In one guest:
//! - vg-init --fast-device tags only the fast PV (pvs JSON), and a re-run changes nothing;
//! - each layout asserted from `lvs -a -o lv_name,segtype,devices` JSON (the cachevol on the
//!   fast disk, the origin on the slow one), the writer alive across every step;
//! - the same modify twice runs no lvm command that changes anything (driver log); ListVolumes
//!   never lists the hidden cachevol;
//! - refusals (thin volume, redundancy change under a cache, a cache larger than the fast
//!   PV) leave `lvs -a` unchanged;
//! - CreateVolume with `mutable_parameters.cache` gives a cached volume at birth, and
//!   DeleteVolume removes it with its cachevol;
//! - with the writecache attached: the driver killed, both mounts undone and the VG
//!   deactivated (what a reboot leaves; the guest itself is not rebooted), the reviver
//!   activates and mounts the cached volume again and every record reads back; a new driver's
//!   NodeStage/NodePublish are OK on what it restored;
//! - after the last detach the fast disk is hot-unplugged and every record reads back from
//!   the slow disk.
//!
//! With `VGLET_CACHE_TIMING=1` the guest also times attach and detach of each mode on a
//! 1 GiB volume (a larger slow disk; not in CI).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tonic::Code;
use vglet_csi_proto::v1::volume_capability::access_mode::Mode;
use vglet_csi_proto::v1::*;
use vglet_e2e::records::{Writer, unplug, verify};
use vglet_e2e::{
    Clients, DriverProcess, bin, clients, in_guest, req, run_guest_test, run_program, sh,
};

const VG: &str = "cachevg";
const MIB: i64 = 1 << 20;
const SOCKET: &str = "/run/vglet/cache.sock";
const LOG: &str = "/run/vglet/cache-driver.log";

fn timing() -> bool {
    std::env::var("VGLET_CACHE_TIMING").is_ok_and(|v| v == "1")
}

#[test]
fn cache_tier_in_guest() {
    if in_guest() {
        return;
    }
    let slow = if timing() { 3u64 << 30 } else { 1 << 30 };
    let mut vm = vglet_vmh::Vm::new("e2e-cache")
        .mem_mib(1536)
        .cpus(2)
        .fresh_disk("slow", slow)
        .fresh_disk("fast", 256 << 20)
        .modules([
            "dm_mod",
            "dm_cache",
            "dm_cache_smq",
            "dm_writecache",
            "dm_thin_pool",
            "ext4",
        ])
        .udev(false)
        .guest_unplug(true)
        .timeout(Duration::from_secs(if timing() { 1800 } else { 900 }));
    if timing() {
        vm = vm.env("VGLET_CACHE_TIMING", "1");
    }
    run_guest_test("guest_cache_tier", vm);
}

fn step(s: &str) {
    eprintln!("\n--- cache tier: {s}");
}

fn cap() -> VolumeCapability {
    req::mount_cap("ext4", &[], Mode::SingleNodeWriter)
}

fn driver() -> DriverProcess {
    DriverProcess::start_logged(
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
        Path::new(SOCKET),
        Path::new(LOG),
    )
}

fn kv(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn create(
    c: &mut Clients,
    name: &str,
    bytes: i64,
    params: &[(&str, &str)],
    mutable: &[(&str, &str)],
) -> Result<String, tonic::Status> {
    let mut r = req::create_volume(name, bytes, cap(), VG);
    r.parameters.extend(kv(params));
    r.mutable_parameters = kv(mutable);
    c.controller
        .create_volume(r)
        .await
        .map(|r| r.into_inner().volume.unwrap().volume_id)
}

async fn stage_and_publish(c: &mut Clients, id: &str, staging: &Path, target: &Path) {
    std::fs::create_dir_all(staging).unwrap();
    c.node
        .node_stage_volume(NodeStageVolumeRequest {
            volume_id: id.into(),
            staging_target_path: staging.display().to_string(),
            volume_capability: Some(cap()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("stage {id}: {e:?}"));
    c.node
        .node_publish_volume(NodePublishVolumeRequest {
            volume_id: id.into(),
            staging_target_path: staging.display().to_string(),
            target_path: target.display().to_string(),
            volume_capability: Some(cap()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("publish {id}: {e:?}"));
}

async fn unpublish_and_unstage(c: &mut Clients, id: &str, staging: &Path, target: &Path) {
    c.node
        .node_unpublish_volume(req::unpublish(id, &target.display().to_string()))
        .await
        .unwrap_or_else(|e| panic!("unpublish {id}: {e:?}"));
    c.node
        .node_unstage_volume(req::unstage(id, &staging.display().to_string()))
        .await
        .unwrap_or_else(|e| panic!("unstage {id}: {e:?}"));
}

async fn modify(c: &mut Clients, id: &str, pairs: &[(&str, &str)]) -> Result<(), tonic::Status> {
    c.controller
        .controller_modify_volume(ControllerModifyVolumeRequest {
            volume_id: id.into(),
            mutable_parameters: kv(pairs),
            ..Default::default()
        })
        .await
        .map(drop)
}

/// `lvs -a` of the VG as JSON rows: (name without brackets, segtype, devices without
/// extents, tags).
fn lvs_rows() -> Vec<(String, String, Vec<String>, String)> {
    let out = sh(&format!(
        "lvs -a --reportformat json -o lv_name,segtype,devices,lv_tags {VG}"
    ));
    let json: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("lvs JSON: {e}: {out}"));
    json["report"][0]["lv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (
                s("lv_name").trim_matches(['[', ']']).to_string(),
                s("segtype"),
                s("devices")
                    .split(',')
                    .filter(|d| !d.is_empty())
                    .map(|d| d.split('(').next().unwrap().to_string())
                    .collect(),
                s("lv_tags"),
            )
        })
        .collect()
}

/// What `lvs` shows of volume LV `lv`: its segtype, the devices of its origin (or of itself
/// uncached), and its cachevol's devices when one is attached.
#[derive(Debug, PartialEq)]
struct Shape {
    segtype: String,
    data_on: Vec<String>,
    cache_on: Option<Vec<String>>,
}

fn shape(lv: &str) -> Shape {
    let rows = lvs_rows();
    let row = |n: &str| rows.iter().find(|r| r.0 == n).cloned();
    let me = row(lv).unwrap_or_else(|| panic!("{lv} not in lvs: {rows:?}"));
    let (data_on, cache_on) = match me.1.as_str() {
        "cache" | "writecache" => {
            let origin = row(&me.2[0]).unwrap_or_else(|| panic!("origin of {lv}: {rows:?}"));
            let cvol = rows
                .iter()
                .find(|r| r.0.starts_with("vglet-cache.") && r.0.ends_with("_cvol"))
                .unwrap_or_else(|| panic!("no cachevol: {rows:?}"));
            assert!(
                cvol.3.contains(&format!("vglet.cache-of={lv}")),
                "cachevol tagged with its volume: {cvol:?}"
            );
            (origin.2, Some(cvol.2.clone()))
        }
        _ => (me.2.clone(), None),
    };
    Shape {
        segtype: me.1,
        data_on,
        cache_on,
    }
}

/// The lvm commands the driver ran since `mark` that change something (not reads).
fn changes_since(d: &DriverProcess, mark: u64) -> Vec<String> {
    d.commands_since(mark)
        .into_iter()
        .filter(|l| {
            ["lvcreate", "lvconvert", "lvremove", "lvchange"]
                .iter()
                .any(|c| l.contains(c))
        })
        .collect()
}

async fn listed(c: &mut Clients) -> Vec<String> {
    c.controller
        .list_volumes(ListVolumesRequest::default())
        .await
        .expect("ListVolumes")
        .into_inner()
        .entries
        .into_iter()
        .filter_map(|e| e.volume.map(|v| v.volume_id))
        .collect()
}

/// Attach and detach of each mode on a 1 GiB mounted volume with a 128 MiB cache, timed
/// through the RPC; before each detach 96 MiB are written through the cache (dirty in
/// the writecache, which the detach writes back).
async fn timing_1gib(c: &mut Clients) {
    step("timing: attach and detach of each mode on a 1 GiB volume");
    let id = create(c, "cache-1g", 1024 * MIB, &[], &[]).await.unwrap();
    let staging = PathBuf::from("/run/e2e/cache1g/staging");
    let target = PathBuf::from("/run/e2e/cache1g/target");
    stage_and_publish(c, &id, &staging, &target).await;
    for mode in ["cache", "writecache"] {
        let t = Instant::now();
        modify(c, &id, &[("cache", mode), ("cacheSize", "128Mi")])
            .await
            .unwrap_or_else(|e| panic!("attach {mode}: {e:?}"));
        let attach = t.elapsed();
        let t = Instant::now();
        sh(&format!(
            "dd if=/dev/urandom of={}/fill-{mode} bs=1M count=96 conv=fsync status=none",
            target.display()
        ));
        let write = t.elapsed();
        let t = Instant::now();
        modify(c, &id, &[("cache", "none")])
            .await
            .unwrap_or_else(|e| panic!("detach {mode}: {e:?}"));
        eprintln!(
            "  TIMING 1 GiB volume, 128 MiB {mode}: attach {attach:?}, 96 MiB written in {write:?}, detach {:?}",
            t.elapsed()
        );
    }
    unpublish_and_unstage(c, &id, &staging, &target).await;
    vglet_e2e::rpc::delete(c, &id)
        .await
        .expect("delete the 1 GiB volume");
}

#[test]
#[ignore = "runs inside the QEMU guest through cache_tier_in_guest"]
fn guest_cache_tier() {
    assert!(in_guest(), "run through cache_tier_in_guest");
    let t0 = Instant::now();
    std::fs::create_dir_all("/run/vglet").unwrap();

    step("vg-init: the slow disk, and the fast one as the fast tier");
    let vg_init = |extra: &[&str]| {
        let mut args = vec![
            "--vg",
            VG,
            "--device",
            "/dev/vda",
            "--fast-device",
            "/dev/vdb",
        ];
        args.extend_from_slice(extra);
        run_program(&bin("vg-init"), &args)
    };
    let out = vg_init(&[]);
    assert_eq!(out.code, 0, "vg-init: {out:?}");
    let result: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(
        result["fast_pvs"],
        serde_json::json!(["/dev/vdb"]),
        "{result}"
    );
    let pvs: Value = serde_json::from_str(&sh(&format!(
        "pvs --reportformat json -o pv_name,pv_tags -S vg_name={VG}"
    )))
    .unwrap();
    let tags: HashMap<String, String> = pvs["report"][0]["pv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["pv_name"].as_str().unwrap().to_string(),
                p["pv_tags"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(tags["/dev/vdb"], "vglet.fast", "{pvs}");
    assert_eq!(tags["/dev/vda"], "", "{pvs}");
    let again = vg_init(&["--nothing-to-do-exit-code", "4"]);
    assert_eq!(again.code, 4, "a re-run has nothing to do: {again:?}");
    // A thin pool for the refusal below, on the slow disk alone: lvm puts a pool's
    // metadata on another PV than its data when it can, which would be the fast disk
    // (vg-init --thin-pool does that), and the fast disk must end up empty.
    sh(&format!(
        "lvcreate -q -y --type thin-pool -L 64m -n pool0 {VG} /dev/vda"
    ));

    let mut d = driver();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = clients(Path::new(SOCKET)).await;

        if timing() {
            timing_1gib(&mut c).await;
        }

        step("a 256 MiB ext4 volume on the slow disk, staged and published, a writer on it");
        let id = create(&mut c, "cache-a", 256 * MIB, &[], &[]).await.unwrap();
        let lv = id.split_once('/').unwrap().1.to_string();
        let staging = PathBuf::from("/run/e2e/cache/staging");
        let target = PathBuf::from("/run/e2e/cache/target");
        stage_and_publish(&mut c, &id, &staging, &target).await;
        let writer = Writer::start(&target.join("log"));
        writer.keeps_writing("before any change");
        let linear_on_slow = Shape {
            segtype: "linear".into(),
            data_on: vec!["/dev/vda".into()],
            cache_on: None,
        };
        assert_eq!(shape(&lv), linear_on_slow);

        step("cache: cache (dm-cache, writethrough), online");
        let t = Instant::now();
        modify(&mut c, &id, &[("cache", "cache")]).await.expect("attach cache");
        eprintln!("  attached in {:?}", t.elapsed());
        assert_eq!(
            shape(&lv),
            Shape {
                segtype: "cache".into(),
                data_on: vec!["/dev/vda".into()],
                cache_on: Some(vec!["/dev/vdb".into()]),
            }
        );
        writer.keeps_writing("after attaching dm-cache");
        let mode = sh(&format!("lvs --noheadings -o cache_mode {VG}/{lv}"));
        assert_eq!(mode.trim(), "writethrough");
        let mark = d.log_mark();
        modify(&mut c, &id, &[("cache", "cache")]).await.expect("the same modify again");
        assert_eq!(changes_since(&d, mark), Vec::<String>::new(), "the same modify twice changes nothing");
        let ids = listed(&mut c).await;
        assert_eq!(ids, vec![id.clone()], "ListVolumes lists the volume, not its cachevol");

        step("cache: none: written back, detached, the cache LV gone");
        let t = Instant::now();
        modify(&mut c, &id, &[("cache", "none")]).await.expect("detach cache");
        eprintln!("  detached in {:?}", t.elapsed());
        assert_eq!(shape(&lv), linear_on_slow);
        assert!(
            !lvs_rows().iter().any(|r| r.0.starts_with("vglet-cache.")),
            "no cache LV left: {:?}",
            lvs_rows()
        );
        writer.keeps_writing("after detaching dm-cache");

        step("cache: writecache with cacheSize 64Mi, online");
        let t = Instant::now();
        modify(&mut c, &id, &[("cache", "writecache"), ("cacheSize", "64Mi")])
            .await
            .expect("attach writecache");
        eprintln!("  attached in {:?}", t.elapsed());
        assert_eq!(
            shape(&lv),
            Shape {
                segtype: "writecache".into(),
                data_on: vec!["/dev/vda".into()],
                cache_on: Some(vec!["/dev/vdb".into()]),
            }
        );
        writer.keeps_writing("after attaching dm-writecache");
        let mark = d.log_mark();
        modify(&mut c, &id, &[("cache", "writecache"), ("cacheSize", "64Mi")])
            .await
            .expect("the same modify again");
        assert_eq!(changes_since(&d, mark), Vec::<String>::new());

        step("refusals leave lvs unchanged");
        let thin = create(&mut c, "cache-thin", 32 * MIB, &[("type", "thin"), ("thinPool", "pool0")], &[])
            .await
            .expect("thin volume");
        let other = create(&mut c, "cache-b", 64 * MIB, &[], &[]).await.unwrap();
        let before = lvs_rows();
        for (vol, pairs, code, part) in [
            (&thin, &[("cache", "cache")][..], Code::InvalidArgument, "thin volume"),
            (&id, &[("type", "raid1")][..], Code::InvalidArgument, "detach it first"),
            (&other, &[("cache", "cache"), ("cacheSize", "512Mi")][..], Code::ResourceExhausted, "/dev/vdb"),
            (&other, &[("cache", "dm-cache")][..], Code::InvalidArgument, "none, cache or writecache"),
        ] {
            let e = modify(&mut c, vol, pairs).await.expect_err("refused");
            assert_eq!(e.code(), code, "{vol} {pairs:?}: {e:?}");
            assert!(e.message().contains(part), "{vol} {pairs:?}: {}", e.message());
            eprintln!("  {pairs:?}: {:?} {}", e.code(), e.message());
        }
        assert_eq!(lvs_rows(), before, "refusals changed lvs");

        step("CreateVolume with mutable_parameters.cache: cached at birth; DeleteVolume takes its cache");
        let born = create(&mut c, "cache-born", 64 * MIB, &[], &[("cache", "cache"), ("cacheSize", "32Mi")])
            .await
            .expect("create with a cache");
        let born_lv = born.split_once('/').unwrap().1.to_string();
        let rows = lvs_rows();
        let born_row = rows.iter().find(|r| r.0 == born_lv).unwrap();
        assert_eq!(born_row.1, "cache", "{rows:?}");
        assert_eq!(
            rows.iter().filter(|r| r.0.ends_with("_cvol")).count(),
            2,
            "two cachevols: {rows:?}"
        );
        let again = create(&mut c, "cache-born", 64 * MIB, &[], &[("cache", "cache"), ("cacheSize", "32Mi")])
            .await
            .expect("the same CreateVolume again");
        assert_eq!(again, born);
        for v in [&born, &thin, &other] {
            vglet_e2e::rpc::delete(&mut c, v).await.unwrap_or_else(|e| panic!("delete {v}: {e:?}"));
        }
        let rows = lvs_rows();
        assert!(
            !rows.iter().any(|r| r.0.starts_with(&born_lv)),
            "the deleted volume's LVs are gone: {rows:?}"
        );
        assert_eq!(
            rows.iter().filter(|r| r.0.ends_with("_cvol")).count(),
            1,
            "only cache-a's cachevol is left: {rows:?}"
        );

        step("what a reboot leaves: driver gone, mounts gone, VG inactive; the reviver restores it");
        let n1 = writer.stop();
        drop(c);
        drop(d);
        sh(&format!(
            "umount {} && umount {} && vgchange -an {VG}",
            target.display(),
            staging.display()
        ));
        assert!(
            sh(&format!("lvs --noheadings -o lv_active {VG}/{lv}")).trim().is_empty(),
            "volume inactive"
        );
        let t = Instant::now();
        let out = run_program(
            &bin("reviver"),
            &["--state-dir", "/run/vglet/state", "--volume-group", VG, "--json"],
        );
        assert_eq!(out.code, 0, "reviver: {out:?}");
        eprintln!("  reviver took {:?}", t.elapsed());
        for p in [&staging, &target] {
            assert!(vglet_e2e::mount_at(p).is_some(), "{} mounted again", p.display());
        }
        assert_eq!(shape(&lv).segtype, "writecache", "still cached after the 'reboot'");
        verify(&target.join("log"), n1);
        // kubelet stages and publishes again after a reboot: OK on what the reviver restored.
        d = driver();
        let mut c = clients(Path::new(SOCKET)).await;
        stage_and_publish(&mut c, &id, &staging, &target).await;
        let writer = Writer::start(&target.join("log2"));
        writer.keeps_writing("after the restart");

        step("cache: none: the writecache written back and detached while the writer writes");
        let dirty = sh(&format!(
            "lvs --noheadings --units b --nosuffix -o writecache_total_blocks,writecache_free_blocks {VG}/{lv}"
        ));
        eprintln!("  writecache total/free blocks before the detach: {}", dirty.trim());
        let t = Instant::now();
        modify(&mut c, &id, &[("cache", "none")]).await.expect("detach writecache");
        eprintln!("  detached in {:?}", t.elapsed());
        assert_eq!(shape(&lv), linear_on_slow);
        writer.keeps_writing("after detaching dm-writecache");
        let mark = d.log_mark();
        modify(&mut c, &id, &[("cache", "none")]).await.expect("the same detach again");
        assert_eq!(changes_since(&d, mark), Vec::<String>::new());
        let n2 = writer.stop();

        step("the fast disk pulled: every record reads back from the slow disk");
        let used = sh("pvs --noheadings --units b --nosuffix -o pv_used /dev/vdb");
        assert_eq!(used.trim(), "0", "nothing left on the fast PV: {:?}", lvs_rows());
        let serial = sh("cat /sys/block/vdb/serial").trim().to_string();
        unplug(&serial);
        assert!(!Path::new("/sys/block/vdb").exists(), "vdb still known to the kernel");
        verify(&target.join("log"), n1);
        verify(&target.join("log2"), n2);
        sh(&format!(
            "dd if=/dev/{VG}/{lv} of=/dev/null iflag=direct bs=1M status=none"
        ));

        unpublish_and_unstage(&mut c, &id, &staging, &target).await;
    });
    eprintln!("cache tier guest part: {:?}", t0.elapsed());
}
