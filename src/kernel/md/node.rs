//! What md does through its device node `/dev/<name>`: making the node if devtmpfs did not,
//! and the md ioctls on it (STOP_ARRAY, HOT_ADD_DISK, HOT_REMOVE_DISK, SET_DISK_FAULTY).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::stat::{mknod, Mode, SFlag};

use super::error::{io_err, ioctl_err, MdError};
use super::sysfs::has_other_in_sync;
use super::MdArray;
use crate::kernel::devnum::DevNum;
use crate::kernel::ioctl;

impl MdArray {
    /// `/dev/<name>`.
    pub fn node(&self) -> PathBuf {
        PathBuf::from("/dev").join(&self.name)
    }

    /// Open `/dev/<name>` for the md ioctls, making the node first if it is missing.
    pub fn open_node(&self) -> Result<File, MdError> {
        let node = ensure_md_node(&self.name, self.devnum)?;
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&node)
            .map_err(|e| io_err("opening", &node, e))
    }

    /// STOP_ARRAY: stop and dismantle the array; its members are released. EBUSY while anything
    /// else has the array open (a mount, another fd).
    pub fn stop(&self) -> Result<(), MdError> {
        let f = self.open_node()?;
        ioctl::md_stop_array(f.as_fd()).map_err(|e| ioctl_err("STOP_ARRAY", &self.node(), e))
    }

    /// HOT_ADD_DISK: bind `dev` as a spare, its size the whole device (ENOSPC if smaller than
    /// `component_size`). Recovery onto it starts once a slot is free (raise `raid_disks`).
    pub fn hot_add(&self, dev: DevNum) -> Result<(), MdError> {
        let f = self.open_node()?;
        ioctl::md_hot_add_disk(f.as_fd(), dev).map_err(|e| self.member_err("HOT_ADD_DISK", dev, e))
    }

    /// HOT_REMOVE_DISK: unbind a faulty or spare member. EBUSY while it holds a slot or still
    /// has I/O in flight (retry after a moment); ENXIO if it is not a member.
    pub fn hot_remove(&self, dev: DevNum) -> Result<(), MdError> {
        let f = self.open_node()?;
        ioctl::md_hot_remove_disk(f.as_fd(), dev)
            .map_err(|e| self.member_err("HOT_REMOVE_DISK", dev, e))
    }

    /// SET_DISK_FAULTY, refused unless another member is in sync, healthy and in a slot: on the
    /// last in-sync raid1 member md answers EBUSY *and* marks the array broken, after which
    /// every write fails. (A check then an ioctl: the caller must keep members from changing.)
    pub fn set_faulty(&self, dev: DevNum) -> Result<(), MdError> {
        let members = self.dev_dirs()?;
        let kname = fs::canonicalize(format!("/sys/dev/block/{dev}"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        if !has_other_in_sync(&members, dev, kname.as_deref()) {
            return Err(MdError::Refused(format!(
                "not failing {dev} in {}: no other member is in sync (md would mark the array \
                 broken and fail every write)",
                self.name
            )));
        }
        let f = self.open_node()?;
        ioctl::md_set_disk_faulty(f.as_fd(), dev)
            .map_err(|e| self.member_err("SET_DISK_FAULTY", dev, e))
    }

    fn member_err(&self, request: &'static str, dev: DevNum, source: io::Error) -> MdError {
        MdError::Ioctl {
            request,
            node: self.node(),
            member: Some(dev.to_string()),
            source,
        }
    }
}

/// Make sure `/dev/<name>` is the block device `devnum`: devtmpfs makes it when the array is
/// created; give it a moment, and without devtmpfs make it ourselves.
fn ensure_md_node(name: &str, devnum: DevNum) -> Result<PathBuf, MdError> {
    let node = PathBuf::from("/dev").join(name);
    let right = |p: &Path| -> bool {
        fs::metadata(p)
            .map(|m| m.file_type().is_block_device() && DevNum::from_dev_t(m.rdev()) == devnum)
            .unwrap_or(false)
    };
    let t0 = Instant::now();
    while !right(&node) && t0.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(20));
    }
    if right(&node) {
        return Ok(node);
    }
    match fs::remove_file(&node) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("removing stale", &node, e)),
    }
    mknod(
        &node,
        SFlag::S_IFBLK,
        Mode::from_bits_truncate(0o600),
        devnum.to_dev_t() as libc::dev_t,
    )
    .map_err(|e| io_err(format!("creating node for {devnum} at"), &node, e.into()))?;
    Ok(node)
}
