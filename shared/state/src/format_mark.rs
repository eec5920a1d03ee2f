//! Marks of first formats in progress on this node.
//!
//! NodeStageVolume writes one before it runs mkfs on a volume's empty device and removes it
//! once mkfs and the first mount succeeded. A mark that survives says: the driver itself
//! began formatting this (then empty) LV and nothing has used it since, so whatever a killed
//! mkfs left there may be formatted again. Marks live in their own directory: the reviver
//! and [`StateStore::list`] never see them as stage records. Written like records (temp
//! file, fsync, rename, fsync of the directory), so a mark is there after a crash the
//! moment mkfs could have started.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{BadRecord, RECORD_SUFFIX, StateError, StateStore, decode_file_name, io};

/// The mark format this code writes and reads.
pub const FORMAT_MARK_VERSION: u32 = 1;
/// Subdirectory of the state directory holding the marks.
pub const FORMAT_MARK_DIR: &str = "formatting";
const MAX_MARK_BYTES: u64 = 64 << 10;

/// One first format in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormatMark {
    pub version: u32,
    /// CSI volume id, `<vg>/<lv>`.
    pub volume_id: String,
    /// The LV being formatted: a mark never applies to an LV re-created under the name.
    pub lv_uuid: String,
    /// The filesystem mkfs was asked for.
    pub fs_type: String,
    /// When the first mkfs started (seconds since the Unix epoch).
    pub started_unix: u64,
}

impl StateStore {
    fn mark_dir(&self) -> PathBuf {
        self.dir.join(FORMAT_MARK_DIR)
    }

    fn mark_path(&self, volume_id: &str) -> Result<PathBuf, StateError> {
        let name = crate::encode_file_name(volume_id)
            .ok_or_else(|| StateError::BadVolumeId(volume_id.to_string()))?;
        Ok(self.mark_dir().join(format!("{name}{RECORD_SUFFIX}")))
    }

    /// Writes the mark durably: once this returns, a crash cannot lose it.
    pub fn put_format_mark(&self, mark: &FormatMark) -> Result<(), StateError> {
        let path = self.mark_path(&mark.volume_id)?;
        let dir = self.mark_dir();
        if !dir.is_dir() {
            crate::create_private_dir(&dir)?;
            // The new directory's own entry must be durable too.
            crate::sync_dir(&self.dir)?;
        }
        let mut mark = mark.clone();
        mark.version = FORMAT_MARK_VERSION;
        let json = serde_json::to_vec(&mark).map_err(|e| StateError::Encode(e.to_string()))?;
        crate::write_durably(&dir, &path, &json)
    }

    /// The mark of `volume_id`, if any; a damaged one is `Err(Bad)`.
    pub fn format_mark(&self, volume_id: &str) -> Result<Option<FormatMark>, StateError> {
        let path = self.mark_path(volume_id)?;
        match read_mark(&path)? {
            Some(m) if m.volume_id != volume_id => Err(StateError::Bad {
                reason: format!("holds the mark of {:?}, not {volume_id:?}", m.volume_id),
                path,
            }),
            other => Ok(other),
        }
    }

    /// Removes the mark; none is fine.
    pub fn remove_format_mark(&self, volume_id: &str) -> Result<(), StateError> {
        let path = self.mark_path(volume_id)?;
        match std::fs::remove_file(&path) {
            Ok(()) => crate::sync_dir(&self.mark_dir()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StateError::Io {
                op: "removing",
                path,
                source: e,
            }),
        }
    }

    /// Every mark, sorted by volume id, and the mark files that could not be read.
    pub fn format_marks(&self) -> Result<(Vec<FormatMark>, Vec<BadRecord>), StateError> {
        let dir = self.mark_dir();
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
            let reason = match (decode_file_name(stem), read_mark(&path)) {
                (_, Ok(None)) => continue,
                (_, Err(e)) => e.to_string(),
                (Some(id), Ok(Some(m))) if m.volume_id == id => {
                    good.push(m);
                    continue;
                }
                (_, Ok(Some(m))) => format!("holds the mark of {:?}", m.volume_id),
            };
            bad.push(BadRecord { path, reason });
        }
        good.sort_by(|a, b| a.volume_id.cmp(&b.volume_id));
        Ok((good, bad))
    }
}

fn read_mark(path: &Path) -> Result<Option<FormatMark>, StateError> {
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
    let m: FormatMark =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a format mark ({e})")))?;
    if m.version == 0 || m.version > FORMAT_MARK_VERSION {
        return Err(bad(format!("mark version {} is not supported", m.version)));
    }
    Ok(Some(m))
}
