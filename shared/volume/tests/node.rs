//! Staging, publishing and the proven unmounts on the host, through the read-side fake
//! ([`FakeHost`], which is also the mounter) and a fake runner for blkid and mkfs. Paths
//! are real directories under a temporary one, so resolution runs for real.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use vglet_csi_proto::v1::volume_capability::access_mode::Mode;
use vglet_lvm::Lvm;
use vglet_lvm::tags::Content;
use vglet_mount::{Create, Filesystems, MkfsProgress, MountCall, Resolved};
use vglet_runner::{FakeRunner, Reply};
use vglet_state::{FormatMark, StateStore};
use vglet_volume::host::FakeMount;
use vglet_volume::node::Unpublished;
use vglet_volume::{
    Access, Capability, FakeHost, Proven, StageTarget, VgKind, VolumeError, VolumeNode, record,
};

const DEV: &str = "/dev/vg0/csi-a";
const NUMBERS: (u64, u64) = (253, 3);
const LV_UUID: &str = "f3kLtQ-cNnV-Qp2W-VMbU-hT0R-7cdn-9Zv0xw";
const VG_UUID: &str = "AbCdEfGhIjKlMnOpQrStUvWxYz012345";
const ID: &str = "vg0/csi-a";

struct World {
    dir: tempfile::TempDir,
    host: FakeHost,
    runner: FakeRunner,
    fs: Filesystems,
    lvm: Lvm,
    store: StateStore,
    /// What blkid prints (`None`: it finds nothing, exit 2).
    blkid: Arc<Mutex<Option<String>>>,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let blkid: Arc<Mutex<Option<String>>> = Arc::default();
        let seen = blkid.clone();
        let runner = FakeRunner::with(move |c| match c.program_name().as_str() {
            "blkid" => match seen.lock().unwrap().clone() {
                Some(out) => Reply::ok(out),
                None => Reply::fail(2, ""),
            },
            _ => Reply::ok(""),
        });
        let r: Arc<dyn vglet_runner::Runner> = Arc::new(runner.clone());
        let host = FakeHost::new();
        host.add_device(
            Path::new(DEV),
            NUMBERS,
            Some(format!("LVM-{VG_UUID}{}\n", LV_UUID.replace('-', ""))),
        );
        let store = StateStore::open(dir.path().join("state")).unwrap();
        World {
            host,
            runner,
            fs: Filesystems::new(r.clone(), vglet_runner::Programs::all_in("/sbin")),
            lvm: Lvm::with_binary(r, "/sbin/lvm".into()),
            store,
            blkid,
            dir,
        }
    }

    fn vol(&self) -> VolumeNode<'_> {
        VolumeNode {
            host: &self.host,
            mounter: &self.host,
            fs: &self.fs,
            lvm: &self.lvm,
            store: Some(&self.store),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn resolve(&self, rel: &str, create: Create) -> Resolved {
        vglet_mount::resolve(&self.path(rel), create).unwrap()
    }

    fn ran(&self, tool: &str) -> Vec<String> {
        self.runner
            .call_lines()
            .into_iter()
            .filter(|l| l.contains(tool))
            .collect()
    }

    fn binds(&self) -> Vec<(PathBuf, bool)> {
        self.host
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                MountCall::Bind {
                    source, readonly, ..
                } => Some((source, readonly)),
                _ => None,
            })
            .collect()
    }

    async fn stage(&self, t: &StageTarget, cap: &Capability) -> Result<(), VolumeError> {
        let staging = self.resolve("staging/pvc", Create::Dir);
        let rec = record::stage_record(t, "lvm.vglet.io", cap, staging.path());
        self.vol().stage(t, &staging, cap, &[], rec).await
    }
}

fn target(fs: &str) -> StageTarget {
    StageTarget {
        vg: "vg0".into(),
        lv: "csi-a".into(),
        lv_uuid: LV_UUID.into(),
        created_as: Some(Content::from_tag(fs)),
        adopted: false,
        kind: VgKind::Local,
        fsdax: false,
        dev: DEV.into(),
        formatting_tag: None,
    }
}

fn fs_cap(fs: &str) -> Capability {
    Capability {
        access: Access::Mount {
            fs_type: fs.into(),
            mount_flags: vec![],
        },
        mode: Mode::SingleNodeWriter,
    }
}

fn block_cap() -> Capability {
    Capability {
        access: Access::Block,
        mode: Mode::SingleNodeWriter,
    }
}

fn mark(w: &World, fs: &str) {
    w.store
        .put_format_mark(&FormatMark {
            version: vglet_state::FORMAT_MARK_VERSION,
            volume_id: ID.into(),
            lv_uuid: LV_UUID.into(),
            fs_type: fs.into(),
            started_unix: 1,
        })
        .unwrap();
}

