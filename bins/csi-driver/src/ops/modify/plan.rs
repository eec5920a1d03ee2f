//! ControllerModifyVolume's pure plan: from what lvm reported of the volume (its LV, VG,
//! PVs and images) and what the class asks ([`Mutable`]), the lvconvert steps that get there,
//! or the rule that forbids it. No step at all means the volume already is what is asked:
//! the RPC's idempotent OK, also after a retry of a modify that was interrupted once its
//! lvconvert had run.

use vglet_lvm::cache::{self as lvcache, CacheMode};
use vglet_lvm::tags::VgPmem;
use vglet_lvm::{Layout, Lv, LvImages, LvType, Pv, Vg};

use crate::driver::OwnedVolume;
use crate::rules::cache::{self, CacheWish};
use crate::rules::error::VolumeError;
use crate::rules::layout;
use crate::rules::mutable::{self, Mutable, Redundancy};

/// What the plan decides on: one read of the LV with its VG and PVs, and one of its images.
#[derive(Debug, Clone, Copy)]
pub struct Now<'a> {
    pub volume: &'a OwnedVolume,
    pub vg: &'a Vg,
    /// The VG's PVs.
    pub pvs: &'a [&'a Pv],
    pub images: &'a LvImages,
    /// The volume's cache LV while it is a visible LV, not attached (made by a modify that
    /// was interrupted before its attach); read only when the class names a cache.
    pub cache_lv: Option<&'a Lv>,
    /// The size of the cachevol attached to the volume; read only when the class names a
    /// `cacheSize` and a cache is attached.
    pub cache_size: Option<u64>,
}

/// One lvconvert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// linear → raid1 with `mirrors` new images: `lvconvert --type raid1 -m N LV [PV...]`,
    /// the new images on `pvs`, the VG's data PVs when it has a fast tier (empty: any).
    ToRaid1 { mirrors: u32, pvs: Vec<String> },
    /// raid1 gains images: `lvconvert -m N LV [PV...]`; lvm places them on PVs without a
    /// copy, among `pvs` as for [`Step::ToRaid1`].
    AddMirrors {
        from: u32,
        to: u32,
        pvs: Vec<String>,
    },
    /// raid1 loses the images on `drop_pvs` (`to` = 0: it becomes linear on the kept
    /// image's PVs): `lvconvert -m N LV PV...`.
    DropMirrors {
        from: u32,
        to: u32,
        /// The images that go (for the log) and the PVs lvm is told to free.
        dropped: Vec<String>,
        drop_pvs: Vec<String>,
    },
    /// `lvcreate` of the cache LV `name` on the VG's fast PVs.
    CreateCacheLv { name: String, size: u64 },
    /// `lvconvert --type <mode> --cachevol <cachevol>`, online.
    AttachCache { mode: CacheMode, cachevol: String },
    /// `lvconvert --uncache`: every dirty block written back, the cache detached and its
    /// LV removed.
    DetachCache { mode: CacheMode },
    /// `lvremove` of a cache LV left unattached by an interrupted modify.
    RemoveCacheLv { name: String },
}

impl Step {
    pub fn describe(&self) -> String {
        match self {
            Step::ToRaid1 { mirrors, .. } => format!("linear to raid1 with {mirrors} mirrors"),
            Step::AddMirrors { from, to, .. } => format!("raid1 mirrors {from} to {to}"),
            Step::DropMirrors {
                from,
                to,
                dropped,
                drop_pvs,
            } => format!(
                "{}, dropping {} on {}",
                match to {
                    0 => "raid1 to linear".to_string(),
                    to => format!("raid1 mirrors {from} to {to}"),
                },
                dropped.join(","),
                drop_pvs.join(",")
            ),
            Step::CreateCacheLv { name, size } => {
                format!("cache LV {name} of {size} bytes on the fast PVs")
            }
            Step::AttachCache { mode, cachevol } => format!("attaching {mode} {cachevol}"),
            Step::DetachCache { mode } => format!("writing back and detaching the {mode}"),
            Step::RemoveCacheLv { name } => format!("removing the unattached cache LV {name}"),
        }
    }
}

fn type_field() -> String {
    format!("mutable_parameters.{}", mutable::TYPE)
}

