//! What an existing EFI System Partition holds, before the boot loader step decides whether it
//! may format it.

use anyhow::Result;

use crate::kernel::blockdev::BlockDev;
use crate::kernel::fs::{probe, Content, PROBE_BYTES};

/// What an existing ESP holds, as far as formatting it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum EspContent {
    /// A FAT filesystem (and nothing else): used as it is.
    Fat,
    /// No signature and its first MiB all zeros: formatted.
    Blank,
    /// Anything else, in words: formatted only with --force.
    Other(String),
}

/// The full probe (wipefs, else the built-in one) and, when it finds nothing, the first MiB:
/// data no probe recognises is still data, and mkfs.vfat would destroy it.
pub(super) fn esp_content(dev: &BlockDev) -> Result<EspContent> {
    let sigs = crate::disk::signatures::probe(dev)?;
    match sigs {
        Some(s) if !s.is_empty() => {
            return Ok(if s.only(&["vfat"]) {
                EspContent::Fat
            } else {
                EspContent::Other(s.to_string())
            })
        }
        Some(_) => {}
        None => match probe(&dev.read_head(PROBE_BYTES)?) {
            Some(Content::Vfat) => return Ok(EspContent::Fat),
            Some(other) => return Ok(EspContent::Other(other.describe().into())),
            None => {}
        },
    }
    let head = dev.read_head(1 << 20)?;
    Ok(if head.iter().all(|&b| b == 0) {
        EspContent::Blank
    } else {
        EspContent::Other("data no probe recognises (its first MiB is not blank)".into())
    })
}
