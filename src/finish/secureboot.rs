//! Secure Boot (issue 20): the distribution's signed chain for GRUB on UEFI — shim (signed by
//! Microsoft's UEFI CA), Debian's signed GRUB, Debian's signed kernel — installed with
//! `grub-install --uefi-secure-boot`, which puts shim, GRUB and MokManager into `\EFI\<id>\`
//! (where the signed GRUB looks for its `grub.cfg`: its prefix is built in).
//!
//! The chain is used whenever it is available (installed, or the spin's `.deb`s in
//! [`CHAIN_DIR`]): it boots with Secure Boot on and off, and the disk may end up in another
//! PC. A system booted with Secure Boot on refuses a boot loader that would not boot there.
//!
//! The removable fallback `\EFI\BOOT\BOOTX64.EFI` (what firmware boots without an NVRAM entry)
//! is written only when it is absent or ours: on an ESP shared with another system it stays, and
//! ours boots through its NVRAM entry.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use super::packages::{package_installed, run_checked};
use super::view::View;
use crate::tools;

/// shim-signed's binary, and Debian's signed GRUB (grub-efi-amd64-signed).
pub const SHIM: &str = "/usr/lib/shim/shimx64.efi.signed";
pub const GRUB_SIGNED: &str = "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed";
/// The packages of the chain (their dependencies come along).
pub const PACKAGES: &[&str] = &["shim-signed", "grub-efi-amd64-signed"];
/// Where a spin puts the chain's `.deb`s with their dependencies (all installed together).
pub const CHAIN_DIR: &str = "/usr/share/rootshift/packages/secureboot";
/// The EFI global variable `SecureBoot` (4 bytes of attributes, then the value).
const SB_VAR: &str = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// Whether this system was booted with Secure Boot on.
pub fn booted_with_secure_boot() -> bool {
    fs::read(SB_VAR).is_ok_and(|v| sb_value(&v))
}

fn sb_value(v: &[u8]) -> bool {
    v.len() >= 5 && v[4] == 1
}

/// Whether the signed chain is installed.
pub fn chain_installed() -> bool {
    Path::new(SHIM).is_file() && Path::new(GRUB_SIGNED).is_file()
}

/// The `.deb`s that would complete the chain (every one in [`CHAIN_DIR`] whose package is not
/// installed), or None when a package of the chain is neither installed nor there.
fn chain_debs() -> Option<Vec<PathBuf>> {
    let mut debs: Vec<PathBuf> = fs::read_dir(CHAIN_DIR)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.ends_with(".deb") && !package_installed(n.split('_').next().unwrap_or(n))
            })
        })
        .collect();
    debs.sort();
    let has = |pkg: &str| {
        package_installed(pkg)
            || debs.iter().any(|d| {
                d.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{pkg}_")))
            })
    };
    PACKAGES.iter().all(|p| has(p)).then_some(debs)
}

/// Whether the chain is installed or can be from the spin's `.deb`s.
pub fn chain_available() -> bool {
    chain_installed() || (tools::find("dpkg").is_some() && chain_debs().is_some())
}

