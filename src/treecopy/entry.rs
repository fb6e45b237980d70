//! One entry: create its copy (data with holes kept, a hard link, a symlink, a node) and hand
//! it to [`meta`] for owners, modes, attributes, times and flags.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::Whence;

use super::{meta, Stats};

/// What copying one entry needs to know of the whole pass.
pub(super) struct Ctx<'a> {
    /// First copy of each multiply-linked inode of this pass: (st_dev, st_ino) → its copy.
    pub links: Mutex<HashMap<(u64, u64), PathBuf>>,
    /// The source's mount: directories on others are not entered.
    pub src_mnt: u64,
    pub skip: HashSet<PathBuf>,
    pub since: Option<(i64, i64)>,
    pub stats: &'a Stats,
    /// The target's top passes nothing on to new entries (no setgid, no default ACL): a
    /// directory this pass makes is then empty and neutral (see [`Dir::fresh`]).
    pub fresh_ok: bool,
}

/// A directory [`copy`] made or kept.
pub(super) struct Dir {
    /// Copy its contents (false: another mount, or a skipped directory).
    pub enter: bool,
    /// Made by this pass: nothing is in it yet.
    pub fresh: bool,
}

/// Copy one entry. `in_fresh`: its directory was made by this pass, so nothing by this name is
/// there (no look first). `Some` for a directory, `None` for anything else.
pub(super) fn copy(
    sh: &Ctx<'_>,
    s: &Path,
    d: &Path,
    md: &Metadata,
    in_fresh: bool,
) -> Result<Option<Dir>> {
    let ft = md.file_type();
    let existing = if in_fresh {
        None
    } else {
        fs::symlink_metadata(d).ok()
    };
    if ft.is_dir() {
        let fresh = match &existing {
            // Kept from an earlier pass; an immutable one would refuse new entries.
            Some(e) if e.is_dir() => {
                meta::clear_flags(d);
                false
            }
            Some(_) => {
                remove(d)?;
                mkdir(d)?;
                true
            }
            None => {
                mkdir(d)?;
                true
            }
        };
        Stats::add(&sh.stats.dirs, 1);
        let other_mount = crate::kernel::ioctl::inode::mount_id(s)
            .with_context(|| format!("the mount id of {}", s.display()))?
            != sh.src_mnt;
        if other_mount || sh.skip.contains(s) {
            Stats::add(&sh.stats.not_entered, 1);
            return Ok(Some(Dir {
                enter: false,
                fresh,
            }));
        }
        return Ok(Some(Dir {
            enter: true,
            fresh: fresh && sh.fresh_ok,
        }));
    }
    if let Some(e) = &existing {
        if let Some(since) = sh.since {
            if !changed(md, e, since) {
                Stats::add(&sh.stats.unchanged, 1);
                return Ok(None);
            }
        }
        remove(d)?;
    }
    let r = if ft.is_file() {
        file(sh, s, d, md, in_fresh)
    } else if ft.is_symlink() {
        let target = match fs::read_link(s) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("{}", s.display())),
        };
        std::os::unix::fs::symlink(&target, d).with_context(|| format!("{}", d.display()))?;
        Stats::add(&sh.stats.symlinks, 1);
        meta::apply_path(s, d, md)
    } else {
        let kind = if ft.is_char_device() {
            SFlag::S_IFCHR
        } else if ft.is_block_device() {
            SFlag::S_IFBLK
        } else if ft.is_fifo() {
            SFlag::S_IFIFO
        } else {
            SFlag::S_IFSOCK
        };
        nix::sys::stat::mknod(d, kind, Mode::from_bits_truncate(0o600), md.rdev())
            .with_context(|| format!("mknod {}", d.display()))?;
        Stats::add(&sh.stats.specials, 1);
        meta::apply_path(s, d, md)
    };
    r.with_context(|| format!("{}", d.display()))?;
    Ok(None)
}

/// Whether the source entry changed since the pass that made `copy`.
fn changed(src: &Metadata, copy: &Metadata, since: (i64, i64)) -> bool {
    (src.ctime(), src.ctime_nsec()) >= since
        || src.file_type() != copy.file_type()
        || (src.file_type().is_file() && src.len() != copy.len())
        || (!src.file_type().is_symlink()
            && (src.mtime(), src.mtime_nsec()) != (copy.mtime(), copy.mtime_nsec()))
}

fn mkdir(d: &Path) -> Result<()> {
    std::os::unix::fs::DirBuilderExt::mode(&mut fs::DirBuilder::new(), 0o700)
        .create(d)
        .with_context(|| format!("mkdir {}", d.display()))
}

/// Remove a copy (a whole tree for a directory), clearing the immutable/append-only flags that
/// would stop it.
pub(super) fn remove(d: &Path) -> Result<()> {
    let md = fs::symlink_metadata(d).with_context(|| format!("{}", d.display()))?;
    if md.is_dir() || md.is_file() {
        meta::clear_flags(d);
    }
    if md.is_dir() {
        for e in fs::read_dir(d).with_context(|| format!("reading {}", d.display()))? {
            remove(&e?.path())?;
        }
        fs::remove_dir(d)
    } else {
        fs::remove_file(d)
    }
    .with_context(|| format!("removing {}", d.display()))
}

