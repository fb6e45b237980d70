//! Turn the copied live tree into an installed system, in a chroot of the target (never the
//! running system): the live setup stripped (live-boot/live-config packages, autologin,
//! passwordless sudo; the live user must pick a new password at the first login), a new
//! machine-id and new SSH host keys, fstab, `/etc/kernel/cmdline`, an initramfs without the live
//! hooks, GRUB for BIOS and UEFI on the target disk. Only the distribution's own tools run in the
//! chroot (dpkg, update-initramfs or dracut, grub-install, grub-mkconfig, ssh-keygen, chage).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{anyhow, bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde_json::json;

use super::chroot::{run_checked, step, Binds, Chroot};
use super::PlainFs;
use crate::error::refuse;
use crate::finish::cmdline::Cmdline;
use crate::finish::fstab::{self, Entry, Fstab};
use crate::finish::ids::{self, write_atomic};
use crate::finish::secureboot;
use crate::kernel::blockdev::BlockDev;
use crate::progress::Progress;
use crate::tools;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitramfsTool {
    UpdateInitramfs,
    Dracut,
}

/// The tools found before anything is written.
#[derive(Debug, Clone)]
pub struct Tools {
    mkfs: PathBuf,
    mkfs_vfat: Option<PathBuf>,
    chroot: PathBuf,
    initramfs: InitramfsTool,
    secure_boot: bool,
}

fn need(name: &str, package: &str) -> Result<PathBuf> {
    tools::find(name).ok_or_else(|| {
        refuse(
            format!("{name} is missing: the installed system needs it and gets it from this one"),
            Some(&format!(
                "apt-get install {package} (or the distribution's equivalent)"
            )),
        )
    })
}

/// Everything the install needs, checked before the first write. The tree is a copy of the
/// running system, so its tools are this system's tools.
pub fn preflight(fs: PlainFs, bios: bool, efi: bool) -> Result<Tools> {
    let mkfs = match fs {
        PlainFs::Ext4 => need("mkfs.ext4", "e2fsprogs")?,
        PlainFs::Xfs => need("mkfs.xfs", "xfsprogs")?,
    };
    let mkfs_vfat = efi.then(|| need("mkfs.vfat", "dosfstools")).transpose()?;
    let chroot = need("chroot", "coreutils")?;
    need("grub-install", "grub2-common")?;
    need("grub-mkconfig", "grub2-common")?;
    for (on, dir, pkg) in [
        (bios, "/usr/lib/grub/i386-pc", "grub-pc-bin"),
        (efi, "/usr/lib/grub/x86_64-efi", "grub-efi-amd64-bin"),
    ] {
        if on && !Path::new(dir).is_dir() {
            return Err(refuse(
                format!("{dir} is missing: GRUB cannot be installed for that firmware"),
                Some(&format!(
                    "apt-get install {pkg}, or choose the other with --bootloader"
                )),
            ));
        }
    }
    if !bios && !efi {
        return Err(refuse(
            "the layout has neither a BIOS boot partition nor an ESP: GRUB has nowhere to go",
            Some("leave out --no-bios-boot or --esp-size 0"),
        ));
    }
    let initramfs = if tools::find("update-initramfs").is_some() {
        InitramfsTool::UpdateInitramfs
    } else if tools::find("dracut").is_some() {
        InitramfsTool::Dracut
    } else {
        return Err(refuse(
            "neither update-initramfs nor dracut is installed: the installed system needs an initramfs without the live hooks",
            Some("apt-get install initramfs-tools"),
        ));
    };
    let secure_boot = secureboot::booted_with_secure_boot();
    if secure_boot && efi && !secureboot::chain_available() {
        return Err(refuse(
            "this PC boots with Secure Boot on, and the signed boot chain (shim, signed GRUB) is not installed",
            Some("apt-get install shim-signed grub-efi-amd64-signed, or turn Secure Boot off"),
        ));
    }
    Ok(Tools {
        mkfs,
        mkfs_vfat,
        chroot,
        initramfs,
        secure_boot,
    })
}

