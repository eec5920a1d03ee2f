//! Volumes with a content source (restore from a snapshot, clone of a volume).
//!
//! - Instant: source and new volume both thin in the same pool. The new volume is a thin
//!   snapshot of the source made an ordinary active LV (`lvcreate -s -kn -ay`): writable,
//!   independent of the source, and no data is copied.
//! - Copy: anything else (a thick source, or a StorageClass asking another layout). The new
//!   LV is created with its own layout, the source's blocks are copied with `dd` in chunks
//!   (progress logged per chunk, each chunk bounded by the command timeout) and compared
//!   with `cmp`; the new volume keeps its "creating" marker until the comparison passed, so
//!   a crash half-way leaves an LV the next attempt or the start-up reconcile removes.
//!   A live volume is copied from a temporary snapshot, never from the device being
//!   written (the snapshot holds the filesystem as of one moment: see `snapshot.rs`,
//!   which also freezes an encrypted volume's filesystem on its mapping).
//! - Encrypted sources: the blocks copied are the ciphertext with the LUKS header, so the
//!   new volume opens with the source's key; CreateVolume allows that only into an
//!   encrypted class (`provision/plan.rs`, `check_encryption`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tonic::Status;
use vglet_csi_proto::v1::VolumeContentSource;
use vglet_csi_proto::v1::volume_content_source::{SnapshotSource, Type, VolumeSource};
use vglet_lvm::{Lv, SnapshotCreate, SnapshotKind};
use vglet_runner::{Command, Program};

use crate::driver::{Driver, OwnedVolume};
use crate::ops::snapshot::OwnedSnapshot;
use crate::rules::volume_id::VolumeId;
use crate::status::lvm_status;

/// Bytes per `dd` run: big enough that the ~50 ms of an exec stays small next to the copy,
/// small enough that progress shows and one chunk never nears the command timeout.
pub const CHUNK: u64 = 64 << 20;
const MIB: u64 = 1 << 20;

/// Prefix of the temporary snapshot a clone of a live volume copies from.
pub const TEMP_PREFIX: &str = "tmp-";

#[derive(Debug, Clone)]
pub enum Source {
    Snapshot(OwnedSnapshot),
    Volume(OwnedVolume),
}

impl Source {
    pub fn lv(&self) -> &Lv {
        match self {
            Source::Snapshot(s) => &s.lv,
            Source::Volume(v) => &v.lv,
        }
    }

    pub fn id(&self) -> &VolumeId {
        match self {
            Source::Snapshot(s) => &s.id,
            Source::Volume(v) => &v.id,
        }
    }

    /// The bytes a new volume needs at least: the origin size at snapshot time, or the
    /// volume's size.
    pub fn size(&self) -> u64 {
        match self {
            Source::Snapshot(s) => s.tags.size,
            Source::Volume(v) => v.lv.size,
        }
    }

    pub fn is_thin(&self) -> bool {
        self.lv().segtype == "thin"
    }

    /// The filesystem the source holds, when it says (a volume's tag); a snapshot's is its
    /// source volume's, looked up by the caller.
    pub fn content_source(&self) -> VolumeContentSource {
        VolumeContentSource {
            r#type: Some(match self {
                Source::Snapshot(s) => Type::Snapshot(SnapshotSource {
                    snapshot_id: s.id.to_string(),
                }),
                Source::Volume(v) => Type::Volume(VolumeSource {
                    volume_id: v.id.to_string(),
                }),
            }),
        }
    }
}

fn device(lv: &Lv) -> PathBuf {
    vglet_volume::lv_device_path(&lv.vg, &lv.name, &lv.path)
}

/// A copy tool the driver resolved at start; absent there, the copy is refused naming it.
fn program(driver: &Driver, program: Program) -> Result<Command, Status> {
    driver
        .lvm
        .programs()
        .command(program)
        .map_err(|e| Status::failed_precondition(e.to_string()))
}

