//! An encrypted root whose LUKS container sits *on* the wrapper (issue 21 §1): the boot hook
//! wrapped the LUKS partition and the container was opened over the wrapper, so the wrapper
//! carries ciphertext and the mirror moves the container as it is — header, keyslots and data
//! stay encrypted on the target, with the same LUKS UUID and keys.
//!
//! After the switch the container's payload grows with `cryptsetup resize` on the open mapping,
//! then the filesystem in it. LUKS2 keeps the volume key in the kernel keyring, and resizing such
//! a mapping needs the key: it is read (`--key-file`, or asked for on the terminal) and tested
//! against the header *before* anything changes, never after the point of no return. The old
//! disk's LUKS header then gets a new UUID, so an unlock by UUID (crypttab, `rd.luks.uuid=`)
//! cannot take the stale copy.
//!
//! A used-only copy (dm backend) reads the free-space map of the filesystem in the container:
//! its offsets are the payload's, so they are shifted by the payload offset on the wrapper, and
//! the header before it (keyslots, LUKS2 metadata) is always copied (`FsSpan`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::backend::usedmap::FsSpan;
use crate::backend::CopyMode;
use crate::error::refuse;
use crate::kernel::blockdev::BlockDev;
use crate::kernel::devnum::DevNum;
use crate::kernel::dm::{self, Dm};
use crate::kernel::dmcrypt::CryptParams;
use crate::kernel::dmtable::TableLine;
use crate::kernel::mounts::{self, Mount};
use crate::tools;
use crate::wrapper::Wrapper;

/// The key a resize of the open mapping needs (or, `migrate --encrypt`, the new container's).
pub(super) enum Key {
    /// The mapping's table holds the key itself (LUKS1, plain): no key needed.
    NotNeeded,
    File(PathBuf),
    /// A passphrase typed on the terminal (without its newline).
    Typed(Vec<u8>),
}

/// The dm-crypt mapping opened over a wrapper, and what growing it needs.
pub struct Crypt {
    pub dev: BlockDev,
    pub name: String,
    /// Its cryptsetup uuid says LUKS (not a plain mapping): the header has a UUID.
    pub luks: bool,
    /// Where the filesystem in it is mounted (the root).
    pub mount: Option<Mount>,
    /// Where its payload (the filesystem) lies on the wrapper, from its one `crypt` line.
    pub span: Option<FsSpan>,
    cryptsetup: PathBuf,
    key: Key,
}

impl Drop for Key {
    fn drop(&mut self) {
        if let Key::Typed(k) = self {
            k.iter_mut().for_each(|b| *b = 0);
        }
    }
}

/// Whether a dm-crypt table line's key is a kernel keyring reference (`:64:logon:cryptsetup:…`,
/// what cryptsetup 2.x loads for LUKS2) rather than the key in hex.
pub fn key_in_keyring(crypt_params: &str) -> bool {
    crypt_params
        .parse::<CryptParams>()
        .is_ok_and(|p| p.key_in_keyring())
}

impl Key {
    /// A key file, refused unless it can be read: its size, for the caller's own checks.
    pub(super) fn file(f: &Path) -> Result<(Key, u64)> {
        let m = std::fs::metadata(f).map_err(|e| {
            refuse(
                format!("the key file {}: {e}", f.display()),
                Some("name a readable key file"),
            )
        })?;
        Ok((Key::File(f.to_path_buf()), m.len()))
    }
}

/// Where the payload of a mapping with `table` lies on `wrapper`: its one `crypt` line's offset
/// and length. None when the table is anything else (several lines, another device).
pub fn payload_span(table: &[TableLine], wrapper: DevNum) -> Option<FsSpan> {
    let [l] = table else { return None };
    let p: CryptParams = l.params.parse().ok()?;
    (l.target == "crypt" && *l.start == 0 && p.dev == wrapper).then(|| FsSpan {
        start: *p.offset * 512,
        len: Some(*l.len * 512),
    })
}

