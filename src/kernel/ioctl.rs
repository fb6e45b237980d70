//! Every raw ioctl rootshift issues (outside the devicemapper crate), each behind one small safe
//! function. This is the only module of rootshift with `unsafe`.
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
    // linux/fs.h: BLKFLSBUF _IO(0x12, 97), BLKRRPART _IO(0x12, 95), BLKPG _IO(0x12, 105)
    nix::ioctl_none!(blkflsbuf, 0x12, 97);
    nix::ioctl_none!(blkrrpart, 0x12, 95);
    nix::ioctl_write_ptr_bad!(blkpg, nix::request_code_none!(0x12, 105), BlkpgIoctlArg);
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
        assert_eq!(std::mem::size_of::<BlkpgPartition>(), 152);
        assert_eq!(std::mem::size_of::<BlkpgIoctlArg>(), 24);
        assert_eq!(request_code_write!(b'f', 44, 8), 0x4008662C); // EXT4_IOC_SETFSUUID
        assert_eq!(std::mem::size_of::<Fsuuid16>(), 24);
    }
}

// ---- md (drivers/md/md.c, include/uapi/linux/raid/md_u.h) ----
//
// Only what a superblock-less ("build") raid1 needs. Numbers are `_IO*(MD_MAJOR = 9, nr, type)`;
// the tests below check each one against the value of the uapi macro.
// GET_DISK_INFO is declared `_IOR` but md.c copies the struct *in* first (it reads `number`),
// so the buffer passed must be initialised. HOT_ADD_DISK, HOT_REMOVE_DISK and SET_DISK_FAULTY
// are `_IO` and take the device number itself as the argument, decoded by the kernel with
// `new_decode_dev()` (see [`md_dev_arg`]). RUN_ARRAY's `mdu_param_t` is ignored by the kernel
// (do_md_run() never reads it); mdadm passes a zeroed one and so do we.

use super::devnum::DevNum;

/// `MD_MAJOR` (include/uapi/linux/major.h): the ioctl "type" of every md request.
const MD_IOC_TYPE: u8 = 9;

mod md_raw {
    use super::{MduArrayInfo, MduDiskInfo, MduParam, MD_IOC_TYPE};
    use nix::sys::ioctl::ioctl_num_type;
    use nix::{
        ioctl_none_bad, ioctl_read_bad, ioctl_write_int_bad, ioctl_write_ptr_bad,
        request_code_none, request_code_read, request_code_write,
    };
    use std::mem::size_of;

    pub const GET_ARRAY_INFO: ioctl_num_type =
        request_code_read!(MD_IOC_TYPE, 0x11, size_of::<MduArrayInfo>());
    pub const GET_DISK_INFO: ioctl_num_type =
        request_code_read!(MD_IOC_TYPE, 0x12, size_of::<MduDiskInfo>());
    pub const ADD_NEW_DISK: ioctl_num_type =
        request_code_write!(MD_IOC_TYPE, 0x21, size_of::<MduDiskInfo>());
    pub const HOT_REMOVE_DISK: ioctl_num_type = request_code_none!(MD_IOC_TYPE, 0x22);
    pub const SET_ARRAY_INFO: ioctl_num_type =
        request_code_write!(MD_IOC_TYPE, 0x23, size_of::<MduArrayInfo>());
    pub const HOT_ADD_DISK: ioctl_num_type = request_code_none!(MD_IOC_TYPE, 0x28);
    pub const SET_DISK_FAULTY: ioctl_num_type = request_code_none!(MD_IOC_TYPE, 0x29);
    pub const RUN_ARRAY: ioctl_num_type =
        request_code_write!(MD_IOC_TYPE, 0x30, size_of::<MduParam>());
    pub const STOP_ARRAY: ioctl_num_type = request_code_none!(MD_IOC_TYPE, 0x32);

