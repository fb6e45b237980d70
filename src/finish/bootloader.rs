//! Boot loaders: which one a target can take (decided before anything is copied), and installing
//! it with the distribution's own tools (grub-install/grub-mkconfig, bootctl/kernel-install).

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::cmdline::Cmdline;
use super::esp::{esp_content, EspContent};
use super::ids::write_atomic;
use super::packages::run_checked;
pub use super::packages::PACKAGE_DIR;
#[cfg(test)]
use super::rootspec::RootIds;
use super::rootspec::{entries_boot, grub_cfg_roots, ids_of, loader_entry_roots};
use super::secureboot;
use super::view::View;
use crate::disk::{self, types, DiskPart, TableKind};
use crate::error::refuse;
use crate::kernel::blockdev::BlockDev;
use crate::tools;

/// What the user asked for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Choice {
    /// UEFI firmware and an ESP on the target disk: grub-efi; otherwise grub-bios.
    Auto,
    /// GRUB for BIOS firmware (GPT: needs a BIOS boot partition).
    GrubBios,
    /// GRUB for UEFI (needs an EFI System Partition), with the removable-media fallback path.
    GrubEfi,
    /// systemd-boot (needs an EFI System Partition).
    SystemdBoot,
    /// Leave the boot loader alone.
    None,
}

/// What will be installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bootloader {
    GrubBios,
    GrubEfi,
    SystemdBoot,
    None,
}

impl Bootloader {
    pub fn as_str(self) -> &'static str {
        match self {
            Bootloader::GrubBios => "grub-bios",
            Bootloader::GrubEfi => "grub-efi",
            Bootloader::SystemdBoot => "systemd-boot",
            Bootloader::None => "none",
        }
    }
    pub fn needs_esp(self) -> bool {
        matches!(self, Bootloader::GrubEfi | Bootloader::SystemdBoot)
    }
    /// The Debian package that keeps this boot loader updated (grub-pc and grub-efi-amd64
    /// conflict, so a live image carries both as .debs and finish installs one).
    fn debian_package(self) -> Option<(&'static str, &'static str)> {
        match self {
            Bootloader::GrubBios => Some(("grub-pc", "grub-efi-amd64")),
            Bootloader::GrubEfi => Some(("grub-efi-amd64", "grub-pc")),
            Bootloader::SystemdBoot => Some(("systemd-boot", "")),
            Bootloader::None => None,
        }
    }
}

/// The grub-mkconfig drop-in rootshift installs.
pub const GRUB_DROPIN: &str = "/etc/default/grub.d/50-rootshift.cfg";

/// The decided boot loader and everything it needs, checked before the copy starts.
#[derive(Debug, Clone)]
pub struct Plan {
    pub bootloader: Bootloader,
    /// The disk and table entry of the target (None: the target is not a partition).
    pub target: Option<DiskPart>,
    /// The ESP's partition device, when the boot loader needs one.
    pub esp: Option<BlockDev>,
    /// The ESP holds no filesystem yet: finish formats it (FAT32).
    pub esp_mkfs: bool,
    /// Booted with UEFI firmware (/sys/firmware/efi): an NVRAM boot entry is written too.
    pub efi_firmware: bool,
}

fn has_tool(name: &str) -> bool {
    tools::find(name).is_some()
}

/// Decide the boot loader for `target` and check that it can be installed, refusing (nothing
/// changed) with what is missing.
/// `force`: an existing ESP holding something else than a FAT filesystem is formatted anyway.
pub fn plan(choice: Choice, target: &BlockDev, force: bool) -> Result<Plan> {
    let dp = if target.is_partition() {
        Some(disk::locate(target)?)
    } else {
        None
    };
    plan_on(choice, dp, target, false, force)
}

/// [`plan`] for a layout `rootshift install` is about to write: `dp` is the planned table, its
/// partitions have no devices yet, and the ESP will be new (formatted).
pub fn plan_fresh(choice: Choice, dp: DiskPart, target: &BlockDev) -> Result<Plan> {
    plan_on(choice, Some(dp), target, true, false)
}

