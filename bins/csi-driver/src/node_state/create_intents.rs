//! CreateVolume calls in progress, recorded on this node's disk instead of in an LV tag.
//!
//! A new LV must say it is unfinished until CreateVolume has done every step: lvcreate can
//! be killed between its metadata commit and zeroing, a copy can stop half-way, and no CO
//! was told of such an LV, so the next start-up or the CO's retry removes it. On a shared
//! VG the `vglet.creating` LV tag says so, since the controller may restart on another host;
//! dropping that tag costs an lvm commit of its own on every create. On a node-local VG
//! served by `--mode all` the controller never leaves the node whose disk holds the VG, so
//! a durable intent file (written before the lvcreate, removed before the answer) says the
//! same for the cost of two fsyncs. See docs/architecture.md, "Crash safety of CreateVolume".
//!
//! The one hole an intent file has and the tag has not: a driver killed with `kill -9`
//! leaves its `lvm lvcreate` child running, which could commit after the restarted driver
//! found no LV and dropped the intent. Start-up therefore kills every lvm process an earlier
//! run of this driver started ([`vglet_runner::orphans`]) before it reads the intents.
//!
//! While serving, the intents on disk are exactly the creates of this process in flight
//! plus those whose unfinished LV could not be removed, so membership is answered from
//! memory.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use vglet_lvm::Lv;
use vglet_state::{CreateIntent, StateStore};

use crate::rules::error::VolumeError;
use crate::rules::volume_id::VolumeId;

#[derive(Debug, Default)]
pub struct CreateIntents {
    /// `None`: this process keeps no intents (not `--mode all`), every VG uses the tag.
    store: Option<StateStore>,
    /// Volume id → the create id its unfinished LV carries.
    open: Mutex<BTreeMap<String, String>>,
    /// Makes create ids unique within the process; the start time makes them unique
    /// across processes.
    counter: AtomicU64,
}

impl CreateIntents {
    /// Intents kept in `store`'s directory, starting with those an earlier process left.
    pub fn load(store: Option<StateStore>) -> CreateIntents {
        let mut open = BTreeMap::new();
        if let Some(s) = &store {
            match s.create_intents() {
                Ok((intents, bad)) => {
                    for b in bad {
                        tracing::warn!(path = %b.path.display(), reason = %b.reason, "unusable create intent; left in place");
                    }
                    open.extend(intents.into_iter().map(|i| (i.volume_id, i.create_id)));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list the create intents");
                }
            }
        }
        CreateIntents {
            store,
            open: Mutex::new(open),
            counter: AtomicU64::new(0),
        }
    }

    /// Whether a create in `vg` is recorded here (`true`) or by the LV tag (`false`).
    pub fn keeps(&self, vg: &vglet_lvm::Vg) -> bool {
        self.store.is_some() && !vg.is_shared()
    }

    /// Records, durably, that `id` is being created, before its lvcreate; returns the tag
    /// the new LV must carry to be this attempt's.
    pub fn begin(&self, id: &VolumeId) -> Result<String, VolumeError> {
        let create_id = self.next_create_id();
        let key = id.to_string();
        if let Some(store) = &self.store {
            store
                .put_create_intent(&CreateIntent {
                    version: 0,
                    volume_id: key.clone(),
                    create_id: create_id.clone(),
                    started_unix: vglet_volume::first_format::now_unix(),
                })
                .map_err(VolumeError::state(format!("recording the create of {id}")))?;
            self.open.lock().unwrap().insert(key, create_id.clone());
        }
        Ok(vglet_lvm::tags::create_id_tag(&create_id))
    }

    /// Drops the record of `id`, durably: the create is complete, or its LV is gone.
    pub fn end(&self, id: &VolumeId) -> Result<(), VolumeError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let key = id.to_string();
        store
            .remove_create_intent(&key)
            .map_err(VolumeError::state(format!(
                "dropping the create record of {id}"
            )))?;
        self.open.lock().unwrap().remove(&key);
        Ok(())
    }

    /// The tag an unfinished LV `id` would carry, if a create of it began and did not end.
    pub fn unfinished_tag(&self, id: &VolumeId) -> Option<String> {
        self.open
            .lock()
            .unwrap()
            .get(&id.to_string())
            .map(|c| vglet_lvm::tags::create_id_tag(c))
    }

    /// Whether `lv` is the LV of `id`'s unfinished create: an LV of the name made before
    /// (a retry that found it, an lvcreate refused because it existed) is not.
    pub fn marks(&self, id: &VolumeId, lv: &Lv) -> bool {
        self.unfinished_tag(id)
            .is_some_and(|tag| lv.tags.contains(&tag))
    }

    /// Every open intent's volume id, for the start-up reconcile.
    pub fn open(&self) -> Vec<String> {
        self.open.lock().unwrap().keys().cloned().collect()
    }

    fn next_create_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        format!("{nanos:x}{n:x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vg(lock_type: &str) -> vglet_lvm::Vg {
        vglet_lvm::Vg {
            name: "vg0".into(),
            lock_type: lock_type.into(),
            ..Default::default()
        }
    }

    #[test]
    fn intents_are_kept_for_local_vgs_of_a_store_and_survive_a_restart() {
        let d = tempfile::tempdir().unwrap();
        let id = VolumeId::new("vg0", "csi-a");
        let none = CreateIntents::load(None);
        assert!(!none.keeps(&vg("")));
        none.begin(&id).unwrap();
        assert!(
            none.open().is_empty(),
            "without a store nothing is recorded"
        );

        let store = || Some(StateStore::open(d.path()).unwrap());
        let c = CreateIntents::load(store());
        assert!(c.keeps(&vg("")));
        assert!(!c.keeps(&vg("sanlock")), "a shared VG keeps the LV tag");
        let tag = c.begin(&id).unwrap();
        assert!(tag.starts_with("vglet.create-id="), "{tag}");
        let lv = |tags: &[&str]| Lv {
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        };
        assert!(c.marks(&id, &lv(&[&tag])));
        // An LV of the name without this attempt's id was made before: never unfinished.
        assert!(!c.marks(&id, &lv(&[])));
        assert!(!c.marks(&id, &lv(&["vglet.create-id=other"])));
        assert!(!c.marks(&VolumeId::new("vg0", "csi-b"), &lv(&[&tag])));
        // A new process (the crash) finds it on disk, with the same id.
        let after = CreateIntents::load(store());
        assert_eq!(after.open(), vec!["vg0/csi-a".to_string()]);
        assert!(after.marks(&id, &lv(&[&tag])));
        after.end(&id).unwrap();
        assert!(!after.marks(&id, &lv(&[&tag])));
        assert!(CreateIntents::load(store()).open().is_empty());
        // Ids of two attempts differ.
        assert_ne!(after.begin(&id).unwrap(), tag);
    }
}
