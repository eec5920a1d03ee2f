//! Node safety in a real kernel (issue #15, node side, and #22 point 2): paths the CO hands
//! over are resolved without following a symlink in any component, and the driver unmounts
//! or removes only what is provably the volume's. Every hostile call is checked against the
//! kernel and LVM: the mount table, checksums of files that must survive (/etc/hostname, a
//! file on a tmpfs, another volume's publish, a victim directory) and `lvs`, before and after.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tonic::Code;
use vglet_csi_proto::v1::volume_capability::access_mode::Mode;
use vglet_csi_proto::v1::*;
use vglet_e2e::{Clients, DriverProcess, clients, in_guest, lvs, req, run_guest_test, sh};

const VG: &str = "nsvg";
const MIB: i64 = 1 << 20;
const NS: &str = "/run/ns";

#[test]
fn node_safety_in_guest() {
    if in_guest() {
        return;
    }
    let vm = vglet_vmh::Vm::new("e2e-node-safety")
        .mem_mib(1024)
        .cpus(2)
        .fresh_disk("d1", 1 << 30)
        .modules(["dm_mod", "ext4"])
        .udev(false)
        .timeout(Duration::from_secs(900));
    run_guest_test("guest_node_safety", vm);
}

fn step(s: &str) {
    eprintln!("\n--- node safety: {s}");
}

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

/// Everything a hostile call must leave as it was.
#[derive(Debug, PartialEq, Eq)]
struct World {
    /// (mount point, device, root, fs type) of every mount.
    mounts: Vec<String>,
    lvs: Vec<(String, u64, String)>,
    /// Checksums of the files (or block devices: their first MiB) that must survive.
    sums: Vec<(String, Option<u64>)>,
    /// Names in directories nothing may be created in.
    listings: Vec<(String, Vec<String>)>,
}

fn checksum(path: &Path) -> Option<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    let mut h = DefaultHasher::new();
    buf[..n].hash(&mut h);
    Some(h.finish())
}

fn mount_lines() -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut v: Vec<String> = info
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let fs = post.split(' ').next()?;
            Some(format!("{} {} {} {fs}", f[4], f[2], f[3]))
        })
        .collect();
    v.sort();
    v
}

/// Mount points of the filesystem or device node with these numbers.
fn mounts_of(dev: &str) -> Vec<String> {
    mount_lines()
        .into_iter()
        .filter(|l| l.split(' ').nth(1) == Some(dev))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect()
}

fn is_mounted(path: &Path) -> bool {
    let want = path.display().to_string();
    mount_lines()
        .iter()
        .any(|l| l.split(' ').next() == Some(want.as_str()))
}

struct Watch {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Watch {
    fn world(&self) -> World {
        World {
            mounts: mount_lines(),
            lvs: lvs(VG),
            sums: self
                .files
                .iter()
                .map(|f| (f.display().to_string(), checksum(f)))
                .collect(),
            listings: self
                .dirs
                .iter()
                .map(|d| {
                    let mut names: Vec<String> = std::fs::read_dir(d)
                        .map(|r| {
                            r.filter_map(|e| e.ok())
                                .map(|e| e.file_name().to_string_lossy().into_owned())
                                .collect()
                        })
                        .unwrap_or_default();
                    names.sort();
                    (d.display().to_string(), names)
                })
                .collect(),
        }
    }
}

/// Asserts the call's code (`None`: OK), printing the message.
fn expect<T>(what: &str, want: Option<Code>, got: Result<T, tonic::Status>) {
    match (&got, want) {
        (Ok(_), None) => eprintln!("  ok   {what}: OK"),
        (Err(e), Some(c)) if e.code() == c => {
            eprintln!("  ok   {what}: {:?} {}", e.code(), e.message())
        }
        (Ok(_), Some(c)) => panic!("{what}: OK, wanted {c:?}"),
        (Err(e), _) => panic!("{what}: {:?} {}, wanted {want:?}", e.code(), e.message()),
    }
}

fn create_req(name: &str, cap: VolumeCapability) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: 16 * MIB,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![cap],
        parameters: req::params(&[("volumeGroup", VG)]),
        ..Default::default()
    }
}

async fn create(c: &mut Clients, name: &str, cap: &VolumeCapability) -> String {
    c.controller
        .create_volume(create_req(name, cap.clone()))
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e:?}"))
        .into_inner()
        .volume
        .unwrap()
        .volume_id
}

