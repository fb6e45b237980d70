//! The guardian: a small memory-locked process that outlives rootshift for one purpose. If
//! rootshift dies (SIGKILL, a crash) while the device under `/` is suspended or the filesystem is
//! frozen, nothing that lives on `/` could ever run again to fix it. The guardian runs from a copy
//! of the binary in a sealed memfd ([`crate::kernel::memexe`]; not /run, which initramfs-tools
//! mounts `noexec`), started before any suspend; it blocks reading a pipe whose only
//! writer is rootshift. When the pipe closes — rootshift exited, normally or not — it drops any
//! prepared (inactive) table, resumes the device if it is suspended, and thaws the filesystem.
//! Dropping the prepared table first matters: resuming with it loaded would switch tables.
//! A normal exit leaves the device resumed and no table prepared, so the guardian finds nothing to do.
//!
//! - Readiness: the guardian writes one byte to its stdout (a pipe) once it is memory-locked,
//!   protected from the OOM killer and holds its dm handle; `start` waits up to
//!   [`READY_TIMEOUT`] for it and refuses to go on without it (no guardian, no start).
//! - `oom_score_adj` is -1000 (never the OOM killer's pick).
//! - Its own process group and, where systemd runs, its own transient scope
//!   (`systemd-run --scope`): stopping the unit or session rootshift runs in does not take it down.
//! - It thaws only a freeze rootshift made of the filesystem it guards: `kernel::fs` notes each
//!   such freeze on the pipe (`F` before the FIFREEZE, `T` after the thaw or a failed freeze); the
//!   guardian thaws only when the count is above zero when the pipe closes — never an unrelated
//!   freeze, nor a freeze of another filesystem (a clone's).
//! - If DM_TABLE_CLEAR fails, it loads the live table into the inactive slot before resuming,
//!   and if that fails too it does not resume (see `backend::switch::recover`).

use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::backend::switch::{self, RealDm, RealFreeze};
use crate::kernel::dm::Dm;
use crate::kernel::memexe::MemExe;
use crate::kernel::memlock::MemLock;
use crate::wrapper::{Kind, Wrapper};

/// How long `start` waits for the guardian's ready byte.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Pipe bytes: a freeze by rootshift of the guarded filesystem begins / has ended.
const FREEZE: u8 = crate::kernel::fs::NOTE_FREEZE;
const THAW: u8 = crate::kernel::fs::NOTE_THAW;
/// The guardian's ready byte.
const READY: u8 = b'R';

/// The running guardian; dropping it (or dying) releases it.
pub struct Guardian {
    pipe: Option<OwnedFd>,
    child: Child,
}

/// Wait up to `timeout` for the ready byte on `r`.
fn wait_ready(r: &OwnedFd, timeout: Duration) -> Result<()> {
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(r.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(0) => bail!("it did not report ready within {} s", timeout.as_secs()),
        Ok(_) => {}
        Err(e) => bail!("waiting for it: {e}"),
    }
    let mut b = [0u8; 1];
    match nix::unistd::read(r, &mut b) {
        Ok(1) if b[0] == READY => Ok(()),
        Ok(0) => bail!("it exited before it was ready"),
        Ok(_) => bail!("it answered {:?}, not ready", b[0] as char),
        Err(e) => bail!("reading its ready byte: {e}"),
    }
}

