//! Block devices vglet may use, and the inventory `disk-discover` hands to `vg-init`.
//!
//! [`sysfs`] reads the kernel's view of block devices, [`links`] the udev names that stay
//! stable across reboots, [`selection`] applies the operator's include/exclude patterns,
//! [`safety`] says why a device must not be touched, and [`discover`] puts them together into
//! an [`inventory::Inventory`]. Nothing here ever opens a device for writing.

pub mod discover;
mod error;
pub mod inventory;
pub mod links;
pub mod safety;
pub mod selection;
pub mod sysfs;
pub mod table;
pub mod taking;

pub use discover::{DiscoverOptions, Discoverer, PmemSource};
pub use error::DevicesError;
pub use selection::{Selection, SelectionSpec};
pub use sysfs::{BlockDevice, DeviceKind, Sysfs};
pub use vglet_common::size::{format_size, parse_size};
