//! Overlayfs live roots, as today's live media build them (Debian live-boot, dracut's overlayfs
//! mode, KIWI, archiso): `/` is an overlay of read-only images on loop devices under a writable
//! upper directory.
//!
//! ```text
//! /  overlay ── lowerdir /run/live/rootfs/filesystem.squashfs  squashfs on loop0 (read-only)
//!            │                                                  = /run/live/medium/live/filesystem.squashfs
//!            │                                                    on the medium (sr0, a USB stick)
//!            └─ upperdir /run/live/overlay/rw  ext4 on rootshift-upper (dm linear) on zram0
//! ```
//!
//! dracut's dmsquash-live with the root tree directly in `LiveOS/squashfs.img` (Fedora >= 41, KIWI)
//! is the same shape under other names: lowerdir `/run/rootfsbase` (squashfs on a read-only loop
//! over `/run/initramfs/live/LiveOS/squashfs.img`), upperdir `/run/overlayfs`, a symlink into the
//! persistent overlay's mount `/run/initramfs/overlayfs` (`LiveOS/overlay-rootshift` on
//! rootshift-upper when rootshift's dracut hook made it). Layers are found through the paths (links
//! followed), so nothing here depends on the names.
//!
//! rootshift moves such a root when the boot put the upper on a wrapper: the wrapper migrates like
//! any other (the grow then grows the upper's filesystem), and the image files move to a partition
//! of their own with LOOP_CHANGE_FD, which swaps the file under a read-only loop device without the
//! overlay, the squashfs or any open file noticing (the kernel insists on the same size). Then the
//! medium is unmounted and ejected and the zram device freed (`media.rs`).

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};

use crate::error::refuse;
use crate::kernel::blockdev::BlockDev;
use crate::kernel::devnum::DevNum;
use crate::kernel::loopdev::LoopBinding;
use crate::kernel::mounts;
use crate::kernel::overlay::OverlayOptions;
use crate::live::bootfiles::{self, KernelPair};
use crate::live::verified::copy_verified;

/// Where `migrate --image-to` mounts the partition that takes over the image files.
pub const IMAGE_DIR: &str = "/run/rootshift/image";
/// The label of that partition's filesystem.
pub const IMAGE_LABEL: &str = "rootshift-live";

/// A layer directory and the filesystem it is on.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The directory as the overlay's options name it.
    pub dir: PathBuf,
    /// The device of the filesystem holding it (`st_dev`).
    pub devnum: DevNum,
    /// That filesystem's type and source, from the mount table (empty when not found).
    pub fs_type: String,
    pub source: String,
    pub mount_point: Option<PathBuf>,
}

/// `/` when it is an overlay mount.
#[derive(Debug, Clone)]
pub struct OverlayRoot {
    pub options: OverlayOptions,
    pub upper: Option<Layer>,
    pub lowers: Vec<Layer>,
}

fn layer(dir: &Path, all: &[mounts::Mount]) -> Result<Layer> {
    let md = fs::metadata(dir).with_context(|| {
        format!(
            "the overlay layer {} is not reachable from this mount namespace",
            dir.display()
        )
    })?;
    let devnum = DevNum::from_dev_t(md.dev());
    let canon = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    // the mount of that device whose mount point is the longest prefix of the directory
    let m = all
        .iter()
        .filter(|m| m.devnum == devnum && canon.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.as_os_str().len());
    Ok(Layer {
        dir: dir.to_path_buf(),
        devnum,
        fs_type: m.map(|m| m.fs_type.clone()).unwrap_or_default(),
        source: m.map(|m| m.source.clone()).unwrap_or_default(),
        mount_point: m.map(|m| m.mount_point.clone()),
    })
}

