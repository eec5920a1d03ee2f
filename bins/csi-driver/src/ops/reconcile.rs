//! Start-up reconciliation of work a previous process left half-done.
//!
//! CreateVolume is the only controller operation with more than one step (lvcreate; on
//! shared VGs the release of the activation it needs for zeroing; a copy into the new LV;
//! dropping the marker that says it is unfinished: the [`CREATING_TAG`] on shared VGs, a
//! create intent in the state directory on node-local ones, see
//! [`crate::node_state::create_intents`]). An LV still marked was never reported to a CO,
//! may be unzeroed (lvcreate killed between its metadata commit and the wipe) and may hold
//! an exclusive activation on this host: it is removed, with a log line per LV, and the
//! CO's retry creates it afresh. Everything else the controller does is one atomic
//! lvm command, and the node side repairs itself on the CO's next call (every node RPC
//! looks at the real state first) or through the reviver.
//!
//! On the node side, first formats a crash interrupted ([`crate::node_state::first_format`]) repair
//! themselves on the CO's next NodeStageVolume; the start-up pass only reports the marks
//! older than [`crate::node_state::first_format::STUCK_AFTER`] and drops those of LVs that are gone.
//!
//! A cache LV of ours that is a visible LV (not attached in front of its volume, where lvm
//! hides it) was left by a ControllerModifyVolume or CreateVolume interrupted between the
//! lvcreate of the cache LV and its attach, or by a volume deleted in between: it holds
//! nothing (the attach erases it), so it is removed; the CO's retry makes a new one.
//!
//! LVs that carry our ownership tag but that no PersistentVolume refers to are never
//! removed here: only the CO knows that, so `csictl controller orphans` reports them.

use tonic::Status;
use vglet_lvm::{Lv, LvmError};

use crate::driver::Driver;
use crate::node_state::create_intents::CreateIntents;
use crate::rules::volume_id::VolumeId;
use crate::status::lvm_status;

/// Carried by an LV from its lvcreate until CreateVolume finished every step.
use vglet_lvm::tags::CREATING_TAG;

/// The tag that marks LV `id` unfinished, if one does: the create id of an open intent in
/// `creating` (only an LV carrying it is that attempt's), or [`CREATING_TAG`].
pub fn unfinished_mark(creating: Option<&CreateIntents>, id: &VolumeId, lv: &Lv) -> Option<String> {
    if let Some(tag) = creating.and_then(|c| c.unfinished_tag(id))
        && lv.tags.contains(&tag)
    {
        return Some(tag);
    }
    lv.tags
        .iter()
        .any(|t| t == CREATING_TAG)
        .then(|| CREATING_TAG.to_string())
}

pub fn is_unfinished(creating: Option<&CreateIntents>, id: &VolumeId, lv: &Lv) -> bool {
    unfinished_mark(creating, id, lv).is_some()
}

/// Removes an unfinished LV, conditional on `mark` (from [`unfinished_mark`]), checked by
/// lvm under the VG lock: a create that completes at the same moment on another host keeps
/// its LV, and an LV of the name that another attempt made is never taken for this one's.
/// A create intent goes once its LV is gone.
pub async fn remove_unfinished(driver: &Driver, id: &VolumeId, mark: &str) -> Result<(), Status> {
    tracing::warn!(volume = %id, "removing an LV left unfinished by an interrupted CreateVolume");
    let _w = driver.vg_locks.lock(&id.vg).await;
    match driver.lvm.remove_lv_if_tagged(&id.vg, &id.lv, mark).await {
        Ok(()) | Err(LvmError::LvNotFound(_)) => {}
        Err(e) => return Err(lvm_status(&format!("removing the unfinished LV {id}"), e)),
    }
    if driver.creating.unfinished_tag(id).as_deref() == Some(mark) {
        driver
            .creating
            .end(id)
            .map_err(crate::status::volume_status)?;
    }
    Ok(())
}

/// What the start-up pass did, for logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub removed: Vec<String>,
    pub failed: Vec<(String, String)>,
}