impl Tools {
    /// Under Secure Boot: install the signed chain (shim, signed GRUB) into the running system
    /// from the spin's .debs when it is not installed, so that the copy carries it.
    pub fn ensure_secure_boot_chain(&self, progress: &Progress) -> Result<()> {
        if !self.secure_boot {
            return Ok(());
        }
        let mut done = vec![];
        if !secureboot::ensure_chain(&mut done)? {
            bail!(
                "the signed boot chain could not be installed from {}",
                secureboot::CHAIN_DIR
            );
        }
        if !done.is_empty() {
            progress.event("secure-boot-chain", &done.join("; "), json!({"done": done}));
        }
        Ok(())
    }
}

/// Make the root filesystem and the ESP's FAT.
pub fn mkfs(tools: &Tools, fs: PlainFs, root: &BlockDev, esp: Option<&BlockDev>) -> Result<()> {
    let mut c = Command::new(&tools.mkfs);
    match fs {
        PlainFs::Ext4 => c.args(["-q", "-F"]),
        PlainFs::Xfs => c.args(["-q", "-f"]),
    };
    c.arg(&root.path);
    run_checked(c, &format!("mkfs.{} {}", fs.name(), root.display()))?;
    if let (Some(e), Some(vfat)) = (esp, &tools.mkfs_vfat) {
        let mut c = Command::new(vfat);
        c.args(["-F", "32", "-n", "ESP"]).arg(&e.path);
        run_checked(c, &format!("mkfs.vfat {}", e.display()))?;
    }
    Ok(())
}

/// The installed tree and where it goes.
pub struct Target<'a> {
    pub root: &'a Path,
    pub disk: &'a BlockDev,
    pub root_part: &'a BlockDev,
    pub esp: Option<&'a BlockDev>,
    /// The ESP's fallback path is another system's (checked before anything was written).
    pub esp_foreign: bool,
    pub fs: PlainFs,
    pub bios: bool,
    pub efi: bool,
    pub tools: &'a Tools,
    /// A separate /boot (its device and filesystem type), mounted at `root/boot` by the caller:
    /// `flatten` makes the image partition the installed system's /boot.
    pub boot: Option<(&'a BlockDev, &'a str)>,
    /// Run once the tree is complete, just before the boot loader is written (which makes the
    /// disk boot the tree): `flatten` marks its staged tree ready there.
    pub before_boot_loader: Option<&'a dyn Fn() -> Result<()>>,
}

impl Target<'_> {
    fn chroot(&self) -> Chroot<'_> {
        Chroot {
            bin: &self.tools.chroot,
            root: self.root,
        }
    }
}

/// What finalisation did.
pub struct Done {
    pub root_uuid: String,
    pub machine_id: String,
    pub steps: Vec<String>,
}

/// Carry out the finalisation on the tree mounted at `t.root`.
pub fn run(t: &Target<'_>, progress: &Progress) -> Result<Done> {
    let mut steps = vec![];
    let root_uuid = ids::uuid_on(t.root_part)?
        .ok_or_else(|| anyhow!("{} shows no filesystem UUID", t.root_part.display()))?;
    let esp_dir = t.root.join("boot/efi");
    if let Some(e) = t.esp {
        fs::create_dir_all(&esp_dir)?;
        mount(
            Some(e.path.as_path()),
            &esp_dir,
            Some("vfat"),
            MsFlags::empty(),
            None::<&str>,
        )
        .with_context(|| format!("mounting the ESP {} at {}", e.display(), esp_dir.display()))?;
    }
    let r = finalize_in(t, &root_uuid, progress, &mut steps);
    if t.esp.is_some() {
        let _ = umount2(&esp_dir, MntFlags::empty());
    }
    let machine_id = r?;
    let f = fs::File::open(t.root)?;
    nix::unistd::syncfs(&f).context("flushing the installed system")?;
    Ok(Done {
        root_uuid,
        machine_id,
        steps,
    })
}

