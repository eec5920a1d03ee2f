//! Changing an LV's redundancy online, and the read of its images that decides how.

use super::{Lvm, check_names};
use crate::args;
use crate::errors::LvmError;
use crate::images::{LvImages, images_of, parse_rows};

impl Lvm {
    /// The images of `vg/lv` and the PVs under each (see [`crate::images`]). An LV the
    /// read does not show has no images ([`LvImages::default`]).
    pub async fn lv_images(&self, vg: &str, lv: &str) -> Result<LvImages, LvmError> {
        check_names(vg, lv)?;
        let argv = args::lvs_images(vg, lv, &self.options(false).await);
        let out = self.run(argv, Some(vg), Some(lv)).await?;
        let rows = parse_rows(&out.stdout_lossy()).map_err(LvmError::Parse)?;
        Ok(images_of(&rows, lv))
    }

    /// linear → raid1 with `mirrors` additional images on `pvs` (empty: any PV;
    /// [`args::lvconvert_to_raid1`]).
    pub async fn convert_to_raid1(
        &self,
        vg: &str,
        lv: &str,
        mirrors: u32,
        pvs: &[String],
    ) -> Result<(), LvmError> {
        check_names(vg, lv)?;
        check_pv_paths(pvs)?;
        let argv = args::lvconvert_to_raid1(vg, lv, mirrors, pvs, &self.options(false).await);
        self.run(argv, Some(vg), Some(lv)).await?;
        tracing::info!(%vg, %lv, mirrors, "converted to raid1");
        Ok(())
    }

    /// raid1 → `mirrors` additional images ([`args::lvconvert_mirrors`]); 0 makes it
    /// linear. Removing images, `pvs` are the PVs of the ones that go; adding, the PVs the
    /// new ones may go on (empty: any).
    pub async fn set_mirrors(
        &self,
        vg: &str,
        lv: &str,
        mirrors: u32,
        drop_pvs: &[String],
    ) -> Result<(), LvmError> {
        check_names(vg, lv)?;
        check_pv_paths(drop_pvs)?;
        let argv = args::lvconvert_mirrors(vg, lv, mirrors, drop_pvs, &self.options(false).await);
        self.run(argv, Some(vg), Some(lv)).await?;
        tracing::info!(%vg, %lv, mirrors, dropped_from = %drop_pvs.join(","), "raid1 images changed");
        Ok(())
    }
}

impl Lvm {
    /// The size of `vg`'s hidden cachevol `cachevol` (`<cache LV>_cvol`, attached to a
    /// volume), or `None` when lvm shows no such LV.
    pub async fn cachevol_size(&self, vg: &str, cachevol: &str) -> Result<Option<u64>, LvmError> {
        // The hidden name ends in a suffix lvm reserves; the cache LV's own name is checked.
        let base = cachevol.strip_suffix("_cvol").ok_or_else(|| {
            LvmError::InvalidArgument(format!("{cachevol:?} is not a cachevol name"))
        })?;
        check_names(vg, base)?;
        let argv = args::lvs_cachevol(vg, cachevol, &self.options(false).await);
        let out = self.run(argv, Some(vg), None).await?;
        crate::cache::parse_cachevol_size(&out.stdout_lossy(), cachevol).map_err(LvmError::Parse)
    }
}

fn check_pv_paths(pvs: &[String]) -> Result<(), LvmError> {
    match pvs.iter().find(|p| !p.starts_with("/dev/")) {
        Some(bad) => Err(LvmError::InvalidArgument(format!(
            "{bad:?} is not a device path"
        ))),
        None => Ok(()),
    }
}
