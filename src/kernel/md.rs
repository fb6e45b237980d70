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

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use devicemapper::{Bytes, Sectors};
use nix::errno::Errno;
use nix::sys::stat::{mknod, Mode, SFlag};

use super::blockdev::BlockDev;
use super::devnum::DevNum;
use super::ioctl::{self, MduArrayInfo, MduDiskInfo};

/// Where md takes new array names (md.c `add_named_array`).
pub const NEW_ARRAY_PARAM: &str = "/sys/module/md_mod/parameters/new_array";

/// The kernel's DISK_NAME_LEN: array names must be shorter.
const DISK_NAME_LEN: usize = 32;

/// Text that is not what md prints for an attribute.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("cannot parse md {what} {text:?}")]
pub struct ParseError {
    pub what: &'static str,
    pub text: String,
}

fn perr(what: &'static str, text: &str) -> ParseError {
    ParseError {
        what,
        text: text.to_string(),
    }
}

fn parse_u64(what: &'static str, s: &str) -> Result<u64, ParseError> {
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(perr(what, s));
    }
    t.parse().map_err(|_| perr(what, s))
}

/// `md/sync_action`: what the sync thread is doing (md.c `action_name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum SyncAction {
    /// Making the members consistent (array not clean).
    Resync,
    /// Rebuilding a member that is not in sync (what adding a mirror leg starts).
    Recover,
    /// Read-only comparison of the members.
    Check,
    /// Comparison that rewrites mismatches.
    Repair,
    Reshape,
    /// No sync may start (written by userspace, or while stopping).
    Frozen,
    Idle,
}

impl SyncAction {
    pub const ALL: [SyncAction; 7] = [
        SyncAction::Resync,
        SyncAction::Recover,
        SyncAction::Check,
        SyncAction::Repair,
        SyncAction::Reshape,
        SyncAction::Frozen,
        SyncAction::Idle,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SyncAction::Resync => "resync",
            SyncAction::Recover => "recover",
            SyncAction::Check => "check",
            SyncAction::Repair => "repair",
            SyncAction::Reshape => "reshape",
            SyncAction::Frozen => "frozen",
            SyncAction::Idle => "idle",
        }
    }
}

impl fmt::Display for SyncAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SyncAction {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let t = s.trim();
        SyncAction::ALL
            .into_iter()
            .find(|a| a.as_str() == t)
            .ok_or_else(|| perr("sync_action", s))
    }
}

/// `md/sync_completed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum SyncCompleted {
    /// No sync thread is running.
    None,
    /// A sync is pending but waits (another array on the same disks, or it yielded).
    Delayed,
    /// `<done> / <total>` sectors.
    Progress { done: Sectors, total: Sectors },
}

impl SyncCompleted {
    /// Done as a fraction of total, when a sync is running.
    pub fn fraction(&self) -> Option<f64> {
        match self {
            SyncCompleted::Progress { done, total } if **total > 0 => {
                Some(**done as f64 / **total as f64)
            }
            _ => None,
        }
    }
}

impl fmt::Display for SyncCompleted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncCompleted::None => f.write_str("none"),
            SyncCompleted::Delayed => f.write_str("delayed"),
            SyncCompleted::Progress { done, total } => write!(f, "{} / {}", **done, **total),
        }
    }
}

impl FromStr for SyncCompleted {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.trim() {
            "none" => Ok(SyncCompleted::None),
            "delayed" => Ok(SyncCompleted::Delayed),
            t => {
                let (a, b) = t.split_once('/').ok_or_else(|| perr("sync_completed", s))?;
                Ok(SyncCompleted::Progress {
                    done: Sectors(
                        parse_u64("sync_completed", a).map_err(|_| perr("sync_completed", s))?,
                    ),
                    total: Sectors(
                        parse_u64("sync_completed", b).map_err(|_| perr("sync_completed", s))?,
                    ),
                })
            }
        }
    }
}

/// `md/sync_speed`: KiB/s of the running sync, or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum SyncSpeed {
    None,
    KibPerSec(u64),
}

impl SyncSpeed {
    pub fn bytes_per_sec(&self) -> Option<Bytes> {
        match self {
            SyncSpeed::None => None,
            SyncSpeed::KibPerSec(k) => Some(Bytes(u128::from(*k) * 1024)),
        }
    }
}

impl fmt::Display for SyncSpeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncSpeed::None => f.write_str("none"),
            SyncSpeed::KibPerSec(k) => write!(f, "{k}"),
        }
    }
}

impl FromStr for SyncSpeed {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.trim() {
            "none" => Ok(SyncSpeed::None),
            _ => Ok(SyncSpeed::KibPerSec(parse_u64("sync_speed", s)?)),
        }
    }
}

/// `md/degraded`: how many slots lack an in-sync member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Degraded(pub u32);

impl fmt::Display for Degraded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Degraded {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let v = parse_u64("degraded", s)?;
        u32::try_from(v)
            .map(Degraded)
            .map_err(|_| perr("degraded", s))
    }
}

macro_rules! kib_attr {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
        pub struct $name {
            pub kib: u64,
        }

        impl $name {
            pub fn from_sectors(s: Sectors) -> Self {
                $name { kib: *s / 2 }
            }
            pub fn sectors(&self) -> Sectors {
                Sectors(self.kib * 2)
            }
            pub fn bytes(&self) -> Bytes {
                Bytes(u128::from(self.kib) * 1024)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.kib)
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                Ok($name {
                    kib: parse_u64($what, s)?,
                })
            }
        }
    };
}

