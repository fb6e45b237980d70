//! Booting a moved overlayfs live session from the disk on its own (Debian live-boot, dracut).
//!
//! After `install --disk` moved the session, the disk holds the image partition (ext4
//! `rootshift-live`: `live/filesystem.squashfs`, the medium's `live/vmlinuz*` and `live/initrd*`,
//! its `.disk/`) and the persistence partition (the session's upper: live-boot's own `/ union`
//! persistence, labelled `rsupper-…`). The boot entry brings the same live system up from them:
//! `boot=live`, the medium pinned by the image partition's UUID (`live-media=`, so a CD left in
//! the drive cannot become the lower), `persistence persistence-label=…`, and rootshift's live
//! upper off (`rd.rootshift.live=0`: the persistence partition is the upper now).
//!
//! A dracut session (dmsquash-live in overlayfs mode: `root=live:…`, the root tree in
//! `LiveOS/squashfs.img`) gets dracut's own persistent overlay instead: `root=live:UUID=<image
//! partition>` and `rd.live.overlay=UUID=<persistence partition>:<upper directory>` (the directory
//! the session's upper already is in, with dracut's `ovlwork` next to it). Its kernel and initrd,
//! found on the medium by the running kernel's release (`live::bootfiles`), sit in `boot/` on the
//! image partition as `vmlinuz-REL` and `initrd.img-REL`.
//!
//! GRUB cannot probe an overlay root, so nothing here depends on `grub-mkconfig`: rootshift writes
//! a static `grub.cfg` on the image partition and installs GRUB with `--boot-directory` there. A
//! kernel installed later in the session reaches the image partition through the kernel hook
//! (`/etc/kernel/postinst.d/zz-rootshift-live` → `rootshift boot live-sync`), which copies the new
//! kernel and initrd next to the image and writes `grub.cfg` again, newest kernel first.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{anyhow, bail, Context, Result};

use crate::error::refuse;
use crate::kernel::blockdev::BlockDev;
use crate::kernel::{fs as kfs, mounts};
use crate::live::bootfiles::kernel_pairs;
use crate::live::overlay::OverlayRoot;
use crate::tools;

/// Written into the session (and so onto the persistence partition): what `live-sync` needs.
pub const LIVE_CONF: &str = "/etc/rootshift/live.conf";
/// dracut sessions: what every initrd built on the installed disk needs to boot it as a live
/// image with a persistent overlay. A host-only initrd would probe the overlay root and leave out
/// dmsquash-live.
pub const DRACUT_LIVE_CONF: &str = "/etc/dracut.conf.d/90-rootshift-live.conf";
const DRACUT_LIVE: &str =
    "# written by rootshift install --disk: this system boots as a live image (root=live:)\n\
     # with dracut's persistent overlay, so every initrd built here must be able to\n\
     add_dracutmodules+=\" dmsquash-live \"\nhostonly=\"no\"\n";
/// Where the ESP is mounted while GRUB is installed onto it.
const ESP_DIR: &str = "/run/rootshift/esp";

/// `/etc/rootshift/live.conf`: `image_uuid=` (the image partition's ext4), `cmdline=` (the boot
/// entry's kernel command line, without `BOOT_IMAGE`) and `kernel_dir=` (where the kernels are on
/// the image partition; `live` when absent, as the first version wrote it), `key=value` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveConf {
    pub image_uuid: String,
    pub cmdline: String,
    pub kernel_dir: String,
}

/// Which live system booted the session: it decides the boot entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Debian's live-boot (`boot=live`): live-boot's own `/ union` persistence.
    LiveBoot,
    /// dracut's dmsquash-live (`root=live:…` or `rd.live.image`): dracut's persistent overlay.
    Dracut,
}

impl Flavour {
    pub fn of_cmdline(cmdline: &str) -> Option<Flavour> {
        let words: Vec<&str> = cmdline.split_whitespace().collect();
        if words.contains(&"boot=live") {
            Some(Flavour::LiveBoot)
        } else if words
            .iter()
            .any(|w| w.starts_with("root=live:") || *w == "rd.live.image")
        {
            Some(Flavour::Dracut)
        } else {
            None
        }
    }

