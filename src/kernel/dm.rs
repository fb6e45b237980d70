//! Device-mapper through the devicemapper crate: a few safe, typed calls, errors with context.
//!
//! Udev: the crate synchronises with udev (a SysV-semaphore cookie) on resume/remove/rename when
//! `/run/udev/control` exists, and waits *without a timeout*. It skips the cookie for suspends.
//! An initrd whose udev has no dm rules (95-dm-notify.rules) would therefore hang on a resume;
//! dracut's dm module and Debian's initramfs-tools dmsetup hook both install them. Without udev
//! (busybox initrds, the test guest) no `/dev/mapper/NAME` node appears: `ensure_node` makes it.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use devicemapper::{DevId, DmFlags, DmName, DmOptions, DmUuid, DM};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::blockdev::BlockDev;
use nix::sys::stat::{mknod, Mode, SFlag};

use super::devnum::DevNum;
use super::dmtable::TableLine;

/// Facts about one dm device.
#[derive(Debug, Clone)]
pub struct DmInfo {
    pub name: String,
    pub devnum: DevNum,
    pub open_count: i32,
    pub event_nr: u32,
    pub suspended: bool,
    pub inactive_present: bool,
    pub uuid: Option<String>,
}

/// A handle on /dev/mapper/control.
pub struct Dm {
    dm: DM,
}

pub fn dm_name(name: &str) -> Result<&DmName> {
    DmName::new(name).map_err(|e| anyhow!("invalid dm device name {name:?}: {e}"))
}

fn to_lines(v: Vec<(u64, u64, String, String)>) -> Vec<TableLine> {
    v.into_iter()
        .map(|(s, l, t, p)| {
            TableLine::new(
                devicemapper::Sectors(s),
                devicemapper::Sectors(l),
                &t,
                p.trim(),
            )
        })
        .collect()
}

impl Dm {
    /// Open the control node, loading dm-mod if it is missing.
    pub fn open() -> Result<Dm> {
        if !Path::new("/dev/mapper/control").exists() {
            let _ = crate::tools::modprobe("dm_mod");
        }
        let dm = DM::new().map_err(|e| {
            anyhow!("cannot open /dev/mapper/control ({e}): the kernel needs device-mapper (CONFIG_BLK_DEV_DM, module dm_mod)")
        })?;
        Ok(Dm { dm })
    }

    /// The raw context, for the switch window which must not allocate error strings.
    pub fn raw(&self) -> &DM {
        &self.dm
    }

    pub fn info(&self, name: &str) -> Result<DmInfo> {
        let i = self
            .dm
            .device_info(&DevId::Name(dm_name(name)?))
            .with_context(|| format!("dm info {name}"))?;
        Ok(DmInfo {
            name: name.to_string(),
            devnum: i.device().into(),
            open_count: i.open_count(),
            event_nr: i.event_nr(),
            suspended: i.flags().contains(DmFlags::DM_SUSPEND),
            inactive_present: i.flags().contains(DmFlags::DM_INACTIVE_PRESENT),
            uuid: i.uuid().map(|u| u.to_string()),
        })
    }

    /// Names and numbers of all dm devices.
    pub fn list(&self) -> Result<Vec<(String, DevNum)>> {
        Ok(self
            .dm
            .list_devices()
            .context("listing dm devices")?
            .into_iter()
            .map(|(n, d, _)| (n.to_string(), d.into()))
            .collect())
    }

    /// Whether the kernel has this target type (loading its module first if needed).
    pub fn ensure_target(&self, target: &str, module: &str) -> Result<()> {
        let has = |dm: &DM| -> Result<bool> {
            Ok(dm
                .list_versions()
                .context("listing dm target types")?
                .iter()
                .any(|(n, ..)| n == target))
        };
        if has(&self.dm)? {
            return Ok(());
        }
        let _ = crate::tools::modprobe(module);
        if has(&self.dm)? {
            return Ok(());
        }
        bail!("the kernel has no dm {target} target: load module {module} (modprobe {module})")
    }

