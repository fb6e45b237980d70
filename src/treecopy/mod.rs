//! Copying a live directory tree file by file, in parallel (issue 19: a conventional installed
//! system from a live session, whose overlay root cannot be copied as a block device).
//!
//! What is carried: regular files (holes kept: only the data extents are copied, with
//! `copy_file_range`), directories, symlinks, device nodes, fifos and sockets; hard links (as
//! links); owners (symlinks too), modes, access and modification times with nanoseconds
//! (directories last, after their contents); every extended attribute — `user.*`, `security.*`
//! (file capabilities, SELinux labels), `trusted.*`, POSIX ACLs (`system.posix_acl_*`) — except
//! overlayfs' own `trusted.overlay.*`; the inode flags `chattr` sets (immutable, append-only,
//! nodump, noatime, sync, dirsync, nocow); names that are not UTF-8.
//!
//! Mount boundaries are found by mount id ([`crate::kernel::ioctl::inode::mount_id`]): on an
//! overlay, directories and files report different `st_dev`. A directory on another mount, or
//! one of the `skip` paths, is created (with its metadata) but not entered, as `cp -x` does.
//!
//! A live source keeps changing: [`copy_tree`] with `since` (the start time of an earlier pass)
//! is a catch-up pass over the merged view. It re-copies every entry whose inode changed since
//! (`ctime` ≥ `since`) or whose type, size or mtime differs from the copy, removes copies of
//! entries that are gone, and re-applies every directory's metadata. The copy is consistent as
//! of the last pass only; nothing here reads an overlay's upper directory directly (whiteouts
//! and redirects are the overlay's business).

pub mod command;
mod compare;
mod entry;
mod meta;
mod walk;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context, Result};

pub use compare::{compare_trees, Difference};

/// What to copy and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Worker threads (at least 1).
    pub threads: usize,
    /// Directories below the source created empty (with their metadata), not entered.
    pub skip: Vec<PathBuf>,
    /// A catch-up pass: only entries changed since this time (seconds, nanoseconds since the
    /// epoch, as `ctime`) or differing from the copy are copied again; gone ones are removed.
    pub since: Option<(i64, i64)>,
}

impl Options {
    /// A first pass with `threads` workers.
    pub fn new(threads: usize) -> Options {
        Options {
            threads: threads.max(1),
            skip: vec![],
            since: None,
        }
    }

    /// The directories a copy of a running system's `/` leaves empty: the kernel's and the
    /// session's (`/proc`, `/sys`, `/dev`, `/run`, `/tmp`), whether or not they are mounts.
    pub fn system_root(src: &Path, threads: usize) -> Options {
        let mut o = Options::new(threads);
        o.skip = ["proc", "sys", "dev", "run", "tmp"]
            .iter()
            .map(|d| src.join(d))
            .collect();
        o
    }
}

/// Counters, readable while the copy runs (progress).
#[derive(Debug, Default)]
pub struct Stats {
    pub files: AtomicU64,
    pub dirs: AtomicU64,
    pub symlinks: AtomicU64,
    pub specials: AtomicU64,
    pub hardlinks: AtomicU64,
    pub bytes: AtomicU64,
    /// Entries a catch-up pass found unchanged.
    pub unchanged: AtomicU64,
    /// Copies a catch-up pass removed (their source is gone).
    pub removed: AtomicU64,
    /// Directories not entered: other mounts and `skip` paths.
    pub not_entered: AtomicU64,
}

/// A plain copy of [`Stats`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub specials: u64,
    pub hardlinks: u64,
    pub bytes: u64,
    pub unchanged: u64,
    pub removed: u64,
    pub not_entered: u64,
}

impl Stats {
    pub fn counts(&self) -> Counts {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counts {
            files: g(&self.files),
            dirs: g(&self.dirs),
            symlinks: g(&self.symlinks),
            specials: g(&self.specials),
            hardlinks: g(&self.hardlinks),
            bytes: g(&self.bytes),
            unchanged: g(&self.unchanged),
            removed: g(&self.removed),
            not_entered: g(&self.not_entered),
        }
    }

    fn add(a: &AtomicU64, n: u64) {
        a.fetch_add(n, Ordering::Relaxed);
    }
}

/// The `since` of the next catch-up pass: take it *before* a pass starts, so that a change during
/// the pass counts as newer. A second early: the kernel stamps `ctime` from a coarse clock
/// that may lag the one read here by a tick, and re-copying a few extra files costs little.
pub fn pass_start() -> (i64, i64) {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.as_secs() as i64 - 1, i64::from(t.subsec_nanos()))
}

/// Copy the tree at `src` into the existing directory `dst` (normally the root of a freshly
/// made filesystem), updating `stats` as it goes. An error stops the copy and names the file.
pub fn copy_tree(src: &Path, dst: &Path, opts: &Options, stats: &Stats) -> Result<()> {
    let sm = std::fs::symlink_metadata(src).with_context(|| format!("{}", src.display()))?;
    if !sm.is_dir() {
        bail!("{} is not a directory", src.display());
    }
    let dm = std::fs::metadata(dst).with_context(|| format!("{}", dst.display()))?;
    if !dm.is_dir() {
        bail!("{} is not a directory", dst.display());
    }
    let src_mnt = crate::kernel::ioctl::inode::mount_id(src)
        .with_context(|| format!("the mount id of {}", src.display()))?;
    let dst_mnt = crate::kernel::ioctl::inode::mount_id(dst)
        .with_context(|| format!("the mount id of {}", dst.display()))?;
    let (src_c, dst_c) = (src.canonicalize()?, dst.canonicalize()?);
    if dst_c.starts_with(&src_c) && src_mnt == dst_mnt {
        bail!(
            "{} is inside {} on the same filesystem: the copy would copy itself; mount the \
             target filesystem there instead",
            dst.display(),
            src.display()
        );
    }
    walk::run(&src_c, &dst_c, src_mnt, opts, stats)
}
#[cfg(test)]
mod tests;