impl OverlayRoot {
    /// The overlay `/` is, or None when `/` is not an overlay.
    pub fn of_root() -> Result<Option<OverlayRoot>> {
        let (fs_type, opts) = mounts::root_fs_options().context("reading the root mount")?;
        if fs_type != "overlay" {
            return Ok(None);
        }
        let options: OverlayOptions = opts.parse()?;
        let all = mounts::mounts()?;
        let upper = options
            .upperdir
            .as_deref()
            .map(|d| layer(d, &all))
            .transpose()?;
        let lowers = options
            .lowerdirs
            .iter()
            .map(|d| layer(d, &all))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(OverlayRoot {
            options,
            upper,
            lowers,
        }))
    }

    /// Why this overlay root cannot move, for a root whose upper is not on a rootshift wrapper.
    pub fn unwrapped_refusal(&self) -> anyhow::Error {
        let upper = match &self.upper {
            None => "it has no upper layer (a read-only overlay)".to_string(),
            Some(u) => format!(
                "its upper layer {} is on {} ({}{})",
                u.dir.display(),
                if u.source.is_empty() {
                    "an unknown filesystem"
                } else {
                    &u.source
                },
                if u.fs_type.is_empty() {
                    "?"
                } else {
                    &u.fs_type
                },
                if u.fs_type == "tmpfs" { ", RAM" } else { "" }
            ),
        };
        refuse(
            format!(
                "/ is an overlayfs (a live session) and {upper}, not on a rootshift-upper wrapper: there is no \
                 block device to mirror the session's changes from"
            ),
            Some(
                "boot the medium with rd.rootshift.live=upper (its initrd must carry rootshift's hook), or build the \
                 image with live=upper in /etc/rootshift/rootshift.conf before its initramfs (Debian live-boot's \
                 initramfs-tools, dracut's dmsquash-live); either puts the upper on rootshift-upper (ext4 on zram). Otherwise install with the distribution's \
                 installer, or from a block-device live medium (dracut dmsquash-live with LiveOS/rootfs.img)",
            ),
        )
    }
}

/// One image file under a lower layer, to be moved to the image partition.
#[derive(Debug, Clone)]
pub struct ImageFile {
    pub loop_dev: LoopBinding,
    /// The file as this process reaches it now.
    pub path: PathBuf,
    /// Its path relative to the root of the filesystem holding it (`live/filesystem.squashfs`).
    pub rel: PathBuf,
    pub size: u64,
    /// The medium: the device of the filesystem holding it.
    pub medium: DevNum,
}

/// What `--image-to` will do, checked before anything changes.
#[derive(Debug, Clone)]
pub struct ImagePlan {
    pub part: BlockDev,
    pub files: Vec<ImageFile>,
}

impl ImagePlan {
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// The image file under one lower layer: the layer must be a filesystem on a read-only loop
/// device whose backing file this process can reach.
fn image_of(l: &Layer, all: &[mounts::Mount]) -> Result<ImageFile> {
    let dev = BlockDev::from_devnum(l.devnum).map_err(|_| {
        refuse(
            format!(
                "the overlay's lower layer {} ({} {}) is not on a block device (an image mounted straight from \
                 a file, e.g. EROFS on Debian 13): its file cannot be moved under the running system",
                l.dir.display(),
                l.fs_type,
                l.source
            ),
            Some("boot the medium with the image on a loop device (the distribution's default)"),
        )
    })?;
    let lb = LoopBinding::of(&dev.kname).ok_or_else(|| {
        refuse(
            format!(
                "the overlay's lower layer {} is on {}, not on a loop device over an image file",
                l.dir.display(),
                dev.display()
            ),
            Some("only a live medium's image files can be moved with --image-to; leave it out"),
        )
    })?;
    if !lb.read_only {
        return Err(refuse(
            format!(
                "the loop device {} under the overlay's lower layer is writable: the kernel moves only read-only \
                 loop devices to another file",
                lb.path.display()
            ),
            None,
        ));
    }
    let mount_points: Vec<PathBuf> = all
        .iter()
        .filter(|m| m.devnum == lb.file_dev)
        .map(|m| m.mount_point.clone())
        .collect();
    let found = backing_candidates(&lb.backing_file, &mount_points)
        .into_iter()
        .find_map(|p| {
            fs::metadata(&p)
                .ok()
                .filter(|m| DevNum::from_dev_t(m.dev()) == lb.file_dev && m.ino() == lb.file_ino)
                .map(|m| (p, m))
        });
    let Some((path, md)) = found else {
        return Err(refuse(
            format!(
                "the image file of {} ({}) is not reachable from here (its filesystem {} is unmounted or \
                 mounted elsewhere)",
                lb.path.display(),
                lb.backing_file.display(),
                lb.file_dev
            ),
            Some("mount the medium again, or leave --image-to out"),
        ));
    };
    let mount = all
        .iter()
        .filter(|m| m.devnum == lb.file_dev && path.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.as_os_str().len())
        .ok_or_else(|| anyhow!("no mount of {} holds {}", lb.file_dev, path.display()))?;
    let rel = path
        .strip_prefix(&mount.mount_point)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| PathBuf::from(path.file_name().unwrap_or_default()));
    Ok(ImageFile {
        path,
        size: md.len(),
        medium: lb.file_dev,
        rel,
        loop_dev: lb,
    })
}

