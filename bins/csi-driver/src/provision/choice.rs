//! Which served VG takes a volume of a StorageClass: the one rule CreateVolume (the VG a
//! new volume goes to) and GetCapacity (the VGs whose space counts) share.

use vglet_csi_proto::v1::{Topology, TopologyRequirement};
use vglet_lvm::{LvType, Report, Vg};

use super::Served;
use crate::driver::{kind_of, segment_reaches, vg_in};
use crate::rules::error::VolumeError;
use crate::rules::layout;
use crate::rules::params::Params;
use crate::rules::pmem;

/// Why a served VG does not take volumes of a StorageClass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not the VG `volumeGroup` names.
    NotNamed,
    /// Lacks the `volumeGroupTag`.
    Tag,
    /// Of another persistent-memory mode than `pmemMode` asks (or sector without it).
    PmemMode,
    /// Has no thin pool of the `thinPool` name.
    Pool,
    /// No segment of the requested topology reaches it.
    Unreachable,
}

/// Whether a thin pool of this name is among `vg`'s LVs.
fn holds_pool(report: &Report, vg: &str, pool: &str) -> bool {
    report
        .lv(vg, pool)
        .is_some_and(|l| l.segtype == "thin-pool")
}

/// Whether any of `segments` reaches `vg` (none given: anywhere).
pub fn reachable(served: &Served<'_>, segments: &[Topology], vg: &Vg) -> bool {
    segments.is_empty()
        || segments
            .iter()
            .any(|t| segment_reaches(&t.segments, served.node_id, &vg.name, kind_of(vg)))
}

/// THE rule: why served VG `vg` of `report` cannot take a volume of `params` reachable from
/// one of `segments` (empty: from anywhere); `None` when it can. A VG the StorageClass names
/// must agree with `pmemMode` when one is asked; a VG the driver chooses by itself must be
/// of the mode asked, or ordinary or fsdax without one (see [`pmem::admits`]).
pub fn refusal(
    served: &Served<'_>,
    report: &Report,
    vg: &Vg,
    params: &Params,
    segments: &[Topology],
) -> Option<Refusal> {
    let named = params.volume_group.as_deref();
    if named.is_some_and(|n| n != vg.name) {
        return Some(Refusal::NotNamed);
    }
    if params
        .volume_group_tag
        .as_ref()
        .is_some_and(|t| !vg.tags.contains(t))
    {
        return Some(Refusal::Tag);
    }
    let mode_fits = match named {
        Some(_) => pmem::agrees(&vg.tags, params.pmem_mode),
        None => pmem::admits(&vg.tags, params.pmem_mode),
    };
    if !mode_fits {
        return Some(Refusal::PmemMode);
    }
    if let Some(pool) = thin_pool(params)
        && !holds_pool(report, &vg.name, pool)
    {
        return Some(Refusal::Pool);
    }
    if !reachable(served, segments, vg) {
        return Some(Refusal::Unreachable);
    }
    None
}

/// The pool a thin StorageClass names.
fn thin_pool(params: &Params) -> Option<&str> {
    params
        .layout
        .thin_pool
        .as_deref()
        .filter(|_| params.layout.lv_type == LvType::Thin)
}

/// The largest volume of `params`'s layout VG `vg` can hold now (what GetCapacity reports
/// for it); `None` when it holds none (no such thin pool).
pub fn largest_volume(report: &Report, vg: &Vg, params: &Params) -> Option<u64> {
    let layout = &params.layout;
    match layout.lv_type {
        // A linear LV may span PVs, so the VG's free space is its largest volume (on its
        // data PVs: a fast tier's room is for caches).
        LvType::Linear => Some(layout::max_size(report, vg, layout)),
        // What the pool can really promise, not the VG's free space.
        LvType::Thin => {
            let pool = layout.thin_pool.as_deref().unwrap_or_default();
            let usage = layout::pool_usage(report, &vg.name, pool).ok()?;
            usage.warn_if_full(&vg.name, params.thin_pool_usage_warning);
            Some(usage.promisable(params.overprovision_ratio))
        }
        _ => Some(layout::max_size(report, vg, layout)),
    }
}

/// The served VGs GetCapacity counts for `params` seen from `segments`: those [`refusal`]
/// lets through.
pub fn capacity_vgs<'r>(
    served: &Served<'_>,
    report: &'r Report,
    params: &Params,
    segments: &[Topology],
) -> Vec<&'r Vg> {
    served
        .vgs
        .iter()
        // A missing VG has no capacity; Probe reports it.
        .filter_map(|name| report.vg(name))
        .filter(|vg| refusal(served, report, vg, params, segments).is_none())
        .collect()
}

