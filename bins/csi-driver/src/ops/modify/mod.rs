//! ControllerModifyVolume: read → pure plan ([`plan`]) → act → read again. The volume is
//! changed online (it stays active and mounted wherever it is used); what lvm did is
//! confirmed from a fresh read, never assumed from lvconvert's exit. LVM's metadata is the
//! one record of the layout: no tag repeats it, so ListVolumes and ControllerGetVolume show
//! the new layout as lvm does.

#[cfg(test)]
mod cache_tests;
pub(crate) mod plan;
#[cfg(test)]
mod tests;

use vglet_lvm::{Lv, LvImages, Pv, Report, Vg};

use crate::driver::{Driver, OwnedVolume, volume_in};
use crate::rules::cache::CacheWish;
use crate::rules::error::VolumeError;
use crate::rules::mutable::Mutable;
use crate::rules::volume_id::VolumeId;

pub use plan::Step;

/// What a modify did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The steps run; empty when the volume already was what the class asks.
    pub steps: Vec<Step>,
    /// RAID synchronisation in percent when new copies are still being written (the
    /// volume's condition says so too until it reaches 100).
    pub syncing: Option<f64>,
}

/// One read of everything the plan decides on.
struct Read {
    volume: OwnedVolume,
    vg: Vg,
    report: Report,
    images: LvImages,
    /// The volume's cache LV while visible (not attached); read only when the class names
    /// a cache.
    cache_lv: Option<Lv>,
    /// The size of the attached cachevol; read only when the class names a cache and one
    /// is attached.
    cache_size: Option<u64>,
}

impl Read {
    fn syncing(&self) -> Option<f64> {
        let lv = &self.volume.lv;
        (lv.segtype.starts_with("raid"))
            .then_some(lv.copy_percent)
            .flatten()
            .filter(|p| *p < 100.0)
    }
}

async fn read(driver: &Driver, id: &VolumeId, want: &Mutable) -> Result<Read, VolumeError> {
    let report = driver
        .lvm
        .report_lv(&id.vg, &id.lv)
        .await
        .map_err(VolumeError::lvm(format!("volume {id}")))?;
    let (volume, vg) = volume_in(&driver.cfg.driver_name, &report, id).map_err(|e| match e {
        // A node-local VG's volumes are converted on their node: say which one answered,
        // for a resizer that reached another node's driver.
        VolumeError::NotFound(_) => VolumeError::NotFound(format!(
            "volume {id} does not exist on node {} (a volume is modified by the driver on its own node)",
            driver.cfg.node_id
        )),
        e => e,
    })?;
    let images = driver
        .lvm
        .lv_images(&id.vg, &id.lv)
        .await
        .map_err(VolumeError::lvm(format!("reading the images of {id}")))?;
    let cache_lv = match want.cache {
        None => None,
        Some(_) => cache_lv_of(driver, id).await?,
    };
    let cache_size = match (want.cache, vglet_lvm::cache::attached(&volume.lv)) {
        (Some(CacheWish::Mode { .. }), Some(a)) => {
            Some(cachevol_size(driver, id, &a.cachevol).await?)
        }
        _ => None,
    };
    Ok(Read {
        volume,
        vg,
        report,
        images,
        cache_lv,
        cache_size,
    })
}

/// The size of `cachevol`, the hidden LV of the cache attached to volume `id`.
async fn cachevol_size(driver: &Driver, id: &VolumeId, cachevol: &str) -> Result<u64, VolumeError> {
    driver
        .lvm
        .cachevol_size(&id.vg, cachevol)
        .await
        .map_err(VolumeError::lvm(format!("reading the cache of {id}")))?
        .ok_or_else(|| {
            VolumeError::Internal(format!(
                "volume {id}'s cache {cachevol} is not in lvm's report"
            ))
        })
}

/// The visible cache LV of volume `id`, by its name; one of ours for this volume or a
/// refusal (an LV of that name that is not is never reused or removed).
async fn cache_lv_of(driver: &Driver, id: &VolumeId) -> Result<Option<Lv>, VolumeError> {
    let name = vglet_lvm::cache::cache_lv_name(&id.lv);
    let report = driver
        .lvm
        .report_lv(&id.vg, &name)
        .await
        .map_err(VolumeError::lvm(format!("reading the cache LV of {id}")))?;
    let Some(lv) = report.lv(&id.vg, &name) else {
        return Ok(None);
    };
    match vglet_lvm::tags::cache_of(&lv.tags, &driver.cfg.driver_name) {
        Some(of) if of == id.lv => Ok(Some(lv.clone())),
        _ => Err(VolumeError::Precondition(format!(
            "{}/{name}, the name of volume {id}'s cache LV, is an LV that is not its cache (tags {}); refusing to touch it",
            id.vg,
            lv.tags.join(",")
        ))),
    }
}

fn plan_of(r: &Read, want: &Mutable) -> Result<Vec<Step>, VolumeError> {
    let pvs: Vec<&Pv> = r.report.pvs_in(&r.vg.name).collect();
    plan::plan(
        &plan::Now {
            volume: &r.volume,
            vg: &r.vg,
            pvs: &pvs,
            images: &r.images,
            cache_lv: r.cache_lv.as_ref(),
            cache_size: r.cache_size,
        },
        want,
    )
}