fn precondition(e: VolumeError) -> String {
    match e {
        VolumeError::Precondition(m) => m,
        e => panic!("not FAILED_PRECONDITION: {e:?}"),
    }
}

#[tokio::test]
async fn the_first_stage_formats_and_a_restage_does_not() {
    let w = World::new();
    w.stage(&target("ext4"), &fs_cap("ext4")).await.unwrap();
    // lvcreate's zeroes are still at the start: no blkid, one mkfs, one mount.
    assert!(w.ran("blkid").is_empty(), "{:?}", w.runner.call_lines());
    assert_eq!(w.ran("mkfs.ext4").len(), 1, "{:?}", w.runner.call_lines());
    let mounts = w.host.mounts();
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0].path, w.path("staging/pvc"));
    assert_eq!(mounts[0].device, NUMBERS);
    let rec = w.store.get(ID).unwrap().expect("recorded");
    assert_eq!(rec.staging_path, w.path("staging/pvc"));
    assert_eq!(rec.lv_uuid, LV_UUID);
    assert_eq!(rec.activation, vglet_lvm::Activation::Local);
    assert_eq!(w.store.format_mark(ID).unwrap(), None, "mark cleared");

    // Staged already: nothing runs, nothing is mounted again.
    w.stage(&target("ext4"), &fs_cap("ext4")).await.unwrap();
    assert_eq!(w.ran("mkfs").len(), 1);
    assert_eq!(w.host.mounts().len(), 1);

    // After a reboot (not mounted), the device holds the filesystem: mounted, not formatted.
    let staging = w.resolve("staging/pvc", Create::Nothing);
    assert!(
        w.vol()
            .unmount_if_ours(&staging, Some(NUMBERS), false)
            .unwrap()
    );
    assert!(w.host.mounts().is_empty());
    w.host.write_head(Path::new(DEV), None);
    *w.blkid.lock().unwrap() = Some("DEVNAME=/dev/vg0/csi-a\nTYPE=ext4\n".into());
    w.stage(&target("ext4"), &fs_cap("ext4")).await.unwrap();
    assert_eq!(w.ran("blkid").len(), 1);
    assert_eq!(w.ran("mkfs").len(), 1, "never formatted again");
    assert_eq!(w.host.mounts().len(), 1);
}

#[tokio::test]
async fn a_half_made_filesystem_is_made_again_only_under_a_mark() {
    let w = World::new();
    w.host
        .write_head(Path::new(DEV), Some(MkfsProgress::InProgress));
    *w.blkid.lock().unwrap() = Some("TYPE=xfs\n".into());
    // Under the mark of our own interrupted mkfs: made again (-f over it), then mounted.
    mark(&w, "xfs");
    w.stage(&target("xfs"), &fs_cap("xfs")).await.unwrap();
    let mkfs = w.ran("mkfs.xfs");
    assert_eq!(mkfs.len(), 1, "{:?}", w.runner.call_lines());
    assert!(mkfs[0].contains(" -f "), "{mkfs:?}");
    assert_eq!(w.store.format_mark(ID).unwrap(), None, "mark cleared");
    assert_eq!(w.host.mounts().len(), 1);
}

#[tokio::test]
async fn without_a_mark_nothing_found_on_the_device_is_formatted_over() {
    let w = World::new();
    w.host
        .write_head(Path::new(DEV), Some(MkfsProgress::InProgress));
    // Another filesystem than the one asked: refused, nothing run, nothing mounted.
    *w.blkid.lock().unwrap() = Some("TYPE=ext4\n".into());
    let e = precondition(w.stage(&target("xfs"), &fs_cap("xfs")).await.unwrap_err());
    assert!(e.contains("holds ext4"), "{e}");
    assert!(w.ran("mkfs").is_empty());
    assert!(w.host.mounts().is_empty());
    assert!(w.store.get(ID).unwrap().is_none(), "no record");
    // The asked filesystem, half-made, but no mark says it was our mkfs: not formatted
    // (the kernel decides at the mount).
    *w.blkid.lock().unwrap() = Some("TYPE=xfs\n".into());
    w.stage(&target("xfs"), &fs_cap("xfs")).await.unwrap();
    assert!(w.ran("mkfs").is_empty());
    // Under a mark, a superblock no mkfs leaves is refused as well.
    let w = World::new();
    w.host.write_head(
        Path::new(DEV),
        Some(MkfsProgress::Other("state 0x3".into())),
    );
    *w.blkid.lock().unwrap() = Some("TYPE=xfs\n".into());
    mark(&w, "xfs");
    let e = precondition(w.stage(&target("xfs"), &fs_cap("xfs")).await.unwrap_err());
    assert!(e.contains("state 0x3"), "{e}");
    assert!(w.ran("mkfs").is_empty());
    assert!(w.host.mounts().is_empty());
    assert!(w.store.format_mark(ID).unwrap().is_some(), "mark kept");
}

