//! Spin hooks: executables in `/etc/rootshift/post-install.d/`, run in name order after the
//! install is finished, with the facts of the new system in their environment (kiosk spins
//! remove their live user or autologin there). A failing hook stops the finish with its output.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

pub const DIR: &str = "/etc/rootshift/post-install.d";

/// The executable regular files of `dir`, in name order (dotfiles and `*~` backups skipped).
pub fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.starts_with('.')
                && !name.ends_with('~')
                && fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .collect();
    v.sort();
    Ok(v)
}

/// Run every hook with `env`; stop at the first failure.
pub fn run(dir: &Path, env: &[(&str, String)]) -> Result<Vec<String>> {
    let mut done = vec![];
    for h in list(dir)? {
        let out = Command::new(&h)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir("/")
            .output()
            .with_context(|| format!("running the post-install hook {}", h.display()))?;
        if !out.status.success() {
            bail!(
                "the post-install hook {} failed ({}): {}",
                h.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        done.push(format!("ran {}", h.display()));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, name: &str, body: &str, mode: u32) {
        let p = dir.join(name);
        fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn hooks_run_in_order_with_the_environment_and_stop_on_failure() {
        let dir = std::env::temp_dir().join(format!("rootshift-hooks-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        script(
            &dir,
            "20-second",
            &format!("echo second $ROOTSHIFT_ROOT_UUID >> {}", log.display()),
            0o755,
        );
        script(
            &dir,
            "10-first",
            &format!("echo first >> {}", log.display()),
            0o755,
        );
        script(&dir, "15-not-executable", "exit 1", 0o644);
        script(&dir, "30-backup~", "exit 1", 0o755);
        let done = run(&dir, &[("ROOTSHIFT_ROOT_UUID", "u-1".into())]).unwrap();
        assert_eq!(done.len(), 2);
        assert_eq!(fs::read_to_string(&log).unwrap(), "first\nsecond u-1\n");
        script(&dir, "40-fails", "echo broken >&2; exit 3", 0o755);
        let e = run(&dir, &[]).unwrap_err().to_string();
        assert!(e.contains("40-fails") && e.contains("broken"), "{e}");
        assert!(list(&dir.join("missing")).unwrap().is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
