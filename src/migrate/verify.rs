//! `migrate --verify`: before the source is let go, read the source and every other leg straight
//! from the devices (O_DIRECT: no page cache in between) over what was copied, and refuse to
//! detach on any difference, naming the first differing byte offset.
//!
//! While the mirror is in sync every write reaches every leg, so a difference is either a write
//! in flight while the two reads happened (it goes away when read again) or corruption. A
//! mismatch is re-read a few times, then once more with the filesystem frozen (nothing in
//! flight): only a difference that survives that is reported. With a used-blocks-only copy only
//! the blocks a fresh FS_IOC_GETFSMAP reports in use are compared (free regions differ on purpose).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::backend::usedmap::FsSpan;
use crate::kernel::blockdev::BlockDev;
use crate::kernel::fs::{free_extents, Frozen};

/// Bytes compared per read.
const CHUNK: usize = 1 << 20;
/// O_DIRECT wants the buffer, the offset and the length aligned to the logical block size.
const ALIGN: usize = 4096;

/// What was compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub bytes: u64,
    /// Mismatches that went away when read again (writes in flight).
    pub transient: u32,
}

/// The byte ranges in use, as `[start, end)`, from the free extents of a filesystem on a device
/// of `size` bytes, rounded out to `ALIGN`.
pub fn used_ranges(free: &[(u64, u64)], size: u64) -> Vec<(u64, u64)> {
    let mut free: Vec<(u64, u64)> = free
        .iter()
        .map(|&(s, l)| (s, s.saturating_add(l).min(size)))
        .collect();
    free.sort();
    let mut out = vec![];
    let mut at = 0u64;
    for (s, e) in free {
        // only whole aligned blocks count as free
        let fs = s.div_ceil(ALIGN as u64) * ALIGN as u64;
        let fe = e / ALIGN as u64 * ALIGN as u64;
        if fe <= fs {
            continue;
        }
        if fs > at {
            out.push((at, fs));
        }
        at = at.max(fe);
    }
    if at < size {
        out.push((at, size));
    }
    out
}

/// An aligned window into a buffer (safe: the offset is found with `align_offset`).
struct Buf {
    raw: Vec<u8>,
    off: usize,
}

impl Buf {
    fn new() -> Buf {
        let raw = vec![0u8; CHUNK + ALIGN];
        let off = raw.as_ptr().align_offset(ALIGN);
        Buf { raw, off }
    }
    fn get(&mut self, n: usize) -> &mut [u8] {
        &mut self.raw[self.off..self.off + n]
    }
}

fn open_direct(d: &BlockDev) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&d.path)
        .with_context(|| format!("opening {} for reading (O_DIRECT)", d.display()))
}

fn read_at(f: &File, buf: &mut [u8], off: u64, what: &BlockDev) -> Result<()> {
    f.read_exact_at(buf, off)
        .with_context(|| format!("reading {} at byte {off}", what.display()))
}

/// First differing byte of two equally long slices.
fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// Compare `source` with each of `legs` over `ranges`; `mount` is frozen to confirm a persistent
/// difference.
pub fn verify(
    source: &BlockDev,
    legs: &[BlockDev],
    ranges: &[(u64, u64)],
    mount: Option<&Path>,
) -> Result<Verified> {
    let src = open_direct(source)?;
    let mut out = Verified {
        bytes: 0,
        transient: 0,
    };
    let (mut a, mut b) = (Buf::new(), Buf::new());
    for leg in legs {
        let dst = open_direct(leg)?;
        for &(start, end) in ranges {
            let mut off = start;
            while off < end {
                let n = ((end - off) as usize).min(CHUNK);
                let n = n.div_ceil(ALIGN) * ALIGN;
                read_at(&src, a.get(n), off, source)?;
                read_at(&dst, b.get(n), off, leg)?;
                if let Some(i) = first_diff(a.get(n), b.get(n)) {
                    let mut settled = false;
                    for _ in 0..3 {
                        sleep(Duration::from_millis(50));
                        read_at(&src, a.get(n), off, source)?;
                        read_at(&dst, b.get(n), off, leg)?;
                        if first_diff(a.get(n), b.get(n)).is_none() {
                            settled = true;
                            break;
                        }
                    }
                    if !settled {
                        // nothing in flight while frozen: a difference now is real
                        let frozen = match mount {
                            Some(m) => Some(
                                Frozen::freeze(m)
                                    .with_context(|| format!("freezing {}", m.display()))?,
                            ),
                            None => None,
                        };
                        let again = read_at(&src, a.get(n), off, source)
                            .and_then(|_| read_at(&dst, b.get(n), off, leg))
                            .map(|_| first_diff(a.get(n), b.get(n)));
                        if let Some(f) = frozen {
                            f.thaw()
                                .map_err(|e| anyhow!("thawing after the check: {e}"))?;
                        }
                        if let Some(j) = again? {
                            bail!(
                                "--verify: {} and {} differ at byte offset {} (first difference; it persisted with the \
                                 filesystem frozen): the copy is not trustworthy",
                                source.display(),
                                leg.display(),
                                off + j as u64
                            );
                        }
                    }
                    let _ = i;
                    out.transient += 1;
                }
                out.bytes += n as u64;
                off += n as u64;
            }
        }
    }
    Ok(out)
}