fn stage_req(id: &str, staging: &str, cap: &VolumeCapability) -> NodeStageVolumeRequest {
    NodeStageVolumeRequest {
        volume_id: id.into(),
        staging_target_path: staging.into(),
        volume_capability: Some(cap.clone()),
        ..Default::default()
    }
}

fn publish_req(
    id: &str,
    staging: &str,
    target: &str,
    cap: &VolumeCapability,
    readonly: bool,
) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: id.into(),
        staging_target_path: staging.into(),
        target_path: target.into(),
        volume_capability: Some(cap.clone()),
        readonly,
        ..Default::default()
    }
}

/// "major:minor" of a volume's device node.
fn dev_of(id: &str) -> String {
    sh(&format!("stat -L -c '%t %T' /dev/{id}"))
        .split_whitespace()
        .map(|h| u64::from_str_radix(h, 16).unwrap().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// A volume staged at `staging` and published at `target`.
struct Vol {
    id: String,
    cap: VolumeCapability,
    staging: String,
    target: String,
}

async fn stage_and_publish(c: &mut Clients, name: &str, cap: VolumeCapability) -> Vol {
    let id = create(c, name, &cap).await;
    let staging = format!("{NS}/stage/{name}");
    let target = format!("{NS}/pods/{name}/vol");
    std::fs::create_dir_all(&staging).unwrap();
    c.node
        .node_stage_volume(stage_req(&id, &staging, &cap))
        .await
        .unwrap_or_else(|e| panic!("stage {name}: {e:?}"));
    c.node
        .node_publish_volume(publish_req(&id, &staging, &target, &cap, false))
        .await
        .unwrap_or_else(|e| panic!("publish {name}: {e:?}"));
    Vol {
        id,
        cap,
        staging,
        target,
    }
}

#[test]
#[ignore = "runs inside the QEMU guest through node_safety_in_guest"]
fn guest_node_safety() {
    assert!(in_guest(), "run through node_safety_in_guest");
    sh(&format!(
        "pvcreate -q /dev/vda && vgcreate -q {VG} /dev/vda"
    ));
    sh(&format!(
        "mkdir -p {NS}/tmpfs {NS}/other {NS}/victim {NS}/elsewhere {NS}/stage {NS}/pods \
         && mount -t tmpfs tmpfs-ns {NS}/tmpfs && echo keep > {NS}/tmpfs/file \
         && echo victim > {NS}/victim/file && echo other > {NS}/other/file \
         && ln -s / {NS}/ln-root && ln -s /etc {NS}/ln-etc && ln -s {NS}/other {NS}/ln-other \
         && ln -s /etc/hostname {NS}/ln-hostname && ln -s {NS}/elsewhere /nsln"
    ));
    let socket = PathBuf::from("/run/vglet/ns.sock");
    let _driver = DriverProcess::start_logged(
        &[
            "--mode",
            "all",
            "--node-id",
            "ns-node",
            "--volume-group",
            VG,
        ],
        &socket,
        Path::new("/tmp/ns-driver.log"),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = clients(&socket).await;
        vglet_e2e::wait_probe_ready(&mut c).await;
        let fs_cap = req::mount_cap("ext4", &[], Mode::SingleNodeWriter);
        let blk_cap = req::block_cap(Mode::SingleNodeWriter);
        let a = stage_and_publish(&mut c, "a", fs_cap.clone()).await;
        let b = stage_and_publish(&mut c, "b", fs_cap.clone()).await;
        let k = stage_and_publish(&mut c, "k", blk_cap.clone()).await;
        let l = stage_and_publish(&mut c, "l", blk_cap.clone()).await;
        std::fs::write(format!("{}/data", a.target), b"a's data").unwrap();
        std::fs::write(format!("{}/data", b.target), b"b's data").unwrap();
        sh(&format!(
            "dd if=/dev/urandom of={} bs=1M count=1 conv=fsync status=none",
            l.target
        ));
        sh(&format!(
            "dd if=/dev/urandom of={} bs=1M count=1 conv=fsync status=none",
            k.target
        ));
        let watch = Watch {
            files: vec![
                p("/etc/hostname"),
                p(&format!("{NS}/tmpfs/file")),
                p(&format!("{NS}/victim/file")),
                p(&format!("{NS}/other/file")),
                p(&format!("{}/data", a.target)),
                p(&format!("{}/data", b.target)),
                p(&k.target),
                p(&l.target),
            ],
            dirs: vec![
                p("/etc"),
                p("/"),
                p(NS),
                p(&format!("{NS}/other")),
                p(&format!("{NS}/victim")),
                p(&format!("{NS}/elsewhere")),
                p(&format!("{NS}/tmpfs")),
            ],
        };

        paths_are_not_followed(&mut c, &watch, &a, &k).await;
        foreign_targets_are_left_alone(&mut c, &watch, &a, &b, &k, &l).await;
        stats_of_foreign_paths(&mut c, &watch, &a, &b, &k, &l).await;
        volumes_in_use(&mut c, &watch, &a, &k).await;
        unknown_ids(&mut c, &watch, &a).await;
        race(&mut c, &watch, &a, &k).await;
        single_writer(&mut c).await;

        step("clean up: everything unpublished and unstaged, the LVs intact");
        for v in [&a, &b, &k, &l] {
            expect(
                "unpublish",
                None,
                c.node
                    .node_unpublish_volume(req::unpublish(&v.id, &v.target))
                    .await,
            );
            assert!(!is_mounted(Path::new(&v.target)));
            assert!(!Path::new(&v.target).exists(), "target removed");
            expect(
                "unstage",
                None,
                c.node
                    .node_unstage_volume(req::unstage(&v.id, &v.staging))
                    .await,
            );
            assert!(mounts_of(&dev_of(&v.id)).is_empty(), "{} unmounted", v.id);
        }
        assert!(is_mounted(Path::new(&format!("{NS}/tmpfs"))));
    });
}

async fn paths_are_not_followed(c: &mut Clients, w: &Watch, a: &Vol, k: &Vol) {
    step(
        "symlinks in every position of a staging or target path are refused, nothing mounted or created",
    );
    let (fs_cap, blk_cap) = (&a.cap, &k.cap);
    let fresh = create(c, "fresh", fs_cap).await;
    let fresh_blk = create(c, "fresh-blk", blk_cap).await;
    let before = w.world();
    let bad = [
        (format!("{NS}/ln-root/etc"), "parent symlink to /"),
        (format!("{NS}/ln-etc/"), "trailing slash on a symlink"),
        (format!("{NS}/ln-etc"), "last component a symlink"),
        (
            format!("{NS}/ln-other/x"),
            "parent symlink to another directory",
        ),
        ("/nsln/x".to_string(), "first component a symlink"),
        (
            format!("{NS}/ln-root/run/ns/./other/"),
            "symlink, dot and trailing slash",
        ),
    ];
    for (path, why) in &bad {
        expect(
            &format!("stage at {path} ({why})"),
            Some(Code::InvalidArgument),
            c.node
                .node_stage_volume(stage_req(&fresh, path, fs_cap))
                .await,
        );
        expect(
            &format!("stage block at {path} ({why})"),
            Some(Code::InvalidArgument),
            c.node
                .node_stage_volume(stage_req(&fresh_blk, path, blk_cap))
                .await,
        );
        expect(
            &format!("publish fs at {path} ({why})"),
            Some(Code::InvalidArgument),
            c.node
                .node_publish_volume(publish_req(&a.id, &a.staging, path, fs_cap, false))
                .await,
        );
        expect(
            &format!("publish block at {path} ({why})"),
            Some(Code::InvalidArgument),
            c.node
                .node_publish_volume(publish_req(&k.id, &k.staging, path, blk_cap, false))
                .await,
        );
    }
    expect(
        "publish block at a symlink to /etc/hostname",
        Some(Code::InvalidArgument),
        c.node
            .node_publish_volume(publish_req(
                &k.id,
                &k.staging,
                &format!("{NS}/ln-hostname"),
                blk_cap,
                false,
            ))
            .await,
    );
    // Not the staging path the volume was staged at (that path has no mount): the
    // publish is refused before the target is even looked at.
    expect(
        "publish fs with a staging path through a symlink",
        Some(Code::FailedPrecondition),
        c.node
            .node_publish_volume(publish_req(
                &a.id,
                &format!("{NS}/ln-root/run/ns/stage/a"),
                &format!("{NS}/pods/new/vol"),
                fs_cap,
                false,
            ))
            .await,
    );
    assert_eq!(w.world(), before, "nothing changed");
    assert!(!Path::new(&format!("{NS}/pods/new")).exists());
    // The fresh volumes were never staged anywhere.
    assert!(mounts_of(&dev_of(&fresh)).is_empty());
}

async fn foreign_targets_are_left_alone(
    c: &mut Clients,
    w: &Watch,
    a: &Vol,
    b: &Vol,
    k: &Vol,
    l: &Vol,
) {
    step("unpublish / unstage at paths that are not the volume's: OK, nothing touched");
    let before = w.world();
    let tmpfs = format!("{NS}/tmpfs");
    let cases = [
        (&a.id, "/etc/hostname".to_string(), "a regular file"),
        (&a.id, tmpfs.clone(), "an unrelated tmpfs"),
        (&a.id, b.target.clone(), "another volume's publish"),
        (&a.id, b.staging.clone(), "another volume's staging mount"),
        (
            &a.id,
            format!("{NS}/ln-root/{}", a.target),
            "its own target through a symlink",
        ),
        (&a.id, format!("{}/", a.staging), "its own staging path"),
        (&k.id, l.target.clone(), "another block volume's publish"),
        (&k.id, "/etc/hostname".to_string(), "a regular file (block)"),
        (
            &k.id,
            format!("{NS}/ln-hostname"),
            "a symlink to a file (block)",
        ),
    ];
    for (id, path, why) in &cases {
        expect(
            &format!("unpublish {id} at {path} ({why})"),
            None,
            c.node.node_unpublish_volume(req::unpublish(id, path)).await,
        );
    }
    let unstage_cases = [
        (
            a.id.clone(),
            b.staging.clone(),
            "another volume's staging mount",
        ),
        (a.id.clone(), tmpfs.clone(), "a tmpfs"),
        (
            format!("{VG}/csi-nope"),
            tmpfs.clone(),
            "a volume that does not exist, a tmpfs",
        ),
        (
            format!("{VG}/csi-nope"),
            b.staging.clone(),
            "a volume that does not exist, another's staging",
        ),
        (
            k.id.clone(),
            l.staging.clone(),
            "another block volume's staging",
        ),
        (
            a.id.clone(),
            format!("{NS}/ln-root/{}", a.staging),
            "its staging through a symlink",
        ),
    ];
    for (id, path, why) in &unstage_cases {
        expect(
            &format!("unstage {id} at {path} ({why})"),
            None,
            c.node.node_unstage_volume(req::unstage(id, path)).await,
        );
    }
    assert_eq!(w.world(), before, "nothing changed");
}

async fn stats_of_foreign_paths(c: &mut Clients, w: &Watch, a: &Vol, b: &Vol, k: &Vol, l: &Vol) {
    step("NodeGetVolumeStats: NOT_FOUND for any path that is not the volume's mount or device");
    let before = w.world();
    for (id, path) in [
        (&a.id, "/".to_string()),
        (&a.id, format!("{NS}/tmpfs")),
        (&a.id, b.staging.clone()),
        (&a.id, b.target.clone()),
        (&a.id, "relative/path".to_string()),
        (&a.id, format!("{NS}/none")),
        (&a.id, format!("{NS}/ln-root/{}", a.target)),
        (&k.id, l.target.clone()),
        (&k.id, format!("{NS}/tmpfs/file")),
    ] {
        expect(
            &format!("stats {id} at {path}"),
            Some(Code::NotFound),
            c.node.node_get_volume_stats(req::stats(id, &path)).await,
        );
    }
    let own = c
        .node
        .node_get_volume_stats(req::stats(&a.id, &a.target))
        .await
        .expect("stats at its own target")
        .into_inner();
    let total = own.usage[0].total as u64;
    let df: u64 = sh(&format!("df -B1 --output=size {} | tail -1", a.target))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(total, df, "the volume's own numbers");
    let blk = c
        .node
        .node_get_volume_stats(req::stats(&k.id, &k.target))
        .await
        .expect("stats at the block target")
        .into_inner();
    assert_eq!(blk.usage[0].total, 16 * MIB);
    assert_eq!(w.world(), before);
}

async fn volumes_in_use(c: &mut Clients, w: &Watch, a: &Vol, k: &Vol) {
    step("a second stage elsewhere and an unstage while published are FAILED_PRECONDITION");
    let before = w.world();
    for v in [a, k] {
        let other = format!("{NS}/stage/second-{}", v.id.replace('/', "-"));
        let e = c
            .node
            .node_stage_volume(stage_req(&v.id, &other, &v.cap))
            .await
            .expect_err("second stage");
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains(&v.staging), "names the first: {e:?}");
        assert!(!is_mounted(Path::new(&other)));
        let e = c
            .node
            .node_unstage_volume(req::unstage(&v.id, &v.staging))
            .await
            .expect_err("unstage while published");
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains(&v.target), "names the publish: {e:?}");
        let _ = std::fs::remove_dir(&other);
    }
    assert_eq!(
        w.world(),
        before,
        "both still staged and published, data intact"
    );
    // A repeated stage at the first path is still the idempotent OK.
    expect(
        "stage a again at its path",
        None,
        c.node
            .node_stage_volume(stage_req(&a.id, &a.staging, &a.cap))
            .await,
    );
    assert_eq!(w.world(), before);
}