fn plan_on(
    choice: Choice,
    dp: Option<DiskPart>,
    target: &BlockDev,
    fresh: bool,
    force: bool,
) -> Result<Plan> {
    let efi_firmware = Path::new("/sys/firmware/efi").exists();
    let Some(dp) = dp else {
        if choice == Choice::None {
            return Ok(Plan {
                bootloader: Bootloader::None,
                target: None,
                esp: None,
                esp_mkfs: false,
                efi_firmware,
            });
        }
        return Err(refuse(
            format!(
                "the target {} is a whole disk: an installed system needs its root on a partition of a disk \
                 that also has a BIOS boot partition (BIOS) or an EFI System Partition (UEFI)",
                target.display()
            ),
            Some(&format!(
                "lay the disk out with `rootshift install --disk {}`, or partition it (e.g. BIOS boot 1 MiB + \
                 ESP 256 MiB + root) and migrate to the root partition; --bootloader none installs no boot loader",
                target.display()
            )),
        ));
    };
    let table = &dp.table;
    let disk_name = dp.disk.display();
    let bootloader = match choice {
        Choice::None => Bootloader::None,
        Choice::GrubBios => Bootloader::GrubBios,
        Choice::GrubEfi => Bootloader::GrubEfi,
        Choice::SystemdBoot => Bootloader::SystemdBoot,
        Choice::Auto if efi_firmware => {
            if table.esp().is_none() {
                return Err(refuse(
                    format!(
                        "this system booted with UEFI firmware, but the target disk {disk_name} has no EFI System \
                         Partition (GPT type {})",
                        types::ESP
                    ),
                    Some("add an ESP (256 MiB, type EFI System) to the target disk, or pass --bootloader grub-bios \
                          (with a BIOS boot partition) or --bootloader none"),
                ));
            }
            Bootloader::GrubEfi
        }
        Choice::Auto => Bootloader::GrubBios,
    };
    let mut esp = None;
    let mut esp_mkfs = false;
    match bootloader {
        Bootloader::None => {}
        Bootloader::GrubBios => {
            if efi_firmware && secureboot::booted_with_secure_boot() {
                return Err(refuse(
                    "this PC booted with UEFI and Secure Boot on, and does not boot GRUB for BIOS".to_string(),
                    Some("use --bootloader grub-efi (the target disk needs an ESP), or --bootloader none when \
                          the disk is for a BIOS machine"),
                ));
            }
            match table.kind {
                TableKind::Gpt if table.bios_boot().is_none() => {
                    return Err(refuse(
                        format!(
                            "grub-bios needs a BIOS boot partition on the GPT disk {disk_name} (type {}, 1 MiB is \
                             enough) and there is none",
                            types::BIOS_BOOT
                        ),
                        Some("add one (e.g. sfdisk: size=1MiB, type=21686148-6449-6E6F-744E-656564454649), or \
                              use --bootloader grub-efi with an EFI System Partition"),
                    ))
                }
                TableKind::Dos if table.parts.iter().map(|p| p.first_lba).min().unwrap_or(0) < 2048 => {
                    return Err(refuse(
                        format!(
                            "grub-bios needs the first MiB of the MBR disk {disk_name} free for its core image, \
                             but a partition starts before sector 2048"
                        ),
                        Some("repartition with the first partition at 1 MiB"),
                    ))
                }
                _ => {}
            }
            need_dir("/usr/lib/grub/i386-pc", "grub-pc-bin")?;
            need_tools(
                &["grub-install", "grub-mkconfig", "grub-probe"],
                "grub2-common",
            )?;
        }
        _ => {}
    }
    // An ESP the boot loader does not need (a hybrid layout booted by BIOS) is still made a
    // valid, mounted FAT filesystem: systemd's gpt-auto-generator mounts any ESP of the boot disk
    // that fstab does not name, and a blank one would fail the boot ("degraded").
    if !bootloader.needs_esp() {
        if let Some(p) = table.esp() {
            if fresh {
                esp_mkfs = has_tool("mkfs.vfat");
            } else if let Some(dev) = disk::part_dev(&dp.disk, p.number) {
                // not needed to boot: formatted only when blank, left alone otherwise
                match esp_content(&dev)? {
                    EspContent::Fat => esp = Some(dev),
                    EspContent::Blank if has_tool("mkfs.vfat") => {
                        esp_mkfs = true;
                        esp = Some(dev);
                    }
                    _ => {}
                }
            }
        }
    }
    match bootloader {
        Bootloader::None | Bootloader::GrubBios => {}
        Bootloader::GrubEfi | Bootloader::SystemdBoot => {
            let Some(p) = table.esp() else {
                return Err(refuse(
                    format!(
                        "{} needs an EFI System Partition on {disk_name} (GPT type {}) and there is none",
                        bootloader.as_str(),
                        types::ESP
                    ),
                    Some("add an ESP (256 MiB, type EFI System), or use --bootloader grub-bios"),
                ));
            };
            if fresh {
                esp_mkfs = true;
                need_tools(&["mkfs.vfat"], "dosfstools")?;
            } else {
                let dev = disk::part_dev(&dp.disk, p.number).with_context(|| {
                    format!(
                        "the kernel has no device for partition {} of {disk_name}",
                        p.number
                    )
                })?;
                match esp_content(&dev)? {
                    EspContent::Fat => {}
                    EspContent::Blank => {
                        esp_mkfs = true;
                        need_tools(&["mkfs.vfat"], "dosfstools")?;
                    }
                    EspContent::Other(_) if force => {
                        esp_mkfs = true;
                        need_tools(&["mkfs.vfat"], "dosfstools")?;
                    }
                    EspContent::Other(what) => {
                        return Err(refuse(
                            format!(
                                "the EFI System Partition {} holds {what}, not a FAT filesystem; formatting it \
                                 would destroy that",
                                dev.display()
                            ),
                            Some(&format!(
                                "check it is the right disk; wipe it (wipefs -a {}) or pass --force to format it",
                                dev.display()
                            )),
                        ))
                    }
                }
                if dev.devnum == target.devnum {
                    return Err(refuse(
                        format!(
                            "the target {} is the EFI System Partition itself",
                            target.display()
                        ),
                        Some("migrate to the root partition"),
                    ));
                }
                esp = Some(dev);
            }
            let sb = secureboot::booted_with_secure_boot();
            if bootloader == Bootloader::GrubEfi {
                need_dir("/usr/lib/grub/x86_64-efi", "grub-efi-amd64-bin")?;
                need_tools(
                    &["grub-install", "grub-mkconfig", "grub-probe"],
                    "grub2-common",
                )?;
                if sb && !secureboot::chain_available() {
                    return Err(refuse(
                        "this PC booted with Secure Boot on, and GRUB without shim and Debian's signed GRUB would \
                         not boot on it"
                            .to_string(),
                        Some(&format!(
                            "install {} (or put their .debs, with their dependencies, into {}), or turn Secure \
                             Boot off in the firmware",
                            secureboot::PACKAGES.join(" "),
                            secureboot::CHAIN_DIR
                        )),
                    ));
                }
            } else if sb {
                return Err(refuse(
                    "this PC booted with Secure Boot on; rootshift does not install systemd-boot behind \
                     shim, and unsigned systemd-boot would not boot"
                        .to_string(),
                    Some("use --bootloader grub-efi (with shim-signed and grub-efi-amd64-signed), or turn Secure Boot off"),
                ));
            } else {
                need_tools(&["bootctl", "kernel-install"], "systemd-boot")?;
                need_dir("/usr/lib/systemd/boot/efi", "systemd-boot-efi")?;
            }
        }
    }
    Ok(Plan {
        bootloader,
        target: Some(dp),
        esp,
        esp_mkfs,
        efi_firmware,
    })
}