/// Removes every unfinished LV of ours in the served VGs, from the report read at start-up
/// (`None`: read each VG now). Failures are logged and left for the next CreateVolume of
/// that name (which removes it too) or the next start.
pub async fn at_start_from(driver: &Driver, known: Option<&vglet_lvm::Report>) -> Outcome {
    let mut out = Outcome::default();
    for vg in &driver.cfg.volume_groups {
        let from_report = known
            .filter(|r| r.vg(vg).is_some())
            .map(|r| r.lvs.iter().filter(|l| l.vg == *vg).cloned().collect());
        let lvs = match from_report {
            Some(lvs) => Ok(lvs),
            None => driver.lvm.lvs(vg).await,
        };
        let lvs = match lvs {
            Ok(lvs) => lvs,
            Err(e) => {
                tracing::warn!(vg = %vg, error = %e, "reconcile: cannot list the volume group's LVs");
                continue;
            }
        };
        for lv in lvs.iter().filter(|lv| !lv.is_hidden()) {
            let Some(of) = vglet_lvm::tags::cache_of(&lv.tags, &driver.cfg.driver_name) else {
                continue;
            };
            let id = VolumeId::new(vg.clone(), lv.name.clone());
            tracing::warn!(cache_lv = %id, volume = %of, "removing a cache LV left unattached by an interrupted modify");
            let tag = vglet_lvm::tags::cache_lv_tags(&driver.cfg.driver_name, &of)
                .pop()
                .expect("the cache-of tag");
            let _w = driver.vg_locks.lock(vg).await;
            match driver.lvm.remove_lv_if_tagged(vg, &lv.name, &tag).await {
                Ok(()) | Err(LvmError::LvNotFound(_)) => out.removed.push(id.to_string()),
                Err(e) => {
                    tracing::error!(cache_lv = %id, error = %e, "reconcile: unattached cache LV not removed");
                    out.failed.push((id.to_string(), e.to_string()));
                }
            }
        }
        for lv in &lvs {
            let id = VolumeId::new(vg.clone(), lv.name.clone());
            let Some(mark) = unfinished_mark(Some(&driver.creating), &id, lv) else {
                continue;
            };
            if driver.ownership(&id, lv).is_err() {
                continue;
            }
            match remove_unfinished(driver, &id, &mark).await {
                Ok(()) => out.removed.push(id.to_string()),
                Err(s) => {
                    tracing::error!(volume = %id, error = %s.message(), "reconcile: unfinished LV not removed");
                    out.failed.push((id.to_string(), s.message().to_string()));
                }
            }
        }
    }
    drop_intents_of_absent_lvs(driver, known, &mut out).await;
    if !out.removed.is_empty() || !out.failed.is_empty() {
        tracing::info!(removed = %out.removed.join(","), failed = out.failed.len(), "reconciled interrupted CreateVolume calls");
    }
    out
}

/// Intents whose LV does not exist (the create stopped before lvcreate committed, and no
/// lvcreate of an earlier run is left to commit: start-up stopped them), or whose LV of the
/// name is not that attempt's (made before it: the lvcreate was refused): dropped. An
/// intent of a VG no longer served, or one that cannot be read now, is kept.
async fn drop_intents_of_absent_lvs(
    driver: &Driver,
    known: Option<&vglet_lvm::Report>,
    out: &mut Outcome,
) {
    for key in driver.creating.open() {
        let Ok(id) = VolumeId::parse(&key) else {
            continue;
        };
        if !driver.serves_vg(&id.vg) {
            continue;
        }
        // Removed above (and the intent with it), or not ours, or its removal failed.
        let lv = match known.filter(|r| r.vg(&id.vg).is_some()) {
            Some(r) => Ok(r
                .lvs
                .iter()
                .find(|l| l.vg == id.vg && l.name == id.lv)
                .cloned()),
            None => driver.lvm.lv(&id.vg, &id.lv).await,
        };
        let unfinished = |lv: &Lv| driver.creating.marks(&id, lv);
        match lv {
            Ok(Some(lv)) if unfinished(&lv) => {}
            Ok(_) => match driver.creating.end(&id) {
                Ok(()) => {
                    tracing::info!(volume = %id, "dropped the intent of a create that made no LV")
                }
                Err(e) => {
                    tracing::warn!(volume = %id, error = %e, "cannot drop a create intent");
                    out.failed.push((id.to_string(), e.to_string()));
                }
            },
            Err(e) => {
                tracing::warn!(volume = %id, error = %e, "reconcile: cannot read the LV of a create intent; kept")
            }
        }
    }
}

