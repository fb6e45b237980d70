//! Booting a moved overlayfs live session from the disk on its own (Debian live-boot).
//!
//! After `install --disk` moved the session, the disk holds the image partition (ext4
//! `rootshift-live`: `live/filesystem.squashfs`, the medium's `live/vmlinuz*` and `live/initrd*`,
//! its `.disk/`) and the persistence partition (the session's upper: live-boot's own `/ union`
//! persistence, labelled `rsupper-…`). The boot entry brings the same live system up from them:
//! `boot=live`, the medium pinned by the image partition's UUID (`live-media=`, so a CD left in
//! the drive cannot become the lower), `persistence persistence-label=…`, and rootshift's live
//! upper off (`rd.rootshift.live=0`: the persistence partition is the upper now).
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
use crate::tools;

/// Written into the session (and so onto the persistence partition): what `live-sync` needs.
pub const LIVE_CONF: &str = "/etc/rootshift/live.conf";
/// Where the ESP is mounted while GRUB is installed onto it.
const ESP_DIR: &str = "/run/rootshift/esp";

/// `/etc/rootshift/live.conf`: `image_uuid=` (the image partition's ext4) and `cmdline=` (the boot
/// entry's kernel command line, without `BOOT_IMAGE`), `key=value` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveConf {
    pub image_uuid: String,
    pub cmdline: String,
}

impl FromStr for LiveConf {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut uuid = None;
        let mut cmdline = None;
        for line in s
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            match line.split_once('=') {
                Some(("image_uuid", v)) => uuid = Some(v.trim().to_string()),
                Some(("cmdline", v)) => cmdline = Some(v.trim().to_string()),
                _ => {}
            }
        }
        Ok(LiveConf {
            image_uuid: uuid.ok_or("no image_uuid= line")?,
            cmdline: cmdline.ok_or("no cmdline= line")?,
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
        writeln!(f, "cmdline={}", self.cmdline)
    }
}

