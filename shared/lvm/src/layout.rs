//! LV layouts beyond linear (striped, RAID, thin) and snapshots: what callers ask for, and
//! the arithmetic that tells, before lvcreate runs, whether a VG can hold it.

use std::fmt;

/// The segment type of a new LV.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum LvType {
    #[default]
    Linear,
    Striped,
    Raid0,
    Raid1,
    Raid5,
    Raid6,
    Raid10,
    Thin,
}

impl LvType {
    pub const ALL: &'static [LvType] = &[
        LvType::Linear,
        LvType::Striped,
        LvType::Raid0,
        LvType::Raid1,
        LvType::Raid5,
        LvType::Raid6,
        LvType::Raid10,
        LvType::Thin,
    ];

    /// The name lvm uses for `--type` and prints as `segtype`.
    pub fn as_str(self) -> &'static str {
        match self {
            LvType::Linear => "linear",
            LvType::Striped => "striped",
            LvType::Raid0 => "raid0",
            LvType::Raid1 => "raid1",
            LvType::Raid5 => "raid5",
            LvType::Raid6 => "raid6",
            LvType::Raid10 => "raid10",
            LvType::Thin => "thin",
        }
    }

    pub fn parse(s: &str) -> Option<LvType> {
        LvType::ALL.iter().copied().find(|t| t.as_str() == s)
    }

    /// Types that take `-i` (data stripes).
    pub fn takes_stripes(self) -> bool {
        matches!(
            self,
            LvType::Striped | LvType::Raid0 | LvType::Raid5 | LvType::Raid6 | LvType::Raid10
        )
    }

    /// Types whose images carry a redundant copy or parity: the ones dm-integrity can be
    /// layered under (lvm refuses `--raidintegrity` for raid0).
    pub fn is_redundant_raid(self) -> bool {
        matches!(
            self,
            LvType::Raid1 | LvType::Raid5 | LvType::Raid6 | LvType::Raid10
        )
    }

    pub fn is_raid(self) -> bool {
        self == LvType::Raid0 || self.is_redundant_raid()
    }

    /// lvm's own default stripe count for the type (`lvcreate --type raid6` alone uses 3).
    pub fn default_stripes(self) -> u32 {
        match self {
            LvType::Raid6 => 3,
            t if t.takes_stripes() => 2,
            _ => 1,
        }
    }

    /// The fewest data stripes lvm accepts for the type.
    pub fn min_stripes(self) -> u32 {
        match self {
            LvType::Raid6 => 3,
            t if t.takes_stripes() => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for LvType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a new LV is laid out over the VG's PVs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    pub lv_type: LvType,
    /// Data stripes (`-i`); `None` takes [`LvType::default_stripes`].
    pub stripes: Option<u32>,
    /// Bytes per stripe chunk (`-I`); `None` leaves lvm's default (64 KiB).
    pub stripe_size: Option<u64>,
    /// Additional copies of raid1 (`-m`); `None` means 1.
    pub mirrors: Option<u32>,
    /// dm-integrity under each RAID image (`--raidintegrity y`).
    pub integrity: bool,
    /// The thin pool of a thin LV, in the same VG.
    pub thin_pool: Option<String>,
}

impl Layout {
    pub fn linear() -> Layout {
        Layout::default()
    }

    pub fn data_stripes(&self) -> u32 {
        if self.lv_type.takes_stripes() {
            self.stripes.unwrap_or(self.lv_type.default_stripes())
        } else {
            1
        }
    }

    pub fn mirrors(&self) -> u32 {
        match self.lv_type {
            LvType::Raid1 => self.mirrors.unwrap_or(1),
            LvType::Raid10 => 1,
            _ => 0,
        }
    }

    /// How many images lvm allocates, each on its own PV: the PVs the VG needs at least.
    pub fn images(&self) -> u32 {
        let s = self.data_stripes();
        match self.lv_type {
            LvType::Linear | LvType::Thin => 1,
            LvType::Striped | LvType::Raid0 => s,
            LvType::Raid1 => self.mirrors() + 1,
            LvType::Raid5 => s + 1,
            LvType::Raid6 => s + 2,
            LvType::Raid10 => s * 2,
        }
    }

    /// Whether lvm must put each image on a distinct PV (linear and thin may span PVs).
    pub fn needs_distinct_pvs(&self) -> bool {
        !matches!(self.lv_type, LvType::Linear | LvType::Thin)
    }

    /// The LV size lvm will allocate for `size` bytes: whole extents, and for striped
    /// types a whole number of extents per data stripe (lvm rounds up to that itself, so
    /// a caller that reports capacity must round the same way first).
    pub fn round_size(&self, size: u64, extent: u64) -> u64 {
        let unit = extent.saturating_mul(u64::from(self.data_stripes()));
        crate::round_up(size, unit)
    }

    /// What the LV takes from the PVs: bytes per image (data, plus one extent of RAID
    /// metadata, plus an over-estimate of the integrity metadata) and the number of images.
    /// `size` must already be rounded with [`Layout::round_size`]. Thin LVs take nothing
    /// from the PVs (their pool does), so `None`.
    pub fn footprint(&self, size: u64, extent: u64) -> Option<Footprint> {
        if self.lv_type == LvType::Thin {
            return None;
        }
        let per_data = match self.lv_type {
            LvType::Linear | LvType::Raid1 => size,
            _ => size / u64::from(self.data_stripes().max(1)),
        };
        let mut per_image = per_data;
        if self.lv_type.is_raid() {
            per_image += extent;
        }
        if self.integrity {
            // dm-integrity keeps a few bytes of checksum per data block plus a journal;
            // lvm sizes it at well under 1/64 of the image. Over-estimating only makes the
            // early check stricter than lvm, never laxer.
            per_image += crate::round_up(per_data / 64, extent) + extent;
        }
        Some(Footprint {
            images: self.images(),
            per_image: crate::round_up(per_image, extent),
        })
    }
}

/// What a layout takes from the PVs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    pub images: u32,
    /// Bytes each image needs on its PV.
    pub per_image: u64,
}

