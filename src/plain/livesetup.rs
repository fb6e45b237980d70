//! The live setup stripped from the installed tree: the packages that make a system boot as a
//! live system (purged with the tree's dpkg), what live-config set up for its user (autologin,
//! passwordless sudo), the live spin's `live=` setting of rootshift. The live user keeps its
//! account and files (the session's work) but must choose a new password at the first login: the
//! live medium's password is public.

use std::fs;
use std::path::Path;

use anyhow::Result;

use super::chroot::{run_checked, step, Chroot};
use crate::finish::ids::write_atomic;
use crate::progress::Progress;

/// Packages that make a system boot as a live system; purged from the installed tree.
const LIVE_PACKAGES: &[&str] = &[
    "live-boot",
    "live-boot-initramfs-tools",
    "live-boot-doc",
    "live-config",
    "live-config-systemd",
    "live-config-sysvinit",
    "live-config-doc",
    "live-tools",
    "dracut-live",
    "casper",
];

/// Files live-config writes for the live user: autologin and passwordless sudo.
const LIVE_FILES: &[&str] = &[
    "etc/sudoers.d/live",
    "etc/systemd/system/getty@.service.d/live-config_autologin.conf",
    "etc/systemd/system/serial-getty@.service.d/live-config_autologin.conf",
    "etc/systemd/system/getty@tty1.service.d/autologin.conf",
];

/// Strip the live setup from the tree at `t.root`; one step line per thing done.
pub fn strip(t: Chroot<'_>, progress: &Progress, steps: &mut Vec<String>) -> Result<()> {
    let root = t.root;
    // first the settings the initramfs carries (the purge's trigger builds one): the spin's live
    // upper, and its wrapping of the root at boot (there for `migrate` from the live session)
    let conf = root.join("etc/rootshift/rootshift.conf");
    if let Ok(text) = fs::read_to_string(&conf) {
        let kept: String = text
            .lines()
            .filter(|l| {
                let l = l.trim_start();
                !l.starts_with("live=") && !l.starts_with("wrap=")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        if kept != text {
            write_atomic(&conf, kept.as_bytes(), 0o644)?;
            step(
                steps,
                progress,
                "rootshift-conf",
                "dropped the live spin's live= and wrap= settings (a plain root is not wrapped at boot; \
                 `rootshift boot enable` turns that on)"
                    .into(),
            );
        }
    }
    // a live disk's (install --disk): how it booted as a live image, which the kernel hooks and
    // dracut would otherwise go on serving
    let disk_files: Vec<&str> = [
        crate::finish::live::LIVE_CONF,
        crate::finish::live::DRACUT_LIVE_CONF,
    ]
    .into_iter()
    .filter(|f| fs::remove_file(root.join(f.trim_start_matches('/'))).is_ok())
    .collect();
    if !disk_files.is_empty() {
        step(
            steps,
            progress,
            "live-disk-setup",
            format!("removed {}", disk_files.join(", ")),
        );
    }

    // live packages, then the files live-config left for its user
    let installed = installed_packages(t, LIVE_PACKAGES);
    if !installed.is_empty() {
        let mut c = t.command("dpkg");
        c.arg("--purge").args(&installed);
        run_checked(
            c,
            &format!(
                "dpkg --purge {} (in the installed tree)",
                installed.join(" ")
            ),
        )?;
        step(
            steps,
            progress,
            "live-packages",
            format!("purged {}", installed.join(", ")),
        );
    }
    let live_user = live_user(root);
    let mut removed = vec![];
    for f in LIVE_FILES {
        if root.join(f).exists() {
            fs::remove_file(root.join(f))?;
            removed.push(format!("/{f}"));
        }
    }
    removed.extend(display_manager_autologin_off(root)?);
    if !removed.is_empty() {
        step(
            steps,
            progress,
            "live-config",
            format!("removed or turned off {}", removed.join(", ")),
        );
    }
    if let Some(u) = &live_user {
        let mut c = t.command("chage");
        c.args(["-d", "0", u]);
        run_checked(c, &format!("chage -d 0 {u}"))?;
        step(
            steps,
            progress,
            "live-user",
            format!("{u} keeps its files and must choose a new password at the first login"),
        );
    }
    Ok(())
}

/// Which of `names` dpkg in the tree has installed (or left configured): none without dpkg.
fn installed_packages(t: Chroot<'_>, names: &[&str]) -> Vec<String> {
    if !t.root.join("var/lib/dpkg/status").exists() {
        return vec![];
    }
    let mut c = t.command("dpkg-query");
    c.args(["-W", "-f", "${Package} ${db:Status-Abbrev}\n"])
        .args(names);
    let out = c.output().map(|o| o.stdout).unwrap_or_default();
    String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| {
            let (p, st) = l.split_once(' ')?;
            (st.starts_with("ii") || st.starts_with("rc") || st.starts_with("iU"))
                .then(|| p.to_string())
        })
        .collect()
}

/// The live user live-config set up: the one its sudoers file names.
fn live_user(root: &Path) -> Option<String> {
    let text = fs::read_to_string(root.join("etc/sudoers.d/live")).ok()?;
    let user = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))?
        .split_whitespace()
        .next()?
        .to_string();
    let shadow = fs::read_to_string(root.join("etc/shadow")).ok()?;
    shadow
        .lines()
        .any(|l| l.split(':').next() == Some(user.as_str()))
        .then_some(user)
}

