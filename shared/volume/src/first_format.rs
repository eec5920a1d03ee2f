//! A crash during a volume's first format never bricks it: the mkfs decision of a stage
//! and the first-format marks.
//!
//! NodeStageVolume formats only a device that holds nothing. A kill -9 (or a power cut)
//! in the middle of mkfs.xfs leaves a primary superblock with `sb_inprogress` set: blkid
//! calls that "xfs", so the next stage would not format it, and the kernel refuses to
//! mount it ("Structure needs cleaning"), forever. So the first format is bracketed by a
//! durable **mark**: written before mkfs runs, removed only after mkfs and the first mount
//! succeeded. The mark says "the driver began formatting this LV when it was empty, and
//! nothing has used it since" (no stage completed, so no pod ever saw it): under a mark,
//! and only then, a device holding nothing or a half-made filesystem of the requested type
//! (by the filesystem's own evidence, [`vglet_mount::mkfs_progress`]) is formatted again.
//! Anything else — a complete filesystem (simply mounted), another signature, a superblock
//! in a state no mkfs leaves — is never formatted: FAILED_PRECONDITION with the finding.
//! Without a mark, behaviour is exactly as before.
//!
//! Where the mark lives:
//! - **Node-local VGs**: a fsync'd file in the node's state directory
//!   ([`vglet_state::FormatMark`]). A local VG cannot move to another node, so the node's
//!   own disk is durable enough, and setting plus clearing it (write, fsync, rename, fsync
//!   of the directory; unlink, fsync) measured 9 ms on a development VM's ext4 disk, where
//!   a tag would be two lvm metadata commits (~0.6 s each in the test guest) on every first
//!   stage — issue #19 wants fewer lvm commits per create/stage. A stage without a mark
//!   pays one failed open of the mark file. The mark names the LV's uuid: a mark left
//!   for a deleted LV never applies to one re-created under the same name.
//! - **Shared (lvmlockd) VGs**: an LV tag `vglet.formatting=<unix seconds>`, one lvm commit
//!   to set and one to clear, only on a shared volume's first stage: after a node failover
//!   the other node's NodeStage must see it, and only the VG's metadata travels.
//!
//! Raw block volumes have nothing to format and get no mark. DeleteVolume removes the
//! local mark (the tag goes with the LV); the start-up reconcile reports marks older than
//! [`STUCK_AFTER`] with their volume ids and drops local marks whose LV is gone.
//!
//! Encrypted volumes (issue #21) are in the same bracket: the mark is written before the
//! first luksFormat and stays through the mkfs on the mapping and the first mount (a raw
//! block volume's goes once the mapping is open). Under it, and only then, a LUKS header
//! without any key slot (what a luksFormat killed during its PBKDF leaves) is formatted
//! again; a header with a key slot never is ([`crate::crypt::plan`]).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vglet_lvm::Lvm;
use vglet_mount::{MkfsProgress, MountError, Signature};
use vglet_state::{FormatMark, StateStore};

use crate::capability::VgKind;
use crate::error::VolumeError;

/// The LV tag that marks a shared volume's first format in progress.
use vglet_lvm::tags::FORMATTING_TAG_PREFIX;
/// A mark older than this is reported as stuck: longer than mkfs may run (its timeout)
/// plus the CO's retry back-off.
pub const STUCK_AFTER: Duration = Duration::from_secs(15 * 60);

/// What NodeStageVolume does with the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// mkfs on a device that holds nothing.
    Format,
    /// mkfs over the half-made filesystem an interrupted first format left.
    FormatAgain,
    Mount,
}

impl Plan {
    pub fn formats(self) -> bool {
        matches!(self, Plan::Format | Plan::FormatAgain)
    }
}

