//! The volume layer's one error type, [`vglet_volume::VolumeError`], under the name the rule
//! modules use. They say *what* went wrong in its terms; `crate::status` alone turns it
//! into gRPC codes.

pub use vglet_volume::error::{Result, VolumeError};