/// Display managers' autologin (what live-config turns on): off. Returns what changed.
fn display_manager_autologin_off(root: &Path) -> Result<Vec<String>> {
    let mut changed = vec![];
    for (file, on, off) in [
        (
            "etc/lightdm/lightdm.conf",
            "autologin-user=",
            "#autologin-user=",
        ),
        (
            "etc/gdm3/daemon.conf",
            "AutomaticLoginEnable=true",
            "AutomaticLoginEnable=false",
        ),
        ("etc/sddm.conf", "User=", "#User="),
    ] {
        let p = root.join(file);
        let Ok(text) = fs::read_to_string(&p) else {
            continue;
        };
        let new: String = text
            .lines()
            .map(|l| match l.strip_prefix(on) {
                Some(rest) if !on.ends_with('=') || !rest.is_empty() => format!("{off}{rest}\n"),
                _ => format!("{l}\n"),
            })
            .collect();
        if new != text {
            write_atomic(&p, new.as_bytes(), 0o644)?;
            changed.push(format!("/{file} (autologin)"));
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_user_is_the_one_sudoers_names_and_shadow_has() {
        let d = std::env::temp_dir().join(format!("rootshift-liveuser-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("etc/sudoers.d")).unwrap();
        fs::write(
            d.join("etc/sudoers.d/live"),
            "# live\nuser ALL=(ALL) NOPASSWD: ALL\n",
        )
        .unwrap();
        fs::write(d.join("etc/shadow"), "root:*:1::::::\n").unwrap();
        assert_eq!(live_user(&d), None);
        fs::write(d.join("etc/shadow"), "root:*:1::::::\nuser:x:1::::::\n").unwrap();
        assert_eq!(live_user(&d).as_deref(), Some("user"));
        fs::create_dir_all(d.join("etc/lightdm")).unwrap();
        fs::write(
            d.join("etc/lightdm/lightdm.conf"),
            "[Seat:*]\nautologin-user=user\nautologin-user=\n",
        )
        .unwrap();
        assert_eq!(display_manager_autologin_off(&d).unwrap().len(), 1);
        assert_eq!(
            fs::read_to_string(d.join("etc/lightdm/lightdm.conf")).unwrap(),
            "[Seat:*]\n#autologin-user=user\nautologin-user=\n"
        );
        fs::remove_dir_all(&d).unwrap();
    }
}
