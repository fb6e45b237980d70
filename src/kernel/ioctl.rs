//! Every raw ioctl rootshift issues (outside the devicemapper crate), each behind one small safe
//! function. This is the only module of rootshift with `unsafe`.
//!
//! Numbers are checked against the uapi headers in the tests below (values from
//! linux/fs.h, fs/ext4/ext4.h, fs/xfs/libxfs/xfs_fs.h).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::{ioctl_read, ioctl_read_bad, ioctl_write_ptr};

mod raw {
    use super::*;
    // linux/fs.h
    ioctl_read!(blkgetsize64, 0x12, 114, u64);
    ioctl_read_bad!(blksszget, 0x1268, libc::c_int);
    // fs/ext4/ext4.h: EXT4_IOC_RESIZE_FS _IOW('f', 16, __u64)
    ioctl_write_ptr!(ext4_resize_fs, b'f', 16, u64);
    // fs/xfs/libxfs/xfs_fs.h
    ioctl_read!(xfs_fsgeometry_v1, b'X', 100, XfsGeometryV1);
    ioctl_write_ptr!(xfs_growfsdata, b'X', 110, XfsGrowfsData);
}

/// `struct xfs_fsop_geom_v1` (the oldest, smallest geometry call; every kernel has it).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct XfsGeometryV1 {
    pub blocksize: u32,
    pub rtextsize: u32,
    pub agblocks: u32,
    pub agcount: u32,
    pub logblocks: u32,
    pub sectsize: u32,
    pub inodesize: u32,
    pub imaxpct: u32,
    pub datablocks: u64,
    pub rtblocks: u64,
    pub rtextents: u64,
    pub logstart: u64,
    pub uuid: [u8; 16],
    pub sunit: u32,
    pub swidth: u32,
    pub version: i32,
    pub flags: u32,
    pub logsectsize: u32,
    pub rtsectsize: u32,
    pub dirblocksize: u32,
}

/// `struct xfs_growfs_data`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct XfsGrowfsData {
    pub newblocks: u64,
    pub imaxpct: u32,
}

fn io(r: nix::Result<libc::c_int>) -> io::Result<()> {
    r.map(|_| ()).map_err(io::Error::from)
}

/// Size of a block device in bytes (BLKGETSIZE64).
pub fn block_size_bytes(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut v: u64 = 0;
    // SAFETY: the kernel writes one u64 through the pointer, which is valid for the call.
    io(unsafe { raw::blkgetsize64(fd.as_raw_fd(), &mut v) })?;
    Ok(v)
}

/// Logical block (sector) size of a block device (BLKSSZGET).
pub fn logical_block_size(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut v: libc::c_int = 0;
    // SAFETY: the kernel writes one int through the pointer, which is valid for the call.
    io(unsafe { raw::blksszget(fd.as_raw_fd(), &mut v) })?;
    Ok(v as u32)
}

/// Grow a mounted ext4 filesystem to `blocks` filesystem blocks (EXT4_IOC_RESIZE_FS).
/// `fd` is any open file or directory of that filesystem.
pub fn ext4_resize(fd: BorrowedFd<'_>, blocks: u64) -> io::Result<()> {
    // SAFETY: the kernel reads one u64 through the pointer.
    io(unsafe { raw::ext4_resize_fs(fd.as_raw_fd(), &blocks) })
}

/// Geometry of a mounted xfs filesystem (XFS_IOC_FSGEOMETRY_V1).
pub fn xfs_geometry(fd: BorrowedFd<'_>) -> io::Result<XfsGeometryV1> {
    let mut g = XfsGeometryV1::default();
    // SAFETY: the kernel writes one struct xfs_fsop_geom_v1; ours has the same layout.
    io(unsafe { raw::xfs_fsgeometry_v1(fd.as_raw_fd(), &mut g) })?;
    Ok(g)
}

/// Grow the data section of a mounted xfs filesystem (XFS_IOC_FSGROWFSDATA).
pub fn xfs_grow_data(fd: BorrowedFd<'_>, newblocks: u64, imaxpct: u32) -> io::Result<()> {
    let arg = XfsGrowfsData { newblocks, imaxpct };
    // SAFETY: the kernel reads one struct xfs_growfs_data; ours has the same layout.
    io(unsafe { raw::xfs_growfsdata(fd.as_raw_fd(), &arg) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::{request_code_read, request_code_write};

    #[test]
    fn ioctl_numbers_match_the_uapi_headers() {
        assert_eq!(request_code_read!(0x12, 114, 8), 0x80081272); // BLKGETSIZE64
        assert_eq!(request_code_write!(b'f', 16, 8), 0x40086610); // EXT4_IOC_RESIZE_FS
        assert_eq!(
            request_code_write!(b'X', 110, std::mem::size_of::<XfsGrowfsData>()),
            0x4010586E
        ); // XFS_IOC_FSGROWFSDATA
        assert_eq!(std::mem::size_of::<XfsGeometryV1>(), 112);
        assert_eq!(
            request_code_read!(b'X', 100, std::mem::size_of::<XfsGeometryV1>()),
            0x8070_5864
        ); // XFS_IOC_FSGEOMETRY_V1
    }
}
