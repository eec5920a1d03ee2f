//! CreateVolume as read → pure plan → execute, after vg-init's `plan.rs`.
//!
//! - [`ask`]: the request, checked in everything that needs no lvm state; a request that is
//!   wrong by itself is refused here, before any lvm read.
//! - [`choice`]: whether a served VG can take a volume of a StorageClass, and how large a
//!   volume it can take: the one rule CreateVolume and GetCapacity share.
//! - [`plan`]: from an [`ask::Ask`] and ONE lvm report, what to do (return the existing
//!   volume, remove an unfinished one and read again, or create) or why not. Pure.
//! - [`execute`]: performs a create plan (lvcreate or thin snapshot, copy, release, marker),
//!   and the read-back where lvm decides the size.

pub mod ask;
pub mod choice;
pub mod execute;
pub mod plan;

#[cfg(test)]
mod tests;

pub use ask::{Ask, SourceId};
pub use plan::{Plan, plan};

use crate::config::Config;
use crate::node_state::create_intents::CreateIntents;

/// What the plan needs of the driver's configuration and host: nothing it would have to
/// ask lvm or the kernel for while planning.
#[derive(Debug, Clone, Copy)]
pub struct Served<'a> {
    /// The driver name, as in the ownership tags.
    pub driver: &'a str,
    pub node_id: &'a str,
    /// The served VGs, in their configured order.
    pub vgs: &'a [String],
    /// The host's page size, which an fsdax filesystem's block size must equal.
    pub page_size: u64,
    /// Creates in flight recorded on this node (`None`: only LV tags mark unfinished LVs).
    pub creating: Option<&'a CreateIntents>,
}

impl<'a> Served<'a> {
    pub fn of(cfg: &'a Config, creating: &'a CreateIntents) -> Served<'a> {
        Served {
            driver: &cfg.driver_name,
            node_id: &cfg.node_id,
            vgs: &cfg.volume_groups,
            page_size: vglet_mount::page_size(),
            creating: Some(creating),
        }
    }

    pub fn serves(&self, vg: &str) -> bool {
        self.vgs.iter().any(|v| v == vg)
    }
}
