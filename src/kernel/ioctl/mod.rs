//! Every raw ioctl rootshift issues (outside the devicemapper crate), each behind one small safe
//! function. This module (with its `md` submodule for the md ioctls) is the only one of rootshift
//! with `unsafe`.
//!
//! Numbers are checked against the uapi headers in the tests below (values from
//! linux/fs.h, fs/ext4/ext4.h, fs/xfs/libxfs/xfs_fs.h).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::{ioctl_read, ioctl_read_bad, ioctl_readwrite, ioctl_write_ptr};

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
    // linux/fs.h: FIFREEZE _IOWR('X', 119, int), FITHAW _IOWR('X', 120, int)
    ioctl_readwrite!(fifreeze, b'X', 119, libc::c_int);
    ioctl_readwrite!(fithaw, b'X', 120, libc::c_int);
    // linux/fsmap.h: FS_IOC_GETFSMAP _IOWR('X', 59, struct fsmap_head)
    ioctl_readwrite!(getfsmap, b'X', 59, FsmapHead);
    // linux/loop.h
    nix::ioctl_none_bad!(loop_ctl_get_free, 0x4C82);
    nix::ioctl_write_int_bad!(loop_set_fd, 0x4C00);
    nix::ioctl_none_bad!(loop_clr_fd, 0x4C01);
    nix::ioctl_write_ptr_bad!(loop_set_status64, 0x4C04, LoopInfo64);
    nix::ioctl_write_int_bad!(loop_change_fd, 0x4C06);
    // linux/cdrom.h
    nix::ioctl_none_bad!(cdrom_eject, 0x5309);
    nix::ioctl_write_int_bad!(cdrom_lockdoor, 0x5329);
    // linux/fs.h: BLKFLSBUF _IO(0x12, 97), BLKRRPART _IO(0x12, 95), BLKPG _IO(0x12, 105)
    nix::ioctl_none!(blkflsbuf, 0x12, 97);
    nix::ioctl_none!(blkrrpart, 0x12, 95);
    nix::ioctl_write_ptr_bad!(blkpg, nix::request_code_none!(0x12, 105), BlkpgIoctlArg);
    // linux/fs.h: BLKROSET _IO(0x12, 93), BLKROGET _IO(0x12, 94): an int by pointer
    nix::ioctl_write_ptr_bad!(blkroset, nix::request_code_none!(0x12, 93), libc::c_int);
    nix::ioctl_read_bad!(blkroget, nix::request_code_none!(0x12, 94), libc::c_int);
    // BLKZEROOUT: _IO(0x12,127) taking uint64_t range[2] (start, length in bytes)
    nix::ioctl_write_ptr_bad!(blkzeroout, nix::request_code_none!(0x12, 127), [u64; 2]);
    // fs/ext4/ext4.h: EXT4_IOC_SETFSUUID _IOW('f', 44, struct fsuuid); the struct ends in a flexible
    // array, so the size in the number is 8 (two u32) while the buffer carries the 16 UUID bytes too.
    nix::ioctl_write_ptr_bad!(
        ext4_setfsuuid,
        nix::request_code_write!(b'f', 44, 8),
        Fsuuid16
    );
}

/// `struct blkpg_ioctl_arg` (linux/blkpg.h).
#[repr(C)]
#[derive(Debug)]
pub struct BlkpgIoctlArg {
    pub op: libc::c_int,
    pub flags: libc::c_int,
    pub datalen: libc::c_int,
    pub data: *mut libc::c_void,
}

/// `struct blkpg_partition` (linux/blkpg.h): byte units.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BlkpgPartition {
    pub start: libc::c_longlong,
    pub length: libc::c_longlong,
    pub pno: libc::c_int,
    pub devname: [libc::c_char; 64],
    pub volname: [libc::c_char; 64],
}

/// What BLKPG should do with one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlkpgOp {
    Add = 1,
    Del = 2,
    Resize = 3,
}