#[tokio::test]
async fn a_second_staging_path_is_refused_naming_the_first() {
    let w = World::new();
    w.stage(&target("ext4"), &fs_cap("ext4")).await.unwrap();
    let rec = w.store.get(ID).unwrap().unwrap();
    assert_eq!(
        record::staged_elsewhere(&rec, LV_UUID, &w.path("other/pvc")),
        Some(w.path("staging/pvc"))
    );
    assert_eq!(
        record::staged_elsewhere(&rec, LV_UUID, &w.path("staging/pvc")),
        None
    );
    // A record of an earlier LV of the name does not hold the new one back.
    assert_eq!(
        record::staged_elsewhere(&rec, "other-uuid", &w.path("other/pvc")),
        None
    );
}

fn proven_fs(w: &World) -> Proven {
    Proven {
        cap: fs_cap("ext4"),
        source: w.path("staging/pvc"),
        source_numbers: NUMBERS,
    }
}

#[tokio::test]
async fn publishes_bind_read_write_and_read_only_and_record_the_targets() {
    let w = World::new();
    w.stage(&target("ext4"), &fs_cap("ext4")).await.unwrap();
    let rec = w.store.get(ID).unwrap().unwrap();
    let (staging, rw, ro) = (
        w.path("staging/pvc"),
        w.path("pods/a/vol"),
        w.path("pods/b/vol"),
    );
    let vol = w.vol();
    let p = proven_fs(&w);
    vol.publish(ID, &p, &staging, &rw, false, rec.clone())
        .unwrap();
    vol.publish(ID, &p, &staging, &ro, true, rec.clone())
        .unwrap();
    let binds = w.binds();
    assert_eq!(binds.len(), 2);
    assert!(!binds[0].1 && binds[1].1, "{binds:?}");
    let mounts = w.host.mounts();
    let at = |p: &Path| mounts.iter().find(|m| m.path == p).cloned().unwrap();
    assert!(!at(&rw).read_only && at(&ro).read_only);
    assert_eq!(at(&rw).device, NUMBERS);
    let targets = w.store.get(ID).unwrap().unwrap().targets;
    assert_eq!(targets.len(), 2);
    assert!(targets.iter().any(|t| t.path == ro && t.read_only));
    // The same publish again: nothing new; with another read-only setting: refused.
    vol.publish(ID, &p, &staging, &rw, false, rec.clone())
        .unwrap();
    assert_eq!(w.binds().len(), 2);
    let e = vol
        .publish(ID, &p, &staging, &rw, true, rec.clone())
        .unwrap_err();
    assert!(matches!(e, VolumeError::AlreadyExists(_)), "{e:?}");
    // Not staged where asked: refused, no bind.
    let e = vol
        .publish(
            ID,
            &p,
            &w.path("nowhere"),
            &w.path("pods/c/vol"),
            false,
            rec,
        )
        .unwrap_err();
    assert!(matches!(e, VolumeError::Mount { .. }), "{e:?}");
    assert_eq!(w.binds().len(), 2);
}

#[tokio::test]
async fn a_block_volume_is_published_as_its_device_node_on_a_file() {
    let w = World::new();
    let t = target("block");
    w.stage(&t, &block_cap()).await.unwrap();
    assert!(w.ran("mkfs").is_empty() && w.host.mounts().is_empty());
    let rec = w.store.get(ID).unwrap().unwrap();
    assert!(rec.is_block());
    let p = Proven {
        cap: block_cap(),
        source: DEV.into(),
        source_numbers: NUMBERS,
    };
    let target_path = w.path("pods/a/dev/vol");
    w.vol()
        .publish(ID, &p, &w.path("staging/pvc"), &target_path, false, rec)
        .unwrap();
    assert!(target_path.is_file(), "the target is a file");
    assert_eq!(w.binds(), vec![(PathBuf::from(DEV), false)]);
    let m = &w.host.mounts()[0];
    assert!(m.block && m.device == NUMBERS && m.path == target_path);
    // Unpublished: the bind goes, and so does the file the driver made.
    let rec = w.store.get(ID).unwrap().unwrap();
    assert_eq!(
        w.vol()
            .unpublish_at(Some(&rec), Some(NUMBERS), &target_path)
            .unwrap(),
        Unpublished::Done
    );
    assert!(w.host.mounts().is_empty());
    assert!(!target_path.exists());
}

