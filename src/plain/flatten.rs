//! `rootshift flatten`: a disk made by `install --disk` on a live session (an image partition with
//! the squashfs, a persistence partition with the overlay's upper) becomes a conventional
//! installed system, in place, the way `install --layout plain` makes one (issue 19 §5).
//!
//! Where things go:
//! - **the plain root goes onto the persistence partition**, into its filesystem (same UUID): the
//!   merged view is copied into `rootshift-flat/` at its top while the session runs from the old
//!   upper beside it (the partition holds the upper, so it needs room for the whole tree);
//! - **the image partition becomes `/boot`**: the tree's kernels and initrds go there, GRUB's
//!   `grub.cfg` is written there by grub-mkconfig (the boot loader already loads it from there),
//!   then the squashfs, the live kernels and `.disk/` are removed (the running session keeps the
//!   image open through its loop device until the soft-reboot);
//! - the ESP keeps its place, with GRUB written again.
//!
//! A directory cannot become its filesystem's root while programs run from it: the soft-reboot
//! enters `rootshift-flat/` as a bind mount, and the next real boot's initrd moves it to the top
//! and removes the old upper ([`super::flatmove`]). The disk boots the live session until the
//! tree is marked ready, just before GRUB is written; from then on it boots the plain system.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde_json::json;

use super::flatmove::{MOVING, READY, STAGE};
use super::{finalize, size, soft_reboot, PlainFs, NEXTROOT};
use crate::disk;
use crate::error::refuse;
use crate::finish::bootloader::Choice;
use crate::finish::live::{Flavour, LiveConf, LIVE_CONF};
use crate::kernel::blockdev::BlockDev;
use crate::kernel::mounts;
use crate::live::overlay::OverlayRoot;
use crate::migrate;
use crate::treecopy;
use crate::units::human_bytes;

/// `rootshift flatten`'s options.
#[derive(Debug, Clone)]
pub struct FlattenOptions {
    pub bootloader: Choice,
    pub dry_run: bool,
    pub yes: bool,
    pub json: bool,
    pub soft_reboot: bool,
}

/// The boot-time move needs rootshift and its initramfs-tools script or dracut module in the
/// installed system's initrd.
const BOOT_STEP_FILES: &[&str] = &[
    "usr/share/initramfs-tools/scripts/local-bottom/rootshift",
    "usr/lib/dracut/modules.d/90rootshift/rootshift-flatten.sh",
];

/// What the running disk is made of.
struct LiveDisk {
    disk: BlockDev,
    /// The persistence partition (the upper's filesystem), its mount of the whole filesystem,
    /// and its type.
    persistence: BlockDev,
    persistence_mnt: PathBuf,
    fs: PlainFs,
    /// The image partition, its mount (the live medium's) and its type.
    image: BlockDev,
    image_mnt: PathBuf,
    image_fs: String,
    kernel_dir: String,
    esp: Option<BlockDev>,
    bios_boot: bool,
}

fn way_out_plain() -> &'static str {
    "on a live CD or USB stick use `rootshift install --disk DISK --layout plain`"
}