/// Change the kernel's view of one partition of a disk in use (BLKPG): add, delete or resize
/// partition `pno` (bytes). The on-disk table is not touched; write it first.
pub fn blkpg(
    disk: BorrowedFd<'_>,
    op: BlkpgOp,
    pno: u32,
    start: u64,
    length: u64,
) -> io::Result<()> {
    let mut part = BlkpgPartition {
        start: start as libc::c_longlong,
        length: length as libc::c_longlong,
        pno: pno as libc::c_int,
        devname: [0; 64],
        volname: [0; 64],
    };
    let arg = BlkpgIoctlArg {
        op: op as libc::c_int,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as libc::c_int,
        data: (&mut part as *mut BlkpgPartition).cast(),
    };
    // SAFETY: `arg.data` points to `part`, which lives until the call returns; the kernel copies
    // `datalen` bytes from it.
    io(unsafe { raw::blkpg(disk.as_raw_fd(), &arg) })
}

/// Whether the kernel treats a block device as read-only (BLKROGET).
pub fn blk_ro_get(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut ro: libc::c_int = 0;
    // SAFETY: the kernel writes one int to `ro`, which lives until the call returns.
    io(unsafe { raw::blkroget(fd.as_raw_fd(), &mut ro) })?;
    Ok(ro != 0)
}

/// Make a block device read-only (or writable again) at the block layer (BLKROSET): every
/// write to it, a filesystem's included, fails with EPERM/EROFS. Needs CAP_SYS_ADMIN.
pub fn blk_ro_set(fd: BorrowedFd<'_>, ro: bool) -> io::Result<()> {
    let v: libc::c_int = ro.into();
    // SAFETY: the kernel reads one int from `v`, which lives until the call returns.
    io(unsafe { raw::blkroset(fd.as_raw_fd(), &v) })
}

/// Ask the kernel to re-read a disk's partition table (BLKRRPART). EBUSY while any partition of
/// the disk is open: use [`blkpg`] then.
pub fn blk_reread_partitions(disk: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: no argument.
    io(unsafe { raw::blkrrpart(disk.as_raw_fd()) })
}

/// `struct fsuuid` followed by its 16 bytes of UUID.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct Fsuuid16 {
    pub len: u32,
    pub flags: u32,
    pub uuid: [u8; 16],
}

/// BLKZEROOUT: make `len` bytes from `start` read as zeroes (the device's write-zeroes, or the
/// kernel writes zero pages). Both multiples of the logical block size.
pub fn blk_zero_out(fd: BorrowedFd<'_>, start: u64, len: u64) -> io::Result<()> {
    let range = [start, len];
    // SAFETY: the kernel reads two u64 from the pointer; `range` outlives the call.
    unsafe { raw::blkzeroout(fd.as_raw_fd(), &range) }
        .map(drop)
        .map_err(io::Error::from)
}

/// Write back and drop the buffer cache of a block device (BLKFLSBUF): the next read of it comes
/// from the device, not from pages cached before someone else (a dm device over it) wrote there.
pub fn blk_flush_buffers(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: no argument.
    io(unsafe { raw::blkflsbuf(fd.as_raw_fd()) })
}

