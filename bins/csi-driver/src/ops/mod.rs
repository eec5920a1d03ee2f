//! The controller's LVM operations besides CreateVolume's plan ([`crate::provision`]):
//! content sources (clones, restores), snapshots, expansion (also the node's, with
//! `--expansion node`), redundancy changes (ControllerModifyVolume), the in-use check DeleteVolume asks, and the start-up reconcile of
//! work a previous process left half-done.

pub(crate) mod clone;
pub(crate) mod expand;
pub(crate) mod in_use;
pub(crate) mod modify;
pub(crate) mod reconcile;
pub(crate) mod snapshot;
