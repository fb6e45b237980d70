//! A target disk made blank before the copy: the kernel's partitions of it deleted (BLKPG), and
//! the places signatures live cleared — the first MiB (MBR, primary GPT, ext/xfs/btrfs
//! superblocks, md 1.1/1.2, LVM, LUKS) and the last MiB (the backup GPT header and entries, md
//! 0.90/1.0 superblocks, the end-of-device copies some formats keep). Without this a whole disk
//! with an old table keeps its partitions as live nodes over the migrated root, and the backup GPT
//! header at its end makes tools offer to "restore" the old table. Done in Rust (no `wipefs`).

use std::io::{Seek, SeekFrom, Write};
use std::os::fd::AsFd;

use anyhow::{Context, Result};

use crate::kernel::blockdev::BlockDev;
use crate::kernel::ioctl::{self, BlkpgOp};

/// Bytes cleared at each end.
pub const WIPE_BYTES: u64 = 1 << 20;

/// The byte ranges (offset, length) cleared on a device of `size` bytes: the first and the last
/// MiB, once each, never past the end.
pub fn wipe_ranges(size: u64) -> Vec<(u64, u64)> {
    if size <= 2 * WIPE_BYTES {
        return if size == 0 { vec![] } else { vec![(0, size)] };
    }
    vec![(0, WIPE_BYTES), (size - WIPE_BYTES, WIPE_BYTES)]
}

/// Delete the kernel's partitions of `dev` (a whole disk) and clear its signatures. Returns what
/// was done, one line each. Refuses (O_EXCL) if anything holds the device.
pub fn blank(dev: &BlockDev) -> Result<Vec<String>> {
    let mut done = vec![];
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_EXCL | libc::O_CLOEXEC)
        .open(&dev.path)
        .with_context(|| format!("opening {} exclusively to clear it", dev.display()))?;
    if !dev.is_partition() {
        for p in dev.partitions() {
            let Some(n) = p.partition_number() else {
                continue;
            };
            ioctl::blkpg(f.as_fd(), BlkpgOp::Del, n, 0, 0).with_context(|| {
                format!(
                    "deleting the kernel's partition {} of {} (BLKPG)",
                    p.display(),
                    dev.display()
                )
            })?;
            done.push(format!("deleted the kernel's partition {}", p.display()));
        }
    }
    let size = *dev.size()? as u64;
    let mut f = f;
    let zeros = vec![0u8; WIPE_BYTES as usize];
    for (off, len) in wipe_ranges(size) {
        f.seek(SeekFrom::Start(off))?;
        f.write_all(&zeros[..len as usize])
            .with_context(|| format!("clearing {} at byte {off}", dev.display()))?;
        done.push(format!(
            "cleared {len} bytes at byte {off} of {}",
            dev.display()
        ));
    }
    f.sync_all()
        .with_context(|| format!("syncing {}", dev.display()))?;
    let _ = ioctl::blk_flush_buffers(f.as_fd());
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ends_once_and_never_past_the_end() {
        let g = 1u64 << 30;
        assert_eq!(
            wipe_ranges(g),
            vec![(0, WIPE_BYTES), (g - WIPE_BYTES, WIPE_BYTES)]
        );
        // the backup GPT header is the last sector: inside the last range
        let (off, len) = wipe_ranges(g)[1];
        assert!(off <= g - 512 && off + len == g);
        // small devices: cleared whole, once
        assert_eq!(wipe_ranges(1536 * 1024), vec![(0, 1536 * 1024)]);
        assert_eq!(wipe_ranges(2 * WIPE_BYTES), vec![(0, 2 * WIPE_BYTES)]);
        assert_eq!(wipe_ranges(0), vec![]);
    }
}
