//! The migration as an explicit state machine:
//!
//! ```text
//! preflight ──► mirroring ──► (in sync) ──► switched ──► grown ──► done
//!                  │  signal / target leg failed / error        ▲
//!                  └──────────────► aborted (back on source)   point of no return
//! ```
//! Before `switched` every write reaches the source, so going back loses nothing. From
//! `switched` on only the target gets writes: `abort` refuses, the migration can only go forward.

pub mod journal;
pub mod preflight;
pub mod signals;

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde_json::json;

use crate::backend::{self, Backend, CopyMode, CopyPlan, RateLimit, SwitchOutcome};
use crate::error::{refuse, Interrupted};
use crate::kernel::blockdev::{human, BlockDev};
use crate::kernel::dm::Dm;
use crate::kernel::fs::grow_mounted;
use crate::kernel::mounts;
use crate::lock::Lock;
use crate::progress::Progress;
use crate::wrapper;
use journal::{DevRecord, Journal, Step};
use signals::Signals;

/// How long one wait for a dm event may last before the status is read again. Without
/// `handle_errors` a failing leg raises no event, so an event-only wait could block forever.
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
}

fn record(dev: &BlockDev, size: devicemapper::Bytes) -> DevRecord {
    DevRecord {
        dev: dev.devnum.to_string(),
        path: dev.display(),
        size_bytes: *size as u64,
    }
}

