//! An encrypted volume's stage through the read-side fake ([`FakeHost`]) and a scripted
//! cryptsetup: the first luksFormat inside the first-format mark (an interrupted one is
//! formatted again, a made header never), key rotation converging from each crash point,
//! keys only on stdin and the extra input, never in argv. Unit tests: the real cryptsetup
//! and dm-crypt are in tests/e2e/tests/encryption.rs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use vglet_csi_proto::v1::volume_capability::access_mode::Mode;
use vglet_lvm::Lvm;
use vglet_lvm::tags::Content;
use vglet_mount::{Create, Filesystems};
use vglet_runner::{Command, FakeRunner, Reply};
use vglet_state::StateStore;
use vglet_volume::NodeHost;
use vglet_volume::crypt::{Crypt, Keys};
use vglet_volume::{
    Access, Capability, FakeHost, StageTarget, VgKind, VolumeError, VolumeNode, record,
};

const DEV: &str = "/dev/vg0/csi-a";
const NUMBERS: (u64, u64) = (253, 3);
const MAPPED: (u64, u64) = (253, 9);
const MAPPING: &str = "/dev/mapper/vglet-crypt-vg0-csi--a";
const LV_UUID: &str = "f3kLtQ-cNnV-Qp2W-VMbU-hT0R-7cdn-9Zv0xw";
const VG_UUID: &str = "AbCdEfGhIjKlMnOpQrStUvWxYz012345";
const ID: &str = "vg0/csi-a";
const KEY: &[u8] = b"k3y-NEW-never-in-argv";
const OLD: &[u8] = b"k3y-OLD-never-in-argv";

/// The LUKS header as the scripted cryptsetup keeps it.
#[derive(Debug, Default)]
struct Luks {
    /// `None`: no header; `Some(slots)`: a header with these (slot, key) pairs.
    header: Option<Vec<(u32, Vec<u8>)>>,
    /// The next luksFormat is killed after writing the header, before its key slot.
    kill_format: bool,
    /// The next luksKillSlot is killed before it removes anything.
    kill_killslot: bool,
    /// Whether the first-format mark existed at each luksFormat.
    marked_at_format: Vec<bool>,
    /// blkid sees the header's magic, cryptsetup cannot read the header.
    unreadable: bool,
}

struct World {
    dir: tempfile::TempDir,
    host: FakeHost,
    runner: FakeRunner,
    fs: Filesystems,
    lvm: Lvm,
    store: StateStore,
    crypt: Crypt,
    luks: Arc<Mutex<Luks>>,
}

fn slot_of(slots: &[(u32, Vec<u8>)], key: &[u8]) -> Option<u32> {
    slots.iter().find(|(_, k)| k == key).map(|(s, _)| *s)
}

