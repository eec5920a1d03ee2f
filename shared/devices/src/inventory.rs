//! The versioned JSON documents exchanged between host-preparation stages:
//! `pmem-ns-init` → [`PmemNamespaces`] → `disk-discover` → [`Inventory`] → `vg-init`.
//! A reader refuses a document whose `version` it does not know rather than guessing.

use serde::{Deserialize, Serialize};

pub const INVENTORY_VERSION: u32 = 1;
pub const PMEM_NAMESPACES_VERSION: u32 = 1;

/// What disk-discover chose and skipped, with reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Inventory {
    pub version: u32,
    /// "disk-discover <version>".
    pub generator: String,
    pub hostname: String,
    /// Seconds since the Unix epoch.
    pub generated_unix: u64,
    /// The VG the devices are meant for; devices already in it count as usable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_vg: Option<String>,
    pub devices: Vec<Device>,
    #[serde(default)]
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeviceSource {
    Disk,
    Pmem,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Device {
    /// Stable path (a /dev/disk/by-id link when one exists), what vg-init passes to lvm.
    pub path: String,
    /// The kernel's node, e.g. /dev/vdb.
    pub kernel_path: String,
    pub size_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwn: Option<String>,
    pub source: DeviceSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pmem: Option<PmemInfo>,
    /// Set when the device already is a PV of the target VG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_pv_of: Option<String>,
    /// Why it was chosen (the pattern that matched).
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PmemInfo {
    /// e.g. "region0".
    pub region: String,
    /// "fsdax" or "sector".
    pub mode: String,
    /// ndctl's namespace name, e.g. "vglet-fsdax".
    pub namespace: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Skipped {
    pub path: String,
    pub kernel_path: String,
    /// Every reason that applies ("mounted at /boot", "holds an ext4 filesystem", ...).
    pub reasons: Vec<String>,
}

/// pmem-ns-init's result, which disk-discover accepts as a device source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PmemNamespaces {
    pub version: u32,
    pub generator: String,
    pub namespaces: Vec<PmemNamespace>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PmemNamespace {
    /// ndctl's namespace name (pmem-ns-init names its own "vglet-<mode>-<region>").
    pub name: String,
    /// ndctl device, e.g. "namespace0.0".
    pub dev: String,
    /// Block device path, e.g. /dev/pmem0 (fsdax) or /dev/pmem0s (sector).
    pub blockdev: String,
    pub region: String,
    pub mode: String,
    pub size_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("not valid inventory JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("inventory version {found} is not supported (this build reads version {supported})")]
    Version { found: u32, supported: u32 },
}

impl Inventory {
    pub fn from_json(text: &str) -> Result<Inventory, InventoryError> {
        let inv: Inventory = serde_json::from_str(text)?;
        if inv.version != INVENTORY_VERSION {
            return Err(InventoryError::Version {
                found: inv.version,
                supported: INVENTORY_VERSION,
            });
        }
        Ok(inv)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("inventory serialises")
    }
}

impl PmemNamespaces {
    pub fn from_json(text: &str) -> Result<PmemNamespaces, InventoryError> {
        let doc: PmemNamespaces = serde_json::from_str(text)?;
        if doc.version != PMEM_NAMESPACES_VERSION {
            return Err(InventoryError::Version {
                found: doc.version,
                supported: PMEM_NAMESPACES_VERSION,
            });
        }
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_unknown_versions() {
        let inv = Inventory {
            version: INVENTORY_VERSION,
            generator: "disk-discover 0.1.0".into(),
            hostname: "n1".into(),
            generated_unix: 1,
            target_vg: Some("vg0".into()),
            devices: vec![Device {
                path: "/dev/disk/by-id/virtio-d1".into(),
                kernel_path: "/dev/vda".into(),
                size_bytes: 1 << 30,
                model: None,
                serial: Some("d1".into()),
                wwn: None,
                source: DeviceSource::Disk,
                pmem: None,
                existing_pv_of: None,
                reason: "matched glob /dev/vd*".into(),
            }],
            skipped: vec![Skipped {
                path: "/dev/vdb".into(),
                kernel_path: "/dev/vdb".into(),
                reasons: vec!["holds an ext4 filesystem".into()],
            }],
        };
        let back = Inventory::from_json(&inv.to_json()).unwrap();
        assert_eq!(back, inv);
        let v2 = inv.to_json().replace("\"version\": 1", "\"version\": 2");
        assert!(matches!(
            Inventory::from_json(&v2),
            Err(InventoryError::Version { found: 2, .. })
        ));
    }
}
