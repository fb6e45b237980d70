//! SIGINT/SIGTERM/SIGHUP become flags (signal-hook): during the copy the loop sees them and rolls
//! back to the source; during the switch nothing looks at them, so they wait until after resume.
//! Across the suspend itself they are also blocked (`kernel::memlock::SignalsBlocked`, taken by
//! the dm switch window): pending, not delivered, so a suspend is not interrupted (EINTR) and no
//! handler runs in the window; the suspend still retries an EINTR.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

pub struct Signals {
    flags: Vec<(&'static str, Arc<AtomicBool>)>,
}

impl Signals {
    pub fn install() -> Result<Signals> {
        let mut flags = vec![];
        for (sig, name) in [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM"), (SIGHUP, "SIGHUP")] {
            let f = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(sig, Arc::clone(&f))
                .with_context(|| format!("installing a {name} handler"))?;
            flags.push((name, f));
        }
        Ok(Signals { flags })
    }

    /// The first signal received, if any.
    pub fn pending(&self) -> Option<&'static str> {
        self.flags
            .iter()
            .find(|(_, f)| f.load(Ordering::SeqCst))
            .map(|(n, _)| *n)
    }
}