fn confirm(question: &str, yes: bool) -> Result<()> {
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

/// A region size in bytes → sectors, refusing what dm-mirror would reject.
fn region_sectors(bytes: u64) -> Result<devicemapper::Sectors> {
    if !bytes.is_power_of_two() || bytes < 4096 {
        return Err(refuse(
            format!("--region-size {bytes} must be a power of two of at least 4K"),
            Some("e.g. 512K, 1M, 4M"),
        ));
    }
    Ok(devicemapper::Sectors(bytes / 512))
}

/// Why the copy loop stopped early.
enum Stop {
    Signal(&'static str),
    TargetFailed(String),
    SourceFailed(String),
    Error(anyhow::Error),
}

/// Wait until every region is in sync, watching signals and leg health every tick.
fn copy(
    backend: &mut dyn Backend,
    target: &BlockDev,
    signals: &Signals,
    progress: &mut Progress,
) -> Result<(), Stop> {
    loop {
        if let Some(sig) = signals.pending() {
            return Err(Stop::Signal(sig));
        }
        let st = backend.sync_state().map_err(Stop::Error)?;
        progress.update(
            *st.done as u64,
            *st.total as u64,
            json!({"in_sync": st.units_done, "total": st.units_total,
                   "health": st.legs.iter().map(|(_, h)| h.as_char()).collect::<String>()}),
        );
        if let Some((dev, h)) = st.legs.iter().find(|(_, h)| !h.is_alive()) {
            let msg = format!(
                "leg {dev} reports a {} (health {})",
                h.describe(),
                h.as_char()
            );
            if *dev == target.devnum {
                return Err(Stop::TargetFailed(format!(
                    "the target {} failed: {msg}",
                    target.display()
                )));
            }
            return Err(Stop::SourceFailed(msg));
        }
        if st.complete() {
            return Ok(());
        }
        backend.wait(TICK).map_err(Stop::Error)?;
    }
}

/// `rootshift migrate TARGET`.
pub fn migrate(opts: &MigrateOptions) -> Result<()> {
    preflight::require_root()?;
    let _lock = Lock::acquire()?;
    let dm = Dm::open().ok();
    let w = wrapper::find(dm.as_ref(), opts.name.as_deref())?;
    let mut backend = backend::open(&w)?;
    if backend.mirroring()? {
        return Err(refuse(
            format!(
                "a migration of {} is already in progress (a target is attached)",
                w.name
            ),
            Some("run `rootshift status` to see it, `rootshift abort` to go back to the source"),
        ));
    }
    let source_dev = *backend
        .legs()?
        .first()
        .ok_or_else(|| anyhow!("{} maps no device", w.name))?;
    let source = BlockDev::from_devnum(source_dev).context("finding the source device")?;
    let target = preflight::resolve_target(&opts.target)?;
    let checked = preflight::check_target(&w, &source, &target, opts.force)?;
    crate::live::overlay_check(&source, crate::live::OVERLAY_NEED_BYTES)?;
    let mount = mounts::mounts_of(w.devnum)?.into_iter().next();
    let plan = CopyPlan {
        mode: opts.copy,
        region: opts.region_size.map(region_sectors).transpose()?,
        mount: mount
            .as_ref()
            .map(|m| (m.mount_point.clone(), m.fs_type.clone())),
    };
    backend.check_plan(&plan)?;
    let what = mount
        .as_ref()
        .map(|m| format!("{} ({})", m.mount_point.display(), m.fs_type))
        .unwrap_or_else(|| w.name.clone());
    confirm(
        &format!(
            "Move {what} from {} ({}) to {} ({})? Everything on {} will be overwritten.",
            source.display(),
            human(checked.source_size),
            target.display(),
            human(checked.target_size),
            target.display()
        ),
        opts.yes,
    )?;
    // Refused here when the backend cannot honour it; undone when the backend is dropped.
    if let Some(r) = opts.rate_limit {
        backend.set_rate_limit(RateLimit::BytesPerSec(r))?;
    }
    if let Some(p) = opts.throttle {
        backend.set_rate_limit(RateLimit::Percent(p))?;
    }

    let signals = Signals::install()?;
    let mut progress = Progress::new(opts.json);
    let mut journal = Journal::new(
        &w.name,
        backend.kind(),
        record(&source, checked.source_size),
        record(&target, checked.target_size),
    );
    journal.save()?;
    let t_start = Instant::now();
    progress.event(
        "start",
        &format!("mirroring {} onto {} through {}", source.display(), target.display(), w.name),
        json!({"wrapper": w.name, "backend": backend.kind(), "source": journal.source, "target": journal.target}),
    );

    // mirroring
    let info = match backend.attach(&source, &target, &plan) {
        Ok(i) => i,
        Err(e) => {
            journal.error = Some(format!("{e:#}"));
            let _ = journal.set_step(Step::Aborted);
            return Err(e);
        }
    };
    journal.copy_mode = Some(info.mode.to_string());
    journal.region_bytes = Some(*info.region as u64);
    journal.copied_bytes = Some(*info.to_copy as u64);
    journal.save()?;
    progress.event(
        "copy",
        &format!(
            "copying {} of {} ({} copy{})",
            human(info.to_copy),
            human(checked.source_size),
            info.mode,
            if *info.region > 0 { format!(", {} regions", human(info.region)) } else { String::new() }
        ),
        json!({"copy_mode": info.mode, "region_bytes": *info.region as u64, "copied_bytes": *info.to_copy as u64}),
    );
    progress.start_copy(*info.to_copy as u64);
    let mut attempts = 0;
    let window = loop {
        let stopped = copy(backend.as_mut(), &target, &signals, &mut progress);
        progress.finish_copy();
        if let Err(stop) = stopped {
            return roll_back(backend.as_mut(), &source, &mut journal, &progress, stop);
        }
        journal.copy_seconds = Some(progress.copy_elapsed().as_secs_f64());
        // switched: the point of no return
        attempts += 1;
        match backend.switch_to_target(&target) {
            Ok(SwitchOutcome::Switched { window }) => break window,
            Ok(SwitchOutcome::NotInSync { status, window }) if attempts < SWITCH_ATTEMPTS => {
                progress.event(
                    "switch-retry",
                    &format!("not switching: the mirror was not in sync inside the window ({status}); copying on"),
                    json!({"status": status, "window_ms": window.as_secs_f64() * 1e3}),
                );
            }
            Ok(SwitchOutcome::NotInSync { status, .. }) => {
                let stop = Stop::Error(anyhow!(
                    "the mirror never stayed in sync for the switch ({status})"
                ));
                return roll_back(backend.as_mut(), &source, &mut journal, &progress, stop);
            }
            Err(e) => {
                // switch_to_target resumed the mirror on its error paths; go back to the source.
                return roll_back(
                    backend.as_mut(),
                    &source,
                    &mut journal,
                    &progress,
                    Stop::Error(e),
                );
            }
        }
    };
    let window_ms = window.as_secs_f64() * 1e3;
    journal.switch_window_ms = Some(window_ms);
    journal.set_step(Step::Switched)?;
    progress.event(
        "switched",
        &format!(
            "switched {} to {} alone (device suspended for {window_ms:.1} ms)",
            w.name,
            target.display()
        ),
        json!({"window_ms": window_ms, "target": journal.target}),
    );

    // grown
    let dev_size = backend.grow_device(&target)?;
    if let Some(m) = &mount {
        let g = grow_mounted(&m.mount_point, &m.fs_type, dev_size).with_context(|| {
            format!(
                "growing the {} filesystem on {} (the data is safe on {})",
                m.fs_type,
                m.mount_point.display(),
                target.display()
            )
        })?;
        journal.fs_before_bytes = Some(g.before);
        journal.fs_after_bytes = Some(g.after);
        progress.event(
            "grown",
            &format!("grew {} ({}) from {} to {}", m.mount_point.display(), m.fs_type, human(devicemapper::Bytes(g.before.into())), human(devicemapper::Bytes(g.after.into()))),
            json!({"mount_point": m.mount_point, "fs_type": m.fs_type, "before_bytes": g.before, "after_bytes": g.after}),
        );
    }
    journal.set_step(Step::Grown)?;
    match crate::live::release_old(&source) {
        Ok(r) if r.is_empty() => {}
        Ok(r) => progress.event(
            "released",
            &format!("released the old device stack: {}", r.join("; ")),
            json!({"released": r}),
        ),
        Err(e) => progress.event(
            "released",
            &format!("the old device stack was not released: {e:#}"),
            json!({"released": [], "error": format!("{e:#}")}),
        ),
    }
    journal.set_step(Step::Done)?;

    let free = source.holders().is_empty();
    let copy_s = journal.copy_seconds.unwrap_or(0.0);
    let rate = if copy_s > 0.0 {
        *checked.source_size as f64 / copy_s
    } else {
        0.0
    };
    progress.event(
        "done",
        &format!(
            "done: {what} moved from {} to {} in {:.1} s (copy {:.1} s at {}/s, switch window {window_ms:.1} ms); {} {}",
            source.display(),
            target.display(),
            t_start.elapsed().as_secs_f64(),
            copy_s,
            human(devicemapper::Bytes(rate as u128)),
            source.display(),
            if free { "is no longer used" } else { "is still held by something" }
        ),
        json!({"source": journal.source, "target": journal.target, "seconds": t_start.elapsed().as_secs_f64(),
               "copy_seconds": copy_s, "rate_bytes_per_sec": rate.round() as u64, "switch_window_ms": window_ms,
               "fs_before_bytes": journal.fs_before_bytes, "fs_after_bytes": journal.fs_after_bytes, "source_free": free,
               "copy_mode": info.mode, "region_bytes": *info.region as u64, "copied_bytes": *info.to_copy as u64}),
    );
    Ok(())
}

/// Before the switch: put the wrapper back on the source and record why.
fn roll_back(
    backend: &mut dyn Backend,
    source: &BlockDev,
    journal: &mut Journal,
    progress: &Progress,
    stop: Stop,
) -> Result<()> {
    let (why, err): (String, anyhow::Error) = match stop {
        Stop::SourceFailed(msg) => {
            // Going back to a source with failed writes could lose data: keep the mirror.
            let e = anyhow!(
                "the source {} failed during the copy: {msg}; the mirror is left in place so no write is lost \
                 (see `rootshift status`)",
                source.display()
            );
            journal.error = Some(format!("{e:#}"));
            let _ = journal.save();
            return Err(e);
        }
        Stop::Signal(sig) => (
            format!("{sig} received"),
            Interrupted {
                signal: sig,
                detail: format!(
                    "rolled back: {} maps {} alone again",
                    journal.wrapper,
                    source.display()
                ),
            }
            .into(),
        ),
        Stop::TargetFailed(msg) => (
            msg.clone(),
            anyhow!(
                "{msg}; rolled back: {} maps {} alone again",
                journal.wrapper,
                source.display()
            ),
        ),
        Stop::Error(e) => (
            format!("{e:#}"),
            e.context(format!(
                "rolled back: {} maps {} alone again",
                journal.wrapper,
                source.display()
            )),
        ),
    };
    if let Err(rb) = backend.detach_target(source) {
        journal.error = Some(format!("{why}; rolling back failed: {rb:#}"));
        let _ = journal.save();
        return Err(anyhow!(
            "{why}, and rolling back to {} failed: {rb:#}",
            source.display()
        ));
    }
    journal.error = Some(why.clone());
    journal.set_step(Step::Aborted)?;
    progress.event(
        "aborted",
        &format!(
            "aborted ({why}): back on {} alone, nothing lost",
            source.display()
        ),
        json!({"reason": why, "source": journal.source}),
    );
    Err(err)
}

/// `rootshift abort`: before the switch, go back to the source alone.
pub fn abort(name: Option<&str>, json_out: bool) -> Result<()> {
    preflight::require_root()?;
    let _lock = Lock::acquire()?;
    let dm = Dm::open().ok();
    let w = wrapper::find(dm.as_ref(), name)?;
    let progress = Progress::new(json_out);
    let mut journal = Journal::load(&w.name)?;
    let mut backend = backend::open(&w)?;
    let legs = backend.legs()?;
    let first = *legs
        .first()
        .ok_or_else(|| anyhow!("{} maps no device", w.name))?;
    if backend.mirroring()? {
        let source = BlockDev::from_devnum(first)?;
        backend.detach_target(&source)?;
        if let Some(j) = journal.as_mut() {
            j.error = Some("aborted by `rootshift abort`".into());
            j.set_step(Step::Aborted)?;
        }
        progress.event(
            "aborted",
            &format!("aborted: {} maps {} alone again", w.name, source.display()),
            json!({"wrapper": w.name, "source": source.devnum}),
        );
        return Ok(());
    }
    if let Some(j) = journal.as_mut() {
        if j.step.switched() && j.target.dev == first.to_string() {
            return Err(refuse(
                format!(
                    "the system already runs on the target {}: the switch is the point of no return, there is nothing to abort",
                    j.target.path
                ),
                Some("the source no longer has the latest writes; `rootshift status` shows the state"),
            ));
        }
        if j.step == Step::Mirroring {
            j.error = Some("interrupted before the copy started; found on the source alone".into());
            j.set_step(Step::Aborted)?;
        }
    }
    let dev = BlockDev::from_devnum(first)
        .map(|d| d.display())
        .unwrap_or_else(|_| first.to_string());
    progress.event(
        "nothing-to-abort",
        &format!("nothing to abort: {} maps {dev} alone", w.name),
        json!({"wrapper": w.name, "device": first}),
    );
    Ok(())
}
