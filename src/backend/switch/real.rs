//! The real implementations of [`SwitchOps`]: dm ioctls through the devicemapper crate, md
//! through `kernel::md`, FIFREEZE/FITHAW through `kernel::fs` (which notes freezes for the
//! guardian). And [`reload_table`], the guarded suspend/load/resume every table change uses.

use anyhow::{Context, Result};
use nix::errno::Errno;

use super::{reload, RawLine, SwitchOps};
use crate::kernel::devnum::DevNum;
use crate::kernel::dm::{dm_name, Dm};
use crate::kernel::dmtable::TableLine;

/// Suspend, swap in `table`, resume ([`reload`]): a suspend that returns EINTR is retried; if
/// the suspend fails, the prepared table is dropped — or, if DM_TABLE_CLEAR fails, the live table
/// loaded over it — before resuming, so a failed reload never swaps in `table`.
/// SIGINT/SIGTERM/SIGHUP are blocked across it. An error carrying `SwitchError::Unconfirmed`
/// means the device may be suspended.
pub fn reload_table(dm: &Dm, name: &str, table: &[TableLine]) -> Result<()> {
    let t: Vec<RawLine> = table
        .iter()
        .map(|l| (*l.start, *l.len, l.target.clone(), l.params.clone()))
        .collect();
    let mut ops = RealDm {
        dm: dm.raw(),
        id: devicemapper::DevId::Name(dm_name(name)?),
    };
    // Signals pend (not interrupt the suspend, run no handler) until resumed.
    let blocked = crate::kernel::memlock::SignalsBlocked::block()?;
    let r = reload(&mut ops, &t);
    drop(blocked);
    r.with_context(|| {
        let shown: Vec<String> = table.iter().map(|l| l.to_string()).collect();
        format!("reloading {name} with \"{}\"", shown.join("; "))
    })
}

/// The real dm calls on one device (the raw devicemapper context: no error strings allocated).
pub struct RealDm<'a> {
    pub dm: &'a devicemapper::DM,
    pub id: devicemapper::DevId<'a>,
}

fn dm_errno(e: devicemapper::DmError) -> Errno {
    match e {
        devicemapper::DmError::Core(devicemapper::errors::Error::Ioctl(_, _, _, e)) => *e,
        _ => Errno::EIO,
    }
}

impl SwitchOps for RealDm<'_> {
    fn load(&mut self, table: &[RawLine]) -> Result<(), Errno> {
        self.dm
            .table_load(&self.id, table, devicemapper::DmOptions::default())
            .map(|_| ())
            .map_err(dm_errno)
    }
    fn suspend(&mut self, lockfs: bool) -> Result<(), Errno> {
        use devicemapper::DmFlags;
        let mut flags = DmFlags::DM_SUSPEND;
        if !lockfs {
            flags |= DmFlags::DM_SKIP_LOCKFS;
        }
        self.dm
            .device_suspend(
                &self.id,
                devicemapper::DmOptions::default().set_flags(flags),
            )
            .map(|_| ())
            .map_err(dm_errno)
    }
    fn status(&mut self) -> Result<Vec<RawLine>, Errno> {
        self.dm
            .table_status(&self.id, devicemapper::DmOptions::default())
            .map(|(_, v)| v)
            .map_err(dm_errno)
    }
    fn clear_inactive(&mut self) -> Result<(), Errno> {
        self.dm.table_clear(&self.id).map(|_| ()).map_err(dm_errno)
    }
    /// Without a udev cookie (see kernel::ioctl::dm): the crate's cookie wait has no timeout,
    /// and the filesystem may be frozen here (the used-blocks attach, a switch with clones).
    fn resume(&mut self) -> Result<(), Errno> {
        use std::os::fd::AsFd;
        match &self.id {
            devicemapper::DevId::Name(n) => {
                crate::kernel::ioctl::dm::dm_resume_no_udev(self.dm.file().as_fd(), n.as_bytes())
                    .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
            }
            _ => self
                .dm
                .device_suspend(&self.id, devicemapper::DmOptions::default())
                .map(|_| ())
                .map_err(dm_errno),
        }
    }
    fn live_table(&mut self) -> Result<Vec<RawLine>, Errno> {
        self.dm
            .table_status(
                &self.id,
                devicemapper::DmOptions::default()
                    .set_flags(devicemapper::DmFlags::DM_STATUS_TABLE),
            )
            .map(|(_, v)| v)
            .map_err(dm_errno)
    }
}

/// The real md calls on one array (today's `MdArray` functions).
pub struct RealMd<'a> {
    pub array: &'a crate::kernel::md::MdArray,
}

fn md_errno(e: crate::kernel::md::MdError) -> Errno {
    match e {
        // Refused before asking: no other member is in sync (what the kernel answers with EBUSY).
        crate::kernel::md::MdError::Refused(_) => Errno::EBUSY,
        e => e.errno().unwrap_or(Errno::EIO),
    }
}

impl SwitchOps for RealMd<'_> {
    fn md_disk_state(&mut self, dev: DevNum) -> Result<Option<(bool, bool)>, Errno> {
        use crate::kernel::ioctl::{self, MD_DISK_FAULTY, MD_DISK_SYNC};
        use std::os::fd::AsFd;
        let f = self.array.open_node().map_err(md_errno)?;
        let io = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32));
        let info = ioctl::md_get_array_info(f.as_fd()).map_err(io)?;
        let n = info.nr_disks.max(info.raid_disks).max(2) + 4;
        for number in 0..n.min(27) {
            let d = ioctl::md_get_disk_info(f.as_fd(), number).map_err(io)?;
            if d.major as u32 == dev.major && d.minor as u32 == dev.minor {
                let st = d.state as u32;
                return Ok(Some((
                    st & (1 << MD_DISK_SYNC) != 0,
                    st & (1 << MD_DISK_FAULTY) != 0,
                )));
            }
        }
        Ok(None)
    }
    fn md_set_faulty(&mut self, dev: DevNum) -> Result<(), Errno> {
        self.array.set_faulty(dev).map_err(md_errno)
    }
    fn md_remove(&mut self, dev: DevNum) -> Result<(), Errno> {
        self.array.hot_remove(dev).map_err(md_errno)
    }
}

/// FIFREEZE/FITHAW on one mounted filesystem, announced to the guardian first, so that it thaws
/// only a freeze rootshift made.
pub struct RealFreeze {
    file: std::fs::File,
}

impl RealFreeze {
    pub fn open(mount_point: &std::path::Path) -> std::io::Result<RealFreeze> {
        Ok(RealFreeze {
            file: std::fs::File::open(mount_point)?,
        })
    }
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32))
}

impl SwitchOps for RealFreeze {
    fn freeze(&mut self) -> Result<(), Errno> {
        crate::kernel::fs::freeze_file(&self.file).map_err(io_errno)
    }
    fn thaw(&mut self) -> Result<(), Errno> {
        crate::kernel::fs::thaw_file(&self.file).map_err(io_errno)
    }
}
