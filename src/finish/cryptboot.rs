//! The install step of an encrypted root (`migrate --encrypt --install`, `install --disk
//! --encrypt`; issue 21 §2): the root's filesystem is in a LUKS2 container on the target, so
//!
//! - /boot must be readable without the key: a separate, unencrypted /boot partition (GRUB 2.12
//!   cannot unlock a LUKS2 container made with argon2, cryptsetup's default KDF);
//! - /etc/crypttab names the container by its LUKS UUID, and the initramfs carries cryptsetup
//!   (cryptsetup-initramfs' cryptroot, or dracut's crypt module with systemd-cryptsetup), which
//!   opens it before the root is looked for. The rootshift hook, built into that initramfs on
//!   a root that sits on the container, records the container's name and wraps the LUKS
//!   partition below cryptsetup at every boot (initrd-hook/README.md).
//!
//! Everything is checked before the target is touched ([`check`]); the entry is written after
//! the switch, before the initramfs is regenerated ([`write_entry`]).

use std::fs;
use std::path::Path;

use anyhow::{anyhow, Context, Result};

use super::crypttab::{Crypttab, Entry};
use super::initramfs::Mode;
use crate::error::refuse;
use crate::kernel::blockdev::BlockDev;

pub const CRYPTTAB: &str = "/etc/crypttab";

/// initramfs-tools is the initramfs generator here (else dracut): what decides how crypt
/// support, TPM2 support and a crypttab key file get into the initramfs.
fn initramfs_tools() -> bool {
    Path::new("/usr/sbin/mkinitramfs").exists()
}

/// Which initramfs generator is installed, as its crypt support is packaged.
fn crypt_support_missing() -> Option<&'static str> {
    if initramfs_tools() {
        // initramfs-tools: cryptroot comes with cryptsetup-initramfs
        (!Path::new("/usr/share/initramfs-tools/hooks/cryptroot").exists()).then_some(
            "initramfs-tools has no cryptsetup hook (package cryptsetup-initramfs): the initramfs could not unlock the root",
        )
    } else if Path::new("/usr/lib/dracut/modules.d").exists() {
        let systemd = Path::new("/usr/lib/dracut/modules.d/00systemd").exists();
        if !Path::new("/usr/lib/dracut/modules.d/90crypt").exists() {
            Some("dracut has no crypt module: the initramfs could not unlock the root")
        } else if systemd && !Path::new("/usr/lib/systemd/systemd-cryptsetup").exists() {
            Some("dracut's initramfs runs systemd, and systemd-cryptsetup is missing (Debian 13: package systemd-cryptsetup): the initramfs could not unlock the root")
        } else {
            None
        }
    } else {
        Some("no initramfs generator with cryptsetup support is installed (initramfs-tools with cryptsetup-initramfs, or dracut)")
    }
}

/// `--tpm2`: only systemd-cryptsetup unlocks with a TPM2 token (crypttab's tpm2-device=);
/// cryptsetup-initramfs' cryptroot does not. dracut takes it in with its tpm2-tss module, which
/// needs the `tpm2` tool (tpm2-tools) and then carries the TSS libraries.
fn tpm2_support_missing() -> Option<&'static str> {
    if initramfs_tools() {
        Some("--tpm2: initramfs-tools' cryptroot cannot unlock with a TPM (only systemd-cryptsetup can: dracut)")
    } else if !Path::new("/usr/lib/dracut/modules.d/00systemd").exists() {
        Some("--tpm2: dracut without its systemd modules cannot unlock with a TPM (systemd-cryptsetup does that)")
    } else if !Path::new("/usr/lib/dracut/modules.d/91tpm2-tss").exists()
        || crate::tools::find("tpm2").is_none()
    {
        Some("--tpm2: the initramfs would lack the TPM2 libraries: dracut's tpm2-tss module needs the tpm2 tool (package tpm2-tools)")
    } else {
        None
    }
}