fn need_tools(names: &[&str], package: &str) -> Result<()> {
    let missing: Vec<&str> = names.iter().copied().filter(|n| !has_tool(n)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(refuse(
        format!(
            "{} missing on this system (package {package})",
            missing.join(", ")
        ),
        Some("install it, or choose another --bootloader (none installs no boot loader)"),
    ))
}

fn need_dir(dir: &str, package: &str) -> Result<()> {
    if Path::new(dir).is_dir() {
        return Ok(());
    }
    Err(refuse(
        format!("{dir} is missing on this system (package {package})"),
        Some("install it, or choose another --bootloader"),
    ))
}

/// Everything the install step needs to know about the new system.
pub struct Ctx<'a> {
    pub plan: &'a Plan,
    pub view: View,
    pub root_uuid: &'a str,
    pub cmdline: &'a Cmdline,
    /// `/etc/os-release` ID (EFI directory name), e.g. `debian`.
    pub os_id: String,
    /// Kernel versions to boot.
    pub kernels: &'a [String],
}

/// Debian: install the package that keeps this boot loader updated, from the spin's .debs, when
/// it is not installed yet. Returns what was done.
pub fn ensure_package(b: Bootloader) -> Result<Option<String>> {
    match b.debian_package() {
        Some((pkg, conflict)) => super::packages::ensure_deb(pkg, conflict),
        None => Ok(None),
    }
}