kib_attr!(
    /// `md/component_size`: the size used on every member, in KiB (`dev_sectors / 2`).
    ComponentSize,
    "component_size"
);

kib_attr!(
    /// `md/dev-*/size`: the usable size of one member, in KiB. 0 = not set (see module docs).
    DevSize,
    "dev-*/size"
);

impl DevSize {
    /// The kernel holds no size for this member: `component_size` cannot grow past 0 with it.
    pub fn is_unset(&self) -> bool {
        self.kib == 0
    }
}

/// `md/array_state` (md.c `array_states`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ArrayState {
    /// No devices, no size, no level.
    Clear,
    /// Configured (maybe with members) but not running: all I/O fails.
    Inactive,
    /// Never printed by current kernels (listed for completeness).
    Suspended,
    Readonly,
    /// Read-only until the first write.
    ReadAuto,
    /// Running, no writes pending.
    Clean,
    /// Running with writes in flight.
    Active,
    /// Writes blocked until userspace acknowledges (external metadata only).
    WritePending,
    /// Like active, no writes for the safe-mode delay.
    ActiveIdle,
    /// Failed and clean (see module docs: a failed *active* array reads `active`).
    Broken,
}

impl ArrayState {
    pub const ALL: [ArrayState; 10] = [
        ArrayState::Clear,
        ArrayState::Inactive,
        ArrayState::Suspended,
        ArrayState::Readonly,
        ArrayState::ReadAuto,
        ArrayState::Clean,
        ArrayState::Active,
        ArrayState::WritePending,
        ArrayState::ActiveIdle,
        ArrayState::Broken,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ArrayState::Clear => "clear",
            ArrayState::Inactive => "inactive",
            ArrayState::Suspended => "suspended",
            ArrayState::Readonly => "readonly",
            ArrayState::ReadAuto => "read-auto",
            ArrayState::Clean => "clean",
            ArrayState::Active => "active",
            ArrayState::WritePending => "write-pending",
            ArrayState::ActiveIdle => "active-idle",
            ArrayState::Broken => "broken",
        }
    }

    /// A personality is attached (the array serves I/O, perhaps read-only).
    pub fn is_running(self) -> bool {
        !matches!(
            self,
            ArrayState::Clear | ArrayState::Inactive | ArrayState::Suspended
        )
    }
}

impl fmt::Display for ArrayState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ArrayState {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let t = s.trim();
        ArrayState::ALL
            .into_iter()
            .find(|a| a.as_str() == t)
            .ok_or_else(|| perr("array_state", s))
    }
}

/// `md/raid_disks`: the number of slots, with the count before the change during a reshape
/// (`2 (1)` while growing from 1 to 2 by reshape; a raid1 changes it at once, no reshape).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RaidDisks {
    pub disks: u32,
    pub before_reshape: Option<u32>,
}

impl fmt::Display for RaidDisks {
    /// Prints `0` for an unconfigured array (the kernel prints nothing), which is also what
    /// writing it back means.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.disks)?;
        if let Some(old) = self.before_reshape {
            write!(f, " ({old})")?;
        }
        Ok(())
    }
}

impl FromStr for RaidDisks {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let t = s.trim();
        if t.is_empty() {
            return Ok(RaidDisks {
                disks: 0,
                before_reshape: None,
            });
        }
        let err = || perr("raid_disks", s);
        let num = |w: &str| -> Result<u32, ParseError> {
            u32::try_from(parse_u64("raid_disks", w).map_err(|_| err())?).map_err(|_| err())
        };
        match t.split_once(' ') {
            None => Ok(RaidDisks {
                disks: num(t)?,
                before_reshape: None,
            }),
            Some((a, rest)) => {
                let old = rest
                    .trim()
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(err)?;
                Ok(RaidDisks {
                    disks: num(a)?,
                    before_reshape: Some(num(old)?),
                })
            }
        }
    }
}

/// `md/dev-*/slot`: the member's slot, `none` for a spare or failed member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Slot {
    None,
    Journal,
    Index(u32),
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Slot::None => f.write_str("none"),
            Slot::Journal => f.write_str("journal"),
            Slot::Index(i) => write!(f, "{i}"),
        }
    }
}

impl FromStr for Slot {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.trim() {
            "none" => Ok(Slot::None),
            "journal" => Ok(Slot::Journal),
            _ => {
                let v = parse_u64("dev-*/slot", s)?;
                Ok(Slot::Index(
                    u32::try_from(v).map_err(|_| perr("dev-*/slot", s))?,
                ))
            }
        }
    }
}

/// `md/dev-*/state`: the comma-separated flags of one member (md.c `state_show`). The kernel
/// prints `write_mostly` (it accepts `writemostly` when written); both parse. Words this code
/// does not know are kept in `unknown`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DevState {
    /// Failed (or has unacknowledged bad blocks).
    pub faulty: bool,
    /// Holds a slot and its data is complete.
    pub in_sync: bool,
    pub journal: bool,
    pub write_mostly: bool,
    /// Writes to it wait for userspace (external metadata).
    pub blocked: bool,
    /// Not faulty, not in sync: a spare, or a member still being recovered.
    pub spare: bool,
    pub write_error: bool,
    pub want_replacement: bool,
    pub replacement: bool,
    pub external_bbl: bool,
    pub failfast: bool,
    pub unknown: Vec<String>,
}

