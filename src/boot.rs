//! The boot-time command `rootshift wrap`, run by the initrd hooks before the root is mounted:
//! choose which device to boot (after an interrupted migration two or more carry the root's
//! filesystem UUID: `migrate::recovery` reads their journals and `state::core` decides), then
//! put it under a rootshift wrapper of the asked backend.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::error::refuse;
use crate::kernel::blockdev::{BlockDev, BlockDevError};
use crate::kernel::dm::Dm;
use crate::kernel::mounts;
use crate::migrate::recovery;
use crate::wrapper::{full_name, list, Kind};

fn block_dev(source: &Path) -> Result<BlockDev> {
    match BlockDev::from_path(source) {
        Ok(d) => Ok(d),
        Err(e @ (BlockDevError::NotFound(_) | BlockDevError::NotBlock(_))) => Err(refuse(
            e.to_string(),
            Some("name the block device the root filesystem is on"),
        )),
        Err(e) => Err(e.into()),
    }
}

/// `rootshift choose SOURCE`: the device to boot (the hooks run it before `wrap`, and boot what
/// it printed unwrapped when wrapping fails). Exit 4 (`Ambiguous`): boot nothing.
pub fn choose(source: &Path, opts: &recovery::ChooseOpts) -> Result<PathBuf> {
    let src = block_dev(source)?;
    let (dev, why) = recovery::choose_root(&src, opts)?;
    if let Some(why) = why {
        eprintln!("rootshift: {why}");
    }
    Ok(dev.path)
}

/// `rootshift wrap [--backend dm|md] SOURCE`: create the wrapper over SOURCE, make its node.
/// `choice`: choose the device first (None: `--chosen`, `rootshift choose` did).
pub fn wrap(
    kind: Kind,
    source: &Path,
    name: &str,
    choice: Option<&recovery::ChooseOpts>,
) -> Result<PathBuf> {
    let full = full_name(name);
    let src = block_dev(source)?;
    let dm = Dm::open().ok();
    if list(dm.as_ref())?.iter().any(|w| w.name == full) {
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
            Some("wrap the device in the initrd, before the root is mounted (rd.rootshift=dm|md)"),
        ));
    }
    // Another device with the same filesystem UUID means a migration was interrupted (a crash,
    // a power cut): the journal inside the filesystems decides which one is complete.
    let src = match choice {
        Some(opts) => {
            let (src, why) = recovery::choose_root(&src, opts)?;
            if let Some(why) = why {
                eprintln!("rootshift: {why}");
            }
            src
        }
        None => src,
    };
    // a root on dm-crypt is not wrapped: a wrapper there would let a migration copy plaintext
    crate::migrate::preflight::check_not_encrypted(&src, "the root")?;
    match kind {
        Kind::Dm => crate::backend::dm_mirror::wrap(&Dm::open()?, &src, &full),
        Kind::Md => crate::backend::md_raid1::wrap(&src, &full),
    }
}
