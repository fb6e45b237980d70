//! Root clones after the switch: each detached clone gets its own identity (checked, new
//! filesystem UUID, label suffix, grown to its partition).

use std::fs;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::Serialize;

use super::ids;
use crate::kernel::blockdev::BlockDev;
use crate::tools;

/// What a clone got.
#[derive(Debug, Clone, Serialize)]
pub struct CloneIds {
    pub uuid: String,
    pub label: String,
    /// The check that ran (`e2fsck -f -y` / `xfs_repair -n`).
    pub check: String,
}

/// A label with a suffix, cut to the filesystem's limit (ext: 16 bytes, xfs: 12).
pub fn clone_label(base: &str, fs_type: &str, n: usize) -> String {
    let max: usize = if fs_type == "xfs" { 12 } else { 16 };
    let suffix = format!("-c{n}");
    let keep = max.saturating_sub(suffix.len());
    let mut b: String = base.chars().take(keep).collect();
    while b.len() > keep {
        b.pop();
    }
    if b.is_empty() {
        format!("clone{n}")
    } else {
        format!("{b}{suffix}")
    }
}

/// Give a detached clone its own identity, offline: check it, new filesystem UUID, label suffix
/// (as KIWI does for its partition clones).
pub fn clone_identity(dev: &BlockDev, fs_type: &str, n: usize) -> Result<CloneIds> {
    let path = dev.display();
    let (check, label_now) = match fs_type {
        "xfs" => {
            tools::run("xfs_repair", &["-n", &path])?;
            let l = tools::run("xfs_admin", &["-l", &path]).unwrap_or_default();
            let l = l.split('"').nth(1).unwrap_or("").to_string();
            ("xfs_repair -n".to_string(), l)
        }
        t if t.starts_with("ext") => {
            // -y: a clone taken from a frozen filesystem is clean; -y only matters if it is not
            let out =
                std::process::Command::new(tools::find("e2fsck").context("e2fsck not found")?)
                    .args(["-f", "-y", &path])
                    .output()
                    .context("running e2fsck")?;
            // 0 = clean, 1 = errors corrected: both leave a consistent filesystem
            match out.status.code() {
                Some(0) => {}
                Some(1) => bail!(
                    "e2fsck -f found errors on the clone {path} (it should have been a frozen, consistent image): {}",
                    String::from_utf8_lossy(&out.stdout).trim()
                ),
                _ => bail!(
                    "e2fsck -f {path} failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            }
            let l = tools::run("e2label", &[&path]).unwrap_or_default();
            ("e2fsck -f (clean)".to_string(), l.trim().to_string())
        }
        other => bail!("rootshift cannot give a {other} clone its own identity"),
    };
    let uuid = ids::set_uuid_offline(dev, fs_type)?;
    let label = clone_label(
        if label_now.is_empty() {
            "root"
        } else {
            &label_now
        },
        fs_type,
        n,
    );
    if fs_type == "xfs" {
        tools::run("xfs_admin", &["-L", &label, &path])?;
        // xfs grows only mounted: briefly, at a private place (its UUID is its own now)
        let mp = PathBuf::from(format!("/run/rootshift/clone-{n}"));
        fs::create_dir_all(&mp)?;
        mount(
            Some(dev.path.as_path()),
            &mp,
            Some("xfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .with_context(|| format!("mounting the clone {path} to grow it"))?;
        let grown = tools::run("xfs_growfs", &[&mp.display().to_string()]);
        let _ = umount2(&mp, MntFlags::empty());
        grown?;
    } else {
        tools::run("e2label", &[&path, &label])?;
        // the clone was taken before the root grew: make it fill its partition too
        tools::run("resize2fs", &[&path])?;
    }
    Ok(CloneIds { uuid, label, check })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_labels_fit_the_filesystem() {
        assert_eq!(clone_label("Live-rootfs", "ext4", 1), "Live-rootfs-c1");
        assert_eq!(
            clone_label("a-very-long-label", "ext4", 2),
            "a-very-long-l-c2"
        );
        assert_eq!(clone_label("a-very-long-label", "xfs", 3), "a-very-lo-c3");
        assert_eq!(clone_label("", "ext4", 1), "clone1");
        assert!(clone_label("rootfs", "xfs", 7).len() <= 12);
    }
}
