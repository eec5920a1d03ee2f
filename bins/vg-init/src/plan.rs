//! The decision: current state + request -> the actions that give the VG the requested
//! shape, or a refusal. Pure, so every rule is unit-tested without lvm.

use std::fmt;

use vglet_lvm::tags::{FAST_PV_TAG, PMEM_MODE_PREFIX, PMEM_REGION_PREFIX};
use vglet_lvm::wipe::Signature;
use vglet_lvm::{LockType, PoolSize};

use vglet_devices::taking::{Content, DeviceFacts, LvmLabel, Take, VgFacts, may_take};

use crate::error::VgInitError;
use vglet_lvm::tags::VG_INIT_PREFIX;

use crate::request::{Request, SystemIdWish};
use crate::state::{DeviceState, LockEnv, Presence, State, VgState};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `wipefs --all`; `destroys` says what, for the operator, before it happens.
    Wipe {
        device: String,
        signatures: Vec<Signature>,
        destroys: String,
    },
    CreatePvs {
        devices: Vec<String>,
    },
    CreateVg {
        devices: Vec<String>,
        tags: Vec<String>,
        lock_type: Option<LockType>,
    },
    ExtendVg {
        devices: Vec<String>,
    },
    LockStart,
    SetSystemId(String),
    AddTags(Vec<String>),
    DelTags(Vec<String>),
    CreateThinPool {
        name: String,
        size: PoolSize,
    },
    /// `pvchange --addtag vglet.fast`: these PVs are the VG's fast tier.
    TagFast {
        devices: Vec<String>,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Wipe {
                device, destroys, ..
            } => {
                write!(f, "wipe {device}: destroys {destroys}")
            }
            Action::CreatePvs { devices } => write!(f, "pvcreate {}", devices.join(" ")),
            Action::CreateVg {
                devices,
                tags,
                lock_type,
            } => {
                write!(f, "vgcreate")?;
                if let Some(l) = lock_type {
                    write!(f, " --shared --locktype {l}")?;
                }
                write!(f, " (tags {}) on {}", tags.join(","), devices.join(" "))
            }
            Action::ExtendVg { devices } => write!(f, "vgextend with {}", devices.join(" ")),
            Action::LockStart => write!(f, "start the VG's lockspace (vgchange --lockstart)"),
            Action::SetSystemId(id) => write!(f, "set system ID {id}"),
            Action::AddTags(t) => write!(f, "add tags {}", t.join(",")),
            Action::DelTags(t) => write!(f, "remove stale tags {}", t.join(",")),
            Action::CreateThinPool { name, size } => {
                let size = match size {
                    PoolSize::PercentOfVg(p) => format!("{p}% of the VG"),
                    PoolSize::PercentOfFree(p) => format!("{p}% of its free space"),
                    PoolSize::Bytes(b) => format!("{b} bytes"),
                };
                write!(f, "create thin pool {name} ({size})")
            }
            Action::TagFast { devices } => write!(
                f,
                "tag {} {FAST_PV_TAG} (the fast tier, for volume caches)",
                devices.join(" ")
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Extended,
    /// Tags, system ID, lockspace or thin pool changed; no new devices.
    Updated,
    Unchanged,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub outcome: Outcome,
    /// Devices that become PVs of the VG, as requested.
    pub added: Vec<String>,
    pub wiped: Vec<String>,
}

fn refused(problems: Vec<String>) -> VgInitError {
    VgInitError::Refused(problems.join("\n"))
}

pub fn plan(req: &Request, st: &State) -> Result<Plan, VgInitError> {
    if let Some(lt) = req.lock_type {
        let env = st
            .lock
            .as_ref()
            .ok_or_else(|| VgInitError::Failed("lock manager state was not read".into()))?;
        let problems = lock_problems(lt, env);
        if !problems.is_empty() {
            return Err(refused(problems));
        }
    }
    if let Some(vg) = &st.vg {
        check_shape(req, vg)?;
    }
    let system_id = system_id_action(req, st)?;

    let mut actions = Vec::new();
    let mut wiped = Vec::new();
    let mut new_pvs = Vec::new(); // need pvcreate
    let mut added = Vec::new(); // become members
    let mut problems = Vec::new();
    let mut missing = Vec::new();
    let wipe_set: Vec<&str> = st.devices.iter().map(|d| d.canonical.as_str()).collect();
    for dev in &st.devices {
        if dev.pv_vg.as_deref() == Some(req.vg.as_str()) {
            continue;
        }
        match classify(req, st, dev, &wipe_set) {
            Use::Blank => {
                new_pvs.push(dev.path.clone());
                added.push(dev.path.clone());
            }
            Use::Member => {}
            Use::AfterWipe(destroys) => {
                actions.push(Action::Wipe {
                    device: dev.path.clone(),
                    signatures: dev.signatures.clone(),
                    destroys,
                });
                wiped.push(dev.path.clone());
                new_pvs.push(dev.path.clone());
                added.push(dev.path.clone());
            }
            Use::Missing(why) => missing.push(why),
            Use::Never(why) => problems.push(why),
        }
    }
    if !problems.is_empty() {
        problems.extend(missing);
        return Err(refused(problems));
    }
    if !missing.is_empty() {
        return Err(VgInitError::Failed(missing.join("\n")));
    }
    let shared = req.lock_type.is_some();
    // vg-init's own tags plus this host's sanlock host tag, which replaces an older one for
    // the same host_id (a node rebuilt under another name keeps its host_id).
    let mut want_tags = req.tags.clone();
    let host_tag = sanlock_host_tag_wanted(req, st);
    want_tags.extend(host_tag.as_ref().map(|(_, tag)| tag.clone()));

    // Fast devices whose PV lacks the tag: new PVs, and PVs of the VG an earlier run (or
    // the operator) added without it.
    let untagged_fast: Vec<String> = st
        .devices
        .iter()
        .filter(|d| d.requested_as_any(&req.fast_devices))
        .filter(|d| !d.pv_tags.iter().any(|t| t == FAST_PV_TAG))
        .map(|d| d.path.clone())
        .collect();
    let tag_fast = (!untagged_fast.is_empty()).then_some(Action::TagFast {
        devices: untagged_fast,
    });

    let outcome;
    match &st.vg {
        None => {
            if added.is_empty() {
                return Err(VgInitError::Failed(format!(
                    "VG {} does not exist and no device to create it from was given \
                     (the inventory lists none; see its `skipped` reasons)",
                    req.vg
                )));
            }
            // A shared VG's vgcreate initialises its PVs: before the first shared VG
            // exists there is no global lock, and a separate pvcreate fails.
            if !shared && !new_pvs.is_empty() {
                actions.push(Action::CreatePvs { devices: new_pvs });
            }
            actions.push(Action::CreateVg {
                devices: added.clone(),
                tags: want_tags.clone(),
                lock_type: req.lock_type,
            });
            if shared {
                actions.push(Action::LockStart);
            }
            actions.extend(tag_fast);
            if let Some(pool) = &req.thin_pool {
                actions.push(Action::CreateThinPool {
                    name: pool.name.clone(),
                    size: pool.size,
                });
            }
            outcome = Outcome::Created;
        }
        Some(vg) => {
            let mut changes = Vec::new();
            // Nothing in a shared VG can change before its lockspace runs here.
            if vg.is_shared() && !lockspace_started(st, &req.vg) {
                changes.push(Action::LockStart);
            }
            if let Some(id) = system_id {
                changes.push(Action::SetSystemId(id));
            }
            if !new_pvs.is_empty() {
                changes.push(Action::CreatePvs { devices: new_pvs });
            }
            if !added.is_empty() {
                changes.push(Action::ExtendVg {
                    devices: added.clone(),
                });
            }
            changes.extend(tag_fast);
            let stale: Vec<String> = vg
                .tags
                .iter()
                .filter(|t| {
                    let replaced = t.starts_with(VG_INIT_PREFIX)
                        || host_tag
                            .as_ref()
                            .is_some_and(|(prefix, _)| t.starts_with(prefix.as_str()));
                    replaced && !want_tags.contains(t)
                })
                .cloned()
                .collect();
            if !stale.is_empty() {
                changes.push(Action::DelTags(stale));
            }
            let missing_tags: Vec<String> = want_tags
                .iter()
                .filter(|t| !vg.tags.contains(t))
                .cloned()
                .collect();
            if !missing_tags.is_empty() {
                changes.push(Action::AddTags(missing_tags));
            }
            if let Some(pool) = &req.thin_pool {
                match vg.lvs.iter().find(|(n, _)| *n == pool.name) {
                    None => changes.push(Action::CreateThinPool {
                        name: pool.name.clone(),
                        size: pool.size,
                    }),
                    Some((_, seg)) if seg == "thin-pool" => {}
                    Some((_, seg)) => {
                        return Err(VgInitError::Refused(format!(
                            "--thin-pool {}: VG {} already has an LV of that name, of type {seg}, not a thin pool",
                            pool.name, req.vg
                        )));
                    }
                }
            }
            outcome = if !added.is_empty() {
                Outcome::Extended
            } else if actions.is_empty() && changes.is_empty() {
                Outcome::Unchanged
            } else {
                Outcome::Updated
            };
            actions.extend(changes);
        }
    }
    Ok(Plan {
        actions,
        outcome,
        added,
        wiped,
    })
}

fn lockspace_started(st: &State, vg: &str) -> bool {
    st.lock
        .as_ref()
        .and_then(|l| l.lvmlockd.as_ref().ok())
        .is_some_and(|started| started.iter().any(|s| s == vg))
}

/// Everything that keeps this host from making or using a shared VG now, each with what
/// to do about it. Checked before anything is touched.
pub fn lock_problems(lt: LockType, env: &LockEnv) -> Vec<String> {
    let mut p = Vec::new();
    if !env.supported.contains(&lt) {
        let have: Vec<&str> = env.supported.iter().map(|t| t.as_str()).collect();
        p.push(format!(
            "lock type {lt} is not supported by this lvm: it was built with {} \
             (the Configuration line of `lvm version` has no --enable-lvmlockd-{lt})",
            if have.is_empty() {
                "no lock manager at all".to_string()
            } else {
                have.join(" and ")
            }
        ));
        return p;
    }
    if !env.use_lvmlockd {
        p.push(
            "lvm is not set up for shared VGs: set use_lvmlockd = 1 in the global section of \
             /etc/lvm/lvm.conf"
                .into(),
        );
    }
    if let Err(e) = &env.lvmlockd {
        p.push(format!(
            "lvmlockd is not running: {e}; start it (e.g. `lvmlockd -g {lt}`)"
        ));
    }
    if let Err(e) = &env.manager {
        let start = match lt {
            LockType::Sanlock => "`sanlock daemon`",
            LockType::Dlm => "dlm_controld with a corosync cluster",
            LockType::Idm => "the IDM lock manager",
        };
        p.push(format!(
            "the {lt} lock manager is not running: {e}; start {start}"
        ));
    }
    if lt == LockType::Sanlock && env.host_id == 0 {
        p.push(
            "sanlock needs a host_id (1-2000, unique per host) in /etc/lvm/lvmlocal.conf: \
             local { host_id = N }"
                .into(),
        );
    }
    p
}

/// The tag that maps this host's sanlock host_id to its node name, when both are known, with
/// the prefix every tag of that host_id shares (`vglet.sanlock-host.<id>=`).
fn sanlock_host_tag_wanted(req: &Request, st: &State) -> Option<(String, String)> {
    if req.lock_type != Some(LockType::Sanlock) {
        return None;
    }
    let node = req.node_name.as_deref()?;
    let host_id = st.lock.as_ref().map(|e| e.host_id).filter(|id| *id > 0)?;
    Some((
        vglet_lvm::tags::sanlock_host_prefix(host_id),
        vglet_lvm::tags::sanlock_host_tag(host_id, node),
    ))
}

/// The existing VG must already be what was asked for in the ways vg-init does not change.
fn check_shape(req: &Request, vg: &VgState) -> Result<(), VgInitError> {
    // A VG of one PMEM region or mode never takes namespaces of another: adding the new tag
    // beside the old one would leave the driver two contradicting answers.
    for prefix in [PMEM_MODE_PREFIX, PMEM_REGION_PREFIX] {
        let want = req.tags.iter().find(|t| t.starts_with(prefix));
        let have = vg.tags.iter().find(|t| t.starts_with(prefix));
        if let (Some(want), Some(have)) = (want, have)
            && want != have
        {
            return Err(VgInitError::Refused(format!(
                "VG {} is tagged {have}; the devices given are {want}",
                vg.name
            )));
        }
    }
    match (req.lock_type, vg.is_shared()) {
        (None, true) => Err(VgInitError::Refused(format!(
            "VG {} exists and is shared (lock type {}): run vg-init with --shared --lock-type {}",
            vg.name, vg.lock_type, vg.lock_type
        ))),
        (Some(_), false) => Err(VgInitError::Refused(format!(
            "VG {} exists as a local VG; vg-init does not convert it to a shared one \
             (vgchange --locktype is a manual step while no LV is active)",
            vg.name
        ))),
        (Some(lt), true) if vg.lock_type != lt.as_str() => Err(VgInitError::Refused(format!(
            "VG {} exists with lock type {}, not {lt}",
            vg.name, vg.lock_type
        ))),
        _ => Ok(()),
    }
}

/// `Some(id)` when an existing VG must be stamped with the host's system ID.
fn system_id_action(req: &Request, st: &State) -> Result<Option<String>, VgInitError> {
    let host = st.host_system_id.clone().flatten();
    let vg_id = st.vg.as_ref().map(|v| v.system_id.as_str());
    let want = match &req.system_id {
        SystemIdWish::Unmanaged => return Ok(None),
        SystemIdWish::Absent => {
            return match (vg_id, host) {
                (Some(id), _) if !id.is_empty() => Err(VgInitError::Refused(format!(
                    "--system-id none: VG {} has system ID {id}; clearing it is a manual step",
                    req.vg
                ))),
                (None, Some(h)) => Err(VgInitError::Refused(format!(
                    "--system-id none: this host's lvm has system ID {h}, which vgcreate would \
                     stamp on the new VG (lvm.conf global/system_id_source)"
                ))),
                _ => Ok(None),
            };
        }
        SystemIdWish::Host | SystemIdWish::Exactly(_) => {
            let Some(h) = host else {
                return Err(VgInitError::Refused(
                    "--system-id: this host has no lvm system ID. A VG stamped with an ID the \
                     host does not have is invisible to it (and to csi-driver). Set \
                     system_id_source (e.g. \"uname\") in the global section of \
                     /etc/lvm/lvm.conf first"
                        .into(),
                ));
            };
            if let SystemIdWish::Exactly(x) = &req.system_id
                && *x != h
            {
                return Err(VgInitError::Refused(format!(
                    "--system-id {x}: this host's lvm system ID is {h}; a VG with another ID \
                     would be foreign here"
                )));
            }
            h
        }
    };
    Ok(match vg_id {
        // vgcreate stamps the host's ID by itself.
        None => None,
        Some(id) if id == want => None,
        Some("") => Some(want),
        // Unreachable in practice: lvm hides VGs with another host's ID.
        Some(id) => {
            return Err(VgInitError::Refused(format!(
                "VG {} has system ID {id}, not this host's {want}",
                req.vg
            )));
        }
    })
}

enum Use {
    Blank,
    /// Already a PV of the VG (not reached: members are skipped before).
    Member,
    AfterWipe(String),
    Missing(String),
    Never(String),
}

fn sig_list(sigs: &[Signature]) -> String {
    sigs.iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn classify(req: &Request, st: &State, dev: &DeviceState, requested: &[&str]) -> Use {
    let name = if dev.path == dev.canonical {
        dev.path.clone()
    } else {
        format!("{} ({})", dev.path, dev.canonical)
    };
    match &dev.presence {
        Presence::Missing(e) => return Use::Missing(format!("{name}: not found: {e}")),
        Presence::NotBlock => return Use::Never(format!("{name}: not a block device")),
        Presence::Block => {}
    }
    // The facts in the words of the one rule disk-discover applies too.
    let label = match dev.pv_vg.as_deref() {
        Some("") => LvmLabel::Orphan,
        Some(other) => {
            let info = st.other_vgs.get(other).cloned().unwrap_or_default();
            LvmLabel::InVg(VgFacts {
                vg: other.to_string(),
                lv_count: info.lv_count,
                pvs_not_requested: info
                    .pvs
                    .into_iter()
                    .filter(|p| !requested.contains(&p.as_str()))
                    .collect(),
            })
        }
        None if dev.signatures.iter().any(|s| s.kind == "LVM2_member") => {
            LvmLabel::Unlisted("another host's system ID, or a shared VG".to_string())
        }
        None => LvmLabel::None,
    };
    let content = if dev.signatures.is_empty() {
        Content::Blank
    } else {
        Content::Data(format!("holds data: {}", sig_list(&dev.signatures)))
    };
    let facts = DeviceFacts {
        holders: &dev.holders,
        label: &label,
        content: &content,
    };
    match may_take(Some(&req.vg), req.wipe, &facts) {
        Ok(Take::Fresh) => Use::Blank,
        Ok(Take::Member) => Use::Member,
        Ok(Take::AfterWipe(what)) if what.is_empty() => Use::AfterWipe(sig_list(&dev.signatures)),
        Ok(Take::AfterWipe(what)) => {
            Use::AfterWipe(format!("{what}: {}", sig_list(&dev.signatures)))
        }
        Err(reasons) => Use::Never(
            reasons
                .iter()
                .map(|r| format!("{name}: {r}"))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::request::{ThinPoolWish, version_tag};
    use crate::state::OtherVg;
    use vglet_lvm::tags::MANAGED_TAG;

    fn req(devices: &[&str]) -> Request {
        Request {
            vg: "vg0".into(),
            devices: devices.iter().map(|d| d.to_string()).collect(),
            fast_devices: vec![],
            tags: vec![MANAGED_TAG.into(), version_tag(), "team=a".into()],
            lock_type: None,
            node_name: None,
            system_id: SystemIdWish::Unmanaged,
            thin_pool: None,
            metadata_size: 16 << 20,
            wipe: false,
            lockstart_timeout: Duration::from_secs(120),
            dry_run: false,
            nothing_to_do_exit_code: 4,
        }
    }

    fn blank(path: &str) -> DeviceState {
        DeviceState {
            path: path.into(),
            canonical: path.into(),
            presence: Presence::Block,
            pv_vg: None,
            signatures: vec![],
            holders: vec![],
            aliases: vec![path.into()],
            pv_tags: vec![],
        }
    }

    fn sig(kind: &str) -> Signature {
        Signature {
            kind: kind.into(),
            offset: "0x438".into(),
            uuid: Some("u-1".into()),
            label: None,
        }
    }

    fn with_sig(path: &str, kind: &str) -> DeviceState {
        DeviceState {
            signatures: vec![sig(kind)],
            ..blank(path)
        }
    }

    fn pv_of(path: &str, vg: &str) -> DeviceState {
        DeviceState {
            pv_vg: Some(vg.into()),
            signatures: if vg == "vg0" {
                vec![]
            } else {
                vec![sig("LVM2_member")]
            },
            ..blank(path)
        }
    }

    fn existing(tags: &[&str], pvs: &[&str]) -> VgState {
        VgState {
            name: "vg0".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            pvs: pvs.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        }
    }

    fn full_tags() -> Vec<String> {
        vec![MANAGED_TAG.into(), version_tag(), "team=a".into()]
    }

    fn lock_ok() -> LockEnv {
        LockEnv {
            supported: vec![LockType::Sanlock, LockType::Dlm],
            use_lvmlockd: true,
            host_id: 1,
            lvmlockd: Ok(vec![]),
            manager: Ok(()),
        }
    }

    #[test]
    fn creates_a_local_vg_from_blank_devices() {
        let st = State {
            devices: vec![blank("/dev/vda"), blank("/dev/vdb")],
            ..Default::default()
        };
        let p = plan(&req(&["/dev/vda", "/dev/vdb"]), &st).unwrap();
        assert_eq!(p.outcome, Outcome::Created);
        assert_eq!(p.added, vec!["/dev/vda", "/dev/vdb"]);
        assert_eq!(
            p.actions,
            vec![
                Action::CreatePvs {
                    devices: vec!["/dev/vda".into(), "/dev/vdb".into()]
                },
                Action::CreateVg {
                    devices: vec!["/dev/vda".into(), "/dev/vdb".into()],
                    tags: full_tags(),
                    lock_type: None
                },
            ]
        );
    }

    #[test]
    fn fast_devices_join_the_vg_and_are_tagged_once() {
        // A new VG of a slow disk and a fast one: the fast PV is tagged after vgcreate.
        let mut r = req(&["/dev/vda", "/dev/nvme0n1"]);
        r.fast_devices = vec!["/dev/nvme0n1".into()];
        let st = State {
            devices: vec![blank("/dev/vda"), blank("/dev/nvme0n1")],
            ..Default::default()
        };
        let p = plan(&r, &st).unwrap();
        assert_eq!(p.outcome, Outcome::Created);
        assert_eq!(
            p.actions,
            vec![
                Action::CreatePvs {
                    devices: vec!["/dev/vda".into(), "/dev/nvme0n1".into()]
                },
                Action::CreateVg {
                    devices: vec!["/dev/vda".into(), "/dev/nvme0n1".into()],
                    tags: full_tags(),
                    lock_type: None
                },
                Action::TagFast {
                    devices: vec!["/dev/nvme0n1".into()]
                },
            ]
        );
        assert!(p.actions[2].to_string().contains("vglet.fast"));

        // Re-run: the PV carries the tag, nothing to do.
        let vg = existing(&[MANAGED_TAG, &version_tag(), "team=a"], &["/dev/vda"]);
        let tagged = DeviceState {
            pv_tags: vec![FAST_PV_TAG.into()],
            ..pv_of("/dev/nvme0n1", "vg0")
        };
        let st = State {
            vg: Some(vg.clone()),
            devices: vec![pv_of("/dev/vda", "vg0"), tagged],
            ..Default::default()
        };
        let p = plan(&r, &st).unwrap();
        assert_eq!(p.outcome, Outcome::Unchanged);
        assert!(p.actions.is_empty());

        // A PV of the VG named fast later (or whose tagging a crash cut short) is tagged
        // without being added again; one named by two paths is tagged once.
        let mut r2 = req(&["/dev/vda", "/dev/disk/by-id/nvme-x", "/dev/nvme0n1"]);
        r2.fast_devices = vec!["/dev/nvme0n1".into()];
        let aliased = DeviceState {
            path: "/dev/disk/by-id/nvme-x".into(),
            canonical: "/dev/nvme0n1".into(),
            aliases: vec!["/dev/disk/by-id/nvme-x".into(), "/dev/nvme0n1".into()],
            ..pv_of("/dev/nvme0n1", "vg0")
        };
        let st = State {
            vg: Some(vg),
            devices: vec![pv_of("/dev/vda", "vg0"), aliased],
            ..Default::default()
        };
        let p = plan(&r2, &st).unwrap();
        assert_eq!(p.outcome, Outcome::Updated);
        assert_eq!(
            p.actions,
            vec![Action::TagFast {
                devices: vec!["/dev/disk/by-id/nvme-x".into()]
            }]
        );
        // A slow PV is never tagged, whatever its neighbours.
        assert!(!p.actions.iter().any(|a| a.to_string().contains("/dev/vda")));
    }

    #[test]
    fn rerun_is_unchanged_and_new_device_extends() {
        let vg = existing(
            &[MANAGED_TAG, &version_tag(), "team=a", "someone-else"],
            &["/dev/vda"],
        );
        let st = State {
            vg: Some(vg.clone()),
            devices: vec![pv_of("/dev/vda", "vg0")],
            ..Default::default()
        };
        let p = plan(&req(&["/dev/vda"]), &st).unwrap();
        assert_eq!(p.outcome, Outcome::Unchanged);
        assert!(p.actions.is_empty());

        let st = State {
            vg: Some(vg),
            devices: vec![pv_of("/dev/vda", "vg0"), blank("/dev/vdb")],
            ..Default::default()
        };
        let p = plan(&req(&["/dev/vda", "/dev/vdb"]), &st).unwrap();
        assert_eq!(p.outcome, Outcome::Extended);
        assert_eq!(
            p.actions,
            vec![
                Action::CreatePvs {
                    devices: vec!["/dev/vdb".into()]
                },
                Action::ExtendVg {
                    devices: vec!["/dev/vdb".into()]
                },
            ]
        );
    }

    #[test]
    fn tags_are_added_and_a_stale_version_tag_replaced() {
        let st = State {
            vg: Some(existing(
                &[MANAGED_TAG, "vglet.vg-init=0.0.1", "keep"],
                &["/dev/vda"],
            )),
            ..Default::default()
        };
        let p = plan(&req(&[]), &st).unwrap();
        assert_eq!(p.outcome, Outcome::Updated);
        assert_eq!(
            p.actions,
            vec![
                Action::DelTags(vec!["vglet.vg-init=0.0.1".into()]),
                Action::AddTags(vec![version_tag(), "team=a".into()]),
            ]
        );
    }

    #[test]
    fn devices_with_data_or_other_vgs_are_refused_all_at_once() {
        let mut st = State {
            devices: vec![
                blank("/dev/vda"),
                with_sig("/dev/vde", "ext4"),
                pv_of("/dev/vdf", "other"),
            ],
            ..Default::default()
        };
        st.other_vgs.insert(
            "other".into(),
            OtherVg {
                lv_count: 0,
                pvs: vec!["/dev/vdf".into()],
            },
        );
        let e = plan(&req(&["/dev/vda", "/dev/vde", "/dev/vdf"]), &st).unwrap_err();
        let VgInitError::Refused(m) = e else {
            panic!("{e:?}")
        };
        assert!(
            m.contains(
                "/dev/vde: holds data: ext4 at offset 0x438 (UUID u-1); not taken without --wipe"
            ),
            "{m}"
        );
        assert!(
            m.contains("/dev/vdf: a PV of VG other (no LVs); not taken without --wipe"),
            "{m}"
        );
        assert!(!m.contains("/dev/vda"), "{m}");
    }

    #[test]
    fn wipe_takes_data_devices_and_empty_vgs_but_never_vgs_with_lvs() {
        let mut r = req(&["/dev/vde", "/dev/vdf"]);
        r.wipe = true;
        let mut st = State {
            vg: Some(existing(
                &[MANAGED_TAG, &version_tag(), "team=a"],
                &["/dev/vda"],
            )),
            devices: vec![with_sig("/dev/vde", "ext4"), pv_of("/dev/vdf", "empty")],
            ..Default::default()
        };
        st.other_vgs.insert(
            "empty".into(),
            OtherVg {
                lv_count: 0,
                pvs: vec!["/dev/vdf".into()],
            },
        );
        let p = plan(&r, &st).unwrap();
        assert_eq!(p.wiped, vec!["/dev/vde", "/dev/vdf"]);
        assert_eq!(p.outcome, Outcome::Extended);
        assert!(
            matches!(&p.actions[0], Action::Wipe { device, destroys, .. }
            if device == "/dev/vde" && destroys == "ext4 at offset 0x438 (UUID u-1)")
        );
        assert!(
            matches!(&p.actions[1], Action::Wipe { destroys, .. } if destroys.contains("empty VG empty"))
        );
        assert_eq!(
            p.actions[2..],
            [
                Action::CreatePvs {
                    devices: vec!["/dev/vde".into(), "/dev/vdf".into()]
                },
                Action::ExtendVg {
                    devices: vec!["/dev/vde".into(), "/dev/vdf".into()]
                }
            ]
        );

        st.other_vgs.get_mut("empty").unwrap().lv_count = 2;
        let e = plan(&r, &st).unwrap_err();
        assert!(
            matches!(&e, VgInitError::Refused(m) if m.contains("which has 2 LV(s); never taken, not even with --wipe")),
            "{e:?}"
        );

        st.other_vgs.get_mut("empty").unwrap().lv_count = 0;
        st.other_vgs
            .get_mut("empty")
            .unwrap()
            .pvs
            .push("/dev/vdz".into());
        let e = plan(&r, &st).unwrap_err();
        assert!(
            matches!(&e, VgInitError::Refused(m) if m.contains("also has /dev/vdz")),
            "{e:?}"
        );
    }

    #[test]
    fn invisible_pvs_and_held_devices_are_never_wiped() {
        let mut r = req(&["/dev/vdg", "/dev/vdh"]);
        r.wipe = true;
        let st = State {
            devices: vec![
                with_sig("/dev/vdg", "LVM2_member"),
                DeviceState {
                    holders: vec!["dm-3".into()],
                    ..blank("/dev/vdh")
                },
            ],
            ..Default::default()
        };
        let VgInitError::Refused(m) = plan(&r, &st).unwrap_err() else {
            panic!()
        };
        assert!(
            m.contains("/dev/vdg: an LVM PV of a VG this host cannot see"),
            "{m}"
        );
        assert!(m.contains("/dev/vdh: in use by dm-3"), "{m}");
    }

    /// The orphan PV: what disk-discover refuses, vg-init refuses too; only --wipe takes
    /// it, saying it destroys the label, and then pvcreates it afresh.
    #[test]
    fn orphan_pvs_are_taken_only_with_wipe() {
        let st = State {
            devices: vec![pv_of("/dev/vda", ""), blank("/dev/vdb")],
            ..Default::default()
        };
        let mut r = req(&["/dev/vda", "/dev/vdb"]);
        let VgInitError::Refused(m) = plan(&r, &st).unwrap_err() else {
            panic!()
        };
        assert!(m.starts_with("/dev/vda: an orphan LVM PV"), "{m}");
        assert!(m.ends_with("not taken without --wipe"), "{m}");
        r.wipe = true;
        let p = plan(&r, &st).unwrap();
        assert_eq!(
            p.actions[0],
            Action::Wipe {
                device: "/dev/vda".into(),
                signatures: vec![sig("LVM2_member")],
                destroys: "an orphan PV label: LVM2_member at offset 0x438 (UUID u-1)".into(),
            }
        );
        assert_eq!(
            p.actions[1],
            Action::CreatePvs {
                devices: vec!["/dev/vda".into(), "/dev/vdb".into()]
            }
        );
        assert_eq!(p.added, vec!["/dev/vda", "/dev/vdb"]);
    }

    /// disk-discover and vg-init (without --wipe) give the same answer on the same device:
    /// both ask vglet_devices::taking. Each case is a device as vg-init sees it, and as
    /// disk-discover does (blkid's signature, lvm's PV status, sysfs holders).
    #[test]
    fn the_same_cases_as_disk_discover() {
        use vglet_devices::BlockDevice;
        use vglet_devices::safety::{PvStatus, SafetyInput, SignatureCheck, assess};
        use vglet_devices::sysfs::fake::block_device;
        use vglet_mount::Signature as Blkid;
        let lvm_label = || {
            SignatureCheck::Found(Blkid::Content {
                type_name: "LVM2_member".into(),
                usage: Some("raid".into()),
            })
        };
        let ext4 = SignatureCheck::Found(Blkid::Content {
            type_name: "ext4".into(),
            usage: Some("filesystem".into()),
        });
        let in_vg = |vg: &str, lv_count| PvStatus::InVg {
            vg: vg.into(),
            vg_uuid: String::new(),
            lv_count,
        };
        let held = DeviceState {
            holders: vec!["dm-3".into()],
            ..blank("/dev/vdh")
        };
        // (vg-init's device, its other VG's LV count, blkid, lvm, holders, taken?)
        let cases: Vec<(
            DeviceState,
            u64,
            SignatureCheck,
            PvStatus,
            Vec<String>,
            bool,
        )> = vec![
            (
                blank("/dev/vda"),
                0,
                SignatureCheck::Blank,
                PvStatus::NotPv,
                vec![],
                true,
            ),
            (
                with_sig("/dev/vdb", "ext4"),
                0,
                ext4,
                PvStatus::NotPv,
                vec![],
                false,
            ),
            (
                pv_of("/dev/vdc", ""),
                0,
                lvm_label(),
                PvStatus::Orphan,
                vec![],
                false,
            ),
            (
                pv_of("/dev/vdd", "other"),
                2,
                lvm_label(),
                in_vg("other", 2),
                vec![],
                false,
            ),
            (
                pv_of("/dev/vde", "other"),
                0,
                lvm_label(),
                in_vg("other", 0),
                vec![],
                false,
            ),
            (
                with_sig("/dev/vdf", "LVM2_member"),
                0,
                lvm_label(),
                PvStatus::Unknown("another host's system ID, or a shared VG".into()),
                vec![],
                false,
            ),
            (
                held,
                0,
                SignatureCheck::Blank,
                PvStatus::NotPv,
                vec!["dm-3".into()],
                false,
            ),
        ];
        for (dev, lv_count, blkid, pv, holders, taken) in cases {
            let mut st = State::default();
            if let Some(vg) = dev.pv_vg.clone().filter(|v| !v.is_empty()) {
                st.other_vgs.insert(
                    vg,
                    OtherVg {
                        lv_count,
                        pvs: vec![dev.path.clone()],
                    },
                );
            }
            let path = dev.path.clone();
            st.devices = vec![dev];
            let vg_init = plan(&req(&[&path]), &st);
            let bd = BlockDevice {
                holders,
                ..block_device(path.trim_start_matches("/dev/"), 252, 0)
            };
            let verdict = assess(&SafetyInput {
                device: &bd,
                mounts: &[],
                signature: &blkid,
                pv: &pv,
                target_vg: Some("vg0"),
                min_size: 0,
                holder_dm_uuid: &|_| None,
            });
            assert_eq!(verdict.is_safe(), taken, "{path}: {verdict:?}");
            match vg_init {
                Ok(_) => assert!(taken, "{path}: vg-init took it"),
                Err(VgInitError::Refused(m)) => {
                    assert!(!taken, "{path}: vg-init refused: {m}");
                    // The rule's words are the same; only data is described by each in its
                    // own words ("holds data: ext4 at offset ..." / "holds an ext4 filesystem").
                    let norm = |r: &str| match r.rsplit_once("; ") {
                        Some((_, rule)) if r.starts_with("holds") => rule.to_string(),
                        _ => r.to_string(),
                    };
                    let ours: Vec<String> = m
                        .lines()
                        .map(|l| norm(l.split_once(": ").unwrap().1))
                        .collect();
                    let theirs: Vec<String> = verdict.reasons.iter().map(|r| norm(r)).collect();
                    assert_eq!(ours, theirs, "{path}");
                }
                Err(e) => panic!("{path}: {e:?}"),
            }
        }
    }

    #[test]
    fn missing_devices_fail_and_nothing_to_create_from_fails() {
        let st = State {
            devices: vec![DeviceState {
                presence: Presence::Missing("No such file or directory".into()),
                ..blank("/dev/nope")
            }],
            ..Default::default()
        };
        assert!(
            matches!(plan(&req(&["/dev/nope"]), &st), Err(VgInitError::Failed(m)) if m.contains("/dev/nope: not found"))
        );
        assert!(
            matches!(plan(&req(&[]), &State::default()), Err(VgInitError::Failed(m)) if m.contains("does not exist"))
        );
    }

    #[test]
    fn shared_vg_is_created_by_vgcreate_alone_then_lockstarted() {
        let mut r = req(&["/dev/vdc"]);
        r.lock_type = Some(LockType::Sanlock);
        r.thin_pool = Some(ThinPoolWish {
            name: "pool".into(),
            size: PoolSize::PercentOfVg(80),
        });
        let st = State {
            devices: vec![blank("/dev/vdc")],
            lock: Some(lock_ok()),
            ..Default::default()
        };
        let p = plan(&r, &st).unwrap();
        assert_eq!(
            p.actions,
            vec![
                Action::CreateVg {
                    devices: vec!["/dev/vdc".into()],
                    tags: full_tags(),
                    lock_type: Some(LockType::Sanlock)
                },
                Action::LockStart,
                Action::CreateThinPool {
                    name: "pool".into(),
                    size: PoolSize::PercentOfVg(80)
                },
            ]
        );
    }

    #[test]
    fn shared_preflight_refuses_before_anything() {
        let mut r = req(&["/dev/vdc"]);
        r.lock_type = Some(LockType::Sanlock);
        let mut env = lock_ok();
        env.use_lvmlockd = false;
        env.lvmlockd = Err("lvmlockd does not answer".into());
        env.manager = Err("sanlock client status failed".into());
        env.host_id = 0;
        let st = State {
            devices: vec![blank("/dev/vdc")],
            lock: Some(env),
            ..Default::default()
        };
        let VgInitError::Refused(m) = plan(&r, &st).unwrap_err() else {
            panic!()
        };
        for want in [
            "use_lvmlockd = 1",
            "lvmlockd is not running",
            "sanlock lock manager is not running",
            "host_id",
        ] {
            assert!(m.contains(want), "{want} in {m}");
        }
        r.lock_type = Some(LockType::Idm);
        let VgInitError::Refused(m) = plan(&r, &st).unwrap_err() else {
            panic!()
        };
        assert!(
            m.starts_with(
                "lock type idm is not supported by this lvm: it was built with sanlock and dlm"
            ),
            "{m}"
        );
    }

    #[test]
    fn existing_shared_vg_gets_its_lockspace_started() {
        let mut r = req(&[]);
        r.lock_type = Some(LockType::Sanlock);
        let mut vg = existing(&[MANAGED_TAG, &version_tag(), "team=a"], &["/dev/vdc"]);
        vg.lock_type = "sanlock".into();
        let mut st = State {
            vg: Some(vg),
            lock: Some(lock_ok()),
            ..Default::default()
        };
        let p = plan(&r, &st).unwrap();
        assert_eq!(
            (p.outcome, p.actions.clone()),
            (Outcome::Updated, vec![Action::LockStart])
        );
        st.lock.as_mut().unwrap().lvmlockd = Ok(vec!["vg0".into()]);
        assert_eq!(plan(&r, &st).unwrap().outcome, Outcome::Unchanged);
        // Shape mismatches.
        r.lock_type = Some(LockType::Dlm);
        assert!(
            matches!(plan(&r, &st), Err(VgInitError::Refused(m)) if m.contains("lock type sanlock, not dlm"))
        );
        r.lock_type = None;
        assert!(
            matches!(plan(&r, &st), Err(VgInitError::Refused(m)) if m.contains("--shared --lock-type sanlock"))
        );
        st.vg.as_mut().unwrap().lock_type = String::new();
        r.lock_type = Some(LockType::Sanlock);
        assert!(
            matches!(plan(&r, &st), Err(VgInitError::Refused(m)) if m.contains("does not convert"))
        );
    }

    #[test]
    fn sanlock_vg_is_tagged_with_this_hosts_node_name() {
        let mut r = req(&["/dev/vdc"]);
        r.lock_type = Some(LockType::Sanlock);
        r.node_name = Some("worker-1".into());
        let st = State {
            devices: vec![blank("/dev/vdc")],
            lock: Some(lock_ok()),
            ..Default::default()
        };
        let host_tag = vglet_lvm::tags::sanlock_host_tag(1, "worker-1");
        let Action::CreateVg { tags, .. } = &plan(&r, &st).unwrap().actions[0] else {
            panic!()
        };
        assert!(tags.contains(&host_tag), "{tags:?}");

        // Another host joining: only its own tag is added; a stale tag of the same host_id
        // (the node was rebuilt under another name) is replaced, other hosts' are kept.
        let other = vglet_lvm::tags::sanlock_host_tag(2, "worker-2");
        let stale = vglet_lvm::tags::sanlock_host_tag(1, "old-name");
        let mut vg = existing(
            &[MANAGED_TAG, &version_tag(), "team=a", &other, &stale],
            &["/dev/vdc"],
        );
        vg.lock_type = "sanlock".into();
        let mut env = lock_ok();
        env.lvmlockd = Ok(vec!["vg0".into()]);
        let mut st = State {
            vg: Some(vg),
            lock: Some(env),
            ..Default::default()
        };
        r.devices.clear();
        assert_eq!(
            plan(&r, &st).unwrap().actions,
            vec![
                Action::DelTags(vec![stale]),
                Action::AddTags(vec![host_tag.clone()])
            ]
        );
        st.vg.as_mut().unwrap().tags = vec![
            MANAGED_TAG.into(),
            version_tag(),
            "team=a".into(),
            other,
            host_tag,
        ];
        assert_eq!(plan(&r, &st).unwrap().outcome, Outcome::Unchanged);
        // dlm has no host_id to map; without --node-name nothing is tagged.
        r.node_name = None;
        assert_eq!(plan(&r, &st).unwrap().outcome, Outcome::Unchanged);
    }

    #[test]
    fn system_id() {
        let mut r = req(&["/dev/vda"]);
        r.system_id = SystemIdWish::Host;
        let mut st = State {
            devices: vec![blank("/dev/vda")],
            host_system_id: Some(None),
            ..Default::default()
        };
        assert!(
            matches!(plan(&r, &st), Err(VgInitError::Refused(m)) if m.contains("no lvm system ID"))
        );
        st.host_system_id = Some(Some("node1".into()));
        assert_eq!(plan(&r, &st).unwrap().outcome, Outcome::Created);
        r.system_id = SystemIdWish::Exactly("node2".into());
        assert!(matches!(plan(&r, &st), Err(VgInitError::Refused(m)) if m.contains("is node1")));
        r.system_id = SystemIdWish::Absent;
        assert!(matches!(plan(&r, &st), Err(VgInitError::Refused(m)) if m.contains("would stamp")));

        r.system_id = SystemIdWish::Host;
        st.vg = Some(existing(
            &[MANAGED_TAG, &version_tag(), "team=a"],
            &["/dev/vda"],
        ));
        st.devices = vec![pv_of("/dev/vda", "vg0")];
        assert_eq!(
            plan(&r, &st).unwrap().actions,
            vec![Action::SetSystemId("node1".into())]
        );
        st.vg.as_mut().unwrap().system_id = "node1".into();
        assert_eq!(plan(&r, &st).unwrap().outcome, Outcome::Unchanged);
    }

    #[test]
    fn thin_pool_once_and_never_over_another_lv() {
        let mut r = req(&[]);
        r.thin_pool = Some(ThinPoolWish {
            name: "pool".into(),
            size: PoolSize::Bytes(1 << 30),
        });
        let mut vg = existing(&[MANAGED_TAG, &version_tag(), "team=a"], &["/dev/vda"]);
        let st = State {
            vg: Some(vg.clone()),
            ..Default::default()
        };
        assert_eq!(
            plan(&r, &st).unwrap().actions,
            vec![Action::CreateThinPool {
                name: "pool".into(),
                size: PoolSize::Bytes(1 << 30)
            }]
        );
        vg.lvs = vec![("pool".into(), "thin-pool".into())];
        let st = State {
            vg: Some(vg.clone()),
            other_vgs: BTreeMap::new(),
            ..Default::default()
        };
        assert_eq!(plan(&r, &st).unwrap().outcome, Outcome::Unchanged);
        vg.lvs = vec![("pool".into(), "linear".into())];
        let st = State {
            vg: Some(vg),
            ..Default::default()
        };
        assert!(
            matches!(plan(&r, &st), Err(VgInitError::Refused(m)) if m.contains("of type linear"))
        );
    }

    #[test]
    fn pmem_tags_are_added_to_an_old_vg_but_never_contradict_it() {
        let mut r = req(&[]);
        r.tags.extend([
            "vglet.pmem=fsdax".into(),
            "vglet.pmem-region=region0".into(),
        ]);
        // A VG made before vg-init wrote the region tag: it is added.
        let st = State {
            vg: Some(existing(
                &[MANAGED_TAG, &version_tag(), "team=a", "vglet.pmem=fsdax"],
                &["/dev/pmem0"],
            )),
            ..Default::default()
        };
        let p = plan(&r, &st).unwrap();
        assert_eq!(
            p.actions,
            vec![Action::AddTags(vec!["vglet.pmem-region=region0".into()])]
        );
        for other in ["vglet.pmem=sector", "vglet.pmem-region=region1"] {
            let st = State {
                vg: Some(existing(&[MANAGED_TAG, other], &["/dev/pmem0"])),
                ..Default::default()
            };
            match plan(&r, &st) {
                Err(VgInitError::Refused(m)) => assert!(m.contains(other), "{m}"),
                p => panic!("{other}: {p:?}"),
            }
        }
    }
}