impl Crypt {
    /// The dm-crypt mapping directly on `w` (its one holder), checked for what the migration of
    /// an encrypted root needs: cryptsetup, a whole copy, and the key when a resize needs it
    /// (tested against the header on the wrapper). None: `w` carries no dm-crypt mapping.
    pub fn above(w: &Wrapper, key_file: Option<&Path>, copy: CopyMode) -> Result<Option<Crypt>> {
        let Ok(wdev) = BlockDev::from_devnum(w.devnum) else {
            return Ok(None);
        };
        let Some(dev) = dm::crypt_holder(&wdev) else {
            if key_file.is_some() {
                return Err(refuse(
                    format!("--key-file is for an encrypted root, and no dm-crypt mapping is open on {}", w.name),
                    Some("leave --key-file out"),
                ));
            }
            return Ok(None);
        };
        let name = dev.dm_name().unwrap_or_else(|| dev.display());
        let Some(cryptsetup) = tools::find("cryptsetup") else {
            return Err(refuse(
                format!("the root is encrypted ({name} on {}) and cryptsetup is missing: the LUKS container cannot be grown after the move", w.name),
                Some("install cryptsetup (Debian: cryptsetup-bin)"),
            ));
        };
        let luks = dev.dm_uuid().is_some_and(|u| u.starts_with("CRYPT-LUKS"));
        let table = Dm::open()
            .and_then(|d| d.table(&name))
            .with_context(|| format!("reading the table of {name}"))?;
        let span = payload_span(&table, w.devnum);
        if copy == CopyMode::Used && span.is_none() {
            return Err(refuse(
                format!(
                    "{} carries the encrypted container {name}, whose table is not one crypt line over it: \
                     where its filesystem's free blocks lie on {} is not known, so it is copied whole",
                    w.name, w.name
                ),
                Some("leave --copy out (or pass --copy full)"),
            ));
        }
        let needs_key = table
            .iter()
            .any(|l| l.target == "crypt" && key_in_keyring(&l.params));
        let key = match (needs_key, key_file) {
            (false, _) => Key::NotNeeded,
            (true, Some(f)) => Key::file(f)?.0,
            (true, None) => match ask_passphrase(&format!("Passphrase of {name} (to grow it after the move)"))? {
                Some(p) => Key::Typed(p),
                None => {
                    return Err(refuse(
                        format!(
                            "growing the encrypted root {name} after the move needs its key (the volume key is in the kernel keyring), and there is no terminal to ask on"
                        ),
                        Some("pass --key-file FILE (a file holding the passphrase or key)"),
                    ))
                }
            },
        };
        let mount = mounts::mounts_of(dev.devnum)?.into_iter().next();
        let c = Crypt {
            dev,
            name,
            luks,
            mount,
            span,
            cryptsetup,
            key,
        };
        if needs_key {
            c.run(
                &[
                    "open",
                    "--test-passphrase",
                    &wdev.node_path().display().to_string(),
                ],
                "testing the key",
            )
            .map_err(|e| {
                refuse(
                    format!(
                        "the key does not open the LUKS container on {}: {e:#}",
                        w.name
                    ),
                    Some("check the passphrase or --key-file"),
                )
            })?;
        }
        Ok(Some(c))
    }

    /// Grow the open mapping to the (grown) wrapper.
    pub fn resize(&self) -> Result<()> {
        self.run(&["resize", &self.name], &format!("growing {}", self.name))
    }

    /// Give the LUKS header on `old` (the detached source) a new UUID; returns it.
    pub fn new_header_uuid(&self, old: &BlockDev) -> Result<String> {
        let u = uuid::Uuid::new_v4().hyphenated().to_string();
        let node = old.node_path().display().to_string();
        self.run_keyless(&["luksUUID", "--batch-mode", "--uuid", &u, &node])?;
        Ok(u)
    }

    fn run_keyless(&self, args: &[&str]) -> Result<()> {
        run_keyless(&self.cryptsetup, args)
    }

    /// cryptsetup ARGS with the key (a file, or the typed passphrase on its standard input).
    fn run(&self, args: &[&str], what: &str) -> Result<()> {
        run(&self.cryptsetup, &self.key, args, what)
    }
}

fn command(cryptsetup: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(cryptsetup);
    c.args(args);
    if !dm::udev_running() {
        // libdevmapper would wait for udev to acknowledge the reload
        c.env("DM_DISABLE_UDEV", "1");
    }
    c
}

