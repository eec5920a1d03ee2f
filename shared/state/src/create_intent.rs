//! Intents of CreateVolume calls in progress on this node.
//!
//! Where the controller and the VG live on one node (a node-local VG served by
//! `csi-driver --mode all`), CreateVolume writes one before its lvcreate and removes it
//! before it answers. An intent that survives says: this LV's create was begun and never
//! reported to a CO, so the LV (if lvcreate got as far as its metadata commit) may be
//! unzeroed or half-copied and is removed by the next start-up or the CO's retry. It stands
//! in for the `vglet.creating` LV tag, whose removal costs an lvm commit of its own; the
//! tag stays where the controller may move between nodes (shared VGs), since this file
//! would not move with it.

use serde::{Deserialize, Serialize};

use crate::marks::Mark;
use crate::{BadRecord, StateError, StateStore};

/// The intent format this code writes and reads.
pub const CREATE_INTENT_VERSION: u32 = 1;
/// Subdirectory of the state directory holding the intents.
pub const CREATE_INTENT_DIR: &str = "creating";

/// One CreateVolume in progress. Unknown fields are damage (a format mark dropped here
/// by hand would otherwise read as an intent); a newer format bumps the version instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateIntent {
    pub version: u32,
    /// CSI volume id, `<vg>/<lv>`.
    pub volume_id: String,
    /// The attempt's id, which its LV carries in a `vglet.create-id=` tag: only an LV with
    /// it is this attempt's.
    pub create_id: String,
    /// When the create began (seconds since the Unix epoch), for logs.
    pub started_unix: u64,
}

impl Mark for CreateIntent {
    const DIR: &'static str = CREATE_INTENT_DIR;
    const VERSION: u32 = CREATE_INTENT_VERSION;
    const WHAT: &'static str = "create intent";
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
    /// Writes the intent durably: once this returns, a crash cannot lose it.
    pub fn put_create_intent(&self, intent: &CreateIntent) -> Result<(), StateError> {
        self.put_mark(intent)
    }

    /// The intent of `volume_id`, if any; a damaged one is `Err(Bad)`.
    pub fn create_intent(&self, volume_id: &str) -> Result<Option<CreateIntent>, StateError> {
        self.get_mark(volume_id)
    }

    /// Removes the intent, durably; none is fine.
    pub fn remove_create_intent(&self, volume_id: &str) -> Result<(), StateError> {
        self.remove_mark::<CreateIntent>(volume_id)
    }

    /// Every intent, sorted by volume id, and the files that could not be read.
    pub fn create_intents(&self) -> Result<(Vec<CreateIntent>, Vec<BadRecord>), StateError> {
        self.marks()
    }
}
