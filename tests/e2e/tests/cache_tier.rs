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
//! - the driver SIGKILLed while `lvm lvconvert` attaches the dm-cache, and again while the
//!   writecache's detach writes its dirty blocks back; each time the driver is restarted at
//!   once and the same modify repeated: the restarted driver's start-up lets its orphaned
//!   lvconvert finish (its log says so), the repeat converges (`lvs -a` JSON: segment type,
//!   the cachevol there or gone, no stray cache LV) and every record reads back;
//! - a new `cacheSize` on an attached cache: detached and attached again at that size;
//! - with a fast tier, a new volume and a new raid1 image go on the data disks only (`lvs -a
//!   -o devices`), and a volume that would fit only with the fast disk's room is refused
//!   (RESOURCE_EXHAUSTED) with nothing created.
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
/// The logs of the drivers started right after each kill.
const LOG_KILL1: &str = "/run/vglet/cache-driver-kill1.log";
const LOG_KILL2: &str = "/run/vglet/cache-driver-kill2.log";

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
        .fresh_disk("slow2", 128 << 20)
        .modules([
            "dm_mod",
            "dm_cache",
            "dm_cache_smq",
            "dm_writecache",
            "dm_thin_pool",
            "dm_raid",
            "raid1",
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
    driver_logged(LOG)
}

fn driver_logged(log: &str) -> DriverProcess {
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
        Path::new(log),
    )
}

/// Whether an `lvm lvconvert` with argument `arg` runs (read from /proc: no exec).
fn lvconvert_running(arg: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
            let argv: Vec<&[u8]> = c.split(|b| *b == 0).collect();
            argv.first().is_some_and(|a| a.ends_with(b"lvm"))
                && argv.contains(&b"lvconvert".as_slice())
                && argv.contains(&arg.as_bytes())
        })
    })
}

/// Starts ControllerModifyVolume of `id` to `pairs` and SIGKILLs the driver `d` as soon as
/// its `lvm lvconvert ... arg ...` runs, then starts a new driver at once (log `log`), while
/// that lvconvert may still run: its start-up is what deals with it. Returns the new driver
/// and whether the lvconvert still ran right after the kill.
async fn kill_during_lvconvert(
    d: DriverProcess,
    id: &str,
    pairs: &[(&str, &str)],
    arg: &str,
    log: &str,
) -> (DriverProcess, bool) {
    let mut c2 = clients(Path::new(SOCKET)).await;
    let (id2, want) = (id.to_string(), kv(pairs));
    let call = tokio::spawn(async move {
        c2.controller
            .controller_modify_volume(ControllerModifyVolumeRequest {
                volume_id: id2,
                mutable_parameters: want,
                ..Default::default()
            })
            .await
            .map(drop)
    });
    let start = Instant::now();
    while !lvconvert_running(arg) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no lvconvert {arg} started"
        );
        assert!(
            !call.is_finished(),
            "the modify ended before its lvconvert {arg} was seen"
        );
        // Not faster: each scan of /proc costs the emulated guest CPU the conversion needs.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(d);
    let alive = lvconvert_running(arg);
    let d = driver_logged(log);
    let killed = call.await.unwrap();
    assert!(killed.is_err(), "the killed driver answered: {killed:?}");
    eprintln!(
        "  driver killed during lvconvert {arg} after {:?}; lvconvert still running after the kill: {alive}",
        start.elapsed()
    );
    (d, alive)
}

/// The start-up lines of driver log `log` about commands an earlier run left running.
fn orphan_lines(log: &str) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("an earlier run of this driver left running"))
        .map(str::to_string)
        .collect()
}