async fn unknown_ids(c: &mut Clients, w: &Watch, a: &Vol) {
    step("ids vglet did not issue: NOT_FOUND from every node RPC, nothing touched");
    let before = w.world();
    let fake = "fake-vol-id-1";
    let tmpfs = format!("{NS}/tmpfs");
    expect(
        "stage",
        Some(Code::NotFound),
        c.node
            .node_stage_volume(stage_req(fake, &tmpfs, &a.cap))
            .await,
    );
    expect(
        "publish",
        Some(Code::NotFound),
        c.node
            .node_publish_volume(publish_req(fake, &a.staging, &tmpfs, &a.cap, false))
            .await,
    );
    expect(
        "unpublish",
        Some(Code::NotFound),
        c.node
            .node_unpublish_volume(req::unpublish(fake, &tmpfs))
            .await,
    );
    expect(
        "unstage",
        Some(Code::NotFound),
        c.node.node_unstage_volume(req::unstage(fake, &tmpfs)).await,
    );
    expect(
        "stats",
        Some(Code::NotFound),
        c.node
            .node_get_volume_stats(req::stats(fake, &a.target))
            .await,
    );
    expect(
        "expand",
        Some(Code::NotFound),
        c.node
            .node_expand_volume(NodeExpandVolumeRequest {
                volume_id: fake.into(),
                volume_path: a.target.clone(),
                ..Default::default()
            })
            .await,
    );
    assert_eq!(w.world(), before);
}