/// The argv of one `dd` chunk: direct I/O both ways (no page cache between the devices),
/// each chunk flushed before the next, and for a thin target zero blocks skipped (they read
/// as zero anyway, and writing them would provision the pool).
pub fn dd_chunk(src: &Path, dst: &Path, offset: u64, len: u64, sparse: bool) -> Vec<String> {
    let conv = if sparse {
        "conv=notrunc,fdatasync,sparse"
    } else {
        "conv=notrunc,fdatasync"
    };
    vec![
        format!("if={}", src.display()),
        format!("of={}", dst.display()),
        "bs=1M".into(),
        format!("skip={}", offset / MIB),
        format!("seek={}", offset / MIB),
        format!("count={}", len.div_ceil(MIB)),
        "iflag=direct".into(),
        "oflag=direct".into(),
        conv.into(),
        "status=none".into(),
    ]
}

/// Copies the first `bytes` of `src` to `dst` and verifies them.
pub async fn copy_verified(
    driver: &Driver,
    src: &Path,
    dst: &Path,
    bytes: u64,
    sparse: bool,
) -> Result<(), Status> {
    let runner = driver.lvm.runner();
    let timeout = driver.cfg.command_timeout;
    let started = Instant::now();
    let mut done = 0;
    tracing::info!(src = %src.display(), dst = %dst.display(), bytes, "copying");
    while done < bytes {
        let len = CHUNK.min(bytes - done);
        let cmd = program(driver, Program::Dd)?
            .args(dd_chunk(src, dst, done, len, sparse))
            .timeout(timeout);
        runner
            .run(cmd)
            .await
            .map_err(|e| Status::internal(format!("copying {}: {e}", src.display())))?;
        done += len;
        tracing::info!(
            copied = done,
            bytes,
            percent = done * 100 / bytes.max(1),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "copy progress"
        );
    }
    // Drop both devices' page caches so that cmp reads the media, not what a probe cached
    // before the copy.
    for dev in [src, dst] {
        let cmd = program(driver, Program::Blockdev)?
            .args(["--flushbufs".to_string(), dev.display().to_string()])
            .timeout(timeout);
        runner
            .run(cmd)
            .await
            .map_err(|e| Status::internal(format!("flushing {}: {e}", dev.display())))?;
    }
    // cmp reads both devices once; allow it the time of the whole copy at the pace of one
    // chunk per timeout.
    let verify_timeout = timeout.saturating_mul(bytes.div_ceil(CHUNK).max(1) as u32);
    let cmd = program(driver, Program::Cmp)?
        .args([
            "-n".to_string(),
            bytes.to_string(),
            src.display().to_string(),
            dst.display().to_string(),
        ])
        .timeout(verify_timeout.max(Duration::from_secs(60)));
    runner.run(cmd).await.map_err(|e| {
        Status::internal(format!(
            "verifying the copy of {} onto {}: {e}",
            src.display(),
            dst.display()
        ))
    })?;
    tracing::info!(
        bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "copy complete and verified"
    );
    Ok(())
}

/// The temporary snapshot name for a copy into `new_lv`.
pub fn temp_name(new_lv: &str) -> String {
    let tail = new_lv
        .strip_prefix(vglet_lvm::naming::LV_NAME_PREFIX)
        .unwrap_or(new_lv);
    format!("{TEMP_PREFIX}{tail}")
}