/// The format decision. `found` is what blkid saw (`None`: nothing); `progress` reads the
/// filesystem's own superblock and is asked only under a mark, when blkid saw the
/// requested filesystem.
pub fn plan(
    id: &str,
    dev: &Path,
    fs_type: &str,
    adopted: bool,
    marked: bool,
    found: Option<&Signature>,
    progress: impl FnOnce() -> Result<MkfsProgress, MountError>,
) -> Result<Plan, VolumeError> {
    match found {
        // lvcreate zeroed the start of the LVs we created, so "no signature" means
        // empty. An adopted LV had no such guarantee: its data may simply be of a kind
        // blkid does not know, so it is never formatted.
        None if adopted => Err(VolumeError::Precondition(format!(
            "static volume {id} holds no recognisable filesystem and is never formatted by the driver; \
             create the filesystem yourself (mkfs.{fs_type} {}) if it is really empty",
            dev.display()
        ))),
        None => Ok(Plan::Format),
        Some(Signature::Content { type_name, .. }) if type_name == fs_type => {
            if !marked {
                return Ok(Plan::Mount);
            }
            match progress().map_err(VolumeError::mount("reading the superblock"))? {
                MkfsProgress::Complete => Ok(Plan::Mount),
                MkfsProgress::InProgress => {
                    tracing::warn!(volume = %id, fs = fs_type,
                        "the first format was interrupted and left a half-made filesystem; formatting again");
                    Ok(Plan::FormatAgain)
                }
                MkfsProgress::Other(why) => Err(VolumeError::Precondition(format!(
                    "volume {id}: its first format was interrupted, and blkid finds {fs_type} that is neither \
                     half-made nor complete ({why}); refusing to format over it"
                ))),
            }
        }
        Some(other) => Err(VolumeError::Precondition(format!(
            "volume {id} holds {other}, the capability asks for {fs_type}; refusing to format over data{}",
            if marked {
                " (its first format was interrupted, but this is not what mkfs leaves)"
            } else {
                ""
            }
        ))),
    }
}

/// The formatting tag among an LV's tags.
pub fn tag_on(tags: &[String]) -> Option<String> {
    tags.iter()
        .find(|t| t.starts_with(FORMATTING_TAG_PREFIX))
        .cloned()
}

/// Seconds since the epoch, the time a mark records.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One volume's first-format mark, where its VG keeps it.
#[derive(Debug, Clone)]
pub struct Mark {
    pub vg: String,
    pub lv: String,
    pub lv_uuid: String,
    pub kind: VgKind,
    /// The formatting tag on the LV (shared VGs): as read, then as written by [`Mark::set`].
    pub tag: Option<String>,
}

impl Mark {
    /// The volume id (`<vg>/<lv>`) the local mark is filed under.
    pub fn volume_id(&self) -> String {
        format!("{}/{}", self.vg, self.lv)
    }

    /// Whether a first format of this LV was begun and not finished.
    pub fn found(&self, store: Option<&StateStore>) -> Result<bool, VolumeError> {
        if self.tag.is_some() {
            return Ok(true);
        }
        let Some(store) = store else {
            return Ok(false);
        };
        match store.format_mark(&self.volume_id()) {
            Ok(Some(m)) if m.lv_uuid == self.lv_uuid => Ok(true),
            Ok(Some(m)) => {
                tracing::info!(volume = %self.volume_id(), stale_uuid = %m.lv_uuid,
                    "dropping the first-format mark of an earlier LV of this name");
                store
                    .remove_format_mark(&self.volume_id())
                    .map_err(VolumeError::state("removing a stale first-format mark"))?;
                Ok(false)
            }
            Ok(None) => Ok(false),
            // Unreadable: not proof of our own interrupted mkfs, so no licence to format.
            Err(e) => {
                tracing::warn!(volume = %self.volume_id(), error = %e, "first-format mark unreadable; taken as absent");
                Ok(false)
            }
        }
    }

