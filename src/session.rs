//! A migration that outlives the shell that started it (as pvmove outlives its terminal through
//! lvmpolld, and `btrfs replace` runs in the kernel while `status` reattaches):
//!
//! - every migration writes its events, one JSON object per line, to [`EVENTS`] (tmpfs), whatever
//!   its own output is; `rootshift status --follow` reads them and shows the same progress
//!   display (TTY bar, plain lines, `--json`) from any shell;
//! - `--detach` runs the work in a transient systemd unit (`systemd-run`) where systemd runs,
//!   otherwise in a process of its own group with its output in [`OUTPUT`];
//! - while a migration runs, a logind inhibitor lock (`systemd-inhibit --mode=block`) holds off
//!   shutdown and sleep, with a reason `systemctl poweroff` shows.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::error::refuse;
use crate::progress::Progress;

/// The running (or last) migration's event stream.
pub const EVENTS: &str = "/run/rootshift/events.jsonl";
/// A detached run's output without systemd.
pub const OUTPUT: &str = "/run/rootshift/output.log";
/// Events that mean the run failed (a follower exits non-zero after them).
const FAILED: &[&str] = &["aborted", "error"];

fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Start the same command again, detached from this terminal: `args` are this process's
/// arguments without `--detach` (and with `--yes`: nobody is there to answer).
pub fn detach(args: Vec<String>, what: &str) -> Result<()> {
    let exe = std::env::current_exe().context("finding the rootshift binary")?;
    fs::create_dir_all("/run/rootshift").context("creating /run/rootshift")?;
    let unit = format!(
        "rootshift-{what}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    );
    let run = crate::tools::find("systemd-run").filter(|_| systemd_running());
    let how = if let Some(sr) = run {
        let out = Command::new(sr)
            .arg(format!("--unit={unit}"))
            .args(["--collect", "--quiet", "--service-type=exec"])
            .arg(format!("--description=rootshift {what} (detached)"))
            .arg("--")
            .arg(&exe)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .context("running systemd-run")?;
        if !out.status.success() {
            bail!(
                "systemd-run could not start the {what} in a unit of its own ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        format!("in the systemd unit {unit}.service (journalctl -u {unit})")
    } else {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(OUTPUT)
            .with_context(|| format!("opening {OUTPUT}"))?;
        Command::new(&exe)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // its own process group: the terminal's SIGINT and hang-up do not reach it
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        format!("in the background (output in {OUTPUT})")
    };
    eprintln!(
        "rootshift: the {what} runs {how}; follow it with `rootshift status --follow`, stop it \
         with `rootshift abort`"
    );
    Ok(())
}

/// The arguments to re-run this command detached: drop `--detach`, add `--yes`.
pub fn detached_args(argv: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = argv
        .into_iter()
        .skip(1)
        .filter(|a| a != "--detach")
        .collect();
    if !v.iter().any(|a| a == "--yes" || a == "-y") {
        v.push("--yes".into());
    }
    v
}

/// `--detach` needs `--yes` (there is no terminal to ask on afterwards).
pub fn require_yes_for_detach(yes: bool) -> Result<()> {
    if yes {
        Ok(())
    } else {
        Err(refuse(
            "--detach runs without a terminal to confirm on",
            Some("check the plan first, then run again with --detach --yes"),
        ))
    }
}

/// While alive, logind blocks shutdown and sleep with `why` (`systemctl poweroff` shows it).
pub struct Inhibitor {
    child: Child,
}

impl Inhibitor {
    /// Take the lock where logind runs. Where systemd does not run there is nothing to take
    /// (None, silently); where it runs but the lock cannot be had (no D-Bus, logind refusing)
    /// the run goes on without it and a `warning` event says so — never a reason to stop.
    pub fn take(why: &str, json: bool) -> Option<Inhibitor> {
        let si = crate::tools::find("systemd-inhibit").filter(|_| systemd_running())?;
        match Self::spawn(&si, why) {
            Ok(i) => Some(i),
            Err(e) => {
                Progress::new(json).event(
                    "warning",
                    &format!(
                        "no shutdown inhibitor ({e}): a poweroff or suspend during the run is not blocked (the next boot would recover, see `rootshift status`)"
                    ),
                    serde_json::json!({"what": "inhibitor", "error": e}),
                );
                None
            }
        }
    }

    /// systemd-inhibit runs its command only once logind granted the lock: the command says
    /// "held" first, so one line read tells taken (no guessing with timeouts) from refused
    /// (EOF: systemd-inhibit exited, its stderr says why). Then `cat` holds the lock until its
    /// stdin (our pipe) closes: when we exit, however we exit.
    fn spawn(si: &Path, why: &str) -> std::result::Result<Inhibitor, String> {
        let mut child = Command::new(si)
            .args(["--what=shutdown:sleep", "--who=rootshift", "--mode=block"])
            .arg(format!("--why={why}"))
            .args(["sh", "-c", "echo held && exec cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", si.display()))?;
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line);
        if line.trim() == "held" {
            drop(child.stderr.take()); // nothing more is read from it
            return Ok(Inhibitor { child });
        }
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        drop(child.stdin.take());
        let st = child.wait().map(|s| s.to_string()).unwrap_or_default();
        let err = err.trim();
        Err(format!(
            "systemd-inhibit {}{}",
            if st.is_empty() { "failed".into() } else { st },
            if err.is_empty() {
                String::new()
            } else {
                format!(": {err}")
            }
        ))
    }
}

impl Drop for Inhibitor {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Whether a migration holds the run lock now.
fn running() -> bool {
    let Ok(f) = File::open(crate::lock::PATH) else {
        return false;
    };
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockSharedNonblock).is_err()
}

/// `rootshift status --follow`: show the running migration's events as they come, with the
/// progress display of this terminal (or `--json`), until it ends.
pub fn follow(json: bool) -> Result<()> {
    // The stream of a live run: its first line names the writer. Right after `--detach` the
    // new run may not have replaced the last run's stream yet: wait (10 s) for a live writer.
    let t0 = Instant::now();
    let f = loop {
        let live = File::open(EVENTS).ok().filter(|f| {
            let mut first = String::new();
            let _ = BufReader::new(f).read_line(&mut first);
            serde_json::from_str::<Value>(&first)
                .ok()
                .and_then(|v| v["pid"].as_u64())
                .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
        });
        match (live, File::open(EVENTS)) {
            (Some(_), Ok(f)) => break f,
            (_, Ok(f)) if t0.elapsed() >= Duration::from_secs(10) => break f, // the last run's
            (_, Err(_)) if t0.elapsed() >= Duration::from_secs(10) => {
                return Err(refuse(
                    format!("no migration has written {EVENTS}"),
                    Some("start one with `rootshift migrate TARGET --detach --yes`"),
                ))
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let mut r = BufReader::new(f);
    let mut progress = Progress::new(json);
    let mut copying = false;
    let mut writer: Option<u64> = None;
    let mut failed: Option<String> = None;
    let mut line = String::new();
    loop {
        line.clear();
        let n = r.read_line(&mut line).context("reading the event stream")?;
        if n == 0 || !line.ends_with('\n') {
            // nothing new: done when the writer is gone (and the run lock free), else wait
            if n > 0 {
                let back = -(n as i64);
                r.seek(SeekFrom::Current(back))?;
            }
            let alive = writer.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
            if !alive && !running() {
                if copying {
                    progress.finish_copy();
                }
                return match failed {
                    Some(why) => Err(anyhow!("the migration did not finish: {why}")),
                    None => Ok(()),
                };
            }
            std::thread::sleep(Duration::from_millis(250));
            continue;
        }
        let Ok(ev) = serde_json::from_str::<Value>(line.trim()) else {
            continue;
        };
        let name = ev["event"].as_str().unwrap_or("").to_string();
        if name == "stream" {
            writer = ev["pid"].as_u64();
            continue;
        }
        if name == "progress" {
            let done = ev["done_bytes"].as_u64().unwrap_or(0);
            let total = ev["total_bytes"].as_u64().unwrap_or(0);
            if !copying {
                progress.start_copy(total);
                copying = true;
            }
            progress.update(done, total, ev.clone());
            continue;
        }
        if copying {
            progress.finish_copy();
            copying = false;
        }
        let msg = ev["message"].as_str().unwrap_or("").to_string();
        if FAILED.contains(&name.as_str()) {
            failed = Some(msg.clone());
        }
        if name == "error" {
            // the error line is ours to print (as our own failure), not an event to repeat
            continue;
        }
        progress.event(&name, &msg, ev.clone());
    }
}

/// Start a fresh event stream for a migration (the previous one is kept as `.1`).
pub fn start_event_log() -> Option<PathBuf> {
    let p = PathBuf::from(EVENTS);
    let _ = fs::create_dir_all("/run/rootshift");
    if p.exists() {
        let _ = fs::rename(&p, format!("{EVENTS}.1"));
    }
    crate::progress::log_events_to(&p).ok()?;
    crate::progress::log_event(&serde_json::json!({
        "event": "stream",
        "pid": std::process::id(),
        "args": std::env::args().skip(1).collect::<Vec<_>>(),
    }));
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detached_args_drop_detach_and_add_yes_once() {
        let a = |v: &[&str]| detached_args(v.iter().map(|s| s.to_string()));
        assert_eq!(
            a(&["rootshift", "migrate", "/dev/vdb", "--detach", "--json"]),
            ["migrate", "/dev/vdb", "--json", "--yes"]
        );
        assert_eq!(
            a(&["rootshift", "migrate", "/dev/vdb", "--detach", "-y"]),
            ["migrate", "/dev/vdb", "-y"]
        );
    }

    #[test]
    fn detach_without_yes_is_refused() {
        let e = require_yes_for_detach(false).unwrap_err();
        assert_eq!(crate::error::exit_code(&e), crate::error::exit::REFUSED);
        assert!(require_yes_for_detach(true).is_ok());
    }
}