    ioctl_read_bad!(get_array_info, GET_ARRAY_INFO, MduArrayInfo);
    ioctl_read_bad!(get_disk_info, GET_DISK_INFO, MduDiskInfo);
    ioctl_write_ptr_bad!(add_new_disk, ADD_NEW_DISK, MduDiskInfo);
    ioctl_write_int_bad!(hot_remove_disk, HOT_REMOVE_DISK);
    ioctl_write_ptr_bad!(set_array_info, SET_ARRAY_INFO, MduArrayInfo);
    ioctl_write_int_bad!(hot_add_disk, HOT_ADD_DISK);
    ioctl_write_int_bad!(set_disk_faulty, SET_DISK_FAULTY);
    ioctl_write_ptr_bad!(run_array, RUN_ARRAY, MduParam);
    ioctl_none_bad!(stop_array, STOP_ARRAY);
}

/// `mdu_array_info_t` (md_u.h): 18 ints, 72 bytes. Zero every field not set on purpose.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MduArrayInfo {
    pub major_version: i32,
    pub minor_version: i32,
    pub patch_version: i32,
    /// `unsigned int` in md_u.h.
    pub ctime: u32,
    /// RAID level: 1 for raid1.
    pub level: i32,
    /// Component size in KiB; 0 on SET_ARRAY_INFO = the smallest member. GET_ARRAY_INFO reports
    /// -1 when it does not fit an int.
    pub size: i32,
    pub nr_disks: i32,
    pub raid_disks: i32,
    /// Ignored by SET_ARRAY_INFO (the minor is that of the node opened).
    pub md_minor: i32,
    /// 1: no superblock is read or written ("build" arrays).
    pub not_persistent: i32,
    /// `unsigned int` in md_u.h.
    pub utime: u32,
    /// Bits `1 << MD_SB_*`.
    pub state: i32,
    pub active_disks: i32,
    pub working_disks: i32,
    pub failed_disks: i32,
    pub spare_disks: i32,
    pub layout: i32,
    /// In bytes.
    pub chunk_size: i32,
}

/// `mdu_disk_info_t` (md_u.h): 5 ints, 20 bytes.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MduDiskInfo {
    /// Descriptor number (`desc_nr`); the key GET_DISK_INFO looks up.
    pub number: i32,
    pub major: i32,
    pub minor: i32,
    /// Slot in the array, -1 for a spare or an unknown number.
    pub raid_disk: i32,
    /// Bits `1 << MD_DISK_*`.
    pub state: i32,
}

/// `mdu_param_t` (md_u.h), RUN_ARRAY's argument: 3 ints, 12 bytes, unused by the kernel.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MduParam {
    pub personality: i32,
    pub chunk_size: i32,
    pub max_fault: i32,
}

// Bit numbers of `MduDiskInfo::state` (include/uapi/linux/raid/md_p.h).
pub const MD_DISK_FAULTY: u32 = 0;
pub const MD_DISK_ACTIVE: u32 = 1;
pub const MD_DISK_SYNC: u32 = 2;
/// Set by GET_DISK_INFO when no member has the number asked for.
pub const MD_DISK_REMOVED: u32 = 3;
pub const MD_DISK_WRITEMOSTLY: u32 = 9;
pub const MD_DISK_FAILFAST: u32 = 10;
pub const MD_DISK_JOURNAL: u32 = 18;
// Bit numbers of `MduArrayInfo::state` (md_p.h).
/// SET_ARRAY_INFO with this bit: no resync pending (`resync_offset = MaxSector`).
pub const MD_SB_CLEAN: u32 = 0;
pub const MD_SB_BITMAP_PRESENT: u32 = 8;

/// A device number as HOT_ADD_DISK, HOT_REMOVE_DISK and SET_DISK_FAULTY take it: the kernel's
/// `new_encode_dev()` (12-bit major, 20-bit minor), which is also the low 32 bits of glibc's
/// `makedev()` for every number the kernel can hand out. `None` if the number does not fit.
pub fn md_dev_arg(dev: DevNum) -> Option<u32> {
    if dev.major > 0xfff || dev.minor > 0xf_ffff {
        return None;
    }
    Some((dev.minor & 0xff) | (dev.major << 8) | ((dev.minor & !0xff) << 12))
}