/// Reports stuck first-format marks and drops those of LVs that no longer exist (node
/// mode; see [`crate::node_state::first_format::at_start`]).
pub fn first_formats_at_start(
    driver: &Driver,
    known: Option<&vglet_lvm::Report>,
) -> crate::node_state::first_format::Startup {
    let out = crate::node_state::first_format::at_start_now(
        driver.state.as_ref(),
        known,
        &driver.cfg.volume_groups,
    );
    if !out.stuck.is_empty() || !out.stale.is_empty() {
        let stuck: Vec<&str> = out.stuck.iter().map(|m| m.volume_id.as_str()).collect();
        tracing::info!(stuck = %stuck.join(","), stale = %out.stale.join(","), "first-format marks found at start-up");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use vglet_lvm::{Lv, Report, Vg};
    use vglet_runner::{FakeRunner, Reply};

    use super::*;

    fn lv(name: &str, tags: Vec<String>) -> Lv {
        Lv {
            vg: "vg0".into(),
            name: name.into(),
            segtype: "linear".into(),
            tags,
            ..Default::default()
        }
    }

    /// A cache LV left visible by an interrupted attach is removed (conditionally on its
    /// tag); an attached (hidden) cachevol, another driver's cache LV and volumes are not.
    #[tokio::test]
    async fn unattached_cache_lvs_of_ours_are_removed_at_start() {
        let runner = FakeRunner::with(|c| match c.arg_strings().first().map(String::as_str) {
            Some("version") => Reply::ok("  LVM version:     2.03.16(2) (2022-05-18)\n"),
            Some("lvremove") => Reply::ok(""),
            _ => Reply::ok(r#"{"report":[]}"#),
        });
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::test_config(dir.path(), &["--mode=controller".to_string()]);
        let driver = crate::build_driver_with(cfg, Arc::new(runner.clone()))
            .await
            .unwrap();
        let me = driver.cfg.driver_name.clone();
        let ours = vglet_lvm::tags::cache_lv_tags(&me, "csi-a");
        let volume = vglet_lvm::tags::VolumeTags {
            owner: me.clone(),
            name: "pvc-a".into(),
            size: 1,
            fs: "ext4".into(),
        }
        .to_tags();
        let report = Report {
            vgs: vec![Vg {
                name: "vg0".into(),
                ..Default::default()
            }],
            pvs: vec![],
            lvs: vec![
                lv("csi-a", volume),
                lv("vglet-cache.aaaa", ours.clone()),
                lv(
                    "[vglet-cache.bbbb_cvol]",
                    vglet_lvm::tags::cache_lv_tags(&me, "csi-b"),
                ),
                lv(
                    "vglet-cache.cccc",
                    vglet_lvm::tags::cache_lv_tags("other.io", "csi-c"),
                ),
            ],
        };
        let before = runner.calls().len();
        let out = at_start_from(&driver, Some(&report)).await;
        assert_eq!(out.removed, vec!["vg0/vglet-cache.aaaa".to_string()]);
        let removes: Vec<Vec<String>> = runner.calls()[before..]
            .iter()
            .map(|c| c.arg_strings())
            .filter(|a| a.first().map(String::as_str) == Some("lvremove"))
            .collect();
        assert_eq!(removes.len(), 1, "{removes:?}");
        assert!(
            removes[0].contains(&format!("lv_tags=\"{}\"", ours[1]))
                && removes[0].contains(&"vg0/vglet-cache.aaaa".to_string()),
            "{removes:?}"
        );
    }
}
