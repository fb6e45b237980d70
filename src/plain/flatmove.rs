//! The boot-time half of `rootshift flatten`: the plain root was copied into a directory of the
//! persistence filesystem ([`STAGE`]) while the session ran from the old upper beside it; a
//! directory cannot become its filesystem's root while processes run from it, so the initrd
//! finishes the job before `/` is handed to init: `rootshift boot flatten-finish $rootmnt`
//! (initramfs-tools' local-bottom, dracut's pre-pivot), on the root mounted but not yet entered.
//!
//! ```text
//! READY  the tree is complete (written before the boot loader switches to it)
//!   A: every other top-level entry (the old upper, persistence.conf, …) → OLD/;  READY → MOVING
//! MOVING
//!   B: every entry of STAGE → the top; STAGE's own owner and mode → the top; STAGE removed;
//!      MOVING removed
//! OLD    C: removed (the old upper's files)
//! ```
//!
//! Each step is a rename on one filesystem, and the markers say how far it got: a power cut at
//! any point leaves a state the next boot goes on from. Nothing is removed before the tree is
//! where init finds it, and the tree is never touched but by renames.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context, Result};

/// The directory at the persistence filesystem's top that the plain root is copied into.
pub const STAGE: &str = "rootshift-flat";
/// The tree in [`STAGE`] is complete and its boot loader is (being) written: move it.
pub const READY: &str = "rootshift-flat.ready";
/// The move has started: the old top-level entries are in [`OLD`].
pub const MOVING: &str = "rootshift-flat.moving";
/// What the top level held before (the old upper), removed once the tree is in place.
pub const OLD: &str = "rootshift-old";
const LOST_FOUND: &str = "lost+found";

/// What a run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Moved {
    /// Old top-level entries put aside (step A).
    pub set_aside: usize,
    /// Entries of the tree moved to the top (step B).
    pub moved: usize,
    /// The old entries were removed (step C).
    pub removed_old: bool,
}

/// Whether `top` (a filesystem's root) has a flatten to finish.
pub fn pending(top: &Path) -> bool {
    top.join(READY).exists() || top.join(MOVING).exists() || top.join(OLD).is_dir()
}

fn sync_dir(p: &Path) -> Result<()> {
    fs::File::open(p)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("flushing {}", p.display()))
}

/// A tree that init can run: what READY must point at before anything is moved.
fn looks_like_a_root(stage: &Path) -> bool {
    ["etc", "usr"].iter().all(|d| stage.join(d).is_dir())
}

/// Finish a flatten on the filesystem whose root is `top` (mounted read-write).
pub fn finish(top: &Path) -> Result<Moved> {
    let mut done = Moved::default();
    let stage = top.join(STAGE);
    let old = top.join(OLD);
    if top.join(READY).exists() {
        if !looks_like_a_root(&stage) {
            bail!(
                "{} says the flattened tree is ready, but {} holds no system (no etc/ and usr/): \
                 nothing was moved",
                top.join(READY).display(),
                stage.display()
            );
        }
        fs::create_dir_all(&old).with_context(|| format!("making {}", old.display()))?;
        for e in fs::read_dir(top).with_context(|| format!("reading {}", top.display()))? {
            let name = e?.file_name();
            if [STAGE, READY, MOVING, OLD, LOST_FOUND]
                .iter()
                .any(|k| name == *k)
            {
                continue;
            }
            fs::rename(top.join(&name), old.join(&name))
                .with_context(|| format!("putting {} aside", top.join(&name).display()))?;
            done.set_aside += 1;
        }
        sync_dir(&old)?;
        sync_dir(top)?;
        fs::rename(top.join(READY), top.join(MOVING))?;
        sync_dir(top)?;
    }
    if top.join(MOVING).exists() {
        if stage.is_dir() {
            for e in fs::read_dir(&stage).with_context(|| format!("reading {}", stage.display()))? {
                let name = e?.file_name();
                let (from, to) = (stage.join(&name), top.join(&name));
                if to.symlink_metadata().is_ok() {
                    fs::create_dir_all(&old)?;
                    if name == LOST_FOUND {
                        // the filesystem's own (fsck's) stays; the copy's goes aside
                        fs::rename(&from, old.join("lost+found.flat"))
                            .with_context(|| format!("putting {} aside", from.display()))?;
                        continue;
                    }
                    // nothing else should be there after step A; if it is, the tree wins
                    let aside = old.join(format!("{}.top", name.to_string_lossy()));
                    fs::rename(&to, &aside)
                        .with_context(|| format!("putting {} aside", to.display()))?;
                }
                fs::rename(&from, &to).with_context(|| format!("moving {} up", from.display()))?;
                done.moved += 1;
            }
            // the copied root directory's owner and mode become the filesystem root's
            let m = fs::metadata(&stage)?;
            std::os::unix::fs::chown(top, Some(m.uid()), Some(m.gid()))?;
            fs::set_permissions(top, fs::Permissions::from_mode(m.mode() & 0o7777))?;
            sync_dir(top)?;
            fs::remove_dir(&stage).with_context(|| format!("removing {}", stage.display()))?;
        }
        fs::remove_file(top.join(MOVING))?;
        sync_dir(top)?;
    }
    if old.is_dir() && !top.join(READY).exists() && !top.join(MOVING).exists() {
        fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
        sync_dir(top)?;
        done.removed_old = true;
    }
    Ok(done)
}

