//! `rootshift install --disk DISK --layout plain`: a conventional installed system (a plain ext4 or
//! xfs root) from a running live session, copied file by file while it runs, then entered with
//! `systemctl soft-reboot` (issue 19).
//!
//! ```text
//! checks (disk, sizes, tools, boot loader, soft-reboot) ─► table ─► mkfs ─► mount at /run/nextroot
//!   ─► pass 1 (the session keeps running) ─► catch-up passes ─► cut-off: the final pass
//!   ─► finalise in a chroot of the target (finalize.rs) ─► soft-reboot into it (soft_reboot.rs)
//! ```
//!
//! The live root (an overlay whose upper is in RAM, or dmsquash-live's snapshot) cannot be frozen,
//! so the copy is consistent as of the final pass only: writes after the cut-off are lost, and the
//! command says so before it makes that pass. Nothing is copied from an overlay's upper directory
//! directly: every pass reads the merged view ([`crate::treecopy`]).

mod chroot;
mod finalize;
pub mod flatmove;
mod flatten;
mod livesetup;
mod place;
pub mod release;
mod size;
pub mod soft_reboot;

pub use flatten::{flatten, FlattenOptions};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde_json::json;

use crate::disk::layout::LayoutOptions;
use crate::error::refuse;
use crate::finish::bootloader::Choice;
use crate::kernel::blockdev::BlockDev;
use crate::kernel::mounts;
use crate::lock::Lock;
use crate::migrate::{self, preflight};
use crate::progress::Progress;
use crate::treecopy::{self, Stats};
use crate::units::human_bytes;

/// Where the target's root is mounted: the directory `systemctl soft-reboot` switches into.
pub const NEXTROOT: &str = "/run/nextroot";

/// The root filesystem a plain install makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlainFs {
    Ext4,
    Xfs,
}

impl PlainFs {
    pub fn name(self) -> &'static str {
        match self {
            PlainFs::Ext4 => "ext4",
            PlainFs::Xfs => "xfs",
        }
    }
}

/// `install --layout plain`'s options.
#[derive(Debug, Clone)]
pub struct PlainOptions {
    pub disk: PathBuf,
    pub layout: LayoutOptions,
    pub bootloader: Choice,
    pub dry_run: bool,
    pub yes: bool,
    pub json: bool,
    pub fs: PlainFs,
    /// `systemctl soft-reboot` into the installed system at the end (`--no-soft-reboot`: no).
    pub soft_reboot: bool,
}

/// Whether `/` is a live session's root: an overlay (live-boot, dracut's overlayfs media,
/// casper), or dmsquash-live's snapshot (under a rootshift wrapper or not).
fn live_root() -> Result<Option<String>> {
    let root = mounts::root_mount()?;
    if root.fs_type == "overlay" {
        return Ok(Some("an overlayfs live session".into()));
    }
    let dev = BlockDev::from_devnum(root.devnum)?;
    let mut stack = vec![dev];
    while let Some(d) = stack.pop() {
        if d.dm_name()
            .is_some_and(|n| n.starts_with(crate::live::LIVE_DM_PREFIX))
        {
            return Ok(Some(format!("a live medium's snapshot ({})", d.display())));
        }
        if d.dm_name()
            .is_some_and(|n| n.starts_with(crate::wrapper::PREFIX))
        {
            stack.extend(d.slaves());
        }
    }
    Ok(None)
}