/// Whether systemd manages this system (sd_booted()'s test) and systemd-run is at hand.
fn systemd_run() -> Option<PathBuf> {
    if !Path::new("/run/systemd/system").is_dir() {
        return None;
    }
    ["/usr/bin/systemd-run", "/bin/systemd-run"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl Guardian {
    /// Start a guardian for `w` (and the filesystem mounted at `thaw`, if any), and wait until
    /// it is ready: an error here means no guardian, and the caller must not start.
    pub fn start(w: &Wrapper, thaw: Option<&Path>) -> Result<Guardian> {
        // Held until the guardian is ready (it execs by this fd's /proc path).
        let exe = MemExe::of_self(c"rootshift-guardian").map_err(|e| {
            anyhow!("the guardian could not be prepared, so nothing is changed: {e:#}")
        })?;
        let copy = exe.path();
        let mut args: Vec<std::ffi::OsString> = vec![
            "guardian".into(),
            "--name".into(),
            w.name.clone().into(),
            "--kind".into(),
            match w.kind {
                Kind::Dm => "dm",
                Kind::Md => "md",
            }
            .into(),
        ];
        if let Some(p) = thaw {
            args.push("--thaw".into());
            args.push(p.into());
        }
        // The filesystem whose freezes it may undo (kernel::fs notes them on the pipe).
        let guarded_dev = match thaw {
            Some(p) => Some(
                fs::metadata(p)
                    .with_context(|| format!("stat {}", p.display()))?
                    .dev(),
            ),
            None => None,
        };
        // First in its own systemd scope where systemd runs; if that does not come up, directly.
        let mut why = vec![];
        if let Some(sr) = systemd_run() {
            let unit = format!("rootshift-guardian-{}", std::process::id());
            let mut cmd = Command::new(sr);
            cmd.args(["--scope", "--quiet", "--collect"])
                .arg(format!("--unit={unit}"))
                .arg("--description=rootshift guardian")
                .arg(&copy)
                .args(&args);
            match Self::spawn(cmd, guarded_dev) {
                Ok(g) => return Ok(g),
                Err(e) => why.push(format!("in its own systemd scope: {e:#}")),
            }
        }
        let mut cmd = Command::new(&copy);
        cmd.arg0("rootshift-guardian").args(&args);
        match Self::spawn(cmd, guarded_dev) {
            Ok(g) => {
                if !why.is_empty() {
                    eprintln!(
                        "rootshift: warning: the guardian runs without its own systemd scope ({})",
                        why.join("; ")
                    );
                }
                Ok(g)
            }
            Err(e) => {
                why.push(format!("{e:#}"));
                Err(anyhow!(
                    "the guardian (which resumes/thaws the device if rootshift dies mid-change) did not \
                     start, so nothing is changed: {}",
                    why.join("; ")
                ))
            }
        }
    }

    fn spawn(mut cmd: Command, guarded_dev: Option<u64>) -> Result<Guardian> {
        let (r, w_end) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe for the guardian")?;
        let (ready_r, ready_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe for the guardian")?;
        // Its own process group: a Ctrl-C at our terminal (SIGINT to the foreground group) or a
        // kill of our process group must not take it down with us; it ignores SIGHUP itself.
        cmd.process_group(0);
        cmd.stdin(Stdio::from(r)).stdout(Stdio::from(ready_w));
        let mut child = cmd.spawn().context("starting rootshift's in-memory copy")?;
        // Our copies of the child's ends are closed now (moved into `cmd`, dropped with it).
        drop(cmd);
        if let Err(e) = wait_ready(&ready_r, READY_TIMEOUT) {
            // Ours to end: the child we started, by its pid.
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        if let Some(dev) = guarded_dev {
            crate::kernel::fs::note_freezes_to(w_end.as_raw_fd(), dev);
        }
        Ok(Guardian {
            pipe: Some(w_end),
            child,
        })
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        // Closing our end wakes it; it finds nothing to do and exits.
        if let Some(p) = self.pipe.take() {
            crate::kernel::fs::stop_noting_freezes(p.as_raw_fd());
            drop(p);
        }
        let _ = self.child.try_wait();
    }
}

/// The guardian's freeze count after reading `bytes` (F: +1, T: -1, never below 0).
fn freeze_count(mut n: u32, bytes: &[u8]) -> u32 {
    for b in bytes {
        match *b {
            FREEZE => n += 1,
            THAW => n = n.saturating_sub(1),
            _ => {}
        }
    }
    n
}

/// The `rootshift guardian` process.
pub fn run(name: &str, kind: Kind, thaw: Option<PathBuf>) -> Result<()> {
    let _lock = MemLock::acquire()?;
    // Exec'd from /proc/PID/fd/N, the kernel named us "N"; ps and the journal should say what we are.
    let _ = nix::sys::prctl::set_name(c"rootshift-guard");
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        // Catch and ignore: only the pipe decides when we act.
        let _ = signal_hook::flag::register(
            sig,
            std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        );
    }
    // Never the OOM killer's pick (needs CAP_SYS_RESOURCE, which root has).
    if let Err(e) = fs::write("/proc/self/oom_score_adj", "-1000") {
        eprintln!("rootshift guardian: warning: setting oom_score_adj to -1000: {e}");
    }
    let dm = if kind == Kind::Dm {
        Some(Dm::open()?)
    } else {
        None
    };
    // Opened now: once rootshift is gone, / may be suspended.
    let thaw_file = thaw.as_deref().and_then(|p| RealFreeze::open(p).ok());
    // Ready: tell rootshift, then let go of the ready pipe.
    let stdout = std::io::stdout();
    nix::unistd::write(stdout.as_fd(), &[READY]).context("writing the ready byte")?;
    if let Ok(null) = fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(null.as_fd());
    }
    let mut buf = [0u8; 64];
    let mut stdin = std::io::stdin().lock();
    let mut frozen = 0u32;
    // Block until every writer is gone (EOF) or the pipe breaks.
    while let Ok(n) = stdin.read(&mut buf) {
        if n == 0 {
            break;
        }
        frozen = freeze_count(frozen, &buf[..n]);
    }
    let mut real_dm = None;
    if let Some(dm) = &dm {
        if let (Ok(info), Ok(id)) = (
            dm.info(name),
            devicemapper::DmName::new(name).map(devicemapper::DevId::Name),
        ) {
            real_dm = Some((
                RealDm { dm: dm.raw(), id },
                info.suspended,
                info.inactive_present,
            ));
        }
    }
    let mut fs_ops = if frozen > 0 { thaw_file } else { None };
    let acted = switch::recover(
        real_dm.as_mut().map(|(o, s, i)| (o, *s, *i)),
        fs_ops.as_mut(),
    );
    if !acted.is_empty() {
        eprintln!(
            "rootshift guardian: rootshift exited while {name} was mid-change: {}",
            acted.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe() -> (OwnedFd, OwnedFd) {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap()
    }

    #[test]
    fn handshake_needs_the_ready_byte_in_time() {
        let (r, w) = pipe();
        nix::unistd::write(&w, &[READY]).unwrap();
        assert!(wait_ready(&r, Duration::from_millis(100)).is_ok());
        // Exited before it was ready (its end closed, nothing written).
        let (r, w) = pipe();
        drop(w);
        let e = wait_ready(&r, Duration::from_millis(100)).unwrap_err();
        assert!(e.to_string().contains("exited"), "{e}");
        // Silent: refused after the timeout.
        let (r, _w) = pipe();
        let e = wait_ready(&r, Duration::from_millis(50)).unwrap_err();
        assert!(e.to_string().contains("did not report ready"), "{e}");
        // Anything else is not ready.
        let (r, w) = pipe();
        nix::unistd::write(&w, b"x").unwrap();
        assert!(wait_ready(&r, Duration::from_millis(100)).is_err());
    }

    #[test]
    fn freeze_count_follows_the_announcements() {
        assert_eq!(freeze_count(0, b""), 0);
        assert_eq!(freeze_count(0, b"F"), 1);
        assert_eq!(freeze_count(0, b"FT"), 0);
        assert_eq!(freeze_count(0, b"FTF"), 1);
        assert_eq!(freeze_count(0, b"TTF"), 1);
        assert_eq!(freeze_count(1, b"T"), 0);
    }
}
