//! One discovery run: sysfs + udev links + mount table + blkid + lvm → [`Inventory`].
//! Read-only by construction: the only programs run are `blkid -p` (opens devices
//! read-only) and `lvm fullreport` (a report command).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vglet_lvm::{Lvm, Report};
use vglet_mount::{Filesystems, MountEntry, Signature};
use vglet_runner::{Program, ProgramMissing, Programs, Runner, Wanted, required};

use crate::DevicesError;
use crate::inventory::{
    Device, DeviceSource, INVENTORY_VERSION, Inventory, PmemInfo, PmemNamespace, PmemNamespaces,
    Skipped,
};
use crate::links::{DEV_DIR, DevLinks};
use crate::safety::{PvStatus, SafetyInput, SignatureCheck, Verdict, assess};
use crate::selection::{Candidate, Decision, Selection};
use crate::sysfs::{BlockDevice, SYS_CLASS_BLOCK, Sysfs};

/// pmem-ns-init's namespaces as a device source.
#[derive(Debug, Clone)]
pub struct PmemSource {
    pub namespaces: PmemNamespaces,
    /// Only namespaces in this mode ("fsdax" or "sector"); `None` for all.
    pub mode: Option<String>,
}

impl PmemSource {
    pub fn read(path: &Path, mode: Option<String>) -> Result<PmemSource, DevicesError> {
        let text = std::fs::read_to_string(path).map_err(|e| DevicesError::io(path, e))?;
        let namespaces =
            PmemNamespaces::from_json(&text).map_err(|source| DevicesError::Document {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(PmemSource { namespaces, mode })
    }
}

#[derive(Debug, Clone)]
pub struct DiscoverOptions {
    /// Normally /sys/class/block.
    pub sys_block: PathBuf,
    /// Normally /dev; links are read from `<dev_dir>/disk/by-id` and `by-path`.
    pub dev_dir: PathBuf,
    pub selection: Selection,
    pub min_size: u64,
    pub target_vg: Option<String>,
    pub pmem: Option<PmemSource>,
    /// Also list devices that were not selected, with the reason.
    pub explain: bool,
    /// Log each decision (chosen, skipped and why). Off when the caller shows the same
    /// decisions as a table (a person at a terminal), so each is printed once.
    pub log_decisions: bool,
    pub hostname: String,
    pub generator: String,
    pub generated_unix: u64,
}

impl DiscoverOptions {
    pub fn new(selection: Selection) -> Self {
        DiscoverOptions {
            sys_block: PathBuf::from(SYS_CLASS_BLOCK),
            dev_dir: PathBuf::from(DEV_DIR),
            selection,
            min_size: 1 << 30,
            target_vg: None,
            pmem: None,
            explain: false,
            log_decisions: true,
            hostname: String::new(),
            generator: String::new(),
            generated_unix: 0,
        }
    }
}

/// Runs discoveries through an injected runner (blkid, lvm).
#[derive(Debug)]
pub struct Discoverer {
    fs: Filesystems,
    lvm: Lvm,
    mounts: Option<Vec<MountEntry>>,
}

/// A device on its way into the inventory.
struct Planned<'a> {
    dev: &'a BlockDevice,
    path: String,
    kernel_path: PathBuf,
    /// `Ok(why chosen)` or `Err(why not selected)` (the latter only in explain mode).
    decision: Result<String, String>,
    pmem: Option<&'a PmemNamespace>,
    signature: SignatureCheck,
}

/// The programs a discovery runs: lvm to see PVs and VGs, blkid to see data. Without
/// either it cannot tell a free disk from a used one, so both are required.
pub const NEEDS: &[Wanted] = &[required(Program::Lvm), required(Program::Blkid)];

impl Discoverer {
    /// Runs `programs`, resolved at the binary's start from (at least) [`NEEDS`].
    pub fn new(runner: Arc<dyn Runner>, programs: Programs) -> Result<Self, ProgramMissing> {
        Ok(Discoverer {
            fs: Filesystems::new(runner.clone(), programs.clone()),
            lvm: Lvm::new(runner, programs)?,
            mounts: None,
        })
    }

