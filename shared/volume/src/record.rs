//! The node's state records as a stage and a publish write them: what the reviver reads
//! to put a volume back after a reboot.

use std::path::{Path, PathBuf};

use vglet_state::{Record, StateStore, Target};

use crate::activation::activation_for;
use crate::capability::Capability;
use crate::error::VolumeError;
use crate::node::StageTarget;

/// The record of a volume staged at `staging`.
pub fn stage_record(t: &StageTarget, driver: &str, cap: &Capability, staging: &Path) -> Record {
    Record {
        version: vglet_state::RECORD_VERSION,
        volume_id: t.volume_id(),
        vg: t.vg.clone(),
        lv: t.lv.clone(),
        lv_uuid: t.lv_uuid.clone(),
        driver: driver.to_string(),
        access: cap.record_access(),
        read_only: cap.is_read_only_mode(),
        activation: activation_for(t.kind, cap),
        staging_path: staging.to_path_buf(),
        targets: Vec::new(),
        crypt_mapping: None,
    }
}

/// The volume's record; an unreadable one counts as none (the reviver reports it).
pub fn record_of(store: Option<&StateStore>, volume_id: &str) -> Option<Record> {
    store?
        .get(volume_id)
        .inspect_err(|e| tracing::warn!(error = %e, "state record unreadable"))
        .ok()
        .flatten()
}

/// Records a staged volume, keeping the targets of an earlier record (a repeated stage
/// of a published volume). A damaged earlier record is replaced.
pub fn save_stage(store: Option<&StateStore>, mut record: Record) -> Result<(), VolumeError> {
    let Some(store) = store else {
        return Ok(());
    };
    match store.get(&record.volume_id) {
        Ok(Some(old)) => record.targets = old.targets,
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "replacing an unreadable state record"),
    }
    store
        .put(&record)
        .map_err(VolumeError::state("recording the staged volume"))
}

/// Adds a publish target to the volume's record (writing a whole record if there is
/// none, e.g. a volume staged before records existed).
pub fn save_target(
    store: Option<&StateStore>,
    base: Record,
    target: Target,
) -> Result<(), VolumeError> {
    let Some(store) = store else {
        return Ok(());
    };
    let mut record = match store.get(&base.volume_id) {
        Ok(Some(old)) => old,
        Ok(None) => base,
        Err(e) => {
            tracing::warn!(error = %e, "replacing an unreadable state record");
            base
        }
    };
    if record.set_target(target) {
        store
            .put(&record)
            .map_err(VolumeError::state("recording the published volume"))?;
    }
    Ok(())
}

/// Removes the volume's record (once nothing of it is mounted any more).
pub fn remove_record(store: Option<&StateStore>, volume_id: &str) -> Result<(), VolumeError> {
    match store {
        Some(store) => store
            .remove(volume_id)
            .map_err(VolumeError::state("removing the state record")),
        None => Ok(()),
    }
}

/// The other path at which this very LV is staged per its record, if any: one staging
/// path per volume, a second one would mount it twice.
pub fn staged_elsewhere(record: &Record, lv_uuid: &str, staging: &Path) -> Option<PathBuf> {
    let same_lv = record.lv_uuid.is_empty() || record.lv_uuid == lv_uuid;
    let at = vglet_mount::normalize_path(&record.staging_path);
    (same_lv && at != staging).then_some(at)
}

/// Whether the record names `target` (normalised) as a publish target.
pub fn names_target(record: &Record, target: &Path) -> bool {
    record
        .targets
        .iter()
        .any(|t| vglet_mount::normalize_path(&t.path) == target)
}
