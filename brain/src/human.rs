//! Numbers as people read them, for `status` and the progress display:
//! sizes in powers of 1024, durations in the largest unit that fits, counts
//! with thousands separators.

/// `1536` → `1.5 KiB`; bytes below 1 KiB as an integer (`512 B`).
#[must_use]
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    #[allow(clippy::cast_precision_loss)] // shown with one decimal
    let mut x = n as f64 / 1024.0;
    let mut unit = 0;
    while x >= 1024.0 && unit + 1 < UNITS.len() {
        x /= 1024.0;
        unit += 1;
    }
    format!("{x:.1} {}", UNITS[unit])
}

/// A span of `secs` seconds: `24 ms`, `0.4 s`, `42 s`, `12 min`, `3.5 h`,
/// `2.0 d`.
#[must_use]
pub fn duration(secs: f64) -> String {
    let secs = secs.max(0.0);
    if secs < 0.1 {
        format!("{:.0} ms", secs * 1000.0)
    } else if secs < 10.0 {
        format!("{secs:.1} s")
    } else if secs < 60.0 {
        format!("{secs:.0} s")
    } else if secs < 3600.0 {
        format!("{:.0} min", (secs / 60.0).floor())
    } else if secs < 86_400.0 {
        format!("{:.1} h", secs / 3600.0)
    } else {
        format!("{:.1} d", secs / 86_400.0)
    }
}

/// `28143` → `28,143`.
#[must_use]
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(20 << 20), "20.0 MiB");
        assert_eq!(bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0.42), "0.4 s");
        assert_eq!(duration(4.25), "4.2 s");
        assert_eq!(duration(42.4), "42 s");
        assert_eq!(duration(754.0), "12 min");
        assert_eq!(duration(3.5 * 3600.0), "3.5 h");
        assert_eq!(duration(2.0 * 86_400.0), "2.0 d");
        assert_eq!(duration(0.024), "24 ms");
        assert_eq!(duration(-1.0), "0 ms");
    }

    #[test]
    fn counts() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(28_143), "28,143");
        assert_eq!(count(1_234_567), "1,234,567");
    }
}
