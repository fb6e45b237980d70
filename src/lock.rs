//! One rootshift at a time: an exclusive flock on /run/rootshift/lock.

use std::fs::{self, File, OpenOptions};

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};

use crate::error::refuse;

pub const PATH: &str = "/run/rootshift/lock";

/// Held until dropped.
pub struct Lock(#[allow(dead_code)] Flock<File>);

impl Lock {
    pub fn acquire() -> Result<Lock> {
        fs::create_dir_all("/run/rootshift").context("creating /run/rootshift")?;
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(PATH)
            .with_context(|| format!("opening {PATH}"))?;
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(l) => Ok(Lock(l)),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(refuse(
                format!("another rootshift is running (it holds {PATH})"),
                Some("wait for it to finish; `rootshift status` shows what it is doing"),
            )),
            Err((_, e)) => Err(e).with_context(|| format!("locking {PATH}")),
        }
    }

    /// Whether another process holds the lock now (a rootshift run is under way). Probes with a
    /// shared non-blocking flock, released at once; a missing lock file means nobody holds it.
    pub fn held_elsewhere() -> bool {
        let Ok(f) = File::open(PATH) else {
            return false;
        };
        matches!(
            Flock::lock(f, FlockArg::LockSharedNonblock),
            Err((_, nix::errno::Errno::EWOULDBLOCK))
        )
    }
}
