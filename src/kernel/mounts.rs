//! Who uses a block device: mounts (from /proc/self/mountinfo) and swap areas (/proc/swaps).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::devnum::DevNum;

/// One mount of a block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub devnum: DevNum,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
    /// The directory of the filesystem this mount shows (`/` unless a bind of a subdirectory).
    pub root: PathBuf,
}

/// Switch the filesystem mounted at `mount_point` between read-only and read-write (`mount -o
/// remount,ro|rw`: the superblock's flag, seen by every mount of it).
pub fn remount(mount_point: &Path, read_only: bool) -> io::Result<()> {
    use nix::mount::{mount, MsFlags};
    let mut flags = MsFlags::MS_REMOUNT;
    if read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    mount(None::<&str>, mount_point, None::<&str>, flags, None::<&str>).map_err(io::Error::from)
}

/// All current mounts of this process's mount namespace.
pub fn mounts() -> io::Result<Vec<Mount>> {
    let infos = procfs::process::Process::myself()
        .and_then(|p| p.mountinfo())
        .map_err(|e| io::Error::other(format!("reading /proc/self/mountinfo: {e}")))?;
    Ok(infos
        .into_iter()
        .filter_map(|m| {
            Some(Mount {
                devnum: m.majmin.parse().ok()?,
                mount_point: m.mount_point,
                fs_type: m.fs_type,
                source: m.mount_source.unwrap_or_default(),
                root: PathBuf::from(&m.root),
            })
        })
        .collect())
}

/// Mounts of one device, the root mount (`/`) first when it is among them.
pub fn mounts_of(dev: DevNum) -> io::Result<Vec<Mount>> {
    let mut v: Vec<Mount> = mounts()?.into_iter().filter(|m| m.devnum == dev).collect();
    v.sort_by_key(|m| m.mount_point != Path::new("/"));
    Ok(v)
}

/// The device `/` is mounted from.
pub fn root_mount() -> io::Result<Mount> {
    mounts()?
        .into_iter()
        .rev() // the last mount on / is the visible one
        .find(|m| m.mount_point == Path::new("/"))
        .ok_or_else(|| io::Error::other("no / in /proc/self/mountinfo"))
}

/// The filesystem type and super options of the visible `/` mount: the fields after ` - ` in
/// /proc/self/mountinfo (procfs' map of them would merge repeated keys such as `lowerdir+`).
pub fn root_fs_options() -> io::Result<(String, String)> {
    let text = fs::read_to_string("/proc/self/mountinfo")?;
    root_fs_options_in(&text).ok_or_else(|| io::Error::other("no / in /proc/self/mountinfo"))
}

fn root_fs_options_in(text: &str) -> Option<(String, String)> {
    text.lines()
        .rfind(|l| l.split(' ').nth(4) == Some("/"))
        .and_then(|l| {
            let (_, tail) = l.split_once(" - ")?;
            let mut w = tail.split(' ');
            let fs_type = w.next()?.to_string();
            let _source = w.next()?;
            Some((fs_type, w.next().unwrap_or("").to_string()))
        })
}

/// One line of /proc/swaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapArea {
    pub filename: PathBuf,
    pub kind: String,
}

/// Parsed /proc/swaps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Swaps(pub Vec<SwapArea>);

/// /proc/swaps escapes blanks and backslashes in names as octal (`\040`).
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl FromStr for Swaps {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Swaps(
            s.lines()
                .skip(1)
                .filter_map(|l| {
                    let mut w = l.split_whitespace();
                    let name = w.next()?;
                    let kind = w.next().unwrap_or("").to_string();
                    Some(SwapArea {
                        filename: PathBuf::from(unescape_octal(name)),
                        kind,
                    })
                })
                .collect(),
        ))
    }
}

impl Swaps {
    pub fn read() -> io::Result<Swaps> {
        match fs::read_to_string("/proc/swaps") {
            Ok(s) => Ok(s.parse().unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Swaps::default()),
            Err(e) => Err(e),
        }
    }

    /// Swap partitions (not files) that are this device.
    pub fn uses(&self, dev: DevNum) -> Option<&SwapArea> {
        use std::os::unix::fs::MetadataExt;
        self.0.iter().find(|a| {
            a.kind == "partition"
                && fs::metadata(&a.filename)
                    .map(|m| DevNum::from_dev_t(m.rdev()) == dev)
                    .unwrap_or(false)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_proc_swaps() {
        let text = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
                    /dev/vde                                partition\t1048572\t\t0\t\t-2\n\
                    /swap\\040file                             file\t\t65532\t\t0\t\t-3\n";
        let s: Swaps = text.parse().unwrap();
        assert_eq!(s.0.len(), 2);
        assert_eq!(s.0[0].filename, PathBuf::from("/dev/vde"));
        assert_eq!(s.0[0].kind, "partition");
        assert_eq!(s.0[1].filename, PathBuf::from("/swap file"));
        assert_eq!(s.0[1].kind, "file");
    }

    #[test]
    fn empty_proc_swaps() {
        let s: Swaps = "Filename\tType\tSize\tUsed\tPriority\n".parse().unwrap();
        assert!(s.0.is_empty());
    }

    #[test]
    fn the_last_root_mount_wins() {
        let t = "22 1 0:21 / / rw,relatime - tmpfs rootfs rw\n\
                 36 22 0:33 / / rw,relatime shared:1 - overlay overlay rw,lowerdir=/run/live/rootfs/filesystem.squashfs/,upperdir=/run/live/overlay/rw,workdir=/run/live/overlay/work\n\
                 37 36 0:5 / /dev rw - devtmpfs udev rw\n";
        let (t, o) = root_fs_options_in(t).unwrap();
        assert_eq!(t, "overlay");
        assert!(o.starts_with("rw,lowerdir=/run/live/rootfs/"), "{o}");
    }
}