/// What the restarted driver did about the orphaned lvconvert and what the repeated modify
/// ran (`changes`), asserted: the orphan was never killed (it ended within the start-up's
/// grace), the repeat ran nothing but the same conversion (an lvconvert with `arg`, and for
/// an attach the cache LV's lvcreate), and it ran it unless the orphan was waited for. Both
/// endings are seen: the orphaned dm-cache attach finishes its commit while the new driver
/// waits, and the repeat runs nothing; an orphaned writecache detach ends soon after its
/// driver, its output pipe gone, leaving the cache attached and cleaning, and the repeat's
/// `--uncache` finishes it (lvm: "can be cancelled and rerun to complete").
fn assert_orphan_handled(log: &str, alive: bool, changes: &[String], arg: &str) {
    let lines = orphan_lines(log);
    eprintln!("  orphan lines: {lines:?}; the repeat ran {changes:?}");
    assert!(
        !lines.iter().any(|l| l.contains("killed a command")),
        "the orphan had to be killed: {lines:?}"
    );
    let waited = lines
        .iter()
        .any(|l| l.contains("it finished") && l.contains("lvconvert") && l.contains(arg));
    let conversions = changes
        .iter()
        .filter(|l| l.contains("lvconvert") && l.contains(arg))
        .count();
    assert!(
        changes
            .iter()
            .all(|l| (l.contains("lvconvert") && l.contains(arg)) || l.contains("lvcreate")),
        "the repeat ran something else than the conversion: {changes:?}"
    );
    assert!(conversions <= 1, "{changes:?}");
    assert!(
        waited || conversions == 1,
        "no orphan waited for (alive after the kill: {alive}) and the repeat ran no lvconvert {arg}: {changes:?}"
    );
    eprintln!(
        "  the orphan {}; the repeat {}",
        if waited {
            "was waited for and ended"
        } else {
            "was gone before the new driver looked"
        },
        if conversions == 1 {
            "finished the conversion"
        } else {
            "found it done"
        }
    );
}

/// The devices of every row of LV `lv` and its sub-LVs in `lvs -a`.
fn devices_of(lv: &str) -> Vec<(String, Vec<String>)> {
    lvs_rows()
        .into_iter()
        .filter(|r| r.0 == lv || r.0.starts_with(&format!("{lv}_")))
        .map(|r| (r.0, r.2))
        .collect()
}

