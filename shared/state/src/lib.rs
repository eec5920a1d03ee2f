//! The node's durable memory of what it staged and published.
//!
//! LVM tags say which volumes exist; they cannot say where a volume was mounted on a node.
//! After a reboot (or a crash that took the mounts with it) that is exactly what must be
//! rebuilt, so the node service writes one small JSON record per staged volume here and the
//! reviver reads them back. Every write is atomic and durable (temp file, fsync, rename,
//! fsync of the directory): a record is either the old one or the new one, never half.
//! A record that is damaged anyway (disk trouble, a hand edit) is reported by [`StateStore::list`]
//! and skipped; it never stops the others from being read.

mod create_intent;
mod format_mark;
mod lock;
mod marks;
mod name;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use create_intent::{CREATE_INTENT_DIR, CREATE_INTENT_VERSION, CreateIntent};
pub use format_mark::{FORMAT_MARK_DIR, FORMAT_MARK_VERSION, FormatMark};
pub use lock::VolumeLock;
pub use name::{decode_file_name, encode_file_name};

/// The record format this code writes and the newest it reads.
pub const RECORD_VERSION: u32 = 1;
/// Suffix of record files; anything else in the directory is ignored.
pub const RECORD_SUFFIX: &str = ".json";
/// Records are tiny; a bigger file is not one of ours.
const MAX_RECORD_BYTES: u64 = 1 << 20;
const LOCK_DIR: &str = ".locks";

/// How the volume reaches its pods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Access {
    /// A filesystem mounted at the staging path, bind-mounted into each target.
    Mount {
        fs_type: String,
        /// The CSI mount flags as the CO gave them (read-only is [`Record::read_only`]).
        #[serde(default)]
        mount_flags: Vec<String>,
    },
    /// The raw device node, bind-mounted onto each target file.
    Block,
}

/// How the LV was activated on this node (lvchange -ay / -aey / -asy): lvm's own enum,
/// so that what is recorded is what is passed to lvm again, with no second copy.
pub use vglet_lvm::Activation;

/// One publish target of a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub path: PathBuf,
    pub read_only: bool,
}

/// Everything needed to put one staged volume back where it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub version: u32,
    /// CSI volume id, `<vg>/<lv>`.
    pub volume_id: String,
    pub vg: String,
    pub lv: String,
    /// The LV's uuid when staged: an LV re-created under the same name is another volume.
    #[serde(default)]
    pub lv_uuid: String,
    /// The driver name in the LV's ownership tag.
    pub driver: String,
    pub access: Access,
    /// The staging mount is read-only (a reader-only access mode).
    #[serde(default)]
    pub read_only: bool,
    pub activation: Activation,
    pub staging_path: PathBuf,
    #[serde(default)]
    pub targets: Vec<Target>,
    /// An encrypted volume: the name of its dm-crypt mapping (`/dev/mapper/<name>`), which
    /// the staging mount and the publishes are of. Never the key: the key is not stored
    /// on the node at all, so the reviver leaves such a volume to kubelet's NodeStage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crypt_mapping: Option<String>,
}

impl Record {
    pub fn fs_type(&self) -> Option<&str> {
        match &self.access {
            Access::Mount { fs_type, .. } => Some(fs_type),
            Access::Block => None,
        }
    }

    pub fn is_block(&self) -> bool {
        matches!(self.access, Access::Block)
    }

    /// Adds or replaces the target at `target.path`; true when something changed.
    pub fn set_target(&mut self, target: Target) -> bool {
        match self.targets.iter_mut().find(|t| t.path == target.path) {
            Some(t) if *t == target => false,
            Some(t) => {
                *t = target;
                true
            }
            None => {
                self.targets.push(target);
                true
            }
        }
    }

    /// True when the target was there.
    pub fn remove_target(&mut self, path: &Path) -> bool {
        let before = self.targets.len();
        self.targets.retain(|t| t.path != path);
        self.targets.len() != before
    }
}

