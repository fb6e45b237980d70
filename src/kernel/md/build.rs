//! Building a raid1 without a superblock ("build" arrays, mdadm's word): the ioctl arguments
//! and the sequence new_array → SET_ARRAY_INFO → ADD_NEW_DISK → RUN_ARRAY, stopped again on
//! any failure.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use devicemapper::Sectors;

use super::error::{io_err, ioctl_err, with_cleanup, MdError};
use super::sysfs::{create_array_name, write_text};
use super::MdArray;
use crate::kernel::blockdev::BlockDev;
use crate::kernel::devnum::DevNum;
use crate::kernel::ioctl::{self, MduArrayInfo, MduDiskInfo};

/// SET_ARRAY_INFO for a one-leg raid1 without superblock, no resync pending, component size
/// taken from the member.
pub fn build_array_info() -> MduArrayInfo {
    MduArrayInfo {
        level: 1,
        size: 0,
        raid_disks: 1,
        not_persistent: 1,
        state: 1 << ioctl::MD_SB_CLEAN,
        ..Default::default()
    }
}

/// ADD_NEW_DISK for the source: descriptor 0, slot 0, in sync and active.
pub fn build_disk_info(dev: DevNum) -> Result<MduDiskInfo, MdError> {
    if ioctl::md_dev_arg(dev).is_none() {
        return Err(MdError::DevOutOfRange(dev));
    }
    // In range: a 12-bit major and a 20-bit minor fit an i32.
    Ok(MduDiskInfo {
        number: 0,
        major: dev.major as i32,
        minor: dev.minor as i32,
        raid_disk: 0,
        state: (1 << ioctl::MD_DISK_SYNC) | (1 << ioctl::MD_DISK_ACTIVE),
    })
}

/// Build (mdadm's word: no superblock is written, array bytes = member bytes) a one-leg raid1
/// named `name` over `source`, and start it:
/// new_array ← name, then on `/dev/<name>` SET_ARRAY_INFO (level 1, 1 disk, not persistent,
/// size 0, clean), ADD_NEW_DISK (source in slot 0, SYNC|ACTIVE), RUN_ARRAY; then check that
/// the array has exactly the source's size. On any failure after the name was created the array
/// is stopped again (STOP_ARRAY, or `clear` by sysfs without a node); if that fails too both
/// errors are returned.
///
/// The source must not be open exclusively by anyone (mounted, held by dm/md): md claims it,
/// ADD_NEW_DISK then fails with EBUSY.
pub fn build_raid1(name: &str, source: &BlockDev) -> Result<MdArray, MdError> {
    let source_size = source
        .size()
        .map_err(|e| io_err("reading the size of", &source.path, e))?;
    let source_size = Sectors((*source_size / 512) as u64);
    create_array_name(name)?;
    let array = match MdArray::open(name) {
        Ok(a) => a,
        Err(e) => {
            let clear = write_text(
                &PathBuf::from("/sys/block")
                    .join(name)
                    .join("md/array_state"),
                "clear",
            );
            return Err(with_cleanup(e, clear));
        }
    };
    let file = match array.open_node() {
        Ok(f) => f,
        Err(e) => return Err(with_cleanup(e, array.clear_by_sysfs())),
    };
    if let Err(e) = build_on(&array, &file, source, source_size) {
        let stop = ioctl::md_stop_array(file.as_fd())
            .map_err(|s| ioctl_err("STOP_ARRAY", &array.node(), s));
        return Err(with_cleanup(e, stop));
    }
    Ok(array)
}

fn build_on(
    array: &MdArray,
    file: &File,
    source: &BlockDev,
    source_size: Sectors,
) -> Result<(), MdError> {
    let node = array.node();
    let fd = file.as_fd();
    ioctl::md_set_array_info(fd, &build_array_info())
        .map_err(|e| ioctl_err("SET_ARRAY_INFO", &node, e))?;
    ioctl::md_add_new_disk(fd, &build_disk_info(source.devnum)?).map_err(|e| MdError::Ioctl {
        request: "ADD_NEW_DISK",
        node: node.clone(),
        member: Some(format!("{} ({})", source.display(), source.devnum)),
        source: e,
    })?;
    if !Path::new("/sys/module/raid1").exists() {
        // md asks for md-level-1 itself; this helps where the kernel cannot call modprobe.
        let _ = crate::tools::modprobe("raid1");
    }
    ioctl::md_run_array(fd).map_err(|e| ioctl_err("RUN_ARRAY", &node, e))?;
    let got = array.size()?;
    if got != source_size {
        return Err(MdError::SizeMismatch {
            name: array.name.clone(),
            array: got,
            source_dev: source.display(),
            source_size,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_structs() {
        let a = build_array_info();
        assert_eq!(
            (a.level, a.size, a.raid_disks, a.not_persistent, a.state),
            (1, 0, 1, 1, 1)
        );
        assert_eq!(
            MduArrayInfo {
                level: 0,
                raid_disks: 0,
                not_persistent: 0,
                state: 0,
                ..a
            },
            MduArrayInfo::default()
        );
        let d = build_disk_info(DevNum::new(254, 3)).unwrap();
        assert_eq!(
            d,
            MduDiskInfo {
                number: 0,
                major: 254,
                minor: 3,
                raid_disk: 0,
                state: 6
            }
        );
        assert!(matches!(
            build_disk_info(DevNum::new(4096, 0)),
            Err(MdError::DevOutOfRange(_))
        ));
    }
}