    /// Where the kernels are on the image partition.
    pub fn kernel_dir(self) -> &'static str {
        match self {
            Flavour::LiveBoot => "live",
            Flavour::Dracut => crate::live::overlay::BOOT_KERNEL_DIR,
        }
    }
}

impl FromStr for LiveConf {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut uuid = None;
        let mut cmdline = None;
        let mut kernel_dir = None;
        for line in s
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            match line.split_once('=') {
                Some(("image_uuid", v)) => uuid = Some(v.trim().to_string()),
                Some(("cmdline", v)) => cmdline = Some(v.trim().to_string()),
                Some(("kernel_dir", v)) => kernel_dir = Some(v.trim().to_string()),
                _ => {}
            }
        }
        Ok(LiveConf {
            image_uuid: uuid.ok_or("no image_uuid= line")?,
            cmdline: cmdline.ok_or("no cmdline= line")?,
            kernel_dir: kernel_dir.unwrap_or_else(|| "live".into()),
        })
    }
}

impl fmt::Display for LiveConf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "# written by rootshift install: how the disk boots this live session (rootshift boot live-sync)"
        )?;
        writeln!(f, "image_uuid={}", self.image_uuid)?;
        writeln!(f, "cmdline={}", self.cmdline)?;
        writeln!(f, "kernel_dir={}", self.kernel_dir)
    }
}

/// live-boot options [`installed_cmdline`] drops: what named the old medium or made the upper.
const LIVEBOOT_REPLACED: &[&str] = &[
    "BOOT_IMAGE",
    "initrd",
    "live-media",
    "live-media-path",
    "bootfrom",
    "findiso",
    "fromiso",
    "toram",
    "todisk",
    "persistence",
    "nopersistence",
    "persistence-label",
    "persistence-media",
    "persistence-path",
    "persistence-storage",
    "rd.rootshift.live",
];
/// dracut options [`installed_cmdline_dracut`] drops: the medium, the overlay, copying to RAM, the check.
const DRACUT_REPLACED: &[&str] = &[
    "BOOT_IMAGE",
    "initrd",
    "root",
    "rd.live.image",
    "rd.live.overlay",
    "rd.overlay",
    "rd.live.overlay.nouserconfirmprompt",
    "rd.live.overlay.readonly",
    "rd.overlay.readonly",
    "rd.live.overlay.reset",
    "rd.overlay.reset",
    "rd.live.overlay.size",
    "rd.live.ram",
    "rd.writable.fsimg",
    "rd.live.check",
    "iso-scan/filename",
    "rd.rootshift.live",
];

/// Whether the option `w` (`key` or `key=value`) has one of `keys`.
fn option_in(w: &str, keys: &[&str]) -> bool {
    keys.contains(&w.split('=').next().unwrap_or(w))
}

/// The installed system's kernel command line from the live session's: the live options it booted
/// with are kept; what pinned the old medium or made the upper is replaced.
pub fn installed_cmdline(running: &str, image_uuid: &str, persistence_label: &str) -> String {
    let drop = |w: &str| option_in(w, LIVEBOOT_REPLACED);
    let mut words: Vec<String> = running
        .split_whitespace()
        .filter(|w| !drop(w))
        .map(str::to_string)
        .collect();
    if !words.iter().any(|w| w == "boot=live") {
        words.insert(0, "boot=live".into());
    }
    words.extend([
        format!("live-media=/dev/disk/by-uuid/{image_uuid}"),
        "persistence".into(),
        format!("persistence-label={persistence_label}"),
        "rd.rootshift.live=0".into(),
    ]);
    words.join(" ")
}

