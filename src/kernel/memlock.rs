//! Memory locking for the switch window (after lvm2's lib/mm/memlock.c).
//!
//! While the device under `/` is suspended, any page fault that needs a read from the root —
//! a not-yet-touched page of our own binary, a lazily loaded locale, a log file — blocks forever.
//! So before suspending: lock every current and future mapping, and pre-touch some stack.

use anyhow::{Context, Result};
use nix::sys::mman::{mlockall, munlockall, MlockAllFlags};

/// This process's peak resident set size so far, in KiB (getrusage's ru_maxrss): what a
/// migration cost in memory (the switch window locks all of it).
pub fn peak_rss_kib() -> Option<u64> {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF)
        .ok()
        .and_then(|u| u64::try_from(u.max_rss()).ok())
}

/// Locks all memory until dropped.
pub struct MemLock(());

impl MemLock {
    pub fn acquire() -> Result<MemLock> {
        mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE)
            .context("mlockall (locking memory for the switch window)")?;
        prefault_stack();
        Ok(MemLock(()))
    }
}

impl Drop for MemLock {
    fn drop(&mut self) {
        let _ = munlockall();
    }
}

#[inline(never)]
fn prefault_stack() {
    // 256 KiB of stack, touched, so the window's deeper calls find it resident.
    let mut buf = [0u8; 256 * 1024];
    for i in (0..buf.len()).step_by(4096) {
        buf[i] = 1;
    }
    std::hint::black_box(&mut buf);
}

/// SIGINT, SIGTERM and SIGHUP blocked for the calling thread until dropped, across the switch
/// window: a signal then neither interrupts the suspend (EINTR) nor runs a handler in the
/// window; it stays pending and is delivered when the old mask is put back.
pub struct SignalsBlocked(nix::sys::signal::SigSet);

impl SignalsBlocked {
    pub fn block() -> Result<SignalsBlocked> {
        use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
        let mut set = SigSet::empty();
        set.add(Signal::SIGINT);
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGHUP);
        let mut old = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
            .context("blocking SIGINT/SIGTERM/SIGHUP for the switch window")?;
        Ok(SignalsBlocked(old))
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        use nix::sys::signal::{pthread_sigmask, SigmaskHow};
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.0), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};

    fn current() -> SigSet {
        let mut cur = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, None, Some(&mut cur)).unwrap();
        cur
    }

    #[test]
    fn signals_blocked_inside_and_restored_after() {
        assert!(!current().contains(Signal::SIGTERM));
        {
            let _b = SignalsBlocked::block().unwrap();
            let c = current();
            assert!(c.contains(Signal::SIGINT));
            assert!(c.contains(Signal::SIGTERM));
            assert!(c.contains(Signal::SIGHUP));
        }
        let c = current();
        assert!(!c.contains(Signal::SIGINT));
        assert!(!c.contains(Signal::SIGTERM));
        assert!(!c.contains(Signal::SIGHUP));
    }
}
