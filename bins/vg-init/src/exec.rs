//! Carries out a plan, one action at a time, in order. A failure stops at once: every
//! action is idempotent in effect, so a re-run re-plans from what was done.

use std::time::{Duration, Instant};

use vglet_lvm::tags::FAST_PV_TAG;
use vglet_lvm::{Lvm, ThinPoolCreate, VgCreate, wipe};
use vglet_runner::Runner;

use crate::error::VgInitError;
use crate::plan::{Action, Plan};
use crate::progress::Step;
use crate::request::Request;

/// Runs `f` with a spinner or log lines around it; none in a dry run, where nothing runs.
async fn timed<T, E>(
    req: &Request,
    what: String,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    if req.dry_run {
        return f.await;
    }
    let step = Step::start(what);
    let r = f.await;
    step.done(r.is_ok());
    r
}

pub async fn execute(
    req: &Request,
    plan: &Plan,
    lvm: &Lvm,
    runner: &dyn Runner,
) -> Result<(), VgInitError> {
    let shared = req.lock_type.is_some();
    for action in &plan.actions {
        let err = |e| VgInitError::lvm(&action.to_string(), e);
        match action {
            Action::Wipe {
                device, destroys, ..
            } => {
                // Said before it happens, on stderr whatever the log settings, so the
                // operator's log always shows what --wipe destroyed.
                if req.dry_run {
                    eprintln!("vg-init: --wipe would erase the signatures on {device}: {destroys}");
                } else {
                    eprintln!("vg-init: --wipe: erasing signatures on {device}: {destroys}");
                }
                timed(
                    req,
                    format!("wiping {device}"),
                    wipe::wipe_all(runner, lvm.programs(), device),
                )
                .await
                .map_err(err)?;
            }
            Action::CreatePvs { devices } => {
                lvm.create_pvs(devices, Some(req.metadata_size))
                    .await
                    .map_err(err)?;
            }
            Action::CreateVg {
                devices,
                tags,
                lock_type,
            } => {
                let create = VgCreate {
                    vg: req.vg.clone(),
                    devices: devices.clone(),
                    tags: tags.clone(),
                    lock_type: *lock_type,
                    // Only a shared vgcreate initialises PVs itself (see plan).
                    metadata_size: lock_type.map(|_| req.metadata_size),
                };
                let what = if lock_type.is_some() {
                    format!("creating shared VG {} (starts its lockspace)", req.vg)
                } else {
                    format!("creating VG {}", req.vg)
                };
                timed(req, what, lvm.create_vg(&create))
                    .await
                    .map_err(err)?;
            }
            Action::ExtendVg { devices } => {
                lvm.extend_vg(&req.vg, devices, None).await.map_err(err)?;
            }
            Action::LockStart => lockstart(req, lvm).await?,
            Action::SetSystemId(id) => lvm.set_vg_system_id(&req.vg, id).await.map_err(err)?,
            Action::TagFast { devices } => lvm
                .add_pv_tags(devices, &[FAST_PV_TAG.to_string()])
                .await
                .map_err(err)?,
            Action::AddTags(tags) => lvm.add_vg_tags(&req.vg, tags).await.map_err(err)?,
            Action::DelTags(tags) => lvm.del_vg_tags(&req.vg, tags).await.map_err(err)?,
            Action::CreateThinPool { name, size } => {
                let create = ThinPoolCreate {
                    vg: req.vg.clone(),
                    name: name.clone(),
                    size: *size,
                    activate: !shared,
                };
                timed(
                    req,
                    format!("creating thin pool {}/{name}", req.vg),
                    lvm.create_thin_pool(&create),
                )
                .await
                .map_err(err)?;
            }
        }
    }
    Ok(())
}

/// Starts the VG's lockspace and waits, within `--lockstart-timeout`, until lvmlockd lists
/// it. `lvs` is no proof: lvm reads a shared VG without its lock ("Reading VG without a
/// lock") and succeeds.
async fn lockstart(req: &Request, lvm: &Lvm) -> Result<(), VgInitError> {
    if req.dry_run {
        // Nothing started, nothing to wait for: only the command is wanted.
        return lvm
            .lockstart_vg(&req.vg, req.lockstart_timeout)
            .await
            .map_err(|e| VgInitError::lvm("vgchange --lockstart", e));
    }
    let deadline = Instant::now() + req.lockstart_timeout;
    let step = Step::start(format!("starting the lockspace of VG {}", req.vg));
    if let Err(e) = lvm.lockstart_vg(&req.vg, req.lockstart_timeout).await {
        step.done(false);
        return Err(VgInitError::lvm("vgchange --lockstart", e));
    }
    let mut last_note = Instant::now();
    loop {
        match lvm.started_lockspaces().await {
            Ok(started) if started.contains(&req.vg) => break,
            Ok(_) => {}
            Err(e) => {
                step.done(false);
                return Err(VgInitError::Refused(format!(
                    "waiting for the lockspace: {e}"
                )));
            }
        }
        if Instant::now() >= deadline {
            step.done(false);
            return Err(VgInitError::Failed(format!(
                "the lockspace of VG {} did not start within {:?} (--lockstart-timeout)",
                req.vg, req.lockstart_timeout
            )));
        }
        if last_note.elapsed() >= Duration::from_secs(5) {
            step.note("waiting for lvmlockd to list it");
            last_note = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    step.done(true);
    Ok(())
}