impl DevState {
    /// Flags in the order md.c prints them.
    fn flags(&self) -> [(&'static str, bool); 11] {
        [
            ("faulty", self.faulty),
            ("in_sync", self.in_sync),
            ("journal", self.journal),
            ("write_mostly", self.write_mostly),
            ("blocked", self.blocked),
            ("spare", self.spare),
            ("write_error", self.write_error),
            ("want_replacement", self.want_replacement),
            ("replacement", self.replacement),
            ("external_bbl", self.external_bbl),
            ("failfast", self.failfast),
        ]
    }

    fn flag_mut(&mut self, word: &str) -> Option<&mut bool> {
        Some(match word {
            "faulty" => &mut self.faulty,
            "in_sync" => &mut self.in_sync,
            "journal" => &mut self.journal,
            "write_mostly" | "writemostly" => &mut self.write_mostly,
            "blocked" => &mut self.blocked,
            "spare" => &mut self.spare,
            "write_error" => &mut self.write_error,
            "want_replacement" => &mut self.want_replacement,
            "replacement" => &mut self.replacement,
            "external_bbl" => &mut self.external_bbl,
            "failfast" => &mut self.failfast,
            _ => return None,
        })
    }

    /// In sync and not failed: this member alone holds all the data.
    pub fn is_healthy_in_sync(&self) -> bool {
        self.in_sync && !self.faulty && !self.write_error
    }
}

impl fmt::Display for DevState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words = self
            .flags()
            .into_iter()
            .filter(|(_, on)| *on)
            .map(|(w, _)| w)
            .chain(self.unknown.iter().map(String::as_str));
        for (i, w) in words.enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(w)?;
        }
        Ok(())
    }
}

impl FromStr for DevState {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let mut st = DevState::default();
        for word in s.trim().split(',').map(str::trim).filter(|w| !w.is_empty()) {
            if word.contains(char::is_whitespace) {
                return Err(perr("dev-*/state", s));
            }
            match st.flag_mut(word) {
                Some(flag) => *flag = true,
                None => st.unknown.push(word.to_string()),
            }
        }
        Ok(st)
    }
}

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

fn io_err(action: impl Into<String>, path: &Path, source: io::Error) -> MdError {
    MdError::Io {
        action: action.into(),
        path: path.to_path_buf(),
        source,
    }
}

fn ioctl_err(request: &'static str, node: &Path, source: io::Error) -> MdError {
    MdError::Ioctl {
        request,
        node: node.to_path_buf(),
        member: None,
        source,
    }
}

/// `failed`, plus the cleanup's error if the cleanup failed too.
fn with_cleanup(failed: MdError, cleanup: Result<(), MdError>) -> MdError {
    match cleanup {
        Ok(()) => failed,
        Err(c) => MdError::CleanupFailed {
            failed: Box::new(failed),
            cleanup: Box::new(c),
        },
    }
}

/// The text of a sysfs attribute, as read.
fn read_text(path: &Path) -> Result<String, MdError> {
    fs::read_to_string(path).map_err(|e| io_err("reading", path, e))
}

fn read_typed<T: FromStr<Err = ParseError>>(path: &Path) -> Result<T, MdError> {
    read_text(path)?.parse().map_err(|source| MdError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Write `value` to a sysfs attribute in one write(2), which is where md returns its error.
fn write_text(path: &Path, value: &str) -> Result<(), MdError> {
    let action = || format!("writing {value:?} to");
    let mut f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io_err(action(), path, e))?;
    f.write_all(value.as_bytes())
        .map_err(|e| io_err(action(), path, e))
}

/// One member of an md array, from its `md/dev-*` directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MdMember {
    /// Directory name under `md/`: `dev-` + the kernel name with `/` written as `!`.
    pub dir: String,
    /// Kernel name of the member (`vdb`, `dm-3`).
    pub kname: String,
    /// From `dev-*/block/dev` (md does not insist on making that link).
    pub devnum: Option<DevNum>,
    pub state: DevState,
    pub size: DevSize,
    pub slot: Slot,
}

fn is_gone(e: &MdError) -> bool {
    // A member unbound while we read: its directory vanished (ENOENT) or its attributes answer
    // ENODEV (md.c rdev_attr_show once rdev->mddev is NULL).
    matches!(e.errno(), Some(Errno::ENOENT) | Some(Errno::ENODEV))
}