/// The volume's redundancy as lvm shows it, or the rule that keeps vglet from changing it.
pub fn current(now: &Now<'_>) -> Result<Redundancy, VolumeError> {
    let lv = &now.volume.lv;
    let id = &now.volume.id;
    match lv.segtype.as_str() {
        "linear" => Ok(Redundancy::Linear),
        "raid1" => Ok(Redundancy::Raid1 {
            mirrors: (now.images.images.len() as u32).saturating_sub(1),
        }),
        "thin" => Err(VolumeError::invalid(
            type_field(),
            format!(
                "volume {id} is a thin volume: its blocks live in thin pool {}, whose layout is the redundancy of every volume in it; lvm cannot convert one thin volume to raid1 or linear",
                lv.pool_lv
            ),
        )),
        "cache" | "writecache" => match now.images.cached_origin.as_deref() {
            // What the volume is under its cache; changing it is refused while the cache
            // stays (see plan).
            Some("linear") => Ok(Redundancy::Linear),
            Some("raid1") => Ok(Redundancy::Raid1 {
                mirrors: (now.images.images.len() as u32).saturating_sub(1),
            }),
            _ => Err(VolumeError::invalid(
                type_field(),
                format!(
                    "volume {id} has a {} attached over a {} origin; detach it (mutable parameter cache: none) first, and only linear and raid1 volumes change redundancy",
                    lv.segtype,
                    now.images.cached_origin.as_deref().unwrap_or("unknown")
                ),
            )),
        },
        other => Err(VolumeError::invalid(
            type_field(),
            format!(
                "volume {id} is {other}; only linear and raid1 volumes change redundancy online. lvm's takeovers from striped, raid0, raid4/5/6 and raid10 to raid1 or linear reshape the stripes the filesystem was laid out for (lvmraid(7): \"unnatural conversions that are not recommended\") and are not offered"
            ),
        )),
    }
}

/// The steps from `now` to what `want` asks; empty when the volume already is that. A
/// cache that goes is detached first, a cache that comes is attached last, and the
/// redundancy changes between them, on the uncached volume: lvm converts neither a cached
/// volume's origin nor a cache in place.
pub fn plan(now: &Now<'_>, want: &Mutable) -> Result<Vec<Step>, VolumeError> {
    let (detach, attach) = cache_steps(now, want.cache)?;
    let cached_through = lvcache::attached(&now.volume.lv).is_some() && detach.is_empty();
    let mut steps = detach;
    steps.extend(redundancy_steps(now, want, cached_through)?);
    steps.extend(attach);
    Ok(steps)
}

/// The redundancy steps; `cached_through`: the volume keeps its cache over them.
fn redundancy_steps(
    now: &Now<'_>,
    want: &Mutable,
    cached_through: bool,
) -> Result<Vec<Step>, VolumeError> {
    let Some(target) = want.redundancy else {
        return Ok(Vec::new());
    };
    let have = current(now)?;
    if have == target {
        return Ok(Vec::new());
    }
    let id = &now.volume.id;
    if cached_through {
        return Err(VolumeError::invalid(
            type_field(),
            format!(
                "volume {id} has a {} attached, and lvm converts no cached volume's origin; detach it first (mutable parameter cache: none, in the same class or before), then change its redundancy to {}",
                now.volume.lv.segtype,
                target.describe()
            ),
        ));
    }
    if now.volume.adopted.is_some() {
        return Err(VolumeError::Precondition(format!(
            "volume {id} is a static volume (adopted, not created by the driver); its layout is the operator's, not changed by ControllerModifyVolume"
        )));
    }
    if now.vg.is_shared() {
        return Err(VolumeError::invalid(
            type_field(),
            format!(
                "volume {id} is in shared volume group {}: the node using it holds its LV lock, which lvconvert needs exclusively on the converting host, and a raid LV cannot be activated shared by several hosts (lvmlockd(8)); redundancy of shared volumes is fixed at creation",
                now.vg.name
            ),
        ));
    }
    if let mode @ (VgPmem::Mode(_) | VgPmem::Bad) = VgPmem::from_tags(&now.vg.tags) {
        let what = match mode.mode() {
            Some(m) => format!("{} persistent memory", m.as_str()),
            None => "persistent memory".to_string(),
        };
        return Err(VolumeError::invalid(
            type_field(),
            format!(
                "volume {id} is on {what} (volume group {}): such a volume group is one namespace of one region, and raid1 needs its copies on several physical volumes (DAX does not pass through dm-raid either)",
                now.vg.name
            ),
        ));
    }
    let integrity = now.images.integrity();
    if integrity && target == Redundancy::Linear {
        return Err(VolumeError::invalid(
            type_field(),
            format!(
                "volume {id} is raid1 with integrity, which lvm cannot convert to linear (lvmraid(7), \"Integrity limitations\"); it keeps at least one mirror"
            ),
        ));
    }
    match (have, target) {
        (Redundancy::Linear, Redundancy::Raid1 { mirrors }) => {
            let pvs = check_room(now, mirrors, integrity)?;
            Ok(vec![Step::ToRaid1 { mirrors, pvs }])
        }
        (Redundancy::Raid1 { mirrors: from }, Redundancy::Raid1 { mirrors: to }) if to > from => {
            if integrity
                && let Some(p) = now.volume.lv.copy_percent
                && p < 100.0
            {
                return Err(VolumeError::Precondition(format!(
                    "volume {id} is raid1 with integrity still initialising ({p:.1}%); lvm adds images only once it is done, retry then"
                )));
            }
            let pvs = check_room(now, to - from, integrity)?;
            Ok(vec![Step::AddMirrors { from, to, pvs }])
        }
        (Redundancy::Raid1 { mirrors: from }, target) => {
            let to = target.images() - 1;
            Ok(vec![drop_images(now, from, to)?])
        }
        (Redundancy::Linear, Redundancy::Linear) => Ok(Vec::new()),
    }
}

