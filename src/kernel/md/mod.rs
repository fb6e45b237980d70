//! md raid1 without a superblock ("build" arrays): typed md sysfs attributes, an array handle and
//! the build sequence, all by sysfs and the raw ioctls of [`super::ioctl`] (never mdadm).
//!
//! Formats are those of drivers/md/md.c (the `*_show` functions); each type parses the text as
//! the kernel prints it (trailing newline included) and prints it back the same way. The
//! non-obvious cases, as md.c has them:
//! - `sync_completed` reads `none` whenever no sync thread is running (so also right after a
//!   recovery ended, and before one started), `delayed` while it waits its turn, else
//!   `<done> / <total>` in 512-byte sectors. `total` is the component size for a recovery and
//!   `resync_max_sectors` for a resync/reshape; `done` advances in steps, not continuously.
//! - `sync_speed` reads `none` when no sync is active, else KiB/s averaged since the last mark.
//! - `sync_speed_min`/`_max` read `<KiB/s> (local)` or `<KiB/s> (system)`; writing `system` drops
//!   the array's own value. md's sync thread (`md_do_sync`) compares the copy's recent speed with
//!   both: above max it sleeps 500 ms; between min and max, while the members see I/O other than
//!   the sync's (`is_mddev_idle()` false), it lets the sync I/O in flight drain before issuing more;
//!   below min it ignores other I/O. A value is stored in an `int` though parsed as unsigned: above
//!   `i32::MAX` it reads back negative.
//! - `raid_disks` reads `N (old)` during a reshape and is *empty* while the array has no
//!   configuration.
//! - `dev-*/size` is in KiB; 0 means "not set": a member bound by ADD_NEW_DISK to a running
//!   non-persistent array gets no size (HOT_ADD_DISK sets the whole device). Writing 0 to it
//!   re-reads the device size (only for a member that holds a slot); a nonzero value is taken
//!   as is, unchecked against the device.
//! - `component_size` is in KiB. Writing 0 means "fit the smallest member"; a word (`max`) is
//!   EINVAL; ENOSPC when a member's `size` is smaller than asked (a member with size 0 makes
//!   every nonzero value fail); EBUSY while a sync runs; EROFS on a read-only array.
//! - `array_state` reads `broken` only when the array is failed *and* clean: a failed array with
//!   pending writes still reads `active`. Do not rely on it to detect a broken array.
//!
//! Split by what each part talks to:
//! - [`attr`]: the attributes' text as typed values (pure parsing and printing); [`speed`]: the
//!   sync speed limits' text, likewise;
//! - [`sysfs`]: `/sys/block/<name>/md` (attributes, members) and md's `new_array` parameter;
//! - [`node`]: `/dev/<name>` and the md ioctls on it;
//! - [`build`]: setting up a superblock-less raid1 (the ioctl arguments and the sequence).

pub mod attr;
pub mod build;
pub mod error;
pub mod node;
pub mod speed;
pub mod sysfs;

pub use attr::{
    ArrayState, ComponentSize, Degraded, DevSize, DevState, ParseError, RaidDisks, Slot,
    SyncAction, SyncCompleted, SyncSpeed,
};
pub use build::{build_array_info, build_disk_info, build_raid1};
pub use error::MdError;
pub use speed::{SpeedLimit, SpeedSetting};
pub use sysfs::{check_array_name, create_array_name, MdMember, NEW_ARRAY_PARAM};

use super::devnum::DevNum;

/// A running (or at least existing) md array.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MdArray {
    /// Kernel name: `md_rootshift-root`, `md127`.
    pub name: String,
    pub devnum: DevNum,
}
