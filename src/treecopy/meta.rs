//! Metadata of a copied entry, in the order that keeps it: owner (which clears set-id bits and
//! file capabilities), mode, extended attributes (capabilities and ACLs among them), times, and
//! last the inode flags (an immutable file's times could not be set after).

use std::fs::{File, Metadata, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};
use nix::sys::stat::UtimensatFlags;
use nix::sys::time::TimeSpec;
use xattr::FileExt;

use crate::kernel::ioctl::inode;

/// overlayfs' own attributes (opaque directories, redirects, origins): never carried.
const OVERLAY_PREFIX: &[u8] = b"trusted.overlay.";

// linux/fs.h: the flags `chattr` sets that mean something on any filesystem.
const FS_SYNC_FL: u32 = 0x8;
const FS_IMMUTABLE_FL: u32 = 0x10;
const FS_APPEND_FL: u32 = 0x20;
const FS_NODUMP_FL: u32 = 0x40;
const FS_NOATIME_FL: u32 = 0x80;
const FS_DIRSYNC_FL: u32 = 0x10000;
const FS_NOCOW_FL: u32 = 0x80_0000;
/// The flags carried over; the rest (ext4's extents, inline data, encryption…) belong to how
/// the target filesystem stores the file.
pub(super) const CARRIED: u32 = FS_SYNC_FL
    | FS_IMMUTABLE_FL
    | FS_APPEND_FL
    | FS_NODUMP_FL
    | FS_NOATIME_FL
    | FS_DIRSYNC_FL
    | FS_NOCOW_FL;

/// Whether an attribute name is carried.
pub(super) fn carried_xattr(name: &[u8]) -> bool {
    !name.starts_with(OVERLAY_PREFIX)
}

/// The names of `p`'s attributes (none where its filesystem has no xattr support at all, as a
/// squashfs made without them answers through an overlay: EOPNOTSUPP).
pub(super) fn xattr_names(p: &Path) -> std::io::Result<Vec<std::ffi::OsString>> {
    match xattr::list(p) {
        Ok(l) => Ok(l.collect()),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(vec![]),
        Err(e) => Err(e),
    }
}

/// The carried flags of an open source file (0 where the filesystem has none).
pub(super) fn source_flags(f: &File) -> u32 {
    inode::get_flags(f.as_fd())
        .map(|v| v & CARRIED)
        .unwrap_or(0)
}

/// NOCOW only takes on an empty file: set it before the data.
pub(super) fn early_flags(dst: &File, flags: u32) {
    if flags & FS_NOCOW_FL != 0 {
        if let Ok(cur) = inode::get_flags(dst.as_fd()) {
            let _ = inode::set_flags(dst.as_fd(), cur | FS_NOCOW_FL);
        }
    }
}

/// Clear immutable/append-only on a copy about to be removed (best effort).
pub(super) fn clear_flags(p: &Path) {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(p);
    if let Ok(f) = f {
        if let Ok(cur) = inode::get_flags(f.as_fd()) {
            if cur & (FS_IMMUTABLE_FL | FS_APPEND_FL) != 0 {
                let _ = inode::set_flags(f.as_fd(), cur & !(FS_IMMUTABLE_FL | FS_APPEND_FL));
            }
        }
    }
}

fn set_flags(dst: &File, flags: u32) -> Result<()> {
    let cur = inode::get_flags(dst.as_fd()).unwrap_or(0);
    let want = (cur & !CARRIED) | (flags & CARRIED);
    if want != cur {
        inode::set_flags(dst.as_fd(), want).context("setting inode flags (chattr)")?;
    }
    Ok(())
}

fn times(md: &Metadata) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::new(md.atime(), md.atime_nsec()),
        TimeSpec::new(md.mtime(), md.mtime_nsec()),
    )
}

/// Metadata of a regular file whose data was just copied (both open). `in_fresh`: its directory
/// was made by this pass and gets its own metadata only at the end, so the new file inherited
/// nothing from it (no setgid group, no inode flags): a root-owned file made by root needs no
/// chown and a file without flags no flag calls (system calls count, thousands of small files).
pub(super) fn apply_file(
    s: &Path,
    src: &File,
    dst: &File,
    flags: u32,
    in_fresh: bool,
) -> Result<()> {
    // Fresh: the data copy may have taken a while.
    let md = src.metadata().with_context(|| format!("{}", s.display()))?;
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let root = *ROOT
        .get_or_init(|| nix::unistd::geteuid().is_root() && nix::unistd::getegid().as_raw() == 0);
    let as_made = in_fresh && md.uid() == 0 && md.gid() == 0 && root;
    if !as_made {
        std::os::unix::fs::fchown(dst, Some(md.uid()), Some(md.gid())).context("chown")?;
    }
    dst.set_permissions(std::fs::Permissions::from_mode(md.mode() & 0o7777))
        .context("chmod")?;
    let names: Vec<_> = match src.list_xattr() {
        Ok(l) => l.collect(),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => vec![],
        Err(e) => return Err(e).context("listing xattrs"),
    };
    for n in names {
        if !carried_xattr(n.as_encoded_bytes()) {
            continue;
        }
        if let Some(v) = src.get_xattr(&n).context("reading an xattr")? {
            dst.set_xattr(&n, &v)
                .with_context(|| format!("setting xattr {}", n.to_string_lossy()))?;
        }
    }
    let (a, m) = times(&md);
    nix::sys::stat::futimens(dst.as_fd(), &a, &m).context("setting times")?;
    if in_fresh && flags & CARRIED == 0 {
        return Ok(());
    }
    set_flags(dst, flags)
}

/// Metadata of a directory, symlink or node by path (symlinks not followed).
pub(super) fn apply_path(s: &Path, d: &Path, md: &Metadata) -> Result<()> {
    std::os::unix::fs::lchown(d, Some(md.uid()), Some(md.gid())).context("chown")?;
    let link = md.file_type().is_symlink();
    if !link {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(md.mode() & 0o7777))
            .context("chmod")?;
    }
    let want: Vec<_> = xattr_names(s)
        .context("listing xattrs")?
        .into_iter()
        .filter(|n| carried_xattr(n.as_encoded_bytes()))
        .collect();
    // A directory kept from an earlier pass may carry attributes the source lost.
    for n in xattr_names(d).context("listing xattrs")? {
        if carried_xattr(n.as_encoded_bytes()) && !want.contains(&n) {
            xattr::remove(d, &n)
                .with_context(|| format!("removing xattr {}", n.to_string_lossy()))?;
        }
    }
    for n in want {
        if let Some(v) = xattr::get(s, &n).context("reading an xattr")? {
            xattr::set(d, &n, &v)
                .with_context(|| format!("setting xattr {}", n.to_string_lossy()))?;
        }
    }
    let (a, m) = times(md);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        d,
        &a,
        &m,
        UtimensatFlags::NoFollowSymlink,
    )
    .context("setting times")?;
    if md.is_dir() {
        let open = |p: &Path| {
            OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
                .open(p)
        };
        let flags = open(s).map(|f| source_flags(&f)).unwrap_or(0);
        if flags != 0 {
            set_flags(&open(d).context("opening the directory")?, flags)?;
        }
    }
    Ok(())
}