/// The ranges to compare: the whole device, or (used-only copy) what the mounted filesystem uses
/// now, from a fresh free-space map.
pub fn ranges(
    mount: Option<(&Path, FsSpan)>,
    wrapper_dev: crate::kernel::devnum::DevNum,
    size: u64,
    used_only: bool,
) -> Result<Vec<(u64, u64)>> {
    match (used_only, mount) {
        (true, Some((m, span))) => {
            let f = File::open(m).with_context(|| format!("opening {}", m.display()))?;
            let free = free_extents(&f, wrapper_dev)
                .with_context(|| format!("reading the free-space map of {}", m.display()))?;
            Ok(used_ranges(&span.free_on_device(&free), size))
        }
        _ => Ok(vec![(0, size / ALIGN as u64 * ALIGN as u64)]),
    }
}

impl super::Run {
    /// `--verify`: compare the source with the target (and clones) while they are in sync.
    pub(super) fn verify_copy(&mut self) -> Result<()> {
        let used_only = self.info.as_ref().is_some_and(|i| i.mode == "used");
        let size = self.journal.source.size_bytes;
        let fs = super::start::fs_mount(self.mount.as_ref(), self.crypt.as_ref())
            .map(|(m, span)| (m.mount_point.clone(), span));
        let mount = fs.as_ref().map(|(m, _)| m.clone());
        let ranges = ranges(
            fs.as_ref().map(|(m, span)| (m.as_path(), *span)),
            self.w.devnum,
            size,
            used_only,
        )?;
        let total: u64 = ranges.iter().map(|(s, e)| e - s).sum();
        self.progress.event(
            "verifying",
            &format!(
                "verifying: comparing {} of {} with {} ({})",
                crate::units::human(devicemapper::Bytes(total.into())),
                self.source.display(),
                self.target.display(),
                if used_only {
                    "the blocks in use"
                } else {
                    "the whole device"
                }
            ),
            serde_json::json!({"bytes": total, "used_only": used_only}),
        );
        let mut legs = vec![self.target.clone()];
        legs.extend(self.clones.iter().cloned());
        let t = std::time::Instant::now();
        let v = verify(&self.source, &legs, &ranges, mount.as_deref())?;
        self.journal.verified_bytes = Some(v.bytes);
        self.journal.save()?;
        self.progress.event(
            "verified",
            &format!(
                "verified {} in {:.1} s: identical{}",
                crate::units::human(devicemapper::Bytes(v.bytes.into())),
                t.elapsed().as_secs_f64(),
                if v.transient > 0 {
                    format!(
                        " ({} difference(s) from writes in flight settled on re-read)",
                        v.transient
                    )
                } else {
                    String::new()
                }
            ),
            serde_json::json!({"verified_bytes": v.bytes, "mismatches": 0, "transient": v.transient}),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_ranges_are_the_complement_of_whole_free_blocks() {
        let k = 4096u64;
        // free: [8K, 24K) and [40K, 64K); device 64K
        assert_eq!(used_ranges(&[(8 * k / 4, 0)], 16 * k), vec![(0, 16 * k)]);
        assert_eq!(
            used_ranges(&[(2 * k, 4 * k), (10 * k, 6 * k)], 16 * k),
            vec![(0, 2 * k), (6 * k, 10 * k)]
        );
        // unaligned free space shrinks to whole blocks; overlapping and unsorted input
        assert_eq!(
            used_ranges(
                &[(10 * k, 6 * k), (2 * k + 1, 4 * k), (3 * k, 2 * k)],
                16 * k
            ),
            vec![(0, 3 * k), (6 * k, 10 * k)]
        );
        assert_eq!(used_ranges(&[], 8 * k), vec![(0, 8 * k)]);
        assert_eq!(used_ranges(&[(0, 8 * k)], 8 * k), vec![]);
    }

    #[test]
    fn buffers_are_aligned_and_differences_found() {
        let mut b = Buf::new();
        assert_eq!(b.get(ALIGN).as_ptr() as usize % ALIGN, 0);
        assert_eq!(first_diff(b"abcd", b"abXd"), Some(2));
        assert_eq!(first_diff(b"abcd", b"abcd"), None);
    }
}
