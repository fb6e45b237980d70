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

pub mod core;
pub mod journal;
pub mod preflight;
pub mod recovery;
pub mod signals;
pub mod verify;

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
    /// Devices filled in the same pass as the target, detached at the switch with the
    /// filesystem frozen, then given their own filesystem UUID (root clones).
    pub clones: Vec<PathBuf>,
    /// Compare source and target before the switch (see verify.rs).
    pub verify: bool,
    /// Run the install step after the migration (None: when the source is a live medium).
    pub install: Option<bool>,
    pub finish: finish::Options,
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
    _guardian: Guardian,
}

impl Run {
    /// Wait until every region is in sync, watching signals and leg health every tick.
    fn copy(&mut self) -> Result<(), Stop> {
        let mut first = true;
        loop {
            if let Some(sig) = self.signals.pending() {
                return Err(Stop::Signal(sig));
            }
            let st = self.backend.sync_state().map_err(Stop::Error)?;
            self.progress.update(
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
                if *dev == self.target.devnum {
                    return Err(Stop::TargetFailed(format!(
                        "the target {} ({}) failed during the copy: {msg}",
                        self.target.display(),
                        self.target.devnum
                    )));
                }
                if let Some(c) = self.clones.iter().find(|c| c.devnum == *dev) {
                    return Err(Stop::TargetFailed(format!(
                        "the clone {} ({}) failed during the copy: {msg}",
                        c.display(),
                        c.devnum
                    )));
                }
                return Err(Stop::SourceFailed(msg));
            }
            if st.complete() {
                return Ok(());
            }
            if first {
                failpoint::hit("migrate::copying").map_err(Stop::Error)?;
                first = false;
            }
            self.backend.wait(TICK).map_err(Stop::Error)?;
        }
    }

    /// mirroring → switched. Rolls back to the source on any failure before the switch.
    fn copy_and_switch(&mut self) -> Result<Duration> {
        self.progress.start_copy(*self.to_copy as u64);
        let mut attempts = 0;
        loop {
            let stopped = self.copy();
            self.progress.finish_copy();
            if let Err(stop) = stopped {
                return Err(self.roll_back(stop));
            }
            if let Err(e) = failpoint::hit("migrate::synced") {
                return Err(self.roll_back(Stop::Error(e)));
            }
            if self.verify && self.journal.verified_bytes.is_none() {
                if let Err(e) = self.verify_copy() {
                    return Err(self.roll_back(Stop::Error(e)));
                }
            }
            // Last look before the point of no return; from the switch on signals wait.
            if let Some(sig) = self.signals.pending() {
                return Err(self.roll_back(Stop::Signal(sig)));
            }
            self.journal.copy_seconds = Some(self.progress.copy_elapsed().as_secs_f64());
            attempts += 1;
            // Durably, before the switch (the mirror is in sync, so this reaches every leg): after a
            // crash from here on, the boot hook picks the target (see recovery.rs).
            if let Err(e) = self.journal.set_step(Step::Switching) {
                return Err(self.roll_back(Stop::Error(
                    e.context("recording the switch in the journal"),
                )));
            }
            // With clones, the filesystem is frozen across the switch: every detached leg then holds
            // a consistent image, not a crash image. (The guardian thaws it if we die in between.)
            // A thaw that is not confirmed, or a switch that left the device suspended, ends in
            // `SwitchError::Unconfirmed` (handled below: no I/O to `/`).
            let switched = match (&self.mount, self.clones.is_empty()) {
                (Some(m), false) => {
                    let target = &self.target;
                    let backend = &mut self.backend;
                    match RealFreeze::open(&m.mount_point)
                        .map_err(anyhow::Error::from)
                        .and_then(|mut fs| {
                            with_frozen(&mut fs, || backend.switch_to_target(target))
                                .map_err(anyhow::Error::from)
                        }) {
                        Ok(r) => r,
                        Err(e) if switch::unconfirmed(&e) => Err(e),
                        Err(e) => {
                            let e = anyhow!(
                                "freezing {} to detach the clones: {e:#}",
                                m.mount_point.display()
                            );
                            return Err(self.roll_back(Stop::Error(e)));
                        }
                    }
                }
                _ => self.backend.switch_to_target(&self.target),
            };
            match switched {
                Ok(SwitchOutcome::Switched { window }) => return Ok(window),
                Ok(SwitchOutcome::NotInSync { status, window }) if attempts < SWITCH_ATTEMPTS => {
                    let _ = self.journal.set_step(Step::Mirroring);
                    self.progress.event(
                        "switch-retry",
                        &format!("not switching: the mirror was not in sync inside the window ({status}); copying on"),
                        json!({"status": status, "window_ms": window.as_secs_f64() * 1e3}),
                    );
                }
                Ok(SwitchOutcome::NotInSync { status, .. }) => {
                    let e = anyhow!("the mirror never stayed in sync for the switch ({status})");
                    return Err(self.roll_back(Stop::Error(e)));
                }
                // The device may be suspended or `/` frozen: no I/O to `/`, exit for the guardian.
                Err(e) if switch::unconfirmed(&e) => self.stuck(&e),
                // switch_to_target resumed the mirror on its error paths: go back to the source.
                Err(e) => return Err(self.roll_back(Stop::Error(e))),
            }
        }
    }