fn md_dev_int(dev: DevNum) -> io::Result<libc::c_int> {
    md_dev_arg(dev)
        // The kernel converts the argument back to a u32: passing the bits as an int is exact.
        .map(|v| v as libc::c_int)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("device number {dev} does not fit the kernel's dev_t encoding"),
            )
        })
}

/// GET_ARRAY_INFO. ENODEV while the array has no configuration (no SET_ARRAY_INFO yet).
pub fn md_get_array_info(fd: BorrowedFd<'_>) -> io::Result<MduArrayInfo> {
    let mut info = MduArrayInfo::default();
    // SAFETY: the kernel writes one mdu_array_info_t through the pointer; ours has its layout.
    io(unsafe { md_raw::get_array_info(fd.as_raw_fd(), &mut info) })?;
    Ok(info)
}

/// SET_ARRAY_INFO: configure a new array (raid_disks > 0), or on a running array change exactly
/// one of size, raid_disks, layout or the bitmap bit (every other field must match the array).
pub fn md_set_array_info(fd: BorrowedFd<'_>, info: &MduArrayInfo) -> io::Result<()> {
    // SAFETY: the kernel reads one mdu_array_info_t through the pointer; ours has its layout.
    io(unsafe { md_raw::set_array_info(fd.as_raw_fd(), info) })
}

/// GET_DISK_INFO for descriptor `number`. An unknown number is not an error: the answer then has
/// major = minor = 0, raid_disk -1 and state `1 << MD_DISK_REMOVED`.
pub fn md_get_disk_info(fd: BorrowedFd<'_>, number: i32) -> io::Result<MduDiskInfo> {
    let mut info = MduDiskInfo {
        number,
        ..Default::default()
    };
    // SAFETY: the kernel reads then writes one mdu_disk_info_t through the pointer, which is
    // initialised and has its layout.
    io(unsafe { md_raw::get_disk_info(fd.as_raw_fd(), &mut info) })?;
    Ok(info)
}

/// ADD_NEW_DISK: bind a member by major/minor. On a configured, not yet running
/// non-persistent array it takes `number`, `raid_disk` and the SYNC/WRITEMOSTLY/FAULTY bits.
pub fn md_add_new_disk(fd: BorrowedFd<'_>, disk: &MduDiskInfo) -> io::Result<()> {
    // SAFETY: the kernel reads one mdu_disk_info_t through the pointer; ours has its layout.
    io(unsafe { md_raw::add_new_disk(fd.as_raw_fd(), disk) })
}

/// RUN_ARRAY: start the configured array.
pub fn md_run_array(fd: BorrowedFd<'_>) -> io::Result<()> {
    let param = MduParam::default();
    // SAFETY: the pointer is valid for one mdu_param_t during the call (the kernel ignores it).
    io(unsafe { md_raw::run_array(fd.as_raw_fd(), &param) })
}

/// STOP_ARRAY: stop and disassemble the array. EBUSY when anyone but this fd has it open
/// (a mount counts) or a sync thread could not be stopped.
pub fn md_stop_array(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: no argument.
    io(unsafe { md_raw::stop_array(fd.as_raw_fd()) })
}

/// HOT_ADD_DISK: bind `dev` as a spare of the running array, its size the whole device.
pub fn md_hot_add_disk(fd: BorrowedFd<'_>, dev: DevNum) -> io::Result<()> {
    let arg = md_dev_int(dev)?;
    // SAFETY: the argument is a plain integer, no memory is passed.
    io(unsafe { md_raw::hot_add_disk(fd.as_raw_fd(), arg) })
}

/// HOT_REMOVE_DISK: unbind a faulty or spare member (EBUSY while it holds a slot or has I/O
/// in flight; ENXIO if it is not a member).
pub fn md_hot_remove_disk(fd: BorrowedFd<'_>, dev: DevNum) -> io::Result<()> {
    let arg = md_dev_int(dev)?;
    // SAFETY: the argument is a plain integer, no memory is passed.
    io(unsafe { md_raw::hot_remove_disk(fd.as_raw_fd(), arg) })
}

