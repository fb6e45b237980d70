//! Used-blocks-only copies for dm-mirror: a dm-log "disk" log whose clean bitmap is pre-seeded
//! from the filesystem's free-space map, so kcopyd copies only regions that hold data.
//!
//! dm-log's on-disk format (drivers/md/dm-log.c): a header at byte 0 — u32 LE magic 0x4D695272,
//! u32 LE version 2, u64 LE nr_regions — and the *clean* bitmap at byte 1024 (LOG_OFFSET = 2
//! sectors), little-endian bit order (`test_bit_le`): bit i set = region i in sync. On resume
//! (`disk_resume`) a valid header makes the kernel honour these bits (regions marked clean are
//! never copied); regions at or past nr_regions start dirty. The table must carry no
//! `sync`/`nosync` word, or the kernel ignores the header. Proven on Debian's 6.1 kernel.
//!
//! A region is marked clean only when it lies entirely inside free space; everything else —
//! metadata, journal, data, areas the map does not mention — is copied.

/// `MIRROR_MAGIC` in dm-log.c.
pub const MAGIC: u32 = 0x4D69_5272;
/// `MIRROR_DISK_VERSION`.
pub const VERSION: u32 = 2;
/// Byte offset of the clean bitmap (LOG_OFFSET << SECTOR_SHIFT).
pub const BITS_OFFSET: usize = 1024;

/// The clean bitmap of a device of `dev_bytes` split into `region_bytes` regions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanMap {
    pub nr_regions: u64,
    pub clean: u64,
    /// Little-endian bit order, padded to whole 64-bit words as dm-log keeps it.
    pub bits: Vec<u8>,
}

/// Merge free extents (start, length in bytes) into sorted, non-overlapping, non-adjacent ones.
pub fn merge_extents(mut free: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    free.retain(|&(_, l)| l > 0);
    free.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(free.len());
    for (s, l) in free {
        let e = s.saturating_add(l);
        match out.last_mut() {
            Some((ls, ll)) if *ls + *ll >= s => {
                let le = (*ls + *ll).max(e);
                *ll = le - *ls;
            }
            _ => out.push((s, l)),
        }
    }
    out
}

/// Mark clean every region that lies entirely inside one (merged) free extent.
pub fn clean_map(free: &[(u64, u64)], dev_bytes: u64, region_bytes: u64) -> CleanMap {
    assert!(region_bytes > 0);
    let nr_regions = dev_bytes.div_ceil(region_bytes);
    let words = nr_regions.div_ceil(64) as usize;
    let mut bits = vec![0u8; words * 8];
    let mut clean = 0;
    for &(s, l) in &merge_extents(free.to_vec()) {
        let e = s.saturating_add(l).min(dev_bytes);
        let first = s.div_ceil(region_bytes);
        // A region is inside [s, e) when its end does not pass e; the last, partial region of
        // the device ends at dev_bytes.
        let mut r = first;
        while r < nr_regions {
            let r_end = ((r + 1) * region_bytes).min(dev_bytes);
            if r_end > e {
                break;
            }
            bits[(r / 8) as usize] |= 1 << (r % 8);
            clean += 1;
            r += 1;
        }
    }
    CleanMap {
        nr_regions,
        clean,
        bits,
    }
}

/// The bytes to write at the start of the log device: header, padding, bitmap.
pub fn log_image(map: &CleanMap) -> Vec<u8> {
    let mut img = vec![0u8; BITS_OFFSET + map.bits.len()];
    img[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    img[4..8].copy_from_slice(&VERSION.to_le_bytes());
    img[8..16].copy_from_slice(&map.nr_regions.to_le_bytes());
    img[BITS_OFFSET..].copy_from_slice(&map.bits);
    img
}

/// Where a filesystem lies on the device the mirror copies, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FsSpan {
    /// Its byte 0 on the device: 0, or an encrypted container's payload offset.
    pub start: u64,
    /// Its length, when it does not run to the device's end (None: it does).
    pub len: Option<u64>,
}

