//! Recovery, in a real kernel: (1) stage and publish 20 volumes with known data, "reboot"
//! the guest (a second boot on the same disk images: every mount and activation is gone,
//! the tmpfs root is new), run the reviver and check every mount and checksum; (2) kill -9
//! csi-driver (and its lvm child) in the middle of 24 CreateVolume calls, restart it and
//! check that every retried name ends up as exactly one complete LV.
//!
//! The guest's / is a throwaway overlay, so the state directory and the kubelet-like
//! staging/target directories live on a small ext4 disk mounted at /persist in both boots,
//! as /var/lib/kubelet and /var/lib/vglet do on a real node.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tonic::Code;
use vglet_csi_proto::v1::volume_capability::access_mode::Mode;
use vglet_csi_proto::v1::*;
use vglet_e2e::req;
use vglet_e2e::{Clients, DriverProcess, bin, clients, in_guest, lvs, mount_at, run_program, sh};

const VG: &str = "revvg";
const MIB: i64 = 1 << 20;
const PERSIST: &str = "/persist";
const STATE: &str = "/persist/state";
const VOLUMES: usize = 20;

fn vm(name: &str) -> vglet_vmh::Vm {
    vglet_vmh::Vm::new(name)
        .mem_mib(1536)
        .cpus(2)
        .modules(["dm_mod", "ext4", "xfs"])
        .udev(false)
        .timeout(Duration::from_secs(600))
}