/// A regular file: a hard link to the first copy of its inode, or a new file with its data.
fn file(sh: &Ctx<'_>, s: &Path, d: &Path, md: &Metadata, in_fresh: bool) -> Result<()> {
    let src = match open_source(s) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("opening {}", s.display())),
    };
    let create = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(d)
            .with_context(|| format!("creating {}", d.display()))
    };
    let dst = if md.nlink() > 1 {
        let mut links = sh.links.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(first) = links.get(&(md.dev(), md.ino())) {
            fs::hard_link(first, d)
                .with_context(|| format!("linking {} to {}", d.display(), first.display()))?;
            Stats::add(&sh.stats.hardlinks, 1);
            return Ok(());
        }
        // Created under the lock: a later name of the inode links to a file that exists.
        let f = create()?;
        links.insert((md.dev(), md.ino()), d.to_path_buf());
        f
    } else {
        create()?
    };
    let flags = meta::source_flags(&src);
    meta::early_flags(&dst, flags);
    let n = copy_data(&src, &dst, md).with_context(|| format!("copying {}", s.display()))?;
    Stats::add(&sh.stats.bytes, n);
    Stats::add(&sh.stats.files, 1);
    meta::apply_file(s, &src, &dst, flags, in_fresh)
}

/// Open a source file for reading without touching its atime (O_NOATIME needs the owner or
/// CAP_FOWNER: retried without it).
fn open_source(s: &Path) -> io::Result<File> {
    let base = libc::O_NOFOLLOW | libc::O_NONBLOCK;
    match OpenOptions::new()
        .read(true)
        .custom_flags(base | libc::O_NOATIME)
        .open(s)
    {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            OpenOptions::new().read(true).custom_flags(base).open(s)
        }
        r => r,
    }
}

/// Copy the data extents of `src` (holes stay holes) and set the length; the bytes copied. `md`:
/// the walk's look at it (a file changed since is copied as it is now up to that length, and its
/// new ctime brings it into the next pass).
pub(super) fn copy_data(src: &File, dst: &File, md: &Metadata) -> io::Result<u64> {
    // A file whose blocks cover its length has no holes: one range, no SEEK_DATA/SEEK_HOLE and
    // no truncate (each system call counts for thousands of small files, more so in a VM).
    let len = md.len() as i64;
    if md.blocks().saturating_mul(512) >= md.len() {
        let n = copy_range(src, dst, 0, len)?;
        if n as i64 != len {
            // it changed meanwhile: the length as of now (the next pass sees the rest)
            dst.set_len(src.metadata()?.len())?;
        }
        return Ok(n);
    }
    let mut copied = 0u64;
    let mut pos: i64 = 0;
    loop {
        let start = match nix::unistd::lseek(src.as_fd(), pos, Whence::SeekData) {
            Ok(o) => o,
            Err(Errno::ENXIO) => break,
            // No SEEK_DATA here: one extent, to the end.
            Err(Errno::EINVAL) if pos == 0 => 0,
            Err(e) => return Err(e.into()),
        };
        let end = match nix::unistd::lseek(src.as_fd(), start, Whence::SeekHole) {
            Ok(o) => o,
            Err(Errno::EINVAL) => src.metadata()?.len() as i64,
            Err(e) => return Err(e.into()),
        };
        if end <= start {
            break;
        }
        copied += copy_range(src, dst, start, end)?;
        pos = end;
    }
    // The length as of now (a hole at the end, or a file that grew or shrank meanwhile).
    dst.set_len(src.metadata()?.len())?;
    Ok(copied)
}

/// Copy bytes [start, end) at the same offsets: `copy_file_range` (reflinks or in-kernel copies
/// where the filesystems allow), else read and write.
fn copy_range(src: &File, dst: &File, start: i64, end: i64) -> io::Result<u64> {
    let (mut off_in, mut off_out) = (start, start);
    if NO_CFR.get() {
        return rw_range(src, dst, start, end);
    }
    while off_in < end {
        let want = usize::try_from(end - off_in)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        match nix::fcntl::copy_file_range(
            src.as_fd(),
            Some(&mut off_in),
            dst.as_fd(),
            Some(&mut off_out),
            want,
        ) {
            Ok(0) => break, // shorter than it was: the next pass sees the new size
            Ok(_) => {}
            Err(Errno::EXDEV | Errno::EINVAL | Errno::EOPNOTSUPP | Errno::ENOSYS) => {
                // one source and one target filesystem per copy: the answer holds for the rest
                NO_CFR.set(true);
                return rw_range(src, dst, off_in, end).map(|n| n + (off_in - start) as u64);
            }
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok((off_in - start) as u64)
}

thread_local! {
    /// `copy_file_range` refused this worker's first file (filesystems of different types): read
    /// and write from then on.
    static NO_CFR: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Each worker's copy buffer, made once: a fresh zeroed MiB per file cost more than the copy of
    /// a small file (measured: a squashfs tree of 9,000 files, 2.9 s → see bench/plain).
    static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn rw_range(src: &File, dst: &File, mut off: i64, end: i64) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let start = off;
    BUF.with(|b| {
        let mut buf = b.borrow_mut();
        if buf.is_empty() {
            buf.resize(1 << 20, 0);
        }
        while off < end {
            let want = buf.len().min((end - off) as usize);
            let n = src.read_at(&mut buf[..want], off as u64)?;
            if n == 0 {
                break;
            }
            dst.write_all_at(&buf[..n], off as u64)?;
            off += n as i64;
        }
        Ok((off - start) as u64)
    })
}
