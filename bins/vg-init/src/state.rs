//! What is there before anything changes: the VG, every requested device (what it holds,
//! which VG it belongs to, who holds it open) and, for shared VGs, the lock managers.
//! Gathering only reads.

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use vglet_lvm::wipe::{self, Signature};
use vglet_lvm::{LockType, Lvm, Report};
use vglet_runner::Runner;

use crate::error::VgInitError;
use crate::request::{Request, SystemIdWish};

/// The target VG as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VgState {
    pub name: String,
    pub tags: Vec<String>,
    /// `""` for a local VG.
    pub lock_type: String,
    pub system_id: String,
    /// Canonical device paths of its PVs.
    pub pvs: Vec<String>,
    /// (name, segment type) of its LVs.
    pub lvs: Vec<(String, String)>,
    pub missing_pvs: u64,
}

impl VgState {
    pub fn is_shared(&self) -> bool {
        vglet_lvm::report::is_shared_lock_type(&self.lock_type)
    }
}

/// Another VG, as far as deciding whether one of its PVs may be wiped goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OtherVg {
    pub lv_count: u64,
    pub pvs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    Block,
    Missing(String),
    NotBlock,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceState {
    /// As requested; what lvm is given.
    pub path: String,
    /// Symlinks resolved (/dev/disk/by-id/x -> /dev/vda): how lvm names its PVs.
    pub canonical: String,
    pub presence: Presence,
    /// `Some("")`: a PV in no VG; `Some(vg)`: a PV of `vg`; `None`: no PV lvm can see.
    pub pv_vg: Option<String>,
    pub signatures: Vec<Signature>,
    /// Kernel devices stacked on it (/sys/class/block/X/holders): dm, md, ...
    pub holders: Vec<String>,
    /// Every requested path that names this device (two aliases are one device).
    pub aliases: Vec<String>,
    /// Its PV's tags (empty when it is no PV).
    pub pv_tags: Vec<String>,
}

impl DeviceState {
    /// Whether it was requested under any of `paths`.
    pub fn requested_as_any(&self, paths: &[String]) -> bool {
        self.aliases.iter().any(|a| paths.contains(a))
    }
}

/// The host's readiness for shared VGs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockEnv {
    pub supported: Vec<LockType>,
    pub use_lvmlockd: bool,
    pub host_id: u64,
    /// VGs whose lockspace is started; `Err`: lvmlockd does not answer.
    pub lvmlockd: Result<Vec<String>, String>,
    /// `Err`: the lock manager does not answer.
    pub manager: Result<(), String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct State {
    pub vg: Option<VgState>,
    pub devices: Vec<DeviceState>,
    pub other_vgs: BTreeMap<String, OtherVg>,
    /// Asked only for shared requests.
    pub lock: Option<LockEnv>,
    /// The host's lvm system ID; asked only when --system-id is given.
    pub host_system_id: Option<Option<String>>,
}

/// The file-system side of device inspection, replaceable in tests.
pub trait Host: Send + Sync {
    fn canonical(&self, path: &str) -> Result<String, String>;
    fn is_block(&self, path: &str) -> bool;
    fn holders(&self, canonical: &str) -> Vec<String>;
}

#[derive(Debug, Default)]
pub struct SystemHost;

impl Host for SystemHost {
    fn canonical(&self, path: &str) -> Result<String, String> {
        std::fs::canonicalize(path)
            .map(|p| p.display().to_string())
            .map_err(|e| e.to_string())
    }

    fn is_block(&self, path: &str) -> bool {
        std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
    }