#[test]
fn revive_after_reboot_in_guest() {
    if in_guest() || vglet_vmh::skip_vm_tests("revive_after_reboot_in_guest") {
        return;
    }
    bin("reviver");
    let w = vglet_vmh::WorkDir::new("revive").expect("work dir");
    let data = w.sparse_file("vg.img", 3 << 30).unwrap();
    let persist = w.sparse_file("persist.img", 256 << 20).unwrap();
    let t = Instant::now();
    vglet_e2e::run_guest_test(
        "guest_revive_boot1",
        vm("e2e-revive-1").disk(&data).disk(&persist),
    );
    let boot1 = t.elapsed();
    let t = Instant::now();
    vglet_e2e::run_guest_test(
        "guest_revive_boot2",
        vm("e2e-revive-2").disk(&data).disk(&persist),
    );
    eprintln!(
        "revive: first boot {:.1}s, second boot {:.1}s",
        boot1.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
}

#[test]
fn kill_during_creates_in_guest() {
    if in_guest() || vglet_vmh::skip_vm_tests("kill_during_creates_in_guest") {
        return;
    }
    vglet_e2e::run_guest_test(
        "guest_kill_during_creates",
        vm("e2e-kill").fresh_disk("d1", 2 << 30),
    );
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Ext4,
    Xfs,
    Block,
}

fn kind_of(i: usize) -> Kind {
    match i % 4 {
        0 => Kind::Xfs,
        1 => Kind::Block,
        _ => Kind::Ext4,
    }
}

fn cap(kind: Kind) -> VolumeCapability {
    match kind {
        Kind::Block => req::block_cap(Mode::SingleNodeWriter),
        Kind::Ext4 => req::mount_cap("ext4", &["noatime"], Mode::SingleNodeWriter),
        Kind::Xfs => req::mount_cap("xfs", &["noatime"], Mode::SingleNodeWriter),
    }
}

fn size_of(kind: Kind) -> i64 {
    match kind {
        Kind::Xfs => 320 * MIB,
        Kind::Ext4 => 32 * MIB,
        Kind::Block => 16 * MIB,
    }
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

fn staging(i: usize) -> PathBuf {
    PathBuf::from(format!("{PERSIST}/plugins/staging/v{i}"))
}

/// kubelet creates the pod's volume directory; the plugin creates the target in it.
fn target(i: usize) -> PathBuf {
    let leaf = if kind_of(i) == Kind::Block {
        "dev"
    } else {
        "mount"
    };
    PathBuf::from(format!("{PERSIST}/pods/v{i}/{leaf}"))
}

fn step(s: &str) {
    eprintln!("\n--- revive e2e: {s}");
}

/// The checksum of what the pod sees: a file for filesystems, the first MiB for block.
fn checksum(i: usize) -> String {
    let t = target(i);
    let cmd = if kind_of(i) == Kind::Block {
        format!("head -c 1048576 {} | sha256sum", t.display())
    } else {
        format!("sha256sum < {}/data", t.display())
    };
    sh(&cmd).split_whitespace().next().unwrap().to_string()
}

fn write_data(i: usize) {
    let t = target(i);
    if kind_of(i) == Kind::Block {
        sh(&format!(
            "dd if=/dev/urandom of={} bs=1M count=1 oflag=direct status=none",
            t.display()
        ));
    } else {
        sh(&format!(
            "head -c 2097152 /dev/urandom > {0}/data && mkdir -p {0}/sub && echo v{i} > {0}/sub/name",
            t.display()
        ));
    }
}

fn driver() -> DriverProcess {
    DriverProcess::start(
        &[
            "--mode",
            "all",
            "--node-id",
            "revive-node",
            "--volume-group",
            VG,
            "--state-dir",
            STATE,
        ],
        Path::new("/run/vglet/revive.sock"),
    )
}

async fn stage_and_publish(c: &mut Clients, id: &str, i: usize) {
    let k = kind_of(i);
    c.node
        .node_stage_volume(NodeStageVolumeRequest {
            volume_id: id.into(),
            staging_target_path: staging(i).display().to_string(),
            volume_capability: Some(cap(k)),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("stage {id}: {e}"));
    std::fs::create_dir_all(target(i).parent().unwrap()).unwrap();
    c.node
        .node_publish_volume(NodePublishVolumeRequest {
            volume_id: id.into(),
            staging_target_path: staging(i).display().to_string(),
            target_path: target(i).display().to_string(),
            volume_capability: Some(cap(k)),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("publish {id}: {e}"));
}

fn record_file(id: &str) -> PathBuf {
    PathBuf::from(format!("{STATE}/{}.json", id.replace('/', "%2F")))
}

#[test]
#[ignore = "runs inside the QEMU guest through revive_after_reboot_in_guest"]
fn guest_revive_boot1() {
    assert!(in_guest());
    sh(&format!(
        "pvcreate -q /dev/vda && vgcreate -q {VG} /dev/vda && mkfs.ext4 -q -L persist /dev/vdb \
         && mkdir -p {PERSIST} && mount /dev/vdb {PERSIST}"
    ));
    let _d = driver();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    rt.block_on(async {
        let mut c = clients(Path::new("/run/vglet/revive.sock")).await;
        step("create, stage, publish and fill 20 volumes");
        let mut ids = Vec::new();
        for i in 0..VOLUMES {
            let k = kind_of(i);
            let v = c
                .controller
                .create_volume(create_req(&format!("rev-{i}"), size_of(k), cap(k)))
                .await
                .unwrap()
                .into_inner()
                .volume
                .unwrap();
            stage_and_publish(&mut c, &v.volume_id, i).await;
            assert!(
                record_file(&v.volume_id).exists(),
                "no record for {}",
                v.volume_id
            );
            write_data(i);
            ids.push(v.volume_id);
        }
        step("a volume staged, published, then unpublished and unstaged leaves no record");
        let k = Kind::Ext4;
        let v = c
            .controller
            .create_volume(create_req("rev-transient", 32 * MIB, cap(k)))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        let (st, tg) = (
            PathBuf::from(format!("{PERSIST}/plugins/staging/transient")),
            PathBuf::from(format!("{PERSIST}/pods/transient/mount")),
        );
        std::fs::create_dir_all(tg.parent().unwrap()).unwrap();
        c.node
            .node_stage_volume(NodeStageVolumeRequest {
                volume_id: v.volume_id.clone(),
                staging_target_path: st.display().to_string(),
                volume_capability: Some(cap(k)),
                ..Default::default()
            })
            .await
            .unwrap();
        c.node
            .node_publish_volume(NodePublishVolumeRequest {
                volume_id: v.volume_id.clone(),
                staging_target_path: st.display().to_string(),
                target_path: tg.display().to_string(),
                volume_capability: Some(cap(k)),
                ..Default::default()
            })
            .await
            .unwrap();
        let rec = std::fs::read_to_string(record_file(&v.volume_id)).unwrap();
        assert!(rec.contains(&tg.display().to_string()), "{rec}");
        c.node
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: v.volume_id.clone(),
                target_path: tg.display().to_string(),
            })
            .await
            .unwrap();
        let rec = std::fs::read_to_string(record_file(&v.volume_id)).unwrap();
        assert!(!rec.contains(&tg.display().to_string()), "{rec}");
        c.node
            .node_unstage_volume(NodeUnstageVolumeRequest {
                volume_id: v.volume_id.clone(),
                staging_target_path: st.display().to_string(),
            })
            .await
            .unwrap();
        assert!(!record_file(&v.volume_id).exists());

        step("the deleted-LV case: a 21st volume staged, then its LV removed behind our back");
        let v = c
            .controller
            .create_volume(create_req("rev-doomed", 16 * MIB, cap(Kind::Block)))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        c.node
            .node_stage_volume(NodeStageVolumeRequest {
                volume_id: v.volume_id.clone(),
                staging_target_path: format!("{PERSIST}/plugins/staging/doomed"),
                volume_capability: Some(cap(Kind::Block)),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(record_file(&v.volume_id).exists());
        sh(&format!("lvremove -q -f {}", v.volume_id));

        let sums: Vec<String> = (0..VOLUMES)
            .map(|i| format!("{} {}", ids[i], checksum(i)))
            .collect();
        std::fs::write(format!("{PERSIST}/sums"), sums.join("\n") + "\n").unwrap();
    });
    eprintln!(
        "revive e2e: 20 volumes staged and published in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // A reboot: nothing is unmounted or deactivated; only the page cache is written out.
    sh("sync");
    eprintln!("\nREVIVE BOOT 1: PASSED");
}

fn reviver(json: bool) -> (i32, serde_json::Value, String) {
    let mut args = vec![
        "--state-dir",
        STATE,
        "--volume-group",
        VG,
        "--wait-timeout",
        "30s",
    ];
    if json {
        args.push("--json");
    }
    let t = Instant::now();
    let out = run_program(&bin("reviver"), &args);
    eprintln!("reviver took {:.1}s", t.elapsed().as_secs_f64());
    let v = if json {
        serde_json::from_str(&out.stdout).expect("reviver --json output")
    } else {
        serde_json::Value::Null
    };
    (out.code, v, out.stdout)
}

fn outcome_of<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["volume_id"] == id)
        .unwrap_or_else(|| panic!("{id} not in the report: {report:#}"))
}

#[test]
#[ignore = "runs inside the QEMU guest through revive_after_reboot_in_guest"]
fn guest_revive_boot2() {
    assert!(in_guest());
    sh(&format!("mkdir -p {PERSIST} && mount /dev/vdb {PERSIST}"));
    let sums: Vec<(String, String)> = std::fs::read_to_string(format!("{PERSIST}/sums"))
        .unwrap()
        .lines()
        .map(|l| {
            let (a, b) = l.split_once(' ').unwrap();
            (a.to_string(), b.to_string())
        })
        .collect();
    assert_eq!(sums.len(), VOLUMES);
    step("after the reboot: nothing active, nothing mounted");
    let active = sh(&format!("lvs --noheadings -o lv_active {VG}"));
    assert!(
        !active.contains("active"),
        "LVs active after boot: {active}"
    );
    for i in 0..VOLUMES {
        assert!(mount_at(&target(i)).is_none());
    }

    step("damage: a truncated record, and the record of the LV deleted in boot 1");
    let (good_id, _) = &sums[2];
    let full = std::fs::read(record_file(good_id)).unwrap();
    let truncated = record_file(&format!("{VG}/csi-truncated"));
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let doomed = format!("{VG}/csi-rev-doomed");
    assert!(record_file(&doomed).exists());

    step("reviver: every volume restored, the damaged records reported");
    let (code, report, _) = reviver(true);
    assert_eq!(code, 1, "a failed record must make the exit non-zero");
    assert_eq!(report["summary"]["restored"], VOLUMES, "{report:#}");
    assert_eq!(report["summary"]["removed"], 1, "{report:#}");
    assert_eq!(report["summary"]["failed"], 1, "{report:#}");
    let t = outcome_of(&report, &format!("{VG}/csi-truncated"));
    assert_eq!(t["outcome"], "failed");
    assert!(t["reason"].as_str().unwrap().contains("unreadable"), "{t}");
    let d = outcome_of(&report, &doomed);
    assert_eq!(d["outcome"], "removed");
    assert!(!record_file(&doomed).exists(), "deleted LV's record stays");
    assert!(
        truncated.exists(),
        "the reviver must not delete a damaged record"
    );

    step("mounts and data are back");
    for (i, (id, sum)) in sums.iter().enumerate() {
        let v = outcome_of(&report, id);
        assert_eq!(v["outcome"], "restored", "{v}");
        let m = mount_at(&target(i)).unwrap_or_else(|| panic!("{id}: target not mounted"));
        match kind_of(i) {
            Kind::Block => {
                sh(&format!("test -b {}", target(i).display()));
            }
            Kind::Xfs => {
                assert_eq!(m.0, "xfs");
                assert_eq!(mount_at(&staging(i)).unwrap().0, "xfs");
            }
            Kind::Ext4 => {
                assert_eq!(m.0, "ext4");
                assert!(m.2.contains("noatime"), "{id}: flags {m:?}");
            }
        }
        assert_eq!(&checksum(i), sum, "{id}: data differs after the reboot");
        if kind_of(i) != Kind::Block {
            let name = std::fs::read_to_string(target(i).join("sub/name")).unwrap();
            assert_eq!(name.trim(), format!("v{i}"));
        }
    }
    step("block targets are usable: write and read back through the target");
    for i in (0..VOLUMES).filter(|i| kind_of(*i) == Kind::Block) {
        sh(&format!(
            "printf 'after-reboot-{i}' | dd of={0} bs=512 seek=4096 conv=notrunc oflag=direct status=none \
             && dd if={0} bs=512 skip=4096 count=1 iflag=direct status=none | grep -q after-reboot-{i}",
            target(i).display()
        ));
    }
    step("the operator removes the damaged record; a second run finds everything fine");
    std::fs::remove_file(&truncated).unwrap();
    let (code, report, _) = reviver(true);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["summary"]["already_fine"], VOLUMES, "{report:#}");
    let (code, _, text) = reviver(false);
    assert_eq!(code, 0);
    assert!(text.contains("already fine"), "{text}");

    step("csi-driver agrees: stats answer for every restored volume, unpublish/unstage work");
    let _d = driver();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = clients(Path::new("/run/vglet/revive.sock")).await;
        for (i, (id, _)) in sums.iter().enumerate() {
            c.node
                .node_get_volume_stats(NodeGetVolumeStatsRequest {
                    volume_id: id.clone(),
                    volume_path: target(i).display().to_string(),
                    staging_target_path: String::new(),
                })
                .await
                .unwrap_or_else(|e| panic!("stats {id}: {e}"));
        }
        // kubelet stages and publishes again after a reboot: what the reviver restored is
        // accepted as it is (the publish proven by the record, with new device numbers).
        for (i, (id, _)) in sums.iter().enumerate() {
            stage_and_publish(&mut c, id, i).await;
        }
        let (id, i) = (&sums[3].0, 3);
        c.node
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: id.clone(),
                target_path: target(i).display().to_string(),
            })
            .await
            .unwrap();
        c.node
            .node_unstage_volume(NodeUnstageVolumeRequest {
                volume_id: id.clone(),
                staging_target_path: staging(i).display().to_string(),
            })
            .await
            .unwrap();
        assert!(!record_file(id).exists());
    });
    eprintln!("\nREVIVE BOOT 2: PASSED");
}

