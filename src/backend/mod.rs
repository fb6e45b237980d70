//! Backends: the kernel mechanism that mirrors the source onto the target under a live device.
//!
//! The migration state machine (`crate::migrate`) drives any backend through this one trait; it
//! never knows whether it talks to dm-mirror or (later) md raid1 or dm-clone.

pub mod dm_mirror;
pub mod md_raid1;
pub mod switch;
pub mod usedmap;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use devicemapper::Bytes;

use crate::kernel::blockdev::BlockDev;
use crate::kernel::devnum::DevNum;
use crate::kernel::dm::Dm;
use crate::kernel::dmtable::Health;
use crate::wrapper::{Kind, Wrapper};

/// The backend that drives this wrapper (detected from what the wrapper is).
pub fn open(w: &Wrapper) -> Result<Box<dyn Backend>> {
    Ok(match w.kind {
        Kind::Dm => Box::new(dm_mirror::DmMirror::new(Dm::open()?, w.clone())),
        Kind::Md => Box::new(md_raid1::MdRaid1::open(w)?),
    })
}

/// Copy progress and leg health, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncState {
    pub done: Bytes,
    pub total: Bytes,
    /// Legs in table order (source first) with their health.
    pub legs: Vec<(DevNum, Health)>,
    /// Kernel units behind `done`/`total` (dm: regions), for status.
    pub units_done: u64,
    pub units_total: u64,
}

impl SyncState {
    pub fn complete(&self) -> bool {
        self.units_done == self.units_total && self.legs.iter().all(|(_, h)| h.is_alive())
    }
    pub fn health_of(&self, dev: DevNum) -> Option<Health> {
        self.legs.iter().find(|(d, _)| *d == dev).map(|(_, h)| *h)
    }
}

/// What to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyMode {
    /// Used blocks only when the backend and the mounted filesystem allow it, else everything.
    Auto,
    /// Only regions the filesystem uses (dm backend, mounted ext4/xfs).
    Used,
    /// Every region of the source.
    Full,
}

/// How the copy should run.
#[derive(Debug, Clone)]
pub struct CopyPlan {
    pub mode: CopyMode,
    /// Region size override (dm).
    pub region: Option<devicemapper::Sectors>,
    /// Where the wrapper's filesystem is mounted and its type, if it is: the filesystem on the
    /// wrapper itself, or the one in an encrypted container opened over it.
    pub mount: Option<(PathBuf, String)>,
    /// Where that filesystem lies on the wrapper: all of it, or an encrypted root's payload
    /// behind its LUKS header. A used-only copy shifts the free-space map by it.
    pub fs_span: usedmap::FsSpan,
    /// Extra legs filled in the same pass as the target (root clones, `rootshift install`),
    /// detached at the switch together with the source.
    pub clones: Vec<BlockDev>,
}

/// What `attach` set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyInfo {
    /// "used" or "full".
    pub mode: &'static str,
    pub region: Bytes,
    /// What the kernel has to copy (used-only: the dirty regions).
    pub to_copy: Bytes,
}

/// A copy-speed limit, as the backends can honour it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    /// Bytes per second for this array (md `sync_speed_max`).
    BytesPerSec(u64),
    /// Percentage of time kcopyd may spend on mirror recovery, for every dm mirror at once
    /// (dm_mirror's `raid1_resync_throttle`): dm-mirror has no per-device rate.
    Percent(u32),
}

/// Result of an attempt to switch to the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchOutcome {
    /// The wrapper now maps the target alone. `window` = suspend ioctl → resume ioctl return;
    /// `suspend` = the part spent in the suspend ioctl (dm only).
    Switched {
        window: Duration,
        suspend: Option<Duration>,
    },
    /// The status read while suspended was not fully in sync: the mirror was resumed unchanged.
    NotInSync { status: String, window: Duration },
}

/// One mechanism for moving a live device.
pub trait Backend {
    /// Short name for status and journal (`dm-mirror`, `md-raid1`).
    fn kind(&self) -> &'static str;
    /// The devices the wrapper maps now, source first.
    fn legs(&self) -> Result<Vec<DevNum>>;
    /// Whether a second leg is attached (a copy runs or waits for the switch).
    fn mirroring(&self) -> Result<bool>;
    /// One line describing the kernel object (the dm table line, the md members).
    fn describe(&self) -> Result<String>;
    /// Refuse (`crate::error::refuse`) a limit this backend cannot honour, else apply it; it is
    /// undone when the backend is dropped. Called before `attach`, so a refusal changes nothing.
    fn set_rate_limit(&mut self, limit: RateLimit) -> Result<()>;
    /// Refuse a copy plan this backend cannot carry out, before anything changes.
    fn check_plan(&self, plan: &CopyPlan) -> Result<()>;
    /// Start the copy source → target: the target becomes a second leg.
    fn attach(&mut self, source: &BlockDev, target: &BlockDev, plan: &CopyPlan)
        -> Result<CopyInfo>;
    /// Current copy progress and leg health.
    fn sync_state(&self) -> Result<SyncState>;
    /// Sleep until the kernel reports an event or `timeout` passes (never longer).
    fn wait(&self, timeout: Duration) -> Result<()>;
    /// The point of no return: make the wrapper map the target alone, at the target's full size
    /// (clone legs are detached in the same step). Must resume the device on every path.
    fn switch_to_target(&mut self, target: &BlockDev) -> Result<SwitchOutcome>;
    /// Whether the point of no return is passed while the target is still attached (md: the
    /// source member is failed). dm switches in one step, so a mirror is never past it.
    fn past_point_of_no_return(&self, _source: DevNum) -> Result<bool> {
        Ok(false)
    }
    /// Before the switch: drop the target; the wrapper maps the source alone again.
    fn detach_target(&mut self, source: &BlockDev) -> Result<()>;
    /// After the switch: make the wrapper device as large as the target; returns its size.
    fn grow_device(&mut self, target: &BlockDev) -> Result<Bytes>;
}