/// A dracut session's installed command line: the options it booted with are kept, what named
/// the medium or the overlay is replaced by the image partition (`root=live:UUID=`) and dracut's
/// persistent overlay on the persistence partition (`rd.live.overlay=UUID=<upper>:<dir>`; no
/// `nouserconfirmprompt`: should that partition be missing, dracut stops and says so rather than
/// run with a RAM overlay that loses what the user writes).
pub fn installed_cmdline_dracut(
    running: &str,
    image_uuid: &str,
    upper_uuid: &str,
    upper_dir: &str,
) -> String {
    let drop = |w: &str| option_in(w, DRACUT_REPLACED);
    let mut words = vec![
        format!("root=live:UUID={image_uuid}"),
        "rd.live.image".into(),
    ];
    words.extend(
        running
            .split_whitespace()
            .filter(|w| !drop(w))
            .map(str::to_string),
    );
    words.extend([
        format!("rd.live.overlay=UUID={upper_uuid}:{upper_dir}"),
        "rd.rootshift.live=0".into(),
    ]);
    words.join(" ")
}

/// The static `grub.cfg`: one entry per kernel pair (in `kernel_dir` of the image partition), the
/// first the default.
pub fn grub_cfg(conf: &LiveConf, pairs: &[(String, String)]) -> String {
    let (image_uuid, cmdline, dir) = (&conf.image_uuid, &conf.cmdline, &conf.kernel_dir);
    let mut s = format!(
        "# written by rootshift (install --disk, boot live-sync): GRUB cannot probe an overlay root,\n\
         # so this file is not grub-mkconfig's. Kernels: {dir}/ on the image partition.\n\
         set timeout=3\nset default=0\n\
         search --no-floppy --fs-uuid --set=root {image_uuid}\n"
    );
    for (k, i) in pairs {
        let ver = k.strip_prefix("vmlinuz-").unwrap_or("as on the medium");
        s.push_str(&format!(
            "menuentry 'Live system ({ver})' {{\n\tsearch --no-floppy --fs-uuid --set=root {image_uuid}\n\
             \tlinux /{dir}/{k} {cmdline}\n\tinitrd /{dir}/{i}\n}}\n"
        ));
    }
    s
}

fn live_names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Write `grub.cfg` under `image_mnt/boot/grub` from what `image_mnt/<kernel_dir>` holds.
pub fn write_grub_cfg(image_mnt: &Path, conf: &LiveConf) -> Result<Vec<(String, String)>> {
    let pairs = kernel_pairs(&live_names(&image_mnt.join(&conf.kernel_dir)));
    if pairs.is_empty() {
        bail!(
            "no kernel and initrd in {}/{} (vmlinuz* with initrd*)",
            image_mnt.display(),
            conf.kernel_dir
        );
    }
    let dir = image_mnt.join("boot/grub");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::finish::ids::write_atomic(
        &dir.join("grub.cfg"),
        grub_cfg(conf, &pairs).as_bytes(),
        0o644,
    )?;
    Ok(pairs)
}

/// What `install --disk` needs for a live session, checked before the disk changes.
#[derive(Debug, Clone)]
pub struct LivePlan {
    pub bios: bool,
    pub efi: bool,
    pub flavour: Flavour,
    /// dracut: the upper directory on its filesystem (`/LiveOS/overlay-rootshift`).
    pub upper_dir: Option<String>,
}

