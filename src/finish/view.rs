//! The *target view*: the running root filesystem as boot tools must see it — mounted from the
//! target partition, not from the rootshift wrapper.
//!
//! GRUB cannot see through the wrapper: grub-probe follows a dm `linear` table down to the
//! partition but then takes that partition for a disk ("cannot find a GRUB drive for
//! /dev/mapper/rootshift-root"), and it cannot read a superblock-less md array at all. GRUB finds
//! the device of a directory by the *source string* of its mount in /proc/self/mountinfo, so the
//! view gives it a mount whose source is the partition:
//!
//! 1. a private mount namespace (nothing below is visible to the rest of the system);
//! 2. the wrapper's node is bind-mounted over the partition's node (`/dev/vda3`), and
//!    `/dev/vda3` is mounted at a scratch directory: the kernel resolves the path to the
//!    wrapper's device, finds its mounted superblock and adds a second mount **of the same
//!    filesystem instance** (same holder, no second fs instance, nothing opened twice) whose
//!    mountinfo source reads `/dev/vda3`;
//! 3. the bind over the node is dropped again, so `/dev/vda3` is the real partition, which GRUB
//!    reads for the filesystem UUID (after rootshift flushed its buffers);
//! 4. /proc, /sys, /dev (recursively), /run and any extra mounts (the ESP) are bound in, the
//!    process chroots there and execs the tool.
//!
//! The tool runs as `rootshift view-exec …` (a hidden subcommand of this same binary), so no
//! `unsafe` pre-exec hook is needed.

use std::convert::Infallible;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// Where the view is mounted (inside its own mount namespace only).
const VIEW_DIR: &str = "/run/rootshift/view";

/// What a view is made of.
#[derive(Debug, Clone)]
pub struct View {
    /// The partition the boot tools must see (`/dev/vda3`).
    pub part: PathBuf,
    /// The device `/` is mounted from (`/dev/mapper/rootshift-root`, `/dev/md_rootshift-root`).
    pub root_dev: PathBuf,
    pub fstype: String,
    /// Mount points of the running system to bind into the view as well (e.g. `/boot/efi`).
    pub binds: Vec<PathBuf>,
}

impl View {
    /// A command that runs `program args…` inside the view.
    pub fn command(&self, program: &Path) -> Result<Command> {
        let exe = fs::read_link("/proc/self/exe").context("finding the rootshift binary")?;
        let mut c = Command::new(exe);
        c.arg("view-exec")
            .arg("--part")
            .arg(&self.part)
            .arg("--root-dev")
            .arg(&self.root_dev)
            .arg("--fstype")
            .arg(&self.fstype);
        for b in &self.binds {
            c.arg("--bind").arg(b);
        }
        c.arg("--").arg(program);
        Ok(c)
    }
}

/// `rootshift view-exec`: build the view in a new mount namespace and exec `argv` in it.
pub fn exec(view: &View, argv: &[String]) -> Result<Infallible> {
    let (program, args) = argv
        .split_first()
        .context("view-exec needs a program to run")?;
    let none: Option<&str> = None;
    unshare(CloneFlags::CLONE_NEWNS).context("unshare(CLONE_NEWNS)")?;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .context("making the mount namespace private")?;
    fs::create_dir_all(VIEW_DIR).with_context(|| format!("creating {VIEW_DIR}"))?;
    mount(
        Some(view.root_dev.as_path()),
        view.part.as_path(),
        none,
        MsFlags::MS_BIND,
        none,
    )
    .with_context(|| {
        format!(
            "binding {} over {}",
            view.root_dev.display(),
            view.part.display()
        )
    })?;
    let mounted = mount(
        Some(view.part.as_path()),
        VIEW_DIR,
        Some(view.fstype.as_str()),
        MsFlags::empty(),
        none,
    );
    umount2(view.part.as_path(), MntFlags::MNT_DETACH)
        .with_context(|| format!("dropping the bind over {}", view.part.display()))?;
    mounted.with_context(|| {
        format!(
            "mounting the running root a second time as {} at {VIEW_DIR}",
            view.part.display()
        )
    })?;
    let root = Path::new(VIEW_DIR);
    for (src, rec) in [
        ("/proc", true),
        ("/sys", true),
        ("/dev", true),
        ("/run", false),
    ] {
        bind(Path::new(src), &root.join(&src[1..]), rec)?;
    }
    for b in &view.binds {
        let rel = b.strip_prefix("/").unwrap_or(b);
        bind(b, &root.join(rel), true)?;
    }
    nix::unistd::chroot(root).context("chroot into the view")?;
    std::env::set_current_dir("/").context("chdir / in the view")?;
    let err = Command::new(program)
        .args(args)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .exec();
    Err(err).with_context(|| format!("executing {program} in the view"))
}

fn bind(src: &Path, dst: &Path, recursive: bool) -> Result<()> {
    let none: Option<&str> = None;
    let mut flags = MsFlags::MS_BIND;
    if recursive {
        flags |= MsFlags::MS_REC;
    }
    mount(Some(src), dst, none, flags, none).with_context(|| {
        format!(
            "binding {} into the view at {}",
            src.display(),
            dst.display()
        )
    })
}
