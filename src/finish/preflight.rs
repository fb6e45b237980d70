//! Before the copy: check that the target can become a bootable installed system, and make the
//! [`Plan`] that [`super::run`] carries out after the switch.

use std::path::Path;

use anyhow::Result;

use super::{bootloader, initramfs, Leftover, Options, Plan};
use crate::error::refuse;
use crate::kernel::blockdev::BlockDev;
use crate::kernel::mounts::{self, Mount, Swaps};
use crate::tools;

/// Whether a source device is a live medium's root (dmsquash-live `live-rw`, or any device
/// stacked over a loop-mounted image).
pub fn is_live_source(source: &BlockDev) -> bool {
    source
        .dm_name()
        .is_some_and(|n| n.starts_with(crate::live::LIVE_DM_PREFIX))
        || source.base_devices().1
}

/// Whether one of `devs`' base devices lies on one of `disks`.
fn on_disks(dev: &BlockDev, disks: &[BlockDev]) -> bool {
    dev.base_devices()
        .0
        .iter()
        .filter_map(|b| b.whole_disk().ok())
        .any(|d| disks.iter().any(|x| x.devnum == d.devnum))
}

/// Check, before anything changes, that `target` can become a bootable installed system.
pub fn preflight(
    opts: Options,
    source: Option<&BlockDev>,
    live_source: bool,
    target: &BlockDev,
    root: Option<&Mount>,
) -> Result<Plan> {
    let Some(root) = root else {
        return Err(refuse(
            "--install needs the wrapper to be mounted as /; this one is not",
            Some("migrate without --install"),
        ));
    };
    if root.mount_point != Path::new("/") {
        return Err(refuse(
            format!(
                "--install makes the root filesystem bootable, but this wrapper is mounted on {}",
                root.mount_point.display()
            ),
            Some("migrate it without --install"),
        ));
    }
    if !matches!(root.fs_type.as_str(), "ext4" | "ext3" | "ext2" | "xfs") {
        return Err(refuse(
            format!(
                "--install supports ext4 and xfs roots; / is {}",
                root.fs_type
            ),
            Some("migrate without --install"),
        ));
    }
    let boot = bootloader::plan(opts.bootloader, target, opts.force)?;
    let (initramfs_tool, kernels) = initramfs::check(opts.initramfs)?;
    let mut leftovers = vec![];
    if let (false, Some(source)) = (live_source, source) {
        let old_disks: Vec<BlockDev> = source
            .base_devices()
            .0
            .iter()
            .filter_map(|b| b.whole_disk().ok())
            .collect();
        let mut refused = vec![];
        for m in mounts::mounts()? {
            if m.mount_point == Path::new("/") || m.devnum.major == 0 {
                continue;
            }
            let Ok(dev) = BlockDev::from_devnum(m.devnum) else {
                continue;
            };
            if !on_disks(&dev, &old_disks) {
                continue;
            }
            if m.mount_point == Path::new("/boot/efi")
                && m.fs_type == "vfat"
                && boot.bootloader.needs_esp()
            {
                leftovers.push(Leftover::Esp(m));
            } else {
                refused.push(format!(
                    "{} on {} ({})",
                    m.mount_point.display(),
                    dev.display(),
                    m.fs_type
                ));
            }
        }
        for s in Swaps::read()?.0 {
            let Ok(dev) = BlockDev::from_path(&s.filename) else {
                continue;
            };
            if s.kind == "partition" && on_disks(&dev, &old_disks) {
                leftovers.push(Leftover::Swap {
                    bytes: dev.size().map(|b| *b as u64).unwrap_or(0),
                    dev: s.filename.clone(),
                });
            }
        }
        if !refused.is_empty() {
            return Err(refuse(
                format!(
                    "the old disk still holds mounted filesystems besides /: {}; the installed system would \
                     lose them when that disk is gone",
                    refused.join(", ")
                ),
                Some("copy their contents into the root filesystem (or onto the target disk) and unmount them \
                      first; rootshift moves only /, an ESP at /boot/efi and swap"),
            ));
        }
    }
    let boot_part = match &opts.boot_partition {
        Some(p) => {
            let d = BlockDev::from_path(p)
                .map_err(|e| refuse(format!("--boot-partition: {e}"), None))?;
            if mounts::mounts()?
                .iter()
                .any(|m| m.mount_point == Path::new("/boot"))
            {
                return Err(refuse(
                    "/boot is a separate mount already; --boot-partition would hide it",
                    Some("leave out --boot-partition"),
                ));
            }
            need_tool("mkfs.ext4", "e2fsprogs")?;
            Some(d)
        }
        None => None,
    };
    super::cryptboot::check(
        opts.encrypt,
        opts.tpm2,
        opts.crypttab_key.as_deref(),
        opts.initramfs,
        boot_part.is_some(),
    )?;
    Ok(Plan {
        boot,
        initramfs: opts.initramfs,
        initramfs_tool,
        kernels,
        live_source,
        fs_type: root.fs_type.clone(),
        leftovers,
        boot_part,
        crypttab_key: opts.crypttab_key.clone(),
    })
}

fn need_tool(name: &str, package: &str) -> Result<()> {
    if tools::find(name).is_some() {
        Ok(())
    } else {
        Err(refuse(
            format!("{name} is missing (package {package})"),
            None,
        ))
    }
}
