//! Fresh identities: a new filesystem UUID for the migrated root (so no two block devices carry
//! the same one — boot code would pick either), a new machine-id for a system that was a live
//! medium, and the care needed so that the new UUID is what every reader sees.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use nix::mount::{umount2, MntFlags};

use crate::kernel::blockdev::BlockDev;
use crate::kernel::fs::{fs_uuid, Frozen, PROBE_BYTES};
use crate::kernel::{ioctl, mounts};
use crate::tools;

/// The filesystem UUID as the device's own superblock says it.
pub fn uuid_on(dev: &BlockDev) -> Result<Option<String>> {
    Ok(fs_uuid(&head_on_disk(dev)?))
}

/// The UUID the boot finds `dev` by: its filesystem's, or its LUKS container's (an encrypted
/// root's legs show only the header).
pub fn boot_uuid_on(dev: &BlockDev) -> Result<Option<String>> {
    Ok(crate::kernel::fs::boot_uuid(&head_on_disk(dev)?))
}

fn head_on_disk(dev: &BlockDev) -> Result<Vec<u8>> {
    // What the disk holds, not the page cache: a mirror leg's cache keeps whatever was read before
    // the copy wrote beneath it (dm-io bypasses it) for as long as dm holds the device open — seen:
    // udev's probe after the target was blanked cached zeros, and "the target shows no UUID" after a
    // complete copy. BLKFLSBUF drops the clean cache first.
    if let Ok(f) = File::open(&dev.path) {
        let _ = ioctl::blk_flush_buffers(f.as_fd());
    }
    dev.read_head(PROBE_BYTES)
        .with_context(|| format!("reading the superblock of {}", dev.display()))
}

/// Give the ext4 filesystem mounted at `mount` a new random UUID, online. Returns it, or None
/// when the kernel refuses because the filesystem lacks `metadata_csum_seed`.
pub fn set_ext4_uuid_online(mount: &Path) -> Result<Option<String>> {
    let new = uuid::Uuid::new_v4();
    let f = File::open(mount).with_context(|| format!("opening {}", mount.display()))?;
    match ioctl::ext4_set_uuid(f.as_fd(), *new.as_bytes()) {
        Ok(()) => Ok(Some(new.hyphenated().to_string())),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(None),
        Err(e) => Err(anyhow!(
            "EXT4_IOC_SETFSUUID on {} failed: {e} (needs Linux ≥ 6.0)",
            mount.display()
        )),
    }
}

/// Make a UUID written through the wrapper visible on the raw target partition, where GRUB,
/// blkid and udev read it: syncfs, a freeze/thaw (writes the superblock out), drop the
/// partition's stale buffer cache, tell udev, and check by reading the partition itself.
pub fn make_visible(mount: &Path, part: &BlockDev, wrapper: &BlockDev, uuid: &str) -> Result<()> {
    let f = File::open(mount).with_context(|| format!("opening {}", mount.display()))?;
    nix::unistd::syncfs(f.as_fd()).context("syncfs")?;
    drop(f);
    Frozen::freeze(mount)
        .and_then(|fr| fr.thaw())
        .with_context(|| format!("freezing and thawing {}", mount.display()))?;
    for d in [part, wrapper] {
        let f = File::open(&d.path).with_context(|| format!("opening {}", d.display()))?;
        ioctl::blk_flush_buffers(f.as_fd())
            .with_context(|| format!("flushing the buffers of {}", d.display()))?;
    }
    udev_change(&[part, wrapper]);
    let seen = uuid_on(part)?;
    if seen.as_deref() != Some(uuid) {
        bail!(
            "the new filesystem UUID {uuid} is not visible on {} (its superblock reads {:?})",
            part.display(),
            seen
        );
    }
    if tools::find("blkid").is_some() {
        let out = tools::run(
            "blkid",
            &["-p", "-s", "UUID", "-o", "value", &part.display()],
        )?;
        if out.trim() != uuid {
            bail!(
                "blkid -p {} reports UUID {:?}, not the new {uuid}",
                part.display(),
                out.trim()
            );
        }
    }
    Ok(())
}