    /// `--verify`: compare the source with the target (and clones) while they are in sync.
    fn verify_copy(&mut self) -> Result<()> {
        let used_only = self.info.as_ref().is_some_and(|i| i.mode == "used");
        let mount = self.mount.as_ref().map(|m| m.mount_point.clone());
        let size = self.journal.source.size_bytes;
        let ranges = verify::ranges(mount.as_deref(), self.w.devnum, size, used_only)?;
        let total: u64 = ranges.iter().map(|(s, e)| e - s).sum();
        self.progress.event(
            "verifying",
            &format!(
                "verifying: comparing {} of {} with {} ({})",
                human(Bytes(total.into())),
                self.source.display(),
                self.target.display(),
                if used_only {
                    "the blocks in use"
                } else {
                    "the whole device"
                }
            ),
            json!({"bytes": total, "used_only": used_only}),
        );
        let mut legs = vec![self.target.clone()];
        legs.extend(self.clones.iter().cloned());
        let t = Instant::now();
        let v = verify::verify(&self.source, &legs, &ranges, mount.as_deref())?;
        self.journal.verified_bytes = Some(v.bytes);
        self.journal.save()?;
        self.progress.event(
            "verified",
            &format!(
                "verified {} in {:.1} s: identical{}",
                human(Bytes(v.bytes.into())),
                t.elapsed().as_secs_f64(),
                if v.transient > 0 {
                    format!(
                        " ({} difference(s) from writes in flight settled on re-read)",
                        v.transient
                    )
                } else {
                    String::new()
                }
            ),
            json!({"verified_bytes": v.bytes, "mismatches": 0, "transient": v.transient}),
        );
        Ok(())
    }

    /// Before the switch: put the wrapper back on the source and record why.
    fn roll_back(&mut self, stop: Stop) -> anyhow::Error {
        if let Stop::Error(e) = &stop {
            if switch::unconfirmed(e) {
                self.stuck(e);
            }
        }
        let src = self.source.display();
        let back = format!(
            "rolled back: {} maps {src} alone again, nothing lost",
            self.w.name
        );
        let (why, err): (String, anyhow::Error) = match stop {
            Stop::SourceFailed(msg) => {
                // Going back to a source with failed writes could lose data: keep the mirror.
                let e = anyhow!(
                    "the source {src} failed during the copy: {msg}; the mirror is left in place so no \
                     write is lost (see `rootshift status`)"
                );
                self.journal.error = Some(format!("{e:#}"));
                let _ = self.journal.save();
                return e;
            }
            Stop::Signal(sig) => (
                format!("{sig} received"),
                Interrupted {
                    signal: sig,
                    detail: back.clone(),
                }
                .into(),
            ),
            Stop::TargetFailed(msg) => (msg.clone(), anyhow!("{msg}; {back}")),
            Stop::Error(e) => (format!("{e:#}"), e.context(back.clone())),
        };
        if let Err(rb) = self.backend.detach_target(&self.source) {
            if switch::unconfirmed(&rb) {
                self.stuck(&rb.context(why));
            }
            self.journal.error = Some(format!("{why}; rolling back failed: {rb:#}"));
            let _ = self.journal.save();
            return anyhow!("{why}, and rolling back to {src} failed: {rb:#}");
        }
        self.journal.error = Some(why.clone());
        let _ = self.journal.set_step(Step::Aborted);
        self.progress.event(
            "aborted",
            &format!("aborted ({why}): back on {src} alone, nothing lost"),
            json!({"reason": why, "source": self.journal.source}),
        );
        let mut targets = vec![self.target.clone()];
        targets.extend(self.clones.iter().cloned());
        clear_half_copies(&targets, &self.progress);
        err
    }