/// `rootshift install --disk DISK --layout plain`.
/// `inhibit`: the shutdown inhibitor the run holds; let go of before the soft-reboot (logind
/// refuses a soft-reboot while a block inhibitor is held: "Access denied").
pub fn install(plain: &PlainOptions, inhibit: Option<crate::session::Inhibitor>) -> Result<()> {
    let opts = plain;
    let (_lock, mut progress) = begin(opts.dry_run, opts.json)?;
    let Some(what) = live_root()? else {
        return Err(refuse(
            "/ is not a live session's root: --layout plain copies a live system file by file",
            Some("an installed system moves as a block device: `rootshift install --disk DISK` without --layout plain"),
        ));
    };
    progress.event(
        "source",
        &format!("/ is {what}: it is copied file by file, from the merged view"),
        json!({"source": what}),
    );
    let l = &opts.layout;
    if l.root_clones > 0 || l.boot_partition.is_some() {
        return Err(refuse(
            "--layout plain makes one root partition: --root-clones and --boot-partition are for the block copy",
            Some("leave out --root-clones and --boot-partition"),
        ));
    }
    if matches!(opts.bootloader, Choice::SystemdBoot) {
        return Err(refuse(
            "--layout plain installs GRUB (BIOS and UEFI); systemd-boot is not supported for it yet",
            Some("leave --bootloader out, or use grub-bios / grub-efi"),
        ));
    }
    let dest = preflight::resolve_target(&opts.disk)?;
    check_nextroot_free()?;
    let place = if dest.is_partition() {
        place::on_partition(&dest, opts)?
    } else {
        place::on_disk(dest, opts)?
    };
    let disk = place.disk().clone();
    let d = disk.display();

    // What the tree needs, against the root partition.
    let size = size::tree_bytes(Path::new("/"))?;
    let used = size.allocated;
    let root_bytes = place.root_bytes();
    let need = used + used / 10 + (128 << 20);
    if root_bytes < need {
        return Err(refuse(
            format!(
                "the root partition ({}) is too small for the running system's files ({} in use; \
                 with room for the filesystem that is {})",
                human_bytes(root_bytes),
                human_bytes(used),
                human_bytes(need)
            ),
            Some("use a larger disk or partition (or a smaller --esp-size / --data-partition)"),
        ));
    }
    let bios = place.has_bios_boot() && opts.bootloader != Choice::GrubEfi;
    let efi = place.has_esp() && opts.bootloader != Choice::GrubBios;
    let tools = finalize::preflight(plain.fs, bios, efi)?;
    let sr = if plain.soft_reboot {
        Some(soft_reboot::check(Path::new("/"))?)
    } else {
        None
    };

    let text = place.describe(plain.fs);
    if !opts.json {
        print!("{text}");
        if !text.ends_with('\n') {
            println!();
        }
    }
    let loaders: Vec<&str> = [(bios, "grub-bios"), (efi, "grub-efi")]
        .iter()
        .filter(|x| x.0)
        .map(|x| x.1)
        .collect();
    let mut ev = place.layout_json();
    ev["layout"] = "plain".into();
    ev["fs"] = plain.fs.name().into();
    ev["tree_bytes"] = used.into();
    ev["bootloader"] = json!(loaders);
    ev["soft_reboot"] = json!(sr.as_ref().map(|s| s.systemd_version));
    progress.event("layout", if opts.json { &text } else { "" }, ev);
    if opts.dry_run {
        progress.event("dry-run", "dry run: nothing was written", json!({}));
        return Ok(());
    }
    migrate::confirm(
        &format!(
            "{} Then the running system is copied onto it while it runs, and made an installed system{}.",
            place.question(),
            if sr.is_some() {
                "; then `systemctl soft-reboot` restarts every program from it (the kernel keeps running)"
            } else {
                " that boots at the next start"
            }
        ),
        opts.yes,
    )?;

    // ---- from here the disk changes
    if efi {
        tools.ensure_secure_boot_chain(&progress)?;
    }
    let made = place.prepare(&progress)?;
    let target = &made.root;
    let esp = made.esp.clone();
    finalize::mkfs(
        &tools,
        plain.fs,
        target,
        made.format_esp.then_some(()).and(esp.as_ref()),
    )?;
    let nextroot = PathBuf::from(NEXTROOT);
    std::fs::create_dir_all(&nextroot)?;
    nix::mount::mount(
        Some(target.path.as_path()),
        &nextroot,
        Some(plain.fs.name()),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("mounting {} at {NEXTROOT}", target.display()))?;
    progress.event(
        "mkfs",
        &format!(
            "made {} on {} and mounted it at {NEXTROOT}{}",
            plain.fs.name(),
            target.display(),
            match (&esp, made.format_esp) {
                (Some(e), true) => format!("; FAT on the ESP {}", e.display()),
                (Some(e), false) => format!("; the ESP {} is used as it is", e.display()),
                (None, _) => String::new(),
            }
        ),
        json!({"root": target.display(), "fs": plain.fs.name(), "esp": esp.as_ref().map(|e| e.display()),
               "esp_formatted": made.format_esp}),
    );

    // A failure from here leaves the session as it was and the target half made: unmounted, so
    // that the command can simply be run again.
    let failed = |e: anyhow::Error| {
        let _ = nix::mount::umount2(&nextroot, nix::mount::MntFlags::MNT_DETACH);
        e.context(format!(
            "the install onto {} is incomplete (the live session is unchanged; run the command again)",
            target.display()
        ))
    };
    let copied = copy_passes(&nextroot, size.data, &mut progress, false).map_err(failed)?;
    let t = finalize::Target {
        root: &nextroot,
        disk: &disk,
        root_part: target,
        esp: esp.as_ref(),
        esp_foreign: made.esp_foreign,
        fs: plain.fs,
        bios,
        efi,
        tools: &tools,
        boot: None,
        before_boot_loader: None,
    };
    let done = finalize::run(&t, &progress).map_err(failed)?;
    if let Some(ids) = &made.partids {
        crate::finish::ids::write_atomic(
            &nextroot.join(crate::disk::layout::PARTIDS.trim_start_matches('/')),
            ids.as_bytes(),
            0o644,
        )
        .map_err(failed)?;
    }
    progress.event(
        "installed",
        &format!(
            "{d} holds an installed system: {} root {} (UUID {}), {} files copied",
            plain.fs.name(),
            target.display(),
            done.root_uuid,
            copied
        ),
        json!({"root": target.display(), "root_uuid": done.root_uuid, "machine_id": done.machine_id,
               "files": copied, "steps": done.steps}),
    );
    enter_or_leave(sr, &nextroot, &progress, opts.yes, inhibit, &d)
}

