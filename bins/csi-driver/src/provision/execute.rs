//! The acting half of CreateVolume: performs a [`Plan`]'s create, and hands what it
//! learned to NodeStageVolume (see [`crate::node_state::vouched`]).

use tonic::Status;
use vglet_lvm::{LayoutCreate, LvType, SnapshotCreate, SnapshotKind};

use super::plan::{Answer, Create, Existing, How};
use crate::driver::{Driver, OwnedVolume};
use crate::node_state::vouched::Vouched;
use crate::ops::clone;
use crate::rules::volume_id::VolumeId;
use crate::status::{IntoStatus, lvm_status};
use vglet_lvm::tags::CREATING_TAG;

/// Creation markers dropped in one commit while more creates of the VG are queued: fewer
/// commits in a burst, at most this many lvcreates of extra latency for the first caller.
const MARKER_BATCH: usize = 8;

/// The volume CreateVolume answers with.
#[derive(Debug, Clone)]
pub struct Done {
    pub volume: OwnedVolume,
    pub kind: crate::rules::capability::VgKind,
    pub answer: Answer,
}

/// The existing volume, remembered for NodeStageVolume as a new one would be.
pub fn existing(driver: &Driver, e: Existing) -> Done {
    let v = &e.volume;
    tracing::info!(volume = %v.id, "volume already exists");
    if e.answer.vouch && !v.lv.uuid.is_empty() {
        driver.vouched.remember(
            &v.id,
            Vouched {
                lv_uuid: v.lv.uuid.clone(),
                content: v.tags.content(),
            },
        );
    }
    Done {
        volume: e.volume,
        kind: e.kind,
        answer: e.answer,
    }
}

/// Creates the volume `c` plans, then learns what lvm made where lvm decided the size.
pub async fn create(driver: &Driver, c: Create) -> Result<Done, Status> {
    let id = c.id();
    if let Some(p) = &c.pool {
        p.usage.warn_if_full(&c.vg.name, p.warn_at);
    }
    create_lv(driver, &c).await?;
    let lv = if c.reads_back() {
        driver
            .lvm
            .lv(&id.vg, &id.lv)
            .await
            .map_err(|e| lvm_status(&format!("reading back {id}"), e))?
            .ok_or_else(|| Status::internal(format!("{id} vanished right after creation")))?
    } else {
        // lvcreate allocates exactly `size` (already whole extents) for a linear LV: no
        // second fullreport on the hot path just to learn it.
        vglet_lvm::Lv {
            vg: id.vg.clone(),
            name: id.lv.clone(),
            size: c.lv.size,
            tags: c.lv.tags.clone(),
            ..Default::default()
        }
    };
    let (layout, instant, from) = match &c.how {
        How::Layout(l) => (l.lv_type, false, String::new()),
        How::ThinSnapshotOf { origin, .. } => (LvType::Thin, true, origin.clone()),
        How::Copy { layout, source } => (layout.lv_type, false, source.id().to_string()),
    };
    tracing::info!(volume = %id, bytes = lv.size, layout = %layout, instant, from, "volume created");
    if c.answer.vouch {
        // A linear LV was not read back: device-mapper tells its uuid, as it is active
        // here. Not active here: nothing is remembered and NodeStageVolume reads lvm.
        let lv_uuid = match lv.uuid.is_empty() {
            false => Some(lv.uuid.clone()),
            true => crate::node_state::vouched::active_lv_uuid(&id, &c.vg.uuid),
        };
        if let Some(lv_uuid) = lv_uuid {
            driver.vouched.remember(
                &id,
                Vouched {
                    lv_uuid,
                    content: c.tags.content(),
                },
            );
        }
    }
    Ok(Done {
        volume: OwnedVolume {
            id,
            lv,
            tags: c.tags,
            adopted: None,
        },
        kind: c.kind,
        answer: c.answer,
    })
}

