//! How much the running system's files take: what a plain root must hold, and the total the first
//! copy pass's progress counts against. The same tree the copier walks: one mount (by mount id),
//! without /proc, /sys, /dev, /run and /tmp.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::kernel::ioctl::inode::mount_id;

/// What the files under `root` take (hard links once; unreadable directories skipped: the copy
/// itself reports those).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeSize {
    /// Allocated blocks: what the new filesystem must hold.
    pub allocated: u64,
    /// Regular files' lengths: what the copy reads (its progress counts these, holes aside).
    pub data: u64,
}

pub fn tree_bytes(root: &Path) -> Result<TreeSize> {
    let mnt = mount_id(root).with_context(|| format!("the mount id of {}", root.display()))?;
    let skip: Vec<PathBuf> = ["proc", "sys", "dev", "run", "tmp"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut total = TreeSize::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            if m.nlink() > 1 && !m.is_dir() && !seen.insert((m.dev(), m.ino())) {
                continue;
            }
            total.allocated += m.blocks() * 512;
            if m.is_file() {
                total.data += m.len();
            }
            if m.is_dir() && !skip.contains(&p) && mount_id(&p).is_ok_and(|id| id == mnt) {
                stack.push(p);
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_files_once_per_inode() {
        let d = std::env::temp_dir().join(format!("rootshift-size-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir(&d).unwrap();
        fs::write(d.join("a"), vec![1u8; 1 << 20]).unwrap();
        let one = tree_bytes(&d).unwrap();
        assert!(one.allocated >= 1 << 20, "{one:?}");
        assert_eq!(one.data, 1 << 20);
        fs::hard_link(d.join("a"), d.join("b")).unwrap();
        assert_eq!(tree_bytes(&d).unwrap(), one);
        fs::create_dir(d.join("sub")).unwrap();
        fs::write(d.join("sub/c"), vec![1u8; 1 << 20]).unwrap();
        let two = tree_bytes(&d).unwrap();
        assert!(two.allocated >= one.allocated + (1 << 20), "{two:?}");
        assert_eq!(two.data, 2 << 20);
        fs::remove_dir_all(&d).unwrap();
    }
}