/// Give a mounted ext4 filesystem a new UUID (EXT4_IOC_SETFSUUID, Linux ≥ 6.0). Refused with
/// EOPNOTSUPP when metadata_csum is on without metadata_csum_seed (every checksum would change).
pub fn ext4_set_uuid(fd: BorrowedFd<'_>, uuid: [u8; 16]) -> io::Result<()> {
    let arg = Fsuuid16 {
        len: 16,
        flags: 0,
        uuid,
    };
    // SAFETY: the kernel reads the 8-byte header and then `len` (16) bytes of UUID, all within `arg`.
    io(unsafe { raw::ext4_setfsuuid(fd.as_raw_fd(), &arg) })
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

/// Freeze a mounted filesystem (FIFREEZE): syncs it and blocks new writes until `fs_thaw`.
/// `fd` is the mount point (or any file of the fs).
pub fn fs_freeze(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut unused: libc::c_int = 0;
    // SAFETY: the kernel ignores the argument; the pointer is valid for the call.
    io(unsafe { raw::fifreeze(fd.as_raw_fd(), &mut unused) })
}

/// Write one byte to `fd`, a descriptor the caller guarantees stays open for the call (published
/// in an atomic by its owner, unpublished before it is closed). No allocation: safe while a
/// device is suspended or a filesystem frozen.
pub fn write_byte_raw(fd: std::os::fd::RawFd, b: u8) -> io::Result<()> {
    // SAFETY: the caller keeps `fd` open for the duration of the call (see above).
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    nix::unistd::write(fd, &[b])
        .map(|_| ())
        .map_err(io::Error::from)
}

/// Thaw a filesystem frozen with `fs_freeze` (FITHAW).
pub fn fs_thaw(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut unused: libc::c_int = 0;
    // SAFETY: as for fs_freeze.
    io(unsafe { raw::fithaw(fd.as_raw_fd(), &mut unused) })
}

/// `struct fsmap`: one extent of a filesystem's space map (byte units).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fsmap {
    pub device: u32,
    pub flags: u32,
    pub physical: u64,
    pub owner: u64,
    pub offset: u64,
    pub length: u64,
    pub reserved: [u64; 3],
}

/// `struct fsmap_head` (the records follow it in the same buffer).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct FsmapHead {
    pub iflags: u32,
    pub oflags: u32,
    pub count: u32,
    pub entries: u32,
    pub reserved: [u64; 6],
    pub keys: [Fsmap; 2],
}

/// fmr_flags: this is the last record of the query.
pub const FMR_OF_LAST: u32 = 0x20;
/// fmr_flags: fmr_owner is a special owner code (free space, metadata, ...).
pub const FMR_OF_SPECIAL_OWNER: u32 = 0x10;
/// Special owner: free space.
pub const FMR_OWN_FREE: u64 = 1;

/// The whole space map of a mounted filesystem (FS_IOC_GETFSMAP), in kernel order.
pub fn getfsmap(fd: BorrowedFd<'_>) -> io::Result<Vec<Fsmap>> {
    const BATCH: usize = 1024;
    let head_words = std::mem::size_of::<FsmapHead>() / 8;
    let rec_words = std::mem::size_of::<Fsmap>() / 8;
    // u64 storage keeps the buffer 8-byte aligned for both structs.
    let mut buf = vec![0u64; head_words + BATCH * rec_words];
    let mut keys = [
        Fsmap::default(),
        Fsmap {
            device: u32::MAX,
            flags: u32::MAX,
            physical: u64::MAX,
            owner: u64::MAX,
            offset: u64::MAX,
            ..Fsmap::default()
        },
    ];
    let mut out = vec![];
    loop {
        buf.iter_mut().for_each(|w| *w = 0);
        let head = FsmapHead {
            count: BATCH as u32,
            keys,
            ..FsmapHead::default()
        };
        // SAFETY: buf is 8-byte aligned and large enough for a head plus BATCH records; the
        // kernel writes at most `count` records after the head.
        unsafe {
            std::ptr::write(buf.as_mut_ptr() as *mut FsmapHead, head);
            io(raw::getfsmap(
                fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut FsmapHead,
            ))?;
        }
        // SAFETY: the head and `entries` records were just written by the kernel into buf.
        let (entries, recs) = unsafe {
            let h = std::ptr::read(buf.as_ptr() as *const FsmapHead);
            let n = (h.entries as usize).min(BATCH);
            let first = buf.as_ptr().add(head_words) as *const Fsmap;
            (n, std::slice::from_raw_parts(first, n).to_vec())
        };
        if entries == 0 {
            break;
        }
        let last = recs[entries - 1];
        out.extend(recs);
        if last.flags & FMR_OF_LAST != 0 {
            break;
        }
        // fsmap_advance(): continue after the last record returned.
        keys[0] = last;
    }
    Ok(out)
}

