//! Checks before anything changes. Each failure is a `Refusal` naming the problem and the way
//! out; the checks only read.

use std::path::Path;

use anyhow::{Context, Result};
use devicemapper::Bytes;

use crate::error::refuse;
use crate::kernel::blockdev::{human, BlockDev, BlockDevError};
use crate::kernel::devnum::DevNum;
use crate::kernel::mounts::{self, Swaps};
use crate::wrapper::{self, Wrapper};

/// What preflight learnt about the target.
#[derive(Debug, Clone)]
pub struct Checked {
    pub target: BlockDev,
    pub target_size: Bytes,
    pub source_size: Bytes,
}

/// rootshift changes the kernel's devices: only root may.
pub fn require_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(refuse(
            "rootshift must be run as root (it reloads device-mapper tables under the running system)",
            Some("run it with sudo or from a root shell"),
        ));
    }
    Ok(())
}

/// Resolve the target path to a block device.
pub fn resolve_target(path: &Path) -> Result<BlockDev> {
    match BlockDev::from_path(path) {
        Ok(d) => Ok(d),
        Err(e @ BlockDevError::NotFound(_)) => Err(refuse(
            format!("target {e}"),
            Some("name the target disk or partition, e.g. /dev/sdb (see lsblk)"),
        )),
        Err(e @ BlockDevError::NotBlock(_)) => Err(refuse(
            format!("target {e}"),
            Some("the target must be a disk or partition, not a file"),
        )),
        Err(e) => Err(e.into()),
    }
}

/// An encrypted root is never copied as plaintext: refuse a source with dm-crypt in its stack
/// (the wrapper would sit above the `luks-*` mapping and mirror decrypted blocks onto the
/// target). `what`: how the caller names the device ("the root", "SOURCE").
pub fn check_not_encrypted(source: &BlockDev, what: &str) -> Result<()> {
    let Some(c) = crate::kernel::dm::crypt_in_stack(source) else {
        return Ok(());
    };
    Err(refuse(
        format!(
            "{what} {} is on the dm-crypt device {} ({}): moving it would write the decrypted data to \
             the target unencrypted",
            source.display(),
            c.display(),
            c.dm_uuid().unwrap_or_else(|| "a crypt table".into())
        ),
        Some(
            "rootshift moves an encrypted root as its LUKS container, with the wrapper below dm-crypt: \
             rebuild the initramfs with rootshift's hook and cryptsetup's (update-initramfs -u, or dracut -f), \
             reboot, and migrate again; or boot unwrapped (`rootshift boot disable`, or rd.rootshift=0 for \
             one boot)",
        ),
    ))
}

/// The install step of `migrate --install` and `finish` cannot make an overlayfs live root boot on
/// its own (its boot entry must bring up the distribution's live persistence from an image
/// partition and a persistence partition: `install --disk` lays those out and writes it): refuse
/// `what` on such a root before anything changes.
pub fn check_not_overlay_install(what: &str) -> Result<()> {
    if crate::live::overlay::OverlayRoot::of_root()?.is_none() {
        return Ok(());
    }
    Err(refuse(
        format!(
            "{what} cannot make an overlayfs live session boot from the disk: its boot entry needs an image \
             partition and a persistence partition, which `rootshift install --disk DISK` lays out"
        ),
        Some(
            "use `rootshift install --disk DISK`, or move the session without a boot entry with `rootshift \
             migrate TARGET --image-to PART --no-install`",
        ),
    ))
}