/// INVALID_ARGUMENT when `volumeGroup` names a VG this driver does not serve: decided
/// before anything is read.
pub fn check_served(served: &Served<'_>, params: &Params) -> Result<(), VolumeError> {
    match &params.volume_group {
        Some(name) if !served.serves(name) => Err(VolumeError::invalid(
            "parameters.volumeGroup",
            format!(
                "{name:?} is not served by this driver (served: {})",
                served.vgs.join(", ")
            ),
        )),
        _ => Ok(()),
    }
}

/// The rank of `vg` by the preferred topologies: the index of the first that reaches it
/// (the CSI spec: "in order from first to last"); after all of them when none does.
fn preference(served: &Served<'_>, req: Option<&TopologyRequirement>, vg: &Vg) -> usize {
    let preferred = req.map(|r| r.preferred.as_slice()).unwrap_or_default();
    preferred
        .iter()
        .position(|t| reachable(served, std::slice::from_ref(t), vg))
        .unwrap_or(preferred.len())
}

/// The VG a new volume of `params` goes to: the one `volumeGroup` names, else among the
/// served VGs [`refusal`] lets through, the one the earliest preferred topology reaches,
/// and of those the one with the most free space.
pub fn choose(
    served: &Served<'_>,
    report: &Report,
    params: &Params,
    req: Option<&TopologyRequirement>,
) -> Result<Vg, VolumeError> {
    let requisite = req.map(|r| r.requisite.as_slice()).unwrap_or_default();
    check_served(served, params)?;
    if let Some(name) = &params.volume_group {
        let vg = vg_in(report, name, &format!("volume group {name}"))?;
        return match refusal(served, report, &vg, params, requisite) {
            Some(Refusal::PmemMode) => {
                pmem::check_named(&vg, params.pmem_mode)?;
                Ok(vg)
            }
            Some(Refusal::Unreachable) => Err(unreachable(name, "")),
            // A missing pool is the sizing's INVALID_ARGUMENT naming it (see the plan).
            _ => Ok(vg),
        };
    }
    let mut best: Option<(usize, Vg)> = None;
    let mut missing = None;
    let mut refused = Vec::new();
    for name in served.vgs {
        let Some(vg) = report.vg(name) else {
            missing = Some(VolumeError::lvm(format!("volume group {name}"))(
                vglet_lvm::LvmError::VgNotFound(name.clone()),
            ));
            continue;
        };
        if let Some(why) = refusal(served, report, vg, params, requisite) {
            refused.push((why, vg));
            continue;
        }
        let rank = preference(served, req, vg);
        let better = best
            .as_ref()
            .is_none_or(|(r, b)| rank < *r || (rank == *r && vg.free > b.free));
        if better {
            best = Some((rank, vg.clone()));
        }
    }
    if let Some((_, vg)) = best {
        return Ok(vg);
    }
    // Nothing fits: the message says what kept each VG out, the most specific first.
    if let Some((_, vg)) = refused.iter().find(|(w, _)| *w == Refusal::Unreachable) {
        return Err(unreachable(&vg.name, ""));
    }
    let tag_or_pool = params.volume_group_tag.is_some() || thin_pool(params).is_some();
    if !tag_or_pool && !refused.is_empty() {
        let vgs: Vec<Vg> = refused.iter().map(|(_, vg)| (*vg).clone()).collect();
        return Err(pmem::none_of_mode(params.pmem_mode, &vgs));
    }
    if tag_or_pool && (!refused.is_empty() || missing.is_none()) {
        let mut want = Vec::new();
        if let Some(t) = &params.volume_group_tag {
            want.push(format!("carries tag {t:?}"));
        }
        if let Some(p) = thin_pool(params) {
            want.push(format!("holds thin pool {p:?}"));
        }
        match params.pmem_mode {
            Some(m) => want.push(format!("is {m} persistent memory")),
            None => want.push("is not sector-mode persistent memory".to_string()),
        }
        return Err(VolumeError::invalid(
            "parameters",
            format!(
                "no served volume group {} (served: {})",
                want.join(" and "),
                served.vgs.join(", ")
            ),
        ));
    }
    Err(missing.unwrap_or_else(|| VolumeError::Precondition("no volume group is served".into())))
}

/// RESOURCE_EXHAUSTED (the CSI spec's "Unable to provision in `accessible_topology`").
pub fn unreachable(vg: &str, why: &str) -> VolumeError {
    VolumeError::Unreachable(format!(
        "accessibility_requirements: no requisite topology can reach volume group {vg}{why}"
    ))
}
