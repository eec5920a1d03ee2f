//! Byte sizes as lvm takes them.

/// lvm refuses byte sizes that are not whole 512-byte sectors ("Size is not a multiple of
/// 512"), so every size we pass is first rounded up to this.
pub const SECTOR: u64 = 512;

/// `size` rounded up to a whole number of `extent`s: the size lvm will actually allocate.
///
/// Callers that promise a capacity (CSI CreateVolume) round with the VG's extent size
/// themselves, so what they report is what lvm allocates. An `extent` of 0 means unknown
/// and returns `size` unchanged. When the result would not fit in a `u64` it saturates to
/// `u64::MAX` (never below `size`); lvm then rejects it as too large, which is the right
/// answer for such a request.
pub fn round_up(size: u64, extent: u64) -> u64 {
    checked_round_up(size, extent).unwrap_or(u64::MAX)
}

/// [`round_up`] that reports overflow instead of saturating.
pub fn checked_round_up(size: u64, extent: u64) -> Option<u64> {
    if extent == 0 {
        return Some(size);
    }
    size.div_ceil(extent).checked_mul(extent)
}

/// The `-L` value for a byte size: whole sectors, with lvm's `b` (bytes) unit.
pub(crate) fn size_arg(size: u64) -> String {
    format!("{}b", round_up(size, SECTOR))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn rounds_to_whole_extents() {
        assert_eq!(round_up(0, 4 * MIB), 0);
        assert_eq!(round_up(1, 4 * MIB), 4 * MIB);
        assert_eq!(round_up(4 * MIB, 4 * MIB), 4 * MIB);
        assert_eq!(round_up(4 * MIB + 1, 4 * MIB), 8 * MIB);
        assert_eq!(round_up(10 * MIB, 4 * MIB), 12 * MIB);
    }

    #[test]
    fn zero_extent_is_identity() {
        assert_eq!(round_up(12345, 0), 12345);
    }

    #[test]
    fn overflow_saturates_and_never_shrinks() {
        assert_eq!(round_up(u64::MAX - 1, 4 * MIB), u64::MAX);
        assert_eq!(checked_round_up(u64::MAX - 1, 4 * MIB), None);
        assert_eq!(checked_round_up(u64::MAX, 1), Some(u64::MAX));
    }

    #[test]
    fn size_arg_is_whole_sectors_in_bytes() {
        assert_eq!(size_arg(10 * MIB), "10485760b");
        assert_eq!(size_arg(17_000_000), "17000448b");
        assert_eq!(size_arg(1), "512b");
    }
}
