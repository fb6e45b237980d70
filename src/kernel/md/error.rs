//! [`MdError`]: why an md operation failed, naming the file or node it was about.

use std::io;
use std::path::{Path, PathBuf};

use devicemapper::Sectors;
use nix::errno::Errno;

use super::attr::ParseError;
use crate::kernel::devnum::DevNum;

/// Why an md operation failed. Every variant names the file or node it was about; `errno()`
/// gives the kernel's answer where there was one.
#[derive(Debug, thiserror::Error)]
pub enum MdError {
    /// Reading or writing a sysfs attribute, or making/opening a node, failed.
    #[error("{action} {}: {}", path.display(), errno_text(source))]
    Io {
        action: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A sysfs attribute held text md does not print.
    #[error("{}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: ParseError,
    },
    /// An md ioctl failed (`member`: the device it was about, if any).
    #[error("{request}{} on {}: {}", member_text(member), node.display(), errno_text(source))]
    Ioctl {
        request: &'static str,
        node: PathBuf,
        member: Option<String>,
        #[source]
        source: io::Error,
    },
    /// The kernel has no md driver.
    #[error("the kernel has no md driver ({} is missing): it needs CONFIG_BLK_DEV_MD (module md_mod)", .0.display())]
    NoMd(PathBuf),
    /// The name is not one md accepts for a new array.
    #[error("invalid md array name {name:?}: {why}")]
    BadName { name: String, why: &'static str },
    /// A device number md cannot address (12-bit major, 20-bit minor).
    #[error("device number {0} is beyond md's range (12-bit major, 20-bit minor)")]
    DevOutOfRange(DevNum),
    /// Refused before asking the kernel, because the kernel's answer would do harm.
    #[error("{0}")]
    Refused(String),
    /// The array came up with another size than its source: stopped, nothing was written.
    #[error("md array {name} has {} sectors but its source {source_dev} has {}", **array, **source_size)]
    SizeMismatch {
        name: String,
        array: Sectors,
        source_dev: String,
        source_size: Sectors,
    },
    /// An operation failed and so did the cleanup after it; both are kept.
    #[error("{failed}; cleaning up also failed: {cleanup}")]
    CleanupFailed {
        failed: Box<MdError>,
        cleanup: Box<MdError>,
    },
}

impl MdError {
    /// The errno of the failed call (of the first failure for `CleanupFailed`).
    pub fn errno(&self) -> Option<Errno> {
        match self {
            MdError::Io { source, .. } | MdError::Ioctl { source, .. } => {
                source.raw_os_error().map(Errno::from_raw)
            }
            MdError::CleanupFailed { failed, .. } => failed.errno(),
            _ => None,
        }
    }
}

/// `ENOSPC: No space left on device` rather than the raw `(os error 28)`.
fn errno_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => Errno::from_raw(code).to_string(),
        None => e.to_string(),
    }
}

fn member_text(member: &Option<String>) -> String {
    member
        .as_ref()
        .map(|m| format!(" of {m}"))
        .unwrap_or_default()
}

pub(super) fn io_err(action: impl Into<String>, path: &Path, source: io::Error) -> MdError {
    MdError::Io {
        action: action.into(),
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn ioctl_err(request: &'static str, node: &Path, source: io::Error) -> MdError {
    MdError::Ioctl {
        request,
        node: node.to_path_buf(),
        member: None,
        source,
    }
}

/// `failed`, plus the cleanup's error if the cleanup failed too.
pub(super) fn with_cleanup(failed: MdError, cleanup: Result<(), MdError>) -> MdError {
    match cleanup {
        Ok(()) => failed,
        Err(c) => MdError::CleanupFailed {
            failed: Box::new(failed),
            cleanup: Box::new(c),
        },
    }
}
