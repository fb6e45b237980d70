//! The guardian: a small memory-locked process that outlives rootshift for one purpose. If
//! rootshift dies (SIGKILL, a crash) while the device under `/` is suspended or the filesystem is
//! frozen, nothing that lives on `/` could ever run again to fix it. The guardian runs from a copy
//! of the binary in /run (tmpfs), started before any suspend; it blocks reading a pipe whose only
//! writer is rootshift. When the pipe closes — rootshift exited, normally or not — it drops any
//! prepared (inactive) table, resumes the device if it is suspended, and thaws the filesystem.
//! Dropping the prepared table first matters: resuming with it loaded would switch tables.
//! A normal exit leaves the device resumed and no table prepared, so the guardian finds nothing to do.

use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

use crate::kernel::dm::Dm;
use crate::kernel::memlock::MemLock;
use crate::wrapper::{Kind, Wrapper};

const COPY: &str = "/run/rootshift/rootshift-guardian";

/// The running guardian; dropping it (or dying) releases it.
pub struct Guardian {
    _pipe: OwnedFd,
    child: Child,
}

impl Guardian {
    /// Start a guardian for `w` (and the filesystem mounted at `thaw`, if any).
    pub fn start(w: &Wrapper, thaw: Option<&Path>) -> Result<Guardian> {
        fs::create_dir_all("/run/rootshift").context("creating /run/rootshift")?;
        let exe = fs::read("/proc/self/exe").context("reading /proc/self/exe")?;
        if fs::read(COPY).ok().as_deref() != Some(&exe[..]) {
            let tmp = format!("{COPY}.tmp");
            fs::write(&tmp, &exe).with_context(|| format!("writing {tmp}"))?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
            fs::rename(&tmp, COPY).with_context(|| format!("installing {COPY}"))?;
        }
        let (r, w_end) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe for the guardian")?;
        let mut cmd = Command::new(COPY);
        cmd.arg("guardian")
            .arg("--name")
            .arg(&w.name)
            .arg("--kind")
            .arg(match w.kind {
                Kind::Dm => "dm",
                Kind::Md => "md",
            });
        if let Some(p) = thaw {
            cmd.arg("--thaw").arg(p);
        }
        // Its own process group: a Ctrl-C to the terminal must not take it down with us.
        cmd.stdin(Stdio::from(r))
            .stdout(Stdio::null())
            .process_group(0);
        let child = cmd.spawn().with_context(|| format!("starting {COPY}"))?;
        Ok(Guardian {
            _pipe: w_end,
            child,
        })
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        // Closing our end (the field drop after this) wakes it; it finds nothing to do and exits.
        let _ = self.child.try_wait();
    }
}

/// The `rootshift guardian` process.
pub fn run(name: &str, kind: Kind, thaw: Option<PathBuf>) -> Result<()> {
    let _lock = MemLock::acquire()?;
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
    let dm = if kind == Kind::Dm {
        Some(Dm::open()?)
    } else {
        None
    };
    let mut buf = [0u8; 64];
    let mut stdin = std::io::stdin().lock();
    // Block until every writer is gone (EOF) or the pipe breaks.
    while let Ok(n) = stdin.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
    let mut acted = vec![];
    if let Some(dm) = &dm {
        if let Ok(info) = dm.info(name) {
            if info.inactive_present && dm.clear_inactive(name).is_ok() {
                acted.push("dropped the prepared table");
            }
            if info.suspended {
                let mut ok = false;
                for _ in 0..50 {
                    if dm.resume(name).is_ok() {
                        ok = true;
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                acted.push(if ok {
                    "resumed the device"
                } else {
                    "could NOT resume the device"
                });
            }
        }
    }
    if let Some(p) = thaw {
        if let Ok(f) = fs::File::open(&p) {
            use std::os::fd::AsFd;
            if crate::kernel::ioctl::fs_thaw(f.as_fd()).is_ok() {
                acted.push("thawed the filesystem");
            }
        }
    }
    if !acted.is_empty() {
        eprintln!(
            "rootshift guardian: rootshift exited while {name} was mid-change: {}",
            acted.join(", ")
        );
    }
    Ok(())
}
