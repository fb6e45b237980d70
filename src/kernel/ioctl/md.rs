//! md ioctls (drivers/md/md.c, include/uapi/linux/raid/md_u.h).
//!
//! Only what a superblock-less ("build") raid1 needs. Numbers are `_IO*(MD_MAJOR = 9, nr, type)`;
//! the tests below check each one against the value of the uapi macro.
//! GET_DISK_INFO is declared `_IOR` but md.c copies the struct *in* first (it reads `number`),
//! so the buffer passed must be initialised. HOT_ADD_DISK, HOT_REMOVE_DISK and SET_DISK_FAULTY
//! are `_IO` and take the device number itself as the argument, decoded by the kernel with
//! `new_decode_dev()` (see [`md_dev_arg`]). RUN_ARRAY's `mdu_param_t` is ignored by the kernel
//! (do_md_run() never reads it); mdadm passes a zeroed one and so do we.

use std::os::fd::{AsRawFd, BorrowedFd};

// `io`: both `std::io` and the parent's `io()` (nix result → io::Result), as in the parent.
use super::io;
use crate::kernel::devnum::DevNum;

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