    /// switched → grown → done. Idempotent: `--resume` runs it again after a crash.
    fn finish(&mut self) -> Result<()> {
        if !self.journal.step.switched() {
            self.journal.set_step(Step::Switched)?;
        }
        failpoint::hit("migrate::journal-switched")?;
        let dev_size = match self.backend.grow_device(&self.target) {
            Err(e) if switch::unconfirmed(&e) => self.stuck(&e),
            r => r?,
        };
        failpoint::hit("migrate::device-grown")?;
        if let Some(m) = &self.mount {
            let g = grow_mounted(&m.mount_point, &m.fs_type, dev_size).with_context(|| {
                format!(
                    "growing the {} filesystem on {} (the data is safe on {}; `rootshift migrate --resume` retries)",
                    m.fs_type,
                    m.mount_point.display(),
                    self.target.display()
                )
            })?;
            self.journal.fs_before_bytes.get_or_insert(g.before);
            self.journal.fs_after_bytes = Some(g.after);
            self.progress.event(
                "grown",
                &format!(
                    "grew {} ({}) from {} to {}",
                    m.mount_point.display(),
                    m.fs_type,
                    human(Bytes(g.before.into())),
                    human(Bytes(g.after.into()))
                ),
                json!({"mount_point": m.mount_point, "fs_type": m.fs_type, "before_bytes": g.before, "after_bytes": g.after}),
            );
        }
        self.journal.set_step(Step::Grown)?;
        failpoint::hit("migrate::fs-grown")?;
        // The detached source still carries the filesystem's UUID: give it a new one now, so no
        // boot can ever take it for the root again (a live medium's image needs nothing).
        if !self.journal.source_live && self.journal.source_uuid_changed.is_none() {
            if let Some(m) = self
                .mount
                .as_ref()
                .filter(|m| m.mount_point == std::path::Path::new("/"))
            {
                match finish::ids::set_uuid_offline(&self.source, &m.fs_type) {
                    Ok(u) => {
                        self.journal.source_uuid_changed = Some(u.clone());
                        self.journal.save()?;
                        self.progress.event(
                            "source-id",
                            &format!("the old device {} got the new filesystem UUID {u}", self.source.display()),
                            json!({"device": self.source.display(), "uuid": u}),
                        );
                    }
                    Err(e) => self.progress.event(
                        "warning",
                        &format!(
                            "the old device {} still carries the root's filesystem UUID ({e:#}); remove it or \
                             change its UUID before the next boot",
                            self.source.display()
                        ),
                        json!({"device": self.source.display(), "error": format!("{e:#}")}),
                    ),
                }
            }
        }
        match crate::live::release_old(&self.source) {
            Ok(r) if r.is_empty() => {}
            Ok(r) => self.progress.event(
                "released",
                &format!("released the old device stack: {}", r.join("; ")),
                json!({"released": r}),
            ),
            Err(e) => self.progress.event(
                "released",
                &format!("the old device stack was not released: {e:#}"),
                json!({"released": [], "error": format!("{e:#}")}),
            ),
        }
        self.journal.set_step(Step::Done)?;
        if let Some(sig) = self.signals.pending() {
            self.progress.event(
                "signal-deferred",
                &format!(
                    "{sig} arrived after the point of no return: the migration was finished first"
                ),
                json!({"signal": sig}),
            );
        }

        let free = self.source.holders().is_empty();
        let copy_s = self.journal.copy_seconds.unwrap_or(0.0);
        let rate = if copy_s > 0.0 {
            *self.to_copy as f64 / copy_s
        } else {
            0.0
        };
        let window_ms = self.journal.switch_window_ms.unwrap_or(0.0);
        let what = self
            .mount
            .as_ref()
            .map(|m| format!("{} ({})", m.mount_point.display(), m.fs_type))
            .unwrap_or_else(|| self.w.name.clone());
        let mode = self.journal.copy_mode.clone().unwrap_or_default();
        self.progress.event(
            "done",
            &format!(
                "done: {what} moved from {} to {} in {:.1} s ({mode} copy of {} in {:.1} s at {}/s, switch window {window_ms:.1} ms); {} {}",
                self.source.display(),
                self.target.display(),
                self.t_start.elapsed().as_secs_f64(),
                human(self.to_copy),
                copy_s,
                human(Bytes(rate as u128)),
                self.source.display(),
                if free { "is no longer used" } else { "is still held by something" }
            ),
            json!({"source": self.journal.source, "target": self.journal.target, "seconds": self.t_start.elapsed().as_secs_f64(),
                   "copy_seconds": copy_s, "rate_bytes_per_sec": rate.round() as u64, "switch_window_ms": window_ms,
                   "fs_before_bytes": self.journal.fs_before_bytes, "fs_after_bytes": self.journal.fs_after_bytes,
                   "source_free": free, "copy_mode": mode, "region_bytes": self.journal.region_bytes,
                   "copied_bytes": *self.to_copy as u64}),
        );
        Ok(())
    }