    /// Records durably that the first format begins; mkfs must not run unless this succeeded.
    pub async fn set(
        &mut self,
        store: Option<&StateStore>,
        lvm: &Lvm,
        fs_type: &str,
    ) -> Result<(), VolumeError> {
        let started = now_unix();
        match (self.kind, store) {
            (VgKind::Shared, _) => {
                let tag = format!("{FORMATTING_TAG_PREFIX}{started}");
                lvm.add_lv_tags(&self.vg, &self.lv, std::slice::from_ref(&tag))
                    .await
                    .map_err(VolumeError::lvm(format!(
                        "marking the first format of {}",
                        self.volume_id()
                    )))?;
                self.tag = Some(tag);
            }
            (VgKind::Local, Some(store)) => store
                .put_format_mark(&FormatMark {
                    version: vglet_state::FORMAT_MARK_VERSION,
                    volume_id: self.volume_id(),
                    lv_uuid: self.lv_uuid.clone(),
                    fs_type: fs_type.to_string(),
                    started_unix: started,
                })
                .map_err(VolumeError::state("recording the first format"))?,
            // A node service always has its state directory; without one there is
            // nowhere durable to write, and behaviour stays as it was.
            (VgKind::Local, None) => {}
        }
        Ok(())
    }

    /// Removes the mark once mkfs and the first mount succeeded. A mark that cannot be
    /// removed is only logged: it never licenses formatting a complete filesystem, and the
    /// start-up reconcile reports it.
    pub async fn clear(&self, store: Option<&StateStore>, lvm: &Lvm) {
        if let Some(tag) = &self.tag
            && let Err(e) = lvm
                .del_lv_tags(&self.vg, &self.lv, std::slice::from_ref(tag))
                .await
        {
            tracing::warn!(volume = %self.volume_id(), error = %e, "cannot remove the first-format tag");
        }
        if self.kind == VgKind::Local
            && let Some(store) = store
            && let Err(e) = store.remove_format_mark(&self.volume_id())
        {
            tracing::warn!(volume = %self.volume_id(), error = %e, "cannot remove the first-format mark");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "vg0/csi-a";

    fn precondition(e: VolumeError) -> String {
        match e {
            VolumeError::Precondition(m) => m,
            e => panic!("not a precondition: {e:?}"),
        }
    }

    fn xfs() -> Signature {
        Signature::Content {
            type_name: "xfs".into(),
            usage: Some("filesystem".into()),
        }
    }

    fn never() -> Result<MkfsProgress, MountError> {
        panic!("the superblock must not be read here")
    }

    #[test]
    fn without_a_mark_the_decision_is_as_before() {
        let xfs = xfs();
        let p = |found| {
            plan(
                ID,
                Path::new("/dev/vg0/csi-a"),
                "xfs",
                false,
                false,
                found,
                never,
            )
        };
        assert_eq!(p(None).unwrap(), Plan::Format);
        assert_eq!(p(Some(&xfs)).unwrap(), Plan::Mount);
        let ext4 = Signature::Content {
            type_name: "ext4".into(),
            usage: None,
        };
        let e = precondition(p(Some(&ext4)).unwrap_err());
        assert!(e.contains("holds ext4"), "{e}");
        let e = plan(
            ID,
            Path::new("/dev/vg0/csi-a"),
            "xfs",
            true,
            false,
            None,
            never,
        )
        .unwrap_err();
        precondition(e);
    }

    #[test]
    fn under_a_mark_only_a_half_made_filesystem_is_formatted_again() {
        let sb = xfs();
        let p = |found, progress: MkfsProgress| {
            plan(
                ID,
                Path::new("/dev/vg0/csi-a"),
                "xfs",
                false,
                true,
                found,
                move || Ok(progress),
            )
        };
        assert_eq!(p(None, MkfsProgress::Complete).unwrap(), Plan::Format);
        assert_eq!(
            p(Some(&sb), MkfsProgress::InProgress).unwrap(),
            Plan::FormatAgain
        );
        assert_eq!(p(Some(&sb), MkfsProgress::Complete).unwrap(), Plan::Mount);
        let e = precondition(p(Some(&sb), MkfsProgress::Other("state 0x3".into())).unwrap_err());
        assert!(e.contains("state 0x3"), "{e}");
        for other in [
            Signature::PartitionTable("gpt".into()),
            Signature::Ambivalent("xfs and swap".into()),
            Signature::Content {
                type_name: "swap".into(),
                usage: Some("other".into()),
            },
        ] {
            let e = plan(
                ID,
                Path::new("/dev/vg0/csi-a"),
                "xfs",
                false,
                true,
                Some(&other),
                never,
            )
            .unwrap_err();
            let e = precondition(e);
            assert!(e.contains(&other.to_string()), "{e}");
        }
        // A superblock that cannot be read is no licence to format.
        let e = plan(
            ID,
            Path::new("/dev/vg0/csi-a"),
            "xfs",
            false,
            true,
            Some(&xfs()),
            || Err(MountError::InvalidFsType("x".into())),
        )
        .unwrap_err();
        assert!(matches!(e, VolumeError::Mount { .. }), "{e:?}");
    }

    fn lvm_failing() -> Lvm {
        let runner = vglet_runner::FakeRunner::with(|_| vglet_runner::Reply::fail(5, "no"));
        Lvm::with_binary(std::sync::Arc::new(runner), "/sbin/lvm".into())
    }

    #[tokio::test]
    async fn a_local_mark_is_a_file_for_this_lv_only() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::open(d.path()).unwrap();
        let lvm = lvm_failing();
        let mut mark = Mark {
            vg: "vg0".into(),
            lv: "csi-a".into(),
            lv_uuid: "U1".into(),
            kind: VgKind::Local,
            tag: None,
        };
        assert!(!mark.found(Some(&store)).unwrap());
        mark.set(Some(&store), &lvm, "xfs").await.unwrap();
        assert!(mark.found(Some(&store)).unwrap());
        assert_eq!(mark.tag, None, "no lvm command for a local mark");
        // Another LV under the same name: the mark is not its, and goes.
        let other = Mark {
            lv_uuid: "U2".into(),
            ..mark.clone()
        };
        assert!(!other.found(Some(&store)).unwrap());
        assert_eq!(store.format_mark("vg0/csi-a").unwrap(), None);
        mark.set(Some(&store), &lvm, "xfs").await.unwrap();
        mark.clear(Some(&store), &lvm).await;
        assert!(!mark.found(Some(&store)).unwrap());
    }

    #[tokio::test]
    async fn a_shared_mark_is_an_lv_tag() {
        let runner = vglet_runner::FakeRunner::with(|_| vglet_runner::Reply::ok(""));
        let lvm = Lvm::with_binary(std::sync::Arc::new(runner.clone()), "/sbin/lvm".into());
        let mut mark = Mark {
            vg: "vg0".into(),
            lv: "csi-a".into(),
            lv_uuid: "U1".into(),
            kind: VgKind::Shared,
            tag: None,
        };
        mark.set(None, &lvm, "ext4").await.unwrap();
        let tag = mark.tag.clone().unwrap();
        assert!(tag.starts_with(FORMATTING_TAG_PREFIX), "{tag}");
        assert!(mark.found(None).unwrap());
        mark.clear(None, &lvm).await;
        let lines = runner.call_lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].contains("--addtag") && lines[0].contains(&tag),
            "{lines:?}"
        );
        assert!(
            lines[1].contains("--deltag") && lines[1].contains(&tag),
            "{lines:?}"
        );
        assert_eq!(tag_on(&["a".into(), tag.clone()]), Some(tag));
        // A tag that cannot be written stops the format before mkfs.
        let mut mark = Mark { tag: None, ..mark };
        assert!(mark.set(None, &lvm_failing(), "ext4").await.is_err());
    }
}
