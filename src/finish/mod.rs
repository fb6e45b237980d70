//! Boot finalisation: turn the migrated root into an installed system that boots from the target
//! alone, with the system still running.
//!
//! ```text
//! preflight (before the copy: boot loader, ESP/BIOS boot, tools, initramfs, other mounts)
//!   └─ after the migration: ids ─► machine-id ─► ESP ─► swap ─► fstab ─► boot loader package
//!                           ─► initramfs ─► boot loader ─► spin hooks ─► sync
//! ```
//! Every step is re-runnable: `rootshift finish` repeats the whole sequence on the running system.

pub mod bootloader;
pub mod cmdline;
pub mod cryptboot;
pub mod crypttab;
mod esp;
pub mod fstab;
pub mod hooks;
pub mod ids;
pub mod initramfs;
pub mod live;
mod packages;
pub mod rootspec;
pub mod secureboot;
pub mod view;

mod clones;
mod preflight;

pub use clones::{clone_identity, clone_label, CloneIds};
/// Run a distribution tool; its stderr (or stdout) in the error when it fails.
pub(crate) use packages::run_checked;
pub use preflight::{is_live_source, preflight};

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::Serialize;
use serde_json::json;

use crate::kernel::blockdev::BlockDev;
use crate::kernel::mounts::{self, Mount};
use crate::progress::Progress;
use crate::tools;
use bootloader::Choice;
use cmdline::Cmdline;
use fstab::{Entry, Fstab};

/// What the user asked of the install step.
#[derive(Debug, Clone)]
pub struct Options {
    pub bootloader: Choice,
    pub initramfs: initramfs::Mode,
    /// A partition to become /boot (formatted ext4, /boot's files copied in): `rootshift install
    /// --boot-partition`.
    pub boot_partition: Option<PathBuf>,
    /// `migrate --force`: an ESP on the target disk that holds something else than FAT is
    /// formatted anyway.
    pub force: bool,
    /// `--encrypt`: the root moves into a new LUKS2 container on the target; the install step
    /// writes its crypttab entry, and needs an unencrypted /boot and cryptsetup in the initramfs.
    pub encrypt: bool,
    /// `--tpm2`: the container gets a TPM2 token, which only systemd-cryptsetup in the initramfs
    /// uses (crypttab's tpm2-device=).
    pub tpm2: bool,
    /// `--crypttab-key FILE`: the key file crypttab names for the root's container (the
    /// initramfs unlocks it with that file); default none: the passphrase is asked at boot.
    pub crypttab_key: Option<PathBuf>,
}

/// Something of the old disk the running system still uses besides `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leftover {
    /// The old ESP mounted at /boot/efi: replaced by the target disk's ESP.
    Esp(Mount),
    /// A swap partition: replaced by a swap file of the same size on the new root.
    Swap { dev: PathBuf, bytes: u64 },
}

/// Everything checked before the copy starts; carried to [`run`] after the switch.
#[derive(Debug, Clone)]
pub struct Plan {
    pub boot: bootloader::Plan,
    pub initramfs: initramfs::Mode,
    pub initramfs_tool: Option<initramfs::Tool>,
    pub kernels: Vec<String>,
    /// The source is a live medium (dmsquash-live): fresh machine-id, live entries dropped.
    pub live_source: bool,
    pub fs_type: String,
    pub leftovers: Vec<Leftover>,
    /// The partition that becomes /boot.
    pub boot_part: Option<BlockDev>,
    /// An encrypted root's key file for crypttab (`--crypttab-key`).
    pub crypttab_key: Option<PathBuf>,
}

pub use crate::state::journal::InstallRecord as Record;

/// The new system's facts, for the summary, the journal and the spin hooks.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub bootloader: &'static str,
    pub root_uuid: String,
    pub disk: String,
    pub target: String,
    pub esp: Option<String>,
    pub machine_id: Option<String>,
}

