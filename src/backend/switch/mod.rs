//! The calls made around the switch, behind one thin trait ([`SwitchOps`]), and the switch
//! sequences written once over it: the dm reload window ([`critical_reload`]), a plain dm reload
//! ([`reload`]), the md switch ([`md_switch`]), an md member removal ([`md_remove`]) and a freeze
//! around a step ([`with_frozen`]). The real implementations ([`RealDm`], [`RealMd`],
//! [`RealFreeze`]) are thin wrappers over today's ioctls; the tests drive the same sequences with
//! a fake ([`fake::Fake`]) that can fail or time out any call.
//!
//! Rules the sequences keep (and the tests check for every call failing in turn):
//! - a suspend or freeze whose undo is not confirmed ends in [`SwitchError::Unconfirmed`]: the
//!   caller must do no I/O to `/` (journal to /run only) and exit so the guardian acts;
//! - never resume while an unverified table sits in the inactive slot: if DM_TABLE_CLEAR fails,
//!   the live table is loaded into the inactive slot first; if that fails too, no resume;
//! - after the switch's resume the live table is read back: `Switched` only if it is the table
//!   that was loaded;
//! - a suspend that returns EINTR is retried;
//! - md: EBUSY from SET_DISK_FAULTY of the source (the target failed since the status check,
//!   kernel ≥ 5.19) means "not switched".

use std::fmt;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::kernel::devnum::DevNum;

/// One table or status line as the devicemapper crate returns it: (start, length, target, params).
pub type RawLine = (u64, u64, String, String);

/// The calls made around the switch. Every call answers with an errno on failure; a call that
/// "times out" may have taken effect (the sequences assume the worst).
/// A call an implementation does not offer (md has no tables, a freeze no md members) answers
/// ENOTSUP: the defaults.
pub trait SwitchOps {
    /// DM_TABLE_LOAD into the inactive slot.
    fn load(&mut self, _table: &[RawLine]) -> Result<(), Errno> {
        Err(Errno::ENOTSUP)
    }
    /// DM_DEV_SUSPEND with flush; `lockfs` also freezes a mounted filesystem.
    fn suspend(&mut self, _lockfs: bool) -> Result<(), Errno> {
        Err(Errno::ENOTSUP)
    }
    /// DM_TABLE_STATUS (info) of the live table.
    fn status(&mut self) -> Result<Vec<RawLine>, Errno> {
        Err(Errno::ENOTSUP)
    }
    /// DM_TABLE_CLEAR: drop the inactive table.
    fn clear_inactive(&mut self) -> Result<(), Errno> {
        Err(Errno::ENOTSUP)
    }
    /// DM_DEV_SUSPEND without the suspend flag: resume, swapping in an inactive table.
    fn resume(&mut self) -> Result<(), Errno> {
        Err(Errno::ENOTSUP)
    }
    /// DM_TABLE_STATUS with DM_STATUS_TABLE: the live table.
    fn live_table(&mut self) -> Result<Vec<RawLine>, Errno> {
        Err(Errno::ENOTSUP)
    }
    /// GET_DISK_INFO of one md member: (in sync, faulty), None when it is no member.
    fn md_disk_state(&mut self, _dev: DevNum) -> Result<Option<(bool, bool)>, Errno> {
        Err(Errno::ENOTSUP)
    }
    /// SET_DISK_FAULTY.
    fn md_set_faulty(&mut self, _dev: DevNum) -> Result<(), Errno> {
        Err(Errno::ENOTSUP)
    }
    /// HOT_REMOVE_DISK.
    fn md_remove(&mut self, _dev: DevNum) -> Result<(), Errno> {
        Err(Errno::ENOTSUP)
    }
    /// FIFREEZE.
    fn freeze(&mut self) -> Result<(), Errno> {
        Err(Errno::ENOTSUP)
    }
    /// FITHAW.
    fn thaw(&mut self) -> Result<(), Errno> {
        Err(Errno::ENOTSUP)
    }
    /// Wait between retries (the fake does not sleep).
    fn pause(&mut self, d: Duration) {
        std::thread::sleep(d)
    }
}

