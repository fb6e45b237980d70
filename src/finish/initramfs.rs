//! The installed system's initramfs: regenerated with the distribution's own tool
//! (update-initramfs or dracut), keeping the rootshift hook so the system stays migratable.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::error::refuse;
use crate::tools;

/// What to do with the initramfs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Rebuild it for every installed kernel with the distribution's tool.
    Regenerate,
    /// Keep the image's prebuilt initramfs (it must be generic and carry the rootshift hook).
    Keep,
}

/// Kernels installed in /boot with their modules.
pub fn kernels() -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir("/lib/modules")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|k| Path::new(&format!("/boot/vmlinuz-{k}")).exists())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The initramfs path of a kernel, in the naming this distribution uses.
pub fn initrd_path(k: &str) -> PathBuf {
    let debian = PathBuf::from(format!("/boot/initrd.img-{k}"));
    let fedora = PathBuf::from(format!("/boot/initramfs-{k}.img"));
    if debian.exists() || (!fedora.exists() && Path::new("/etc/debian_version").exists()) {
        debian
    } else {
        fedora
    }
}

/// Which tool builds initramfs images here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    UpdateInitramfs,
    Dracut,
}

/// Whether the rootshift hook for that tool is installed (so the new initramfs wraps the root).
fn hook_present(t: Tool) -> bool {
    match t {
        Tool::UpdateInitramfs => Path::new("/usr/share/initramfs-tools/hooks/rootshift").exists(),
        Tool::Dracut => Path::new("/usr/lib/dracut/modules.d/90rootshift").is_dir(),
    }
}

/// Check before the copy that the chosen mode can be carried out.
pub fn check(mode: Mode) -> Result<(Option<Tool>, Vec<String>)> {
    let ks = kernels();
    if ks.is_empty() {
        return Err(refuse(
            "no kernel in /boot (no /boot/vmlinuz-VERSION with /lib/modules/VERSION): the installed system \
             would have nothing to boot",
            Some("install a kernel package first"),
        ));
    }
    match mode {
        Mode::Keep => {
            let missing: Vec<String> = ks
                .iter()
                .filter(|k| !initrd_path(k).exists())
                .map(|k| initrd_path(k).display().to_string())
                .collect();
            if !missing.is_empty() {
                return Err(refuse(
                    format!(
                        "--initramfs keep, but {} does not exist",
                        missing.join(", ")
                    ),
                    Some("use --initramfs regenerate"),
                ));
            }
            Ok((None, ks))
        }
        Mode::Regenerate => {
            // update-initramfs is Debian's entry point (dracut hooks into it where it replaces
            // initramfs-tools); plain dracut elsewhere.
            let t = if tools::find("update-initramfs").is_some() {
                Tool::UpdateInitramfs
            } else if tools::find("dracut").is_some() {
                Tool::Dracut
            } else {
                return Err(refuse(
                    "neither update-initramfs nor dracut is installed: the initramfs cannot be regenerated",
                    Some("install one, or pass --initramfs keep to use the image's prebuilt one"),
                ));
            };
            if !hook_present(t) {
                return Err(refuse(
                    format!(
                        "the rootshift boot hook for {} is not installed: the new initramfs would not wrap the \
                         root, and the installed system could not be migrated again",
                        if t == Tool::Dracut { "dracut" } else { "initramfs-tools" }
                    ),
                    Some("run initrd-hook/install (see initrd-hook/README.md)"),
                ));
            }
            Ok((Some(t), ks))
        }
    }
}

/// Regenerate the initramfs of every kernel. Returns one line per image.
pub fn regenerate(t: Tool, kernels: &[String]) -> Result<Vec<String>> {
    let mut done = vec![];
    for k in kernels {
        let out = initrd_path(k);
        let mut c = match t {
            Tool::UpdateInitramfs => {
                let mut c = Command::new(
                    tools::find("update-initramfs").context("update-initramfs vanished")?,
                );
                c.arg(if out.exists() { "-u" } else { "-c" })
                    .args(["-k", k]);
                c
            }
            Tool::Dracut => {
                let mut c = Command::new(tools::find("dracut").context("dracut vanished")?);
                c.args(["--force", "--kver", k]).arg(&out);
                c
            }
        };
        let o = c.output().context("running the initramfs tool")?;
        if !o.status.success() {
            bail!(
                "regenerating {} failed ({}): {}",
                out.display(),
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        if !out.exists() {
            bail!(
                "the initramfs tool succeeded but {} does not exist",
                out.display()
            );
        }
        done.push(format!("regenerated {}", out.display()));
    }
    Ok(done)
}
