//! Whether a VG can hold a layout, decided before anything is created, and what a thin
//! pool can still promise.

use vglet_lvm::{Layout, Lv, LvType, Pv, Report, Vg};

use crate::rules::error::VolumeError;

/// Where the VG's ordinary allocations (volumes, their growth, new raid images) go: its
/// data PVs, the ones not of the fast tier (`vglet.fast`, kept for caches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRoom {
    /// The PVs to name to lvm; empty when the VG has no fast tier (any PV).
    pub pvs: Vec<String>,
    /// Bytes free on the data PVs (the VG's free bytes without a fast tier).
    pub free: u64,
    /// Each data PV's free bytes.
    pub frees: Vec<u64>,
}

/// The VG's [`DataRoom`] from the report's PVs. RESOURCE_EXHAUSTED when every present PV is
/// fast: an ordinary volume is never put on the fast tier.
pub fn data_room(report: &Report, vg: &Vg) -> Result<DataRoom, VolumeError> {
    data_room_of(vg, &report.pvs_in(&vg.name).collect::<Vec<_>>())
}

/// [`data_room`] from the VG's PVs.
pub fn data_room_of(vg: &Vg, pvs: &[&Pv]) -> Result<DataRoom, VolumeError> {
    match vglet_lvm::cache::data_pvs(pvs.iter().copied()) {
        None => Ok(DataRoom {
            pvs: Vec::new(),
            free: vg.free,
            frees: pvs.iter().map(|p| p.free).collect(),
        }),
        Some(names) if names.is_empty() => Err(VolumeError::NoSpace(format!(
            "volume group {} has only fast physical volumes (tagged {}); they are kept for caches, and volumes go on the others",
            vg.name,
            vglet_lvm::tags::FAST_PV_TAG
        ))),
        Some(names) => {
            let frees: Vec<u64> = pvs
                .iter()
                .filter(|p| names.contains(&p.name))
                .map(|p| p.free)
                .collect();
            Ok(DataRoom {
                free: frees.iter().sum(),
                frees,
                pvs: names,
            })
        }
    }
}

impl DataRoom {
    /// `, on its data physical volumes (...)` for messages when there is a fast tier.
    pub fn on(&self) -> String {
        if self.pvs.is_empty() {
            String::new()
        } else {
            format!(
                " on its data physical volumes ({}; the fast ones are kept for caches)",
                self.pvs.join(", ")
            )
        }
    }
}

/// Checks that the VG has enough PVs for the layout (INVALID_ARGUMENT: no amount of freeing
/// space helps) and enough free space on enough distinct PVs (RESOURCE_EXHAUSTED). `size`
/// is the LV size already rounded with [`Layout::round_size`].
pub fn check_fits(report: &Report, vg: &Vg, layout: &Layout, size: u64) -> Result<(), VolumeError> {
    let Some(fp) = layout.footprint(size, vg.extent_size) else {
        return Ok(());
    };
    let what = describe(layout);
    let room = data_room(report, vg)?;
    let pvs = &room.frees;
    let pv_count = if room.pvs.is_empty() {
        (pvs.len() as u64).max(vg.pv_count)
    } else {
        pvs.len() as u64
    };
    if layout.needs_distinct_pvs() && pv_count < u64::from(fp.images) {
        return Err(VolumeError::invalid(
            "parameters",
            format!(
                "{what} needs {} physical volumes (one per image), volume group {} has {pv_count}{}",
                fp.images,
                vg.name,
                room.on()
            ),
        ));
    }
    if fp.total() > room.free {
        return Err(VolumeError::NoSpace(format!(
            "volume group {} has {} bytes free{}; {what} of {size} bytes needs {} bytes",
            vg.name,
            room.free,
            room.on(),
            fp.total()
        )));
    }
    if layout.needs_distinct_pvs() {
        let roomy = pvs.iter().filter(|free| **free >= fp.per_image).count() as u32;
        if roomy < fp.images {
            return Err(VolumeError::NoSpace(format!(
                "{what} of {size} bytes needs {} physical volumes with {} bytes free each; volume group {} has {roomy}{}",
                fp.images,
                fp.per_image,
                vg.name,
                room.on()
            )));
        }
    }
    Ok(())
}

