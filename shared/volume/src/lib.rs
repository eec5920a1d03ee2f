//! The node-volume layer: everything csi-driver's node service and the reviver do to put
//! an LV on a path, written once.
//!
//! - [`capability`]: what a validated CSI capability asks for, and the VG kinds.
//! - [`activation`]: the one activation rule.
//! - [`device`]: the LV's device node and the device-mapper proof that it is that LV.
//! - [`host`]: the read side of the node (mount table, device numbers, dm uuids, device
//!   heads) behind [`NodeHost`], beside [`vglet_mount::Mounter`], with [`FakeHost`] as a
//!   recording double of both, so that staging and publishing are unit-tested on any host.
//! - [`options`]: mount and mkfs option assembly, DAX included.
//! - [`first_format`]: the mkfs decision and the first-format marks.
//! - [`crypt`]: LUKS2 encryption at rest: the mapping's name and proof, the luksFormat
//!   decision, cryptsetup keyed on stdin.
//! - [`node`]: staging, publishing and the "proven ours" unmounts, on [`VolumeNode`].
//! - [`record`]: the state record a stage and a publish write.
//! - [`error`]: [`VolumeError`], mapped to gRPC codes once, in csi-driver's `status.rs`.
//!
//! Paths a CO hands over are resolved with [`vglet_mount::resolve`] (no symlink followed in
//! any component); everything here acts on the [`vglet_mount::Resolved`] result.
//!
//! Encryption (issue #21) opens a mapping between activation and [`VolumeNode::stage`] (the
//! target's `dev` becomes the mapping) and closes it after the unstage; a cached volume
//! (issue #20) is staged like any other once activated.

pub mod activation;
pub mod capability;
pub mod crypt;
pub mod device;
pub mod error;
pub mod first_format;
pub mod host;
pub mod node;
pub mod options;
pub mod record;

pub use activation::{activation_for, kind_of};
pub use capability::{Access, Capability, VgKind};
pub use device::{device_path, dm_lv_ids, dm_uuid_is_lv, lv_device_path, without_dashes};
pub use error::VolumeError;
pub use host::{FakeHost, NodeHost, SystemHost};
pub use node::{Proven, StageTarget, VolumeNode};
pub use vglet_lvm::Activation;
