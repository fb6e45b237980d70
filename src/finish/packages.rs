//! Debian: the package that keeps a boot loader updated, installed from the spin's `.deb`s when
//! the system does not have it yet.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::tools;

/// Where spins put packages finish may install (`*.deb`).
pub const PACKAGE_DIR: &str = "/usr/share/rootshift/packages";

fn deb_available(pkg: &str) -> Option<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(PACKAGE_DIR)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{pkg}_")) && n.ends_with(".deb"))
        })
        .collect();
    v.sort();
    v.pop()
}

pub(super) fn package_installed(pkg: &str) -> bool {
    tools::run("dpkg-query", &["-W", "-f", "${Status}", pkg])
        .map(|s| s.trim() == "install ok installed")
        .unwrap_or(false)
}

/// Install `pkg` from the spin's .debs (removing `conflict` first) when it is not installed yet.
/// Returns what was done, or why nothing could be.
pub(super) fn ensure_deb(pkg: &str, conflict: &str) -> Result<Option<String>> {
    if tools::find("dpkg").is_none() || package_installed(pkg) {
        return Ok(None);
    }
    let Some(deb) = deb_available(pkg) else {
        return Ok(Some(format!(
            "{pkg} is not installed and {PACKAGE_DIR} has no {pkg}_*.deb: later kernel updates will not \
             refresh the boot loader configuration by themselves"
        )));
    };
    if !conflict.is_empty() && package_installed(conflict) {
        tools::run("dpkg", &["--remove", conflict])?;
    }
    let mut c = Command::new(tools::find("dpkg").expect("checked above"));
    c.arg("-i")
        .arg(&deb)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("DEBCONF_NONINTERACTIVE_SEEN", "true");
    run_checked(c, &format!("dpkg -i {}", deb.display()))?;
    Ok(Some(format!("installed {}", deb.display())))
}

/// Run `cmd`; its stderr (or stdout) in the error when it fails.
pub(crate) fn run_checked(mut cmd: Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            if out.stderr.is_empty() {
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            } else {
                String::new()
            }
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