/// `raid5 with 2 data stripes`, for messages.
pub fn describe(layout: &Layout) -> String {
    let t = layout.lv_type;
    let mut s = t.to_string();
    if t.takes_stripes() {
        s.push_str(&format!(" with {} stripes", layout.data_stripes()));
    }
    if t == LvType::Raid1 {
        s.push_str(&format!(" with {} mirrors", layout.mirrors()));
    }
    if layout.integrity {
        s.push_str(" and integrity");
    }
    s
}

/// The largest LV of this layout the VG can hold now (what GetCapacity reports for a
/// StorageClass with this layout): limited by the PV with the least room among the
/// `images` roomiest ones, since each image needs its own PV.
pub fn max_size(report: &Report, vg: &Vg, layout: &Layout) -> u64 {
    // The fast tier's room is for caches, not volumes.
    let Ok(room) = data_room(report, vg) else {
        return 0;
    };
    if !layout.needs_distinct_pvs() {
        return room.free;
    }
    let ext = vg.extent_size.max(1);
    let mut frees = room.frees;
    frees.sort_unstable_by(|a, b| b.cmp(a));
    let images = layout.images() as usize;
    let Some(&per_image) = frees.get(images.saturating_sub(1)) else {
        return 0;
    };
    let mut data = per_image;
    if layout.lv_type.is_raid() {
        data = data.saturating_sub(ext);
    }
    if layout.integrity {
        data = data.saturating_sub(2 * ext) / 65 * 64;
    }
    let data = data / ext * ext;
    match layout.lv_type {
        LvType::Raid1 => data,
        _ => data * u64::from(layout.data_stripes()),
    }
}

/// A thin pool and what its thin LVs already take.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolUsage {
    pub pool: String,
    pub size: u64,
    /// Sum of the virtual sizes of the pool's thin LVs (snapshots included: each may
    /// diverge fully from its origin).
    pub provisioned: u64,
    pub data_percent: f64,
    pub metadata_percent: f64,
}

impl PoolUsage {
    /// What may still be promised to new thin volumes: the pool's size times the ratio,
    /// minus what is promised already, and never more than the ratio applied to the data
    /// space not yet written (a nearly full pool cannot promise its nominal size).
    pub fn promisable(&self, ratio: f64) -> u64 {
        let nominal = (self.size as f64 * ratio) - self.provisioned as f64;
        let unwritten = self.size as f64 * (1.0 - self.data_percent / 100.0) * ratio;
        nominal.min(unwritten).max(0.0) as u64
    }

    /// Logs a warning when data or metadata usage is above `threshold` percent. True when
    /// it did.
    pub fn warn_if_full(&self, vg: &str, threshold: f64) -> bool {
        let high = self.data_percent >= threshold || self.metadata_percent >= threshold;
        if high {
            tracing::warn!(
                vg = %vg,
                pool = %self.pool,
                data_percent = self.data_percent,
                metadata_percent = self.metadata_percent,
                threshold,
                "thin pool usage above the warning threshold; extend the pool or free space"
            );
        }
        high
    }
}

fn is_thin_pool(lv: &Lv) -> bool {
    lv.segtype == "thin-pool"
}

/// The named thin pool of `vg` with its usage; INVALID_ARGUMENT when there is no such pool.
pub fn pool_usage(report: &Report, vg: &str, pool: &str) -> Result<PoolUsage, VolumeError> {
    let lv = report.lv(vg, pool).ok_or_else(|| {
        VolumeError::invalid(
            "parameters.thinPool",
            format!("volume group {vg} has no logical volume {pool:?}"),
        )
    })?;
    if !is_thin_pool(lv) {
        return Err(VolumeError::invalid(
            "parameters.thinPool",
            format!(
                "{vg}/{pool} is a {} volume, not a thin pool",
                if lv.segtype.is_empty() {
                    "non-pool"
                } else {
                    &lv.segtype
                }
            ),
        ));
    }
    let provisioned = report
        .lvs_in(vg)
        .filter(|l| l.pool_lv == pool && l.segtype == "thin")
        .map(|l| l.size)
        .sum();
    Ok(PoolUsage {
        pool: pool.to_string(),
        size: lv.size,
        provisioned,
        data_percent: lv.data_percent.unwrap_or(0.0),
        metadata_percent: lv.metadata_percent.unwrap_or(0.0),
    })
}