/// The cache LVs `lvs -a` shows (hidden cachevols and visible leftovers), with their sizes.
fn cache_lvs() -> Vec<(String, u64)> {
    let out = sh(&format!(
        "lvs -a --reportformat json --units b --nosuffix -o lv_name,lv_size {VG}"
    ));
    let json: Value = serde_json::from_str(&out).unwrap();
    json["report"][0]["lv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["lv_name"]
                    .as_str()
                    .unwrap()
                    .trim_matches(['[', ']'])
                    .to_string(),
                r["lv_size"].as_str().unwrap().parse().unwrap(),
            )
        })
        .filter(|(n, _)| n.starts_with("vglet-cache."))
        .collect()
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
            "--device",
            "/dev/vdc",
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
    assert_eq!(tags["/dev/vdc"], "", "{pvs}");
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

        step("cache: cache (dm-cache, writethrough), online, the driver killed during its lvconvert");
        let t = Instant::now();
        let (d2, alive) =
            kill_during_lvconvert(d, &id, &[("cache", "cache")], "--cachevol", LOG_KILL1).await;
        d = d2;
        let mut c = clients(Path::new(SOCKET)).await;
        // Start-up (the orphan's wait, the reconcile) done, so that the mark counts only
        // what the repeated modify runs.
        vglet_e2e::wait_probe_ready(&mut c).await;
        let mark = d.log_mark();
        modify(&mut c, &id, &[("cache", "cache")]).await.expect("attach cache, repeated after the kill");
        eprintln!("  attached (killed, restarted, repeated) in {:?}", t.elapsed());
        assert_orphan_handled(LOG_KILL1, alive, &changes_since(&d, mark), "--cachevol");
        let cvols = cache_lvs();
        assert!(
            cvols.len() == 1 && cvols[0].0.ends_with("_cvol") && cvols[0].1 == 32 * MIB as u64,
            "one cachevol of the default 32 MiB, no stray cache LV: {cvols:?}"
        );
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
        step("cacheSize 48Mi on the attached 32 MiB cache: detached, attached again at 48 MiB");
        let t = Instant::now();
        modify(&mut c, &id, &[("cache", "cache"), ("cacheSize", "48Mi")]).await.expect("resize the cache");
        eprintln!("  resized in {:?}", t.elapsed());
        let resized = cache_lvs();
        assert_eq!(
            resized,
            vec![(cvols[0].0.clone(), 48 * MIB as u64)],
            "the cachevol of the new size, alone"
        );
        assert_eq!(shape(&lv).segtype, "cache");
        writer.keeps_writing("after resizing dm-cache");
        let mark = d.log_mark();
        modify(&mut c, &id, &[("cache", "cache"), ("cacheSize", "48Mi")]).await.expect("the same modify again");
        modify(&mut c, &id, &[("cache", "cache")]).await.expect("no size: the attached cache as it is");
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
        let other_lv = other.split_once('/').unwrap().1.to_string();
        let on_fast = |rows: &[(String, Vec<String>)]| rows.iter().any(|r| r.1.iter().any(|d| d == "/dev/vdb"));
        assert!(!on_fast(&devices_of(&other_lv)), "a new volume on the fast disk: {:?}", devices_of(&other_lv));
        // Room for a volume only with the fast disk's: lvm would spread it onto the fast
        // disk; the driver refuses it first.
        let data_free: i64 = sh("pvs --noheadings --units b --nosuffix -o pv_free /dev/vda /dev/vdc")
            .split_whitespace()
            .map(|f| f.parse::<i64>().unwrap())
            .sum();
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
        let e = create(&mut c, "cache-big", data_free + 32 * MIB, &[], &[]).await.expect_err("refused");
        assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
        assert!(e.message().contains("the fast ones are kept for caches"), "{}", e.message());
        eprintln!("  a volume of {} bytes: {:?} {}", data_free + 32 * MIB, e.code(), e.message());
        assert_eq!(lvs_rows(), before, "refusals changed lvs");

        step("linear -> raid1 with a fast tier: the new image on the other data disk, not the fast one");
        let t = Instant::now();
        modify(&mut c, &other, &[("type", "raid1")]).await.expect("raid1");
        eprintln!("  converted in {:?}", t.elapsed());
        let rows = devices_of(&other_lv);
        let image = |n: u32| rows.iter().find(|r| r.0 == format!("{other_lv}_rimage_{n}")).map(|r| r.1.clone());
        assert_eq!(image(0), Some(vec!["/dev/vda".to_string()]), "{rows:?}");
        assert_eq!(image(1), Some(vec!["/dev/vdc".to_string()]), "{rows:?}");
        assert!(!on_fast(&rows), "a raid1 part on the fast disk: {rows:?}");

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

        step("cache: none: the writecache written back and detached while the writer writes, the driver killed during it");
        let blocks: Vec<u64> = sh(&format!(
            "lvs --noheadings --units b --nosuffix -o writecache_total_blocks,writecache_free_blocks {VG}/{lv}"
        ))
        .split_whitespace()
        .map(|b| b.parse().unwrap())
        .collect();
        let dirty = blocks[0] - blocks[1];
        eprintln!("  writecache blocks before the detach: {blocks:?}, {dirty} dirty");
        assert!(dirty > 0, "nothing to write back: the kill would prove nothing");
        let t = Instant::now();
        let (d2, alive) =
            kill_during_lvconvert(d, &id, &[("cache", "none")], "--uncache", LOG_KILL2).await;
        d = d2;
        let mut c = clients(Path::new(SOCKET)).await;
        // Start-up (the orphan's wait, the reconcile) done, so that the mark counts only
        // what the repeated modify runs.
        vglet_e2e::wait_probe_ready(&mut c).await;
        let mark = d.log_mark();
        modify(&mut c, &id, &[("cache", "none")]).await.expect("detach writecache, repeated after the kill");
        eprintln!("  detached (killed, restarted, repeated) in {:?}", t.elapsed());
        assert_orphan_handled(LOG_KILL2, alive, &changes_since(&d, mark), "--uncache");
        assert_eq!(shape(&lv), linear_on_slow);
        assert_eq!(cache_lvs(), vec![], "no cache LV left");
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