/// dracut's persistent overlay: the upper directory relative to its filesystem, with the work
/// directory next to it as `ovlwork` (dmsquash-live-root takes `<upper>/../ovlwork`).
fn dracut_upper_dir(root: &OverlayRoot) -> Result<String> {
    let no = |why: String| {
        refuse(
            format!("this dracut live session's upper is not laid out as dracut's persistent overlay: {why}"),
            Some("boot the medium with rootshift's live upper (live=upper), or move the session with `rootshift migrate TARGET --image-to PART --no-install`"),
        )
    };
    let upper = root
        .upper
        .as_ref()
        .ok_or_else(|| no("it has no upper".into()))?;
    let canon = fs::canonicalize(&upper.dir).unwrap_or_else(|_| upper.dir.clone());
    let mnt = upper
        .mount_point
        .as_ref()
        .ok_or_else(|| no(format!("no mount holds {}", canon.display())))?;
    let rel = canon.strip_prefix(mnt).map_err(|_| {
        no(format!(
            "{} is not under {}",
            canon.display(),
            mnt.display()
        ))
    })?;
    let work = root
        .options
        .workdir
        .as_ref()
        .map(|w| fs::canonicalize(w).unwrap_or_else(|_| w.clone()));
    let want = canon.parent().map(|p| p.join("ovlwork"));
    if rel.as_os_str().is_empty() || work.is_none() || work != want {
        return Err(no(format!(
            "upper {}, work directory {} (dracut needs a directory below the filesystem's root with ovlwork next to it)",
            canon.display(),
            work.map(|w| w.display().to_string()).unwrap_or_else(|| "none".into())
        )));
    }
    Ok(format!("/{}", rel.display()))
}

/// The session must be a live-boot or a dracut one, and GRUB's installer with the platforms to
/// install must be there.
pub fn preflight(bios: bool, efi: bool, root: &OverlayRoot) -> Result<LivePlan> {
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let Some(flavour) = Flavour::of_cmdline(&cmdline) else {
        return Err(refuse(
            "this overlayfs live session was booted by neither Debian's live-boot (boot=live) nor dracut's \
             dmsquash-live (root=live:): rootshift writes boot entries for those two",
            Some("move the session with `rootshift migrate TARGET --image-to PART --no-install`"),
        ));
    };
    let upper_dir = match flavour {
        Flavour::Dracut => Some(dracut_upper_dir(root)?),
        Flavour::LiveBoot => None,
    };
    if !crate::live::overlay::has_boot_kernel(root)? {
        return Err(refuse(
            format!(
                "the medium holds no kernel for the running one ({}) with its initrd: the disk could not boot",
                crate::live::bootfiles::running_release().unwrap_or_default()
            ),
            Some("move the session with `rootshift migrate TARGET --image-to PART --no-install` and make its boot entry yourself"),
        ));
    }
    if tools::find("grub-install").is_none() {
        return Err(refuse(
            "grub-install is missing: the disk needs GRUB to boot the live system",
            Some("install grub2-common with grub-pc-bin and/or grub-efi-amd64-bin in the session (apt install)"),
        ));
    }
    for (want, dir, pkg) in [
        (bios, "/usr/lib/grub/i386-pc", "grub-pc-bin"),
        (efi, "/usr/lib/grub/x86_64-efi", "grub-efi-amd64-bin"),
    ] {
        if want && !Path::new(dir).is_dir() {
            return Err(refuse(
                format!("{dir} is missing: GRUB cannot be installed for that platform"),
                Some(&format!("install {pkg} in the session")),
            ));
        }
    }
    if efi && super::secureboot::booted_with_secure_boot() && !super::secureboot::chain_available()
    {
        return Err(refuse(
            "this PC booted with Secure Boot on, and GRUB without shim and Debian's signed GRUB would not boot \
             the disk on it"
                .to_string(),
            Some(&format!(
                "install {} in the session (or put their .debs, with their dependencies, into {}), or turn \
                 Secure Boot off in the firmware",
                super::secureboot::PACKAGES.join(" "),
                super::secureboot::CHAIN_DIR
            )),
        ));
    }
    if efi && tools::find("mkfs.vfat").is_none() {
        return Err(refuse(
            "mkfs.vfat is missing: the EFI System Partition needs a FAT filesystem",
            Some("install dosfstools in the session"),
        ));
    }
    Ok(LivePlan {
        bios,
        efi,
        flavour,
        upper_dir,
    })
}

fn head(dev: &BlockDev) -> Result<Vec<u8>> {
    dev.read_head(128 << 10)
        .with_context(|| format!("reading {}", dev.display()))
}