/// The grub-mkconfig drop-in. GRUB cannot see through the wrapper, so every later grub-mkconfig
/// (kernel updates run it) is pointed at the partition the wrapper maps; grub-mkconfig sources
/// /etc/default/grub.d/*.cfg after probing, so these assignments win.
pub fn grub_dropin(cmdline: &Cmdline) -> String {
    let mut s = String::from(
        "# Written by `rootshift migrate --install`. / is mounted from a rootshift wrapper (dm rootshift-*\n\
         # or md md_rootshift-*) that GRUB cannot see through: point grub-mkconfig at the partition the\n\
         # wrapper maps, so root=UUID= and `search` name the real filesystem.\n",
    );
    // Debian's scheme: quiet/splash belong to GRUB_CMDLINE_LINUX_DEFAULT (left out of recovery
    // entries), everything else to GRUB_CMDLINE_LINUX
    let (default, rest): (Vec<String>, Vec<String>) = cmdline
        .0
        .iter()
        .cloned()
        .partition(|w| w == "quiet" || w == "splash");
    let q = |v: &[String]| v.join(" ").replace('"', "\\\"");
    let _ = writeln!(s, "GRUB_CMDLINE_LINUX=\"{}\"", q(&rest));
    let _ = writeln!(s, "GRUB_CMDLINE_LINUX_DEFAULT=\"{}\"", q(&default));
    if let Some((unit, speed)) = cmdline.serial_console() {
        let _ = writeln!(s, "GRUB_TERMINAL=\"console serial\"");
        let _ = writeln!(
            s,
            "GRUB_SERIAL_COMMAND=\"serial --unit={unit} --speed={speed}\""
        );
    }
    s.push_str(
        r#"rootshift_dev=$(mountpoint -d / 2>/dev/null)
case "$(cat /sys/dev/block/$rootshift_dev/dm/name 2>/dev/null)$(basename "$(readlink -f /sys/dev/block/$rootshift_dev 2>/dev/null)")" in
  rootshift-*|*md_rootshift-*)
    rootshift_leg=$(ls /sys/dev/block/$rootshift_dev/slaves 2>/dev/null)
    if [ -n "$rootshift_leg" ] && [ "$(echo $rootshift_leg | wc -w)" = 1 ] && [ -b "/dev/$rootshift_leg" ]; then
      GRUB_DEVICE=/dev/$rootshift_leg
      GRUB_DEVICE_UUID=$(${grub_probe:-grub-probe} --device "$GRUB_DEVICE" --target=fs_uuid 2>/dev/null)
      GRUB_DEVICE_PARTUUID=$(${grub_probe:-grub-probe} --device "$GRUB_DEVICE" --target=partuuid 2>/dev/null)
      GRUB_FS=$(${grub_probe:-grub-probe} --device "$GRUB_DEVICE" --target=fs 2>/dev/null || echo unknown)
      if [ "$(mountpoint -d /boot 2>/dev/null)" = "$rootshift_dev" ] || ! mountpoint -q /boot; then
        GRUB_DEVICE_BOOT=$GRUB_DEVICE
        GRUB_DEVICE_BOOT_UUID=$GRUB_DEVICE_UUID
      fi
    fi
    ;;
esac
unset rootshift_dev rootshift_leg
"#,
    );
    s
}

