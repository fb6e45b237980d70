//! The rootshift wrapper: the thin dm device the root is mounted from (`rootshift-NAME`).
//!
//! Every device rootshift creates is named `rootshift-…` and carries a dm uuid
//! `ROOTSHIFT-1-<name>` (prefix + format version), so status, recovery and cleanup find exactly ours.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::error::refuse;
use crate::kernel::blockdev::{BlockDev, BlockDevError};
use crate::kernel::devnum::DevNum;
use crate::kernel::dm::{ensure_node, Dm};
use crate::kernel::dmtable::{LinearParams, TableLine, WrapperTable};
use crate::kernel::mounts;

pub const PREFIX: &str = "rootshift-";
pub const UUID_PREFIX: &str = "ROOTSHIFT-1-";
pub const DEFAULT_NAME: &str = "root";

/// A rootshift dm device.
#[derive(Debug, Clone)]
pub struct Wrapper {
    /// Full dm name, `rootshift-root`.
    pub name: String,
    pub devnum: DevNum,
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
        PathBuf::from("/dev/mapper").join(&self.name)
    }

    /// The live table, decoded.
    pub fn table(&self, dm: &Dm) -> Result<WrapperTable> {
        let lines = dm.table(&self.name)?;
        WrapperTable::from_lines(&lines)
            .with_context(|| format!("{} has a table rootshift did not make", self.name))
    }
}

/// All rootshift wrappers present.
pub fn list(dm: &Dm) -> Result<Vec<Wrapper>> {
    let mut v: Vec<Wrapper> = dm
        .list()?
        .into_iter()
        .filter(|(n, _)| n.starts_with(PREFIX))
        .map(|(name, devnum)| Wrapper { name, devnum })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(v)
}

/// The wrapper named `name`, or the one `/` is mounted from, or the only one.
pub fn find(dm: &Dm, name: Option<&str>) -> Result<Wrapper> {
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
    let root_dev = BlockDev::from_devnum(root.devnum)
        .map(|d| format!("{} ({})", d.display(), root.devnum))
        .unwrap_or_else(|_| root.devnum.to_string());
    let how = "boot with the rootshift initrd hook (rd.rootshift=dm), which mounts the root from \
               /dev/mapper/rootshift-root; `rootshift wrap` must run before the root is mounted";
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

/// `rootshift wrap SOURCE`: create `rootshift-NAME` = linear over SOURCE, make its node.
pub fn wrap(dm: &Dm, source: &Path, name: &str) -> Result<PathBuf> {
    let full = full_name(name);
    let src = match BlockDev::from_path(source) {
        Ok(d) => d,
        Err(e @ (BlockDevError::NotFound(_) | BlockDevError::NotBlock(_))) => {
            return Err(refuse(
                e.to_string(),
                Some("name the block device the root filesystem is on"),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    if list(dm)?.iter().any(|w| w.name == full) {
        return Err(refuse(
            format!("{full} already exists"),
            Some("use `rootshift status` to see it, or --name for another wrapper"),
        ));
    }
    if let Some(m) = mounts::mounts()?
        .into_iter()
        .find(|m| m.devnum == src.devnum)
    {
        return Err(refuse(
            format!(
                "{} is mounted on {}: a mounted device cannot be wrapped",
                src.display(),
                m.mount_point.display()
            ),
            Some("wrap the device in the initrd, before the root is mounted (rd.rootshift=dm)"),
        ));
    }
    let size = src
        .size()
        .with_context(|| format!("reading the size of {}", src.display()))?;
    let sectors = devicemapper::Sectors((*size / 512) as u64);
    let table = [TableLine::new(
        devicemapper::Sectors(0),
        sectors,
        "linear",
        LinearParams {
            dev: src.devnum,
            offset: devicemapper::Sectors(0),
        },
    )];
    let uuid = format!("{UUID_PREFIX}{}", full.trim_start_matches(PREFIX));
    let info = dm.create(&full, Some(&uuid), &table).with_context(|| {
        format!(
            "wrapping {} (is it in use? wrap runs before the root is mounted)",
            src.display()
        )
    })?;
    ensure_node(&full, info.devnum)
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