/// After the session moved: the boot entry. `image_mnt`: where the image partition is mounted
/// (rw); `upper`: the persistence partition; `esp`: the EFI System Partition (made FAT here).
pub fn install_entry(
    plan: &LivePlan,
    disk: &BlockDev,
    image_part: &BlockDev,
    image_mnt: &Path,
    upper: &BlockDev,
    esp: Option<&BlockDev>,
) -> Result<LiveConf> {
    let image_uuid = kfs::fs_uuid(&head(image_part)?)
        .ok_or_else(|| anyhow!("{} has no filesystem UUID", image_part.display()))?;
    let running = fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    let cmdline = match plan.flavour {
        Flavour::LiveBoot => {
            let label = kfs::ext_label(&head(upper)?).ok_or_else(|| {
                anyhow!(
                    "the persistence partition {} has no ext4 label for live-boot to find it by",
                    upper.display()
                )
            })?;
            installed_cmdline(running.trim(), &image_uuid, &label)
        }
        Flavour::Dracut => {
            let upper_uuid = kfs::fs_uuid(&head(upper)?).ok_or_else(|| {
                anyhow!(
                    "the persistence partition {} has no filesystem UUID",
                    upper.display()
                )
            })?;
            installed_cmdline_dracut(
                running.trim(),
                &image_uuid,
                &upper_uuid,
                plan.upper_dir
                    .as_deref()
                    .unwrap_or("/LiveOS/overlay-rootshift"),
            )
        }
    };
    // the kernels: where the flavour keeps them, else wherever the image partition has a pair
    let kernel_dir = [plan.flavour.kernel_dir(), "live", "boot", "LiveOS"]
        .into_iter()
        .find(|d| !kernel_pairs(&live_names(&image_mnt.join(d))).is_empty())
        .unwrap_or(plan.flavour.kernel_dir())
        .to_string();
    let conf = LiveConf {
        cmdline,
        image_uuid,
        kernel_dir,
    };
    fs::create_dir_all("/etc/rootshift")?;
    crate::finish::ids::write_atomic(Path::new(LIVE_CONF), conf.to_string().as_bytes(), 0o644)?;
    if plan.flavour == Flavour::Dracut {
        // initrds built here later (a kernel update) must boot the disk the same way
        fs::create_dir_all("/etc/dracut.conf.d")?;
        crate::finish::ids::write_atomic(
            Path::new(DRACUT_LIVE_CONF),
            DRACUT_LIVE.as_bytes(),
            0o644,
        )?;
    }
    write_grub_cfg(image_mnt, &conf)?;
    let boot_dir = image_mnt.join("boot");
    let bd = boot_dir.display().to_string();
    if plan.bios {
        tools::run(
            "grub-install",
            &[
                "--target=i386-pc",
                &format!("--boot-directory={bd}"),
                &disk.display(),
            ],
        )?;
    }
    if plan.efi {
        let esp = esp.ok_or_else(|| anyhow!("no EFI System Partition on {}", disk.display()))?;
        tools::run("mkfs.vfat", &["-F", "32", "-n", "EFI", &esp.display()])?;
        fs::create_dir_all(ESP_DIR)?;
        nix::mount::mount(
            Some(&esp.node_path()),
            ESP_DIR,
            Some("vfat"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .with_context(|| format!("mounting {} on {ESP_DIR}", esp.display()))?;
        // the fallback path (EFI/BOOT/BOOTX64.EFI): no NVRAM entry to depend on. With Debian's
        // signed chain (installed, or the spin's .debs) that is shim, next to the signed GRUB and
        // the grub.cfg that leads it to the image partition's: the disk boots with Secure Boot on.
        let r = super::secureboot::ensure_chain(&mut Vec::new()).and_then(|signed| {
            let efi_dir = format!("--efi-directory={ESP_DIR}");
            let boot_dir = format!("--boot-directory={bd}");
            let mut args = vec![
                "--target=x86_64-efi",
                &efi_dir,
                &boot_dir,
                "--removable",
                "--no-nvram",
            ];
            if signed {
                args.push("--uefi-secure-boot");
            }
            tools::run("grub-install", &args)
        });
        let _ = nix::mount::umount(ESP_DIR);
        r?;
    }
    Ok(conf)
}

/// `rootshift boot live-sync`: after a kernel was installed in the session (the kernel hook), copy
/// `/boot/vmlinuz-VER` and `/boot/initrd.img-VER` of every kernel in /boot into the image
/// partition's `live/` and write `grub.cfg` again. The image partition is found by its UUID and
/// mounted read-write for the time it takes (live-boot mounts it read-only on /run/live/medium:
/// that mount is switched to read-write and back). Returns the kernels the entry now offers.
pub fn live_sync(only: Option<&str>) -> Result<Vec<String>> {
    let text = fs::read_to_string(LIVE_CONF).map_err(|e| {
        refuse(
            format!(
                "{LIVE_CONF}: {e}: this system was not installed from a live session by rootshift"
            ),
            None,
        )
    })?;
    let conf: LiveConf = text.parse().map_err(|e| anyhow!("{LIVE_CONF}: {e}"))?;
    let node = PathBuf::from(format!("/dev/disk/by-uuid/{}", conf.image_uuid));
    let part = BlockDev::from_path(&node)
        .map_err(|e| anyhow!("the image partition (UUID {}): {e}", conf.image_uuid))?;
    let existing = mounts::mounts_of(part.devnum)?;
    let (mnt, remount) = match existing.first() {
        Some(m) => (m.mount_point.clone(), true),
        None => (PathBuf::from(crate::live::overlay::IMAGE_DIR), false),
    };
    use nix::mount::{mount, umount, MsFlags};
    if remount {
        mounts::remount(&mnt, false)
            .with_context(|| format!("remounting {} read-write", mnt.display()))?;
    } else {
        fs::create_dir_all(&mnt)?;
        mount(
            Some(&part.node_path()),
            &mnt,
            Some("ext4"),
            MsFlags::empty(),
            None::<&str>,
        )
        .with_context(|| format!("mounting {} on {}", part.display(), mnt.display()))?;
    }
    let r = (|| -> Result<Vec<String>> {
        let live = mnt.join(&conf.kernel_dir);
        for k in live_names(Path::new("/boot"))
            .iter()
            .filter_map(|n| n.strip_prefix("vmlinuz-"))
        {
            if only.is_some_and(|o| o != k) {
                continue;
            }
            for (from, to) in [("vmlinuz", "vmlinuz"), ("initrd.img", "initrd.img")] {
                let src = PathBuf::from(format!("/boot/{from}-{k}"));
                if !src.is_file() {
                    continue;
                }
                let dst = live.join(format!("{to}-{k}"));
                let tmp = live.join(format!(".{to}-{k}.new"));
                fs::copy(&src, &tmp).with_context(|| format!("copying {}", src.display()))?;
                fs::File::open(&tmp).and_then(|f| f.sync_all())?;
                fs::rename(&tmp, &dst)?;
            }
        }
        let pairs = write_grub_cfg(&mnt, &conf)?;
        Ok(pairs.into_iter().map(|p| p.0).collect())
    })();
    if remount {
        let _ = mounts::remount(&mnt, true);
    } else {
        let _ = umount(&mnt);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_installed_cmdline_pins_the_partition_and_turns_persistence_on() {
        let c = installed_cmdline(
            "BOOT_IMAGE=/live/vmlinuz boot=live components quiet splash live-media=/dev/sr0 toram rd.rootshift.live=upper console=ttyS0 rootshift.vmtest=x",
            "1234-uuid",
            "rsupper-abcd1234",
        );
        // every other option stays, as `migrate --install` keeps them (the VM suite's test driver is one)
        assert_eq!(
            c,
            "boot=live components quiet splash console=ttyS0 rootshift.vmtest=x live-media=/dev/disk/by-uuid/1234-uuid \
             persistence persistence-label=rsupper-abcd1234 rd.rootshift.live=0"
        );
        assert!(installed_cmdline("quiet", "u", "l").starts_with("boot=live quiet "));
    }

    #[test]
    fn the_flavour_comes_from_the_command_line() {
        assert_eq!(
            Flavour::of_cmdline("BOOT_IMAGE=/live/vmlinuz boot=live components"),
            Some(Flavour::LiveBoot)
        );
        assert_eq!(
            Flavour::of_cmdline("root=live:CDLABEL=Fedora-WS-Live-42 rd.live.image quiet"),
            Some(Flavour::Dracut)
        );
        assert_eq!(
            Flavour::of_cmdline("rd.live.image root=/dev/sr0"),
            Some(Flavour::Dracut)
        );
        assert_eq!(Flavour::of_cmdline("root=UUID=1234 ro quiet"), None);
        assert_eq!(Flavour::of_cmdline("root=/dev/sda1 bootlive"), None);
    }

    #[test]
    fn the_dracut_cmdline_pins_the_image_and_the_persistent_overlay() {
        let c = installed_cmdline_dracut(
            "BOOT_IMAGE=/images/pxeboot/vmlinuz root=live:CDLABEL=Fedora-42 rd.live.image rd.live.check quiet \
             rhgb rd.live.overlay=/dev/mapper/rootshift-upper:/LiveOS/overlay-rootshift rd.live.ram=1 \
             iso-scan/filename=/f.iso rd.rootshift.live=upper console=ttyS0 rootshift.vmtest=x",
            "img-uuid",
            "up-uuid",
            "/LiveOS/overlay-rootshift",
        );
        assert_eq!(
            c,
            "root=live:UUID=img-uuid rd.live.image quiet rhgb console=ttyS0 rootshift.vmtest=x \
             rd.live.overlay=UUID=up-uuid:/LiveOS/overlay-rootshift rd.rootshift.live=0"
        );
    }

    #[test]
    fn kernels_newest_first_then_the_media_one() {
        let names: Vec<String> = [
            "vmlinuz",
            "initrd.img",
            "filesystem.squashfs",
            "vmlinuz-6.12.9-amd64",
            "initrd.img-6.12.9-amd64",
            "vmlinuz-6.12.10-amd64",
            "initrd.img-6.12.10-amd64",
            "vmlinuz-6.13.1-amd64", // no initrd: not bootable here
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let p = kernel_pairs(&names);
        assert_eq!(
            p.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
            ["vmlinuz-6.12.10-amd64", "vmlinuz-6.12.9-amd64", "vmlinuz"]
        );
        assert_eq!(p[2].1, "initrd.img");
    }

    #[test]
    fn grub_cfg_boots_the_first_pair() {
        let mut conf = LiveConf {
            image_uuid: "u-1".into(),
            cmdline: "boot=live persistence".into(),
            kernel_dir: "live".into(),
        };
        let pairs = [("vmlinuz-6.12.10".into(), "initrd.img-6.12.10".into())];
        let c = grub_cfg(&conf, &pairs);
        assert!(c.contains("search --no-floppy --fs-uuid --set=root u-1"));
        assert!(c.contains("\tlinux /live/vmlinuz-6.12.10 boot=live persistence\n\tinitrd /live/initrd.img-6.12.10\n"));
        assert!(c.contains("set default=0"));
        conf.kernel_dir = "boot".into();
        assert!(grub_cfg(&conf, &pairs).contains("\tlinux /boot/vmlinuz-6.12.10 "));
    }

    #[test]
    fn live_conf_round_trips() {
        let c = LiveConf {
            image_uuid: "abc".into(),
            cmdline: "boot=live persistence".into(),
            kernel_dir: "boot".into(),
        };
        assert_eq!(c.to_string().parse::<LiveConf>().unwrap(), c);
        // the first version wrote no kernel_dir: live-boot's live/
        let old: LiveConf = "image_uuid=a\ncmdline=boot=live\n".parse().unwrap();
        assert_eq!(old.kernel_dir, "live");
        assert!("cmdline=x"
            .parse::<LiveConf>()
            .unwrap_err()
            .contains("image_uuid"));
    }
}