/// The members listed under an array's `md/` directory, sorted by directory name. Members that
/// disappear while being read are left out.
fn read_members(md_dir: &Path) -> Result<Vec<MdMember>, MdError> {
    let rd = fs::read_dir(md_dir).map_err(|e| io_err("listing", md_dir, e))?;
    let mut dirs: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("dev-"))
        .collect();
    dirs.sort();
    let mut out = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let base = md_dir.join(&dir);
        let member = (|| -> Result<MdMember, MdError> {
            Ok(MdMember {
                kname: dir["dev-".len()..].replace('!', "/"),
                devnum: fs::read_to_string(base.join("block/dev"))
                    .ok()
                    .and_then(|s| s.trim().parse().ok()),
                state: read_typed(&base.join("state"))?,
                size: read_typed(&base.join("size"))?,
                slot: read_typed(&base.join("slot"))?,
                dir: dir.clone(),
            })
        })();
        match member {
            Ok(m) => out.push(m),
            Err(e) if is_gone(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Check a name against what md.c `add_named_array` accepts: `mdNNN` (NNN the minor, at most
/// 2^20-1) or `md_<anything>` (a free minor from 512 up is chosen), shorter than DISK_NAME_LEN.
/// Names with `/` or whitespace are refused here though md would take them: they make bad
/// node and sysfs names.
pub fn check_array_name(name: &str) -> Result<(), MdError> {
    let bad = |why| {
        Err(MdError::BadName {
            name: name.to_string(),
            why,
        })
    };
    if name.len() >= DISK_NAME_LEN {
        return bad("md names are at most 31 bytes");
    }
    if name.contains(|c: char| c == '/' || c == '\0' || c.is_whitespace()) {
        return bad("it contains '/', NUL or whitespace");
    }
    if let Some(rest) = name.strip_prefix("md_") {
        if rest.is_empty() {
            return bad("nothing follows md_");
        }
        return Ok(());
    }
    if let Some(num) = name.strip_prefix("md") {
        if !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) {
            return match num.parse::<u32>() {
                Ok(n) if n <= 0xf_ffff => Ok(()),
                _ => bad("the minor number is above 1048575"),
            };
        }
    }
    bad("md takes only mdNNN or md_<name>")
}

/// Create an empty md array named `name` by writing it to
/// `/sys/module/md_mod/parameters/new_array`. The kernel accepts `mdNNN` (minor NNN) or
/// `md_<name>` (any free minor; such an array lives until STOP_ARRAY). Errors: EEXIST when the
/// name or minor is taken, EINVAL for any other form, E2BIG for names of 32 bytes or more.
/// `/dev/<name>` and `/sys/block/<name>` exist when this returns (devtmpfs permitting).
pub fn create_array_name(name: &str) -> Result<(), MdError> {
    check_array_name(name)?;
    let param = Path::new(NEW_ARRAY_PARAM);
    if !param.exists() {
        let _ = crate::tools::modprobe("md_mod");
        if !param.exists() {
            return Err(MdError::NoMd(param.to_path_buf()));
        }
    }
    write_text(param, name)
}

/// A running (or at least existing) md array.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MdArray {
    /// Kernel name: `md_rootshift-root`, `md127`.
    pub name: String,
    pub devnum: DevNum,
}

impl MdArray {
    /// The existing array called `name`.
    pub fn open(name: &str) -> Result<MdArray, MdError> {
        let path = PathBuf::from("/sys/block").join(name).join("dev");
        let devnum: DevNum =
            read_text(&path)?
                .trim()
                .parse()
                .map_err(|e: super::devnum::ParseDevNumError| MdError::Parse {
                    path: path.clone(),
                    source: perr("dev", &e.0),
                })?;
        Ok(MdArray {
            name: name.to_string(),
            devnum,
        })
    }

    /// `/dev/<name>`.
    pub fn node(&self) -> PathBuf {
        PathBuf::from("/dev").join(&self.name)
    }

    /// `/sys/block/<name>/md`.
    pub fn md_dir(&self) -> PathBuf {
        PathBuf::from("/sys/block").join(&self.name).join("md")
    }

    /// `/sys/block/<name>/md/<attr>`; `attr` may name a member's file (`dev-vdb/size`).
    pub fn attr_path(&self, attr: &str) -> PathBuf {
        self.md_dir().join(attr)
    }

    /// An attribute's text as read (with the kernel's newline).
    pub fn read_raw(&self, attr: &str) -> Result<String, MdError> {
        read_text(&self.attr_path(attr))
    }

    /// An attribute parsed as one of the types of this module.
    pub fn read<T: FromStr<Err = ParseError>>(&self, attr: &str) -> Result<T, MdError> {
        read_typed(&self.attr_path(attr))
    }

    /// Write an attribute; the error names the path, the value and the errno md returned.
    pub fn write(&self, attr: &str, value: &str) -> Result<(), MdError> {
        write_text(&self.attr_path(attr), value)
    }

    pub fn sync_action(&self) -> Result<SyncAction, MdError> {
        self.read("sync_action")
    }

    pub fn sync_completed(&self) -> Result<SyncCompleted, MdError> {
        self.read("sync_completed")
    }

    pub fn sync_speed(&self) -> Result<SyncSpeed, MdError> {
        self.read("sync_speed")
    }

    pub fn degraded(&self) -> Result<Degraded, MdError> {
        self.read("degraded")
    }

    pub fn component_size(&self) -> Result<ComponentSize, MdError> {
        self.read("component_size")
    }

    pub fn array_state(&self) -> Result<ArrayState, MdError> {
        self.read("array_state")
    }

    pub fn raid_disks(&self) -> Result<RaidDisks, MdError> {
        self.read("raid_disks")
    }

    /// The array's size (`/sys/block/<name>/size`, always in 512-byte sectors).
    pub fn size(&self) -> Result<Sectors, MdError> {
        let path = PathBuf::from("/sys/block").join(&self.name).join("size");
        let text = read_text(&path)?;
        parse_u64("size", &text)
            .map(Sectors)
            .map_err(|source| MdError::Parse { path, source })
    }

    /// The members (`md/dev-*`): state, size and slot of each.
    pub fn dev_dirs(&self) -> Result<Vec<MdMember>, MdError> {
        read_members(&self.md_dir())
    }

    /// Open `/dev/<name>` for the md ioctls, making the node first if it is missing.
    pub fn open_node(&self) -> Result<File, MdError> {
        let node = ensure_md_node(&self.name, self.devnum)?;
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&node)
            .map_err(|e| io_err("opening", &node, e))
    }

    /// STOP_ARRAY: stop and dismantle the array; its members are released. EBUSY while anything
    /// else has the array open (a mount, another fd).
    pub fn stop(&self) -> Result<(), MdError> {
        let f = self.open_node()?;
        ioctl::md_stop_array(f.as_fd()).map_err(|e| ioctl_err("STOP_ARRAY", &self.node(), e))
    }

    /// HOT_ADD_DISK: bind `dev` as a spare, its size the whole device (ENOSPC if smaller than
    /// `component_size`). Recovery onto it starts once a slot is free (raise `raid_disks`).
    pub fn hot_add(&self, dev: DevNum) -> Result<(), MdError> {
        let f = self.open_node()?;
        ioctl::md_hot_add_disk(f.as_fd(), dev).map_err(|e| self.member_err("HOT_ADD_DISK", dev, e))
    }

    /// HOT_REMOVE_DISK: unbind a faulty or spare member. EBUSY while it holds a slot or still
    /// has I/O in flight (retry after a moment); ENXIO if it is not a member.
    pub fn hot_remove(&self, dev: DevNum) -> Result<(), MdError> {
        let f = self.open_node()?;
        ioctl::md_hot_remove_disk(f.as_fd(), dev)
            .map_err(|e| self.member_err("HOT_REMOVE_DISK", dev, e))
    }

    /// SET_DISK_FAULTY, refused unless another member is in sync, healthy and in a slot: on the
    /// last in-sync raid1 member md answers EBUSY *and* marks the array broken, after which
    /// every write fails. (A check then an ioctl: the caller must keep members from changing.)
    pub fn set_faulty(&self, dev: DevNum) -> Result<(), MdError> {
        let members = self.dev_dirs()?;
        let kname = fs::canonicalize(format!("/sys/dev/block/{dev}"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        if !has_other_in_sync(&members, dev, kname.as_deref()) {
            return Err(MdError::Refused(format!(
                "not failing {dev} in {}: no other member is in sync (md would mark the array \
                 broken and fail every write)",
                self.name
            )));
        }
        let f = self.open_node()?;
        ioctl::md_set_disk_faulty(f.as_fd(), dev)
            .map_err(|e| self.member_err("SET_DISK_FAULTY", dev, e))
    }

    fn member_err(&self, request: &'static str, dev: DevNum, source: io::Error) -> MdError {
        MdError::Ioctl {
            request,
            node: self.node(),
            member: Some(dev.to_string()),
            source,
        }
    }

    /// Stop without a node: `clear` to `md/array_state` (md.c: the same do_md_stop()).
    fn clear_by_sysfs(&self) -> Result<(), MdError> {
        self.write("array_state", "clear")
    }
}

/// Whether a member other than `dev` (known by number or kernel name) is in sync, healthy and
/// in a slot.
fn has_other_in_sync(members: &[MdMember], dev: DevNum, kname: Option<&str>) -> bool {
    members
        .iter()
        .filter(|m| m.devnum != Some(dev) && Some(m.kname.as_str()) != kname)
        .any(|m| m.state.is_healthy_in_sync() && matches!(m.slot, Slot::Index(_)))
}

/// Make sure `/dev/<name>` is the block device `devnum`: devtmpfs makes it when the array is
/// created; give it a moment, and without devtmpfs make it ourselves.
fn ensure_md_node(name: &str, devnum: DevNum) -> Result<PathBuf, MdError> {
    let node = PathBuf::from("/dev").join(name);
    let right = |p: &Path| -> bool {
        fs::metadata(p)
            .map(|m| m.file_type().is_block_device() && DevNum::from_dev_t(m.rdev()) == devnum)
            .unwrap_or(false)
    };
    let t0 = Instant::now();
    while !right(&node) && t0.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(20));
    }
    if right(&node) {
        return Ok(node);
    }
    match fs::remove_file(&node) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("removing stale", &node, e)),
    }
    mknod(
        &node,
        SFlag::S_IFBLK,
        Mode::from_bits_truncate(0o600),
        devnum.to_dev_t() as libc::dev_t,
    )
    .map_err(|e| io_err(format!("creating node for {devnum} at"), &node, e.into()))?;
    Ok(node)
}