/// `--image-to PART`: `/` must be an overlayfs whose lower layers are read-only loop devices over
/// image files (see `live::overlay`), and PART a device of its own, unused and blank (unless
/// `force`), large enough for the files. PART mounted on the image directory already is the
/// partition of an interrupted run (`--resume`): it is taken as it is.
pub fn check_image_part(
    path: &Path,
    target: &BlockDev,
    clones: &[BlockDev],
    force: bool,
) -> Result<crate::live::overlay::ImagePlan> {
    use crate::live::overlay;
    let Some(root) = overlay::OverlayRoot::of_root()? else {
        return Err(refuse(
            "--image-to moves a live medium's image files, and / is not an overlayfs",
            Some("leave --image-to out"),
        ));
    };
    let part = resolve_target(path)?;
    let p = part.display();
    let same_disk = |a: &BlockDev, b: &BlockDev| {
        a.devnum == b.devnum
            || a.whole_disk().is_ok_and(|d| d.devnum == b.devnum)
            || b.whole_disk().is_ok_and(|d| d.devnum == a.devnum)
    };
    if std::iter::once(target)
        .chain(clones)
        .any(|t| same_disk(t, &part))
    {
        return Err(refuse(
            format!("--image-to {p} overlaps the target (or a clone) of the migration"),
            Some("give the image files a partition of their own, e.g. the target disk's partition 1 with the upper on partition 2"),
        ));
    }
    let ours = mounts::mounts_of(part.devnum)?
        .iter()
        .any(|m| m.mount_point == Path::new(overlay::IMAGE_DIR));
    if !ours {
        check_unused_except(&part, None)?;
        if !force {
            if let Some(what) = crate::disk::signatures::holds(&part)
                .with_context(|| format!("probing {p} for signatures"))?
            {
                return Err(refuse(
                    format!("--image-to {p} already holds {what}; a new filesystem would overwrite it"),
                    Some("check it is the right partition (wipefs -n shows what is there); pass --force to overwrite it"),
                ));
            }
        }
    }
    overlay::plan_images(&root, &part)
}

/// Every check against the target, in a fixed order (so the first problem found is reported).
pub fn check_target(
    wrapper: &Wrapper,
    source: &BlockDev,
    target: &BlockDev,
    force: bool,
) -> Result<Checked> {
    let t = target.display();
    if target.devnum == wrapper.devnum
        || target
            .dm_name()
            .is_some_and(|n| n.starts_with(wrapper::PREFIX))
    {
        return Err(refuse(
            format!("target {t} is a rootshift wrapper itself"),
            Some("name the new disk or partition to move the root to"),
        ));
    }
    if target.devnum == source.devnum {
        return Err(refuse(
            format!(
                "target {t} is the source device the root is on now ({})",
                source.devnum
            ),
            Some("name a different disk or partition"),
        ));
    }
    check_overlap(source, target)?;
    check_unused(target)?;

    let source_size = source
        .size()
        .with_context(|| format!("reading the size of {}", source.display()))?;
    let (target_size, target_lbs) = target
        .geometry()
        .with_context(|| format!("reading the size of {t}"))?;
    if target_size < source_size {
        return Err(refuse(
            format!(
                "target {t} is smaller than the source: {} bytes ({}) < {} bytes ({})",
                *target_size,
                human(target_size),
                *source_size,
                human(source_size)
            ),
            Some("the target must be at least as large as the source device"),
        ));
    }
    let (_, source_lbs) = source
        .geometry()
        .with_context(|| format!("reading the block size of {}", source.display()))?;
    if target_lbs > source_lbs {
        return Err(refuse(
            format!(
                "target {t} has a logical block size of {target_lbs} bytes, larger than the source's {source_lbs}: \
                 the filesystem's {source_lbs}-byte I/O could not be mirrored onto it"
            ),
            Some("use a target with the same or a smaller logical block size"),
        ));
    }
    if !force {
        // what blkid -p / wipefs -n find anywhere on it (md superblocks and ZFS labels sit at
        // the end); the built-in probe of the start where wipefs is missing
        let holds = crate::disk::signatures::holds(target)
            .with_context(|| format!("probing {t} for signatures"))?;
        if let Some(what) = holds {
            return Err(refuse(
                format!("target {t} already holds {what}; migrating would overwrite it"),
                Some("check it is the right disk (wipefs -n shows what is there); pass --force to overwrite it"),
            ));
        }
    }
    // The kernel's own answer last: O_EXCL fails if anything claims the device.
    target.open_exclusive().map_err(|e| {
        refuse(
            format!("target {t} is busy: another program or device has it open exclusively ({e})"),
            Some("stop whatever uses it (see lsblk, fuser -vm)"),
        )
    })?;
    Ok(Checked {
        target: target.clone(),
        target_size,
        source_size,
    })
}

