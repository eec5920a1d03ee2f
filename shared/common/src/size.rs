//! Sizes as operators write them in manifests, with Kubernetes' meaning of the suffixes:
//! `G` is 10^9 and `Gi` is 2^30, so `--min-size` reads the same as a PVC request.

/// Parses `1073741824`, `512Mi`, `10G`, `1.5Ti`, `100MB`, `2GiB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u128 = match unit.trim() {
        "" | "B" => 1,
        "k" | "K" | "kB" | "KB" => 1000,
        "M" | "MB" => 1000u128.pow(2),
        "G" | "GB" => 1000u128.pow(3),
        "T" | "TB" => 1000u128.pow(4),
        "P" | "PB" => 1000u128.pow(5),
        "Ki" | "KiB" => 1 << 10,
        "Mi" | "MiB" => 1 << 20,
        "Gi" | "GiB" => 1 << 30,
        "Ti" | "TiB" => 1 << 40,
        "Pi" | "PiB" => 1 << 50,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?}; use bytes or k, M, G, T, P (powers of 1000), Ki, Mi, Gi, Ti, Pi (powers of 1024)"
            ));
        }
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits_ok = |d: &str| d.chars().all(|c| c.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits_ok(int) || !digits_ok(frac) {
        return Err(format!(
            "{s:?} is not a size; examples: 1073741824, 1Gi, 512Mi, 10G"
        ));
    }
    if frac.len() > 18 {
        return Err(format!("{s:?}: too many decimals"));
    }
    let too_big = || format!("{s:?} is too large");
    let int: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| too_big())?
    };
    let frac_value: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| too_big())?
    };
    let scale = 10u128.pow(frac.len() as u32);
    let frac_bytes = frac_value * mult;
    if !frac_bytes.is_multiple_of(scale) {
        return Err(format!("{s:?} is not a whole number of bytes"));
    }
    let bytes = int
        .checked_mul(mult)
        .and_then(|b| b.checked_add(frac_bytes / scale))
        .ok_or_else(too_big)?;
    u64::try_from(bytes).map_err(|_| too_big())
}

/// A size for people: `10.0 GiB`, `512 MiB`, `100 B`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_style_sizes() {
        assert_eq!(parse_size("1073741824").unwrap(), 1 << 30);
        assert_eq!(parse_size("1Gi").unwrap(), 1 << 30);
        assert_eq!(parse_size("512Mi").unwrap(), 512 << 20);
        assert_eq!(parse_size("10G").unwrap(), 10_000_000_000);
        assert_eq!(parse_size("1.5Gi").unwrap(), 3 << 29);
        assert_eq!(parse_size(" 2GiB ").unwrap(), 2 << 30);
        assert_eq!(parse_size("0").unwrap(), 0);
        assert!(parse_size("1.5").is_err(), "half a byte");
        for bad in ["", "Gi", "1X", "-1", "1..2G", "99999999999999999999999P"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(format_size(100), "100 B");
        assert_eq!(format_size(512 << 20), "512 MiB");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
        assert_eq!(format_size(10 << 40), "10 TiB");
    }
}