fn cryptsetup(c: &Command, luks: &Mutex<Luks>, host: &FakeHost, mark: &Path) -> Reply {
    let a = c.arg_strings();
    let key = c.stdin.clone().unwrap_or_default();
    let mut l = luks.lock().unwrap();
    let wrong = || Reply::fail(2, "No key available with this passphrase.");
    match a[0].as_str() {
        "luksFormat" => {
            l.marked_at_format.push(mark.exists());
            if std::mem::take(&mut l.kill_format) {
                l.header = Some(Vec::new());
                return Reply::fail(137, "killed");
            }
            l.header = Some(vec![(0, key)]);
            Reply::ok("")
        }
        "luksDump" => match &l.header {
            Some(_) if l.unreadable => Reply::fail(1, "Device is not a valid LUKS device."),
            Some(slots) => {
                let ks: Vec<String> = slots.iter().map(|(s, _)| format!("\"{s}\":{{}}")).collect();
                Reply::ok(format!(
                    "{{\"keyslots\":{{{}}},\"tokens\":{{}}}}",
                    ks.join(",")
                ))
            }
            None => Reply::fail(1, "Device is not a valid LUKS device."),
        },
        "open" if a.contains(&"--test-passphrase".to_string()) => {
            match l.header.as_deref().and_then(|s| slot_of(s, &key)) {
                Some(s) => Reply::ok(format!("Key slot {s} unlocked.\nCommand successful.\n")),
                None => wrong(),
            }
        }
        "open" => match l.header.as_deref().and_then(|s| slot_of(s, &key)) {
            Some(_) => {
                host.add_mapping(
                    Path::new(MAPPING),
                    MAPPED,
                    "CRYPT-LUKS2-0123-vglet-crypt-vg0-csi--a",
                    NUMBERS,
                );
                host.blank_head(Path::new(MAPPING));
                Reply::ok("")
            }
            None => wrong(),
        },
        "luksAddKey" => {
            assert_eq!(a.last().unwrap(), vglet_runner::EXTRA_INPUT_PATH);
            let new = c
                .extra_input
                .clone()
                .expect("the new key on the extra input");
            let slots = l.header.as_mut().unwrap();
            if slot_of(slots, &key).is_none() {
                return wrong();
            }
            let free = (0..).find(|n| slots.iter().all(|(s, _)| s != n)).unwrap();
            slots.push((free, new));
            Reply::ok("")
        }
        "luksKillSlot" => {
            if std::mem::take(&mut l.kill_killslot) {
                return Reply::fail(137, "killed");
            }
            let n: u32 = a.last().unwrap().parse().unwrap();
            let slots = l.header.as_mut().unwrap();
            // cryptsetup wants a key of another slot.
            match slot_of(slots, &key) {
                Some(s) if s != n => {
                    slots.retain(|(s, _)| *s != n);
                    Reply::ok("")
                }
                _ => wrong(),
            }
        }
        other => panic!("unexpected cryptsetup {other}"),
    }
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path().join("state")).unwrap();
        let host = FakeHost::new();
        host.add_device(
            Path::new(DEV),
            NUMBERS,
            Some(format!("LVM-{VG_UUID}{}\n", LV_UUID.replace('-', ""))),
        );
        let luks: Arc<Mutex<Luks>> = Arc::default();
        let (l, h) = (luks.clone(), host.clone());
        let mark = dir.path().join("state/formatting/vg0%2Fcsi-a.json");
        let runner = FakeRunner::with(move |c| match c.program_name().as_str() {
            "blkid" => match l.lock().unwrap().header {
                Some(_) if c.args.iter().any(|a| a == DEV) => {
                    Reply::ok("DEVNAME=/dev/vg0/csi-a\nTYPE=crypto_LUKS\nUSAGE=crypto\n")
                }
                _ => Reply::fail(2, ""),
            },
            "cryptsetup" => cryptsetup(c, &l, &h, &mark),
            _ => Reply::ok(""),
        });
        let r: Arc<dyn vglet_runner::Runner> = Arc::new(runner.clone());
        let programs = vglet_runner::Programs::all_in("/sbin");
        World {
            host,
            runner,
            fs: Filesystems::new(r.clone(), programs.clone()),
            lvm: Lvm::with_binary(r.clone(), "/sbin/lvm".into()),
            crypt: Crypt::new(r, &programs),
            store,
            luks,
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

    fn marked(&self) -> bool {
        self.store.format_mark(ID).unwrap().is_some()
    }

    /// What the node service does: open (inside the mark), then stage on the mapping.
    async fn stage(&self, cap: &Capability, keys: Keys<'_>) -> Result<(), VolumeError> {
        let mut t = target();
        self.vol()
            .open_encrypted(&self.crypt, &mut t, cap, keys)
            .await?;
        assert_eq!(t.dev, PathBuf::from(MAPPING));
        let staging = vglet_mount::resolve(&self.dir.path().join("staging"), Create::Dir).unwrap();
        let rec = record::stage_record(&t, "lvm.vglet.io", cap, staging.path());
        self.vol().stage(&t, &staging, cap, &[], rec).await
    }

    /// A crash or an unstage: nothing mounted, the mapping closed.
    fn reset(&self) {
        let staging = vglet_mount::resolve(&self.dir.path().join("staging"), Create::Dir).unwrap();
        let _ = self.vol().unmount_if_ours(&staging, Some(MAPPED), false);
        self.host.remove_device(Path::new(MAPPING));
    }

    fn lines(&self, what: &str) -> Vec<String> {
        self.runner
            .call_lines()
            .into_iter()
            .filter(|l| l.contains(what))
            .collect()
    }

    fn slots(&self) -> Vec<(u32, Vec<u8>)> {
        self.luks.lock().unwrap().header.clone().unwrap_or_default()
    }

    fn no_key_in_argv(&self) {
        for c in self.runner.calls() {
            let argv = c.argv_string();
            assert!(!argv.contains("k3y"), "a key in argv: {argv}");
        }
    }
}