/// Before anything changes: what an encrypted root's install step needs.
pub fn check(
    encrypt: bool,
    tpm2: bool,
    crypttab_key: Option<&Path>,
    initramfs: Mode,
    boot_part: bool,
) -> Result<()> {
    if !encrypt {
        if crypttab_key.is_some() {
            return Err(refuse(
                "--crypttab-key names the key file of the new encrypted root's container, and nothing is encrypted here",
                Some("add --encrypt, or leave --crypttab-key out"),
            ));
        }
        return Ok(());
    }
    if !boot_part {
        return Err(refuse(
            "an encrypted root needs an unencrypted /boot for the boot loader and the kernels (GRUB cannot \
             unlock a LUKS2 container made with argon2), and this install has no /boot partition",
            Some("use `rootshift install --disk DISK --encrypt`: it lays out a /boot partition (or migrate with \
                  --encrypt --no-install and write crypttab and the boot setup yourself)"),
        ));
    }
    if initramfs == Mode::Keep {
        return Err(refuse(
            "--initramfs keep: the prebuilt initramfs does not know the new encrypted container and could not \
             unlock the root",
            Some("leave --initramfs out (regenerate)"),
        ));
    }
    if let Some(why) = crypt_support_missing() {
        return Err(refuse(why, Some("install it, then run this again")));
    }
    if let Some(why) = tpm2.then(tpm2_support_missing).flatten() {
        return Err(refuse(
            why,
            Some("install what it names, or leave --tpm2 out (the passphrase or crypttab key unlocks it)"),
        ));
    }
    if let Some(k) = crypttab_key {
        let m = fs::metadata(k).map_err(|e| {
            refuse(
                format!("--crypttab-key {}: {e}", k.display()),
                Some("name a key file in the root filesystem"),
            )
        })?;
        if !k.is_absolute() || !m.is_file() {
            return Err(refuse(
                format!(
                    "--crypttab-key {}: not an absolute path of a regular file",
                    k.display()
                ),
                Some("name it by its absolute path, e.g. /etc/keys/root.key"),
            ));
        }
    }
    Ok(())
}

/// The LUKS container the root moved into: its mapping (the migration's target) and its UUID.
pub struct Container {
    pub name: String,
    pub luks_uuid: String,
    /// The raw partition holding it.
    pub part: BlockDev,
    /// Its header has a TPM2 token (`--tpm2`: systemd-cryptenroll enrolled the TPM).
    pub tpm2: bool,
}

impl Container {
    /// `target` when it is a LUKS mapping (cryptsetup's dm uuid) on one partition.
    pub fn of(target: &BlockDev) -> Result<Option<Container>> {
        if !target
            .dm_uuid()
            .is_some_and(|u| u.starts_with("CRYPT-LUKS"))
        {
            return Ok(None);
        }
        let name = target
            .dm_name()
            .ok_or_else(|| anyhow!("{} has no dm name", target.display()))?;
        let part = match target.slaves().as_slice() {
            [one] => one.clone(),
            other => {
                return Err(anyhow!(
                    "the container {name} maps {} devices, not one partition",
                    other.len()
                ))
            }
        };
        let head = part
            .read_head(crate::kernel::fs::PROBE_BYTES)
            .with_context(|| format!("reading the LUKS header of {}", part.display()))?;
        let luks_uuid = crate::kernel::fs::luks_uuid(&head)
            .ok_or_else(|| anyhow!("{} shows no LUKS UUID", part.display()))?;
        let tpm2 = matches!(crate::kernel::luks2::read(&part), Ok(Some(Ok(m))) if m.has_token_type("systemd-tpm2"));
        Ok(Some(Container {
            name,
            luks_uuid,
            part,
            tpm2,
        }))
    }
}