/// Find the parts of the live disk `/` runs from; every mismatch is a refusal.
fn live_disk() -> Result<LiveDisk> {
    let text = fs::read_to_string(LIVE_CONF).map_err(|_| {
        refuse(
            format!(
                "this system was not installed onto its disk by `rootshift install --disk` from a live \
                 session (there is no {LIVE_CONF}): there is nothing to flatten"
            ),
            Some(way_out_plain()),
        )
    })?;
    let conf: LiveConf = text.parse().map_err(|e| anyhow!("{LIVE_CONF}: {e}"))?;
    let Some(ovl) = OverlayRoot::of_root()? else {
        return Err(refuse(
            "/ is not an overlay: this system is flat already",
            None,
        ));
    };
    let cmdline = fs::read_to_string("/proc/cmdline")?;
    if Flavour::of_cmdline(&cmdline) == Some(Flavour::Dracut) {
        return Err(refuse(
            "flatten supports live-boot disks (Debian, Ubuntu); this one boots with dracut's \
             dmsquash-live, which is not supported yet",
            Some("boot the live medium and use `rootshift install --disk DISK --layout plain`"),
        ));
    }
    let upper = ovl.upper.as_ref().ok_or_else(|| {
        refuse(
            "the overlay / has no upper layer (a read-only session): nothing to flatten",
            None,
        )
    })?;
    let persistence = BlockDev::from_devnum(upper.devnum).map_err(|e| {
        refuse(
            format!(
                "the overlay's upper {} is not on a block device ({e}): this is not a session booted from an installed live disk",
                upper.dir.display()
            ),
            Some(way_out_plain()),
        )
    })?;
    if !persistence.is_partition() {
        return Err(refuse(
            format!(
                "the overlay's upper is on {}, not on a persistence partition: this is not a session booted from an installed live disk",
                persistence.display()
            ),
            Some(way_out_plain()),
        ));
    }
    let whole = mounts::mounts_of(persistence.devnum)?
        .into_iter()
        .find(|m| m.root == Path::new("/") && m.mount_point != Path::new(NEXTROOT))
        .ok_or_else(|| anyhow!("{} is not mounted as a whole", persistence.display()))?;
    let fs = match whole.fs_type.as_str() {
        "ext4" => PlainFs::Ext4,
        "xfs" => PlainFs::Xfs,
        other => {
            return Err(refuse(
                format!(
                "the persistence partition {} holds {other}: flatten keeps that filesystem as the \
                     root and supports ext4 and xfs",
                persistence.display()
            ),
                None,
            ))
        }
    };
    let link = PathBuf::from(format!("/dev/disk/by-uuid/{}", conf.image_uuid));
    // the kernel's name (/dev/sda3) in what is shown, not the link
    let node = fs::canonicalize(&link).unwrap_or(link);
    let image = BlockDev::from_path(&node)
        .map_err(|e| anyhow!("the image partition (UUID {}): {e}", conf.image_uuid))?;
    let im = mounts::mounts_of(image.devnum)?
        .into_iter()
        .find(|m| m.root == Path::new("/"))
        .ok_or_else(|| anyhow!("the image partition {} is not mounted", image.display()))?;
    let dp = disk::locate(&persistence)?;
    let same_disk = disk::locate(&image).is_ok_and(|i| i.disk.devnum == dp.disk.devnum);
    if !same_disk {
        return Err(refuse(
            format!(
                "the image partition {} and the persistence partition {} are on different disks",
                image.display(),
                persistence.display()
            ),
            None,
        ));
    }
    let esp = dp
        .table
        .esp()
        .and_then(|e| disk::part_dev(&dp.disk, e.number));
    Ok(LiveDisk {
        disk: dp.disk.clone(),
        bios_boot: dp.table.bios_boot().is_some(),
        esp,
        persistence,
        persistence_mnt: whole.mount_point,
        fs,
        image,
        image_mnt: im.mount_point,
        image_fs: im.fs_type,
        kernel_dir: conf.kernel_dir,
    })
}

fn free_bytes(p: &Path) -> Result<u64> {
    let s = nix::sys::statvfs::statvfs(p).with_context(|| format!("statfs {}", p.display()))?;
    Ok(s.blocks_available() as u64 * s.fragment_size() as u64)
}