    fn holders(&self, canonical: &str) -> Vec<String> {
        let Some(name) = Path::new(canonical).file_name() else {
            return Vec::new();
        };
        let dir = Path::new("/sys/class/block").join(name).join("holders");
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

fn lvm_failed(what: &str, e: vglet_lvm::LvmError) -> VgInitError {
    VgInitError::lvm(what, e)
}

/// Reads everything the plan needs. Runs lvm reports, `wipefs --no-act` and the lock
/// managers' status commands; changes nothing.
pub async fn gather(
    req: &Request,
    lvm: &Lvm,
    runner: &dyn Runner,
    host: &dyn Host,
) -> Result<State, VgInitError> {
    // Every VG and PV: a device's membership in another VG must be seen, so no --devices.
    let report = lvm
        .report(None)
        .await
        .map_err(|e| lvm_failed("reading lvm's state", e))?;
    let canon = |p: &str| host.canonical(p).unwrap_or_else(|_| p.to_string());
    let mut state = State {
        vg: vg_state(&report, &req.vg, &canon),
        ..Default::default()
    };
    for vg in report.vgs.iter().filter(|v| v.name != req.vg) {
        state.other_vgs.insert(
            vg.name.clone(),
            OtherVg {
                lv_count: vg.lv_count,
                pvs: report.pvs_in(&vg.name).map(|p| canon(&p.name)).collect(),
            },
        );
    }

    let mut seen = std::collections::HashSet::new();
    for path in &req.devices {
        let (canonical, presence) = match host.canonical(path) {
            Ok(c) if host.is_block(&c) => (c, Presence::Block),
            Ok(c) => (c, Presence::NotBlock),
            Err(e) => (path.clone(), Presence::Missing(e)),
        };
        if !seen.insert(canonical.clone()) {
            tracing::info!(device = %path, %canonical, "same device requested twice; using it once");
            if let Some(d) = state.devices.iter_mut().find(|d| d.canonical == canonical) {
                d.aliases.push(path.clone());
            }
            continue;
        }
        let pv = report.pvs.iter().find(|p| canon(&p.name) == canonical);
        let pv_vg = pv.map(|p| p.vg.clone());
        let mut dev = DeviceState {
            path: path.clone(),
            canonical: canonical.clone(),
            presence: presence.clone(),
            pv_vg,
            signatures: Vec::new(),
            holders: Vec::new(),
            aliases: vec![path.clone()],
            pv_tags: pv.map(|p| p.tags.clone()).unwrap_or_default(),
        };
        if presence == Presence::Block && dev.pv_vg.as_deref() != Some(req.vg.as_str()) {
            dev.holders = host.holders(&canonical);
            dev.signatures = wipe::signatures(runner, lvm.programs(), path)
                .await
                .map_err(|e| VgInitError::Failed(format!("reading signatures of {path}: {e}")))?;
        }
        state.devices.push(dev);
    }

    if let Some(lock_type) = req.lock_type {
        let supported = lvm
            .supported_lock_types()
            .await
            .map_err(|e| lvm_failed("lvm version", e))?;
        let config = lvm
            .config_values(&["global/use_lvmlockd", "local/host_id"])
            .await
            .map_err(|e| lvm_failed("reading lvm's configuration", e))?;
        let lvmlockd = lvm.started_lockspaces().await.map_err(|e| {
            if vglet_lvm::lvmlockd_socket_exists() {
                format!("its socket exists but it does not answer ({e})")
            } else {
                format!("no socket at {}", vglet_lvm::LVMLOCKD_SOCKET)
            }
        });
        state.lock = Some(LockEnv {
            supported,
            use_lvmlockd: config.get("use_lvmlockd").map(String::as_str) == Some("1"),
            host_id: config
                .get("host_id")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            lvmlockd,
            manager: lvm.lock_manager_status(lock_type).await,
        });
    }
    if req.system_id != SystemIdWish::Unmanaged {
        state.host_system_id = Some(
            lvm.host_system_id()
                .await
                .map_err(|e| lvm_failed("lvm systemid", e))?,
        );
    }
    Ok(state)
}

fn vg_state(report: &Report, name: &str, canon: &dyn Fn(&str) -> String) -> Option<VgState> {
    let vg = report.vg(name)?;
    Some(VgState {
        name: vg.name.clone(),
        tags: vg.tags.clone(),
        lock_type: vg.lock_type.clone(),
        system_id: vg.system_id.clone(),
        pvs: report.pvs_in(name).map(|p| canon(&p.name)).collect(),
        lvs: report
            .lvs_in(name)
            .map(|l| (l.name.clone(), l.segtype.clone()))
            .collect(),
        missing_pvs: vg.missing_pv_count,
    })
}