fn target() -> StageTarget {
    StageTarget {
        vg: "vg0".into(),
        lv: "csi-a".into(),
        lv_uuid: LV_UUID.into(),
        created_as: Some(Content::from_tag("ext4")),
        adopted: false,
        kind: VgKind::Local,
        fsdax: false,
        dev: DEV.into(),
        formatting_tag: None,
    }
}

fn fs_cap() -> Capability {
    Capability {
        access: Access::Mount {
            fs_type: "ext4".into(),
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

fn keys(key: &'static [u8]) -> Keys<'static> {
    Keys {
        key,
        previous: None,
    }
}

fn precondition(e: VolumeError) -> String {
    match e {
        VolumeError::Precondition(m) => m,
        e => panic!("not FAILED_PRECONDITION: {e:?}"),
    }
}

#[tokio::test]
async fn an_interrupted_first_luks_format_is_formatted_again_under_its_mark() {
    let w = World::new();
    w.luks.lock().unwrap().kill_format = true;
    let e = w.stage(&fs_cap(), keys(KEY)).await.unwrap_err();
    assert!(matches!(e, VolumeError::Internal(_)), "{e:?}");
    // The crash left a header without key slot, and the mark written before luksFormat.
    assert_eq!(w.luks.lock().unwrap().header, Some(Vec::new()));
    assert!(w.marked(), "the mark survives the interrupted luksFormat");
    w.host.write_head(Path::new(DEV), None);

    w.stage(&fs_cap(), keys(KEY)).await.unwrap();
    assert_eq!(
        w.lines("luksFormat").len(),
        2,
        "{:?}",
        w.runner.call_lines()
    );
    assert_eq!(
        w.lines("luksDump").len(),
        1,
        "the header is read only under the mark"
    );
    assert_eq!(w.luks.lock().unwrap().marked_at_format, vec![true, true]);
    assert_eq!(w.lines("mkfs.ext4").len(), 1);
    assert!(
        w.lines("mkfs.ext4")[0].contains(MAPPING),
        "mkfs on the mapping"
    );
    assert!(!w.marked(), "the mark goes after mkfs and the first mount");
    assert_eq!(w.host.mounts().len(), 1);
    assert_eq!(w.host.mounts()[0].device, MAPPED);
    w.no_key_in_argv();
}

#[tokio::test]
async fn a_made_header_is_never_formatted_again_even_under_a_mark() {
    let w = World::new();
    w.stage(&fs_cap(), keys(KEY)).await.unwrap();
    assert_eq!(w.lines("luksFormat").len(), 1);
    w.reset();
    w.host.write_head(Path::new(DEV), None);
    // A crash after luksFormat, before mkfs and the mount: the mark is still there.
    vglet_volume::first_format::Mark {
        vg: "vg0".into(),
        lv: "csi-a".into(),
        lv_uuid: LV_UUID.into(),
        kind: VgKind::Local,
        tag: None,
    }
    .set(Some(&w.store), &w.lvm, "ext4")
    .await
    .unwrap();
    // A wrong key: refused, nothing formatted, no mapping.
    let m = precondition(w.stage(&fs_cap(), keys(b"k3y-wrong")).await.unwrap_err());
    assert!(m.contains("\"passphrase\" does not open"), "{m}");
    assert!(!m.contains("k3y"), "{m}");
    assert_eq!(w.lines("luksFormat").len(), 1);
    assert_eq!(w.host.device_numbers(Path::new(MAPPING)), None);
    // The right key opens it; the mapping's content decides mkfs (the fake's mapping holds
    // nothing blkid knows, as after an interrupted mkfs), never luksFormat.
    w.stage(&fs_cap(), keys(KEY)).await.unwrap();
    assert_eq!(w.lines("luksFormat").len(), 1, "never formatted again");
    assert_eq!(w.slots().len(), 1);
    assert!(!w.marked());
    w.no_key_in_argv();
}

#[tokio::test]
async fn an_unreadable_header_under_a_mark_is_refused() {
    let w = World::new();
    {
        let mut l = w.luks.lock().unwrap();
        l.header = Some(vec![(0, KEY.to_vec())]);
        l.unreadable = true;
    }
    w.host.write_head(Path::new(DEV), None);
    vglet_volume::first_format::Mark {
        vg: "vg0".into(),
        lv: "csi-a".into(),
        lv_uuid: LV_UUID.into(),
        kind: VgKind::Local,
        tag: None,
    }
    .set(Some(&w.store), &w.lvm, "ext4")
    .await
    .unwrap();
    let m = precondition(w.stage(&fs_cap(), keys(KEY)).await.unwrap_err());
    assert!(
        m.contains("not a valid LUKS") && m.contains("refusing"),
        "{m}"
    );
    assert!(w.lines("luksFormat").is_empty());
    assert!(w.lines("cryptsetup open").is_empty());
    assert!(w.marked(), "the mark stays for the operator to see");
}

#[tokio::test]
async fn a_block_volume_s_mark_goes_once_the_mapping_is_open() {
    let w = World::new();
    let mut t = target();
    t.created_as = Some(Content::Block);
    w.vol()
        .open_encrypted(&w.crypt, &mut t, &block_cap(), keys(KEY))
        .await
        .unwrap();
    assert_eq!(w.luks.lock().unwrap().marked_at_format, vec![true]);
    assert!(!w.marked());
    assert_eq!(t.dev, PathBuf::from(MAPPING));
}

#[tokio::test]
async fn key_rotation_converges_after_a_crash_between_its_steps() {
    let w = World::new();
    w.stage(&fs_cap(), keys(OLD)).await.unwrap();
    w.reset();
    w.host.write_head(Path::new(DEV), None);
    let rotate = Keys {
        key: KEY,
        previous: Some(OLD),
    };
    // Killed between luksAddKey and luksKillSlot: both keys open the volume.
    w.luks.lock().unwrap().kill_killslot = true;
    let e = w.stage(&fs_cap(), rotate).await.unwrap_err();
    assert!(matches!(e, VolumeError::Internal(_)), "{e:?}");
    let slots = w.slots();
    assert_eq!(slot_of(&slots, OLD), Some(0));
    assert_eq!(slot_of(&slots, KEY), Some(1));
    // The retry removes only the old slot, without adding the key again.
    w.stage(&fs_cap(), rotate).await.unwrap();
    assert_eq!(w.lines("luksAddKey").len(), 1);
    assert_eq!(w.slots(), vec![(1, KEY.to_vec())]);
    let kill = w.lines("luksKillSlot");
    assert_eq!(kill.len(), 2);
    assert!(kill.iter().all(|l| l.ends_with(" 0")), "{kill:?}");
    // Where each key went: the old one on stdin and the new one on the extra input for
    // luksAddKey; the new one on stdin for luksKillSlot.
    for c in w.runner.calls() {
        match c.arg_strings()[0].as_str() {
            "luksAddKey" => {
                assert_eq!(c.stdin.as_deref(), Some(OLD));
                assert_eq!(c.extra_input.as_deref(), Some(KEY));
            }
            "luksKillSlot" => assert_eq!(c.stdin.as_deref(), Some(KEY)),
            _ => assert_eq!(c.extra_input, None),
        }
    }
    // Later stages with the rotation's secret still in place: checks only, no change.
    w.reset();
    w.stage(&fs_cap(), rotate).await.unwrap();
    assert_eq!(w.lines("luksAddKey").len(), 1);
    assert_eq!(w.lines("luksKillSlot").len(), 2);
    // The old key alone no longer opens it; neither key opening it is refused.
    w.reset();
    let m = precondition(w.stage(&fs_cap(), keys(OLD)).await.unwrap_err());
    assert!(m.contains("does not open"), "{m}");
    let m = precondition(
        w.stage(
            &fs_cap(),
            Keys {
                key: b"k3y-x",
                previous: Some(b"k3y-y"),
            },
        )
        .await
        .unwrap_err(),
    );
    assert!(m.contains("previousPassphrase"), "{m}");
    assert_eq!(w.slots(), vec![(1, KEY.to_vec())], "nothing changed");
    w.no_key_in_argv();
}

#[tokio::test]
async fn a_wrong_key_for_resize_is_refused_before_anything() {
    let w = World::new();
    w.stage(&fs_cap(), keys(KEY)).await.unwrap();
    let e = w
        .crypt
        .check_key(ID, Path::new(DEV), b"k3y-wrong")
        .await
        .unwrap_err();
    let m = precondition(e);
    assert!(m.contains("nothing changed") && !m.contains("k3y"), "{m}");
    w.crypt.check_key(ID, Path::new(DEV), KEY).await.unwrap();
    w.no_key_in_argv();
}
