//! Running the distribution's tools in a chroot of the installed tree: the kernel file systems
//! they need bound in (and out again on every path), a plain environment, their stderr in errors.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde_json::json;

pub(crate) use crate::finish::run_checked;
use crate::progress::Progress;

/// The tree and the `chroot` binary.
#[derive(Clone, Copy)]
pub struct Chroot<'a> {
    pub bin: &'a Path,
    pub root: &'a Path,
}

impl Chroot<'_> {
    /// `program` inside the chroot, with a plain environment.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin);
        c.arg(self.root)
            .arg(program)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("HOME", "/root");
        c
    }
}

pub fn step(steps: &mut Vec<String>, progress: &Progress, name: &str, line: String) {
    progress.event(
        "install",
        &format!("{name}: {line}"),
        json!({"step": name, "detail": line}),
    );
    steps.push(format!("{name}: {line}"));
}

/// The kernel file systems a chroot's tools need, bound in; unbound on drop (also on errors).
pub struct Binds(Vec<PathBuf>);

impl Binds {
    pub fn new(root: &Path) -> Result<Binds> {
        let mut b = Binds(vec![]);
        let none: Option<&str> = None;
        for (src, dir, fstype, flags) in [
            ("/dev", "dev", None, MsFlags::MS_BIND | MsFlags::MS_REC),
            ("proc", "proc", Some("proc"), MsFlags::empty()),
            ("/sys", "sys", None, MsFlags::MS_BIND | MsFlags::MS_REC),
            ("tmpfs", "run", Some("tmpfs"), MsFlags::empty()),
        ] {
            let at = root.join(dir);
            fs::create_dir_all(&at)?;
            mount(Some(src), &at, fstype, flags, none)
                .with_context(|| format!("mounting {src} at {}", at.display()))?;
            b.0.push(at.clone());
            // A bind of a shared mount joins its peer group: unmounting the bind would then
            // unmount the originals too (seen: /sys/fs/cgroup, /dev/pts, /sys/kernel/* of the
            // running system gone, and systemd hung at the next shutdown). As slaves, the binds
            // still receive the system's mount events but send none back.
            mount(none, &at, none, MsFlags::MS_SLAVE | MsFlags::MS_REC, none)
                .with_context(|| format!("making {} a slave mount", at.display()))?;
        }
        Ok(b)
    }
}

impl Drop for Binds {
    fn drop(&mut self) {
        for at in self.0.iter().rev() {
            let _ = umount2(at, MntFlags::MNT_DETACH);
        }
    }
}
