//! Sizes as people read them: bytes formatted in binary units (`12.3 MiB`), and sizes as GNU
//! `split --bytes` reads them. A leaf module.

/// `12.3 MiB`.
pub fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// A size as GNU `split --bytes` reads it (CanvOS cuts content bundles with
/// `split --bytes=3GB`): bytes, or a number with K, M, G, KiB, MiB, GiB (powers of 1024) or
/// KB, MB, GB (powers of 1000).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let factor: u64 = match unit.trim() {
        "" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_sizes() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }

    #[test]
    fn sizes_read_as_gnu_split_reads_them() {
        for (text, bytes) in [
            ("3GB", Some(3_000_000_000)),
            ("3MB", Some(3_000_000)),
            ("2KB", Some(2_000)),
            ("3G", Some(3 << 30)),
            ("3GiB", Some(3 << 30)),
            ("1M", Some(1 << 20)),
            ("4095MiB", Some(4095 << 20)),
            ("512", Some(512)),
            ("3TB", None),
            ("GB", None),
            ("-1GB", None),
        ] {
            assert_eq!(parse_size(text), bytes, "{text}");
        }
    }
}
