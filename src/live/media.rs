//! After an overlay root's image files moved: let go of the medium (unmount, eject) and of the
//! zram device the upper was on.

use std::fs;

use crate::kernel::blockdev::BlockDev;
use crate::kernel::devnum::DevNum;
use crate::kernel::loopdev::LoopBinding;
use crate::kernel::{ioctl, mounts, zram};

use super::overlay::ImagePlan;

/// After the image files moved: unmount the medium they were on (every mount of it; never lazily:
/// a busy mount stays, and says so), then open a CD drive's tray. Lines as `release_old` gives.
pub fn release_medium(plan: &ImagePlan) -> Vec<String> {
    let mut r = vec![];
    let mut media: Vec<DevNum> = plan.files.iter().map(|f| f.medium).collect();
    media.dedup();
    for dev in media {
        let Ok(bd) = BlockDev::from_devnum(dev) else {
            r.push(format!("kept the medium {dev}: not a block device"));
            continue;
        };
        let still = fs::read_dir("/sys/block")
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("loop"))
                    .filter_map(|n| LoopBinding::of(&n))
                    .any(|b| b.file_dev == dev)
            })
            .unwrap_or(false);
        if still {
            r.push(format!(
                "kept the medium {}: a loop device still reads a file on it",
                bd.display()
            ));
            continue;
        }
        let ms = mounts::mounts_of(dev).unwrap_or_default();
        let mut busy = false;
        for m in ms.iter().rev() {
            match nix::mount::umount2(&m.mount_point, nix::mount::MntFlags::empty()) {
                Ok(()) => r.push(format!(
                    "unmounted {} ({} on {})",
                    m.mount_point.display(),
                    m.fs_type,
                    m.source
                )),
                Err(e) => {
                    busy = true;
                    r.push(format!(
                        "kept mount {}: umount: {e}",
                        m.mount_point.display()
                    ));
                }
            }
        }
        if busy {
            continue;
        }
        if bd.kname.starts_with("sr") {
            use std::os::unix::fs::OpenOptionsExt;
            match fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&bd.path)
                .map_err(anyhow::Error::from)
                .and_then(|f| {
                    use std::os::fd::AsFd;
                    ioctl::cdrom_eject(f.as_fd()).map_err(anyhow::Error::from)
                }) {
                Ok(()) => r.push(format!("ejected {}", bd.display())),
                Err(e) => r.push(format!("kept {} in the drive: eject: {e:#}", bd.display())),
            }
        } else {
            r.push(format!(
                "the medium {} is no longer used: it can be removed",
                bd.display()
            ));
        }
    }
    r
}

/// After the switch: free the zram device the upper was on (a `rootshift-upper` source). Empty
/// when `old` is no zram device.
pub fn release_zram(old: &BlockDev) -> Vec<String> {
    let Some(id) = zram::zram_id(&old.kname) else {
        return vec![];
    };
    if !old.holders().is_empty() {
        return vec![format!(
            "kept {}: held by {}",
            old.display(),
            old.holders().join(", ")
        )];
    }
    match zram::free(id) {
        Ok(true) => vec![format!("freed and removed {}", old.display())],
        Ok(false) => vec![format!(
            "freed {} (its memory; the device stays, empty)",
            old.display()
        )],
        Err(e) => vec![format!("kept {}: reset: {e}", old.display())],
    }
}
