//! Put a planned table on a disk and make the kernel see it: the write, BLKRRPART (or BLKPG
//! partition by partition when one is in use), the partitions' nodes, their first MiB cleared.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::layout::{Plan, Role};
use super::Table;
use crate::kernel::blockdev::BlockDev;
use crate::kernel::ioctl::{self, BlkpgOp};

/// Write the planned table in one go, then make the kernel see it: BLKRRPART, or — when a
/// partition of the disk is in use (the kept one) — BLKPG: drop the old partitions the plan does
/// not keep, add the new ones.
pub fn write_table(
    disk: &BlockDev,
    plan: &Plan,
    old: &Table,
    kept_in_use: bool,
) -> Result<&'static str> {
    let d = disk.display();
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&disk.path)
        .with_context(|| format!("opening {d} for writing"))?;
    plan.write(&mut f)
        .with_context(|| format!("writing the partition table on {d}"))?;
    f.sync_all().with_context(|| format!("flushing {d}"))?;
    if !kept_in_use {
        let mut last = None;
        for _ in 0..5 {
            match ioctl::blk_reread_partitions(f.as_fd()) {
                Ok(()) => return Ok("blkrrpart"),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    last = Some(e);
                    sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(anyhow!("re-reading the partition table of {d}: {e}")),
            }
        }
        // Still busy (udev probing, say): fall through to BLKPG.
        let _ = last;
    }
    let ss = plan.sector_size;
    let kept = plan.retained().map(|k| (k.first_lba, k.last_lba));
    for p in &old.parts {
        if Some((p.first_lba, p.last_lba)) == kept {
            continue;
        }
        if super::part_dev(disk, p.number).is_some() {
            ioctl::blkpg(f.as_fd(), BlkpgOp::Del, p.number, 0, 0).with_context(|| {
                format!(
                    "BLKPG: removing the old partition {} of {d} from the kernel's view",
                    p.number
                )
            })?;
        }
    }
    // A kept partition that is not in use but changed its number: re-add it under the new one.
    if let Some(k) = plan.retained() {
        if let Some(old_k) = old.parts.iter().find(|p| p.first_lba == k.first_lba) {
            if old_k.number != k.number {
                if super::part_dev(disk, old_k.number).is_some() {
                    ioctl::blkpg(f.as_fd(), BlkpgOp::Del, old_k.number, 0, 0).with_context(
                        || format!("BLKPG: renumbering the kept partition {}", old_k.number),
                    )?;
                }
                ioctl::blkpg(
                    f.as_fd(),
                    BlkpgOp::Add,
                    k.number,
                    k.first_lba * ss,
                    k.sectors() * ss,
                )
                .with_context(|| format!("BLKPG: adding the kept partition as {}", k.number))?;
            }
        }
    }
    for p in plan.parts.iter().filter(|p| p.role != Role::Retained) {
        ioctl::blkpg(
            f.as_fd(),
            BlkpgOp::Add,
            p.number,
            p.first_lba * ss,
            p.sectors() * ss,
        )
        .with_context(|| format!("BLKPG: adding partition {} of {d}", p.number))?;
    }
    Ok("blkpg")
}

/// The kernel devices of the planned partitions, once they exist (udev or devtmpfs makes them).
pub fn wait_for_partitions(
    disk: &BlockDev,
    plan: &Plan,
) -> Result<std::collections::HashMap<u32, BlockDev>> {
    if Path::new("/run/udev/control").exists() {
        let _ = crate::tools::run("udevadm", &["settle", "--timeout=30"]);
    }
    let t0 = Instant::now();
    loop {
        let mut out = std::collections::HashMap::new();
        for p in &plan.parts {
            if let Some(dev) = super::part_dev(disk, p.number) {
                let (start, len) = dev.partition_range().unwrap_or((0, 0));
                let ss = plan.sector_size / 512;
                if start == p.first_lba * ss && len == p.sectors() * ss && dev.path.exists() {
                    out.insert(p.number, dev);
                }
            }
        }
        if out.len() == plan.parts.len() {
            return Ok(out);
        }
        if t0.elapsed() > Duration::from_secs(30) {
            bail!(
                "the kernel shows {} of the {} new partitions of {} after 30 s",
                out.len(),
                plan.parts.len(),
                disk.display()
            );
        }
        sleep(Duration::from_millis(200));
    }
}

/// Zero the first MiB of a new partition: no stale signature of an earlier layout survives
/// to be mistaken for this partition's content.
pub fn clear_start(dev: &BlockDev) -> Result<()> {
    let mut f = OpenOptions::new().write(true).open(&dev.path)?;
    let n = (*dev.size()? as u64).min(1 << 20) as usize;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&vec![0u8; n])?;
    f.sync_all()?;
    Ok(())
}
