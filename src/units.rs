//! Sizes: parsing what the user types (`--size 20G`, `--root-size 4G`) and printing sizes for
//! people (`1.5 GiB`). A leaf module: it imports nothing from the crate.
//!
//! Formatting: the progress bar on a TTY uses indicatif's own template keys
//! (`{bytes}`, `{binary_bytes_per_sec}`).
//! Messages use [`human`], which prints one decimal (`512.0 MiB`, `1.5 GiB`); indicatif's
//! `BinaryBytes` prints two (`512.00 MiB`), and the one-decimal form is what the tests and the
//! VM scenarios' logs show, so it stays.

use devicemapper::Bytes;

/// Binary units in bytes.
pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
pub const TIB: u64 = 1 << 40;

/// A size, where `0` is allowed (= none).
pub fn parse_size_or_zero(s: &str) -> Result<u64, String> {
    if s.trim() == "0" {
        Ok(0)
    } else {
        parse_size(s)
    }
}

/// `512`, `64K`, `4M`, `2G` (binary units; a trailing `B`/`iB` is accepted) → bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, mult) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], KIB),
        Some('M' | 'm') => (&t[..t.len() - 1], MIB),
        Some('G' | 'g') => (&t[..t.len() - 1], GIB),
        Some('T' | 't') => (&t[..t.len() - 1], TIB),
        _ => (t, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (use e.g. 512K, 4M, 1G)"))?;
    n.checked_mul(mult)
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("{s:?} is out of range"))
}

/// Human size: `512 B`, `1.5 GiB` (binary units, one decimal).
pub fn human(b: Bytes) -> String {
    let v = *b as f64;
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut i = 0;
    let mut x = v;
    while x >= 1024.0 && i < units.len() - 1 {
        x /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{} B", *b)
    } else {
        format!("{x:.1} {}", units[i])
    }
}

/// [`human`] for a plain byte count.
pub fn human_bytes(bytes: impl Into<u128>) -> String {
    human(Bytes(bytes.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("50MB"), Ok(50 << 20));
        assert!(parse_size("0").is_err());
        assert!(parse_size("fast").is_err());
        assert!(parse_size("").is_err());
        assert_eq!(parse_size_or_zero("0"), Ok(0));
        assert_eq!(parse_size_or_zero("1K"), Ok(1024));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(Bytes(512)), "512 B");
        assert_eq!(human(Bytes(512 * 1024 * 1024)), "512.0 MiB");
        assert_eq!(human(Bytes(1536 * 1024 * 1024)), "1.5 GiB");
        assert_eq!(human_bytes(1536u64 * 1024 * 1024), "1.5 GiB");
    }

    #[test]
    fn indicatif_prints_two_decimals() {
        // Why `human` is not indicatif's BinaryBytes: the printed form would change.
        assert_eq!(
            indicatif::BinaryBytes(512 * 1024 * 1024).to_string(),
            "512.00 MiB"
        );
    }
}