    /// Create a device with one table and make it live. On any failure the half-made device is
    /// removed again, so nothing is left behind.
    pub fn create(&self, name: &str, uuid: Option<&str>, table: &[TableLine]) -> Result<DmInfo> {
        let n = dm_name(name)?;
        let u = match uuid {
            Some(u) => Some(DmUuid::new(u).map_err(|e| anyhow!("invalid dm uuid {u:?}: {e}"))?),
            None => None,
        };
        self.dm
            .device_create(n, u, DmOptions::default())
            .with_context(|| format!("creating dm device {name}"))?;
        let made = self.load(name, table).and_then(|_| self.resume(name));
        if let Err(e) = made {
            if let Err(e2) = self.remove(name) {
                return Err(e.context(format!(
                    "and removing the half-made {name} failed too: {e2:#}"
                )));
            }
            return Err(e);
        }
        self.info(name)
    }

    /// Load a table into the inactive slot.
    pub fn load(&self, name: &str, table: &[TableLine]) -> Result<()> {
        let t: Vec<(u64, u64, String, String)> = table
            .iter()
            .map(|l| (*l.start, *l.len, l.target.clone(), l.params.clone()))
            .collect();
        self.dm
            .table_load(&DevId::Name(dm_name(name)?), &t, DmOptions::default())
            .with_context(|| {
                let shown: Vec<String> = table.iter().map(|l| l.to_string()).collect();
                format!("loading table \"{}\" into {name}", shown.join("; "))
            })?;
        Ok(())
    }

    /// Drop the inactive table (DM_TABLE_CLEAR).
    pub fn clear_inactive(&self, name: &str) -> Result<()> {
        self.dm
            .table_clear(&DevId::Name(dm_name(name)?))
            .with_context(|| format!("clearing the inactive table of {name}"))?;
        Ok(())
    }

    /// Suspend, waiting for in-flight I/O (flush). `lockfs` also freezes a mounted filesystem.
    pub fn suspend(&self, name: &str, lockfs: bool) -> Result<()> {
        let mut flags = DmFlags::DM_SUSPEND;
        if !lockfs {
            flags |= DmFlags::DM_SKIP_LOCKFS;
        }
        self.dm
            .device_suspend(
                &DevId::Name(dm_name(name)?),
                DmOptions::default().set_flags(flags),
            )
            .with_context(|| format!("suspending {name}"))?;
        Ok(())
    }

    /// Resume; a loaded inactive table becomes the live one.
    pub fn resume(&self, name: &str) -> Result<()> {
        self.dm
            .device_suspend(&DevId::Name(dm_name(name)?), DmOptions::default())
            .with_context(|| format!("resuming {name}"))?;
        Ok(())
    }

    /// The live table (STATUSTYPE_TABLE).
    pub fn table(&self, name: &str) -> Result<Vec<TableLine>> {
        let (_, v) = self
            .dm
            .table_status(
                &DevId::Name(dm_name(name)?),
                DmOptions::default().set_flags(DmFlags::DM_STATUS_TABLE),
            )
            .with_context(|| format!("reading the table of {name}"))?;
        Ok(to_lines(v))
    }

    /// The live status (STATUSTYPE_INFO).
    pub fn status(&self, name: &str) -> Result<Vec<TableLine>> {
        let (_, v) = self
            .dm
            .table_status(&DevId::Name(dm_name(name)?), DmOptions::default())
            .with_context(|| format!("reading the status of {name}"))?;
        Ok(to_lines(v))
    }

    pub fn remove(&self, name: &str) -> Result<()> {
        self.dm
            .device_remove(&DevId::Name(dm_name(name)?), DmOptions::default())
            .with_context(|| format!("removing dm device {name}"))?;
        let node = PathBuf::from("/dev/mapper").join(name);
        if !udev_running() && node.exists() {
            let _ = fs::remove_file(node);
        }
        Ok(())
    }