/// Where a loop device's backing file may be now, best first: the path the kernel prints, then
/// that path's tails under every mount point of the file's filesystem. The kernel prints the path
/// from the reader's root through the mount the file was opened by; when that mount is no longer
/// reachable from here, the path comes out relative to that mount's root. Seen with dracut 106's
/// dmsquash-live (Debian 13, kernel 6.12): `/LiveOS/squashfs.img` for the file the medium, mounted
/// on `/run/initramfs/live`, holds. The caller keeps the candidate whose device and inode are the
/// loop's.
fn backing_candidates(backing: &Path, mount_points: &[PathBuf]) -> Vec<PathBuf> {
    let mut v = vec![backing.to_path_buf()];
    let parts: Vec<_> = backing
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect();
    for i in 0..parts.len() {
        let tail: PathBuf = parts[i..].iter().collect();
        for m in mount_points {
            let p = m.join(&tail);
            if !v.contains(&p) {
                v.push(p);
            }
        }
    }
    v
}

/// Check `--image-to PART` against the overlay root: every lower layer on a read-only loop over a
/// reachable file, PART large enough (files + 5 % + 16 MiB for ext4), and not holding any of them.
pub fn plan_images(root: &OverlayRoot, part: &BlockDev) -> Result<ImagePlan> {
    let all = mounts::mounts()?;
    let mut files = vec![];
    for l in &root.lowers {
        let f = image_of(l, &all)?;
        if files
            .iter()
            .any(|x: &ImageFile| x.loop_dev.devnum == f.loop_dev.devnum)
        {
            continue;
        }
        files.push(f);
    }
    // a run interrupted after some files moved (`--resume`): those read the partition already
    let ours = mounts::mounts_of(part.devnum)?
        .iter()
        .any(|m| m.mount_point == Path::new(IMAGE_DIR));
    if ours {
        files.retain(|f| f.medium != part.devnum);
    }
    if files.iter().any(|f| f.medium == part.devnum) {
        return Err(refuse(
            format!(
                "--image-to {} is the medium the image files are on",
                part.display()
            ),
            Some("name a partition of the target disk"),
        ));
    }
    let plan = ImagePlan {
        part: part.clone(),
        files,
    };
    let companions = companion_bytes(&plan.files);
    let need = partition_bytes(plan.bytes() + companions);
    let have = *part.size()? as u64;
    if have < need {
        return Err(refuse(
            format!(
                "--image-to {} has {} bytes; the image files need {} bytes ({} of images, {} of kernels and \
                 initrds, plus the filesystem's overhead)",
                part.display(),
                have,
                need,
                plan.bytes(),
                companions
            ),
            Some("make that partition larger"),
        ));
    }
    Ok(plan)
}