/// A file in the state directory that could not be used as a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadRecord {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{op} {path:?}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("record {path:?} is unusable: {reason}")]
    Bad { path: PathBuf, reason: String },
    #[error("volume id {0:?} cannot name a record file")]
    BadVolumeId(String),
    #[error("{0}")]
    Encode(String),
    #[error("volume {0} is locked by another process (the reviver or the node service)")]
    Locked(String),
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The records of one state directory.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    /// Opens (creating, mode 0700) the directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<StateStore, StateError> {
        let dir = dir.into();
        create_private_dir(&dir)?;
        Ok(StateStore { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds `volume_id`'s record.
    pub fn path_of(&self, volume_id: &str) -> Result<PathBuf, StateError> {
        let name = encode_file_name(volume_id)
            .ok_or_else(|| StateError::BadVolumeId(volume_id.to_string()))?;
        Ok(self.dir.join(format!("{name}{RECORD_SUFFIX}")))
    }

    /// Writes the record atomically and durably.
    pub fn put(&self, record: &Record) -> Result<(), StateError> {
        let path = self.path_of(&record.volume_id)?;
        let mut record = record.clone();
        record.version = RECORD_VERSION;
        let mut json =
            serde_json::to_vec_pretty(&record).map_err(|e| StateError::Encode(e.to_string()))?;
        json.push(b'\n');
        write_durably(&self.dir, &path, &json)
    }

    /// The record of `volume_id`: `Ok(None)` when there is none, `Err(Bad)` when the file
    /// exists but cannot be used.
    pub fn get(&self, volume_id: &str) -> Result<Option<Record>, StateError> {
        let path = self.path_of(volume_id)?;
        match read_record(&path) {
            Ok(r) if r.volume_id == volume_id => Ok(Some(r)),
            Ok(r) => Err(StateError::Bad {
                reason: format!("holds volume {:?}, not {volume_id:?}", r.volume_id),
                path,
            }),
            Err(ReadError::Missing) => Ok(None),
            Err(ReadError::Io(e)) => Err(StateError::Io {
                op: "reading",
                path,
                source: e,
            }),
            Err(ReadError::Bad(reason)) => Err(StateError::Bad { path, reason }),
        }
    }

    /// Removes the record; a missing one is fine.
    pub fn remove(&self, volume_id: &str) -> Result<(), StateError> {
        let path = self.path_of(volume_id)?;
        match std::fs::remove_file(&path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StateError::Io {
                op: "removing",
                path,
                source: e,
            }),
        }
    }

    /// Removes a file [`StateStore::list`] reported as bad. Only record files of this
    /// directory are accepted, so a caller can never remove anything else through it.
    pub fn remove_bad(&self, bad: &BadRecord) -> Result<(), StateError> {
        let ours = bad.path.parent() == Some(self.dir.as_path())
            && bad
                .path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(RECORD_SUFFIX));
        if !ours {
            return Err(StateError::BadVolumeId(bad.path.display().to_string()));
        }
        std::fs::remove_file(&bad.path).map_err(io("removing", &bad.path))?;
        self.sync_dir()
    }

    /// Adds (or updates) a publish target in an existing record; `Ok(false)` when there is
    /// no record.
    pub fn add_target(&self, volume_id: &str, target: Target) -> Result<bool, StateError> {
        let Some(mut r) = self.get(volume_id)? else {
            return Ok(false);
        };
        if r.set_target(target) {
            self.put(&r)?;
        }
        Ok(true)
    }

    /// Drops a publish target from the record, if both exist.
    pub fn remove_target(&self, volume_id: &str, path: &Path) -> Result<(), StateError> {
        if let Some(mut r) = self.get(volume_id)?
            && r.remove_target(path)
        {
            self.put(&r)?;
        }
        Ok(())
    }

    /// Every record, sorted by volume id, and every record file that could not be used.
    /// Only a failure to read the directory itself is an error.
    pub fn list(&self) -> Result<(Vec<Record>, Vec<BadRecord>), StateError> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(io("listing", &self.dir))?;
        for entry in entries {
            let entry = entry.map_err(io("listing", &self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Temp files and the lock directory start with a dot.
            if name.starts_with('.') || !name.ends_with(RECORD_SUFFIX) {
                continue;
            }
            let path = entry.path();
            let stem = &name[..name.len() - RECORD_SUFFIX.len()];
            let reason = match (decode_file_name(stem), read_record(&path)) {
                (_, Err(ReadError::Missing)) => continue, // removed while listing
                (_, Err(ReadError::Io(e))) => format!("cannot read: {e}"),
                (_, Err(ReadError::Bad(reason))) => reason,
                (None, Ok(_)) => "file name is not an encoded volume id".into(),
                (Some(id), Ok(r)) if r.volume_id != id => {
                    format!("holds volume {:?} under the name of {id:?}", r.volume_id)
                }
                (Some(_), Ok(r)) => {
                    good.push(r);
                    continue;
                }
            };
            bad.push(BadRecord { path, reason });
        }
        good.sort_by(|a, b| a.volume_id.cmp(&b.volume_id));
        bad.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((good, bad))
    }

    /// Takes `volume_id`'s cross-process lock without waiting: [`StateError::Locked`] when
    /// another process holds it. The node service and the reviver both hold it while they
    /// change a volume's mounts and record, so neither acts on a record the other is
    /// rewriting.
    pub fn try_lock(&self, volume_id: &str) -> Result<VolumeLock, StateError> {
        let name = encode_file_name(volume_id)
            .ok_or_else(|| StateError::BadVolumeId(volume_id.to_string()))?;
        let record = self.path_of(volume_id)?;
        let tmp = tmp_path_of(&record);
        VolumeLock::try_acquire(&self.dir.join(LOCK_DIR), &name, volume_id, record, tmp)
    }

    /// Like [`StateStore::try_lock`], retrying every 100 ms for up to `wait`.
    pub fn lock(
        &self,
        volume_id: &str,
        wait: std::time::Duration,
    ) -> Result<VolumeLock, StateError> {
        let start = std::time::Instant::now();
        loop {
            match self.try_lock(volume_id) {
                Err(StateError::Locked(_)) if start.elapsed() < wait => {
                    std::thread::sleep(std::time::Duration::from_millis(100))
                }
                other => return other,
            }
        }
    }

    fn sync_dir(&self) -> Result<(), StateError> {
        sync_dir(&self.dir)
    }
}

