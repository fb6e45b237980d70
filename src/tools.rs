//! The few external programs rootshift runs: only tools a distribution owns, found in fixed
//! directories (not $PATH: initrds have thin PATHs), with their stderr in every error.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{anyhow, bail, Result};

const DIRS: &[&str] = &["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// Find a tool by name in the system directories.
pub fn find(name: &str) -> Option<PathBuf> {
    DIRS.iter()
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file())
}

/// Run a tool; on failure the error carries its exit status and stderr.
pub fn run(name: &str, args: &[&str]) -> Result<String> {
    let path = find(name).ok_or_else(|| anyhow!("{name} not found in {}", DIRS.join(", ")))?;
    let out = Command::new(&path)
        .args(args)
        .output()
        .map_err(|e| anyhow!("running {}: {e}", path.display()))?;
    if !out.status.success() {
        bail!(
            "{} {} failed ({}): {}",
            path.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Load a kernel module (no-op error if it is built in or already loaded).
pub fn modprobe(module: &str) -> Result<()> {
    run("modprobe", &[module]).map(|_| ())
}
