//! `migrate --encrypt` (issue 21 §2): the target becomes a LUKS2 container, and the plaintext
//! root is mirrored onto its open mapping. After the switch the wrapper maps the mapping, so the
//! stack is wrapper → dm-crypt → target and every block written to the target is ciphertext.
//!
//! Everything that can be refused is refused before the target is touched: cryptsetup missing,
//! a target too small for the root plus the LUKS2 header, no key (`--key-file`, or the
//! passphrase asked twice on the terminal). `luksFormat` runs only after the confirmation. The
//! mapping is named `luks-<UUID>`, as systemd-cryptsetup and dracut name it at boot, so the name
//! stays the same across the next boot. A migration that stops before the switch closes the
//! mapping again (the header stays on the target: the target was given to be overwritten).
//!
//! The old disk keeps the root as plaintext: the `plaintext-left` event says so, and
//! `--wipe-source` overwrites it with zeroes (BLKZEROOUT) after the switch.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use devicemapper::Bytes;

use super::crypt::{self, Key};
use crate::error::refuse;
use crate::kernel::blockdev::{human, BlockDev};
use crate::kernel::dm::{self, Dm};
use crate::tools;

/// LUKS2's default data offset (cryptsetup 2.x: 16 MiB of header and keyslots before the
/// payload). A target needs this much more than the root.
pub const LUKS2_HEADER: u64 = 16 << 20;

/// How the new container is made.
#[derive(Debug, Clone, Default)]
pub struct EncryptOptions {
    /// `cryptsetup luksFormat --pbkdf-memory KIB` (argon2: the KDF's memory cost).
    pub pbkdf_memory: Option<u32>,
    /// `cryptsetup luksFormat --iter-time MS` (the time the KDF takes on this machine).
    pub iter_time: Option<u32>,
    /// `--tpm2`: also enroll the machine's TPM 2.0 (systemd-cryptenroll), sealed to these PCRs
    /// (`--tpm2-pcrs`, systemd's syntax; empty: none).
    pub tpm2_pcrs: Option<String>,
}

/// Checked, with the key in hand: the target can be formatted.
pub struct Encrypt {
    cryptsetup: PathBuf,
    key: Key,
    opts: EncryptOptions,
    /// The encryption sector size: the source's logical block size. cryptsetup ≥ 2.4 would pick
    /// 4096 on a disk with 4 KiB physical sectors (512e), and the mapping, then the wrapper, would
    /// present 4 KiB logical blocks to a root that was made on 512-byte ones.
    sector_size: u32,
    /// systemd-cryptenroll, when `--tpm2` asks for it (checked: a TPM 2.0 is there).
    cryptenroll: Option<PathBuf>,
}

/// The open mapping over the formatted target; closed again when dropped unless kept.
pub struct Opened {
    pub dev: BlockDev,
    pub name: String,
    pub uuid: String,
    /// The TPM was enrolled (`--tpm2`).
    pub tpm2: bool,
    cryptsetup: PathBuf,
    keep: bool,
}

impl Encrypt {
    /// Every check before the target is touched: cryptsetup, the size (root + LUKS2 header),
    /// the key.
    pub fn prepare(
        opts: &EncryptOptions,
        key_file: Option<&Path>,
        source: &BlockDev,
        source_size: Bytes,
        target: &BlockDev,
    ) -> Result<Encrypt> {
        let cryptsetup = tools::find("cryptsetup").ok_or_else(|| {
            refuse(
                "--encrypt formats the target as LUKS2, and cryptsetup is missing",
                Some("install cryptsetup (Debian: cryptsetup-bin; the boot needs cryptsetup-initramfs or systemd-cryptsetup)"),
            )
        })?;
        let tsize = target
            .size()
            .with_context(|| format!("reading the size of {}", target.display()))?;
        let need = *source_size + u128::from(LUKS2_HEADER);
        if *tsize < need {
            return Err(refuse(
                format!(
                    "{} ({}) cannot hold the root ({}) behind a LUKS2 header ({}): it needs {} at least",
                    target.display(),
                    human(tsize),
                    human(source_size),
                    human(Bytes(LUKS2_HEADER.into())),
                    human(Bytes(need))
                ),
                Some("use a larger target, or migrate without --encrypt"),
            ));
        }
        let key = match key_file {
            Some(f) => match Key::file(f)? {
                (_, 0) => {
                    return Err(refuse(
                        format!("the key file {} is empty", f.display()),
                        Some("put the passphrase or key into it"),
                    ))
                }
                (k, _) => k,
            },
            None => ask_new_passphrase(&target.display())?,
        };
        let (_, sector_size) = source
            .geometry()
            .with_context(|| format!("reading the logical block size of {}", source.display()))?;
        let cryptenroll = opts.tpm2_pcrs.as_ref().map(|_| tpm2_check()).transpose()?;
        Ok(Encrypt {
            cryptsetup,
            key,
            opts: opts.clone(),
            sector_size,
            cryptenroll,
        })
    }