fn finalize_in(
    t: &Target<'_>,
    root_uuid: &str,
    progress: &Progress,
    steps: &mut Vec<String>,
) -> Result<String> {
    let root = t.root;
    let _binds = Binds::new(root)?;

    let id = ids::new_machine_id();
    ids::write_machine_id(root, &id)?;
    step(steps, progress, "machine-id", id.clone());

    let t_purge = SystemTime::now();
    super::livesetup::strip(t.chroot(), progress, steps)?;

    // SSH host keys: never the live medium's, which every copy of it shares
    let ssh = root.join("etc/ssh");
    let old_keys: Vec<PathBuf> = fs::read_dir(&ssh)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("ssh_host_"))
                })
                .collect()
        })
        .unwrap_or_default();
    if !old_keys.is_empty() || ssh.join("sshd_config").exists() {
        for k in &old_keys {
            fs::remove_file(k)?;
        }
        let mut c = t.chroot().command("ssh-keygen");
        c.arg("-A");
        run_checked(c, "ssh-keygen -A")?;
        step(
            steps,
            progress,
            "ssh-host-keys",
            format!("{} old files removed, new keys made", old_keys.len()),
        );
    }

    // fstab and the kernel command line
    let fst = root.join("etc/fstab");
    let mut tab: Fstab = fs::read_to_string(&fst)
        .unwrap_or_default()
        .parse()
        .map_err(|e: String| anyhow!("{}: {e}", fst.display()))?;
    tab.remove_where(|e| {
        fstab::is_live_only(e)
            || e.file == "/"
            || e.file == "/boot/efi"
            || (t.boot.is_some() && e.file == "/boot")
    });
    tab.set(
        Entry::new(
            &format!("UUID={root_uuid}"),
            "/",
            t.fs.name(),
            root_opts(t.fs),
            1,
        ),
        false,
    );
    if let Some((b, fstype)) = t.boot {
        let uuid = ids::uuid_on(b)?.ok_or_else(|| {
            anyhow!(
                "the /boot partition {} shows no filesystem UUID",
                b.display()
            )
        })?;
        tab.set(
            Entry::new(&format!("UUID={uuid}"), "/boot", fstype, "defaults", 2),
            false,
        );
    }
    if let Some(e) = t.esp {
        let esp_uuid = ids::uuid_on(e)?
            .ok_or_else(|| anyhow!("the ESP {} shows no volume id", e.display()))?;
        tab.set(
            Entry::new(
                &format!("UUID={esp_uuid}"),
                "/boot/efi",
                "vfat",
                "umask=0077",
                1,
            ),
            false,
        );
    }
    write_atomic(&fst, tab.to_string().as_bytes(), 0o644)?;
    step(steps, progress, "fstab", format!("/ is UUID={root_uuid}"));
    let rest = Cmdline::read()?.for_installed();
    let kcmd = format!("root=UUID={root_uuid} ro {rest}")
        .trim()
        .to_string();
    write_atomic(
        &root.join("etc/kernel/cmdline"),
        format!("{kcmd}\n").as_bytes(),
        0o644,
    )?;
    write_atomic(
        &root.join("etc/default/grub.d/rootshift.cfg"),
        grub_defaults(&rest).as_bytes(),
        0o644,
    )?;
    step(steps, progress, "cmdline", kcmd);

    // an initramfs per kernel, unless the purge's trigger already made it anew
    let mut made = vec![];
    for k in kernels(root) {
        let initrd = root.join(format!("boot/initrd.img-{k}"));
        let fresh = fs::metadata(&initrd)
            .and_then(|m| m.modified())
            .is_ok_and(|m| m > t_purge);
        if fresh {
            made.push(format!("{k} (by the purge)"));
            continue;
        }
        let c = match t.tools.initramfs {
            InitramfsTool::UpdateInitramfs => {
                let mut c = t.chroot().command("update-initramfs");
                c.args([if initrd.exists() { "-u" } else { "-c" }, "-k", &k]);
                c
            }
            InitramfsTool::Dracut => {
                let mut c = t.chroot().command("dracut");
                c.args(["-f", "--kver", &k]);
                c
            }
        };
        run_checked(c, &format!("making the initramfs of {k}"))?;
        made.push(k);
    }
    if made.is_empty() {
        bail!("the installed tree has no kernel in /boot with modules in /lib/modules");
    }
    step(steps, progress, "initramfs", made.join(", "));

    if let Some(f) = t.before_boot_loader {
        f()?;
    }
    // GRUB
    let d = t.disk.path.display().to_string();
    if t.bios {
        let mut c = t.chroot().command("grub-install");
        c.args(["--target=i386-pc", &d]);
        run_checked(c, &format!("grub-install --target=i386-pc {d}"))?;
        step(steps, progress, "grub-bios", d.clone());
    }
    if t.efi {
        // The removable path (\EFI\BOOT\BOOTX64.EFI) boots with an empty NVRAM; but an ESP kept as it
        // was may hold another system's there: then GRUB goes to \EFI\<os id>\ with an NVRAM entry
        // (only possible when this session runs under UEFI).
        let foreign = t.esp_foreign;
        let os = crate::finish::os_id(root);
        let mut c = t.chroot().command("grub-install");
        c.args(["--target=x86_64-efi", "--efi-directory=/boot/efi"]);
        if foreign {
            c.arg(format!("--bootloader-id={os}"));
        } else {
            c.args(["--removable", "--no-nvram"]);
        }
        c.arg(if t.tools.secure_boot {
            "--uefi-secure-boot"
        } else {
            "--no-uefi-secure-boot"
        });
        run_checked(c, "grub-install --target=x86_64-efi")?;
        step(
            steps,
            progress,
            "grub-efi",
            format!(
                "{}{}",
                if foreign {
                    format!("\\EFI\\{os}\\ with an NVRAM entry (the fallback path is another system's: kept)")
                } else {
                    "\\EFI\\BOOT\\BOOTX64.EFI".to_string()
                },
                if t.tools.secure_boot {
                    " (shim, signed GRUB)"
                } else {
                    ""
                }
            ),
        );
    }
    let mut c = t.chroot().command("grub-mkconfig");
    c.args(["-o", "/boot/grub/grub.cfg"]);
    run_checked(c, "grub-mkconfig -o /boot/grub/grub.cfg")?;
    let cfg = fs::read_to_string(root.join("boot/grub/grub.cfg"))?;
    if !cfg.contains(&format!("root=UUID={root_uuid}")) {
        bail!("grub-mkconfig wrote a grub.cfg that does not boot root=UUID={root_uuid}");
    }
    step(
        steps,
        progress,
        "grub-cfg",
        format!("/boot/grub/grub.cfg boots root=UUID={root_uuid}"),
    );
    Ok(id)
}