/// A PV lvm shows as missing (`pv_attr` third character `m`).
fn is_missing(pv: &Pv) -> bool {
    pv.attr.chars().nth(2) == Some('m') || pv.name == "[unknown]"
}

/// RESOURCE_EXHAUSTED unless `new` more images fit, each on a data PV (not of the fast
/// tier) that holds no copy yet: decided from the report, before lvconvert runs. The PVs
/// to name to lvm for them: the VG's data PVs when it has a fast tier, else none (any).
fn check_room(now: &Now<'_>, new: u32, integrity: bool) -> Result<Vec<String>, VolumeError> {
    let id = &now.volume.id;
    let layout = Layout {
        lv_type: LvType::Raid1,
        mirrors: Some(new),
        integrity,
        ..Default::default()
    };
    let extent = now.vg.extent_size.max(1);
    let size = vglet_lvm::round_up(now.volume.lv.size, extent);
    let per_image = layout
        .footprint(size, extent)
        .map(|f| f.per_image)
        .unwrap_or(size);
    let used = now.images.pvs();
    let room = layout::data_room_of(now.vg, now.pvs)?;
    let data: Vec<&&Pv> = now
        .pvs
        .iter()
        .filter(|p| room.pvs.is_empty() || !lvcache::is_fast(p))
        .collect();
    let free_pvs: Vec<&&&Pv> = data
        .iter()
        .filter(|p| !used.contains(&p.name.as_str()) && !is_missing(p))
        .collect();
    let new = new as usize;
    if free_pvs.len() < new {
        return Err(VolumeError::NoSpace(format!(
            "volume {id} needs {new} more physical volumes for its new copies (each on a physical volume of its own); volume group {} has {} {}physical volumes, {} of them already hold a copy{}",
            now.vg.name,
            data.len(),
            if room.pvs.is_empty() {
                ""
            } else {
                "data (not fast) "
            },
            used.len(),
            if now.pvs.iter().any(|p| is_missing(p)) {
                " and some are missing"
            } else {
                ""
            }
        )));
    }
    let roomy = free_pvs.iter().filter(|p| p.free >= per_image).count();
    if roomy < new {
        return Err(VolumeError::NoSpace(format!(
            "volume {id} needs {new} physical volumes with {per_image} bytes free each for its new copies; volume group {} has {roomy} such physical volumes{}",
            now.vg.name,
            room.on()
        )));
    }
    Ok(room.pvs)
}

/// Which images go when raid1 keeps `to` mirrors: the copies on PVs that are all present
/// stay before the others, and among those the oldest (image 0 is the volume's original
/// data, where it lived before it was mirrored), so the data stays where it was. lvm is
/// told the dropped images' PVs, which is how it picks them (see
/// [`vglet_lvm::args::lvconvert_mirrors`]). Only an in-sync raid1 loses images: a copy still
/// being written may be the only one left.
fn drop_images(now: &Now<'_>, from: u32, to: u32) -> Result<Step, VolumeError> {
    let id = &now.volume.id;
    let images = &now.images.images;
    if let Some(p) = now.volume.lv.copy_percent
        && p < 100.0
    {
        return Err(VolumeError::Precondition(format!(
            "volume {id} is still synchronising its copies ({p:.1}% in sync); copies are dropped only from a raid1 in sync, retry when it is"
        )));
    }
    if let Some(lost) = images.iter().find(|i| !i.is_whole()) {
        return Err(VolumeError::Precondition(format!(
            "volume {id}'s image {} is on a missing physical volume; repair it first (lvconvert --repair {id}, or vgreduce --removemissing after replacing the disk)",
            lost.name
        )));
    }
    let keep_count = (to + 1) as usize;
    if images.len() < keep_count {
        return Err(VolumeError::Internal(format!(
            "volume {id} shows {} images for raid1 with {from} mirrors",
            images.len()
        )));
    }
    let (kept, dropped) = images.split_at(keep_count);
    let kept_pvs: Vec<&String> = kept.iter().flat_map(|i| i.pvs.iter()).collect();
    let mut drop_pvs: Vec<String> = Vec::new();
    for pv in dropped.iter().flat_map(|i| i.pvs.iter()) {
        if !kept_pvs.contains(&pv) && !drop_pvs.contains(pv) {
            drop_pvs.push(pv.clone());
        }
    }
    if drop_pvs.is_empty() {
        return Err(VolumeError::Internal(format!(
            "volume {id}: the images to drop share every physical volume with the ones kept"
        )));
    }
    Ok(Step::DropMirrors {
        from,
        to,
        dropped: dropped.iter().map(|i| i.name.clone()).collect(),
        drop_pvs,
    })
}

