//! rootshift: move a running root filesystem to another block device without rebooting.
//!
//! Layers, bottom up:
//! - [`kernel`]: dm, block devices, mounts, filesystems; all `unsafe` and ioctls in `kernel::ioctl`.
//! - [`backend`]: the mirroring mechanisms behind one trait (dm-mirror, md raid1).
//! - [`migrate`]: the migration state machine, its journal and preflight checks.
//! - [`finish`]: boot finalisation (ids, fstab, initramfs, boot loader); [`disk`]: partition tables.
//! - [`wrapper`], [`status`]: the rootshift-* devices and their reports; [`boot`]: wrapping at
//!   boot (`wrap`, `choose`); [`bootcmd`]: whether the initrd hook wraps (`boot enable|disable`).
//! - [`cli`]: the command line.

pub mod backend;
pub mod boot;
pub mod bootcmd;
pub mod cli;
pub mod disk;
pub mod docgen;
pub mod error;
pub mod failpoint;
pub mod finish;
pub mod guardian;
pub mod install;
pub mod kernel;
pub mod live;
pub mod lock;
pub mod migrate;
pub mod plain;
pub mod progress;
pub mod session;
pub mod state;
pub mod status;
pub mod targets;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tools;
pub mod treecopy;
pub mod units;
pub mod wrapper;
