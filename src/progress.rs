//! Progress output: a redrawn bar on a TTY, plain periodic lines otherwise (journals, logs),
//! JSON lines on stdout with `--json` for installers.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::units::human;

enum Mode {
    /// The bar exists only while the copy runs.
    Tty(Option<ProgressBar>),
    Plain {
        last: Option<Instant>,
        last_pct: i64,
    },
    Json,
}

pub struct Progress {
    mode: Mode,
    t0: Instant,
}

// ---- the terminal going away --------------------------------------------------------------
// SIGHUP means the terminal (an SSH session, a closed window) went away, not "stop": the work
// goes on (only SIGINT/SIGTERM or `rootshift abort` roll back). From then on writes to the old
// terminal fail (EIO) and `eprintln!` would panic, so the first output after the hang-up moves
// stdout and stderr onto a log file in /run/rootshift (tmpfs: never the root being moved).

static HANGUP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
/// Every event also goes here (one JSON object per line), for `rootshift status --follow`.
static EVENT_LOG: std::sync::Mutex<Option<std::fs::File>> = std::sync::Mutex::new(None);

/// From now on write every event and progress update, as JSON lines, to `path` as well
/// (`crate::session::EVENTS`; tmpfs).
pub fn log_events_to(path: &std::path::Path) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)?;
    if let Ok(mut g) = EVENT_LOG.lock() {
        *g = Some(f);
    }
    Ok(())
}

/// Append one event to the event log (if one is open).
pub fn log_event(v: &Value) {
    if let Ok(mut g) = EVENT_LOG.lock() {
        if let Some(f) = g.as_mut() {
            let _ = writeln!(f, "{}", versioned(v));
        }
    }
}
static MOVED: AtomicBool = AtomicBool::new(false);
/// Where the output goes after a hang-up.
pub const HANGUP_LOG: &str = "/run/rootshift/output.log";

/// Treat SIGHUP as "the terminal went away" (see above). Idempotent.
pub fn watch_hangup() -> std::io::Result<()> {
    if HANGUP.get().is_some() {
        return Ok(());
    }
    let flag = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&flag))?;
    let _ = HANGUP.set(flag);
    Ok(())
}

/// Whether SIGHUP arrived.
pub fn hung_up() -> bool {
    HANGUP.get().is_some_and(|f| f.load(Ordering::SeqCst))
}

/// After a hang-up, once: stdout and stderr onto [`HANGUP_LOG`] (appended). Returns the log's
/// path the first time it moves them.
fn move_output_after_hangup() -> Option<PathBuf> {
    if !hung_up() || MOVED.swap(true, Ordering::SeqCst) {
        return None;
    }
    let _ = std::fs::create_dir_all("/run/rootshift");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(HANGUP_LOG)
        .ok()?;
    let _ = nix::unistd::dup2_stdout(&f);
    let _ = nix::unistd::dup2_stderr(&f);
    Some(PathBuf::from(HANGUP_LOG))
}

/// Bytes per second and seconds left, from the average since the copy started.
pub fn rate_eta(done: u64, total: u64, elapsed: Duration) -> (Option<f64>, Option<f64>) {
    let secs = elapsed.as_secs_f64();
    if secs < 0.2 || done == 0 {
        return (None, None);
    }
    let rate = done as f64 / secs;
    let eta = (total.saturating_sub(done)) as f64 / rate;
    (Some(rate), Some(eta))
}

