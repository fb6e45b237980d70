//! Copying a file that the system will boot from, verified: written, flushed to the device, then read
//! back with O_DIRECT (from the device, not the page cache) and compared with the source.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

const CHUNK: usize = 1 << 20;

/// A 4 KiB-aligned buffer for O_DIRECT reads.
struct Aligned {
    buf: Vec<u8>,
    off: usize,
}

impl Aligned {
    fn new(n: usize) -> Aligned {
        let buf = vec![0u8; n + 4096];
        let off = buf.as_ptr().align_offset(4096);
        Aligned { buf, off }
    }
    fn get(&mut self, n: usize) -> &mut [u8] {
        &mut self.buf[self.off..self.off + n]
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Copy `src` to `dst`, flush it to the device, then read the copy back with O_DIRECT (from the
/// device, not the page cache) and compare it with the source, chunk by chunk.
pub fn copy_verified(src: &Path, dst: &Path, size: u64) -> Result<()> {
    let mut input = File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(dst)
        .with_context(|| format!("creating {}", dst.display()))?;
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    loop {
        let n = read_full(&mut input, &mut buf)
            .with_context(|| format!("reading {}", src.display()))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .with_context(|| format!("writing {}", dst.display()))?;
        done += n as u64;
    }
    if done != size {
        bail!(
            "{} changed size while copying ({done} of {size} bytes)",
            src.display()
        );
    }
    out.sync_all()
        .with_context(|| format!("syncing {}", dst.display()))?;
    drop(out);
    if let Some(dir) = dst.parent() {
        File::open(dir).and_then(|d| d.sync_all()).ok();
    }
    let mut again = File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let mut direct = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(dst)
        .with_context(|| format!("opening {} with O_DIRECT", dst.display()))?;
    let mut dbuf = Aligned::new(CHUNK);
    let mut off = 0u64;
    loop {
        let a = read_full(&mut again, &mut buf)?;
        let b = read_full(&mut direct, dbuf.get(CHUNK))
            .with_context(|| format!("reading {} back with O_DIRECT", dst.display()))?;
        if a != b || buf[..a] != dbuf.get(CHUNK)[..a] {
            bail!(
                "the copy {} differs from {} in the MiB at byte {off}",
                dst.display(),
                src.display()
            );
        }
        if a == 0 {
            break;
        }
        off += a as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffers_for_o_direct() {
        let mut a = Aligned::new(CHUNK);
        assert_eq!(a.get(CHUNK).as_ptr() as usize % 4096, 0);
        assert_eq!(a.get(CHUNK).len(), CHUNK);
    }
}
