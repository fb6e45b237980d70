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
    run_with(name, args, None)
}

/// Run a tool with `input` on its standard input; on failure the error carries its exit status
/// and stderr.
pub fn run_input(name: &str, args: &[&str], input: &str) -> Result<String> {
    run_with(name, args, Some(input))
}

fn run_with(name: &str, args: &[&str], input: Option<&str>) -> Result<String> {
    use std::io::Write;
    use std::process::Stdio;
    let path = find(name).ok_or_else(|| anyhow!("{name} not found in {}", DIRS.join(", ")))?;
    let running = |e: std::io::Error| anyhow!("running {}: {e}", path.display());
    let mut child = Command::new(&path)
        .args(args)
        // no input: stdin closed, as `Command::output` has it (a tool never waits on the terminal)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(running)?;
    if let (Some(text), Some(mut i)) = (input, child.stdin.take()) {
        i.write_all(text.as_bytes())
            .map_err(|e| anyhow!("writing to {}: {e}", path.display()))?;
    }
    let out = child.wait_with_output().map_err(running)?;
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