/// Put the container's entry into /etc/crypttab (replacing one of the same name or UUID).
/// Returns the lines for the install record.
pub fn write_entry(c: &Container, key: Option<&Path>) -> Result<Vec<String>> {
    let text = match fs::read_to_string(CRYPTTAB) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {CRYPTTAB}")),
    };
    let mut tab: Crypttab = text.parse().map_err(|e| anyhow!("{CRYPTTAB}: {e}"))?;
    let key = key.map(|k| k.display().to_string());
    let mut e = Entry::luks(&c.name, &c.luks_uuid, key.as_deref());
    if c.tpm2 {
        // systemd-cryptsetup unseals the key from the TPM (the token systemd-cryptenroll wrote)
        e.options.push_str(",tpm2-device=auto");
    }
    let mut lines = vec![format!("{CRYPTTAB}: {e}")];
    lines.extend(tab.set(e).iter().map(|o| format!("replaced the entry {o}")));
    super::ids::write_atomic(Path::new(CRYPTTAB), tab.to_string().as_bytes(), 0o644)?;
    Ok(lines)
}

/// `--crypttab-key FILE`: make every initramfs from now on carry the key file crypttab names
/// (the key is then readable by anyone who can read /boot: the admin's choice). dracut: an
/// `install_items` line in dracut.conf.d; initramfs-tools: cryptsetup-initramfs copies it only
/// when KEYFILE_PATTERN matches (crypttab(5)), with the initramfs made unreadable for others
/// (UMASK=0077), as its documentation asks. Returns the lines for the install record.
pub fn keep_key_in_initramfs(key: &Path) -> Result<Vec<String>> {
    let k = key.display().to_string();
    if initramfs_tools() {
        let hook = Path::new("/etc/cryptsetup-initramfs/conf-hook");
        let text = fs::read_to_string(hook).unwrap_or_default();
        let set = text
            .lines()
            .any(|l| l.trim_start().starts_with("KEYFILE_PATTERN="));
        let mut lines = vec![];
        if set {
            lines.push(format!(
                "{} sets KEYFILE_PATTERN already: left as it is (it must match {k})",
                hook.display()
            ));
        } else {
            let mut t = text.clone();
            if !t.is_empty() && !t.ends_with('\n') {
                t.push('\n');
            }
            t.push_str(&format!("# rootshift --crypttab-key: the root's key file goes into the initramfs\nKEYFILE_PATTERN=\"{k}\"\n"));
            fs::create_dir_all("/etc/cryptsetup-initramfs")?;
            super::ids::write_atomic(hook, t.as_bytes(), 0o644)?;
            lines.push(format!("{}: KEYFILE_PATTERN=\"{k}\"", hook.display()));
        }
        let umask = Path::new("/etc/initramfs-tools/conf.d/rootshift-umask");
        fs::create_dir_all("/etc/initramfs-tools/conf.d")?;
        super::ids::write_atomic(umask, b"UMASK=0077\n", 0o644)?;
        lines.push(format!(
            "{}: UMASK=0077 (the initramfs holds a key)",
            umask.display()
        ));
        Ok(lines)
    } else {
        let conf = Path::new("/etc/dracut.conf.d/90-rootshift-crypttab-key.conf");
        fs::create_dir_all("/etc/dracut.conf.d")?;
        let text = format!("# rootshift --crypttab-key: the root's key file goes into the initramfs\ninstall_items+=\" {k} \"\n");
        super::ids::write_atomic(conf, text.as_bytes(), 0o644)?;
        Ok(vec![format!(
            "{}: install_items+=\" {k} \"",
            conf.display()
        )])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(r: Result<()>, want: &str) {
        let e = r.expect_err(want);
        assert_eq!(
            crate::error::exit_code(&e),
            crate::error::exit::REFUSED,
            "{e:#}"
        );
        assert!(format!("{e:#}").contains(want), "{e:#}");
    }

    #[test]
    fn what_an_encrypted_root_needs_before_anything_changes() {
        let k = Path::new("/etc/keys/root.key");
        // nothing encrypted: fine, unless a crypttab key is named
        assert!(check(false, false, None, Mode::Regenerate, false).is_ok());
        refused(
            check(false, false, Some(k), Mode::Regenerate, true),
            "nothing is encrypted",
        );
        // encrypted: a /boot partition, then an initramfs that is rebuilt
        refused(
            check(true, false, None, Mode::Regenerate, false),
            "no /boot partition",
        );
        refused(
            check(true, true, None, Mode::Keep, true),
            "--initramfs keep",
        );
    }
}
