//! The rootshift wrapper: the thin device the root is mounted from.
//!
//! Two kinds: a dm `linear` device `rootshift-NAME` (dm uuid `ROOTSHIFT-1-NAME`: prefix + format
//! version) or a superblock-less md raid1 `md_rootshift-NAME` (the kernel's named-array form). Every
//! device rootshift creates carries the `rootshift-` prefix, so status, recovery and cleanup find
//! exactly ours.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::error::refuse;
use crate::kernel::blockdev::BlockDev;
use crate::kernel::devnum::DevNum;
use crate::kernel::dm::Dm;
use crate::kernel::dmtable::WrapperTable;
use crate::kernel::mounts;

pub const PREFIX: &str = "rootshift-";
pub const UUID_PREFIX: &str = "ROOTSHIFT-1-";
pub const DEFAULT_NAME: &str = "root";
/// md named arrays must be called `md_<something>` (drivers/md/md.c, add_named_array).
pub const MD_PREFIX: &str = "md_";

/// Which kernel mechanism a wrapper is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// device-mapper: `linear`, reloaded to `mirror` for the copy.
    Dm,
    /// md raid1 without superblock, driven by ioctls.
    Md,
}

/// A rootshift wrapper device.
#[derive(Debug, Clone)]
pub struct Wrapper {
    /// Logical name, `rootshift-root` (the md array is `md_rootshift-root`).
    pub name: String,
    pub devnum: DevNum,
    pub kind: Kind,
}

/// `root` → `rootshift-root`; an already-prefixed name is kept.
pub fn full_name(short: &str) -> String {
    if short.starts_with(PREFIX) {
        short.to_string()
    } else {
        format!("{PREFIX}{short}")
    }
}

impl Wrapper {
    pub fn node(&self) -> PathBuf {
        match self.kind {
            Kind::Dm => PathBuf::from("/dev/mapper").join(&self.name),
            Kind::Md => PathBuf::from("/dev").join(self.md_name()),
        }
    }

    /// The md array's kernel name, `md_rootshift-root`.
    pub fn md_name(&self) -> String {
        format!("{MD_PREFIX}{}", self.name)
    }

    /// The live dm table, decoded (dm wrappers only).
    pub fn dm_table(&self, dm: &Dm) -> Result<WrapperTable> {
        let lines = dm.table(&self.name)?;
        WrapperTable::from_lines(&lines)
            .with_context(|| format!("{} has a table rootshift did not make", self.name))
    }
}

/// All rootshift wrappers present: dm devices `rootshift-*` and md arrays `md_rootshift-*`.
pub fn list(dm: Option<&Dm>) -> Result<Vec<Wrapper>> {
    let mut v: Vec<Wrapper> = match dm {
        Some(dm) => dm
            .list()?
            .into_iter()
            .filter(|(n, _)| n.starts_with(PREFIX))
            .map(|(name, devnum)| Wrapper {
                name,
                devnum,
                kind: Kind::Dm,
            })
            .collect(),
        None => vec![],
    };
    let md_prefix = format!("{MD_PREFIX}{PREFIX}");
    if let Ok(rd) = std::fs::read_dir("/sys/block") {
        for e in rd.flatten() {
            let kname = e.file_name().to_string_lossy().into_owned();
            let Some(name) = kname
                .strip_prefix(MD_PREFIX)
                .filter(|_| kname.starts_with(&md_prefix))
            else {
                continue;
            };
            let dev = std::fs::read_to_string(e.path().join("dev")).ok();
            if let Some(devnum) = dev.and_then(|d| d.trim().parse().ok()) {
                v.push(Wrapper {
                    name: name.to_string(),
                    devnum,
                    kind: Kind::Md,
                });
            }
        }
    }
    v.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(v)
}

/// The wrapper named `name`, or the one `/` is mounted from.
pub fn find(dm: Option<&Dm>, name: Option<&str>) -> Result<Wrapper> {
    let all = list(dm)?;
    if let Some(n) = name {
        let full = full_name(n);
        return all.into_iter().find(|w| w.name == full).ok_or_else(|| {
            refuse(
                format!("there is no rootshift wrapper named {full}"),
                Some("run `rootshift status` to list the wrappers present"),
            )
        });
    }
    let root = mounts::root_mount().context("finding the device / is mounted from")?;
    if let Some(w) = all.iter().find(|w| w.devnum == root.devnum) {
        return Ok(w.clone());
    }
    // an overlayfs live root: what moves is its upper layer, when that is on a wrapper
    if root.fs_type == "overlay" {
        if let Some(o) = crate::live::overlay::OverlayRoot::of_root()? {
            let on = o.upper.as_ref().map(|u| u.devnum);
            return match all.iter().find(|w| Some(w.devnum) == on) {
                Some(w) => Ok(w.clone()),
                None => Err(o.unwrapped_refusal()),
            };
        }
    }
    // an encrypted root: its LUKS container opened over a wrapper (what moves is the container)
    if let Ok(rd) = BlockDev::from_devnum(root.devnum) {
        if crate::kernel::dm::crypt_in_stack(&rd).is_some_and(|c| c.devnum == rd.devnum) {
            if let [below] = rd.slaves().as_slice() {
                if let Some(w) = all.iter().find(|w| w.devnum == below.devnum) {
                    return Ok(w.clone());
                }
            }
        }
    }
    let root_dev = BlockDev::from_devnum(root.devnum)
        .map(|d| format!("{} ({})", d.display(), root.devnum))
        .unwrap_or_else(|_| root.devnum.to_string());
    let how =
        "`rootshift boot enable`, then reboot: the rootshift initrd hook then mounts the root \
               from a wrapper (rd.rootshift=dm or md on the kernel command line does it for one \
               boot); `rootshift wrap` must run before the root is mounted";
    match all.as_slice() {
        [] => Err(refuse(
            format!("/ is mounted from {root_dev}, which is not on a rootshift wrapper (no rootshift-* device exists)"),
            Some(how),
        )),
        _ => Err(refuse(
            format!(
                "/ is mounted from {root_dev}, which is not on a rootshift wrapper; wrappers present: {}",
                all.iter().map(|w| w.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
            Some("pick one with --name"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_the_prefix_once() {
        assert_eq!(full_name("root"), "rootshift-root");
        assert_eq!(full_name("rootshift-root"), "rootshift-root");
    }
}