/// Makes volume `id` what `want` asks. The caller holds the volume's in-flight guard and
/// has served-VG-checked `id`.
pub async fn modify(
    driver: &Driver,
    id: &VolumeId,
    want: &Mutable,
) -> Result<Outcome, VolumeError> {
    let before = read(driver, id, want).await?;
    let steps = plan_of(&before, want)?;
    if steps.is_empty() {
        return Ok(converged(Vec::new(), &before));
    }
    // An origin with copy-on-write snapshots: lvm refuses to convert it, say why first.
    crate::ops::snapshot::refuse_with_thick_snapshots(&before.report, id, "converted")?;
    if before.volume.lv.active {
        return carry_out(driver, id, want, steps).await;
    }
    // lvm converts only an active LV ("must be active to perform this operation"): a
    // volume no node has staged is activated for the conversion and deactivated after, as
    // it was (new copies then synchronise when it is next activated). Planned again once
    // active: only then does lvm report whether its copies are in sync.
    driver
        .lvm
        .activate_lv(&id.vg, &id.lv, vglet_lvm::Activation::Local)
        .await
        .map_err(VolumeError::lvm(format!("activating {id} to convert it")))?;
    let done = async {
        let active = read(driver, id, want).await?;
        let steps = plan_of(&active, want)?;
        if steps.is_empty() {
            return Ok(converged(Vec::new(), &active));
        }
        carry_out(driver, id, want, steps).await
    }
    .await;
    if let Err(e) = driver.lvm.deactivate_lv(&id.vg, &id.lv).await {
        tracing::warn!(error = %e, "cannot deactivate the volume after converting it");
    }
    done
}

fn converged(steps: Vec<Step>, now: &Read) -> Outcome {
    let syncing = now.syncing();
    match (steps.is_empty(), syncing) {
        (true, _) => {
            tracing::info!(syncing = ?syncing, "volume already as asked; nothing to change")
        }
        (false, Some(p)) => tracing::info!(
            synced_percent = p,
            "volume modified; its new copies are synchronising (the volume condition shows the progress)"
        ),
        (false, None) => tracing::info!("volume modified"),
    }
    Outcome { steps, syncing }
}

/// Runs `steps` under the VG's write lock, then reads again: the plan from the new state must
/// be empty, or the modify failed whatever lvconvert answered.
async fn carry_out(
    driver: &Driver,
    id: &VolumeId,
    want: &Mutable,
    steps: Vec<Step>,
) -> Result<Outcome, VolumeError> {
    convert(driver, id, &steps).await?;
    let after = read(driver, id, want).await?;
    let left = plan_of(&after, want)?;
    if !left.is_empty() {
        let list = |s: &[Step]| s.iter().map(Step::describe).collect::<Vec<_>>().join(", ");
        return Err(VolumeError::Internal(format!(
            "volume {id}: after {} lvm shows segment type {} with {} images; it still needs {}",
            list(&steps),
            after.volume.lv.segtype,
            after.images.images.len(),
            list(&left)
        )));
    }
    Ok(converged(steps, &after))
}

async fn convert(driver: &Driver, id: &VolumeId, steps: &[Step]) -> Result<(), VolumeError> {
    let _w = driver.vg_locks.lock(&id.vg).await;
    for step in steps {
        tracing::info!(step = %step.describe(), "converting");
        let started = std::time::Instant::now();
        act(driver, id, step).await?;
        tracing::info!(step = %step.describe(), seconds = started.elapsed().as_secs_f64(), "converted");
    }
    Ok(())
}

async fn act(driver: &Driver, id: &VolumeId, step: &Step) -> Result<(), VolumeError> {
    let context = format!("{} of {id}", step.describe());
    let lvm = &driver.lvm;
    match step {
        Step::ToRaid1 { mirrors, pvs } => lvm.convert_to_raid1(&id.vg, &id.lv, *mirrors, pvs).await,
        Step::AddMirrors { to, pvs, .. } => lvm.set_mirrors(&id.vg, &id.lv, *to, pvs).await,
        Step::DropMirrors { to, drop_pvs, .. } => {
            lvm.set_mirrors(&id.vg, &id.lv, *to, drop_pvs).await
        }
        Step::CreateCacheLv { name, size } => {
            let tags = vglet_lvm::tags::cache_lv_tags(&driver.cfg.driver_name, &id.lv);
            lvm.create_cache_lv(&id.vg, name, *size, &tags).await
        }
        Step::AttachCache { mode, cachevol } => {
            // lvm 2.03.16 attaches a writecache only from an inactive cachevol ("must be
            // inactive to attach", seen in the guest); the new LV is active after its
            // zeroing lvcreate.
            if *mode == vglet_lvm::CacheMode::Writecache {
                lvm.deactivate_lv(&id.vg, cachevol)
                    .await
                    .map_err(VolumeError::lvm(format!(
                        "deactivating {cachevol} to attach it"
                    )))?;
            }
            lvm.attach_cache(&id.vg, &id.lv, *mode, cachevol).await
        }
        Step::DetachCache { .. } => lvm.detach_cache(&id.vg, &id.lv).await,
        Step::RemoveCacheLv { name } => {
            let tag = vglet_lvm::tags::cache_lv_tags(&driver.cfg.driver_name, &id.lv)
                .pop()
                .expect("the cache-of tag");
            match lvm.remove_lv_if_tagged(&id.vg, name, &tag).await {
                Err(vglet_lvm::LvmError::LvNotFound(_)) => Ok(()),
                r => r,
            }
        }
    }
    .map_err(VolumeError::lvm(context))
}