/// How a sequence failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchError {
    /// Failed, and undone: nothing is left suspended or frozen by us.
    Failed(String),
    /// A suspend or freeze whose undo is not confirmed: the device under `/` may be suspended or
    /// its filesystem frozen. No I/O to `/` (journal to /run only); exit so the guardian acts.
    Unconfirmed(String),
}

impl fmt::Display for SwitchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwitchError::Failed(s) => f.write_str(s),
            SwitchError::Unconfirmed(s) => write!(
                f,
                "{s} (the device may still be suspended or its filesystem frozen: nothing more is \
                 written to it; the guardian resumes/thaws when rootshift exits)"
            ),
        }
    }
}

impl std::error::Error for SwitchError {}

/// Whether an error chain carries [`SwitchError::Unconfirmed`]: then no I/O to `/`.
pub fn unconfirmed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<SwitchError>(),
            Some(SwitchError::Unconfirmed(_))
        )
    })
}

/// Attempts at a suspend that returns EINTR.
pub const SUSPEND_ATTEMPTS: u32 = 5;
/// Attempts at a resume (10 ms apart).
pub const RESUME_ATTEMPTS: u32 = 20;
/// Attempts at a thaw (10 ms apart).
pub const THAW_ATTEMPTS: u32 = 20;
/// Attempts at DM_TABLE_CLEAR before loading the live table instead.
pub const CLEAR_ATTEMPTS: u32 = 6;
/// Attempts at reading the live table back after the switch's resume.
pub const READBACK_ATTEMPTS: u32 = 5;
/// md: how long HOT_REMOVE_DISK may answer EBUSY (I/O in flight).
pub const MD_REMOVE_BUSY: Duration = Duration::from_secs(10);

/// Two tables are the same when start, length, target and the params' words agree.
pub fn same_table(a: &[RawLine], b: &[RawLine]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.0 == y.0
                && x.1 == y.1
                && x.2 == y.2
                && x.3.split_whitespace().eq(y.3.split_whitespace())
        })
}

/// Suspend (flush, no lockfs), retrying EINTR.
fn suspend_retrying<O: SwitchOps>(ops: &mut O, lockfs: bool) -> Result<(), Errno> {
    let mut r = ops.suspend(lockfs);
    for _ in 1..SUSPEND_ATTEMPTS {
        if r != Err(Errno::EINTR) {
            break;
        }
        r = ops.suspend(lockfs);
    }
    r
}

