//! [`Lvm`] operations for a volume's cache tier (see [`crate::cache`]).

use std::time::Duration;

use super::{Lvm, check_names, check_tags, invalid, read};
use crate::args;
use crate::cache::CacheMode;
use crate::errors::LvmError;

/// Bound on a detach: lvm waits there until every dirty block of a writecache is written
/// back, which for a large cache on a slow origin takes minutes. Killed, the detach is left
/// half-way with nothing lost, and the next run finishes it.
pub const DETACH_BOUND: Duration = Duration::from_secs(30 * 60);

impl Lvm {
    /// Creates the cache LV `vg/name` of `size` bytes on the VG's fast PVs.
    pub async fn create_cache_lv(
        &self,
        vg: &str,
        name: &str,
        size: u64,
        tags: &[String],
    ) -> Result<(), LvmError> {
        check_names(vg, name)?;
        check_tags(tags)?;
        if size == 0 {
            return Err(invalid(format!("{vg}/{name}: size 0")));
        }
        let argv = args::lvcreate_cache_lv(vg, name, size, tags, &self.options(false).await);
        self.run(argv, Some(vg), Some(name)).await?;
        tracing::info!(%vg, lv = %name, bytes = size, "cache logical volume created on the fast PVs");
        Ok(())
    }

    /// Attaches the cache LV `cachevol` in front of `vg/lv` in `mode`, online.
    pub async fn attach_cache(
        &self,
        vg: &str,
        lv: &str,
        mode: CacheMode,
        cachevol: &str,
    ) -> Result<(), LvmError> {
        check_names(vg, lv)?;
        check_names(vg, cachevol)?;
        let argv = args::lvconvert_attach_cache(vg, lv, mode, cachevol, &self.options(false).await);
        self.run(argv, Some(vg), Some(lv)).await?;
        tracing::info!(%vg, %lv, %mode, %cachevol, "cache attached");
        Ok(())
    }

    /// Writes the cache of `vg/lv` back, detaches it and removes the cache LV
    /// (`lvconvert --uncache`), bounded by [`DETACH_BOUND`] at least.
    pub async fn detach_cache(&self, vg: &str, lv: &str) -> Result<(), LvmError> {
        check_names(vg, lv)?;
        let argv = args::lvconvert_uncache(vg, lv, &self.options(false).await);
        let bound = read(&self.timeout).unwrap_or_default().max(DETACH_BOUND);
        self.runner
            .run(self.command(argv).timeout(bound))
            .await
            .map_err(|e| crate::classify(e, Some(vg), Some(lv)))?;
        tracing::info!(%vg, %lv, "cache written back, detached and removed");
        Ok(())
    }
}
