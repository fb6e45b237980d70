//! Named failpoints, compiled in only with the `testing` feature (release builds get empty
//! inline functions). A VM test sets `ROOTSHIFT_FAILPOINTS=name=action[,name=action...]` to make
//! rootshift fail at exactly one step, after bootupd's `fail_point!` idea:
//! - `error`: the step returns an error (the normal failure path runs);
//! - `crash`: abort() at once (SIGABRT), no cleanup;
//! - `kill`: SIGKILL to ourselves (nothing runs after it: the guardian must clean up);
//! - `sleep:MS`: pause, so a test can send a signal at exactly this point.
//!
//! `init()` parses the variable once at start-up: `hit` then only reads memory, so it is safe
//! inside the switch window.

use anyhow::Result;

/// Every failpoint, in the order a migration reaches them.
pub const ALL: &[&str] = &[
    "migrate::before-attach",
    "attach::frozen",
    "migrate::attached",
    "migrate::copying",
    "migrate::synced",
    "migrate::switching",
    "switch::suspended",
    "migrate::rolled-back",
    "migrate::switched",
    "migrate::journal-switched",
    "migrate::device-grown",
    "migrate::fs-grown",
];

#[cfg(feature = "testing")]
mod imp {
    use std::sync::OnceLock;
    use std::time::Duration;

    static ACTIONS: OnceLock<Vec<(String, String)>> = OnceLock::new();

    pub fn init() {
        ACTIONS.get_or_init(|| {
            std::env::var("ROOTSHIFT_FAILPOINTS")
                .unwrap_or_default()
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect()
        });
    }

    pub fn hit(name: &'static str) -> anyhow::Result<()> {
        let Some(actions) = ACTIONS.get() else {
            return Ok(());
        };
        let Some((_, action)) = actions.iter().find(|(k, _)| k == name) else {
            return Ok(());
        };
        match action.as_str() {
            "error" => anyhow::bail!("failpoint {name} triggered"),
            "crash" => {
                // abort(): no destructors, no stdio flush, SIGABRT — a crash.
                let _ = nix::unistd::write(
                    std::io::stderr(),
                    format!("rootshift: failpoint {name}: crash\n").as_bytes(),
                );
                std::process::abort()
            }
            "kill" => {
                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
                Ok(())
            }
            a if a.starts_with("sleep:") => {
                let ms: u64 = a["sleep:".len()..].parse().unwrap_or(1000);
                // A marker for the test (its stderr is on tmpfs; never on the suspended device).
                let _ = nix::unistd::write(
                    std::io::stderr(),
                    format!("rootshift: failpoint {name}: sleeping {ms} ms\n").as_bytes(),
                );
                std::thread::sleep(Duration::from_millis(ms));
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(not(feature = "testing"))]
mod imp {
    #[inline(always)]
    pub fn init() {}
    #[inline(always)]
    pub fn hit(_name: &'static str) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Read `ROOTSHIFT_FAILPOINTS` (test builds); call once at start-up.
pub fn init() {
    imp::init()
}

/// Pass the failpoint `name` (must be in [`ALL`]).
pub fn hit(name: &'static str) -> Result<()> {
    debug_assert!(ALL.contains(&name), "unknown failpoint {name}");
    imp::hit(name)
}