/// SET_ARRAY_INFO for a one-leg raid1 without superblock, no resync pending, component size
/// taken from the member.
pub fn build_array_info() -> MduArrayInfo {
    MduArrayInfo {
        level: 1,
        size: 0,
        raid_disks: 1,
        not_persistent: 1,
        state: 1 << ioctl::MD_SB_CLEAN,
        ..Default::default()
    }
}

/// ADD_NEW_DISK for the source: descriptor 0, slot 0, in sync and active.
pub fn build_disk_info(dev: DevNum) -> Result<MduDiskInfo, MdError> {
    if ioctl::md_dev_arg(dev).is_none() {
        return Err(MdError::DevOutOfRange(dev));
    }
    // In range: a 12-bit major and a 20-bit minor fit an i32.
    Ok(MduDiskInfo {
        number: 0,
        major: dev.major as i32,
        minor: dev.minor as i32,
        raid_disk: 0,
        state: (1 << ioctl::MD_DISK_SYNC) | (1 << ioctl::MD_DISK_ACTIVE),
    })
}

/// Build (mdadm's word: no superblock is written, array bytes = member bytes) a one-leg raid1
/// named `name` over `source`, and start it:
/// new_array ← name, then on `/dev/<name>` SET_ARRAY_INFO (level 1, 1 disk, not persistent,
/// size 0, clean), ADD_NEW_DISK (source in slot 0, SYNC|ACTIVE), RUN_ARRAY; then check that
/// the array has exactly the source's size. On any failure after the name was created the array
/// is stopped again (STOP_ARRAY, or `clear` by sysfs without a node); if that fails too both
/// errors are returned.
///
/// The source must not be open exclusively by anyone (mounted, held by dm/md): md claims it,
/// ADD_NEW_DISK then fails with EBUSY.
pub fn build_raid1(name: &str, source: &BlockDev) -> Result<MdArray, MdError> {
    let source_size = source
        .size()
        .map_err(|e| io_err("reading the size of", &source.path, e))?;
    let source_size = Sectors((*source_size / 512) as u64);
    create_array_name(name)?;
    let array = match MdArray::open(name) {
        Ok(a) => a,
        Err(e) => {
            let clear = write_text(
                &PathBuf::from("/sys/block")
                    .join(name)
                    .join("md/array_state"),
                "clear",
            );
            return Err(with_cleanup(e, clear));
        }
    };
    let file = match array.open_node() {
        Ok(f) => f,
        Err(e) => return Err(with_cleanup(e, array.clear_by_sysfs())),
    };
    if let Err(e) = build_on(&array, &file, source, source_size) {
        let stop = ioctl::md_stop_array(file.as_fd())
            .map_err(|s| ioctl_err("STOP_ARRAY", &array.node(), s));
        return Err(with_cleanup(e, stop));
    }
    Ok(array)
}