/// The start of `install --layout plain` and `flatten`: root, the lock (not for a dry run), the
/// progress output.
fn begin(dry_run: bool, json: bool) -> Result<(Option<Lock>, Progress)> {
    preflight::require_root()?;
    let lock = if dry_run {
        None
    } else {
        Some(Lock::acquire()?)
    };
    Ok((lock, Progress::new(json)))
}

fn check_nextroot_free() -> Result<()> {
    if mounts::mounts()?
        .iter()
        .any(|m| m.mount_point.starts_with(NEXTROOT))
    {
        return Err(refuse(
            format!("{NEXTROOT} is in use (something is mounted there)"),
            Some(&format!("unmount {NEXTROOT} first")),
        ));
    }
    Ok(())
}

/// The end: the soft-reboot into the tree at `nextroot`, or (`--no-soft-reboot`) unmount it and
/// say that `disk` starts it at the next boot.
fn enter_or_leave(
    sr: Option<soft_reboot::SoftReboot>,
    nextroot: &Path,
    progress: &Progress,
    yes: bool,
    inhibit: Option<crate::session::Inhibitor>,
    disk: &str,
) -> Result<()> {
    match sr {
        Some(s) => soft_reboot::enter(&s, nextroot, progress, yes, inhibit),
        None => {
            finalize::unmount_target(nextroot)?;
            progress.event(
                "next-boot",
                &format!(
                    "not soft-rebooting (--no-soft-reboot): the installed system starts when the computer boots from {disk}"
                ),
                json!({"disk": disk}),
            );
            Ok(())
        }
    }
}

/// Copy passes of `/` onto `dst` until one changes little, then the cut-off and the final pass.
/// `resume`: `dst` holds an earlier run's copy, which the first pass brings up to date (a
/// catch-up pass from the epoch: what differs is copied, what is gone removed).
/// Returns the files the passes copied in all.
fn copy_passes(dst: &Path, total: u64, progress: &mut Progress, resume: bool) -> Result<u64> {
    let threads = std::thread::available_parallelism()
        .map(|n| (n.get() * 2).min(16))
        .unwrap_or(4);
    let mut opts = treecopy::Options::system_root(Path::new("/"), threads);
    if resume {
        opts.since = Some((0, 0));
    }
    let mut files = 0;
    // pass 1 while the session runs, catch-ups while they keep finding much, then the final pass
    const MAX_CATCH_UPS: u32 = 2;
    let mut pass = 1;
    loop {
        let c = run_pass(dst, &mut opts, progress, pass, false, total)?;
        files += c.files;
        if pass > MAX_CATCH_UPS || (pass > 1 && c.bytes < (64 << 20) && c.files < 2000) {
            break;
        }
        pass += 1;
    }
    progress.event(
        "cut-off",
        "cut-off: the final pass starts now; what programs write after this point is not in the \
         installed system (they keep running until the soft-reboot or shutdown)",
        json!({"pass": pass + 1}),
    );
    let c = run_pass(dst, &mut opts, progress, pass + 1, true, total)?;
    Ok(files + c.files)
}

/// One pass of the copier (in a thread, so that pass 1 can show progress), then its event.
/// The next pass catches up from this one's start.
fn run_pass(
    dst: &Path,
    opts: &mut treecopy::Options,
    progress: &mut Progress,
    pass: u32,
    last: bool,
    total: u64,
) -> Result<treecopy::Counts> {
    let start = treecopy::pass_start();
    let stats = Arc::new(Stats::default());
    let t0 = Instant::now();
    let bar = pass == 1;
    if bar {
        progress.start_copy(total);
    }
    let h = {
        let (stats, opts, dst) = (stats.clone(), opts.clone(), dst.to_path_buf());
        std::thread::spawn(move || treecopy::copy_tree(Path::new("/"), &dst, &opts, &stats))
    };
    while !h.is_finished() {
        std::thread::sleep(Duration::from_millis(500));
        if bar {
            let c = stats.counts();
            progress.update_named(
                "file-progress",
                c.bytes.min(total),
                total,
                json!({"pass": 1, "files": c.files}),
            );
        }
    }
    h.join()
        .map_err(|_| anyhow!("the copy thread panicked"))?
        .with_context(|| format!("copy pass {pass} onto {}", dst.display()))?;
    if bar {
        progress.finish_copy();
    }
    let c = stats.counts();
    let secs = t0.elapsed().as_secs_f64();
    let mut v = serde_json::to_value(c)?;
    v["pass"] = pass.into();
    v["final"] = last.into();
    v["seconds"] = json!((secs * 1000.0).round() / 1000.0);
    progress.event(
        "pass",
        &format!(
            "pass {pass}{}: {} files ({}), {} directories, {} unchanged, {} removed in {secs:.1} s",
            if last { " (final)" } else { "" },
            c.files,
            human_bytes(c.bytes),
            c.dirs,
            c.unchanged,
            c.removed
        ),
        v,
    );
    opts.since = Some(start);
    Ok(c)
}