/// The kernels and initrds next to the image files, and the running kernel's pair found elsewhere
/// on the medium ([`copy_boot_files`] copies them along).
fn companion_bytes(files: &[ImageFile]) -> u64 {
    medium_kernel(files).map_or(0, |k| k.bytes())
        + files
            .iter()
            .filter_map(|f| fs::read_dir(f.path.parent()?).ok())
            .flat_map(|rd| rd.flatten())
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with("vmlinuz") || n.starts_with("initrd")
            })
            .filter_map(|e| e.metadata().ok().map(|m| m.len()))
            .sum::<u64>()
}

/// Whether the kernel that runs, with its initrd, is next to the image files or elsewhere on the
/// medium: what `install --disk` copies for the disk to boot.
pub fn has_boot_kernel(root: &OverlayRoot) -> Result<bool> {
    let all = mounts::mounts()?;
    let files = root
        .lowers
        .iter()
        .map(|l| image_of(l, &all))
        .collect::<Result<Vec<_>>>()?;
    let Some(release) = bootfiles::running_release() else {
        return Ok(false);
    };
    Ok(kernel_next_to_images(&files, &release) || medium_kernel(&files).is_some())
}

/// Whether the running kernel's pair is in the directory of one of the image files.
fn kernel_next_to_images(files: &[ImageFile], release: &str) -> bool {
    files
        .iter()
        .filter_map(|f| f.path.parent())
        .any(|d| bootfiles::find_kernel(d, release, 0).is_some())
}

/// An ext4 partition that holds `bytes` of files: 5 % and 16 MiB for the filesystem.
fn partition_bytes(bytes: u64) -> u64 {
    bytes + bytes / 20 + (16 << 20)
}

/// The size `install --disk` gives the image partition: the image files, their kernels and
/// initrds, and room for `spare` more bytes (kernel updates), rounded up to a MiB.
pub fn image_partition_bytes(root: &OverlayRoot, spare: u64) -> Result<u64> {
    let all = mounts::mounts()?;
    let files = root
        .lowers
        .iter()
        .map(|l| image_of(l, &all))
        .collect::<Result<Vec<_>>>()?;
    let b = partition_bytes(
        files.iter().map(|f| f.size).sum::<u64>() + companion_bytes(&files) + spare,
    );
    Ok(b.div_ceil(1 << 20) << 20)
}

/// One image file moved: its loop device now reads the copy.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Moved {
    pub file: PathBuf,
    pub bytes: u64,
    pub device: String,
    #[serde(rename = "loop")]
    pub loop_dev: PathBuf,
}