/// Resume, retrying: a device under `/` must never stay suspended.
pub fn resume_hard<O: SwitchOps>(ops: &mut O) -> Result<(), Errno> {
    let mut last = Errno::UnknownErrno;
    for i in 0..RESUME_ATTEMPTS {
        if i > 0 {
            ops.pause(Duration::from_millis(10));
        }
        match ops.resume() {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Make the inactive slot safe to resume with: drop it (retrying), else load `live` into it.
/// Returns false when neither worked (then the device must not be resumed).
fn make_inactive_safe<O: SwitchOps>(ops: &mut O, live: &[RawLine]) -> bool {
    for i in 0..CLEAR_ATTEMPTS {
        if i > 0 {
            ops.pause(Duration::from_millis(10));
        }
        if ops.clear_inactive().is_ok() {
            return true;
        }
    }
    ops.load(live).is_ok()
}

/// Undo after something failed with the device possibly suspended and `table` possibly in the
/// inactive slot: make the inactive slot safe, then resume.
fn undo<O: SwitchOps>(ops: &mut O, live: &[RawLine], what: String) -> SwitchError {
    if !make_inactive_safe(ops, live) {
        return SwitchError::Unconfirmed(format!(
            "{what}; the prepared table could neither be dropped nor replaced by the live one, so \
             the device was not resumed (resuming would swap it in)"
        ));
    }
    match resume_hard(ops) {
        Ok(()) => SwitchError::Failed(format!("{what}; resumed on the unchanged table")),
        Err(e) => SwitchError::Unconfirmed(format!("{what}; resuming failed: {e}")),
    }
}

/// Result of [`critical_reload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reload {
    /// The live table is now `table` (read back after the resume).
    pub switched: bool,
    /// Suspend ioctl → resume ioctl return.
    pub window: Duration,
    /// Of the window, the suspend ioctl itself (dm waits there for the I/O in flight).
    pub suspend: Duration,
}

/// The switch's critical section: read the live table, load `table` into the inactive slot,
/// suspend with flush (no fs freeze; EINTR retried), read the status while suspended, and resume
/// — onto `table` if `accept(status)`, else back onto the unchanged live table. After a resume
/// onto `table`, the live table is read back and must be `table`.
///
/// Between the suspend and the resume: the suspend (and its EINTR retries), the failpoint
/// `switch::suspended` (testing builds), one status ioctl, `accept`, and the resume. The caller
/// locks memory and blocks signals around the call.
pub fn critical_reload<O: SwitchOps>(
    ops: &mut O,
    table: &[RawLine],
    accept: fn(&[RawLine]) -> bool,
) -> Result<Reload, SwitchError> {
    // Before the window: the table to fall back on if the prepared one cannot be dropped.
    let live = ops
        .live_table()
        .map_err(|e| SwitchError::Failed(format!("reading the live table: {e}")))?;
    if let Err(e) = ops.load(table) {
        // A load that failed may still have left a table (a timeout): drop it, not suspended.
        let _ = make_inactive_safe(ops, &live);
        return Err(SwitchError::Failed(format!(
            "loading the new table into the inactive slot: {e}"
        )));
    }

    // ---- critical section: no file I/O, no logging, no fork/exec until resumed ----
    let t0 = Instant::now();
    if let Err(e) = suspend_retrying(ops, false) {
        // The device may or may not be suspended.
        return Err(undo(ops, &live, format!("suspending failed: {e}")));
    }
    let suspend = t0.elapsed();
    let _ = crate::failpoint::hit("switch::suspended");
    let ok = ops.status().map(|v| accept(&v)).unwrap_or(false);
    if ok {
        let resumed = resume_hard(ops);
        let window = t0.elapsed();
        // ---- end of critical section ----
        if let Err(e) = resumed {
            return Err(SwitchError::Unconfirmed(format!(
                "resuming onto the new table failed: {e}"
            )));
        }
        // Confirm the switch: the live table must be the one loaded.
        let mut read = Err(Errno::UnknownErrno);
        for i in 0..READBACK_ATTEMPTS {
            if i > 0 {
                ops.pause(Duration::from_millis(10));
            }
            read = ops.live_table();
            if read.is_ok() {
                break;
            }
        }
        return match read {
            Ok(now) if same_table(&now, table) => Ok(Reload {
                switched: true,
                window,
                suspend,
            }),
            Ok(now) if same_table(&now, &live) => Err(SwitchError::Failed(format!(
                "the resume did not switch: the live table is still {}",
                show(&now)
            ))),
            Ok(now) => Err(SwitchError::Failed(format!(
                "after the resume the live table is {}, neither the new table nor the old one",
                show(&now)
            ))),
            Err(e) => Err(SwitchError::Failed(format!(
                "reading the live table back after the switch failed: {e}; the switch is not confirmed"
            ))),
        };
    }
    // Not safe: keep the live table. Drop the prepared one (or put the live one over it).
    if !make_inactive_safe(ops, &live) {
        // ---- still suspended ----
        return Err(SwitchError::Unconfirmed(
            "the status read in the switch window was not safe and the prepared table could not \
             be dropped; resuming would switch to an incomplete copy, so the device is left \
             SUSPENDED (`dmsetup clear NAME; dmsetup resume NAME`)"
                .into(),
        ));
    }
    let resumed = resume_hard(ops);
    let window = t0.elapsed();
    // ---- end of critical section ----
    match resumed {
        Ok(()) => Ok(Reload {
            switched: false,
            window,
            suspend,
        }),
        Err(e) => Err(SwitchError::Unconfirmed(format!(
            "resuming after a refused switch failed: {e}"
        ))),
    }
}

fn show(t: &[RawLine]) -> String {
    t.iter()
        .map(|(s, l, t, p)| format!("{s} {l} {t} {p}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Swap in `table` (no status check: the caller wants it): load, suspend (EINTR retried),
/// resume. If the suspend fails, the prepared table is dropped (or replaced by the live one)
/// before resuming.
pub fn reload<O: SwitchOps>(ops: &mut O, table: &[RawLine]) -> Result<(), SwitchError> {
    let live = ops
        .live_table()
        .map_err(|e| SwitchError::Failed(format!("reading the live table: {e}")))?;
    if let Err(e) = ops.load(table) {
        let _ = make_inactive_safe(ops, &live);
        return Err(SwitchError::Failed(format!("loading the table: {e}")));
    }
    if let Err(e) = suspend_retrying(ops, false) {
        return Err(undo(ops, &live, format!("suspending failed: {e}")));
    }
    resume_hard(ops)
        .map_err(|e| SwitchError::Unconfirmed(format!("resuming onto the new table failed: {e}")))
}

/// Result of [`md_switch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MdSwitch {
    /// The source (and the clones) are faulty: only the target gets writes.
    Switched { window: Duration },
    /// Nothing changed: the target is not (or no longer) an in-sync member.
    NotSwitched { why: String, window: Duration },
}

/// The md switch, from the last check on: GET_DISK_INFO of the target, SET_DISK_FAULTY of the
/// source (the point of no return), then of every clone.
pub fn md_switch<O: SwitchOps>(
    ops: &mut O,
    source: DevNum,
    target: DevNum,
    clones: &[DevNum],
) -> Result<MdSwitch, SwitchError> {
    let t0 = Instant::now();
    // Again, from the kernel, immediately before failing the source: the target can fail
    // between the sysfs read and this point, and failing the last in-sync leg breaks the array.
    match ops.md_disk_state(target) {
        Ok(Some((true, false))) => {}
        other => {
            return Ok(MdSwitch::NotSwitched {
                why: format!("GET_DISK_INFO for the target: {other:?} (in_sync, faulty)"),
                window: t0.elapsed(),
            })
        }
    }
    let t_fail = Instant::now();
    match ops.md_set_faulty(source) {
        Ok(()) => {}
        // md (≥ 5.19) refuses to fail the last in-sync member: the target failed in between.
        Err(Errno::EBUSY) => {
            return Ok(MdSwitch::NotSwitched {
                why: format!(
                    "md refused to fail the source {source} (EBUSY): the target {target} is no \
                     longer in sync"
                ),
                window: t_fail.elapsed(),
            })
        }
        Err(e) => match ops.md_disk_state(source) {
            // It took effect all the same.
            Ok(Some((_, true))) => {}
            Ok(Some((_, false))) => {
                return Err(SwitchError::Failed(format!(
                    "failing the source {source} failed: {e}; it is still a working member"
                )))
            }
            other => {
                return Err(SwitchError::Failed(format!(
                    "failing the source {source} failed: {e}, and whether it is faulty now is \
                     unknown ({other:?})"
                )))
            }
        },
    }
    let window = t_fail.elapsed();
    // Clone members go with the source: the target alone carries the array from here on.
    for &d in clones {
        if let Err(e) = ops.md_set_faulty(d) {
            if !matches!(ops.md_disk_state(d), Ok(Some((_, true)))) {
                return Err(SwitchError::Failed(format!(
                    "the source {source} is failed (switched), but detaching the clone {d} failed: {e}"
                )));
            }
        }
    }
    Ok(MdSwitch::Switched { window })
}

/// HOT_REMOVE_DISK, retrying the transient EBUSY md gives while I/O is in flight.
pub fn md_remove<O: SwitchOps>(ops: &mut O, dev: DevNum) -> Result<(), Errno> {
    let mut waited = Duration::ZERO;
    loop {
        match ops.md_remove(dev) {
            Err(Errno::EBUSY) if waited < MD_REMOVE_BUSY => {
                ops.pause(Duration::from_millis(100));
                waited += Duration::from_millis(100);
            }
            r => return r,
        }
    }
}

/// Freeze, run `body`, thaw (retrying). A thaw that cannot be confirmed, or a `body` that left
/// the device suspended (an [`SwitchError::Unconfirmed`] inside), ends in `Unconfirmed`: then the
/// filesystem is *not* thawed here (thawing writes its superblock, which would hang on a
/// suspended device); the guardian resumes first, then thaws.
pub fn with_frozen<O: SwitchOps, T>(
    ops: &mut O,
    body: impl FnOnce() -> anyhow::Result<T>,
) -> Result<anyhow::Result<T>, SwitchError> {
    if let Err(e) = ops.freeze() {
        // A freeze that failed outright is not ours to thaw (EBUSY: someone else's freeze).
        if e != Errno::ETIMEDOUT {
            return Err(SwitchError::Failed(format!("freezing failed: {e}")));
        }
        // It may have frozen all the same (a timeout): thaw; EINVAL = it is not frozen.
        return match thaw_hard(ops) {
            Ok(()) => Err(SwitchError::Failed(format!("freezing failed: {e}"))),
            Err(t) => Err(SwitchError::Unconfirmed(format!(
                "freezing failed: {e}, and thawing after it failed: {t}"
            ))),
        };
    }
    let r = body();
    if let Err(e) = &r {
        if unconfirmed(e) {
            return Err(SwitchError::Unconfirmed(format!(
                "{e:#}; the filesystem stays frozen until the device is resumed"
            )));
        }
    }
    match thaw_hard(ops) {
        Ok(()) => Ok(r),
        Err(e) => Err(SwitchError::Unconfirmed(format!(
            "thawing failed: {e} (after: {})",
            match &r {
                Ok(_) => "the step succeeded".to_string(),
                Err(e) => format!("{e:#}"),
            }
        ))),
    }
}

/// Thaw, retrying; EINVAL (not frozen) counts as thawed.
fn thaw_hard<O: SwitchOps>(ops: &mut O) -> Result<(), Errno> {
    let mut last = Errno::UnknownErrno;
    for i in 0..THAW_ATTEMPTS {
        if i > 0 {
            ops.pause(Duration::from_millis(10));
        }
        match ops.thaw() {
            Ok(()) | Err(Errno::EINVAL) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// What the guardian does once rootshift is gone. `dm`: the device with whether it is suspended
/// and whether a table sits in its inactive slot; `fs`: the filesystem, only when rootshift had
/// announced a freeze it made and not yet its thaw. The inactive slot is made safe first (dropped,
/// else the live table loaded over it; if neither works the device is *not* resumed: resuming
/// would swap in an unverified table), then the device is resumed, then — only once it is not
/// suspended (thawing writes the superblock) — the filesystem is thawed. Returns what it did.
pub fn recover<D: SwitchOps, F: SwitchOps>(
    dm: Option<(&mut D, bool, bool)>,
    fs: Option<&mut F>,
) -> Vec<&'static str> {
    let mut acted = vec![];
    let mut suspended_still = false;
    if let Some((ops, suspended, inactive)) = dm {
        let mut safe = true;
        if inactive {
            safe = match ops.live_table() {
                Ok(live) => make_inactive_safe(ops, &live),
                Err(_) => (0..CLEAR_ATTEMPTS).any(|_| ops.clear_inactive().is_ok()),
            };
            acted.push(if safe {
                "dropped the prepared table"
            } else {
                "could NOT drop the prepared table (so did not resume: that would switch to it)"
            });
        }
        if suspended {
            let resumed = safe && (0..5).any(|_| resume_hard(ops).is_ok());
            suspended_still = !resumed;
            acted.push(if resumed {
                "resumed the device"
            } else {
                "could NOT resume the device"
            });
        }
    }
    if let Some(fs) = fs {
        if suspended_still {
            acted.push("did not thaw the filesystem (its device is still suspended)");
        } else {
            for i in 0..THAW_ATTEMPTS {
                if i > 0 {
                    fs.pause(Duration::from_millis(10));
                }
                match fs.thaw() {
                    Ok(()) => {
                        acted.push("thawed the filesystem rootshift had frozen");
                        break;
                    }
                    Err(Errno::EINVAL) => break,
                    Err(_) if i + 1 == THAW_ATTEMPTS => {
                        acted.push("could NOT thaw the filesystem");
                    }
                    Err(_) => {}
                }
            }
        }
    }
    acted
}

mod real;
pub use real::{reload_table, RealDm, RealFreeze, RealMd};

#[cfg(test)]
pub mod fake;

#[cfg(test)]
mod tests;
