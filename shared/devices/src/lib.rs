//! Block devices vglet may use, and the inventory `disk-discover` hands to `vg-init`.

pub mod inventory;