    /// After the switch: every clone is checked and gets its own filesystem UUID and a label
    /// suffix, offline (it is detached and unmounted), so no two devices share an identity.
    fn finish_clones(&mut self) -> Result<()> {
        let fs_type = self
            .mount
            .as_ref()
            .map(|m| m.fs_type.clone())
            .unwrap_or_default();
        for (i, c) in self.clones.clone().iter().enumerate() {
            if i < self.journal.clones_done {
                continue;
            }
            let n = i + 1;
            let r = finish::clone_identity(c, &fs_type, n).with_context(|| {
                format!(
                    "giving the clone {} its own identity (the system runs on {}, nothing is lost; \
                     `rootshift migrate --resume` retries)",
                    c.display(),
                    self.target.display()
                )
            })?;
            self.progress.event(
                "clone",
                &format!("clone {n} on {}: checked, UUID {}, label {}", c.display(), r.uuid, r.label),
                json!({"clone": n, "device": c.display(), "uuid": r.uuid, "label": r.label, "check": r.check}),
            );
            self.journal.clones_done = n;
            self.journal.save()?;
        }
        Ok(())
    }

    /// After `done`: the install step, when it was asked for.
    fn install(&mut self) -> Result<()> {
        let Some(plan) = self.install.take() else {
            return Ok(());
        };
        let mut rec = self.journal.install.clone().unwrap_or_default();
        rec.source_uuid = self.journal.source_uuid_changed.clone();
        let node = self.w.node();
        let journal = &mut self.journal;
        let res = finish::run(
            &plan,
            &node,
            &self.target,
            Some(&self.source),
            &mut rec,
            &self.progress,
            |r| {
                journal.install = Some(r.clone());
                let _ = journal.save();
            },
        );
        installed(
            res,
            &mut rec,
            &mut self.journal,
            &self.progress,
            &self.target,
        )
    }

    /// A suspend or freeze whose undo is not confirmed: the device under `/` may be suspended or
    /// its filesystem frozen, and any write or fsync there would hang. The journal goes to /run
    /// only, the message to stderr unless that is a file on the device, then exit at once (no
    /// destructors: they may write), so the guardian resumes and thaws.
    fn stuck(&mut self, e: &anyhow::Error) -> ! {
        self.journal.error = Some(format!("{e:#}"));
        let _ = self.journal.save_run_only();
        if !stderr_on(self.w.devnum) {
            let msg = format!("rootshift: error: {e:#}\n");
            let _ = nix::unistd::write(std::io::stderr(), msg.as_bytes());
        }
        std::process::exit(crate::error::exit::FAILED)
    }

    fn switched(&mut self, window: Duration) -> Result<()> {
        failpoint::hit("migrate::switched")?;
        let window_ms = window.as_secs_f64() * 1e3;
        self.journal.switch_window_ms = Some(window_ms);
        self.journal.set_step(Step::Switched)?;
        self.progress.event(
            "switched",
            &format!(
                "switched {} to {} alone (switch window {window_ms:.1} ms)",
                self.w.name,
                self.target.display()
            ),
            json!({"window_ms": window_ms, "target": self.journal.target}),
        );
        Ok(())
    }
}

/// `rootshift migrate TARGET` (or `--resume`).
pub fn migrate(opts: &MigrateOptions) -> Result<()> {
    preflight::require_root()?;
    let _lock = Lock::acquire()?;
    migrate_locked(opts)
}