/// `rootshift boot flatten-finish ROOT`: ROOT is the root filesystem, mounted (read-only as an
/// initrd mounts it): made writable for the move, then put back as it was.
pub fn finish_mounted(root: &Path) -> Result<Moved> {
    use crate::kernel::mounts;
    use nix::sys::statvfs::{statvfs, FsFlags};
    if !pending(root) {
        return Ok(Moved::default());
    }
    let ro = statvfs(root)
        .with_context(|| format!("statfs {}", root.display()))?
        .flags()
        .contains(FsFlags::ST_RDONLY);
    if ro {
        mounts::remount(root, false)
            .with_context(|| format!("remounting {} read-write", root.display()))?;
    }
    let r = finish(root);
    if ro {
        let _ = mounts::remount(root, true);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("rootshift-flatmove-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// A persistence filesystem after `flatten`: the old upper beside the complete tree.
    fn flattened(name: &str) -> std::path::PathBuf {
        let t = scratch(name);
        for d in [
            "lost+found",
            "rw/etc",
            "work/work",
            "rootshift-flat/etc",
            "rootshift-flat/usr/bin",
            "rootshift-flat/lost+found",
        ] {
            fs::create_dir_all(t.join(d)).unwrap();
        }
        fs::write(t.join("persistence.conf"), "/ union\n").unwrap();
        fs::write(t.join("rw/etc/old"), "old upper").unwrap();
        fs::write(t.join("rootshift-flat/etc/hostname"), "plain\n").unwrap();
        fs::write(t.join("rootshift-flat/usr/bin/sh"), "#!").unwrap();
        fs::set_permissions(t.join(STAGE), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(t.join(READY), "").unwrap();
        t
    }

    fn names(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_tree_becomes_the_top_and_the_old_upper_goes() {
        let t = flattened("whole");
        assert!(pending(&t));
        let d = finish(&t).unwrap();
        assert_eq!(names(&t), ["etc", "lost+found", "usr"]);
        assert_eq!(
            fs::read_to_string(t.join("etc/hostname")).unwrap(),
            "plain\n"
        );
        assert_eq!(d.set_aside, 3, "persistence.conf, rw, work");
        assert_eq!(d.moved, 2, "etc, usr (the copy's lost+found stays aside)");
        assert!(d.removed_old);
        assert!(!pending(&t));
        assert_eq!(
            finish(&t).unwrap(),
            Moved::default(),
            "a second run does nothing"
        );
        fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn a_cut_in_the_middle_of_the_move_goes_on_at_the_next_boot() {
        let t = flattened("cut");
        // as if the power went after step A and the first rename of step B
        fs::create_dir_all(t.join(OLD)).unwrap();
        for n in ["persistence.conf", "rw", "work"] {
            fs::rename(t.join(n), t.join(OLD).join(n)).unwrap();
        }
        fs::rename(t.join(READY), t.join(MOVING)).unwrap();
        fs::rename(t.join("rootshift-flat/etc"), t.join("etc")).unwrap();
        finish(&t).unwrap();
        assert_eq!(names(&t), ["etc", "lost+found", "usr"]);
        assert_eq!(fs::read_to_string(t.join("usr/bin/sh")).unwrap(), "#!");
        fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn a_ready_marker_without_a_system_moves_nothing() {
        let t = flattened("empty");
        fs::remove_dir_all(t.join("rootshift-flat/usr")).unwrap();
        let e = finish(&t).unwrap_err();
        assert!(format!("{e:#}").contains("holds no system"), "{e:#}");
        assert!(t.join("rw/etc/old").exists(), "the old upper is untouched");
        assert!(t.join(READY).exists());
        fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn a_filesystem_without_markers_is_left_alone() {
        let t = scratch("none");
        fs::create_dir_all(t.join("etc")).unwrap();
        assert!(!pending(&t));
        assert_eq!(finish(&t).unwrap(), Moved::default());
        assert_eq!(names(&t), ["etc"]);
        fs::remove_dir_all(&t).unwrap();
    }
}