/// SET_DISK_FAULTY: fail a member. On the last in-sync raid1 member the kernel refuses (EBUSY)
/// but marks the array broken: from then on every write fails. Check before calling.
pub fn md_set_disk_faulty(fd: BorrowedFd<'_>, dev: DevNum) -> io::Result<()> {
    let arg = md_dev_int(dev)?;
    // SAFETY: the argument is a plain integer, no memory is passed.
    io(unsafe { md_raw::set_disk_faulty(fd.as_raw_fd(), arg) })
}

#[cfg(test)]
mod md_tests {
    use super::*;
    use std::mem::size_of;

    #[test]
    fn md_struct_sizes_match_md_u_h() {
        assert_eq!(size_of::<MduArrayInfo>(), 72);
        assert_eq!(size_of::<MduDiskInfo>(), 20);
        assert_eq!(size_of::<MduParam>(), 12);
    }

    #[test]
    fn md_ioctl_numbers_match_the_uapi_headers() {
        // Request codes are 32 bits whatever the width of ioctl_num_type on the target.
        let n = |v: nix::sys::ioctl::ioctl_num_type| v as u32;
        assert_eq!(n(md_raw::GET_ARRAY_INFO), 0x8048_0911);
        assert_eq!(n(md_raw::GET_DISK_INFO), 0x8014_0912);
        assert_eq!(n(md_raw::ADD_NEW_DISK), 0x4014_0921);
        assert_eq!(n(md_raw::HOT_REMOVE_DISK), 0x922);
        assert_eq!(n(md_raw::SET_ARRAY_INFO), 0x4048_0923);
        assert_eq!(n(md_raw::HOT_ADD_DISK), 0x928);
        assert_eq!(n(md_raw::SET_DISK_FAULTY), 0x929);
        assert_eq!(n(md_raw::RUN_ARRAY), 0x400C_0930);
        assert_eq!(n(md_raw::STOP_ARRAY), 0x932);
    }

    #[test]
    fn md_state_bits() {
        assert_eq!(1 << MD_DISK_FAULTY, 1);
        assert_eq!((1 << MD_DISK_SYNC) | (1 << MD_DISK_ACTIVE), 6);
        assert_eq!(1 << MD_DISK_REMOVED, 8);
        assert_eq!(1 << MD_DISK_WRITEMOSTLY, 512);
        assert_eq!(1 << MD_SB_CLEAN, 1);
    }

    /// The kernel's new_decode_dev(), to check the encoding round-trips.
    fn new_decode_dev(dev: u32) -> DevNum {
        DevNum::new((dev & 0xfff00) >> 8, (dev & 0xff) | ((dev >> 12) & 0xfff00))
    }

    #[test]
    fn md_dev_arg_is_new_encode_dev() {
        for d in [
            DevNum::new(8, 16),
            DevNum::new(253, 3),
            DevNum::new(259, 0),
            DevNum::new(9, 127),
            DevNum::new(7, 300),
            DevNum::new(0xfff, 0xf_ffff),
        ] {
            let arg = md_dev_arg(d).unwrap();
            assert_eq!(new_decode_dev(arg), d, "{d}");
            // Same bits as the userspace makedev() the kernel's comment refers to.
            assert_eq!(u64::from(arg), d.to_dev_t() & 0xffff_ffff, "{d}");
        }
        assert_eq!(md_dev_arg(DevNum::new(8, 16)), Some(0x810));
        assert_eq!(md_dev_arg(DevNum::new(7, 300)), Some(0x0010_072c));
        assert_eq!(md_dev_arg(DevNum::new(0x1000, 0)), None);
        assert_eq!(md_dev_arg(DevNum::new(8, 0x10_0000)), None);
        assert!(md_dev_int(DevNum::new(0x1000, 0)).is_err());
    }
}

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