/// `migrate` for a caller that holds the lock already (`rootshift install`).
pub fn migrate_locked(opts: &MigrateOptions) -> Result<()> {
    let dm = Dm::open().ok();
    let w = wrapper::find(dm.as_ref(), opts.name.as_deref())?;
    if opts.resume {
        return resume(w, opts);
    }
    let mut backend = backend::open(&w)?;
    if backend.mirroring()? {
        return Err(refuse(
            format!("a migration of {} is already in progress (a target is attached)", w.name),
            Some("`rootshift migrate --resume` continues it, `rootshift abort` goes back to the source"),
        ));
    }
    let source_dev = *backend
        .legs()?
        .first()
        .ok_or_else(|| anyhow!("{} maps no device", w.name))?;
    let source = BlockDev::from_devnum(source_dev).context("finding the source device")?;
    let target = preflight::resolve_target(&opts.target)?;
    let checked = preflight::check_target(&w, &source, &target, opts.force)?;
    let mut clones: Vec<BlockDev> = vec![];
    for c in &opts.clones {
        let dev = preflight::resolve_target(c)?;
        if dev.devnum == target.devnum || clones.iter().any(|x| x.devnum == dev.devnum) {
            return Err(refuse(
                format!(
                    "{} is named twice (target and clones must be distinct devices)",
                    dev.display()
                ),
                None,
            ));
        }
        preflight::check_target(&w, &source, &dev, opts.force)
            .context("checking a clone device")?;
        clones.push(dev);
    }
    crate::live::overlay_check(&source, crate::live::OVERLAY_NEED_BYTES)?;
    let mount = mounts::mounts_of(w.devnum)?.into_iter().next();
    let plan = CopyPlan {
        mode: opts.copy,
        region: opts.region_size.map(region_sectors).transpose()?,
        mount: mount
            .as_ref()
            .map(|m| (m.mount_point.clone(), m.fs_type.clone())),
        clones: clones.clone(),
    };
    backend.check_plan(&plan)?;
    if !clones.is_empty()
        && !mount
            .as_ref()
            .is_some_and(|m| m.fs_type.starts_with("ext") || m.fs_type == "xfs")
    {
        return Err(refuse(
            "clones need the wrapper's ext4 or xfs filesystem mounted: each clone is detached with it frozen \
             and then gets its own filesystem UUID",
            None,
        ));
    }
    let live_source = finish::is_live_source(&source);
    let install = if opts.install.unwrap_or(live_source) {
        Some(finish::preflight(
            opts.finish.clone(),
            Some(&source),
            live_source,
            &target,
            mount.as_ref(),
        )?)
    } else {
        None
    };
    let what = mount
        .as_ref()
        .map(|m| format!("{} ({})", m.mount_point.display(), m.fs_type))
        .unwrap_or_else(|| w.name.clone());
    let then = install
        .as_ref()
        .map(|p| {
            format!(
                " Then make it boot on its own ({}, {} initramfs).",
                p.boot.bootloader.as_str(),
                if p.initramfs == finish::initramfs::Mode::Keep {
                    "prebuilt"
                } else {
                    "regenerated"
                }
            )
        })
        .unwrap_or_default();
    confirm(
        &format!(
            "Move {what} from {} ({}) to {} ({})? Everything on {} will be overwritten.{then}",
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

    // From here on the kernel's state changes: a guardian resumes/thaws if we die mid-change.
    let guardian = Guardian::start(&w, mount.as_ref().map(|m| m.mount_point.as_path()))?;
    let signals = Signals::install()?;
    let progress = Progress::new(opts.json);
    let mut journal = Journal::new(
        &w.name,
        backend.kind(),
        record(&source, checked.source_size),
        record(&target, checked.target_size),
    );
    journal.source_live = live_source;
    // An installed system's root: keep the journal inside it too, where the boot hook finds it
    // after a crash (a live medium's root lives in RAM: nothing would survive there).
    if !live_source
        && mount
            .as_ref()
            .is_some_and(|m| m.mount_point == std::path::Path::new("/"))
    {
        journal.persist_root = Some(PathBuf::from("/"));
    }
    journal.clones = clones
        .iter()
        .map(|c| record(c, c.size().unwrap_or(Bytes(0))))
        .collect();
    journal.install = install.as_ref().map(|p| finish::Record {
        bootloader: p.boot.bootloader.as_str().into(),
        initramfs: format!("{:?}", p.initramfs).to_lowercase(),
        state: "planned".into(),
        ..Default::default()
    });
    let mut run = Run {
        w,
        backend,
        source,
        target,
        mount,
        journal,
        progress,
        signals,
        t_start: Instant::now(),
        to_copy: checked.source_size,
        info: None,
        install,
        clones,
        verify: opts.verify,
        _guardian: guardian,
    };
    run.journal.save()?;
    run.progress.event(
        "start",
        &format!(
            "mirroring {} onto {} through {}",
            run.source.display(),
            run.target.display(),
            run.w.name
        ),
        json!({"wrapper": run.w.name, "backend": run.backend.kind(), "source": run.journal.source, "target": run.journal.target}),
    );

    // mirroring
    let attached = failpoint::hit("migrate::before-attach")
        .and_then(|_| run.backend.attach(&run.source, &run.target, &plan));
    let info = match attached {
        Ok(i) => i,
        Err(e) if switch::unconfirmed(&e) => run.stuck(&e),
        Err(e) => {
            run.journal.error = Some(format!("{e:#}"));
            let _ = run.journal.set_step(Step::Aborted);
            return Err(e);
        }
    };
    run.journal.copy_mode = Some(info.mode.to_string());
    run.journal.region_bytes = Some(*info.region as u64);
    run.journal.copied_bytes = Some(*info.to_copy as u64);
    run.journal.save()?;
    run.to_copy = info.to_copy;
    run.progress.event(
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
    run.info = Some(info);
    if let Err(e) = failpoint::hit("migrate::attached") {
        return Err(run.roll_back(Stop::Error(e)));
    }
    let window = run.copy_and_switch()?;
    // ---- switched: the point of no return ----
    run.switched(window)?;
    run.finish()?;
    run.finish_clones()?;
    run.install()
}

/// Whether our stderr is a file on the device `dev` (writing to it could hang while suspended).
fn stderr_on(dev: DevNum) -> bool {
    nix::sys::stat::fstat(std::io::stderr()).is_ok_and(|st| DevNum::from_dev_t(st.st_dev) == dev)
}

/// Keep the journal's copy in the root filesystem current too (installed systems).
fn keep_persisted(j: &mut Journal, w: &Wrapper) {
    let on_root = mounts::mounts_of(w.devnum)
        .ok()
        .and_then(|m| m.into_iter().next())
        .is_some_and(|m| m.mount_point == std::path::Path::new("/"));
    if on_root && !j.source_live {
        j.persist_root = Some(PathBuf::from("/"));
    }
}

/// The device a journal record names, in this boot: its number if it still has the recorded
/// identity, else the device with that identity. Never `current` (the device / runs on).
fn find_recorded(r: &DevRecord, current: DevNum) -> Option<BlockDev> {
    let id = r.identity.clone();
    let ok = |d: &BlockDev| {
        d.devnum != current
            && id
                .as_ref()
                .is_none_or(|i| i.matches(&recovery::Identity::of(d)))
    };
    if let Some(d) = r
        .dev
        .parse::<DevNum>()
        .ok()
        .and_then(|d| BlockDev::from_devnum(d).ok())
    {
        if ok(&d) {
            return Some(d);
        }
    }
    let id = id?;
    std::fs::read_dir("/sys/class/block")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("dev")).ok())
        .filter_map(|s| s.trim().parse::<DevNum>().ok())
        .filter_map(|d| BlockDev::from_devnum(d).ok())
        .find(|d| d.devnum != current && id.matches(&recovery::Identity::of(d)))
}

/// After a roll-back: clear the first MiB of the targets, so no half copy carries the
/// filesystem's UUID for a later boot to pick. Best effort (a failing target may refuse).
fn clear_half_copies(targets: &[BlockDev], progress: &Progress) {
    use std::io::Write;
    for t in targets {
        if !t.holders().is_empty() || mounts::mounts_of(t.devnum).is_ok_and(|m| !m.is_empty()) {
            continue;
        }
        let res = std::fs::OpenOptions::new()
            .write(true)
            .open(&t.path)
            .and_then(|mut f| {
                let n = t.size().map(|b| (*b as u64).min(1 << 20)).unwrap_or(0) as usize;
                f.write_all(&vec![0u8; n])?;
                f.sync_all()
            });
        match res {
            Ok(()) => progress.event(
                "cleared",
                &format!(
                    "cleared the first MiB of {}: the half copy no longer carries the filesystem",
                    t.display()
                ),
                json!({"device": t.display()}),
            ),
            Err(e) => progress.event(
                "warning",
                &format!("could not clear the half copy on {}: {e}", t.display()),
                json!({"device": t.display(), "error": e.to_string()}),
            ),
        }
    }
}

/// Report the install step's outcome (event, journal); on failure say where the system stands.
fn installed(
    res: Result<finish::Outcome>,
    rec: &mut finish::Record,
    journal: &mut Journal,
    progress: &Progress,
    target: &BlockDev,
) -> Result<()> {
    match res {
        Ok(o) => {
            journal.install = Some(rec.clone());
            journal.save()?;
            progress.event(
                "installed",
                &format!(
                    "installed: {} boots on its own ({}, root UUID {}){}",
                    o.target,
                    o.bootloader,
                    o.root_uuid,
                    o.machine_id
                        .as_ref()
                        .map(|m| format!(", new machine-id {m}"))
                        .unwrap_or_default()
                ),
                serde_json::to_value(&o).unwrap_or_default(),
            );
            Ok(())
        }
        Err(e) => {
            rec.state = "failed".into();
            rec.error = Some(format!("{e:#}"));
            journal.install = Some(rec.clone());
            let _ = journal.save();
            Err(e.context(format!(
                "the system runs on {} with all its data, but making it boot on its own failed; fix the cause                  and run `rootshift finish`",
                target.display()
            )))
        }
    }
}

/// `rootshift finish`: make the system that runs from its target bootable on its own.
pub fn finish_command(
    name: Option<&str>,
    yes: bool,
    json_out: bool,
    opts: finish::Options,
) -> Result<()> {
    preflight::require_root()?;
    let _lock = Lock::acquire()?;
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
    let legs = backend.legs()?;
    let [leg] = legs.as_slice() else {
        bail!("{} maps {} devices", w.name, legs.len());
    };
    let target = BlockDev::from_devnum(*leg).context("finding the device / runs on")?;
    let mut journal = Journal::load(&w.name)?;
    let migrated_here = journal
        .as_ref()
        .filter(|j| j.step.switched() && j.target.dev == leg.to_string());
    let live_source = migrated_here.is_some_and(|j| j.source_live);
    let source = migrated_here
        .and_then(|j| j.source.dev.parse::<DevNum>().ok())
        .and_then(|d| BlockDev::from_devnum(d).ok())
        .filter(|s| s.holders().is_empty());
    let mount = mounts::mounts_of(w.devnum)?.into_iter().next();
    let plan = finish::preflight(opts, source.as_ref(), live_source, &target, mount.as_ref())?;
    confirm(
        &format!(
            "Make {} boot on its own ({}; new filesystem UUID, fstab, initramfs)?",
            target.display(),
            plan.boot.bootloader.as_str()
        ),
        yes,
    )?;
    let progress = Progress::new(json_out);
    let mut rec = finish::Record {
        bootloader: plan.boot.bootloader.as_str().into(),
        initramfs: format!("{:?}", plan.initramfs).to_lowercase(),
        state: "planned".into(),
        ..Default::default()
    };
    let node = w.node();
    let res = finish::run(
        &plan,
        &node,
        &target,
        source.as_ref(),
        &mut rec,
        &progress,
        |r| {
            if let Some(j) = journal.as_mut() {
                j.install = Some(r.clone());
                let _ = j.save();
            }
        },
    );
    match journal.as_mut() {
        Some(j) => installed(res, &mut rec, j, &progress, &target),
        None => res.map(|o| {
            progress.event(
                "installed",
                &format!(
                    "installed: {} boots on its own ({}, root UUID {})",
                    o.target, o.bootloader, o.root_uuid
                ),
                serde_json::to_value(&o).unwrap_or_default(),
            )
        }),
    }
}

/// The message for a refused `--resume` (`legs`, `target`: what the kernel maps, the journal's
/// target, once read).
fn resume_refused(
    r: core::ResumeRefusal,
    w: &Wrapper,
    legs: &[DevNum],
    target: Option<DevNum>,
) -> anyhow::Error {
    match r {
        core::ResumeRefusal::NoJournal => refuse(
            format!(
                "there is no interrupted migration of {} to resume (no journal in {})",
                w.name,
                journal::DIR
            ),
            Some("start one with `rootshift migrate TARGET`"),
        ),
        core::ResumeRefusal::Over(step) => refuse(
            format!(
                "the last migration of {} is {} already; nothing to resume",
                w.name,
                step.as_str()
            ),
            None,
        ),
        core::ResumeRefusal::NotAttached => refuse(
            format!(
                "{} maps {} alone: the interrupted migration never attached the target, or was rolled back",
                w.name,
                legs.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
            ),
            Some("start again with `rootshift migrate TARGET`"),
        ),
        core::ResumeRefusal::OtherTarget => refuse(
            format!(
                "{} mirrors onto {legs:?}, not the journal's target {}",
                w.name,
                target.map(|t| t.to_string()).unwrap_or_default()
            ),
            Some("`rootshift abort` goes back to the source"),
        ),
    }
}

/// `rootshift migrate --resume`: continue an interrupted migration from what the kernel shows.
fn resume(w: Wrapper, opts: &MigrateOptions) -> Result<()> {
    let journal = Journal::load(&w.name)?;
    // what the journal alone refuses comes first, before any device is looked at
    if let Err(r) = core::resume_from(journal.as_ref().map(|j| j.step)) {
        return Err(resume_refused(r, &w, &[], None));
    }
    let Some(journal) = journal else {
        unreachable!("core::resume_from refuses without a journal")
    };
    let backend = backend::open(&w)?;
    let parse = |s: &str| s.parse::<DevNum>().map_err(|e| anyhow!("journal: {e}"));
    let source = BlockDev::from_devnum(parse(&journal.source.dev)?)?;
    let target = BlockDev::from_devnum(parse(&journal.target.dev)?)?;
    let legs = backend.legs()?;
    let mirroring = backend.mirroring()?;
    let past = backend.past_point_of_no_return(source.devnum)?;
    let seen = core::ResumeSeen {
        mirroring,
        target_attached: legs.contains(&target.devnum),
        on_target_alone: !mirroring && legs == [target.devnum],
        past,
    };
    let action = core::may_resume(Some(journal.step), seen);
    if let core::ResumeAction::Refuse(r) = action {
        return Err(resume_refused(r, &w, &legs, Some(target.devnum)));
    }
    let mount = mounts::mounts_of(w.devnum)?.into_iter().next();
    let guardian = Guardian::start(&w, mount.as_ref().map(|m| m.mount_point.as_path()))?;
    let mut journal = journal;
    keep_persisted(&mut journal, &w);
    let mut run = Run {
        to_copy: Bytes(u128::from(
            journal.copied_bytes.unwrap_or(journal.source.size_bytes),
        )),
        w,
        backend,
        source,
        target,
        mount,
        journal,
        progress: Progress::new(opts.json),
        signals: Signals::install()?,
        t_start: Instant::now(),
        info: None,
        install: None,
        clones: vec![],
        verify: opts.verify,
        _guardian: guardian,
    };
    run.clones = run
        .journal
        .clones
        .iter()
        .filter_map(|c| c.dev.parse::<DevNum>().ok())
        .filter_map(|d| BlockDev::from_devnum(d).ok())
        .collect();
    run.journal.error = None;
    run.progress.event(
        "resume",
        &format!(
            "resuming the migration of {} from {} to {} (step {})",
            run.w.name,
            run.source.display(),
            run.target.display(),
            if action == core::ResumeAction::CopyAndSwitch { "mirroring" } else { "switched" }
        ),
        json!({"wrapper": run.w.name, "step": run.journal.step, "mirroring": mirroring, "past_point_of_no_return": past}),
    );
    if action == core::ResumeAction::CopyAndSwitch {
        let window = run.copy_and_switch()?;
        run.switched(window)?;
    }
    run.finish()?;
    run.finish_clones()?;
    if run
        .journal
        .install
        .as_ref()
        .is_some_and(|r| r.state != "done")
    {
        run.progress.event(
            "install-pending",
            "the migration was asked to install the target: run `rootshift finish` to do it now",
            json!({}),
        );
    }
    Ok(())
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
    let switched_msg = |path: &str| {
        refuse(
            format!(
                "the system already runs on the target {path}: the switch is the point of no return, there is nothing to abort"
            ),
            Some("the source no longer has the latest writes; `rootshift migrate --resume` finishes the migration"),
        )
    };
    let seen = if backend.mirroring()? {
        core::AbortSeen::Mirror {
            past: backend.past_point_of_no_return(first)?,
        }
    } else if let Some(j) = journal.as_ref() {
        let leg_id = recovery::Identity::of(&BlockDev::from_devnum(first)?);
        core::AbortSeen::Single {
            is_target: j.target.dev == first.to_string()
                || j.target
                    .identity
                    .as_ref()
                    .is_some_and(|i| i.matches(&leg_id)),
        }
    } else {
        core::AbortSeen::Single { is_target: false }
    };
    let action = core::may_abort(journal.as_ref().map(|j| j.step), seen);
    if action == core::AbortAction::Refuse {
        let t = journal
            .as_ref()
            .map(|j| j.target.path.clone())
            .unwrap_or_else(|| "target".into());
        return Err(switched_msg(&t));
    }
    if action == core::AbortAction::RollBack {
        let source = BlockDev::from_devnum(first)?;
        let mount = mounts::mounts_of(w.devnum)?.into_iter().next();
        let _guardian = Guardian::start(&w, mount.as_ref().map(|m| m.mount_point.as_path()))?;
        let attached: Vec<BlockDev> = legs
            .iter()
            .skip(1)
            .filter_map(|d| BlockDev::from_devnum(*d).ok())
            .collect();
        backend.detach_target(&source)?;
        if let Some(j) = journal.as_mut() {
            keep_persisted(j, &w);
            j.error = Some("aborted by `rootshift abort`".into());
            j.set_step(Step::Aborted)?;
        }
        progress.event(
            "aborted",
            &format!("aborted: {} maps {} alone again", w.name, source.display()),
            json!({"wrapper": w.name, "source": source.devnum}),
        );
        clear_half_copies(&attached, &progress);
        return Ok(());
    }
    if let Some(j) = journal.as_mut() {
        keep_persisted(j, &w);
        let leg = BlockDev::from_devnum(first)?;
        if action == core::AbortAction::Abandon {
            // Interrupted (a crash, a reboot) while the source still had every write, and the
            // system runs from it: the migration is abandoned and its half copy cleared.
            j.error =
                Some("interrupted before the switch; found running on the source alone".into());
            j.set_step(Step::Aborted)?;
            let half: Vec<BlockDev> = std::iter::once(&j.target)
                .chain(j.clones.iter())
                .filter_map(|r| find_recorded(r, first))
                .collect();
            progress.event(
                "aborted",
                &format!(
                    "the interrupted migration to {} is abandoned; {} maps {} alone",
                    j.target.path,
                    w.name,
                    leg.display()
                ),
                json!({"wrapper": w.name, "source": first, "target": j.target.path}),
            );
            clear_half_copies(&half, &progress);
            return Ok(());
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