/// Install and configure the boot loader. Returns one line per thing done.
pub fn install(ctx: &Ctx<'_>) -> Result<Vec<String>> {
    let mut done = vec![];
    let plan = ctx.plan;
    let disk = match &plan.target {
        Some(dp) => dp.disk.clone(),
        None => return Ok(done),
    };
    match plan.bootloader {
        Bootloader::None => {}
        Bootloader::GrubBios | Bootloader::GrubEfi => {
            write_atomic(
                Path::new(GRUB_DROPIN),
                grub_dropin(ctx.cmdline).as_bytes(),
                0o644,
            )?;
            done.push(format!("wrote {GRUB_DROPIN}"));
            let grub_install = tools::find("grub-install").context("grub-install vanished")?;
            if plan.bootloader == Bootloader::GrubBios {
                let mut c = ctx.view.command(&grub_install)?;
                c.args(["--target=i386-pc", "--boot-directory=/boot"])
                    .arg(&disk.path);
                run_checked(
                    c,
                    &format!("grub-install --target=i386-pc {}", disk.display()),
                )?;
                done.push(format!("grub-install --target=i386-pc {}", disk.display()));
            } else {
                secureboot::grub_efi(
                    &ctx.view,
                    &grub_install,
                    &ctx.os_id,
                    ctx.root_uuid,
                    plan.efi_firmware && has_tool("efibootmgr"),
                    &mut done,
                )?;
            }
            // grub-mkconfig the way a later kernel update runs it: in the normal namespace, with
            // the drop-in pointing it at the partition.
            let mut c =
                Command::new(tools::find("grub-mkconfig").context("grub-mkconfig vanished")?);
            c.args(["-o", "/boot/grub/grub.cfg"]);
            run_checked(c, "grub-mkconfig -o /boot/grub/grub.cfg")?;
            let cfg =
                fs::read_to_string("/boot/grub/grub.cfg").context("reading /boot/grub/grub.cfg")?;
            let ids = ids_of(ctx.root_uuid, ctx.plan.target.as_ref());
            let roots = grub_cfg_roots(&cfg);
            if !entries_boot(&roots, &ids) {
                bail!(
                    "grub-mkconfig wrote /boot/grub/grub.cfg whose kernel entries name root={} — none of them \
                     the new root (UUID={}{}): the new system would not find its root",
                    roots.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", root="),
                    ctx.root_uuid,
                    ids.partuuid.as_deref().map(|p| format!(", PARTUUID={p}")).unwrap_or_default()
                );
            }
            let named = roots.iter().find(|r| r.names(&ids)).expect("checked");
            done.push(format!(
                "grub-mkconfig: /boot/grub/grub.cfg boots root={named}"
            ));
        }
        Bootloader::SystemdBoot => {
            let kernel_cmdline = format!("root=UUID={} ro {}", ctx.root_uuid, ctx.cmdline);
            write_atomic(
                Path::new("/etc/kernel/cmdline"),
                format!("{}\n", kernel_cmdline.trim()).as_bytes(),
                0o644,
            )?;
            done.push(format!(
                "wrote /etc/kernel/cmdline: {}",
                kernel_cmdline.trim()
            ));
            let mut c = Command::new(tools::find("bootctl").expect("checked in plan"));
            // --make-entry-directory=yes: $ESP/<machine-id>/ makes kernel-install (and Debian's
            // postinst.d/zz-systemd-boot on later kernel updates) choose the BLS layout, whatever
            // bootctl's "auto" decides about a machine-id it has just seen change.
            c.args([
                "install",
                "--esp-path=/boot/efi",
                "--make-entry-directory=yes",
            ]);
            if !plan.efi_firmware {
                c.arg("--no-variables");
            }
            run_checked(c, "bootctl install")?;
            done.push("bootctl install --esp-path=/boot/efi".into());
            for k in ctx.kernels {
                let initrd = super::initramfs::initrd_path(k);
                let mut c = Command::new(tools::find("kernel-install").expect("checked in plan"));
                c.args(["add", k, &format!("/boot/vmlinuz-{k}")]);
                if initrd.exists() {
                    c.arg(&initrd);
                }
                run_checked(c, &format!("kernel-install add {k}"))?;
                done.push(format!("kernel-install add {k}"));
            }
            // as for grub.cfg: a loader entry that does not name the new root would boot nothing
            let want = format!("root=UUID={}", ctx.root_uuid);
            let ids = ids_of(ctx.root_uuid, ctx.plan.target.as_ref());
            let entries = Path::new("/boot/efi/loader/entries");
            let mut booting = vec![];
            for e in
                fs::read_dir(entries).with_context(|| format!("reading {}", entries.display()))?
            {
                let p = e?.path();
                if p.extension().is_some_and(|x| x == "conf")
                    && fs::read_to_string(&p)
                        .is_ok_and(|t| entries_boot(&loader_entry_roots(&t), &ids))
                {
                    booting.push(
                        p.file_name()
                            .unwrap_or_default()
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
            if booting.is_empty() {
                bail!(
                    "kernel-install wrote no loader entry under {} whose options carry {want}: the new \
                     system would not find its root",
                    entries.display()
                );
            }
            booting.sort();
            done.push(format!(
                "systemd-boot entries booting {want}: {}",
                booting.join(", ")
            ));
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_entry_options_must_name_the_root_as_a_word() {
        let e = "title Debian GNU/Linux 12 (bookworm)\nversion 6.1.0-41-amd64\nmachine-id 0f1e\n\
                 options root=UUID=1234-5 rw console=ttyS0,115200\nlinux /0f1e/6.1.0-41-amd64/linux\n";
        let ids = |u: &str| RootIds {
            fs_uuid: u.into(),
            ..RootIds::default()
        };
        assert!(entries_boot(&loader_entry_roots(e), &ids("1234-5")));
        assert!(!entries_boot(&loader_entry_roots(e), &ids("1234")));
        assert!(!entries_boot(
            &loader_entry_roots("title root=UUID=1234-5\n"),
            &ids("1234-5")
        ));
    }

    #[test]
    fn grub_dropin_carries_the_cmdline_and_serial_console_and_is_valid_sh() {
        let c: Cmdline = "console=ttyS0,115200 quiet opt=\"x y\"".parse().unwrap();
        let d = grub_dropin(&c);
        assert!(
            d.contains("GRUB_CMDLINE_LINUX=\"console=ttyS0,115200 opt=\\\"x y\\\"\"\n"),
            "{d}"
        );
        assert!(d.contains("GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n"), "{d}");
        assert!(d.contains("GRUB_TERMINAL=\"console serial\"\n"));
        assert!(d.contains("GRUB_SERIAL_COMMAND=\"serial --unit=0 --speed=115200\"\n"));
        assert!(d.contains("GRUB_DEVICE=/dev/$rootshift_leg"));
        let no_serial = grub_dropin(&"quiet".parse().unwrap());
        assert!(!no_serial.contains("GRUB_TERMINAL"));
        // what grub-mkconfig sources must parse as POSIX sh
        let out = std::process::Command::new("sh")
            .args(["-n", "-c", &d])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn names_and_esp_needs() {
        assert_eq!(Bootloader::GrubEfi.as_str(), "grub-efi");
        assert!(Bootloader::SystemdBoot.needs_esp() && !Bootloader::GrubBios.needs_esp());
        assert_eq!(
            Bootloader::GrubBios.debian_package(),
            Some(("grub-pc", "grub-efi-amd64"))
        );
    }
}
