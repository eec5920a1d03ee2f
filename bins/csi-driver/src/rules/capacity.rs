//! CSI capacity ranges to an LV size.

use vglet_csi_proto::v1::CapacityRange;

use crate::rules::error::VolumeError;

/// Size given to a volume whose request names no capacity.
pub const DEFAULT_SIZE: u64 = 1 << 30;

/// The requested bounds, checked: `required`/`limit` are 0 when unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub required: u64,
    pub limit: u64,
}

impl Range {
    pub fn parse(field: &str, r: Option<&CapacityRange>) -> Result<Range, VolumeError> {
        let Some(r) = r else {
            return Ok(Range {
                required: 0,
                limit: 0,
            });
        };
        if r.required_bytes < 0 {
            return Err(VolumeError::invalid(
                format!("{field}.required_bytes"),
                "must not be negative",
            ));
        }
        if r.limit_bytes < 0 {
            return Err(VolumeError::invalid(
                format!("{field}.limit_bytes"),
                "must not be negative",
            ));
        }
        if r.limit_bytes > 0 && r.required_bytes > r.limit_bytes {
            return Err(VolumeError::invalid(
                field,
                "required_bytes is larger than limit_bytes",
            ));
        }
        Ok(Range {
            required: r.required_bytes as u64,
            limit: r.limit_bytes as u64,
        })
    }

    /// The LV size for this range on a VG with `extent` bytes per extent: the requested size
    /// rounded up to whole extents. OUT_OF_RANGE when the rounding passes the limit.
    pub fn lv_size(&self, extent: u64) -> Result<u64, VolumeError> {
        let want = match (self.required, self.limit) {
            (0, 0) => DEFAULT_SIZE,
            (0, limit) => limit.min(DEFAULT_SIZE),
            (req, _) => req,
        };
        let size = vglet_lvm::round_up(want, extent);
        if self.limit > 0 && size > self.limit {
            return Err(VolumeError::OutOfRange(format!(
                "capacity_range: {} bytes rounded up to whole {}-byte extents is {} bytes, above limit_bytes {}",
                want, extent, size, self.limit
            )));
        }
        Ok(size)
    }

    /// Whether an existing volume of `size` bytes satisfies this range (idempotent create).
    pub fn accepts(&self, size: u64) -> bool {
        size >= self.required && (self.limit == 0 || size <= self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXT: u64 = 4 << 20;

    fn range(req: i64, lim: i64) -> Result<Range, VolumeError> {
        Range::parse(
            "capacity_range",
            Some(&CapacityRange {
                required_bytes: req,
                limit_bytes: lim,
            }),
        )
    }

    #[test]
    fn rounds_up_to_extent() {
        assert_eq!(range(1, 0).unwrap().lv_size(EXT).unwrap(), EXT);
        assert_eq!(
            range(EXT as i64 + 1, 0).unwrap().lv_size(EXT).unwrap(),
            2 * EXT
        );
    }

    #[test]
    fn default_and_limit_only() {
        assert_eq!(
            Range::parse("c", None).unwrap().lv_size(EXT).unwrap(),
            DEFAULT_SIZE
        );
        assert_eq!(range(0, 8 << 20).unwrap().lv_size(EXT).unwrap(), 8 << 20);
    }

    #[test]
    fn rejects_negative_and_inverted() {
        assert!(range(-1, 0).is_err());
        assert!(range(0, -1).is_err());
        assert!(range(10, 5).is_err());
    }

    #[test]
    fn out_of_range_when_rounding_passes_limit() {
        let e = range(1, 1000).unwrap().lv_size(EXT).unwrap_err();
        assert!(matches!(e, VolumeError::OutOfRange(_)), "{e:?}");
    }

    #[test]
    fn accepts_existing_sizes() {
        let r = range(10, 100).unwrap();
        assert!(r.accepts(50));
        assert!(!r.accepts(5));
        assert!(!r.accepts(200));
    }
}