    /// `luksFormat` the target as LUKS2 and open it as `luks-<UUID>`.
    pub fn format_and_open(&self, target: &BlockDev) -> Result<Opened> {
        let node = target.node_path().display().to_string();
        let uuid = uuid::Uuid::new_v4().hyphenated().to_string();
        let (mem, iter) = (
            self.opts.pbkdf_memory.map(|m| m.to_string()),
            self.opts.iter_time.map(|t| t.to_string()),
        );
        let sector = self.sector_size.to_string();
        let mut args = vec![
            "luksFormat",
            "--type",
            "luks2",
            "--batch-mode",
            "--uuid",
            &uuid,
            "--sector-size",
            &sector,
        ];
        if let Some(m) = &mem {
            args.extend(["--pbkdf-memory", m]);
        }
        if let Some(t) = &iter {
            args.extend(["--iter-time", t]);
        }
        args.push(&node);
        crypt::run(
            &self.cryptsetup,
            &self.key,
            &args,
            &format!("formatting {node} as LUKS2"),
        )?;
        let name = format!("luks-{uuid}");
        crypt::run(
            &self.cryptsetup,
            &self.key,
            &["open", "--type", "luks2", &node, &name],
            &format!("opening the new container on {node}"),
        )?;
        let opened = |name: &str| -> Result<BlockDev> {
            let info = Dm::open()?.info(name)?;
            dm::ensure_node(name, info.devnum)?;
            Ok(BlockDev::from_devnum(info.devnum)?)
        };
        let o = match opened(&name) {
            Ok(dev) => Opened {
                dev,
                name,
                uuid,
                tpm2: false,
                cryptsetup: self.cryptsetup.clone(),
                keep: false,
            },
            Err(e) => {
                let _ = crypt::run_keyless(&self.cryptsetup, &["close", &name]);
                return Err(e.context(format!("finding the mapping {name} cryptsetup opened")));
            }
        };
        // (a failure drops `o`: the mapping is closed; only the new header was written)
        let mut o = o;
        if let (Some(enroll), Some(pcrs)) = (&self.cryptenroll, &self.opts.tpm2_pcrs) {
            tpm2_enroll(enroll, &self.key, pcrs, &node)?;
            o.tpm2 = true;
        }
        Ok(o)
    }
}

/// `--tpm2` before anything is written: systemd-cryptenroll, and a TPM 2.0 the kernel knows.
fn tpm2_check() -> Result<PathBuf> {
    let enroll = tools::find("systemd-cryptenroll").ok_or_else(|| {
        refuse(
            "--tpm2 enrolls the TPM with systemd-cryptenroll, which is missing",
            Some("install it (Debian 13: systemd-cryptsetup; 12: systemd), or leave --tpm2 out"),
        )
    })?;
    let v = std::fs::read_to_string("/sys/class/tpm/tpm0/tpm_version_major").unwrap_or_default();
    if v.trim() != "2" {
        return Err(refuse(
            "--tpm2: this machine shows no TPM 2.0 (/sys/class/tpm/tpm0/tpm_version_major)",
            Some("enable the TPM in the firmware, or leave --tpm2 out (the passphrase or key file unlocks it)"),
        ));
    }
    Ok(enroll)
}