    /// Wait up to `timeout` for any dm event (DEV_ARM_POLL + poll on the control node).
    /// Returns early on an event; callers re-read status either way.
    pub fn wait_event(&self, timeout: Duration) -> Result<bool> {
        self.dm.arm_poll().context("arming dm event poll")?;
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.dm.file().as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(n) => Ok(n > 0),
            Err(nix::errno::Errno::EINTR) => Ok(false),
            Err(e) => Err(anyhow!("poll on /dev/mapper/control: {e}")),
        }
    }
}

/// Whether a dm uuid is cryptsetup's (`CRYPT-LUKS2-…`, `CRYPT-PLAIN-…`; systemd-cryptsetup and
/// the initrds open LUKS through libcryptsetup, which sets it).
pub fn is_crypt_uuid(uuid: &str) -> bool {
    uuid.starts_with("CRYPT-")
}

/// The first dm-crypt device in `dev`'s stack — `dev` itself or any device below it (LVM on LUKS
/// included): a cryptsetup uuid, or a `crypt` table (a mapping made without cryptsetup). Above
/// such a device the data is plaintext: copying it elsewhere writes it unencrypted.
pub fn crypt_in_stack(dev: &BlockDev) -> Option<BlockDev> {
    let dm = Dm::open().ok();
    let mut todo = vec![dev.clone()];
    let mut seen = 0;
    while let Some(d) = todo.pop() {
        seen += 1;
        if seen > 64 {
            break; // a stack is never this deep; sysfs loops are not followed forever
        }
        if let Some(name) = d.dm_name() {
            let by_uuid = d.dm_uuid().is_some_and(|u| is_crypt_uuid(&u));
            let by_table = || {
                dm.as_ref()
                    .and_then(|dm| dm.table(&name).ok())
                    .is_some_and(|t| t.iter().any(|l| l.target == "crypt"))
            };
            if by_uuid || by_table() {
                return Some(d);
            }
        }
        todo.extend(d.slaves());
    }
    None
}

/// The dm-crypt device stacked directly on `dev`: its one holder, when that is a cryptsetup
/// mapping or a `crypt` table (a LUKS container opened over a wrapper).
pub fn crypt_holder(dev: &BlockDev) -> Option<BlockDev> {
    let holders = dev.holders();
    let [h] = holders.as_slice() else {
        return None;
    };
    let devnum: DevNum = fs::read_to_string(Path::new("/sys/class/block").join(h).join("dev"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let d = BlockDev::from_devnum(devnum).ok()?;
    crypt_in_stack(&d)
        .is_some_and(|c| c.devnum == d.devnum)
        .then_some(d)
}

/// Whether a udev daemon is running (the same test libdevmapper and the devicemapper crate use).
pub fn udev_running() -> bool {
    Path::new("/run/udev/control").exists()
}

/// Make sure `/dev/mapper/NAME` exists and is the right device. With udev running, give its rules
/// a few seconds to make the node first; without udev, make it ourselves.
pub fn ensure_node(name: &str, devnum: DevNum) -> Result<PathBuf> {
    let node = PathBuf::from("/dev/mapper").join(name);
    let right = |p: &Path| -> bool {
        fs::metadata(p)
            .map(|m| m.file_type().is_block_device() && DevNum::from_dev_t(m.rdev()) == devnum)
            .unwrap_or(false)
    };
    if udev_running() {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if right(&node) {
                return Ok(node);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if right(&node) {
        return Ok(node);
    }
    fs::create_dir_all("/dev/mapper").context("creating /dev/mapper")?;
    match fs::remove_file(&node) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing stale {}", node.display())),
    }
    mknod(
        &node,
        SFlag::S_IFBLK,
        Mode::from_bits_truncate(0o600),
        devnum.to_dev_t() as nix::libc::dev_t,
    )
    .with_context(|| format!("creating node {} for {devnum}", node.display()))?;
    Ok(node)
}
