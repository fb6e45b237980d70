//! Block-device facts: resolving paths and numbers, sizes, sysfs topology (partitions, holders,
//! slaves, loop backing files) and exclusive opens.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use devicemapper::Bytes;

use super::devnum::DevNum;
use super::ioctl;

/// Why a path could not be used as a block device.
#[derive(Debug, thiserror::Error)]
pub enum BlockDevError {
    #[error("{0} does not exist")]
    NotFound(PathBuf),
    #[error("{0} is not a block device")]
    NotBlock(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A block device known by its number, with the sysfs directory that describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDev {
    /// The path the user gave or the canonical node (`/dev/vdb`, `/dev/mapper/x`).
    pub path: PathBuf,
    pub devnum: DevNum,
    /// Kernel name (`vdb`, `vdb1`, `dm-3`, `loop0`).
    pub kname: String,
    /// `/sys/dev/block/M:m` resolved (`/sys/devices/.../block/vdb/vdb1`).
    pub sysfs: PathBuf,
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

fn list_dir(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

impl BlockDev {
    /// Resolve a user-given path (symlinks followed) to a block device.
    pub fn from_path(path: &Path) -> Result<BlockDev, BlockDevError> {
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BlockDevError::NotFound(path.to_path_buf()))
            }
            Err(e) => {
                return Err(BlockDevError::Io {
                    path: path.to_path_buf(),
                    source: e,
                })
            }
        };
        if !meta.file_type().is_block_device() {
            return Err(BlockDevError::NotBlock(path.to_path_buf()));
        }
        let mut dev =
            Self::from_devnum(DevNum::from_dev_t(meta.rdev())).map_err(|e| BlockDevError::Io {
                path: path.to_path_buf(),
                source: e,
            })?;
        dev.path = path.to_path_buf();
        Ok(dev)
    }

    /// Describe the block device with this number; its path is the usual node for it.
    pub fn from_devnum(devnum: DevNum) -> io::Result<BlockDev> {
        let link = PathBuf::from(format!("/sys/dev/block/{devnum}"));
        let sysfs = fs::canonicalize(&link).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "no block device {devnum} in sysfs ({}): {e}",
                    link.display()
                ),
            )
        })?;
        let kname = sysfs
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut dev = BlockDev {
            path: PathBuf::new(),
            devnum,
            kname,
            sysfs,
        };
        dev.path = dev.node_path();
        Ok(dev)
    }

    /// The conventional node: `/dev/mapper/NAME` for dm devices when it exists, else `/dev/KNAME`.
    pub fn node_path(&self) -> PathBuf {
        if let Some(name) = self.dm_name() {
            let p = PathBuf::from("/dev/mapper").join(&name);
            if p.exists() {
                return p;
            }
        }
        PathBuf::from("/dev").join(&self.kname)
    }

    pub fn display(&self) -> String {
        self.path.display().to_string()
    }

    /// Size in bytes, from sysfs (always counted in 512-byte units there).
    pub fn size(&self) -> io::Result<Bytes> {
        let s = read_trim(&self.sysfs.join("size"))
            .ok_or_else(|| io::Error::other(format!("cannot read size of {}", self.kname)))?;
        let sectors: u64 = s
            .parse()
            .map_err(|_| io::Error::other(format!("bad size {s:?} for {}", self.kname)))?;
        Ok(Bytes(u128::from(sectors) * 512))
    }

    /// Size in bytes and logical block size, asked of the device itself.
    pub fn geometry(&self) -> io::Result<(Bytes, u32)> {
        let f = File::open(&self.path)?;
        let size = ioctl::block_size_bytes(f.as_fd())?;
        let lbs = ioctl::logical_block_size(f.as_fd())?;
        Ok((Bytes(u128::from(size)), lbs))
    }

    pub fn is_partition(&self) -> bool {
        self.sysfs.join("partition").exists()
    }

    /// The partition number (`vda3` → 3), from sysfs.
    pub fn partition_number(&self) -> Option<u32> {
        read_trim(&self.sysfs.join("partition"))?.parse().ok()
    }

    /// `(start, length)` in 512-byte sectors of a partition within its disk.
    pub fn partition_range(&self) -> Option<(u64, u64)> {
        if !self.is_partition() {
            return None;
        }
        let start = read_trim(&self.sysfs.join("start"))?.parse().ok()?;
        let len = read_trim(&self.sysfs.join("size"))?.parse().ok()?;
        Some((start, len))
    }

    /// The whole disk this device is on (itself unless it is a partition).
    pub fn whole_disk(&self) -> io::Result<BlockDev> {
        if !self.is_partition() {
            return Ok(self.clone());
        }
        let parent = self
            .sysfs
            .parent()
            .ok_or_else(|| io::Error::other("partition without parent"))?;
        let dev = read_trim(&parent.join("dev"))
            .and_then(|s| s.parse::<DevNum>().ok())
            .ok_or_else(|| io::Error::other(format!("cannot read {}/dev", parent.display())))?;
        BlockDev::from_devnum(dev)
    }

    /// Partitions of this whole disk.
    pub fn partitions(&self) -> Vec<BlockDev> {
        list_dir(&self.sysfs)
            .into_iter()
            .filter(|n| n.starts_with(&self.kname) && self.sysfs.join(n).join("partition").exists())
            .filter_map(|n| read_trim(&self.sysfs.join(&n).join("dev")))
            .filter_map(|d| d.parse::<DevNum>().ok())
            .filter_map(|d| BlockDev::from_devnum(d).ok())
            .collect()
    }

    /// Kernel names of the devices stacked on this one (dm, md, ...).
    pub fn holders(&self) -> Vec<String> {
        list_dir(&self.sysfs.join("holders"))
    }

    /// Devices this one is stacked on.
    pub fn slaves(&self) -> Vec<BlockDev> {
        self.related("slaves")
    }

    /// Devices stacked on this one, as [`BlockDev`]s (see [`BlockDev::holders`] for their names).
    pub fn holder_devs(&self) -> Vec<BlockDev> {
        self.related("holders")
    }

    /// The devices a sysfs directory of this one (`slaves`, `holders`) names.
    fn related(&self, dir: &str) -> Vec<BlockDev> {
        list_dir(&self.sysfs.join(dir))
            .into_iter()
            .filter_map(|n| read_trim(&PathBuf::from("/sys/class/block").join(&n).join("dev")))
            .filter_map(|d| d.parse::<DevNum>().ok())
            .filter_map(|d| BlockDev::from_devnum(d).ok())
            .collect()
    }

    /// The dm name when this is a device-mapper device.
    pub fn dm_name(&self) -> Option<String> {
        read_trim(&self.sysfs.join("dm/name"))
    }

    /// The model and serial of the disk this device is on, as sysfs has them (either may be
    /// missing: virtio disks have no model, some USB bridges no serial).
    pub fn disk_model_serial(&self) -> (Option<String>, Option<String>) {
        let Ok(d) = self.whole_disk() else {
            return (None, None);
        };
        let get = |f: &str| read_trim(&d.sysfs.join(f)).filter(|s| !s.is_empty());
        let model = get("device/model");
        let serial = get("serial")
            .or_else(|| get("device/serial"))
            .or_else(|| get("device/wwid"));
        (model, serial)
    }

    /// The dm uuid when this is a device-mapper device that has one.
    pub fn dm_uuid(&self) -> Option<String> {
        read_trim(&self.sysfs.join("dm/uuid")).filter(|u| !u.is_empty())
    }

    /// The backing file when this is a loop device.
    pub fn loop_backing_file(&self) -> Option<PathBuf> {
        read_trim(&self.sysfs.join("loop/backing_file")).map(PathBuf::from)
    }

    /// The devices at the bottom of this device's stack, following dm/md slaves and loop backing
    /// files (through the filesystem that holds the file). `through_loop` is set when a loop device
    /// was crossed: the device is then a file on some medium (a live image), not a partition.
    pub fn base_devices(&self) -> (Vec<BlockDev>, bool) {
        let mut out = vec![];
        let mut through_loop = false;
        let mut todo = vec![self.clone()];
        let mut seen = std::collections::HashSet::new();
        while let Some(d) = todo.pop() {
            if !seen.insert(d.devnum) {
                continue;
            }
            let slaves = d.slaves();
            if !slaves.is_empty() {
                todo.extend(slaves);
                continue;
            }
            if let Some(file) = d.loop_backing_file() {
                through_loop = true;
                let file = file
                    .to_string_lossy()
                    .trim_end_matches(" (deleted)")
                    .to_string();
                if let Ok(m) = fs::metadata(&file) {
                    if let Ok(under) = BlockDev::from_devnum(DevNum::from_dev_t(m.dev())) {
                        todo.push(under);
                        continue;
                    }
                }
            }
            out.push(d);
        }
        (out, through_loop)
    }

    /// Open for reading with O_EXCL: the kernel refuses (EBUSY) when the device is mounted,
    /// held by dm/md, or opened exclusively by anyone else.
    pub fn open_exclusive(&self) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_EXCL | libc::O_CLOEXEC)
            .open(&self.path)
    }

    /// Drop this device's buffer cache (BLKFLSBUF). A mirror leg is written beneath it (dm-io and
    /// md write to the disk directly): what was cached before the copy (udev's probe of a blank
    /// target) would otherwise be what blkid and other readers of the device see.
    pub fn drop_cache(&self) -> io::Result<()> {
        let f = File::open(&self.path)?;
        ioctl::blk_flush_buffers(f.as_fd())
    }

    /// The first `n` bytes (fewer if the device is smaller).
    pub fn read_head(&self, n: usize) -> io::Result<Vec<u8>> {
        let f = File::open(&self.path)?;
        let mut buf = Vec::with_capacity(n);
        f.take(n as u64).read_to_end(&mut buf)?;
        Ok(buf)
    }
}

/// Moved to [`crate::units`]; kept here so existing callers compile.
pub use crate::units::human;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_non_block_paths() {
        assert!(matches!(
            BlockDev::from_path(Path::new("/nonexistent/rootshift")),
            Err(BlockDevError::NotFound(_))
        ));
        assert!(matches!(
            BlockDev::from_path(Path::new("/dev/null")),
            Err(BlockDevError::NotBlock(_))
        ));
    }
}