const KILL_NAMES: usize = 24;
const ORPHAN_NAMES: usize = 8;
const KILL_STATE: &str = "/run/vglet-state";

/// An earlier tenant's data at the head of every 4 MiB extent of the disk (the PV's data
/// starts at 1 MiB), where a new LV's first bytes land.
fn plant_earlier_tenant(disk: &str, extents: usize) {
    sh(&format!(
        "for i in $(seq 0 {}); do yes TENANT | head -c 4096 | \
         dd of={disk} bs=4096 seek=$((256 + i*1024)) count=1 conv=notrunc status=none; done",
        extents - 1
    ));
}

/// Every LV of the VG starts with zeros: none was handed out with an earlier tenant's data.
fn heads_are_zeroed(vg: &str) {
    sh(&format!("lvchange -q -ay {vg}"));
    for (name, _, _) in lvs(vg) {
        let n = sh(&format!(
            "head -c 4096 /dev/{vg}/{name} | tr -d '\\000' | wc -c"
        ));
        assert_eq!(n.trim(), "0", "{vg}/{name} does not start with zeros");
    }
}

/// The create intents csi-driver's state directory holds.
fn intents() -> Vec<String> {
    match std::fs::read_dir(Path::new(KILL_STATE).join("creating")) {
        Ok(d) => d
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect(),
        Err(_) => vec![],
    }
}

