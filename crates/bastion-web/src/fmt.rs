//! How numbers, times and sizes read on a page.

/// A number with at most four significant decimals; NaN and infinities spelled out.
pub fn num(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "∞".into()
        } else {
            "−∞".into()
        }
    } else if v != 0.0 && (v.abs() >= 1e7 || v.abs() < 1e-3) {
        format!("{v:.3e}")
    } else {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s == "-0" { "0".into() } else { s.to_owned() }
    }
}

/// Milliseconds since the epoch as a UTC time to the second ("–" for none).
pub fn time(ms: i64) -> String {
    if ms <= 0 {
        return "–".into();
    }
    let t = bastion_core::time::rfc3339(ms);
    // 2026-11-27T20:41:03.123Z → 2026-11-27 20:41:03
    t.get(..19).map(|s| s.replace('T', " ")).unwrap_or(t)
}

/// A duration in milliseconds as people say it.
pub fn duration(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        _ if ms < 1000 => format!("{ms} ms"),
        0..60 => format!("{:.1} s", ms as f64 / 1000.0),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// A byte count in binary units.
pub fn bytes(n: i64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n.max(0) as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// At most `max` characters of `s`, with an ellipsis when cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_times_and_sizes() {
        assert_eq!(num(0.123456), "0.1235");
        assert_eq!(num(2.0), "2");
        assert_eq!(num(-0.00001), "-1.000e-5");
        assert_eq!(num(f64::NAN), "–");
        assert_eq!(time(0), "–");
        assert_eq!(time(1_790_000_000_000), "2026-09-21 14:13:20");
        assert_eq!(duration(1500), "1.5 s");
        assert_eq!(duration(3_725_000), "1 h 2 min");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(clip("abcdef", 4), "abc…");
    }
}