#[tokio::test]
async fn unstage_while_published_is_refused_and_after_unpublish_it_unmounts() {
    let w = World::new();
    w.stage(&target("ext4"), &fs_cap("ext4")).await.unwrap();
    let rec = w.store.get(ID).unwrap().unwrap();
    let (staging, pod) = (w.path("staging/pvc"), w.path("pods/a/vol"));
    w.vol()
        .publish(ID, &proven_fs(&w), &staging, &pod, false, rec)
        .unwrap();
    let rec = w.store.get(ID).unwrap().unwrap();
    let vol = w.vol();
    assert_eq!(
        vol.remaining_publishes(Some(&rec), Some(NUMBERS), &staging)
            .unwrap(),
        vec![pod.clone()]
    );
    // A bind the record does not name still counts: the mount table shows it.
    let mut bare = rec.clone();
    bare.targets.clear();
    assert_eq!(
        vol.remaining_publishes(Some(&bare), Some(NUMBERS), &staging)
            .unwrap(),
        vec![pod.clone()]
    );
    assert_eq!(
        vol.unpublish_at(Some(&rec), Some(NUMBERS), &pod).unwrap(),
        Unpublished::Done
    );
    assert!(!pod.exists(), "the empty target directory is removed");
    assert!(
        vol.remaining_publishes(Some(&rec), Some(NUMBERS), &staging)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        vol.unstage_at(ID, Some(&rec), Some(NUMBERS), &staging)
            .unwrap(),
        Unpublished::Done
    );
    assert!(w.host.mounts().is_empty());
}

#[tokio::test]
async fn what_is_not_the_volumes_is_left_untouched() {
    let w = World::new();
    w.stage(&target("ext4"), &fs_cap("ext4")).await.unwrap();
    let rec = w.store.get(ID).unwrap().unwrap();
    let vol = w.vol();
    // Another device mounted at the path: left alone, no unmount.
    let foreign = w.path("pods/foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    w.host.add_mount(FakeMount {
        path: foreign.clone(),
        device: (8, 1),
        block: false,
        read_only: false,
        options: vec!["rw".into()],
        fs_type: "ext4".into(),
    });
    w.host.clear_calls();
    assert_eq!(
        vol.unpublish_at(Some(&rec), Some(NUMBERS), &foreign)
            .unwrap(),
        Unpublished::LeftAlone
    );
    assert!(w.host.calls().is_empty(), "{:?}", w.host.calls());
    assert_eq!(w.host.mounts().len(), 2);
    // Nothing mounted, a file the driver did not make: kept.
    let full = w.path("pods/full");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(full.join("data"), b"keep").unwrap();
    assert_eq!(
        vol.unpublish_at(Some(&rec), Some(NUMBERS), &full).unwrap(),
        Unpublished::Done
    );
    assert_eq!(std::fs::read(full.join("data")).unwrap(), b"keep");
    // Reached only through a symlink (to the staging mount): never followed.
    let link = w.path("pods/link");
    std::os::unix::fs::symlink(w.path("staging"), &link).unwrap();
    assert_eq!(
        vol.unpublish_at(Some(&rec), Some(NUMBERS), &link.join("pvc"))
            .unwrap(),
        Unpublished::LeftAlone
    );
    assert!(w.host.calls().is_empty(), "{:?}", w.host.calls());
    // Unstage at the foreign mount: left alone too.
    assert_eq!(
        vol.unstage_at(ID, Some(&rec), Some(NUMBERS), &foreign)
            .unwrap(),
        Unpublished::LeftAlone
    );
    assert_eq!(w.host.mounts().len(), 2);
}

#[tokio::test]
async fn an_fsdax_volume_is_mounted_with_dax_or_not_at_all() {
    let w = World::new();
    let t = StageTarget {
        fsdax: true,
        ..target("xfs")
    };
    // A dax flag that contradicts the volume is refused before anything runs.
    let mut not_dax = target("xfs");
    not_dax.fsdax = false;
    let with_dax = Capability {
        access: Access::Mount {
            fs_type: "xfs".into(),
            mount_flags: vec!["dax".into()],
        },
        mode: Mode::SingleNodeWriter,
    };
    assert!(matches!(
        not_dax.check_capability(&with_dax),
        Err(VolumeError::Invalid { .. })
    ));
    // The kernel drops dax=always: unmounted again, refused, no record.
    w.host.set_drops_dax(true);
    let e = precondition(w.stage(&t, &fs_cap("xfs")).await.unwrap_err());
    assert!(e.contains("without DAX"), "{e}");
    assert!(w.host.mounts().is_empty(), "{:?}", w.host.mounts());
    assert!(w.store.get(ID).unwrap().is_none());
    let mkfs = w.ran("mkfs.xfs");
    assert!(mkfs[0].contains("reflink=0"), "{mkfs:?}");
    // With DAX shown: staged, dax=always among the options.
    w.host.set_drops_dax(false);
    w.stage(&t, &fs_cap("xfs")).await.unwrap();
    let m = &w.host.mounts()[0];
    assert!(m.options.iter().any(|o| o == "dax=always"), "{m:?}");
    assert!(w.store.get(ID).unwrap().is_some());
}