/// The cache steps that go before the redundancy steps (a detach) and after them (an
/// attach), or the rule that forbids the cache asked for. A `cacheSize` other than the
/// attached cache's is a detach (every dirty block written back first) and an attach of a
/// new cache LV of that size: lvm resizes no cachevol in place (lvmcache(7)), and the
/// volume stays online and correct between the two, only uncached.
fn cache_steps(
    now: &Now<'_>,
    want: Option<CacheWish>,
) -> Result<(Vec<Step>, Vec<Step>), VolumeError> {
    let Some(want) = want else {
        return Ok((Vec::new(), Vec::new()));
    };
    let lv = &now.volume.lv;
    let id = &now.volume.id;
    let extent = now.vg.extent_size.max(1);
    let have = lvcache::attached(lv).map(|a| a.mode);
    let leftover = now.cache_lv;
    let (wanted_mode, wanted_size) = match want {
        CacheWish::None => (None, None),
        CacheWish::Mode { mode, size } => {
            (Some(mode), size.map(|s| vglet_lvm::round_up(s, extent)))
        }
    };
    let resize = match (have, wanted_size) {
        (Some(_), Some(size)) if have == wanted_mode => match now.cache_size {
            Some(current) => current != size,
            None => {
                return Err(VolumeError::Internal(format!(
                    "volume {id} has a {} attached whose size the read did not show",
                    lv.segtype
                )));
            }
        },
        _ => false,
    };
    if have == wanted_mode && !resize && (wanted_mode.is_some() || leftover.is_none()) {
        return Ok((Vec::new(), Vec::new()));
    }
    if now.volume.adopted.is_some() {
        return Err(VolumeError::Precondition(format!(
            "volume {id} is a static volume (adopted, not created by the driver); its cache is the operator's, not changed by ControllerModifyVolume"
        )));
    }
    let mut detach = Vec::new();
    if let Some(mode) = have {
        detach.push(Step::DetachCache { mode });
    }
    let Some(mode) = wanted_mode else {
        // No cache wanted: what an interrupted attach left goes too.
        detach.extend(leftover.map(|l| Step::RemoveCacheLv {
            name: l.name.clone(),
        }));
        return Ok((detach, Vec::new()));
    };
    cache::admits(&id.to_string(), lv, now.vg)?;
    let size = wanted_size.unwrap_or_else(|| {
        vglet_lvm::round_up(
            want.size_for(lv.size).unwrap_or(cache::MIN_CACHE_SIZE),
            extent,
        )
    });
    let mut attach = Vec::new();
    // What an interrupted attach left is attached when it is of the size asked (any size
    // when the class gives none); else it goes, and one of the size is made.
    let reuse = leftover.filter(|l| wanted_size.is_none_or(|s| l.size == s));
    let name = match reuse {
        Some(l) => l.name.clone(),
        None => {
            let mut freed = 0;
            if let Some(l) = leftover {
                detach.push(Step::RemoveCacheLv {
                    name: l.name.clone(),
                });
                freed += l.size;
            }
            // A detach first gives its cache LV's space back before the new one is made.
            let check = match (have, now.cache_size) {
                (None, _) => true,
                (Some(_), Some(current)) => {
                    freed += current;
                    true
                }
                // A mode change whose present cache's size was not read: lvm decides.
                (Some(_), None) => false,
            };
            if check {
                cache::check_room(&id.to_string(), now.vg, now.pvs, size, freed)?;
            }
            let name = lvcache::cache_lv_name(&id.lv);
            attach.push(Step::CreateCacheLv {
                name: name.clone(),
                size,
            });
            name
        }
    };
    attach.push(Step::AttachCache {
        mode,
        cachevol: name,
    });
    Ok((detach, attach))
}
