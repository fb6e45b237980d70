//! The migration as an explicit state machine:
//!
//! ```text
//! preflight ──► mirroring ──► (in sync) ──► switched ──► grown ──► done
//!                  │  signal / target leg failed / error        ▲
//!                  └──────────────► aborted (back on source)   point of no return
//! ```
//! Before `switched` every write reaches the source, so going back loses nothing. From
//! `switched` on only the target gets writes: `abort` refuses, the migration can only go forward
//! (`migrate --resume`). The journal records the step; the kernel's own state (the live table,
//! the md members) decides what an interrupted migration can do next.

pub use crate::state::{core, journal};
pub mod preflight;
pub mod recovery;
pub mod signals;
pub mod verify;

mod abort;
mod clones;
mod copy;
mod crypt;
mod encrypt;
mod grow;
mod identify;
mod install;
mod resume;
mod rollback;
mod start;
mod switched;

pub use abort::abort;
use copy::region_sectors;
pub use encrypt::{EncryptOptions, LUKS2_HEADER};
pub use install::finish_command;
use resume::keep_persisted;
use rollback::clear_half_copies;
pub use start::{migrate, migrate_locked};

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use devicemapper::Bytes;
use serde_json::json;

use crate::backend::switch::{self, with_frozen, RealFreeze};
use crate::backend::{self, Backend, CopyInfo, CopyMode, CopyPlan, RateLimit, SwitchOutcome};
use crate::error::{refuse, Interrupted};
use crate::failpoint;
use crate::finish;
use crate::guardian::Guardian;
use crate::kernel::blockdev::{human, BlockDev};
use crate::kernel::devnum::DevNum;
use crate::kernel::dm::Dm;
use crate::kernel::fs::grow_mounted;
use crate::kernel::mounts::{self, Mount};
use crate::lock::Lock;
use crate::progress::Progress;
use crate::wrapper::{self, Wrapper};
use journal::{DevRecord, Journal, Step};
use signals::Signals;

/// How long one wait for a kernel event may last before the status is read again. Without
/// `handle_errors` a failing dm leg raises no event, so an event-only wait could block forever.
const TICK: Duration = Duration::from_secs(1);
/// Attempts at the switch when the status read inside the window is not in sync.
const SWITCH_ATTEMPTS: u32 = 5;

pub struct MigrateOptions {
    pub target: PathBuf,
    pub name: Option<String>,
    pub yes: bool,
    pub force: bool,
    pub json: bool,
    pub copy: CopyMode,
    /// dm region size in bytes.
    pub region_size: Option<u64>,
    /// md: bytes per second.
    pub rate_limit: Option<u64>,
    /// dm: percent.
    pub throttle: Option<u32>,
    /// Continue an interrupted migration instead of starting one.
    pub resume: bool,
    /// Every check and the plan, nothing changed.
    pub dry_run: bool,
    /// Devices filled in the same pass as the target, detached at the switch with the
    /// filesystem frozen, then given their own filesystem UUID (root clones).
    pub clones: Vec<PathBuf>,
    /// An overlayfs live root's image files move onto this partition after the switch.
    pub image_to: Option<PathBuf>,
    /// Compare source and target before the switch (see verify.rs).
    pub verify: bool,
    /// Run the install step after the migration (None: when the source is a live medium).
    pub install: Option<bool>,
    pub finish: finish::Options,
    /// An encrypted root: the key (passphrase or key file) that grows its LUKS container.
    pub key_file: Option<PathBuf>,
    /// `--encrypt`: the target becomes a LUKS2 container and the root is mirrored into it.
    pub encrypt: Option<EncryptOptions>,
    /// `--wipe-source` (with --encrypt): overwrite the old disk's plaintext after the switch.
    pub wipe_source: bool,
}

fn record(dev: &BlockDev, size: Bytes) -> DevRecord {
    let id = recovery::Identity::of(dev);
    DevRecord {
        dev: dev.devnum.to_string(),
        path: dev.display(),
        size_bytes: *size as u64,
        identity: id.is_known().then_some(id),
    }
}

/// Ask on the terminal unless `yes`; refuse when there is no terminal to ask on.
pub fn confirm(question: &str, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(refuse(
            "confirmation needed, and standard input is not a terminal",
            Some("pass --yes to confirm non-interactively"),
        ));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(refuse("not confirmed; nothing was changed", None))
    }
}

/// Why the copy loop stopped early.
enum Stop {
    Signal(&'static str),
    TargetFailed(String),
    SourceFailed(String),
    Error(anyhow::Error),
}

/// Everything one run of the state machine works with.
struct Run {
    w: Wrapper,
    backend: Box<dyn Backend>,
    source: BlockDev,
    target: BlockDev,
    mount: Option<Mount>,
    journal: Journal,
    progress: Progress,
    signals: Signals,
    t_start: Instant,
    /// What the copy had to move (for rates and the summary).
    to_copy: Bytes,
    info: Option<CopyInfo>,
    /// The install step, checked in the preflight.
    install: Option<finish::Plan>,
    clones: Vec<BlockDev>,
    verify: bool,
    /// `--image-to`: the live image files to move after the grow.
    images: Option<crate::live::overlay::ImagePlan>,
    /// An encrypted root: its LUKS container, opened over the wrapper, moves as ciphertext.
    crypt: Option<crypt::Crypt>,
    /// `--encrypt`: the new container's open mapping (the target), and whether to overwrite
    /// the old disk's plaintext after the switch.
    encrypted: Option<encrypt::Opened>,
    wipe_source: bool,
    _guardian: Guardian,
}

/// The wrapper (named, or the one `/` is on) and its backend, refusing while a migration of it
/// is in progress (a target attached): for the commands that act on a settled root (`finish`,
/// `install --disk`).
pub fn idle_wrapper(name: Option<&str>) -> Result<(Wrapper, Box<dyn Backend>)> {
    let dm = Dm::open().ok();
    let w = wrapper::find(dm.as_ref(), name)?;
    let backend = backend::open(&w)?;
    if backend.mirroring()? {
        return Err(refuse(
            format!(
                "a migration of {} is in progress (a target is attached)",
                w.name
            ),
            Some("let it finish (`rootshift migrate --resume`) or abort it first"),
        ));
    }
    Ok((w, backend))
}