fn root_opts(fs: PlainFs) -> &'static str {
    match fs {
        PlainFs::Ext4 => "errors=remount-ro",
        PlainFs::Xfs => "defaults",
    }
}

/// Kernel versions with both modules and a kernel image in the tree.
fn kernels(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = ["lib/modules", "usr/lib/modules"]
        .iter()
        .filter_map(|d| fs::read_dir(root.join(d)).ok())
        .flat_map(|rd| rd.flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|k| root.join(format!("boot/vmlinuz-{k}")).exists())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The grub-mkconfig drop-in: the running command line's lasting options (Debian's split:
/// quiet/splash in the _DEFAULT line), and the serial console when the system has one.
fn grub_defaults(c: &Cmdline) -> String {
    let (default, rest): (Vec<String>, Vec<String>) =
        c.0.iter()
            .cloned()
            .partition(|w| w == "quiet" || w == "splash");
    let q = |v: &[String]| v.join(" ").replace('"', "\\\"");
    let mut s = format!(
        "# Written by `rootshift install --layout plain`: the live session's lasting kernel options.\n\
         GRUB_CMDLINE_LINUX=\"{}\"\nGRUB_CMDLINE_LINUX_DEFAULT=\"{}\"\nGRUB_TIMEOUT=1\n",
        q(&rest),
        q(&default)
    );
    if let Some((unit, speed)) = c.serial_console() {
        s.push_str(&format!(
            "GRUB_TERMINAL=\"console serial\"\nGRUB_SERIAL_COMMAND=\"serial --unit={unit} --speed={speed}\"\n"
        ));
    }
    s
}

/// `--no-soft-reboot`: unmount the installed system.
pub fn unmount_target(root: &Path) -> Result<()> {
    umount2(root, MntFlags::empty()).with_context(|| format!("unmounting {}", root.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_defaults_keep_the_console_and_split_quiet() {
        let c: Cmdline = "console=ttyS0,115200 quiet rootshift.vmtest=x"
            .parse()
            .unwrap();
        let s = grub_defaults(&c);
        assert!(
            s.contains("GRUB_CMDLINE_LINUX=\"console=ttyS0,115200 rootshift.vmtest=x\""),
            "{s}"
        );
        assert!(s.contains("GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\""), "{s}");
        assert!(s.contains("serial --unit=0 --speed=115200"), "{s}");
    }
}