/// Fills the new LV `dst` (active) with the source's data, verified.
pub async fn fill(
    driver: &Driver,
    source: &Source,
    dst: &Lv,
    dst_thin: bool,
) -> Result<(), Status> {
    match source {
        Source::Snapshot(s) => {
            let mut lv = s.lv.clone();
            let activated_thin = !lv.active && s.is_thin();
            if !lv.active {
                let r = if s.is_thin() {
                    driver
                        .lvm
                        .activate_lv_ignoring_skip(&s.id.vg, &s.id.lv)
                        .await
                } else {
                    driver
                        .lvm
                        .activate_lv(&s.id.vg, &s.id.lv, vglet_lvm::Activation::Local)
                        .await
                };
                r.map_err(|e| lvm_status(&format!("activating snapshot {}", s.id), e))?;
                if let Ok(Some(fresh)) = driver.lvm.lv(&s.id.vg, &s.id.lv).await {
                    lv = fresh;
                }
            }
            let r = copy_verified(driver, &device(&lv), &device(dst), s.tags.size, dst_thin).await;
            if activated_thin && let Err(e) = driver.lvm.deactivate_lv(&s.id.vg, &s.id.lv).await {
                tracing::warn!(snapshot = %s.id, error = %e, "could not deactivate the snapshot again");
            }
            r
        }
        Source::Volume(v) => {
            let temp = VolumeId::new(v.id.vg.clone(), temp_name(&dst.name));
            remove_temp(driver, &temp).await?;
            let kind = if v.lv.segtype == "thin" {
                SnapshotKind::Thin { activate: true }
            } else {
                SnapshotKind::Thick {
                    percent_of_origin: 100,
                }
            };
            {
                let _w = driver.vg_locks.lock(&v.id.vg).await;
                let encrypted = vglet_lvm::tags::Encryption::from_tags(&v.lv.tags) != Ok(None);
                let snap = SnapshotCreate {
                    vg: v.id.vg.clone(),
                    origin: v.id.lv.clone(),
                    name: temp.lv.clone(),
                    tags: vec![vglet_lvm::tags::owner_tag(&driver.cfg.driver_name)],
                    kind,
                };
                let create = driver.lvm.create_snapshot(&snap);
                crate::ops::snapshot::with_source_held(&v.id, &v.lv, encrypted, create)
                    .await?
                    .map_err(|e| lvm_status(&format!("snapshotting {} for the copy", v.id), e))?;
            }
            let r = async {
                let lv = driver
                    .lvm
                    .lv(&temp.vg, &temp.lv)
                    .await
                    .map_err(|e| lvm_status(&format!("reading {temp}"), e))?
                    .ok_or_else(|| Status::internal(format!("{temp} vanished")))?;
                if !lv.active {
                    driver
                        .lvm
                        .activate_lv_ignoring_skip(&temp.vg, &temp.lv)
                        .await
                        .map_err(|e| lvm_status(&format!("activating {temp}"), e))?;
                }
                copy_verified(driver, &device(&lv), &device(dst), v.lv.size, dst_thin).await
            }
            .await;
            if let Err(e) = remove_temp(driver, &temp).await {
                tracing::warn!(snapshot = %temp, error = %e.message(), "temporary snapshot not removed; the next clone into this name removes it");
            }
            r
        }
    }
}

/// Removes a temporary copy snapshot (left by an interrupted clone too). Only ever an LV
/// of this exact derived name.
async fn remove_temp(driver: &Driver, temp: &VolumeId) -> Result<(), Status> {
    match driver.lvm.lv(&temp.vg, &temp.lv).await {
        Ok(Some(_)) => {}
        Ok(None) => return Ok(()),
        Err(e) => return Err(lvm_status(&format!("looking up {temp}"), e)),
    }
    let _w = driver.vg_locks.lock(&temp.vg).await;
    match driver.lvm.remove_lv(&temp.vg, &temp.lv).await {
        Ok(()) | Err(vglet_lvm::LvmError::LvNotFound(_)) => Ok(()),
        Err(e) => Err(lvm_status(&format!("removing {temp}"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dd_argv_is_chunked_and_direct() {
        let a = dd_chunk(
            Path::new("/dev/vg/s"),
            Path::new("/dev/vg/d"),
            128 << 20,
            64 << 20,
            false,
        );
        assert_eq!(
            a.join(" "),
            "if=/dev/vg/s of=/dev/vg/d bs=1M skip=128 seek=128 count=64 iflag=direct oflag=direct conv=notrunc,fdatasync status=none"
        );
        let a = dd_chunk(Path::new("/a"), Path::new("/b"), 0, 1, true);
        assert!(a.join(" ").contains("count=1 "));
        assert!(a.join(" ").contains("conv=notrunc,fdatasync,sparse"));
    }

    #[test]
    fn temp_names() {
        assert_eq!(temp_name("csi-pvc-1"), "tmp-pvc-1");
        vglet_lvm::naming::validate_lv_name(&temp_name("csi-x+0123456789abcdef")).unwrap();
    }
}
