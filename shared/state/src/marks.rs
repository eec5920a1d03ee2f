//! Small per-volume marks, each kind in its own subdirectory of the state directory: one
//! JSON file per volume id, written like records (temp file, fsync, rename, fsync of the
//! directory), so a mark is there after a crash the moment the work it guards could have
//! begun. The reviver and [`StateStore::list`] never see them as stage records.
//!
//! The kinds ([`crate::FormatMark`], [`crate::CreateIntent`]) differ only in what they
//! hold; how they are stored, read back and told apart from damage is this one module.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{BadRecord, RECORD_SUFFIX, StateError, StateStore, decode_file_name, io};

/// Marks are tiny; a bigger file is not one of ours.
const MAX_MARK_BYTES: u64 = 64 << 10;

/// One kind of mark.
pub(crate) trait Mark: Serialize + DeserializeOwned {
    /// Subdirectory of the state directory holding this kind.
    const DIR: &'static str;
    /// The format this code writes and the newest it reads.
    const VERSION: u32;
    /// For messages: "format mark", "create intent".
    const WHAT: &'static str;
    fn volume_id(&self) -> &str;
    fn version(&self) -> u32;
    fn set_version(&mut self, version: u32);
}

impl StateStore {
    fn mark_dir<M: Mark>(&self) -> PathBuf {
        self.dir.join(M::DIR)
    }

    fn mark_path<M: Mark>(&self, volume_id: &str) -> Result<PathBuf, StateError> {
        let name = crate::encode_file_name(volume_id)
            .ok_or_else(|| StateError::BadVolumeId(volume_id.to_string()))?;
        Ok(self.mark_dir::<M>().join(format!("{name}{RECORD_SUFFIX}")))
    }

    /// Writes the mark durably: once this returns, a crash cannot lose it.
    pub(crate) fn put_mark<M: Mark + Clone>(&self, mark: &M) -> Result<(), StateError> {
        let path = self.mark_path::<M>(mark.volume_id())?;
        let dir = self.mark_dir::<M>();
        if !dir.is_dir() {
            crate::create_private_dir(&dir)?;
            // The new directory's own entry must be durable too.
            crate::sync_dir(&self.dir)?;
        }
        let mut mark = mark.clone();
        mark.set_version(M::VERSION);
        let json = serde_json::to_vec(&mark).map_err(|e| StateError::Encode(e.to_string()))?;
        crate::write_durably(&dir, &path, &json)
    }

    /// The mark of `volume_id`, if any; a damaged one is `Err(Bad)`.
    pub(crate) fn get_mark<M: Mark>(&self, volume_id: &str) -> Result<Option<M>, StateError> {
        let path = self.mark_path::<M>(volume_id)?;
        match read_mark::<M>(&path)? {
            Some(m) if m.volume_id() != volume_id => Err(StateError::Bad {
                reason: format!(
                    "holds the {} of {:?}, not {volume_id:?}",
                    M::WHAT,
                    m.volume_id()
                ),
                path,
            }),
            other => Ok(other),
        }
    }

    /// Removes the mark, durably; none is fine (and costs no fsync).
    pub(crate) fn remove_mark<M: Mark>(&self, volume_id: &str) -> Result<(), StateError> {
        let path = self.mark_path::<M>(volume_id)?;
        match std::fs::remove_file(&path) {
            Ok(()) => crate::sync_dir(&self.mark_dir::<M>()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StateError::Io {
                op: "removing",
                path,
                source: e,
            }),
        }
    }

    /// Every mark of the kind, sorted by volume id, and the files that could not be read.
    pub(crate) fn marks<M: Mark>(&self) -> Result<(Vec<M>, Vec<BadRecord>), StateError> {
        let dir = self.mark_dir::<M>();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
            Err(e) => return Err(io("listing", &dir)(e)),
        };
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        for entry in entries {
            let entry = entry.map_err(io("listing", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(RECORD_SUFFIX) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let reason = match (decode_file_name(stem), read_mark::<M>(&path)) {
                (_, Ok(None)) => continue,
                (_, Err(e)) => e.to_string(),
                (Some(id), Ok(Some(m))) if m.volume_id() == id => {
                    good.push(m);
                    continue;
                }
                (_, Ok(Some(m))) => format!("holds the {} of {:?}", M::WHAT, m.volume_id()),
            };
            bad.push(BadRecord { path, reason });
        }
        good.sort_by(|a, b| a.volume_id().cmp(b.volume_id()));
        Ok((good, bad))
    }
}

fn read_mark<M: Mark>(path: &Path) -> Result<Option<M>, StateError> {
    let bad = |reason: String| StateError::Bad {
        path: path.to_path_buf(),
        reason,
    };
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("reading", path)(e)),
    };
    if !md.is_file() || md.len() > MAX_MARK_BYTES {
        return Err(bad("not a small regular file".into()));
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("reading", path)(e)),
    };
    let m: M =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a {} ({e})", M::WHAT)))?;
    if m.version() == 0 || m.version() > M::VERSION {
        return Err(bad(format!(
            "{} version {} is not supported",
            M::WHAT,
            m.version()
        )));
    }
    Ok(Some(m))
}