/// The target must not overlap the source, nor sit on the medium a live source is a file of.
/// Both stacks are followed down to real devices (dm/md slaves, loop backing files), so a dm
/// device mapping part of the source disk is caught too. Two bases on one disk overlap unless
/// both are partitions with disjoint ranges.
pub fn check_overlap(source: &BlockDev, target: &BlockDev) -> Result<()> {
    let t = target.display();
    let (source_bases, through_loop) = source.base_devices();
    let (target_bases, _) = target.base_devices();
    for sb in &source_bases {
        let sdisk = sb.whole_disk()?;
        for tb in &target_bases {
            if tb.whole_disk()?.devnum != sdisk.devnum {
                continue;
            }
            if through_loop {
                return Err(refuse(
                    format!(
                        "target {t} is on {}, the live medium the running system is loaded from",
                        sdisk.display()
                    ),
                    Some("pick a disk other than the live medium"),
                ));
            }
            let disjoint = match (sb.partition_range(), tb.partition_range()) {
                (Some((ss, sl)), Some((ts, tl))) => ss + sl <= ts || ts + tl <= ss,
                _ => false,
            };
            if !disjoint {
                let via = if tb.devnum == target.devnum {
                    String::new()
                } else {
                    format!(" (it maps {})", tb.display())
                };
                return Err(refuse(
                    format!(
                        "target {t}{via} overlaps the source {} (both on {})",
                        sb.display(),
                        sdisk.display()
                    ),
                    Some("name a partition that does not contain the source, or another disk"),
                ));
            }
        }
    }
    Ok(())
}

/// Not mounted, not swap, not held — the target and, for a whole disk, its partitions.
fn check_unused(target: &BlockDev) -> Result<()> {
    check_unused_except(target, None)
}

/// Nothing uses `target` or any of its partitions, except the partition `keep` (the partition
/// `rootshift install --retain-last` leaves as it is, which may stay mounted).
pub fn check_unused_except(target: &BlockDev, keep: Option<DevNum>) -> Result<()> {
    let mut devs = vec![target.clone()];
    devs.extend(
        target
            .partitions()
            .into_iter()
            .filter(|p| Some(p.devnum) != keep),
    );
    let all_mounts = mounts::mounts()?;
    let swaps = Swaps::read().context("reading /proc/swaps")?;
    for d in &devs {
        let what = if d.devnum == target.devnum {
            format!("target {}", target.display())
        } else {
            format!(
                "{} (a partition of target {})",
                d.display(),
                target.display()
            )
        };
        if let Some(m) = all_mounts.iter().find(|m| m.devnum == d.devnum) {
            return Err(refuse(
                format!("{what} is mounted on {}", m.mount_point.display()),
                Some("unmount it first, or pick another target"),
            ));
        }
        if swaps.uses(d.devnum).is_some() {
            return Err(refuse(
                format!("{what} is in use as swap"),
                Some(&format!(
                    "run `swapoff {}` first, or pick another target",
                    d.display()
                )),
            ));
        }
        let holders = d.holders();
        if !holders.is_empty() {
            let names: Vec<String> = holders
                .iter()
                .map(|h| {
                    let dm = std::fs::read_to_string(format!("/sys/class/block/{h}/dm/name"))
                        .map(|n| format!(" ({})", n.trim()))
                        .unwrap_or_default();
                    format!("{h}{dm}")
                })
                .collect();
            return Err(refuse(
                format!("{what} is held by {}", names.join(", ")),
                Some("remove the device stacked on it first (dm, md, LVM), or pick another target"),
            ));
        }
    }
    Ok(())
}
