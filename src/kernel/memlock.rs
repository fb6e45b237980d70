//! Memory locking for the switch window (after lvm2's lib/mm/memlock.c).
//!
//! While the device under `/` is suspended, any page fault that needs a read from the root —
//! a not-yet-touched page of our own binary, a lazily loaded locale, a log file — blocks forever.
//! So before suspending: lock every current and future mapping, and pre-touch some stack.

use anyhow::{Context, Result};
use nix::sys::mman::{mlockall, munlockall, MlockAllFlags};

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
