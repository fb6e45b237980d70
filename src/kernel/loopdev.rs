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
