//! The kernel and initrd that booted a live session, found on its medium.
//!
//! live-boot keeps them next to the image (`live/vmlinuz`, `live/initrd.img`), and `--image-to`
//! copies those along. Other media keep them elsewhere: dracut media in `images/pxeboot/` (Fedora),
//! `isolinux/`, `boot/` (the project's overlayfs ISO), KIWI in `boot/x86_64/loader/` (`linux`,
//! `initrd`), archiso in `arch/boot/x86_64/`. Rather than a list of names, the medium is searched
//! (a few levels deep) for an x86 boot image whose embedded release is the running kernel's
//! (`uname -r`): the bzImage header (Documentation/arch/x86/boot.rst) has the magic `HdrS` at 0x202
//! and, at 0x20E, the offset (from 0x200) of a NUL-terminated string starting with the release. Its
//! initrd is the `initr*` file in the same directory that goes with its name.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A kernel found on a medium, with its initrd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPair {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The kernel's release (`6.12.117+deb13-amd64`).
    pub release: String,
}

impl KernelPair {
    /// The names the pair gets on the image partition, as Debian names them in /boot.
    pub fn installed_names(&self) -> (String, String) {
        (
            format!("vmlinuz-{}", self.release),
            format!("initrd.img-{}", self.release),
        )
    }

