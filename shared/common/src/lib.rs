//! What every vglet binary shares: logging set-up, the version string, sizes as operators
//! write them.

pub mod atomic_file;
pub mod logging;
pub mod size;

/// The version every binary reports (`--version`, GetPluginInfo, VG/LV tags).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