/// The installed system's kernel command line from the live session's: the live options it booted
/// with are kept; what pinned the old medium or made the upper is replaced.
pub fn installed_cmdline(running: &str, image_uuid: &str, persistence_label: &str) -> String {
    let drop = |w: &str| {
        let key = w.split('=').next().unwrap_or(w);
        matches!(
            key,
            "BOOT_IMAGE"
                | "initrd"
                | "live-media"
                | "live-media-path"
                | "bootfrom"
                | "findiso"
                | "fromiso"
                | "toram"
                | "todisk"
                | "persistence"
                | "nopersistence"
                | "persistence-label"
                | "persistence-media"
                | "persistence-path"
                | "persistence-storage"
                | "rd.rootshift.live"
        )
    };
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

/// Kernel/initrd pairs in the image partition's `live/`, newest first: `vmlinuz-VER` with
/// `initrd.img-VER`, then the medium's own `vmlinuz` with `initrd.img` (or `initrd.lz`, …).
pub fn kernel_pairs(names: &[String]) -> Vec<(String, String)> {
    let mut versioned: Vec<(String, String)> = names
        .iter()
        .filter_map(|n| {
            let v = n.strip_prefix("vmlinuz-")?;
            let initrd = format!("initrd.img-{v}");
            names.contains(&initrd).then(|| (n.clone(), initrd))
        })
        .collect();
    versioned.sort_by(|a, b| version_cmp(&b.0, &a.0));
    if names.iter().any(|n| n == "vmlinuz") {
        if let Some(i) = names
            .iter()
            .find(|n| n.starts_with("initrd") && !n.contains('-'))
        {
            versioned.push(("vmlinuz".into(), i.clone()));
        }
    }
    versioned
}

/// Compare two names by their runs of digits as numbers (`6.12.10` > `6.12.9`).
fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let split = |s: &str| -> Vec<(bool, String)> {
        let mut out: Vec<(bool, String)> = vec![];
        for c in s.chars() {
            let d = c.is_ascii_digit();
            match out.last_mut() {
                Some((ld, t)) if *ld == d => t.push(c),
                _ => out.push((d, c.to_string())),
            }
        }
        out
    };
    let (x, y) = (split(a), split(b));
    for (p, q) in x.iter().zip(&y) {
        let o = match (p.0, q.0) {
            (true, true) => {
                p.1.parse::<u64>()
                    .unwrap_or(0)
                    .cmp(&q.1.parse::<u64>().unwrap_or(0))
            }
            _ => p.1.cmp(&q.1),
        };
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    x.len().cmp(&y.len())
}

/// The static `grub.cfg`: one entry per kernel pair, the first the default.
pub fn grub_cfg(image_uuid: &str, pairs: &[(String, String)], cmdline: &str) -> String {
    let mut s = format!(
        "# written by rootshift (install --disk, boot live-sync): GRUB cannot probe an overlay root,\n\
         # so this file is not grub-mkconfig's. Kernels: live/ on the image partition.\n\
         set timeout=3\nset default=0\n\
         search --no-floppy --fs-uuid --set=root {image_uuid}\n"
    );
    for (k, i) in pairs {
        let ver = k.strip_prefix("vmlinuz-").unwrap_or("as on the medium");
        s.push_str(&format!(
            "menuentry 'Live system ({ver})' {{\n\tsearch --no-floppy --fs-uuid --set=root {image_uuid}\n\
             \tlinux /live/{k} {cmdline}\n\tinitrd /live/{i}\n}}\n"
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

/// Write `grub.cfg` under `image_mnt/boot/grub` from what `image_mnt/live` holds.
pub fn write_grub_cfg(image_mnt: &Path, conf: &LiveConf) -> Result<Vec<(String, String)>> {
    let pairs = kernel_pairs(&live_names(&image_mnt.join("live")));
    if pairs.is_empty() {
        bail!(
            "no kernel and initrd in {}/live (vmlinuz* with initrd*)",
            image_mnt.display()
        );
    }
    let dir = image_mnt.join("boot/grub");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::finish::ids::write_atomic(
        &dir.join("grub.cfg"),
        grub_cfg(&conf.image_uuid, &pairs, &conf.cmdline).as_bytes(),
        0o644,
    )?;
    Ok(pairs)
}

/// What `install --disk` needs for a live session, checked before the disk changes.
#[derive(Debug, Clone)]
pub struct LivePlan {
    pub bios: bool,
    pub efi: bool,
}

/// The session must be a live-boot one (`boot=live`), and GRUB's installer with the platforms to
/// install must be there.
pub fn preflight(bios: bool, efi: bool) -> Result<LivePlan> {
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if !cmdline.split_whitespace().any(|w| w == "boot=live") {
        return Err(refuse(
            "this overlayfs live session was not booted by Debian's live-boot (no boot=live on the kernel command \
             line): rootshift writes boot entries for live-boot media only so far",
            Some("move the session with `rootshift migrate TARGET --image-to PART --no-install`"),
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
    if efi && tools::find("mkfs.vfat").is_none() {
        return Err(refuse(
            "mkfs.vfat is missing: the EFI System Partition needs a FAT filesystem",
            Some("install dosfstools in the session"),
        ));
    }
    Ok(LivePlan { bios, efi })
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
    let label = kfs::ext_label(&head(upper)?).ok_or_else(|| {
        anyhow!(
            "the persistence partition {} has no ext4 label for live-boot to find it by",
            upper.display()
        )
    })?;
    let image_uuid = kfs::fs_uuid(&head(image_part)?)
        .ok_or_else(|| anyhow!("{} has no filesystem UUID", image_part.display()))?;
    let running = fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    let conf = LiveConf {
        cmdline: installed_cmdline(running.trim(), &image_uuid, &label),
        image_uuid,
    };
    fs::create_dir_all("/etc/rootshift")?;
    crate::finish::ids::write_atomic(Path::new(LIVE_CONF), conf.to_string().as_bytes(), 0o644)?;
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
        // the fallback path (EFI/BOOT/BOOTX64.EFI): no NVRAM entry to depend on
        let r = tools::run(
            "grub-install",
            &[
                "--target=x86_64-efi",
                &format!("--efi-directory={ESP_DIR}"),
                &format!("--boot-directory={bd}"),
                "--removable",
                "--no-nvram",
            ],
        );
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
        mount(
            None::<&str>,
            &mnt,
            None::<&str>,
            MsFlags::MS_REMOUNT,
            None::<&str>,
        )
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
        let live = mnt.join("live");
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
        let _ = mount(
            None::<&str>,
            &mnt,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        );
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
        let c = grub_cfg(
            "u-1",
            &[("vmlinuz-6.12.10".into(), "initrd.img-6.12.10".into())],
            "boot=live persistence",
        );
        assert!(c.contains("search --no-floppy --fs-uuid --set=root u-1"));
        assert!(c.contains("\tlinux /live/vmlinuz-6.12.10 boot=live persistence\n\tinitrd /live/initrd.img-6.12.10\n"));
        assert!(c.contains("set default=0"));
    }

    #[test]
    fn live_conf_round_trips() {
        let c = LiveConf {
            image_uuid: "abc".into(),
            cmdline: "boot=live persistence".into(),
        };
        assert_eq!(c.to_string().parse::<LiveConf>().unwrap(), c);
        assert!("cmdline=x"
            .parse::<LiveConf>()
            .unwrap_err()
            .contains("image_uuid"));
    }
}
