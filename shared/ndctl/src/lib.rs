//! ndctl, the NVDIMM management tool, driven through the shared runner: typed argv builders
//! ([`args`]), serde types for its JSON ([`json`]), error classification ([`NdctlError`])
//! and the few operations vglet needs ([`Ndctl`]).
//!
//! ndctl is the only supported interface: it knows the label protocol and the kernel's
//! quirks, and its JSON is stable across releases, whereas sysfs details move.

pub mod args;
mod error;
pub mod json;
mod ops;

pub use args::{CreateNamespace, PmemMode};
pub use error::NdctlError;
pub use json::{Mapping, Namespace, Region, parse_namespace, parse_regions};
pub use ops::Ndctl;