/// `struct loop_info64`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LoopInfo64 {
    pub lo_device: u64,
    pub lo_inode: u64,
    pub lo_rdevice: u64,
    pub lo_offset: u64,
    pub lo_sizelimit: u64,
    pub lo_number: u32,
    pub lo_encrypt_type: u32,
    pub lo_encrypt_key_size: u32,
    pub lo_flags: u32,
    pub lo_file_name: [u8; 64],
    pub lo_crypt_name: [u8; 64],
    pub lo_encrypt_key: [u8; 32],
    pub lo_init: [u64; 2],
}

/// Detach the loop device when its last user closes it.
pub const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// A free loop device number (LOOP_CTL_GET_FREE on /dev/loop-control).
pub fn loop_ctl_get_free(ctl: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: no argument; the result is the device number.
    let n = unsafe { raw::loop_ctl_get_free(ctl.as_raw_fd()) }.map_err(io::Error::from)?;
    Ok(n as u32)
}

/// Bind `file` to the loop device `dev` and set `flags` (LOOP_SET_FD + LOOP_SET_STATUS64).
pub fn loop_attach(dev: BorrowedFd<'_>, file: BorrowedFd<'_>, flags: u32) -> io::Result<()> {
    // SAFETY: the file descriptor is passed by value.
    io(unsafe { raw::loop_set_fd(dev.as_raw_fd(), file.as_raw_fd()) })?;
    let info = LoopInfo64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: 0,
        lo_sizelimit: 0,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: flags,
        lo_file_name: [0; 64],
        lo_crypt_name: [0; 64],
        lo_encrypt_key: [0; 32],
        lo_init: [0; 2],
    };
    // SAFETY: the kernel reads one struct loop_info64; ours has the same layout.
    let r = io(unsafe { raw::loop_set_status64(dev.as_raw_fd(), &info) });
    if r.is_err() {
        // SAFETY: no argument.
        let _ = unsafe { raw::loop_clr_fd(dev.as_raw_fd()) };
    }
    r
}

/// The loop device is read-only (LO_FLAGS_READ_ONLY).
pub const LO_FLAGS_READ_ONLY: u32 = 1;

/// Move a bound, read-only loop device onto another file of the same size (LOOP_CHANGE_FD): the
/// device and what is mounted from it stay; reads come from `file` from now on. The kernel refuses
/// (EINVAL) a writable loop, a size that differs, or a file that is neither regular nor a block
/// device.
pub fn loop_change_fd(dev: BorrowedFd<'_>, file: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: the file descriptor is passed by value.
    io(unsafe { raw::loop_change_fd(dev.as_raw_fd(), file.as_raw_fd()) })
}