    /// Use this lvm (binary, config) instead of the one found on PATH.
    pub fn with_lvm(mut self, lvm: Lvm) -> Self {
        self.lvm = lvm;
        self
    }

    /// Use this mount table instead of the host's (tests).
    pub fn with_mounts(mut self, mounts: Vec<MountEntry>) -> Self {
        self.mounts = Some(mounts);
        self
    }

    pub async fn discover(&self, opts: &DiscoverOptions) -> Result<Inventory, DevicesError> {
        let devices = Sysfs::new(&opts.sys_block).devices()?;
        let by_name: HashMap<&str, &BlockDevice> =
            devices.iter().map(|d| (d.name.as_str(), d)).collect();
        let links = DevLinks::scan(&opts.dev_dir);
        let mounts = match &self.mounts {
            Some(m) => m.clone(),
            None => host_mounts()?,
        };
        let mut skipped = Vec::new();
        let pmem = pmem_by_name(opts, &by_name, &mut skipped);

        let mut planned = Vec::new();
        for dev in &devices {
            let paths = links.paths(dev);
            let parent_paths = dev
                .parent
                .as_deref()
                .and_then(|p| by_name.get(p))
                .map(|p| links.paths(p))
                .unwrap_or_default();
            let candidate = Candidate {
                name: &dev.name,
                kind: dev.kind,
                paths: &paths,
                parent_paths: &parent_paths,
                model: dev.model.as_deref(),
                serial: dev.serial.as_deref(),
                wwn: dev.wwn.as_deref(),
            };
            let (decision, ns) = match &opts.pmem {
                None => (opts.selection.decide(&candidate), None),
                Some(src) => pmem_decision(
                    src,
                    &opts.selection,
                    &candidate,
                    pmem.get(dev.name.as_str()),
                ),
            };
            let decision = match decision {
                Decision::Selected(why) => Ok(why),
                Decision::Excluded(why) | Decision::NotMatched(why) if opts.explain => Err(why),
                Decision::Excluded(_) | Decision::NotMatched(_) => continue,
            };
            planned.push(Planned {
                dev,
                path: lossy(&links.stable_path(dev)),
                kernel_path: links.kernel_path(&dev.name),
                decision,
                pmem: ns,
                signature: SignatureCheck::NotProbed,
            });
        }

        for p in &mut planned {
            p.signature = self.probe(p.dev, &p.kernel_path).await;
        }
        let pv_status = self.pv_status(&planned).await;

        let holder_dm_uuid = |h: &str| by_name.get(h).and_then(|d| d.dm_uuid.clone());
        let mut chosen = Vec::new();
        for p in planned {
            let verdict = assess(&SafetyInput {
                device: p.dev,
                mounts: &mounts,
                signature: &p.signature,
                pv: pv_status
                    .get(p.dev.name.as_str())
                    .unwrap_or(&PvStatus::NotPv),
                target_vg: opts.target_vg.as_deref(),
                min_size: opts.min_size,
                holder_dm_uuid: &holder_dm_uuid,
            });
            match &p.decision {
                Ok(why) if verdict.is_safe() => chosen.push(device_entry(&p, why.clone(), verdict)),
                Ok(_) => skipped.push(Skipped {
                    path: p.path,
                    kernel_path: lossy(&p.kernel_path),
                    reasons: verdict.reasons,
                }),
                Err(why) => skipped.push(Skipped {
                    path: p.path,
                    kernel_path: lossy(&p.kernel_path),
                    reasons: std::iter::once(why.clone())
                        .chain(verdict.reasons)
                        .collect(),
                }),
            }
        }
        for d in chosen.iter().filter(|_| opts.log_decisions) {
            tracing::info!(path = %d.path, kernel = %d.kernel_path, size = d.size_bytes, reason = %d.reason, "device chosen");
        }
        for s in skipped.iter().filter(|_| opts.log_decisions) {
            tracing::info!(path = %s.path, reasons = %s.reasons.join("; "), "device skipped");
        }
        Ok(Inventory {
            version: INVENTORY_VERSION,
            generator: opts.generator.clone(),
            hostname: opts.hostname.clone(),
            generated_unix: opts.generated_unix,
            target_vg: opts.target_vg.clone(),
            devices: chosen,
            skipped,
        })
    }