/// `os-release`'s ID of the system at `root` (the EFI directory's name), `linux` without one.
pub fn os_id(root: &Path) -> String {
    fs::read_to_string(root.join("etc/os-release"))
        .or_else(|_| fs::read_to_string(root.join("usr/lib/os-release")))
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("ID=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "linux".into())
}

/// Carry out the install step after the switch. `source` is the detached old device (None
/// when unknown, e.g. `rootshift finish` without a journal).
pub fn run(
    plan: &Plan,
    wrapper_node: &Path,
    target: &BlockDev,
    source: Option<&BlockDev>,
    rec: &mut Record,
    progress: &Progress,
    mut save: impl FnMut(&Record),
) -> Result<Outcome> {
    let step = |rec: &mut Record, save: &mut dyn FnMut(&Record), name: &str, lines: Vec<String>| {
        for l in &lines {
            progress.event(
                "install",
                &format!("install: {l}"),
                json!({"step": name, "detail": l}),
            );
        }
        rec.steps
            .extend(lines.into_iter().map(|l| format!("{name}: {l}")));
        save(rec);
    };
    rec.state = "running".into();
    rec.steps.clear();
    rec.error = None;
    save(rec);
    let wrapper = BlockDev::from_path(wrapper_node)
        .map_err(|e| anyhow!("the wrapper {}: {e}", wrapper_node.display()))?;
    let root = Path::new("/");
    // --encrypt: the target is the container's mapping; the boot tools see its partition's disk
    let crypt = cryptboot::Container::of(target)?;

    // ---- ids
    let before = ids::uuid_on(&wrapper)?.ok_or_else(|| anyhow!("/ shows no filesystem UUID"))?;
    rec.root_uuid_before = Some(before.clone());
    let mut lines = vec![];
    let mut changed_online = None;
    if let (false, Some(su)) = (plan.live_source, rec.source_uuid.clone()) {
        // the migration already gave the detached source a new UUID: the target keeps the one
        // fstab and the boot loader know, and nothing else carries it
        lines.push(format!(
            "kept UUID {before} on the target; the detached source already got {su}"
        ));
        rec.uuid_changed_on = Some("source (offline)".into());
    } else if plan.fs_type.starts_with("ext") {
        changed_online = ids::set_ext4_uuid_online(root)?;
        if changed_online.is_none() {
            lines.push(
                "the kernel cannot change this ext4's UUID online (no metadata_csum_seed)".into(),
            );
        }
    }
    if rec.uuid_changed_on.is_some() {
    } else if let Some(new) = &changed_online {
        ids::make_visible(root, target, &wrapper, new)?;
        lines.push(format!(
            "new filesystem UUID {new} (was {before}), visible on {}",
            target.display()
        ));
        rec.uuid_changed_on = Some("target (online)".into());
    } else if plan.live_source {
        lines.push(format!(
            "kept UUID {before}: the other copy is inside the read-only live image"
        ));
        rec.uuid_changed_on = Some("none (live medium)".into());
    } else if let Some(src) = source {
        let su = ids::set_uuid_offline(src, &plan.fs_type)?;
        lines.push(format!(
            "kept UUID {before} on the target; the detached source {} now has {su}",
            src.display()
        ));
        rec.source_uuid = Some(su);
        rec.uuid_changed_on = Some("source (offline)".into());
    } else {
        bail!(
            "the filesystem UUID {before} could not be changed online and the old device is unknown: two devices \
             may carry it; change it on the old device (xfs_admin -U generate / tune2fs -U random) and run \
             `rootshift finish` again"
        );
    }
    let root_uuid =
        ids::uuid_on(target)?.ok_or_else(|| anyhow!("{} shows no UUID", target.display()))?;
    rec.root_uuid = Some(root_uuid.clone());
    step(rec, &mut save, "ids", lines);

    // ---- machine-id (a live medium's is shared by every copy of it)
    if plan.live_source {
        let id = ids::new_machine_id();
        ids::write_machine_id(root, &id)?;
        rec.machine_id = Some(id.clone());
        step(
            rec,
            &mut save,
            "machine-id",
            vec![format!("new /etc/machine-id {id}")],
        );
    }

    // ---- ESP
    let fstab_text = fs::read_to_string("/etc/fstab").unwrap_or_default();
    let mut tab: Fstab = fstab_text.parse().map_err(|e| anyhow!("/etc/fstab: {e}"))?;
    let mut esp_uuid = None;
    if let Some(esp) = &plan.boot.esp {
        let mut lines = vec![];
        if plan.boot.esp_mkfs {
            tools::run("mkfs.vfat", &["-F", "32", "-n", "EFI", &esp.display()])?;
            lines.push(format!("formatted {} (FAT32)", esp.display()));
        }
        let mp = Path::new("/boot/efi");
        for l in &plan.leftovers {
            if let Leftover::Esp(m) = l {
                umount2(&m.mount_point, MntFlags::empty()).with_context(|| {
                    format!("unmounting the old ESP at {}", m.mount_point.display())
                })?;
                lines.push(format!(
                    "unmounted the old ESP {} from {}",
                    m.source,
                    m.mount_point.display()
                ));
                tab.remove_where(|e| e.file == "/boot/efi");
            }
        }
        let already = mounts::mounts()?
            .iter()
            .any(|m| m.mount_point == mp && m.devnum == esp.devnum);
        if !already {
            fs::create_dir_all(mp).context("creating /boot/efi")?;
            mount(
                Some(esp.path.as_path()),
                mp,
                Some("vfat"),
                MsFlags::empty(),
                Some("umask=0077"),
            )
            .with_context(|| format!("mounting {} at /boot/efi", esp.display()))?;
            lines.push(format!("mounted {} at /boot/efi", esp.display()));
        }
        let u = ids::uuid_on(esp)?
            .ok_or_else(|| anyhow!("{} shows no FAT volume id", esp.display()))?;
        esp_uuid = Some(u);
        step(rec, &mut save, "esp", lines);
    }

    // ---- swap: a partition on the old disk becomes a swap file on the new root
    for l in &plan.leftovers {
        if let Leftover::Swap { dev, bytes } = l {
            let file = Path::new("/swapfile");
            let mib = (bytes >> 20).max(1).to_string();
            tools::run("swapoff", &[&dev.display().to_string()])?;
            tools::run(
                "dd",
                &[
                    "if=/dev/zero",
                    "of=/swapfile",
                    "bs=1M",
                    &format!("count={mib}"),
                    "status=none",
                ],
            )?;
            fs::set_permissions(file, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            tools::run("mkswap", &["/swapfile"])?;
            tools::run("swapon", &["/swapfile"])?;
            let d = dev.display().to_string();
            // the old swap's entry, however fstab names it: by path, or by a tag — the swap
            // header's UUID, or udev's /dev/disk/by-* link to the partition
            let old = BlockDev::from_path(dev).ok();
            let old_uuid = old.as_ref().and_then(|b| ids::uuid_on(b).ok().flatten());
            tab.remove_where(|e| {
                e.vfstype == "swap"
                    && (e.spec == d
                        || old_uuid
                            .as_ref()
                            .is_some_and(|u| e.spec.eq_ignore_ascii_case(&format!("UUID={u}")))
                        || old.as_ref().is_some_and(|b| {
                            BlockDev::from_path(Path::new(&e.spec_path()))
                                .is_ok_and(|x| x.devnum == b.devnum)
                        }))
            });
            tab.set(Entry::new("/swapfile", "none", "swap", "sw", 0), false);
            step(
                rec,
                &mut save,
                "swap",
                vec![format!("swap moved from {d} to /swapfile ({mib} MiB)")],
            );
        }
    }

    // ---- a separate /boot: format, copy /boot's files in, mount it over /boot
    let mut boot_uuid = None;
    if let Some(bp) = &plan.boot_part {
        let d = bp.display();
        tools::run("mkfs.ext4", &["-q", "-F", "-L", "boot", &d])?;
        let tmp = Path::new("/run/rootshift/newboot");
        fs::create_dir_all(tmp)?;
        mount(
            Some(bp.path.as_path()),
            tmp,
            Some("ext4"),
            MsFlags::empty(),
            None::<&str>,
        )
        .with_context(|| format!("mounting {d}"))?;
        let copied = tools::run("cp", &["-a", "/boot/.", "/run/rootshift/newboot/"]);
        let unmounted = umount2(tmp, MntFlags::empty());
        copied.context("copying /boot onto the new /boot partition")?;
        unmounted.with_context(|| format!("unmounting {d}"))?;
        mount(
            Some(bp.path.as_path()),
            Path::new("/boot"),
            Some("ext4"),
            MsFlags::empty(),
            None::<&str>,
        )
        .with_context(|| format!("mounting {d} on /boot"))?;
        let u = ids::uuid_on(bp)?.ok_or_else(|| anyhow!("{d} shows no UUID after mkfs"))?;
        step(
            rec,
            &mut save,
            "boot",
            vec![format!("/boot is now {d} (UUID {u}), its files copied in")],
        );
        boot_uuid = Some(u);
    }

    // ---- fstab
    let removed = tab.remove_where(fstab::is_live_only);
    let passno = if plan.fs_type.starts_with("ext") {
        1
    } else {
        0
    };
    tab.set(
        Entry::new(
            &format!("UUID={root_uuid}"),
            "/",
            &plan.fs_type,
            "defaults",
            passno,
        ),
        true,
    );
    if let Some(u) = &boot_uuid {
        tab.set(
            Entry::new(&format!("UUID={u}"), "/boot", "ext4", "defaults", 2),
            false,
        );
    }
    if let Some(u) = &esp_uuid {
        tab.set(
            Entry::new(&format!("UUID={u}"), "/boot/efi", "vfat", "umask=0077", 2),
            false,
        );
    }
    let new_text = tab.to_string();
    let mut lines = vec![format!("/ is UUID={root_uuid}")];
    lines.extend(
        removed
            .iter()
            .map(|e| format!("dropped the live-only entry {e}")),
    );
    if new_text != fstab_text {
        ids::write_atomic(Path::new("/etc/fstab"), new_text.as_bytes(), 0o644)?;
    }
    step(rec, &mut save, "fstab", lines);

    // ---- crypttab: a root moved into a new LUKS container (--encrypt) is unlocked by the
    // initramfs before it is looked for (other entries name containers by their own LUKS UUIDs,
    // which nothing here changes)
    if let Some(c) = &crypt {
        let mut lines = cryptboot::write_entry(c, plan.crypttab_key.as_deref())?;
        if let Some(k) = &plan.crypttab_key {
            lines.extend(cryptboot::keep_key_in_initramfs(k)?);
        }
        step(rec, &mut save, "crypttab", lines);
    }

    // ---- boot loader package, initramfs, boot loader
    if let Some(l) = bootloader::ensure_package(plan.boot.bootloader)? {
        step(rec, &mut save, "package", vec![l]);
    }
    let lines = match (plan.initramfs, plan.initramfs_tool) {
        (initramfs::Mode::Regenerate, Some(t)) => initramfs::regenerate(t, &plan.kernels)?,
        _ => plan
            .kernels
            .iter()
            .map(|k| format!("kept the prebuilt {}", initramfs::initrd_path(k).display()))
            .collect(),
    };
    step(rec, &mut save, "initramfs", lines);
    let cmdline = Cmdline::read()
        .context("reading /proc/cmdline")?
        .for_installed();
    let mut binds = vec![];
    if plan.boot_part.is_some() {
        binds.push(PathBuf::from("/boot"));
    }
    if plan.boot.esp.is_some() {
        binds.push(PathBuf::from("/boot/efi"));
    }
    let ctx = bootloader::Ctx {
        plan: &plan.boot,
        view: view::View {
            part: target.path.clone(),
            root_dev: wrapper_node.to_path_buf(),
            fstype: plan.fs_type.clone(),
            binds,
        },
        root_uuid: &root_uuid,
        cmdline: &cmdline,
        os_id: os_id(Path::new("/")),
        kernels: &plan.kernels,
    };
    let lines = bootloader::install(&ctx)?;
    step(rec, &mut save, "bootloader", lines);

    // ---- spin hooks
    let disk = plan
        .boot
        .target
        .as_ref()
        .map(|t| t.disk.display())
        .unwrap_or_default();
    let env = vec![
        ("ROOTSHIFT_TARGET", target.display()),
        ("ROOTSHIFT_TARGET_DISK", disk.clone()),
        ("ROOTSHIFT_ROOT_UUID", root_uuid.clone()),
        (
            "ROOTSHIFT_BOOTLOADER",
            plan.boot.bootloader.as_str().to_string(),
        ),
        (
            "ROOTSHIFT_SOURCE_KIND",
            if plan.live_source {
                "live"
            } else {
                "installed"
            }
            .to_string(),
        ),
        (
            "ROOTSHIFT_ESP",
            plan.boot
                .esp
                .as_ref()
                .map(|e| e.display())
                .unwrap_or_default(),
        ),
    ];
    let lines = hooks::run(Path::new(hooks::DIR), &env)?;
    if !lines.is_empty() {
        step(rec, &mut save, "hooks", lines);
    }
    nix::unistd::sync();
    rec.state = "done".into();
    save(rec);
    Ok(Outcome {
        bootloader: plan.boot.bootloader.as_str(),
        root_uuid,
        disk,
        target: target.display(),
        esp: plan.boot.esp.as_ref().map(|e| e.display()),
        machine_id: rec.machine_id.clone(),
    })
}