async fn race(c: &mut Clients, w: &Watch, a: &Vol, k: &Vol) {
    step("race: a directory swapped for a symlink in a loop never redirects publish or unpublish");
    let before = w.world();
    let dir = p(&format!("{NS}/race/dir"));
    let aside = p(&format!("{NS}/race/aside"));
    std::fs::create_dir_all(&dir).unwrap();
    let victim = p(&format!("{NS}/victim"));
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (dir, aside, victim, stop) = (dir.clone(), aside.clone(), victim.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Errors only mean the driver created or holds something meanwhile.
                let _ = std::fs::rename(&dir, &aside);
                let _ = std::os::unix::fs::symlink(&victim, &dir);
                std::thread::yield_now();
                let _ = std::fs::remove_file(&dir);
                let _ = std::fs::rename(&aside, &dir);
                swaps += 1;
            }
            swaps
        })
    };
    let (mut published, mut refused) = (0, 0);
    for i in 0..40 {
        for v in [a, k] {
            let target = format!("{}/t-{}", dir.display(), v.id.replace('/', "-"));
            let r = c
                .node
                .node_publish_volume(publish_req(&v.id, &v.staging, &target, &v.cap, false))
                .await;
            match r {
                Ok(_) => published += 1,
                Err(e) => {
                    assert!(
                        matches!(
                            e.code(),
                            Code::InvalidArgument | Code::NotFound | Code::Internal
                        ),
                        "publish {i}: {e:?}"
                    );
                    refused += 1;
                }
            }
            // Unpublish may meet the symlink too: then it touches nothing and says OK.
            let _ = c
                .node
                .node_unpublish_volume(req::unpublish(&v.id, &target))
                .await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    eprintln!("  {swaps} swaps; {published} publishes succeeded, {refused} refused");
    assert!(dir.is_dir() && !dir.is_symlink(), "the directory is back");
    // A publish whose directory the swapper then moved aside stays in that directory (it
    // was put where the path led when resolved, never through the symlink); an unpublish
    // that met the symlink touched nothing. So every mount left is under the race
    // directory, none in the victim or anywhere else.
    for v in [a, k] {
        let target = format!("{}/t-{}", dir.display(), v.id.replace('/', "-"));
        expect(
            "final unpublish",
            None,
            c.node
                .node_unpublish_volume(req::unpublish(&v.id, &target))
                .await,
        );
    }
    let race_root = format!("{NS}/race/");
    let mut left = Vec::new();
    for line in mount_lines() {
        let at = line.split(' ').next().unwrap().to_string();
        if at.starts_with(&race_root) {
            left.push(at);
        }
    }
    eprintln!("  mounts left in moved-aside directories: {left:?}");
    for at in left.iter().rev() {
        sh(&format!("umount {at}"));
    }
    for m in mounts_of(&dev_of(&a.id)) {
        assert!(
            m == a.staging || m == a.target,
            "{} mounted at {m} after the race",
            a.id
        );
    }
    std::fs::remove_dir_all(format!("{NS}/race")).unwrap();
    assert_eq!(w.world(), before, "victim, /etc and the volumes untouched");
}

async fn single_writer(c: &mut Clients) {
    step(
        "SINGLE_NODE_SINGLE_WRITER: one read/write publish; read-only ones and MULTI_WRITER allowed",
    );
    for (name, cap) in [
        (
            "sw-fs",
            req::mount_cap("ext4", &[], Mode::SingleNodeSingleWriter),
        ),
        ("sw-blk", req::block_cap(Mode::SingleNodeSingleWriter)),
    ] {
        let v = stage_and_publish(c, name, cap.clone()).await;
        let second = format!("{NS}/pods/{name}-2/vol");
        let e = c
            .node
            .node_publish_volume(publish_req(&v.id, &v.staging, &second, &cap, false))
            .await
            .expect_err("second read/write publish");
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains(&v.target), "names the first: {e:?}");
        assert!(!is_mounted(Path::new(&second)));
        assert!(!Path::new(&second).exists(), "nothing created");
        let ro = format!("{NS}/pods/{name}-ro/vol");
        expect(
            &format!("{name}: read-only publish"),
            None,
            c.node
                .node_publish_volume(publish_req(&v.id, &v.staging, &ro, &cap, true))
                .await,
        );
        assert!(is_mounted(Path::new(&ro)));
        expect(
            &format!("{name}: the first again (idempotent)"),
            None,
            c.node
                .node_publish_volume(publish_req(&v.id, &v.staging, &v.target, &cap, false))
                .await,
        );
        for t in [&ro, &v.target] {
            expect(
                "unpublish",
                None,
                c.node.node_unpublish_volume(req::unpublish(&v.id, t)).await,
            );
        }
        // Once the first is gone, another read/write publish is fine.
        expect(
            &format!("{name}: read/write publish after the first is gone"),
            None,
            c.node
                .node_publish_volume(publish_req(&v.id, &v.staging, &second, &cap, false))
                .await,
        );
        expect(
            "unpublish",
            None,
            c.node
                .node_unpublish_volume(req::unpublish(&v.id, &second))
                .await,
        );
        expect(
            "unstage",
            None,
            c.node
                .node_unstage_volume(req::unstage(&v.id, &v.staging))
                .await,
        );
    }
    for (name, cap) in [
        (
            "mw-fs",
            req::mount_cap("ext4", &[], Mode::SingleNodeMultiWriter),
        ),
        ("mw-blk", req::block_cap(Mode::SingleNodeMultiWriter)),
    ] {
        let v = stage_and_publish(c, name, cap.clone()).await;
        let second = format!("{NS}/pods/{name}-2/vol");
        expect(
            &format!("{name}: second read/write publish"),
            None,
            c.node
                .node_publish_volume(publish_req(&v.id, &v.staging, &second, &cap, false))
                .await,
        );
        assert!(is_mounted(Path::new(&second)));
        for t in [&second, &v.target] {
            expect(
                "unpublish",
                None,
                c.node.node_unpublish_volume(req::unpublish(&v.id, t)).await,
            );
        }
        expect(
            "unstage",
            None,
            c.node
                .node_unstage_volume(req::unstage(&v.id, &v.staging))
                .await,
        );
        assert!(mounts_of(&dev_of(&v.id)).is_empty());
    }
}
