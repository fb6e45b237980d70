//! The dm ioctl rootshift issues itself, and the locked mapping of the RAM-backed mirror log.
//!
//! DM_DEV_SUSPEND without `DM_SUSPEND_FLAG` is a resume. The devicemapper crate puts a udev
//! cookie in `event_nr` whenever udev runs and then waits on it with no timeout; while the root
//! filesystem is frozen (the used-blocks attach, a switch with clones) a udev worker that writes
//! to the root would never finish, and neither would the wait. Here `event_nr` is 0: no cookie,
//! no wait; udev sees a change event without one and keeps the device's state as it was.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use super::io;

pub const DM_NAME_LEN: usize = 128;
pub const DM_UUID_LEN: usize = 129;

/// `struct dm_ioctl` (linux/dm-ioctl.h), 312 bytes.
#[repr(C)]
pub struct DmIoctl {
    pub version: [u32; 3],
    pub data_size: u32,
    pub data_start: u32,
    pub target_count: u32,
    pub open_count: i32,
    pub flags: u32,
    pub event_nr: u32,
    pub padding: u32,
    pub dev: u64,
    pub name: [u8; DM_NAME_LEN],
    pub uuid: [u8; DM_UUID_LEN],
    pub data: [u8; 7],
}

mod dm_raw {
    // linux/dm-ioctl.h: DM_DEV_SUSPEND _IOWR(DM_IOCTL = 0xfd, DM_DEV_SUSPEND_CMD = 6, struct dm_ioctl)
    nix::ioctl_readwrite!(dm_dev_suspend, 0xfd, 6, super::DmIoctl);
}

/// Resume the dm device `name` (its inactive table becomes live, if one is loaded) without a
/// udev cookie. `control` is `/dev/mapper/control`. No allocation (fit for the switch window).
pub fn dm_resume_no_udev(control: BorrowedFd<'_>, name: &[u8]) -> std::io::Result<()> {
    let b = name;
    if b.is_empty() || b.len() >= DM_NAME_LEN {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut arg = DmIoctl {
        // the interface version rootshift was written against; the kernel accepts any 4.x <= its own
        version: [4, 0, 0],
        data_size: std::mem::size_of::<DmIoctl>() as u32,
        data_start: std::mem::size_of::<DmIoctl>() as u32,
        target_count: 0,
        open_count: 0,
        flags: 0,
        event_nr: 0,
        padding: 0,
        dev: 0,
        name: [0; DM_NAME_LEN],
        uuid: [0; DM_UUID_LEN],
        data: [0; 7],
    };
    arg.name[..b.len()].copy_from_slice(b);
    // SAFETY: `arg` is a valid, initialised dm_ioctl whose data_size is its own size; the kernel
    // reads and writes only within it.
    io(unsafe { dm_raw::dm_dev_suspend(control.as_raw_fd(), &mut arg) })
}

/// A file's pages mapped and locked in memory (mlock) until dropped: the RAM-backed mirror log
/// lives in tmpfs, whose pages can go to swap, and swap may live on the very device the mirror
/// logs for (`/swapfile` on the wrapper).
pub struct LockedMap {
    addr: std::ptr::NonNull<libc::c_void>,
    len: usize,
}

// The mapping is only unmapped on drop; nothing reads through the pointer.
unsafe impl Send for LockedMap {}

impl LockedMap {
    /// Map `len` bytes of `file` shared and lock them (faulting every page in).
    pub fn lock<F: AsFd>(file: &F, len: usize) -> std::io::Result<LockedMap> {
        use nix::sys::mman::{mlock, mmap, munmap, MapFlags, ProtFlags};
        let n = std::num::NonZeroUsize::new(len)
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: a fresh shared mapping of a file we own; no Rust reference points into it.
        let addr = unsafe {
            mmap(
                None,
                n,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED | MapFlags::MAP_POPULATE,
                file.as_fd(),
                0,
            )
        }
        .map_err(std::io::Error::from)?;
        // SAFETY: the range is the mapping just made.
        if let Err(e) = unsafe { mlock(addr, len) } {
            // SAFETY: unmapping what was just mapped.
            let _ = unsafe { munmap(addr, len) };
            return Err(e.into());
        }
        Ok(LockedMap { addr, len })
    }
}

impl Drop for LockedMap {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `lock`, unmapped once (munmap also unlocks it).
        let _ = unsafe { nix::sys::mman::munmap(self.addr, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dm_ioctl_layout_and_number() {
        assert_eq!(std::mem::size_of::<DmIoctl>(), 312);
        // _IOWR(0xfd, 6, 312)
        assert_eq!(
            nix::request_code_readwrite!(0xfd, 6, std::mem::size_of::<DmIoctl>()),
            0xC138FD06
        );
    }

    #[test]
    fn names_that_do_not_fit_are_refused_before_any_ioctl() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let long = "x".repeat(DM_NAME_LEN);
        assert!(dm_resume_no_udev(f.as_fd(), long.as_bytes()).is_err());
        assert!(dm_resume_no_udev(f.as_fd(), b"").is_err());
    }

    #[test]
    fn a_file_can_be_mapped_and_locked() {
        let dir = std::env::temp_dir().join(format!("rootshift-lock-{}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&dir)
            .unwrap();
        f.set_len(64 * 1024).unwrap();
        let _ = std::fs::remove_file(&dir);
        // RLIMIT_MEMLOCK may be small for unprivileged test runs: 64 KiB fits the default 8 MiB
        let m = LockedMap::lock(&f, 64 * 1024).unwrap();
        drop(m);
    }
}