fn build_on(
    array: &MdArray,
    file: &File,
    source: &BlockDev,
    source_size: Sectors,
) -> Result<(), MdError> {
    let node = array.node();
    let fd = file.as_fd();
    ioctl::md_set_array_info(fd, &build_array_info())
        .map_err(|e| ioctl_err("SET_ARRAY_INFO", &node, e))?;
    ioctl::md_add_new_disk(fd, &build_disk_info(source.devnum)?).map_err(|e| MdError::Ioctl {
        request: "ADD_NEW_DISK",
        node: node.clone(),
        member: Some(format!("{} ({})", source.display(), source.devnum)),
        source: e,
    })?;
    if !Path::new("/sys/module/raid1").exists() {
        // md asks for md-level-1 itself; this helps where the kernel cannot call modprobe.
        let _ = crate::tools::modprobe("raid1");
    }
    ioctl::md_run_array(fd).map_err(|e| ioctl_err("RUN_ARRAY", &node, e))?;
    let got = array.size()?;
    if got != source_size {
        return Err(MdError::SizeMismatch {
            name: array.name.clone(),
            array: got,
            source_dev: source.display(),
            source_size,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_action_words() {
        for (text, a) in [
            ("resync\n", SyncAction::Resync),
            ("recover\n", SyncAction::Recover),
            ("idle\n", SyncAction::Idle),
            ("check\n", SyncAction::Check),
            ("repair\n", SyncAction::Repair),
            ("frozen\n", SyncAction::Frozen),
            ("reshape\n", SyncAction::Reshape),
        ] {
            assert_eq!(text.parse::<SyncAction>(), Ok(a));
            assert_eq!(format!("{a}\n"), text);
        }
        assert!("recovery\n".parse::<SyncAction>().is_err());
        assert!("".parse::<SyncAction>().is_err());
        assert!("Idle".parse::<SyncAction>().is_err());
    }

    #[test]
    fn sync_completed_forms() {
        // md.c sync_completed_show: "none\n", "delayed\n", "%llu / %llu\n".
        assert_eq!("none\n".parse(), Ok(SyncCompleted::None));
        assert_eq!("delayed\n".parse(), Ok(SyncCompleted::Delayed));
        let p: SyncCompleted = "131072 / 524288\n".parse().unwrap();
        assert_eq!(
            p,
            SyncCompleted::Progress {
                done: Sectors(131072),
                total: Sectors(524288)
            }
        );
        assert_eq!(p.to_string(), "131072 / 524288");
        assert_eq!(p.fraction(), Some(0.25));
        assert_eq!(SyncCompleted::None.fraction(), None);
        assert_eq!("0 / 0".parse::<SyncCompleted>().unwrap().fraction(), None);
        for bad in [
            "",
            "12",
            "12 /",
            "/ 12",
            "a / 2",
            "1 / -2",
            "1 / 2 / 3",
            "None",
        ] {
            assert!(bad.parse::<SyncCompleted>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sync_speed_forms() {
        assert_eq!("none\n".parse(), Ok(SyncSpeed::None));
        let s: SyncSpeed = "204800\n".parse().unwrap();
        assert_eq!(s, SyncSpeed::KibPerSec(204800));
        assert_eq!(s.to_string(), "204800");
        assert_eq!(s.bytes_per_sec(), Some(Bytes(200 * 1024 * 1024)));
        assert_eq!(SyncSpeed::None.bytes_per_sec(), None);
        assert!("12 K/sec".parse::<SyncSpeed>().is_err());
        assert!("-1".parse::<SyncSpeed>().is_err());
        assert!("".parse::<SyncSpeed>().is_err());
    }

    #[test]
    fn degraded_numbers() {
        assert_eq!("0\n".parse(), Ok(Degraded(0)));
        assert_eq!("1\n".parse(), Ok(Degraded(1)));
        assert_eq!(Degraded(1).to_string(), "1");
        assert!("-1\n".parse::<Degraded>().is_err());
        assert!("one".parse::<Degraded>().is_err());
        assert!("4294967296".parse::<Degraded>().is_err());
    }

    #[test]
    fn kib_sizes() {
        let c: ComponentSize = "1048576\n".parse().unwrap();
        assert_eq!(c.kib, 1048576);
        assert_eq!(c.sectors(), Sectors(2097152));
        assert_eq!(c.bytes(), Bytes(1 << 30));
        assert_eq!(c.to_string(), "1048576");
        assert_eq!(ComponentSize::from_sectors(Sectors(2097153)).kib, 1048576);
        assert!("max".parse::<ComponentSize>().is_err());
        let d: DevSize = "0\n".parse().unwrap();
        assert!(d.is_unset());
        let d: DevSize = "262144\n".parse().unwrap();
        assert!(!d.is_unset());
        assert_eq!(d.sectors(), Sectors(524288));
        assert!("".parse::<DevSize>().is_err());
    }

    #[test]
    fn array_state_words() {
        for (text, st, running) in [
            ("clear\n", ArrayState::Clear, false),
            ("inactive\n", ArrayState::Inactive, false),
            ("suspended\n", ArrayState::Suspended, false),
            ("readonly\n", ArrayState::Readonly, true),
            ("read-auto\n", ArrayState::ReadAuto, true),
            ("clean\n", ArrayState::Clean, true),
            ("active\n", ArrayState::Active, true),
            ("write-pending\n", ArrayState::WritePending, true),
            ("active-idle\n", ArrayState::ActiveIdle, true),
            ("broken\n", ArrayState::Broken, true),
        ] {
            assert_eq!(text.parse::<ArrayState>(), Ok(st));
            assert_eq!(format!("{st}\n"), text);
            assert_eq!(st.is_running(), running, "{st}");
        }
        assert!("read_auto".parse::<ArrayState>().is_err());
        assert!("".parse::<ArrayState>().is_err());
    }

    #[test]
    fn raid_disks_forms() {
        // md.c raid_disks_show: "%d\n", "%d (%d)\n" during a reshape, nothing when 0.
        let r: RaidDisks = "2\n".parse().unwrap();
        assert_eq!(
            r,
            RaidDisks {
                disks: 2,
                before_reshape: None
            }
        );
        assert_eq!(r.to_string(), "2");
        let r: RaidDisks = "3 (2)\n".parse().unwrap();
        assert_eq!(r.before_reshape, Some(2));
        assert_eq!(r.to_string(), "3 (2)");
        let r: RaidDisks = "".parse().unwrap();
        assert_eq!(r.disks, 0);
        assert_eq!(r.to_string(), "0");
        for bad in ["2 (1", "2 1", "(1)", "2 ()", "-1", "two"] {
            assert!(bad.parse::<RaidDisks>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn slot_forms() {
        assert_eq!("0\n".parse(), Ok(Slot::Index(0)));
        assert_eq!("1\n".parse(), Ok(Slot::Index(1)));
        assert_eq!("none\n".parse(), Ok(Slot::None));
        assert_eq!("journal\n".parse(), Ok(Slot::Journal));
        assert_eq!(Slot::Index(1).to_string(), "1");
        assert_eq!(Slot::None.to_string(), "none");
        assert!("-1".parse::<Slot>().is_err());
    }

    #[test]
    fn dev_state_as_md_prints_it() {
        let s: DevState = "in_sync\n".parse().unwrap();
        assert!(s.in_sync && s.is_healthy_in_sync());
        assert_eq!(s.to_string(), "in_sync");

        let s: DevState = "spare\n".parse().unwrap();
        assert!(s.spare && !s.in_sync && !s.is_healthy_in_sync());

        let s: DevState = "faulty,write_error\n".parse().unwrap();
        assert!(s.faulty && s.write_error && !s.in_sync);
        assert_eq!(s.to_string(), "faulty,write_error");

        // md prints write_mostly; writemostly is what it accepts as input.
        let s: DevState = "in_sync,write_mostly\n".parse().unwrap();
        assert!(s.write_mostly);
        assert_eq!(s.to_string(), "in_sync,write_mostly");
        assert!("writemostly".parse::<DevState>().unwrap().write_mostly);

        let all = "faulty,in_sync,journal,write_mostly,blocked,spare,write_error,\
                   want_replacement,replacement,external_bbl,failfast";
        let s: DevState = all.parse().unwrap();
        assert!(s.unknown.is_empty());
        assert_eq!(s.to_string(), all);
        assert!(s.blocked && s.want_replacement && s.replacement && s.external_bbl);
        assert!(s.failfast && s.journal && s.spare);

        let s: DevState = "in_sync,some_future_flag\n".parse().unwrap();
        assert!(s.in_sync);
        assert_eq!(s.unknown, vec!["some_future_flag"]);
        assert_eq!(s.to_string(), "in_sync,some_future_flag");

        let s: DevState = "\n".parse().unwrap();
        assert_eq!(s, DevState::default());
        assert_eq!(s.to_string(), "");
        assert!("in sync".parse::<DevState>().is_err());
    }

    #[test]
    fn array_names() {
        for ok in ["md0", "md127", "md1048575", "md_rootshift-root", "md_x"] {
            assert!(check_array_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "md",
            "md_",
            "md1048576",
            "md12a",
            "mdx",
            "dm-0",
            "rootshift",
            "md_a/b",
            "md_a b",
            "md_abcdefghijklmnopqrstuvwxyz012", // 32 bytes: E2BIG in md
        ] {
            assert!(check_array_name(bad).is_err(), "{bad}");
        }
        assert!(check_array_name("md_abcdefghijklmnopqrstuvwxyz01").is_ok()); // 31 bytes
    }

    #[test]
    fn build_structs() {
        let a = build_array_info();
        assert_eq!(
            (a.level, a.size, a.raid_disks, a.not_persistent, a.state),
            (1, 0, 1, 1, 1)
        );
        assert_eq!(
            MduArrayInfo {
                level: 0,
                raid_disks: 0,
                not_persistent: 0,
                state: 0,
                ..a
            },
            MduArrayInfo::default()
        );
        let d = build_disk_info(DevNum::new(254, 3)).unwrap();
        assert_eq!(
            d,
            MduDiskInfo {
                number: 0,
                major: 254,
                minor: 3,
                raid_disk: 0,
                state: 6
            }
        );
        assert!(matches!(
            build_disk_info(DevNum::new(4096, 0)),
            Err(MdError::DevOutOfRange(_))
        ));
    }

    /// A scratch directory under the system temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let p = std::env::temp_dir()
                .join(format!("rootshift-md-test-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn put(dir: &Path, name: &str, text: &str) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn members_from_an_md_directory() {
        let t = Scratch::new("members");
        let md = t.0.join("md");
        // As md lays it out: attributes, rdN links, one dev-* directory per member.
        put(&md, "sync_action", "recover\n");
        put(&md, "rd0", "");
        let vda = md.join("dev-vda");
        put(&vda, "state", "in_sync\n");
        put(&vda, "size", "524288\n");
        put(&vda, "slot", "0\n");
        put(&vda.join("block"), "dev", "253:0\n");
        let vdb = md.join("dev-vdb");
        put(&vdb, "state", "spare\n");
        put(&vdb, "size", "1048576\n");
        put(&vdb, "slot", "1\n");
        put(&vdb.join("block"), "dev", "253:16\n");
        let cc = md.join("dev-cciss!c0d0");
        put(&cc, "state", "faulty\n");
        put(&cc, "size", "0\n");
        put(&cc, "slot", "none\n");
        // A member whose directory is half gone (unbound while listing): skipped.
        fs::create_dir_all(md.join("dev-vdc")).unwrap();

        let m = read_members(&md).unwrap();
        assert_eq!(
            m.iter().map(|m| m.dir.as_str()).collect::<Vec<_>>(),
            ["dev-cciss!c0d0", "dev-vda", "dev-vdb"]
        );
        assert_eq!(m[0].kname, "cciss/c0d0");
        assert_eq!(m[0].devnum, None);
        assert!(m[0].state.faulty && m[0].size.is_unset() && m[0].slot == Slot::None);
        assert_eq!(m[1].devnum, Some(DevNum::new(253, 0)));
        assert!(m[1].state.is_healthy_in_sync());
        assert_eq!(m[1].slot, Slot::Index(0));
        assert_eq!(m[2].size.kib, 1048576);
        assert!(m[2].state.spare);

        // Failing a member needs another healthy in-sync member in a slot.
        let vda_dev = DevNum::new(253, 0);
        let vdb_dev = DevNum::new(253, 16);
        assert!(!has_other_in_sync(&m, vda_dev, Some("vda")));
        assert!(!has_other_in_sync(&m, vda_dev, None));
        assert!(has_other_in_sync(&m, vdb_dev, Some("vdb")));
        let mut two = m.clone();
        two[2].state = "in_sync".parse().unwrap();
        assert!(has_other_in_sync(&two, vda_dev, Some("vda")));
        // Known by kernel name only (no block/dev link): still recognised as itself.
        two[1].devnum = None;
        two[2].state = "spare".parse().unwrap();
        assert!(!has_other_in_sync(&two, vda_dev, Some("vda")));

        // A member attribute md would never print: an error naming the file.
        put(&vdb, "slot", "two\n");
        let e = read_members(&md).unwrap_err();
        assert!(matches!(e, MdError::Parse { .. }));
        assert!(e.to_string().contains("dev-vdb/slot"), "{e}");
    }

    #[test]
    fn errors_name_the_path_and_errno() {
        let t = Scratch::new("errors");
        let missing = t.0.join("md/component_size");
        let e = write_text(&missing, "0").unwrap_err();
        assert_eq!(e.errno(), Some(Errno::ENOENT));
        let msg = e.to_string();
        assert!(msg.contains("\"0\""), "{msg}");
        assert!(msg.contains(&missing.display().to_string()), "{msg}");
        assert!(msg.contains("ENOENT"), "{msg}");

        put(&t.0, "sync_action", "recovery\n");
        let e = read_typed::<SyncAction>(&t.0.join("sync_action")).unwrap_err();
        assert_eq!(e.errno(), None);
        assert!(e.to_string().contains("sync_action"), "{e}");

        let f = t.0.join("array_state");
        put(&t.0, "array_state", "");
        write_text(&f, "clear").unwrap();
        assert_eq!(fs::read_to_string(&f).unwrap(), "clear");

        let both = with_cleanup(
            ioctl_err(
                "RUN_ARRAY",
                Path::new("/dev/md_x"),
                io::Error::from_raw_os_error(libc::EINVAL),
            ),
            Err(ioctl_err(
                "STOP_ARRAY",
                Path::new("/dev/md_x"),
                io::Error::from_raw_os_error(libc::EBUSY),
            )),
        );
        assert_eq!(both.errno(), Some(Errno::EINVAL));
        let msg = both.to_string();
        assert!(msg.contains("RUN_ARRAY on /dev/md_x: EINVAL"), "{msg}");
        assert!(msg.contains("STOP_ARRAY on /dev/md_x: EBUSY"), "{msg}");
        let alone = with_cleanup(
            ioctl_err(
                "RUN_ARRAY",
                Path::new("/dev/md_x"),
                io::Error::from_raw_os_error(libc::EINVAL),
            ),
            Ok(()),
        );
        assert!(matches!(alone, MdError::Ioctl { .. }));
    }
}
