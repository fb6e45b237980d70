//! `systemctl soft-reboot` into the installed system (systemd ≥ 254): userspace restarts from
//! `/run/nextroot`; firmware, boot loader, kernel and initrd do not run again. What the live stack
//! leaves behind (the medium's mount, loop devices, the RAM upper) cannot be let go before — the
//! running root uses it — so it is written down in /run (which a soft-reboot keeps) and a runtime
//! unit (`/run/systemd/system`, gone at the next real boot) runs `rootshift release-live` in the
//! new userspace ([`super::release`]).

use std::fs;
use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use super::release;
use crate::error::refuse;
use crate::progress::Progress;
use crate::tools;

/// The oldest systemd with `systemctl soft-reboot`.
const MIN_SYSTEMD: u32 = 254;
const UNIT: &str = "rootshift-release-live.service";

/// What was checked: soft-reboot is possible.
#[derive(Debug, Clone)]
pub struct SoftReboot {
    pub systemd_version: u32,
}

/// `systemd 257 (257.9-1~deb13u1)` → 257.
pub fn parse_systemd_version(text: &str) -> Option<u32> {
    text.lines()
        .next()?
        .strip_prefix("systemd ")?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn running_release() -> Result<String> {
    Ok(nix::sys::utsname::uname()?
        .release()
        .to_string_lossy()
        .into_owned())
}

/// Whether the tree at `root` has the running kernel's modules.
fn has_modules(root: &Path, release: &str) -> bool {
    ["lib/modules", "usr/lib/modules"]
        .iter()
        .any(|d| root.join(d).join(release).is_dir())
}

/// Before anything is written: systemd is PID 1 and new enough, and the tree (the running
/// system, soon the copy) has the running kernel's modules. Each refusal names --no-soft-reboot.
pub fn check(tree: &Path) -> Result<SoftReboot> {
    let way_out = "pass --no-soft-reboot: the installed system then starts at the next boot";
    if !Path::new("/run/systemd/system").is_dir() {
        return Err(refuse(
            "systemd is not the init system here, so there is no soft-reboot",
            Some(way_out),
        ));
    }
    let out =
        tools::run("systemctl", &["--version"]).context("asking systemctl for its version")?;
    let v = parse_systemd_version(&out).unwrap_or(0);
    if v < MIN_SYSTEMD {
        return Err(refuse(
            format!("systemd {v} has no soft-reboot (it came with systemd {MIN_SYSTEMD})"),
            Some(way_out),
        ));
    }
    let r = running_release()?;
    if !has_modules(tree, &r) {
        return Err(refuse(
            format!(
                "the running kernel {r} has no modules in {}lib/modules: after a soft-reboot into the \
                 copy it could not load any",
                tree.display()
            ),
            Some(way_out),
        ));
    }
    Ok(SoftReboot { systemd_version: v })
}

/// The runtime unit that releases the live stack after the soft-reboot.
fn unit_text(exe: &Path) -> String {
    format!(
        "# Written by `rootshift install --layout plain` before its soft-reboot; /run is gone at the next boot.\n\
         [Unit]\n\
         Description=rootshift: let go of the live medium after the soft-reboot\n\
         ConditionPathExists={}\n\
         After=local-fs.target\n\n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={} release-live\n\
         StandardOutput=journal+console\n",
        release::STACK_FILE,
        exe.display()
    )
}

/// Ask (unless `yes`), write down the live stack, install the runtime unit, then soft-reboot.
/// Declining leaves the installed system for the next boot.
pub fn enter(
    s: &SoftReboot,
    nextroot: &Path,
    progress: &Progress,
    yes: bool,
    inhibit: Option<crate::session::Inhibitor>,
) -> Result<()> {
    let r = running_release()?;
    if !has_modules(nextroot, &r) {
        return Err(refuse(
            format!("the installed system has no modules for the running kernel {r}"),
            Some("boot it instead: it starts at the next boot"),
        ));
    }
    if !yes && std::io::stdin().is_terminal() {
        eprint!(
            "Soft-reboot into the installed system now? Every program stops and starts again from it \
             (the kernel keeps running); what they wrote since the cut-off is lost. [y/N] "
        );
        let mut a = String::new();
        std::io::stdin().read_line(&mut a)?;
        if !matches!(a.trim(), "y" | "Y" | "yes") {
            super::finalize::unmount_target(nextroot)?;
            progress.event(
                "next-boot",
                "no soft-reboot: the installed system starts at the next boot from its disk",
                json!({}),
            );
            return Ok(());
        }
    }
    let steps = release::record()?;
    let exe = std::env::current_exe().context("finding the rootshift binary")?;
    let mut unit = "none (release by hand: rootshift release-live)".to_string();
    if nextroot
        .join(exe.strip_prefix("/").unwrap_or(&exe))
        .is_file()
    {
        let dir = Path::new("/run/systemd/system");
        crate::finish::ids::write_atomic(&dir.join(UNIT), unit_text(&exe).as_bytes(), 0o644)?;
        let wants = dir.join("multi-user.target.wants");
        fs::create_dir_all(&wants)?;
        let link = wants.join(UNIT);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(format!("../{UNIT}"), &link)?;
        unit = format!("/run/systemd/system/{UNIT}");
    }
    progress.event(
        "soft-reboot",
        &format!(
            "soft-reboot into the installed system (systemd {}): every program restarts from it; then {unit} lets go \
             of {} live device(s) and mount(s)",
            s.systemd_version,
            steps.len()
        ),
        json!({"systemd": s.systemd_version, "release_unit": unit, "release_steps": steps.iter().map(|s| s.to_string()).collect::<Vec<_>>()}),
    );
    nix::unistd::sync();
    // our own shutdown inhibitor would block it (logind: "Access denied"); others' still count
    drop(inhibit);
    tools::run("systemctl", &["soft-reboot"]).with_context(|| {
        format!(
            "the installed system is complete (mounted at {}), but the soft-reboot into it failed: it starts at \
             the next boot, or try `systemctl soft-reboot` again",
            nextroot.display()
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_versions() {
        assert_eq!(
            parse_systemd_version("systemd 257 (257.9-1~deb13u1)\n+PAM +AUDIT"),
            Some(257)
        );
        assert_eq!(
            parse_systemd_version("systemd 252 (252.39-1~deb12u1)"),
            Some(252)
        );
        assert_eq!(parse_systemd_version("systemd 254"), Some(254));
        assert_eq!(parse_systemd_version("something else"), None);
    }

    #[test]
    fn the_unit_runs_release_live_only_when_there_is_a_stack() {
        let u = unit_text(Path::new("/usr/sbin/rootshift"));
        assert!(u.contains("ExecStart=/usr/sbin/rootshift release-live"));
        assert!(u.contains(&format!("ConditionPathExists={}", release::STACK_FILE)));
    }
}
