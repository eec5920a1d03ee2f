//! What every vglet binary shares: logging set-up and the version string.

pub mod atomic_file;
pub mod logging;

/// The version every binary reports (`--version`, GetPluginInfo, VG/LV tags).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
