//! SIGINT/SIGTERM become flags (signal-hook): during the copy the loop sees them and rolls back to
//! the source; during the switch nothing looks at them, so they wait until after resume. SIGHUP
//! is not a request to stop: the terminal (an SSH session) went away, and the migration goes on
//! with its output moved to /run/rootshift (`progress::watch_hangup`).
//! Across the suspend itself they are also blocked (`kernel::memlock::SignalsBlocked`, taken by
//! the dm switch window): pending, not delivered, so a suspend is not interrupted (EINTR) and no
//! handler runs in the window; the suspend still retries an EINTR.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};

pub struct Signals {
    flags: Vec<(&'static str, Arc<AtomicBool>)>,
}

impl Signals {
    pub fn install() -> Result<Signals> {
        let mut flags = vec![];
        crate::progress::watch_hangup().context("installing a SIGHUP handler")?;
        for (sig, name) in [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM")] {
            let f = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(sig, Arc::clone(&f))
                .with_context(|| format!("installing a {name} handler"))?;
            flags.push((name, f));
        }
        Ok(Signals { flags })
    }

    /// The first request to stop (SIGINT, SIGTERM) received, if any. SIGHUP is not one.
    pub fn pending(&self) -> Option<&'static str> {
        self.flags
            .iter()
            .find(|(_, f)| f.load(Ordering::SeqCst))
            .map(|(n, _)| *n)
    }
}