/// Writes a create intent as a killed driver would have left it.
fn write_intent(lv: &str, create_id: &str) {
    let dir = Path::new(KILL_STATE).join("creating");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{VG}%2F{lv}.json")),
        format!(
            r#"{{"version":1,"volume_id":"{VG}/{lv}","create_id":"{create_id}","started_unix":1}}"#
        ),
    )
    .unwrap();
}

/// State letter of a process (`None`: gone).
fn process_state(pid: &str) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next())
}

async fn create_retrying(c: &mut Clients, name: &str) -> Result<String, tonic::Status> {
    let mut last = None;
    for _ in 0..20 {
        match c
            .controller
            .create_volume(create_req(name, 8 * MIB, cap(Kind::Block)))
            .await
        {
            Ok(r) => return Ok(r.into_inner().volume.unwrap().volume_id),
            Err(s) if matches!(s.code(), Code::Aborted | Code::Unavailable) => {
                last = Some(s);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(s) => return Err(s),
        }
    }
    Err(last.unwrap())
}

#[test]
#[ignore = "runs inside the QEMU guest through kill_during_creates_in_guest"]
fn guest_kill_during_creates() {
    assert!(in_guest());
    plant_earlier_tenant("/dev/vda", 2 * (KILL_NAMES + ORPHAN_NAMES) + 8);
    sh(&format!(
        "pvcreate -q /dev/vda && vgcreate -q {VG} /dev/vda"
    ));
    // The check below can fail: an LV made without zeroing shows the earlier data.
    sh(&format!("lvcreate -q -y -Zn -Wn -n control -L 4M {VG}"));
    let head = sh(&format!("head -c 4096 /dev/{VG}/control"));
    assert!(
        head.contains("TENANT"),
        "the planted data is not where LVs start"
    );
    sh(&format!("lvremove -q -y {VG}/control"));
    let sock = Path::new("/run/vglet/kill.sock");
    let args = [
        "--mode",
        "all",
        "--node-id",
        "kill-node",
        "--volume-group",
        VG,
        "--state-dir",
        KILL_STATE,
    ];
    let rt = tokio::runtime::Runtime::new().unwrap();
    let names: Vec<String> = (0..KILL_NAMES).map(|i| format!("kill-{i}")).collect();
    let d = DriverProcess::start(&args, sock);

    step(&format!(
        "{KILL_NAMES} CreateVolume calls; kill -9 csi-driver and its lvm child mid-way"
    ));
    let killer = std::thread::spawn(|| {
        let start = Instant::now();
        loop {
            let n = sh(&format!("lvs --noheadings -o lv_name {VG} | wc -l"));
            let n: usize = n.trim().parse().unwrap();
            let creating = std::process::Command::new("pgrep")
                .args(["-f", "^[^ ]*lvm lvcreate"])
                .output()
                .unwrap();
            if n >= 12 && creating.status.success() {
                let out = sh(
                    "kill -9 $(pidof csi-driver) $(pgrep -f '^[^ ]*lvm lvcreate') 2>&1; echo killed",
                );
                eprintln!("killed with {n} LVs present: {out}");
                return n;
            }
            assert!(
                start.elapsed() < Duration::from_secs(240),
                "no kill point reached"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let first: Vec<Result<String, tonic::Status>> = rt.block_on(async {
        let mut c = clients(sock).await;
        let mut out = Vec::new();
        for n in &names {
            let r = c
                .controller
                .create_volume(create_req(n, 8 * MIB, cap(Kind::Block)))
                .await
                .map(|r| r.into_inner().volume.unwrap().volume_id);
            let dead = r.is_err();
            out.push(r);
            if dead && out.len() > 12 {
                break;
            }
        }
        out
    });
    let at_kill = killer.join().unwrap();
    drop(d);
    let ok = first.iter().filter(|r| r.is_ok()).count();
    eprintln!(
        "before the kill: {ok} created, {} failed; {at_kill} LVs at the kill",
        first.len() - ok
    );
    eprintln!("{}", sh(&format!("lvs -o lv_name,lv_tags {VG}")));

    // An interruption between lvcreate's commit and the end of CreateVolume, made
    // deterministic. On a shared VG the LV carries the unfinished marker tag; here, on a
    // node-local VG under --mode all, the driver's create intent names the attempt's id,
    // which the LV carries. One LV of each kind, unzeroed (-Zn) on the earlier data.
    let unfinished = |name: &str, marker: &str| {
        sh(&format!(
            "lvremove -q -y {VG}/csi-{name} 2>/dev/null; \
             lvcreate -q -y -an -Zn -n csi-{name} -L 8M --addtag vglet.owner=lvm.vglet.io \
             --addtag vglet.name={name} --addtag vglet.size=8388608 --addtag vglet.fs=block \
             --addtag {marker} {VG}"
        ))
    };
    // The last two names: the first round never reached them before the kill.
    let (tagged, by_intent) = (
        format!("kill-{}", KILL_NAMES - 1),
        format!("kill-{}", KILL_NAMES - 2),
    );
    unfinished(&tagged, "vglet.creating");
    unfinished(&by_intent, "vglet.create-id=dead01");
    write_intent(&format!("csi-{by_intent}"), "dead01");
    // An intent whose attempt made no LV of its own: the LV of the name is an earlier,
    // finished one (here kill-0, if the first round made it), which must stay.
    write_intent("csi-kill-0", "cafe02");
    let kill0_before = lvs(VG).into_iter().find(|l| l.0 == "csi-kill-0");

    step("restart: the unfinished LVs are gone before any retry");
    let t = Instant::now();
    let _d = DriverProcess::start(&args, sock);
    // The socket serves before start-up ends; a ready Probe means the reconcile is done
    // (and every CreateVolume retry waits for it).
    rt.block_on(async {
        let mut c = clients(sock).await;
        vglet_e2e::wait_probe_ready(&mut c).await;
    });
    let after_start: Vec<(String, u64, String)> = lvs(VG);
    assert!(
        after_start
            .iter()
            .all(|(name, _, tags)| !tags.contains("vglet.creating")
                && !tags.contains("vglet.create-id=dead01")
                && *name != format!("csi-{by_intent}")),
        "unfinished LVs left after start-up: {after_start:?}"
    );
    assert_eq!(
        after_start.iter().find(|l| l.0 == "csi-kill-0"),
        kill0_before.as_ref(),
        "an earlier LV of an intent's name was touched"
    );
    assert_eq!(
        intents(),
        Vec::<String>::new(),
        "intents left after start-up"
    );
    eprintln!("restart with reconcile: {:.1}s", t.elapsed().as_secs_f64());

    step("the CO retries every name");
    rt.block_on(async {
        let mut c = clients(sock).await;
        for n in &names {
            let id = create_retrying(&mut c, n)
                .await
                .unwrap_or_else(|s| panic!("retry of {n}: {s}"));
            assert_eq!(id, format!("{VG}/csi-{n}"));
        }
        // ListVolumes shows exactly those.
        let listed = c
            .controller
            .list_volumes(ListVolumesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .entries;
        assert_eq!(listed.len(), KILL_NAMES);
    });
    let all = lvs(VG);
    let mut got: Vec<String> = all.iter().map(|l| l.0.clone()).collect();
    got.sort();
    let mut want: Vec<String> = names.iter().map(|n| format!("csi-{n}")).collect();
    want.sort();
    assert_eq!(got, want, "exactly one LV per name, nothing else");
    for (name, _, tags) in &all {
        assert!(
            tags.contains("vglet.owner=lvm.vglet.io") && !tags.contains("vglet.creating"),
            "{name}: {tags}"
        );
    }
    assert_eq!(intents(), Vec::<String>::new());
    heads_are_zeroed(VG);
    drop(_d);

    step("kill -9 of csi-driver alone: its lvcreate outlives it (stopped, so it surely does)");
    let log = Path::new("/tmp/kill-orphan.log");
    let d = DriverProcess::start(&args, sock);
    let orphans: Vec<String> = (0..ORPHAN_NAMES).map(|i| format!("orphan-{i}")).collect();
    let killer = std::thread::spawn(|| {
        let start = Instant::now();
        loop {
            let out = sh("pid=$(pgrep -f '^[^ ]*lvm lvcreate' | head -1); \
                 if [ -n \"$pid\" ]; then kill -STOP $pid && kill -9 $(pidof csi-driver) && echo $pid; fi");
            if !out.trim().is_empty() {
                return out.trim().to_string();
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "no lvcreate seen"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    rt.block_on(async {
        let mut c = clients(sock).await;
        for n in &orphans {
            if c.controller
                .create_volume(create_req(n, 8 * MIB, cap(Kind::Block)))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let orphan = killer.join().unwrap();
    drop(d);
    assert_eq!(
        process_state(&orphan),
        Some('T'),
        "the orphaned lvcreate {orphan} is not stopped"
    );

    step("restart: the orphan is killed before start-up reads lvm; retries converge");
    let _d = DriverProcess::start_logged(&args, sock, log);
    rt.block_on(async {
        let mut c = clients(sock).await;
        vglet_e2e::wait_probe_ready(&mut c).await;
    });
    assert!(
        matches!(process_state(&orphan), None | Some('Z')),
        "the orphaned lvcreate {orphan} survived the restart"
    );
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        text.contains("killed a command an earlier run of this driver left running"),
        "{text}"
    );
    assert_eq!(
        intents(),
        Vec::<String>::new(),
        "intents left after start-up"
    );
    rt.block_on(async {
        let mut c = clients(sock).await;
        for n in &orphans {
            create_retrying(&mut c, n)
                .await
                .unwrap_or_else(|s| panic!("retry of {n}: {s}"));
        }
    });
    let all = lvs(VG);
    assert_eq!(all.len(), KILL_NAMES + ORPHAN_NAMES, "{all:?}");
    for n in names.iter().chain(&orphans) {
        assert_eq!(
            all.iter().filter(|l| l.0 == format!("csi-{n}")).count(),
            1,
            "{n}: {all:?}"
        );
    }
    assert_eq!(intents(), Vec::<String>::new());
    heads_are_zeroed(VG);
    eprintln!("\nKILL DURING CREATES: PASSED");
}