/// Make the image partition's filesystem (unless it is mounted at [`IMAGE_DIR`] already, from an
/// interrupted run) and mount it there.
fn image_fs(part: &BlockDev) -> Result<PathBuf> {
    let dir = PathBuf::from(IMAGE_DIR);
    if mounts::mounts_of(part.devnum)?
        .iter()
        .any(|m| m.mount_point == dir)
    {
        return Ok(dir);
    }
    crate::tools::run(
        "mkfs.ext4",
        &["-q", "-F", "-L", IMAGE_LABEL, &part.display()],
    )?;
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    nix::mount::mount(
        Some(&part.node_path()),
        &dir,
        Some("ext4"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("mounting {} on {}", part.display(), dir.display()))?;
    Ok(dir)
}

/// Copy every image file to the image partition, verify it, and move its loop device onto the
/// copy. A file whose loop device reads from that partition already is skipped (`--resume`).
/// `each` hears of every file moved. On error the loop devices not yet moved still read the
/// medium: the system is whole either way.
pub fn move_images(plan: &ImagePlan, mut each: impl FnMut(&Moved)) -> Result<Vec<Moved>> {
    let dir = image_fs(&plan.part)?;
    let mut moved = vec![];
    for f in &plan.files {
        let now = LoopBinding::of(
            &f.loop_dev
                .path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy(),
        );
        if now.as_ref().is_some_and(|b| b.file_dev == plan.part.devnum) {
            continue;
        }
        let dst = dir.join(&f.rel);
        if let Some(p) = dst.parent() {
            fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
        }
        copy_verified(&f.path, &dst, f.size)?;
        let copy = File::open(&dst).with_context(|| format!("opening {}", dst.display()))?;
        f.loop_dev.change_backing(&copy)?;
        let m = Moved {
            file: f.rel.clone(),
            bytes: f.size,
            device: plan.part.display(),
            loop_dev: f.loop_dev.path.clone(),
        };
        each(&m);
        moved.push(m);
    }
    copy_boot_files(plan, &dir)?;
    Ok(moved)
}

/// The medium's root: the image file's path minus its path on the medium.
fn medium_root(f: &ImageFile) -> Option<PathBuf> {
    let depth = f.rel.components().count();
    f.path.ancestors().nth(depth).map(Path::to_path_buf)
}

/// The running kernel with its initrd on the medium, when it is not next to the image files
/// (dracut media keep it in `images/pxeboot/`, `isolinux/`, `boot/`: see `bootfiles`).
pub fn medium_kernel(files: &[ImageFile]) -> Option<KernelPair> {
    let release = bootfiles::running_release()?;
    if kernel_next_to_images(files, &release) {
        return None;
    }
    files
        .iter()
        .filter_map(medium_root)
        .find_map(|r| bootfiles::find_kernel(&r, &release, 3))
}

/// Where [`copy_boot_files`] puts the running kernel found away from the image files, on the image
/// partition (as Debian names it in /boot: `vmlinuz-REL`, `initrd.img-REL`).
pub const BOOT_KERNEL_DIR: &str = "boot";

/// What boots an image besides the image itself, copied along before the medium goes: the kernels
/// and initrds next to each image file (live-boot's `live/vmlinuz*`, `live/initrd*`), else the
/// running kernel's pair from elsewhere on the medium (into [`BOOT_KERNEL_DIR`]), and the medium's
/// `.disk/` ids. Files there already with the same size are kept (`--resume`).
fn copy_boot_files(plan: &ImagePlan, dir: &Path) -> Result<()> {
    let mut todo: Vec<(PathBuf, PathBuf)> = vec![];
    if let Some(k) = medium_kernel(&plan.files) {
        let (kn, inn) = k.installed_names();
        let to = dir.join(BOOT_KERNEL_DIR);
        todo.extend([(k.kernel, to.join(kn)), (k.initrd, to.join(inn))]);
    }
    for f in &plan.files {
        let (Some(src_dir), Some(rel_dir)) = (f.path.parent(), f.rel.parent()) else {
            continue;
        };
        if let Ok(rd) = fs::read_dir(src_dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if (name.starts_with("vmlinuz") || name.starts_with("initrd")) && e.path().is_file()
                {
                    todo.push((e.path(), dir.join(rel_dir).join(&name)));
                }
            }
        }
        if let Some(ids) = medium_root(f)
            .map(|r| r.join(".disk"))
            .filter(|d| d.is_dir())
        {
            for e in fs::read_dir(&ids)?.flatten().filter(|e| e.path().is_file()) {
                todo.push((e.path(), dir.join(".disk").join(e.file_name())));
            }
        }
    }
    for (src, dst) in todo {
        let size = fs::metadata(&src)?.len();
        if fs::metadata(&dst).is_ok_and(|m| m.len() == size) {
            continue;
        }
        if let Some(p) = dst.parent() {
            fs::create_dir_all(p)?;
        }
        copy_verified(&src, &dst, size)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpfs_upper() -> OverlayRoot {
        OverlayRoot {
            options: "rw,lowerdir=/run/live/rootfs/filesystem.squashfs/,upperdir=/run/live/overlay/rw,workdir=/run/live/overlay/work"
                .parse()
                .unwrap(),
            upper: Some(Layer {
                dir: "/run/live/overlay/rw".into(),
                devnum: DevNum::new(0, 40),
                fs_type: "tmpfs".into(),
                source: "tmpfs".into(),
                mount_point: Some("/run/live/overlay".into()),
            }),
            lowers: vec![],
        }
    }

    #[test]
    fn a_ram_upper_is_refused_with_what_the_image_must_do() {
        let e = tmpfs_upper().unwrapped_refusal();
        let r = e
            .downcast_ref::<crate::error::Refusal>()
            .expect("a refusal");
        assert!(r.message.contains("/ is an overlayfs"), "{}", r.message);
        assert!(
            r.message
                .contains("upper layer /run/live/overlay/rw is on tmpfs (tmpfs, RAM)"),
            "{}",
            r.message
        );
        assert!(r.hint.as_deref().unwrap_or("").contains("rootshift-upper"));
    }

    #[test]
    fn a_read_only_overlay_has_no_upper() {
        let mut o = tmpfs_upper();
        o.upper = None;
        let e = o.unwrapped_refusal();
        assert!(e.to_string().contains("no upper layer"), "{e}");
    }

    #[test]
    fn dracut_overlayfs_mount_options() {
        // / on a dracut dmsquash-live overlayfs boot (Debian 13, dracut 106, kernel 6.12), mountinfo's
        // super options; the upper is the persistent overlay rootshift's hook made
        let o: OverlayOptions =
            "rw,lowerdir=/run/rootfsbase,upperdir=/run/overlayfs,workdir=/run/ovlwork,uuid=on"
                .parse()
                .unwrap();
        assert_eq!(o.lowerdirs, vec![PathBuf::from("/run/rootfsbase")]);
        assert_eq!(o.upperdir, Some(PathBuf::from("/run/overlayfs")));
        assert_eq!(o.workdir, Some(PathBuf::from("/run/ovlwork")));
        // rd.live.overlay.readonly: the persistent overlay becomes a second, read-only lower
        let r: OverlayOptions =
            "ro,lowerdir=/run/overlayfs-r:/run/rootfsbase,upperdir=/run/overlayfs,workdir=/run/ovlwork"
                .parse()
                .unwrap();
        assert_eq!(
            r.lowerdirs,
            vec![
                PathBuf::from("/run/overlayfs-r"),
                PathBuf::from("/run/rootfsbase")
            ]
        );
    }

    #[test]
    fn backing_files_found_under_the_mounts_of_their_filesystem() {
        // dracut's dmsquash-live: loop/backing_file says "/LiveOS/squashfs.img", the medium is
        // mounted on /run/initramfs/live
        let c = backing_candidates(
            Path::new("/LiveOS/squashfs.img"),
            &[PathBuf::from("/run/initramfs/live")],
        );
        assert_eq!(
            c,
            vec![
                PathBuf::from("/LiveOS/squashfs.img"),
                PathBuf::from("/run/initramfs/live/LiveOS/squashfs.img"),
                PathBuf::from("/run/initramfs/live/squashfs.img"),
            ]
        );
        // live-boot: the path as printed comes first (and is the one that matches)
        let c = backing_candidates(
            Path::new("/run/live/medium/live/filesystem.squashfs"),
            &[PathBuf::from("/run/live/medium")],
        );
        assert_eq!(
            c[0],
            PathBuf::from("/run/live/medium/live/filesystem.squashfs")
        );
        assert!(c.contains(&PathBuf::from("/run/live/medium/live/filesystem.squashfs")));
        assert_eq!(
            c.iter()
                .filter(|p| **p == Path::new("/run/live/medium/live/filesystem.squashfs"))
                .count(),
            1
        );
    }
}