/// The temp file a state file is written to before it is renamed into place.
fn tmp_path_of(file: &Path) -> PathBuf {
    let file_name = file.file_name().expect("state file path has a file name");
    file.with_file_name(format!(".{}.tmp", file_name.to_string_lossy()))
}

/// Creates `dir` (and its parents) with mode 0700.
fn create_private_dir(dir: &Path) -> Result<(), StateError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io("creating", dir))
}

fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync of", dir))
}

/// Replaces `path` (in `dir`) by `bytes` atomically and durably: temp file, fsync, rename,
/// fsync of the directory.
fn write_durably(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    // One temp name per file: writers of one volume are serialised by its lock, and a
    // crashed write leaves at most one stray file per volume, overwritten next time.
    let tmp = tmp_path_of(path);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("creating", &tmp))?;
        f.write_all(bytes).map_err(io("writing", &tmp))?;
        f.sync_all().map_err(io("fsync of", &tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io("renaming into", path))?;
    sync_dir(dir)
}

enum ReadError {
    Missing,
    Io(std::io::Error),
    Bad(String),
}

fn read_record(path: &Path) -> Result<Record, ReadError> {
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ReadError::Missing),
        Err(e) => return Err(ReadError::Io(e)),
    };
    if !md.is_file() {
        return Err(ReadError::Bad("not a regular file".into()));
    }
    if md.len() > MAX_RECORD_BYTES {
        return Err(ReadError::Bad(format!("{} bytes is too large", md.len())));
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ReadError::Missing),
        Err(e) => return Err(ReadError::Io(e)),
    };
    parse_record(&bytes).map_err(ReadError::Bad)
}

/// Parses a record, checking its version first so that a newer format is named as such
/// rather than reported as garbage.
pub fn parse_record(bytes: &[u8]) -> Result<Record, String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON ({e})"))?;
    let version = value
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .ok_or("no \"version\" field")?;
    if version == 0 || version > RECORD_VERSION as u64 {
        return Err(format!(
            "record version {version} is not supported (this build reads up to {RECORD_VERSION})"
        ));
    }
    let r: Record = serde_json::from_value(value).map_err(|e| format!("bad record ({e})"))?;
    if r.volume_id.is_empty() || r.volume_id != format!("{}/{}", r.vg, r.lv) {
        return Err(format!(
            "volume id {:?} does not match vg {:?} and lv {:?}",
            r.volume_id, r.vg, r.lv
        ));
    }
    let safe =
        |p: &Path| p.is_absolute() && !p.components().any(|c| c == std::path::Component::ParentDir);
    if !safe(&r.staging_path) || r.targets.iter().any(|t| !safe(&t.path)) {
        return Err("a recorded path is not absolute or contains '..'".into());
    }
    Ok(r)
}

#[cfg(test)]
mod tests;