fn bind(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    mount(Some(from), to, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .with_context(|| format!("bind-mounting {} at {}", from.display(), to.display()))
}

/// `rootshift flatten`.
pub fn flatten(o: &FlattenOptions, inhibit: Option<crate::session::Inhibitor>) -> Result<()> {
    let (_lock, mut progress) = super::begin(o.dry_run, o.json)?;
    let ld = live_disk()?;
    super::check_nextroot_free()?;
    if !BOOT_STEP_FILES
        .iter()
        .any(|f| Path::new("/").join(f).exists())
    {
        return Err(refuse(
            "rootshift's boot hooks are not installed here: the next boot's initrd must move the \
             flattened tree into place",
            Some("install the rootshift package (or initrd-hook/install) and run flatten again"),
        ));
    }
    let bios = ld.bios_boot && o.bootloader != Choice::GrubEfi;
    let efi = ld.esp.is_some() && o.bootloader != Choice::GrubBios;
    if matches!(o.bootloader, Choice::SystemdBoot) {
        return Err(refuse(
            "flatten installs GRUB (BIOS and UEFI); systemd-boot is not supported for it yet",
            Some("leave --bootloader out, or use grub-bios / grub-efi"),
        ));
    }
    let tools = finalize::preflight(ld.fs, bios, efi)?;

    // room: the whole tree beside the old upper; /boot's files beside the live image
    let tree = size::tree_bytes(Path::new("/"))?;
    let stage_dir = ld.persistence_mnt.join(STAGE);
    let staged = if stage_dir.is_dir() {
        size::tree_bytes(&stage_dir)?.allocated
    } else {
        0
    };
    let need = tree.allocated + tree.allocated / 20 + (64 << 20);
    let free = free_bytes(&ld.persistence_mnt)? + staged;
    if free < need {
        return Err(refuse(
            format!(
                "the persistence partition {} has {} free; the flattened system needs {} there (its files \
                 take {}, and the old upper stays until the next boot)",
                ld.persistence.display(),
                human_bytes(free),
                human_bytes(need),
                human_bytes(tree.allocated)
            ),
            Some("free space in the session (remove files), or install onto another disk with `rootshift install --disk DISK --layout plain`"),
        ));
    }
    // /boot's files once, and room for the largest initrd while its replacement is written
    let boot = size::tree_bytes(Path::new("/boot"))?;
    let largest_initrd = fs::read_dir("/boot")?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("initrd"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(64 << 20);
    let boot_need = boot.allocated + largest_initrd + (16 << 20);
    let boot_free = free_bytes(&ld.image_mnt)?;
    if boot_free < boot_need {
        return Err(refuse(
            format!(
                "the image partition {} (the new /boot) has {} free; the kernels and initrds need {}",
                ld.image.display(),
                human_bytes(boot_free),
                human_bytes(boot_need)
            ),
            Some("remove old kernels in the session (apt purge linux-image-…)"),
        ));
    }
    let sr = if o.soft_reboot {
        Some(soft_reboot::check(Path::new("/"))?)
    } else {
        None
    };

    let d = ld.disk.display();
    let text = format!(
        "{d}: the plain root goes onto the persistence partition {} ({}, its UUID kept), copied into {STAGE}/ \
         while the session runs and moved to the top by the next boot's initrd, which then removes the old \
         upper; the image partition {} becomes /boot (the squashfs and the live kernels are removed); GRUB \
         for {}.",
        ld.persistence.display(),
        ld.fs.name(),
        ld.image.display(),
        [(bios, "BIOS"), (efi, "UEFI")].iter().filter(|x| x.0).map(|x| x.1).collect::<Vec<_>>().join(" and ")
    );
    if !o.json {
        println!("{text}");
    }
    progress.event(
        "flatten-plan",
        if o.json { &text } else { "" },
        json!({ "disk": d, "root": ld.persistence.display(), "fs": ld.fs.name(),
               "boot": ld.image.display(), "esp": ld.esp.as_ref().map(|e| e.display()),
               "tree_bytes": tree.allocated, "soft_reboot": sr.as_ref().map(|s| s.systemd_version)}),
    );
    if o.dry_run {
        progress.event("dry-run", "dry run: nothing was written", json!({}));
        return Ok(());
    }
    migrate::confirm(
        &format!(
            "Flatten this live disk {d} into an installed system{}? Programs keep running while it is \
             copied; what they write after the final pass (the cut-off) is not in the installed system. \
             The live image on the disk is removed once the new system is complete.",
            if sr.is_some() { ", then soft-reboot into it" } else { " that starts at the next boot" }
        ),
        o.yes,
    )?;

    // ---- from here the disks change; until READY the disk boots the live session as before
    if efi {
        tools.ensure_secure_boot_chain(&progress)?;
    }
    let top = &ld.persistence_mnt;
    for m in [READY, MOVING] {
        // an earlier run that stopped after marking: the live boot entry is still the one in use
        let _ = fs::remove_file(top.join(m));
    }
    let resume = stage_dir.is_dir();
    fs::create_dir_all(&stage_dir)?;
    let nextroot = PathBuf::from(NEXTROOT);
    bind(&stage_dir, &nextroot)?;
    progress.event(
        "mkfs",
        &format!(
            "{} into {} on {} ({}), mounted at {NEXTROOT}",
            if resume { "copying again" } else { "copying" },
            stage_dir.display(),
            ld.persistence.display(),
            ld.fs.name()
        ),
        json!({"root": ld.persistence.display(), "fs": ld.fs.name(), "stage": stage_dir, "resumed": resume,
               "esp": ld.esp.as_ref().map(|e| e.display()), "esp_formatted": false}),
    );
    let boot_mnt = nextroot.join("boot");
    let failed = |e: anyhow::Error| {
        let _ = umount2(&boot_mnt.join("efi"), MntFlags::MNT_DETACH);
        let _ = umount2(&boot_mnt, MntFlags::MNT_DETACH);
        let _ = umount2(&nextroot, MntFlags::MNT_DETACH);
        e.context(format!(
            "flattening {d} is incomplete (the disk still boots the live session; run the command again)"
        ))
    };
    let copied = super::copy_passes(&nextroot, tree.data, &mut progress, resume).map_err(failed)?;
    let boot_files = boot_to_image_partition(&ld, &nextroot).map_err(failed)?;
    progress.event(
        "boot-partition",
        &format!(
            "{} is the new /boot: {}",
            ld.image.display(),
            boot_files.join(", ")
        ),
        json!({"boot": ld.image.display(), "files": boot_files}),
    );
    let mark = || -> Result<()> {
        let p = top.join(READY);
        fs::write(
            &p,
            "rootshift flatten: the tree in rootshift-flat/ is complete\n",
        )?;
        fs::File::open(top).and_then(|f| f.sync_all())?;
        Ok(())
    };
    let t = finalize::Target {
        root: &nextroot,
        disk: &ld.disk,
        root_part: &ld.persistence,
        esp: ld.esp.as_ref(),
        esp_foreign: false,
        fs: ld.fs,
        bios,
        efi,
        tools: &tools,
        boot: Some((&ld.image, ld.image_fs.as_str())),
        before_boot_loader: Some(&mark),
    };
    let done = finalize::run(&t, &progress).map_err(failed)?;
    umount2(&boot_mnt, MntFlags::empty())
        .with_context(|| format!("unmounting {}", boot_mnt.display()))?;
    // the new boot entry is written: the live image goes (the loop device keeps it open)
    let mut removed = vec![];
    for name in [ld.kernel_dir.as_str(), ".disk"] {
        let p = ld.image_mnt.join(name);
        if p.is_dir() {
            fs::remove_dir_all(&p).with_context(|| format!("removing {}", p.display()))?;
            removed.push(p.display().to_string());
        }
    }
    progress.event(
        "installed",
        &format!(
            "{d} holds an installed system: {} root {} (UUID {}), {} files copied; removed {}",
            ld.fs.name(),
            ld.persistence.display(),
            done.root_uuid,
            copied,
            removed.join(", ")
        ),
        json!({"root": ld.persistence.display(), "root_uuid": done.root_uuid, "machine_id": done.machine_id,
               "files": copied, "steps": done.steps, "removed": removed, "pending": "the next boot moves the tree to the top"}),
    );
    if sr.is_some() {
        no_boot_fsck_until_reboot(&ld.image)?;
    }
    super::enter_or_leave(sr, &nextroot, &progress, o.yes, inhibit, &d)
}

/// The tree's /boot onto the image partition (made writable: live-boot mounts it read-only, and it
/// stays writable, since the installed system mounts it as /boot), then mounted at the tree's
/// /boot for the finish. GRUB's directory is left out: grub-install and grub-mkconfig write it,
/// and until then the live entry in it must keep working. Returns the names copied.
fn boot_to_image_partition(ld: &LiveDisk, nextroot: &Path) -> Result<Vec<String>> {
    mounts::remount(&ld.image_mnt, false)
        .with_context(|| format!("remounting {} read-write", ld.image_mnt.display()))?;
    let src = nextroot.join("boot");
    let mut o = treecopy::Options::new(2);
    o.skip = vec![src.join("grub"), src.join("efi")];
    let stats = treecopy::Stats::default();
    treecopy::copy_tree(&src, &ld.image_mnt, &o, &stats)
        .with_context(|| format!("copying /boot onto {}", ld.image.display()))?;
    let mut names = vec![];
    for e in fs::read_dir(&src)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        if e.file_type()?.is_dir() {
            fs::remove_dir_all(&p)?;
        } else {
            fs::remove_file(&p)?;
        }
        names.push(name);
    }
    names.sort();
    bind(&ld.image_mnt, &src)?;
    Ok(names)
}

/// The new userspace mounts /boot from fstab, and systemd checks it first; but the session's
/// mount of the image partition (its live medium) lives on until `release-live` runs, and e2fsck
/// refuses a mounted filesystem, which would fail the mount and the boot. A runtime drop-in (in
/// /run, gone at the next real boot, whose check then runs) skips that one check.
fn no_boot_fsck_until_reboot(image: &BlockDev) -> Result<()> {
    let Some(uuid) = crate::finish::ids::uuid_on(image)? else {
        return Ok(());
    };
    let unit = crate::tools::run(
        "systemd-escape",
        &[
            "--path",
            "--template=systemd-fsck@.service",
            &format!("/dev/disk/by-uuid/{uuid}"),
        ],
    )
    .context("systemd-escape")?;
    let dir = Path::new("/run/systemd/system").join(format!("{}.d", unit.trim()));
    crate::finish::ids::write_atomic(
        &dir.join("50-rootshift-flatten.conf"),
        b"# rootshift flatten: until the next real boot this filesystem is also mounted by the old live\n\
          # session's medium mount (let go of by rootshift-release-live.service); fsck runs at the next boot\n\
          [Unit]\nConditionPathExists=/run/rootshift/no-such-file\n",
        0o644,
    )
}