/// Creates the LV. On a shared VG the LV is created active (exclusively, so lvm zeroes
/// its start and wipes old signatures) and then released, so that any node can take it;
/// if the release fails the LV is removed again, so a retry starts clean.
///
/// The LV is marked unfinished until every step is done: a crash in between (the lvcreate
/// killed after its metadata commit but before zeroing, or before the release, or in the
/// middle of copying a content source) leaves an LV that says it is unfinished, which the
/// next CreateVolume of that name or the start-up reconcile removes. No CO was ever told
/// about such an LV. The mark is a create intent in the state directory where the VG is
/// node-local and this process serves both sides ([`crate::node_state::create_intents`]:
/// no lvm commit to drop it), else [`CREATING_TAG`], written in lvcreate's own commit.
async fn create_lv(driver: &Driver, c: &Create) -> Result<(), Status> {
    let id = c.id();
    let mut lv = c.lv.clone();
    let by_intent = driver.creating.keeps(&c.vg);
    // Durable before lvcreate can commit anything; the LV carries the attempt's id.
    let mark = match by_intent {
        true => driver.creating.begin(&id).status()?,
        false => CREATING_TAG.to_string(),
    };
    lv.tags.push(mark.clone());
    {
        // Held for the metadata change only: a copy into the new LV can take minutes,
        // and takes this lock itself for its temporary snapshot.
        let _w = driver.vg_locks.lock(&id.vg).await;
        let created = match &c.how {
            How::Layout(layout) | How::Copy { layout, .. } => {
                driver
                    .lvm
                    .create_lv_layout(&LayoutCreate {
                        lv: lv.clone(),
                        layout: layout.clone(),
                    })
                    .await
            }
            How::ThinSnapshotOf {
                origin,
                origin_lv,
                held,
                ..
            } => {
                let snap = SnapshotCreate {
                    vg: id.vg.clone(),
                    origin: origin.clone(),
                    name: id.lv.clone(),
                    tags: lv.tags.clone(),
                    kind: SnapshotKind::Thin { activate: true },
                };
                let create = driver.lvm.create_snapshot(&snap);
                let origin_id = VolumeId::new(id.vg.clone(), origin.clone());
                // A failed freeze ran no lvcreate, a failed thaw came after it: either way
                // the intent stays and marks whatever this attempt made.
                crate::ops::snapshot::with_source_held(&origin_id, origin_lv, *held, create).await?
            }
        };
        if let Err(e) = created {
            // Refused before lvm changed anything (most often: a retry planned on the
            // optimistic report, whose name exists): this attempt made no LV. Any other
            // failure may have left one carrying the attempt's id, so the intent stays and
            // marks it for the retry's plan or the next start-up.
            if by_intent && refused_before_any_change(&e) {
                driver.creating.end(&id).status()?;
            }
            return Err(lvm_status(&format!("creating {id}"), e));
        }
    }
    let finished = async {
        match &c.how {
            How::Copy { layout, source } => {
                let new = driver
                    .lvm
                    .lv(&id.vg, &id.lv)
                    .await
                    .map_err(|e| lvm_status(&format!("reading back {id}"), e))?
                    .ok_or_else(|| Status::internal(format!("{id} vanished")))?;
                clone::fill(driver, source, &new, layout.lv_type == LvType::Thin).await?;
            }
            How::ThinSnapshotOf { origin_size, .. } if lv.size > *origin_size => {
                driver
                    .lvm
                    .extend_lv(&id.vg, &id.lv, lv.size, &[])
                    .await
                    .map_err(|e| lvm_status(&format!("growing {id} to the requested size"), e))?;
            }
            _ => {}
        }
        if c.vg.is_shared() {
            driver
                .lvm
                .deactivate_lv(&id.vg, &id.lv)
                .await
                .map_err(|e| lvm_status(&format!("releasing the new LV {id}"), e))?;
        }
        if by_intent {
            return driver.creating.end(&id).status();
        }
        driver
            .lvm
            .del_lv_tag_batched(&id.vg, &id.lv, CREATING_TAG, |queued| {
                // In a burst the creates queue on the VG lock; a marker commit of its
                // own after each would compete with every lvcreate for lvm's VG lock.
                queued < MARKER_BATCH && driver.vg_locks.busy(&id.vg)
            })
            .await
            .map_err(|e| lvm_status(&format!("marking {id} complete"), e))
    };
    if let Err(status) = finished.await {
        tracing::error!(volume = %id, error = %status.message(), "cannot finish the new LV; removing it");
        remove_unfinished_after_failure(driver, &id, &mark).await;
        return Err(status);
    }
    Ok(())
}

async fn remove_unfinished_after_failure(driver: &Driver, id: &VolumeId, mark: &str) {
    if let Err(e2) = crate::ops::reconcile::remove_unfinished(driver, id, mark).await {
        tracing::error!(volume = %id, error = %e2.message(), "removing the unfinished LV failed; the next attempt or a restart retries");
    }
}

/// lvm errors that lvcreate reports before it writes metadata.
fn refused_before_any_change(e: &vglet_lvm::LvmError) -> bool {
    use vglet_lvm::LvmError as E;
    matches!(
        e,
        E::AlreadyExists(_)
            | E::InsufficientSpace { .. }
            | E::MetadataFull { .. }
            | E::InvalidArgument(_)
            | E::VgNotFound(_)
            | E::ProgramMissing(_)
    )
}