impl FsSpan {
    /// The filesystem's free extents (filesystem offsets) as device offsets: shifted by `start`
    /// and clipped to the span. Nothing outside the span is free: an encrypted container's
    /// header before it (keyslots, the LUKS2 metadata) and any tail after it are copied.
    pub fn free_on_device(&self, free: &[(u64, u64)]) -> Vec<(u64, u64)> {
        free.iter()
            .filter_map(|&(s, l)| {
                let e = match self.len {
                    Some(n) => s.saturating_add(l).min(n),
                    None => s.saturating_add(l),
                };
                (e > s).then(|| (s.saturating_add(self.start), e - s))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: u64 = 65536;

    fn is_clean(m: &CleanMap, r: u64) -> bool {
        m.bits[(r / 8) as usize] & (1 << (r % 8)) != 0
    }

    #[test]
    fn an_encrypted_payloads_free_space_is_shifted_past_the_header() {
        const MIB: u64 = 1 << 20;
        // LUKS2: payload at 16 MiB, 100 MiB long, on a 120 MiB device
        let span = FsSpan {
            start: 16 * MIB,
            len: Some(100 * MIB),
        };
        let free = [(0, MIB), (10 * MIB, 5 * MIB), (99 * MIB, 10 * MIB)];
        let on = span.free_on_device(&free);
        assert_eq!(on, [(16 * MIB, MIB), (26 * MIB, 5 * MIB), (115 * MIB, MIB)]);
        // the header and the tail after the payload are never clean
        let m = clean_map(&on, 120 * MIB, MIB);
        assert!(
            (0..16).all(|r| !is_clean(&m, r)),
            "LUKS header marked clean"
        );
        assert!(is_clean(&m, 16) && !is_clean(&m, 17));
        assert!((26..31).all(|r| is_clean(&m, r)));
        assert!(is_clean(&m, 115));
        assert!((116..120).all(|r| !is_clean(&m, r)), "tail marked clean");
        assert_eq!(m.clean, 7);
        // unshifted: the identity
        assert_eq!(FsSpan::default().free_on_device(&free), free);
        assert_eq!(
            FsSpan {
                start: 0,
                len: Some(MIB / 2)
            }
            .free_on_device(&free),
            [(0, MIB / 2)]
        );
    }

    #[test]
    fn merges_adjacent_and_overlapping_extents() {
        let m = merge_extents(vec![(100, 50), (0, 10), (10, 20), (140, 100), (500, 0)]);
        assert_eq!(m, vec![(0, 30), (100, 140)]);
    }

    #[test]
    fn only_regions_entirely_free_are_clean() {
        // 16 regions; free: [1.5R, 6R) and [8R, 16R)
        let m = clean_map(&[(R + R / 2, 4 * R + R / 2), (8 * R, 8 * R)], 16 * R, R);
        assert_eq!(m.nr_regions, 16);
        let clean: Vec<u64> = (0..16).filter(|&r| is_clean(&m, r)).collect();
        assert_eq!(clean, vec![2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15]);
        assert_eq!(m.clean, 12);
        assert_eq!(m.bits.len(), 8, "padded to a 64-bit word");
    }

    #[test]
    fn a_region_split_across_two_free_records_is_clean_after_merging() {
        // ext4 reports free space per block group: [0, 2.5R) and [2.5R, 4R) together cover 0..4R.
        let m = clean_map(&[(0, 2 * R + R / 2), (2 * R + R / 2, R + R / 2)], 4 * R, R);
        assert_eq!(m.clean, 4);
    }

    #[test]
    fn partial_last_region_counts_when_free_to_the_end() {
        let dev = 3 * R + 4096;
        let m = clean_map(&[(2 * R, R + 4096)], dev, R);
        assert_eq!(m.nr_regions, 4);
        assert!(is_clean(&m, 2) && is_clean(&m, 3));
        let m = clean_map(&[(2 * R, R)], dev, R);
        assert!(!is_clean(&m, 3), "last region partly used");
    }

    #[test]
    fn nothing_free_means_copy_everything() {
        let m = clean_map(&[], 10 * R, R);
        assert_eq!(m.clean, 0);
        assert!(m.bits.iter().all(|&b| b == 0));
    }

    #[test]
    fn log_image_layout_matches_dm_log() {
        let m = clean_map(&[(8 * R, 2 * R)], 64 * R, R);
        let img = log_image(&m);
        // "rRiM" little-endian magic, version 2, nr_regions 64
        assert_eq!(
            &img[0..16],
            &[0x72, 0x52, 0x69, 0x4D, 2, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0]
        );
        assert!(img[16..1024].iter().all(|&b| b == 0));
        assert_eq!(img[1024], 0x00);
        assert_eq!(
            img[1025], 0x03,
            "regions 8 and 9 clean: bits 0 and 1 of byte 1"
        );
        assert_eq!(img.len(), 1024 + 8);
    }
}