    async fn probe(&self, dev: &BlockDevice, kernel_path: &Path) -> SignatureCheck {
        if dev.size_bytes == 0 {
            return SignatureCheck::NotProbed;
        }
        // blkid exits 2 both for "nothing found" and for "cannot open" (EPERM from a
        // device cgroup, EACCES), so a device we cannot read would pass for blank. Opening
        // it read-only first tells the two apart; a read-only open and close never makes
        // udev re-probe the device.
        if let Err(e) = std::fs::File::open(kernel_path) {
            tracing::warn!(device = %kernel_path.display(), error = %e, "cannot open device read-only");
            return SignatureCheck::Failed(format!("cannot open it read-only: {e}"));
        }
        match self.fs.detect_any_signature(kernel_path).await {
            Ok(None) => SignatureCheck::Blank,
            Ok(Some(sig)) => SignatureCheck::Found(sig),
            Err(e) => {
                tracing::warn!(device = %kernel_path.display(), error = %e, "cannot read signatures");
                SignatureCheck::Failed(e.to_string())
            }
        }
    }

    /// Asks lvm about the devices that carry a PV label, and only those: lvm is not needed
    /// (nor run) on a host without PVs, and `--devices` makes lvm look at them even when
    /// a devices file would hide them.
    async fn pv_status(&self, planned: &[Planned<'_>]) -> HashMap<String, PvStatus> {
        let pvs: Vec<&Planned> = planned
            .iter()
            .filter(|p| {
                matches!(&p.signature, SignatureCheck::Found(Signature::Content { type_name, .. }) if type_name == "LVM2_member")
            })
            .collect();
        if pvs.is_empty() {
            return HashMap::new();
        }
        self.lvm
            .set_device_scope(pvs.iter().map(|p| lossy(&p.kernel_path)).collect());
        let report = self.lvm.report(None).await;
        pvs.iter()
            .map(|p| {
                let status = match &report {
                    Ok(r) => pv_of(r, p),
                    Err(e) => {
                        tracing::warn!(device = %p.kernel_path.display(), error = %e, "lvm report failed");
                        PvStatus::Unknown(format!("lvm report failed: {e}"))
                    }
                };
                (p.dev.name.clone(), status)
            })
            .collect()
    }
}

fn pv_of(report: &Report, p: &Planned) -> PvStatus {
    let Some(pv) = report
        .pvs
        .iter()
        .find(|pv| same_device(&pv.name, p.dev, &p.kernel_path))
    else {
        return PvStatus::Unknown(
            "lvm does not list it (rejected by an lvm.conf filter?)".to_string(),
        );
    };
    if pv.vg.is_empty() {
        return PvStatus::Orphan;
    }
    let Some(vg) = report.vgs.iter().find(|v| v.name == pv.vg) else {
        return PvStatus::Unknown(format!("its VG {} is not in lvm's report", pv.vg));
    };
    PvStatus::InVg {
        vg: pv.vg.clone(),
        vg_uuid: vg.uuid.replace('-', ""),
        lv_count: vg.lv_count,
    }
}

/// lvm names a PV by whichever path it scanned (/dev/sdb, /dev/disk/by-id/..., a
/// /dev/mapper name); the device number settles it.
fn same_device(pv_name: &str, dev: &BlockDevice, kernel_path: &Path) -> bool {
    if Path::new(pv_name) == kernel_path {
        return true;
    }
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(pv_name).is_ok_and(|m| {
        let rdev = m.rdev();
        let major = ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0x0000_0fff);
        let minor = ((rdev >> 12) & 0xffff_ff00) | (rdev & 0x0000_00ff);
        (major as u32, minor as u32) == (dev.major, dev.minor)
    })
}

/// With `--pmem-namespaces`, the file's namespaces are the only candidates; include
/// patterns, when given, narrow them further and excludes still win.
fn pmem_decision<'a>(
    src: &PmemSource,
    selection: &Selection,
    candidate: &Candidate,
    ns: Option<&&'a PmemNamespace>,
) -> (Decision, Option<&'a PmemNamespace>) {
    let Some(ns) = ns.copied() else {
        return (
            Decision::NotMatched("not a namespace listed in --pmem-namespaces".to_string()),
            None,
        );
    };
    if let Some(mode) = src.mode.as_deref().filter(|m| *m != ns.mode) {
        let why = format!(
            "pmem namespace {} is in {} mode, not selected by --pmem-mode {mode}",
            ns.name, ns.mode
        );
        return (Decision::Excluded(why), None);
    }
    let about = format!(
        "pmem namespace {} ({}, {} mode)",
        ns.name, ns.region, ns.mode
    );
    let decision = if let Some(why) = selection.excluded(candidate) {
        Decision::Excluded(why)
    } else if selection.has_includes() {
        match selection.decide(candidate) {
            Decision::Selected(why) => Decision::Selected(format!("{about}, {why}")),
            other => other,
        }
    } else {
        Decision::Selected(about)
    };
    (decision, Some(ns))
}