impl Progress {
    pub fn new(json: bool) -> Progress {
        let mode = if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            Mode::Tty(None)
        } else {
            Mode::Plain {
                last: None,
                last_pct: -1,
            }
        };
        Progress {
            mode,
            t0: Instant::now(),
        }
    }

    /// After SIGHUP: move the output off the dead terminal (once) and say so there.
    fn after_hangup(&self) {
        if let Some(log) = move_output_after_hangup() {
            if let Mode::Tty(Some(bar)) = &self.mode {
                bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            }
            let line = format!(
                "SIGHUP: the terminal went away; the migration goes on (only SIGINT/SIGTERM or \
                 `rootshift abort` roll back); output continues in {}",
                log.display()
            );
            match self.mode {
                Mode::Json => emit(&json!({"event": "hangup", "message": line, "log": log})),
                _ => {
                    let _ = writeln!(std::io::stderr(), "rootshift: {line}");
                }
            }
        }
    }

    pub fn is_json(&self) -> bool {
        matches!(self.mode, Mode::Json)
    }

    /// Restart the clock for rate/ETA (call when the copy starts).
    pub fn start_copy(&mut self, total: u64) {
        self.t0 = Instant::now();
        if let Mode::Tty(slot) = &mut self.mode {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:40}] {percent:>3}% {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix("copying");
            *slot = Some(bar);
        }
    }

    pub fn copy_elapsed(&self) -> Duration {
        self.t0.elapsed()
    }

    /// Report copy progress. `extra` is merged into the JSON event.
    pub fn update(&mut self, done: u64, total: u64, extra: Value) {
        self.update_named("progress", done, total, extra)
    }

    /// [`Progress::update`] under another event name (`file-progress`: a file-by-file copy,
    /// which has no mirror regions or legs).
    pub fn update_named(&mut self, event: &str, done: u64, total: u64, extra: Value) {
        self.after_hangup();
        let (rate, eta) = rate_eta(done, total, self.t0.elapsed());
        let pct = if total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / total as f64
        };
        let mut ev = json!({
            "event": event,
            "done_bytes": done,
            "total_bytes": total,
            "percent": (pct * 10.0).round() / 10.0,
            "rate_bytes_per_sec": rate.map(|r| r.round() as u64),
            "eta_seconds": eta.map(|e| (e * 10.0).round() / 10.0),
        });
        merge(&mut ev, extra);
        log_event(&ev);
        match &mut self.mode {
            Mode::Tty(Some(bar)) => {
                bar.set_length(total);
                bar.set_position(done);
            }
            Mode::Tty(None) => {}
            Mode::Plain { last, last_pct } => {
                let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(5));
                let step = (pct as i64) / 10 > *last_pct / 10;
                if due || step || done == total {
                    *last = Some(Instant::now());
                    *last_pct = pct as i64;
                    let rate_s = rate
                        .map(|r| format!(", {}/s", human(devicemapper::Bytes(r as u128))))
                        .unwrap_or_default();
                    let eta_s = eta.map(|e| format!(", ETA {:.0}s", e)).unwrap_or_default();
                    eprintln!(
                        "copying: {:5.1}% {} of {}{rate_s}{eta_s}",
                        pct,
                        human(devicemapper::Bytes(done as u128)),
                        human(devicemapper::Bytes(total as u128))
                    );
                }
            }
            Mode::Json => emit(&ev),
        }
    }

    /// Stop drawing the bar (before the switch and before any other output).
    pub fn finish_copy(&mut self) {
        if let Mode::Tty(slot) = &mut self.mode {
            if let Some(bar) = slot.take() {
                bar.finish();
            }
        }
    }

    /// A named step: a JSON event with `--json`, else one human line on stderr.
    pub fn event(&self, name: &str, human_line: &str, fields: Value) {
        self.after_hangup();
        let mut ev = json!({ "event": name });
        merge(&mut ev, fields);
        if !human_line.is_empty() && ev.get("message").is_none() {
            let mut logged = ev.clone();
            merge(&mut logged, json!({ "message": human_line }));
            log_event(&logged);
        } else {
            log_event(&ev);
        }
        match &self.mode {
            Mode::Json => emit(&ev),
            _ if human_line.is_empty() => {}
            Mode::Tty(Some(bar)) => bar.suspend(|| eprintln!("{human_line}")),
            Mode::Tty(None) | Mode::Plain { .. } => eprintln!("{human_line}"),
        }
    }
}

fn merge(into: &mut Value, extra: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, extra) {
        a.extend(b);
    }
}

/// The version of the JSON event format (`docs/json.md`): every event carries it.
pub const EVENT_VERSION: u32 = 1;

fn versioned(v: &Value) -> Value {
    let mut v = v.clone();
    if let Value::Object(m) = &mut v {
        m.entry("version").or_insert(json!(EVENT_VERSION));
    }
    v
}

fn emit(v: &Value) {
    let v = versioned(v);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_eta_from_the_average() {
        let (r, e) = rate_eta(50, 100, Duration::from_secs(5));
        assert_eq!(r, Some(10.0));
        assert_eq!(e, Some(5.0));
        assert_eq!(rate_eta(0, 100, Duration::from_secs(5)), (None, None));
        assert_eq!(rate_eta(10, 100, Duration::from_millis(10)), (None, None));
    }
}
