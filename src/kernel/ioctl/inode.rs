//! Per-inode calls the file-by-file copier needs that nix does not wrap: the inode flags
//! (`chattr`'s FS_IOC_GETFLAGS/SETFLAGS, linux/fs.h) and a path's mount id (statx
//! `STATX_MNT_ID`, Linux 5.8+).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

mod raw {
    // linux/fs.h: FS_IOC_GETFLAGS _IOR('f', 1, long), FS_IOC_SETFLAGS _IOW('f', 2, long); the
    // kernel moves an int despite the long in the number.
    nix::ioctl_read!(fs_ioc_getflags, b'f', 1, libc::c_long);
    nix::ioctl_write_ptr!(fs_ioc_setflags, b'f', 2, libc::c_long);
}

/// The inode flags of an open regular file or directory (FS_IOC_GETFLAGS).
pub fn get_flags(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut v: libc::c_long = 0;
    // SAFETY: the kernel writes an int into `v` (a long, so large enough), valid for the call.
    unsafe { raw::fs_ioc_getflags(fd.as_raw_fd(), &mut v) }.map_err(io::Error::from)?;
    Ok(v as u32)
}

/// Set the inode flags of an open regular file or directory (FS_IOC_SETFLAGS).
pub fn set_flags(fd: BorrowedFd<'_>, flags: u32) -> io::Result<()> {
    let v = flags as libc::c_long;
    // SAFETY: the kernel reads an int from `v`, valid for the call.
    unsafe { raw::fs_ioc_setflags(fd.as_raw_fd(), &v) }
        .map(|_| ())
        .map_err(io::Error::from)
}

/// The id of the mount `path` (not followed if a symlink) is on, as /proc/self/mountinfo's
/// first field. Unlike `st_dev` it is the same for every file of one overlay mount (overlayfs
/// reports its own `st_dev` for directories and the layers' for files).
pub fn mount_id(path: &Path) -> io::Result<u64> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: zeroed is a valid `statx` (plain integers).
    let mut buf: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `buf` a valid statx, both alive for the call.
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT,
            libc::STATX_MNT_ID,
            &mut buf,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if buf.stx_mask & libc::STATX_MNT_ID == 0 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "statx gave no mount id (Linux 5.8 or later is needed)",
        ));
    }
    Ok(buf.stx_mnt_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_linux_fs_h() {
        // FS_IOC_GETFLAGS 0x80086601, FS_IOC_SETFLAGS 0x40086602 on 64-bit
        assert_eq!(nix::request_code_read!(b'f', 1, 8), 0x80086601);
        assert_eq!(nix::request_code_write!(b'f', 2, 8), 0x40086602);
    }

    #[test]
    fn mount_ids_differ_across_mounts_only() {
        let root = mount_id(Path::new("/")).unwrap();
        assert_eq!(mount_id(Path::new("/etc")).unwrap(), root);
        assert_ne!(mount_id(Path::new("/proc/self")).unwrap(), root);
    }
}
