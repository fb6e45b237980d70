//! Loop devices over files (for the mirror's RAM-backed dirty-region log).

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use super::devnum::DevNum;
use super::ioctl;

/// A loop device bound to a file with LO_FLAGS_AUTOCLEAR: the kernel unbinds it when its last
/// user (us, or a dm table that references it) closes it. Dropping this closes our handle.
pub struct LoopDev {
    pub path: PathBuf,
    pub devnum: DevNum,
    _file: File,
}

impl LoopDev {
    /// Bind `backing` to a free loop device.
    pub fn attach(backing: &Path) -> Result<LoopDev> {
        if !Path::new("/dev/loop-control").exists() {
            let _ = crate::tools::modprobe("loop");
        }
        let ctl =
            File::open("/dev/loop-control").context("opening /dev/loop-control (module loop)")?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(backing)
            .with_context(|| format!("opening {}", backing.display()))?;
        // Another program can take the number between GET_FREE and SET_FD (EBUSY): retry.
        let mut last = None;
        for _ in 0..10 {
            let n = ioctl::loop_ctl_get_free(ctl.as_fd()).context("LOOP_CTL_GET_FREE")?;
            let path = PathBuf::from(format!("/dev/loop{n}"));
            for _ in 0..50 {
                if path.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let dev = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            match ioctl::loop_attach(dev.as_fd(), file.as_fd(), ioctl::LO_FLAGS_AUTOCLEAR) {
                Ok(()) => {
                    let devnum = fs::read_to_string(format!("/sys/block/loop{n}/dev"))
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(DevNum::new(7, n));
                    return Ok(LoopDev {
                        path,
                        devnum,
                        _file: dev,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("attempted")).context("binding a loop device")
    }
}

/// A bound loop device as sysfs shows it (drivers/block/loop.c `loop_attr_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopBinding {
    /// `/dev/loopN`.
    pub path: PathBuf,
    pub devnum: DevNum,
    /// The backing file's path as this process sees it (`loop/backing_file`); it may no longer be
    /// reachable (a lazily unmounted filesystem): check it against `file_dev`/`file_ino`.
    pub backing_file: PathBuf,
    /// The filesystem device and inode of the backing file (LOOP_GET_STATUS64).
    pub file_dev: DevNum,
    pub file_ino: u64,
    pub read_only: bool,
}

impl LoopBinding {
    /// The binding of loop device `kname` (`loop0`); None when it is not a bound loop device.
    pub fn of(kname: &str) -> Option<LoopBinding> {
        let sys = Path::new("/sys/block").join(kname);
        let backing = fs::read_to_string(sys.join("loop/backing_file")).ok()?;
        let devnum: DevNum = fs::read_to_string(sys.join("dev"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let path = PathBuf::from("/dev").join(kname);
        let f = File::open(&path).ok()?;
        let st = ioctl::loop_status(f.as_fd()).ok()?;
        Some(LoopBinding {
            path,
            devnum,
            backing_file: PathBuf::from(backing.trim_end_matches('\n')),
            file_dev: DevNum::from_dev_t(st.lo_device),
            file_ino: st.lo_inode,
            read_only: st.lo_flags & ioctl::LO_FLAGS_READ_ONLY != 0,
        })
    }

    /// Move this read-only loop device onto `file` (same size and content): LOOP_CHANGE_FD.
    pub fn change_backing(&self, file: &File) -> Result<()> {
        let dev =
            File::open(&self.path).with_context(|| format!("opening {}", self.path.display()))?;
        ioctl::loop_change_fd(dev.as_fd(), file.as_fd()).with_context(|| {
            format!(
                "LOOP_CHANGE_FD of {} (the kernel wants a read-only loop and a file of the same size)",
                self.path.display()
            )
        })
    }
}