/// Unlock the door of a CD/DVD drive (CDROM_LOCKDOOR 0: udev's cdrom_id --lock-media locks it),
/// then open the tray (CDROMEJECT). `dev` must be opened with O_NONBLOCK (no medium check). The
/// SCSI layer answers a refused eject with a positive status, not -1: anything but 0 is an error.
pub fn cdrom_eject(dev: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: the argument is passed by value.
    let _ = unsafe { raw::cdrom_lockdoor(dev.as_raw_fd(), 0) };
    // SAFETY: no argument.
    match unsafe { raw::cdrom_eject(dev.as_raw_fd()) } {
        Ok(0) => Ok(()),
        Ok(st) => Err(io::Error::other(format!(
            "CDROMEJECT answered status {st} (the drive refused)"
        ))),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Unbind a loop device (LOOP_CLR_FD).
pub fn loop_detach(dev: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: no argument.
    io(unsafe { raw::loop_clr_fd(dev.as_raw_fd()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::{request_code_read, request_code_readwrite, request_code_write};

    #[test]
    fn ioctl_numbers_match_the_uapi_headers() {
        assert_eq!(request_code_read!(0x12, 114, 8), 0x80081272); // BLKGETSIZE64
        assert_eq!(nix::request_code_none!(0x12, 127), 0x127F); // BLKZEROOUT
        assert_eq!(request_code_write!(b'f', 16, 8), 0x40086610); // EXT4_IOC_RESIZE_FS
        assert_eq!(
            request_code_write!(b'X', 110, std::mem::size_of::<XfsGrowfsData>()),
            0x4010586E
        ); // XFS_IOC_FSGROWFSDATA
        assert_eq!(std::mem::size_of::<XfsGeometryV1>(), 112);
        assert_eq!(request_code_readwrite!(b'X', 119, 4), 0xC0045877); // FIFREEZE
        assert_eq!(request_code_readwrite!(b'X', 120, 4), 0xC0045878); // FITHAW
        assert_eq!(std::mem::size_of::<Fsmap>(), 64);
        assert_eq!(std::mem::size_of::<FsmapHead>(), 192);
        assert_eq!(
            request_code_readwrite!(b'X', 59, std::mem::size_of::<FsmapHead>()),
            0xC0C0583B
        ); // FS_IOC_GETFSMAP
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(
            request_code_read!(b'X', 100, std::mem::size_of::<XfsGeometryV1>()),
            0x8070_5864
        ); // XFS_IOC_FSGEOMETRY_V1
        assert_eq!(nix::request_code_none!(0x12, 97), 0x1261); // BLKFLSBUF
        assert_eq!(nix::request_code_none!(0x12, 95), 0x125F); // BLKRRPART
        assert_eq!(nix::request_code_none!(0x12, 105), 0x1269); // BLKPG
        assert_eq!(nix::request_code_none!(0x12, 93), 0x125D); // BLKROSET
        assert_eq!(nix::request_code_none!(0x12, 94), 0x125E); // BLKROGET
        assert_eq!(std::mem::size_of::<BlkpgPartition>(), 152);
        assert_eq!(std::mem::size_of::<BlkpgIoctlArg>(), 24);
        assert_eq!(request_code_write!(b'f', 44, 8), 0x4008662C); // EXT4_IOC_SETFSUUID
        assert_eq!(std::mem::size_of::<Fsuuid16>(), 24);
    }
}

mod md;
pub use md::*;

pub mod dm;

// ---- loop ----

mod raw_loop {
    use super::LoopInfo64;
    // linux/loop.h: #define LOOP_GET_STATUS64 0x4C05 (a plain number, no _IOR encoding)
    nix::ioctl_read_bad!(loop_get_status64, 0x4C05, LoopInfo64);
}

/// The status of a bound loop device (LOOP_GET_STATUS64): `lo_device`/`lo_inode` name the backing
/// file even when its path is no longer reachable (a lazily unmounted filesystem). ENXIO when the
/// loop device is not bound.
pub fn loop_status(dev: BorrowedFd<'_>) -> io::Result<LoopInfo64> {
    let mut info = LoopInfo64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: 0,
        lo_sizelimit: 0,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: 0,
        lo_file_name: [0; 64],
        lo_crypt_name: [0; 64],
        lo_encrypt_key: [0; 32],
        lo_init: [0; 2],
    };
    // SAFETY: the kernel writes one struct loop_info64 through the pointer; ours has its layout
    // (size checked in the tests) and is valid for the call.
    io(unsafe { raw_loop::loop_get_status64(dev.as_raw_fd(), &mut info) })?;
    Ok(info)
}

#[cfg(test)]
mod loop_tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn loop_status_of_a_non_loop_fd_is_an_error() {
        let f = std::fs::File::open("/dev/null").unwrap();
        assert!(loop_status(f.as_fd()).is_err());
    }
}

/// Inode flags (FS_IOC_GETFLAGS/SETFLAGS) and the mount id (statx), for the tree copier.
pub mod inode;