/// `udevadm trigger --action=change` for these devices and wait for udev, when udev runs.
pub fn udev_change(devs: &[&BlockDev]) {
    if !Path::new("/run/udev/control").exists() || tools::find("udevadm").is_none() {
        return;
    }
    let mut args = vec!["trigger".to_string(), "--action=change".to_string()];
    args.extend(devs.iter().map(|d| d.sysfs.display().to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let _ = tools::run("udevadm", &refs);
    let _ = tools::run("udevadm", &["settle", "--timeout=30"]);
}

/// Give a detached, unmounted source a new UUID offline (xfs_admin / tune2fs): the target keeps
/// the one fstab and the boot loader know. Returns the new UUID.
pub fn set_uuid_offline(dev: &BlockDev, fstype: &str) -> Result<String> {
    if !dev.holders().is_empty() || !mounts::mounts_of(dev.devnum)?.is_empty() {
        bail!(
            "{} is still in use; its UUID can only be changed while nothing uses it",
            dev.display()
        );
    }
    let path = dev.display();
    match fstype {
        "xfs" => {
            // A copy detached from a mounted filesystem has a dirty log, which xfs_admin refuses:
            // replay it by mounting the device once (nouuid: the root with its UUID is mounted).
            let mp = Path::new("/run/rootshift/replay");
            fs::create_dir_all(mp)?;
            nix::mount::mount(
                Some(dev.path.as_path()),
                mp,
                Some("xfs"),
                nix::mount::MsFlags::empty(),
                Some("nouuid"),
            )
            .with_context(|| format!("mounting {path} once to replay its log"))?;
            umount2(mp, MntFlags::empty()).with_context(|| format!("unmounting {path}"))?;
            tools::run("xfs_admin", &["-U", "generate", &path])?;
        }
        "ext2" | "ext3" | "ext4" => {
            // tune2fs wants a freshly checked filesystem before it rewrites every checksum; a copy
            // detached from a mounted filesystem needs its journal replayed (exit 1: fixed, fine)
            let out =
                std::process::Command::new(tools::find("e2fsck").context("e2fsck not found")?)
                    .args(["-f", "-p", &path])
                    .output()
                    .context("running e2fsck")?;
            if !matches!(out.status.code(), Some(0 | 1)) {
                bail!(
                    "e2fsck -f -p {path} failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            tools::run("tune2fs", &["-U", "random", &path])?;
        }
        other => bail!("rootshift cannot change the UUID of a {other} filesystem"),
    }
    // A root named LABEL= (fstab, root=) must not find the stale copy either: the detached source
    // gets a label of its own too (the target keeps the one the boot entries know).
    let label = tools::run("blkid", &["-p", "-s", "LABEL", "-o", "value", &path])
        .map(|l| l.trim().to_string())
        .unwrap_or_default();
    if !label.is_empty() {
        let new = old_label(&label, if fstype == "xfs" { 12 } else { 16 });
        match fstype {
            "xfs" => tools::run("xfs_admin", &["-L", &new, &path])?,
            _ => tools::run("tune2fs", &["-L", &new, &path])?,
        };
    }
    uuid_on(dev)?.ok_or_else(|| anyhow!("{path} shows no UUID after the change"))
}

/// The detached copy's label: `LABEL.old`, cut to the filesystem's limit (ext4 16, xfs 12 bytes)
/// on a character boundary, never equal to `label`.
pub fn old_label(label: &str, max: usize) -> String {
    let suffix = ".old";
    let mut keep = label.len().min(max.saturating_sub(suffix.len()));
    while !label.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{suffix}", &label[..keep])
}

/// A new random machine-id (32 lowercase hex digits).
pub fn new_machine_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Write `/etc/machine-id` (under `root`). When something is mounted over it (systemd's
/// transient id on a read-only or first-boot root), that mount is dropped first so the file
/// itself is written, as systemd-machine-id-commit does.
pub fn write_machine_id(root: &Path, id: &str) -> Result<()> {
    let p = root.join("etc/machine-id");
    if mounts::mounts()?.iter().any(|m| m.mount_point == p) {
        umount2(&p, MntFlags::MNT_DETACH)
            .with_context(|| format!("unmounting the transient {}", p.display()))?;
    }
    write_atomic(&p, format!("{id}\n").as_bytes(), 0o444)?;
    let dbus = root.join("var/lib/dbus/machine-id");
    if dbus.is_file() && !dbus.is_symlink() {
        write_atomic(&dbus, format!("{id}\n").as_bytes(), 0o444)?;
    }
    Ok(())
}

/// Write a file atomically: a temp file in the same directory, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().context("a file path has a parent")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.rootshift-tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn old_labels_fit_and_differ() {
        assert_eq!(old_label("rootfs", 16), "rootfs.old");
        assert_eq!(old_label("installed-root", 16), "installed-ro.old");
        assert_eq!(old_label("installed-root", 12), "installe.old");
        assert!(old_label("root-ä-äää", 12).len() <= 12);
    }

    use super::*;

    #[test]
    fn machine_ids_are_32_hex_digits_and_differ() {
        let a = new_machine_id();
        assert_eq!(a.len(), 32);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, new_machine_id());
    }

    #[test]
    fn atomic_write_replaces_the_file() {
        let dir = std::env::temp_dir().join(format!("rootshift-test-{}", std::process::id()));
        let p = dir.join("etc/machine-id");
        write_atomic(&p, b"old\n", 0o444).unwrap();
        write_atomic(&p, b"new\n", 0o444).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "new\n");
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
        fs::remove_dir_all(dir).unwrap();
    }
}