/// Pool usage for every thin pool of the served VGs, for metrics and health reporting.
pub fn all_pools(report: &Report) -> Vec<(String, PoolUsage)> {
    report
        .lvs
        .iter()
        .filter(|l| is_thin_pool(l))
        .filter_map(|l| {
            pool_usage(report, &l.vg, &l.name)
                .ok()
                .map(|u| (l.vg.clone(), u))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vglet_lvm::Pv;

    const MIB: u64 = 1 << 20;
    const EXT: u64 = 4 * MIB;

    fn report(pv_free: &[u64]) -> (Report, Vg) {
        let vg = Vg {
            name: "vg0".into(),
            extent_size: EXT,
            free: pv_free.iter().sum(),
            size: 1 << 34,
            pv_count: pv_free.len() as u64,
            ..Default::default()
        };
        let pvs = pv_free
            .iter()
            .enumerate()
            .map(|(i, f)| Pv {
                name: format!("/dev/vd{i}"),
                vg: "vg0".into(),
                free: *f,
                ..Default::default()
            })
            .collect();
        (
            Report {
                vgs: vec![vg.clone()],
                pvs,
                lvs: vec![],
            },
            vg,
        )
    }

    fn of(t: LvType) -> Layout {
        Layout {
            lv_type: t,
            ..Default::default()
        }
    }

    #[test]
    fn too_few_pvs_is_invalid_argument_naming_what_is_missing() {
        let (r, vg) = report(&[512 * MIB, 512 * MIB]);
        let e = check_fits(&r, &vg, &of(LvType::Raid5), 64 * MIB).unwrap_err();
        assert!(matches!(e, VolumeError::Invalid { .. }), "{e:?}");
        let m = e.to_string();
        assert!(
            m.contains("raid5 with 2 stripes needs 3 physical volumes"),
            "{m}"
        );
        assert!(m.contains("has 2"), "{m}");
        check_fits(&r, &vg, &of(LvType::Raid1), 64 * MIB).unwrap();
        check_fits(&r, &vg, &of(LvType::Striped), 64 * MIB).unwrap();
        // Linear may span PVs: one big LV over two PVs is fine.
        check_fits(&r, &vg, &of(LvType::Linear), 800 * MIB).unwrap();
    }

    #[test]
    fn space_on_too_few_pvs_is_resource_exhausted() {
        let (r, vg) = report(&[512 * MIB, 512 * MIB, 8 * MIB]);
        let e = check_fits(&r, &vg, &of(LvType::Raid5), 64 * MIB).unwrap_err();
        assert!(
            matches!(&e, VolumeError::NoSpace(m) if m.contains("has 2")),
            "{e:?}"
        );
        let e = check_fits(&r, &vg, &of(LvType::Raid1), 600 * MIB).unwrap_err();
        assert!(matches!(e, VolumeError::NoSpace(_)), "{e:?}");
        let e = check_fits(&r, &vg, &of(LvType::Linear), 2000 * MIB).unwrap_err();
        assert!(matches!(e, VolumeError::NoSpace(_)), "{e:?}");
    }

    /// `report` with the last PV tagged `vglet.fast`.
    fn with_fast(pv_free: &[u64]) -> (Report, Vg) {
        let (mut r, vg) = report(pv_free);
        r.pvs.last_mut().unwrap().tags = vec![vglet_lvm::tags::FAST_PV_TAG.into()];
        (r, vg)
    }

    #[test]
    fn the_fast_tier_is_not_room_for_volumes() {
        // 100 MiB free on the data PV, 1 GiB on the fast one.
        let (r, vg) = with_fast(&[100 * MIB, 1024 * MIB]);
        let room = data_room(&r, &vg).unwrap();
        assert_eq!(room.pvs, vec!["/dev/vd0".to_string()]);
        assert_eq!(room.free, 100 * MIB);
        check_fits(&r, &vg, &of(LvType::Linear), 100 * MIB).unwrap();
        let e = check_fits(&r, &vg, &of(LvType::Linear), 104 * MIB).unwrap_err();
        assert!(
            matches!(&e, VolumeError::NoSpace(m) if m.contains("104857600 bytes free on its data physical volumes (/dev/vd0; the fast ones are kept for caches)")),
            "{e:?}"
        );
        // raid1 needs two data PVs: the fast one does not count.
        let e = check_fits(&r, &vg, &of(LvType::Raid1), 8 * MIB).unwrap_err();
        assert!(
            matches!(e, VolumeError::Invalid { .. }) && e.to_string().contains("has 1 on its data"),
            "{e:?}"
        );
        assert_eq!(max_size(&r, &vg, &of(LvType::Linear)), 100 * MIB);
        assert_eq!(max_size(&r, &vg, &of(LvType::Raid1)), 0);
        // Without the tag the same VG has 1.1 GiB for volumes and no PV list.
        let (r, vg) = report(&[100 * MIB, 1024 * MIB]);
        let room = data_room(&r, &vg).unwrap();
        assert!(room.pvs.is_empty());
        assert_eq!(room.free, 1124 * MIB);
        // Only fast PVs: nothing for volumes.
        let (r, vg) = with_fast(&[1024 * MIB]);
        let e = data_room(&r, &vg).unwrap_err();
        assert!(
            matches!(&e, VolumeError::NoSpace(m) if m.contains("only fast physical volumes")),
            "{e:?}"
        );
        assert_eq!(max_size(&r, &vg, &of(LvType::Linear)), 0);
    }

    #[test]
    fn thin_pool_capacity() {
        let mut r = Report::default();
        r.lvs.push(Lv {
            vg: "vg0".into(),
            name: "pool".into(),
            segtype: "thin-pool".into(),
            size: 1000 * MIB,
            data_percent: Some(10.0),
            metadata_percent: Some(85.0),
            ..Default::default()
        });
        for (name, size) in [("a", 300 * MIB), ("b", 500 * MIB)] {
            r.lvs.push(Lv {
                vg: "vg0".into(),
                name: name.into(),
                segtype: "thin".into(),
                pool_lv: "pool".into(),
                size,
                ..Default::default()
            });
        }
        r.lvs.push(Lv {
            vg: "vg0".into(),
            name: "lin".into(),
            segtype: "linear".into(),
            size: 10 * MIB,
            ..Default::default()
        });
        let u = pool_usage(&r, "vg0", "pool").unwrap();
        assert_eq!(u.provisioned, 800 * MIB);
        assert_eq!(u.promisable(1.0), 200 * MIB);
        assert_eq!(u.promisable(2.0), 1200 * MIB);
        assert_eq!(u.promisable(0.5), 0);
        assert!(u.warn_if_full("vg0", 80.0));
        assert!(!u.warn_if_full("vg0", 90.0));
        let e = pool_usage(&r, "vg0", "lin").unwrap_err();
        assert!(e.to_string().contains("not a thin pool"), "{e}");
        assert!(matches!(
            pool_usage(&r, "vg0", "nope").unwrap_err(),
            VolumeError::Invalid { .. }
        ));
        assert_eq!(all_pools(&r).len(), 1);
    }
    #[test]
    fn max_sizes_agree_with_check_fits() {
        let (r, vg) = report(&[100 * MIB, 200 * MIB, 300 * MIB]);
        assert_eq!(max_size(&r, &vg, &of(LvType::Linear)), 600 * MIB);
        assert_eq!(max_size(&r, &vg, &of(LvType::Striped)), 400 * MIB);
        assert_eq!(max_size(&r, &vg, &of(LvType::Raid1)), 196 * MIB);
        assert_eq!(max_size(&r, &vg, &of(LvType::Raid5)), 192 * MIB);
        assert_eq!(max_size(&r, &vg, &of(LvType::Raid6)), 0);
        for t in [LvType::Striped, LvType::Raid1, LvType::Raid5] {
            let l = of(t);
            let m = max_size(&r, &vg, &l);
            check_fits(&r, &vg, &l, l.round_size(m, EXT)).unwrap();
        }
    }
}