    pub fn bytes(&self) -> u64 {
        [&self.kernel, &self.initrd]
            .iter()
            .filter_map(|p| fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}

/// The release an x86 bzImage header names, from the file's first bytes (at least 0x210 and up
/// to the string; 64 KiB is plenty). None when the bytes are not a bzImage.
pub fn kernel_release(head: &[u8]) -> Option<String> {
    if head.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let off = u16::from_le_bytes([*head.get(0x20e)?, *head.get(0x20f)?]) as usize;
    if off == 0 {
        return None;
    }
    let s = head.get(0x200 + off..)?;
    let end = s.iter().position(|&b| b == 0)?;
    let text = std::str::from_utf8(&s[..end]).ok()?;
    text.split_whitespace().next().map(str::to_string)
}

fn release_of_file(p: &Path) -> Option<String> {
    let mut buf = Vec::with_capacity(64 << 10);
    File::open(p)
        .ok()?
        .take(64 << 10)
        .read_to_end(&mut buf)
        .ok()?;
    kernel_release(&buf)
}

/// The running kernel's release.
pub fn running_release() -> Option<String> {
    nix::sys::utsname::uname()
        .ok()
        .map(|u| u.release().to_string_lossy().into_owned())
}

/// The initrd that goes with kernel file `kernel` among the names of its directory: the name with
/// the kernel's prefix swapped (`vmlinuz-X` → `initrd.img-X`, `initrd-X`, `initramfs-X.img`;
/// `vmlinuz` → `initrd.img`, `initrd`, `initrd.lz`, …; `linux` → `initrd`), else the only `initr*`
/// file there.
pub fn initrd_for(kernel: &str, names: &[String]) -> Option<String> {
    let suffix = kernel
        .strip_prefix("vmlinuz")
        .or_else(|| kernel.strip_prefix("vmlinux"))
        .or_else(|| kernel.strip_prefix("linux"))
        .or_else(|| kernel.strip_prefix("bzImage"))
        .unwrap_or("");
    let mut want: Vec<String> = ["initrd.img", "initrd", "initramfs"]
        .iter()
        .flat_map(|p| {
            [
                format!("{p}{suffix}"),
                format!("{p}{suffix}.img"),
                format!("{p}{suffix}.lz"),
                format!("{p}{suffix}.gz"),
                format!("{p}{suffix}.xz"),
                format!("{p}{suffix}.zst"),
            ]
        })
        .collect();
    want.dedup();
    if let Some(n) = want.iter().find(|w| names.contains(w)) {
        return Some(n.clone());
    }
    let any: Vec<&String> = names.iter().filter(|n| n.starts_with("initr")).collect();
    (any.len() == 1).then(|| any[0].clone())
}

/// Directories not searched: package pools and the like hold no boot kernel, only many files.
const SKIP_DIRS: &[&str] = &[
    "pool",
    "dists",
    "Packages",
    "repodata",
    "firmware",
    "lost+found",
];

/// The kernel for `release` on the medium mounted at `root` (searched `depth` levels deep), with
/// its initrd. Files larger than 256 MiB (images) are not opened.
pub fn find_kernel(root: &Path, release: &str, depth: usize) -> Option<KernelPair> {
    let rd = fs::read_dir(root).ok()?;
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    let names: Vec<String> = entries
        .iter()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut dirs = vec![];
    for (e, name) in entries.iter().zip(&names) {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if depth > 0 && !name.starts_with('.') && !SKIP_DIRS.contains(&name.as_str()) {
                dirs.push(e.path());
            }
            continue;
        }
        if !ft.is_file() || name.starts_with("initr") {
            continue;
        }
        if e.metadata().map(|m| m.len() > 256 << 20).unwrap_or(true) {
            continue;
        }
        if release_of_file(&e.path()).as_deref() != Some(release) {
            continue;
        }
        if let Some(i) = initrd_for(name, &names) {
            return Some(KernelPair {
                kernel: e.path(),
                initrd: root.join(i),
                release: release.to_string(),
            });
        }
    }
    dirs.iter().find_map(|d| find_kernel(d, release, depth - 1))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn bzimage(version: &str) -> Vec<u8> {
        let mut b = vec![0u8; 0x1000];
        b[0x202..0x206].copy_from_slice(b"HdrS");
        let off: u16 = 0x300;
        b[0x20e..0x210].copy_from_slice(&off.to_le_bytes());
        let s = 0x200 + off as usize;
        b[s..s + version.len()].copy_from_slice(version.as_bytes());
        b
    }

    #[test]
    fn the_release_comes_from_the_bzimage_header() {
        let b =
            bzimage("6.12.117+deb13-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC");
        assert_eq!(kernel_release(&b).as_deref(), Some("6.12.117+deb13-amd64"));
        let mut not = b.clone();
        not[0x202] = b'X';
        assert_eq!(kernel_release(&not), None);
        assert_eq!(kernel_release(&b[..0x100]), None);
        assert_eq!(kernel_release(b"hsqs......"), None);
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_initrd_goes_with_the_kernel_name() {
        let n = names(&[
            "vmlinuz",
            "initrd.img",
            "vmlinuz-6.1",
            "initrd.img-6.1",
            "squashfs.img",
        ]);
        assert_eq!(initrd_for("vmlinuz", &n).as_deref(), Some("initrd.img"));
        assert_eq!(
            initrd_for("vmlinuz-6.1", &n).as_deref(),
            Some("initrd.img-6.1")
        );
        // KIWI: boot/x86_64/loader/{linux,initrd}; archiso: vmlinuz-linux, initramfs-linux.img
        assert_eq!(
            initrd_for("linux", &names(&["linux", "initrd"])).as_deref(),
            Some("initrd")
        );
        let a = names(&[
            "vmlinuz-linux",
            "initramfs-linux.img",
            "initramfs-linux-fallback.img",
        ]);
        assert_eq!(
            initrd_for("vmlinuz-linux", &a).as_deref(),
            Some("initramfs-linux.img")
        );
        assert_eq!(
            initrd_for("vmlinuz", &names(&["vmlinuz", "initrd.lz"])).as_deref(),
            Some("initrd.lz")
        );
        // two candidates and no name that goes with the kernel: none rather than a guess
        assert_eq!(
            initrd_for("vmlinuz", &names(&["initrd-a", "initrd-b"])),
            None
        );
    }

    #[test]
    fn the_running_kernel_is_found_on_a_medium() {
        let d = std::env::temp_dir().join(format!("rootshift-bootfiles-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("images/pxeboot")).unwrap();
        fs::create_dir_all(d.join("boot/old")).unwrap();
        fs::create_dir_all(d.join("LiveOS")).unwrap();
        fs::write(d.join("LiveOS/squashfs.img"), b"hsqs").unwrap();
        fs::write(d.join("boot/old/vmlinuz"), bzimage("6.1.0-9-amd64 #1")).unwrap();
        fs::write(d.join("boot/old/initrd.img"), b"old").unwrap();
        fs::write(
            d.join("images/pxeboot/vmlinuz"),
            bzimage("6.12.117+deb13-amd64 #1"),
        )
        .unwrap();
        fs::write(d.join("images/pxeboot/initrd.img"), b"new").unwrap();
        let p = find_kernel(&d, "6.12.117+deb13-amd64", 3).expect("found");
        assert_eq!(p.kernel, d.join("images/pxeboot/vmlinuz"));
        assert_eq!(p.initrd, d.join("images/pxeboot/initrd.img"));
        assert_eq!(
            p.installed_names(),
            (
                "vmlinuz-6.12.117+deb13-amd64".into(),
                "initrd.img-6.12.117+deb13-amd64".into()
            )
        );
        assert_eq!(
            find_kernel(&d, "6.12.117+deb13-amd64", 1),
            None,
            "too deep for depth 1"
        );
        assert_eq!(find_kernel(&d, "6.13.0", 3), None);
        fs::remove_dir_all(&d).unwrap();
    }
}