/// Install the chain from the spin's `.deb`s where it is not installed. Ok(true): it is there.
pub fn ensure_chain(done: &mut Vec<String>) -> Result<bool> {
    if chain_installed() {
        return Ok(true);
    }
    let (Some(dpkg), Some(debs)) = (tools::find("dpkg"), chain_debs()) else {
        return Ok(false);
    };
    if !debs.is_empty() {
        let mut c = Command::new(dpkg);
        c.arg("-i")
            .args(&debs)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("DEBCONF_NONINTERACTIVE_SEEN", "true");
        run_checked(
            c,
            &format!("dpkg -i of the Secure Boot chain from {CHAIN_DIR}"),
        )?;
        done.push(format!(
            "installed {}",
            debs.iter()
                .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(chain_installed())
}

/// Who `\EFI\BOOT\BOOTX64.EFI` on the ESP mounted at `esp` belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    Absent,
    Ours,
    /// Another system's: kept.
    Foreign,
}

/// `os_id`: our `\EFI\<id>\` directory; `root_uuid`: the filesystem GRUB's core image searches
/// (a GRUB image grub-install made for this system names it).
pub fn fallback_owner(esp: &Path, os_id: &str, root_uuid: &str) -> Fallback {
    let boot = esp.join("EFI/BOOT");
    let Some(f) = fs::read_dir(&boot).ok().and_then(|rd| {
        rd.filter_map(|e| e.ok().map(|e| e.path())).find(|p| {
            p.file_name()
                .is_some_and(|n| n.eq_ignore_ascii_case("BOOTX64.EFI"))
        })
    }) else {
        return Fallback::Absent;
    };
    let Ok(have) = fs::read(&f) else {
        return Fallback::Foreign;
    };
    let ours_dir = esp.join("EFI").join(os_id);
    let same = |p: &Path| fs::read(p).is_ok_and(|v| v == have);
    if same(Path::new(SHIM))
        || same(&ours_dir.join("shimx64.efi"))
        || same(&ours_dir.join("grubx64.efi"))
        || (!root_uuid.is_empty() && contains(&have, root_uuid.as_bytes()))
    {
        Fallback::Ours
    } else {
        Fallback::Foreign
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// GRUB for UEFI: the signed chain when available (shim + signed GRUB, `--uefi-secure-boot`), else
/// unsigned GRUB; then the removable fallback `\EFI\BOOT\BOOTX64.EFI` unless another system's
/// is there.
pub(super) fn grub_efi(
    view: &View,
    grub_install: &Path,
    os_id: &str,
    root_uuid: &str,
    nvram: bool,
    done: &mut Vec<String>,
) -> Result<()> {
    let signed = ensure_chain(done)?;
    let fallback = fallback_owner(Path::new("/boot/efi"), os_id, root_uuid);
    let removable = fallback != Fallback::Foreign;
    let runs: &[bool] = if signed || !removable {
        &[false]
    } else {
        &[false, true]
    };
    for &second in runs {
        let mut c = view.command(grub_install)?;
        c.args([
            "--target=x86_64-efi",
            "--efi-directory=/boot/efi",
            "--boot-directory=/boot",
            &format!("--bootloader-id={}", os_id),
        ]);
        let mut what = String::from("grub-install --target=x86_64-efi");
        let mut flag = |c: &mut Command, f: &str| {
            c.arg(f);
            what.push(' ');
            what.push_str(f);
        };
        if signed {
            flag(&mut c, "--uefi-secure-boot");
        }
        if second {
            // \EFI\BOOT\BOOTX64.EFI: what firmware boots when its NVRAM has no entry
            flag(&mut c, "--removable");
        } else {
            if !nvram {
                flag(&mut c, "--no-nvram");
            }
            if signed && removable {
                // shim as \EFI\BOOT\BOOTX64.EFI, next to the signed GRUB it loads
                flag(&mut c, "--force-extra-removable");
            }
        }
        run_checked(c, &what)?;
        done.push(what);
    }
    if !removable {
        let how = if nvram {
            "this system boots through its NVRAM entry".to_string()
        } else {
            format!(
                "no NVRAM entry was written (no UEFI firmware or no efibootmgr here): add one for \\EFI\\{}\\{} in the firmware's setup",
                os_id,
                if signed { "shimx64.efi" } else { "grubx64.efi" }
            )
        };
        done.push(format!(
            "kept \\EFI\\BOOT\\BOOTX64.EFI on the ESP (another system's); {how}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secure_boot_variable_is_its_fifth_byte() {
        assert!(sb_value(&[6, 0, 0, 0, 1]));
        assert!(!sb_value(&[6, 0, 0, 0, 0]));
        assert!(!sb_value(&[6, 0, 0, 0]));
    }

    #[test]
    fn the_fallback_is_ours_only_when_we_can_tell() {
        let d = std::env::temp_dir().join(format!("rootshift-esp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        assert_eq!(fallback_owner(&d, "debian", "u"), Fallback::Absent);
        fs::create_dir_all(d.join("EFI/BOOT")).unwrap();
        fs::create_dir_all(d.join("EFI/debian")).unwrap();
        assert_eq!(fallback_owner(&d, "debian", "u"), Fallback::Absent);
        fs::write(d.join("EFI/BOOT/bootx64.efi"), b"MZ other loader").unwrap();
        assert_eq!(fallback_owner(&d, "debian", "1234-abcd"), Fallback::Foreign);
        fs::write(d.join("EFI/debian/shimx64.efi"), b"MZ other loader").unwrap();
        assert_eq!(fallback_owner(&d, "debian", "1234-abcd"), Fallback::Ours);
        fs::remove_file(d.join("EFI/debian/shimx64.efi")).unwrap();
        fs::write(
            d.join("EFI/BOOT/bootx64.efi"),
            b"MZ..search.fs_uuid 1234-abcd root",
        )
        .unwrap();
        assert_eq!(fallback_owner(&d, "debian", "1234-abcd"), Fallback::Ours);
        assert_eq!(fallback_owner(&d, "debian", "9999-0000"), Fallback::Foreign);
        fs::remove_dir_all(&d).unwrap();
    }
}