impl Footprint {
    pub fn total(&self) -> u64 {
        self.per_image.saturating_mul(u64::from(self.images))
    }
}

/// A new LV with a layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutCreate {
    /// Name, size (the virtual size of a thin LV), tags, activation.
    pub lv: crate::LvCreate,
    pub layout: Layout,
}

/// What kind of snapshot to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotKind {
    /// A thin snapshot of a thin LV: no size, shares the pool. `activate` clears the
    /// activation-skip flag lvm sets on thin snapshots and activates it, for a snapshot
    /// that becomes a volume (restore, clone); a kept snapshot stays skipped and inactive.
    Thin { activate: bool },
    /// A classic copy-on-write snapshot holding this percentage of the origin's size
    /// (100 = never overflows).
    Thick { percent_of_origin: u8 },
}

/// `thin`, `thin (activated)`, `cow 25%`: for logs.
impl fmt::Display for SnapshotKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotKind::Thin { activate: false } => f.write_str("thin"),
            SnapshotKind::Thin { activate: true } => f.write_str("thin (activated)"),
            SnapshotKind::Thick { percent_of_origin } => write!(f, "cow {percent_of_origin}%"),
        }
    }
}

/// A new snapshot LV of `origin` in `vg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotCreate {
    pub vg: String,
    pub origin: String,
    pub name: String,
    pub tags: Vec<String>,
    pub kind: SnapshotKind,
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXT: u64 = 4 << 20;

    fn layout(t: LvType) -> Layout {
        Layout {
            lv_type: t,
            ..Default::default()
        }
    }

    #[test]
    fn names_round_trip() {
        for t in LvType::ALL {
            assert_eq!(LvType::parse(t.as_str()), Some(*t));
        }
        assert_eq!(LvType::parse("raid4"), None);
        assert_eq!(LvType::parse("Linear"), None);
    }

    #[test]
    fn images_per_type() {
        assert_eq!(layout(LvType::Linear).images(), 1);
        assert_eq!(layout(LvType::Thin).images(), 1);
        assert_eq!(layout(LvType::Striped).images(), 2);
        assert_eq!(layout(LvType::Raid0).images(), 2);
        assert_eq!(layout(LvType::Raid1).images(), 2);
        assert_eq!(layout(LvType::Raid5).images(), 3);
        assert_eq!(layout(LvType::Raid6).images(), 5);
        assert_eq!(layout(LvType::Raid10).images(), 4);
        let mut l = layout(LvType::Raid1);
        l.mirrors = Some(2);
        assert_eq!(l.images(), 3);
        let mut l = layout(LvType::Raid5);
        l.stripes = Some(4);
        assert_eq!(l.images(), 5);
        let mut l = layout(LvType::Striped);
        l.stripes = Some(3);
        assert_eq!((l.images(), l.mirrors()), (3, 0));
        // Stripes mean nothing to linear and raid1.
        let mut l = layout(LvType::Raid1);
        l.stripes = Some(5);
        assert_eq!(l.data_stripes(), 1);
    }

    #[test]
    fn sizes_round_to_whole_stripes() {
        assert_eq!(layout(LvType::Linear).round_size(1, EXT), EXT);
        assert_eq!(layout(LvType::Striped).round_size(3 * EXT, EXT), 4 * EXT);
        assert_eq!(layout(LvType::Raid6).round_size(4 * EXT, EXT), 6 * EXT);
        assert_eq!(layout(LvType::Raid1).round_size(3 * EXT, EXT), 3 * EXT);
    }

    #[test]
    fn footprints() {
        let f = layout(LvType::Linear).footprint(8 * EXT, EXT).unwrap();
        assert_eq!((f.images, f.per_image, f.total()), (1, 8 * EXT, 8 * EXT));
        let f = layout(LvType::Striped).footprint(8 * EXT, EXT).unwrap();
        assert_eq!((f.images, f.per_image), (2, 4 * EXT));
        let f = layout(LvType::Raid1).footprint(8 * EXT, EXT).unwrap();
        assert_eq!((f.images, f.per_image), (2, 9 * EXT));
        let f = layout(LvType::Raid5).footprint(8 * EXT, EXT).unwrap();
        assert_eq!((f.images, f.per_image), (3, 5 * EXT));
        let f = layout(LvType::Raid10).footprint(8 * EXT, EXT).unwrap();
        assert_eq!((f.images, f.per_image), (4, 5 * EXT));
        let mut l = layout(LvType::Raid1);
        l.integrity = true;
        let f = l.footprint(64 * EXT, EXT).unwrap();
        assert_eq!(f.per_image, 67 * EXT);
        assert_eq!(layout(LvType::Thin).footprint(8 * EXT, EXT), None);
    }
}
