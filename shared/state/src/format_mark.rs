//! Marks of first formats in progress on this node.
//!
//! NodeStageVolume writes one before it runs mkfs on a volume's empty device and removes it
//! once mkfs and the first mount succeeded. A mark that survives says: the driver itself
//! began formatting this (then empty) LV and nothing has used it since, so whatever a killed
//! mkfs left there may be formatted again. Marks live in their own directory: the reviver
//! and [`StateStore::list`] never see them as stage records; how they are stored is
//! [`crate::marks`]'s.

use serde::{Deserialize, Serialize};

use crate::marks::Mark;
use crate::{BadRecord, StateError, StateStore};

/// The mark format this code writes and reads.
pub const FORMAT_MARK_VERSION: u32 = 1;
/// Subdirectory of the state directory holding the marks.
pub const FORMAT_MARK_DIR: &str = "formatting";

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

impl Mark for FormatMark {
    const DIR: &'static str = FORMAT_MARK_DIR;
    const VERSION: u32 = FORMAT_MARK_VERSION;
    const WHAT: &'static str = "format mark";
    fn volume_id(&self) -> &str {
        &self.volume_id
    }
    fn version(&self) -> u32 {
        self.version
    }
    fn set_version(&mut self, version: u32) {
        self.version = version;
    }
}

impl StateStore {
    /// Writes the mark durably: once this returns, a crash cannot lose it.
    pub fn put_format_mark(&self, mark: &FormatMark) -> Result<(), StateError> {
        self.put_mark(mark)
    }

    /// The mark of `volume_id`, if any; a damaged one is `Err(Bad)`.
    pub fn format_mark(&self, volume_id: &str) -> Result<Option<FormatMark>, StateError> {
        self.get_mark(volume_id)
    }

    /// Removes the mark; none is fine.
    pub fn remove_format_mark(&self, volume_id: &str) -> Result<(), StateError> {
        self.remove_mark::<FormatMark>(volume_id)
    }

    /// Every mark, sorted by volume id, and the mark files that could not be read.
    pub fn format_marks(&self) -> Result<(Vec<FormatMark>, Vec<BadRecord>), StateError> {
        self.marks()
    }
}