/// Enroll the TPM into the new container's header (a systemd-tpm2 token and a keyslot), unlocked
/// with the key it was formatted with.
fn tpm2_enroll(enroll: &Path, key: &Key, pcrs: &str, node: &str) -> Result<()> {
    let mut c = std::process::Command::new(enroll);
    c.arg("--tpm2-device=auto")
        .arg(format!("--tpm2-pcrs={pcrs}"))
        .stdin(std::process::Stdio::null());
    match key {
        Key::File(f) => {
            c.arg(format!("--unlock-key-file={}", f.display()));
        }
        // systemd-cryptenroll reads a passphrase from $PASSWORD
        Key::Typed(p) => {
            c.env("PASSWORD", String::from_utf8_lossy(p).into_owned());
        }
        Key::NotNeeded => {}
    }
    let out = c
        .arg(node)
        .output()
        .context("running systemd-cryptenroll")?;
    if !out.status.success() {
        bail!(
            "enrolling the TPM into the container on {node} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Opened {
    /// After the switch the root runs on it: it stays open.
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        if !self.keep {
            // busy (a mirror left in place for safety) means it stays: nothing is lost by that
            let _ = crypt::run_keyless(&self.cryptsetup, &["close", &self.name]);
        }
    }
}

/// The new container's passphrase, asked twice on the terminal.
fn ask_new_passphrase(target: &str) -> Result<Key> {
    let no_tty = || {
        refuse(
            format!("--encrypt needs a passphrase for the container on {target}, and there is no terminal to ask on"),
            Some("pass --key-file FILE (a file holding the passphrase or key)"),
        )
    };
    let first =
        crypt::ask_passphrase(&format!("New passphrase for {target}"))?.ok_or_else(no_tty)?;
    if first.is_empty() {
        return Err(refuse(
            "the passphrase is empty",
            Some("type one, or pass --key-file FILE"),
        ));
    }
    let again = Key::Typed(crypt::ask_passphrase("The same passphrase again")?.ok_or_else(no_tty)?);
    let first = Key::Typed(first);
    match (&first, &again) {
        (Key::Typed(a), Key::Typed(b)) if a == b => Ok(first),
        _ => Err(refuse(
            "the two passphrases differ; nothing was changed",
            Some("run it again"),
        )),
    }
}

/// Overwrite the old disk with zeroes (BLKZEROOUT): it held the root as plaintext. (A flash
/// device may keep old copies in blocks it has remapped; only its own secure erase reaches those.)
pub fn wipe_source(source: &BlockDev) -> Result<()> {
    use std::os::fd::AsFd;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(source.node_path())
        .with_context(|| format!("opening {}", source.display()))?;
    let size = u64::try_from(*source.size()?).map_err(|e| anyhow!("{e}"))?;
    crate::kernel::ioctl::blk_zero_out(f.as_fd(), 0, size)
        .with_context(|| format!("writing zeroes over {} (BLKZEROOUT)", source.display()))?;
    crate::kernel::ioctl::blk_flush_buffers(f.as_fd())
        .with_context(|| format!("flushing {}", source.display()))
}

impl super::Run {
    /// After the switch and the grow of a `--encrypt` migration: the old disk's plaintext
    /// overwritten (`--wipe-source`) or reported, and what the next boot needs.
    pub(super) fn after_encrypt(&mut self) {
        let Some(o) = &self.encrypted else { return };
        let (src, name, uuid) = (self.source.display(), o.name.clone(), o.uuid.clone());
        if self.wipe_source {
            match wipe_source(&self.source) {
                Ok(()) => self.progress.event(
                    "source-wiped",
                    &format!("overwrote the old device {src} with zeroes: its plaintext copy of the root is gone"),
                    serde_json::json!({"device": src}),
                ),
                Err(e) => self.progress.event(
                    "warning",
                    &format!(
                        "the root is safe in the encrypted container on {}, but overwriting the old device {src} failed ({e:#}): \
                         it still holds the root as plaintext; `blkdiscard -z {src}` overwrites it",
                        self.target.display()
                    ),
                    serde_json::json!({"device": src, "error": format!("{e:#}")}),
                ),
            }
        } else {
            self.progress.event(
                "plaintext-left",
                &format!(
                    "the old device {src} still holds the root as plaintext: `blkdiscard -z {src}` (or --wipe-source next \
                     time) overwrites it"
                ),
                serde_json::json!({"device": src}),
            );
        }
        if self.install.is_some() {
            // the install step writes crypttab and the initramfs (finish::cryptboot)
            return;
        }
        let tpm2 = if o.tpm2 { ",tpm2-device=auto" } else { "" };
        let crypttab = format!("{name} UUID={uuid} none luks{tpm2}");
        self.progress.event(
            "next-boot",
            &format!(
                "the next boot must unlock the container before it finds the root: add `{crypttab}` to /etc/crypttab \
                 and regenerate the initramfs with cryptsetup support (Debian: cryptsetup-initramfs)"
            ),
            serde_json::json!({"mapping": name, "luks_uuid": uuid, "crypttab": crypttab}),
        );
    }
}
