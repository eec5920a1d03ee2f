//! Request rules, pure: what a StorageClass or mutable (VolumeAttributesClass) parameter, a capability, a capacity range, a
//! layout, a PMEM mode, a request map's size or a volume id may be, and a volume's health
//! from what LVM and the mount table say. No command runs here; every rule answers in
//! [`error::VolumeError`], never in gRPC codes. Public for the fuzz targets.

pub mod cache;
pub mod capability;
pub mod capacity;
pub mod error;
pub mod health;
pub mod layout;
pub mod limits;
pub mod mutable;
pub mod params;
pub mod pmem;
pub mod volume_id;