/// cryptsetup ARGS, no key given; its stderr in the error.
pub(super) fn run_keyless(cryptsetup: &Path, args: &[&str]) -> Result<()> {
    let out = command(cryptsetup, args)
        .stdin(Stdio::null())
        .output()
        .context("running cryptsetup")?;
    if !out.status.success() {
        bail!(
            "cryptsetup {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// cryptsetup ARGS with `key` (a file, or the typed passphrase on its standard input).
pub(super) fn run(cryptsetup: &Path, key: &Key, args: &[&str], what: &str) -> Result<()> {
    let mut c = command(cryptsetup, args);
    match key {
        Key::NotNeeded => return run_keyless(cryptsetup, args).context(what.to_string()),
        Key::File(f) => {
            c.arg("--key-file").arg(f).stdin(Stdio::null());
        }
        Key::Typed(_) => {
            c.arg("--key-file=-").stdin(Stdio::piped());
        }
    }
    let mut child = c
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running cryptsetup")?;
    if let (Key::Typed(k), Some(mut stdin)) = (key, child.stdin.take()) {
        stdin
            .write_all(k)
            .context("handing cryptsetup the passphrase")?;
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let st = child.wait().context("waiting for cryptsetup")?;
    if !st.success() {
        bail!(
            "{what}: cryptsetup {} failed ({st}): {}",
            args.join(" "),
            err.trim()
        );
    }
    Ok(())
}

/// A passphrase asked on the controlling terminal with `prompt`, without echo; None without a
/// terminal.
pub(super) fn ask_passphrase(prompt: &str) -> Result<Option<Vec<u8>>> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let Ok(mut tty) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
    else {
        return Ok(None);
    };
    let old = tcgetattr(&tty).context("reading the terminal's settings")?;
    let mut quiet = old.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    write!(tty, "{prompt}: ")?;
    tcsetattr(&tty, SetArg::TCSAFLUSH, &quiet).context("turning the terminal's echo off")?;
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    let r = loop {
        match tty.read(&mut b) {
            Ok(0) => break Ok(()),
            Ok(_) if b[0] == b'\n' => break Ok(()),
            Ok(_) => line.push(b[0]),
            Err(e) => break Err(e),
        }
    };
    let _ = tcsetattr(&tty, SetArg::TCSAFLUSH, &old);
    let _ = writeln!(tty);
    r.context("reading the passphrase")?;
    Ok(Some(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_span_comes_from_one_crypt_line_over_the_wrapper() {
        let w: DevNum = "254:1".parse().unwrap();
        let line = |start, len, dev| {
            TableLine::new(
                devicemapper::Sectors(start),
                devicemapper::Sectors(len),
                "crypt",
                format!("aes-xts-plain64 :64:logon:cryptsetup:x-d0 0 {dev} 32768"),
            )
        };
        assert_eq!(
            payload_span(&[line(0, 204800, "254:1")], w),
            Some(FsSpan {
                start: 16 << 20,
                len: Some(100 << 20)
            })
        );
        assert_eq!(payload_span(&[line(0, 204800, "254:2")], w), None);
        assert_eq!(
            payload_span(&[line(0, 8, "254:1"), line(8, 8, "254:1")], w),
            None
        );
        assert_eq!(payload_span(&[], w), None);
        let lin = TableLine::new(
            devicemapper::Sectors(0),
            devicemapper::Sectors(8),
            "linear",
            "254:1 32768",
        );
        assert_eq!(payload_span(&[lin], w), None);
    }

    #[test]
    fn a_keyring_key_is_told_from_a_hex_key() {
        assert!(key_in_keyring(
            "aes-xts-plain64 :64:logon:cryptsetup:6f6c1a7e-1b0e-4c4e-9d1e-0f6d2f8a8f1b-d0 0 254:1 32768"
        ));
        assert!(!key_in_keyring(
            "aes-xts-plain64 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef 0 8:2 4096"
        ));
        assert!(!key_in_keyring("cipher_null-ecb - 0 /dev/vdl 0"));
        assert!(!key_in_keyring(""));
    }
}