/// The file's namespaces by kernel name. A namespace whose block device does not exist is
/// recorded as skipped right away: the operator asked for it by handing in the file.
fn pmem_by_name<'a>(
    opts: &'a DiscoverOptions,
    by_name: &HashMap<&str, &BlockDevice>,
    skipped: &mut Vec<Skipped>,
) -> BTreeMap<String, &'a PmemNamespace> {
    let mut out = BTreeMap::new();
    let Some(src) = &opts.pmem else {
        return out;
    };
    for ns in &src.namespaces.namespaces {
        let name = Path::new(&ns.blockdev)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if ns.blockdev.is_empty() || !by_name.contains_key(name) {
            let wanted = src.mode.as_deref().is_none_or(|m| m == ns.mode);
            if wanted || opts.explain {
                skipped.push(Skipped {
                    path: ns.blockdev.clone(),
                    kernel_path: ns.blockdev.clone(),
                    reasons: vec![format!(
                        "pmem namespace {} ({}): block device {:?} not found in {}",
                        ns.name,
                        ns.dev,
                        ns.blockdev,
                        opts.sys_block.display()
                    )],
                });
            }
            continue;
        }
        out.insert(name.to_string(), ns);
    }
    out
}

fn device_entry(p: &Planned, why: String, verdict: Verdict) -> Device {
    let reason = match &verdict.existing_pv_of {
        Some(vg) => format!("{why}; already a PV of VG {vg}"),
        None => why,
    };
    Device {
        path: p.path.clone(),
        kernel_path: lossy(&p.kernel_path),
        size_bytes: p.dev.size_bytes,
        model: p.dev.model.clone(),
        serial: p.dev.serial.clone(),
        wwn: p.dev.wwn.clone(),
        source: if p.pmem.is_some() {
            DeviceSource::Pmem
        } else {
            DeviceSource::Disk
        },
        pmem: p.pmem.map(|ns| PmemInfo {
            region: ns.region.clone(),
            mode: ns.mode.clone(),
            namespace: ns.name.clone(),
        }),
        existing_pv_of: verdict.existing_pv_of,
        reason,
    }
}

/// This mount namespace's table, plus the host's when this runs in a container with the
/// host's PID namespace (pid 1 is then the host's init): a disk mounted on the host but not
/// in the container is still in use.
fn host_mounts() -> Result<Vec<MountEntry>, DevicesError> {
    let mut all = vglet_mount::mounts().map_err(DevicesError::Mounts)?;
    match std::fs::read_to_string("/proc/1/mountinfo") {
        Ok(text) => match vglet_mount::parse_mountinfo(&text) {
            Ok(more) => all.extend(more),
            Err(e) => tracing::debug!(error = %e, "/proc/1/mountinfo not parsed"),
        },
        Err(e) => tracing::debug!(error = %e, "/proc/1/mountinfo not readable"),
    }
    Ok(all)
}

fn lossy(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[cfg(test)]
#[path = "discover_tests.rs"]
mod tests;
