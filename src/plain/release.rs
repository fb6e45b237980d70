//! The live stack a soft-reboot leaves behind, and `rootshift release-live`, which lets go of it
//! in the new userspace: the layers' mounts, rootshift's and the live media's dm devices, the
//! zram device of a RAM upper, the loop devices of the images, the medium's mounts, and the CD
//! (ejected). The steps are written down before the soft-reboot (only then is it known what the
//! live root was made of) in [`STACK_FILE`], one per line, in the order they must run.

use std::fmt;
use std::fs;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::kernel::blockdev::BlockDev;
use crate::kernel::devnum::DevNum;
use crate::kernel::dm::Dm;
use crate::kernel::loopdev::LoopBinding;
use crate::kernel::{ioctl, mounts, zram};
use crate::live::overlay::OverlayRoot;

/// Where the steps wait for the soft-reboot (/run survives it).
pub const STACK_FILE: &str = "/run/rootshift/live-stack";
/// What `release-live` did, one line per step (JSON array).
pub const RELEASED_FILE: &str = "/run/rootshift/released.json";

/// One thing to let go of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Unmount(PathBuf),
    RemoveDm(String),
    FreeZram(u32),
    DetachLoop(PathBuf),
    Eject(PathBuf),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Unmount(p) => write!(f, "unmount {}", p.display()),
            Step::RemoveDm(n) => write!(f, "remove-dm {n}"),
            Step::FreeZram(id) => write!(f, "free-zram {id}"),
            Step::DetachLoop(p) => write!(f, "detach-loop {}", p.display()),
            Step::Eject(p) => write!(f, "eject {}", p.display()),
        }
    }
}

impl FromStr for Step {
    type Err = String;
    fn from_str(s: &str) -> Result<Step, String> {
        let (verb, arg) = s
            .split_once(' ')
            .ok_or_else(|| format!("{s:?}: not VERB ARGUMENT"))?;
        if arg.is_empty() {
            return Err(format!("{s:?}: no argument"));
        }
        Ok(match verb {
            "unmount" => Step::Unmount(arg.into()),
            "remove-dm" => Step::RemoveDm(arg.into()),
            "free-zram" => Step::FreeZram(
                arg.parse()
                    .map_err(|_| format!("{s:?}: {arg:?} is no zram number"))?,
            ),
            "detach-loop" => Step::DetachLoop(arg.into()),
            "eject" => Step::Eject(arg.into()),
            _ => return Err(format!("{s:?}: unknown step {verb:?}")),
        })
    }
}

/// Mount points of `dev`, deepest first, without `/` and the installed system's.
fn mount_points(dev: DevNum, all: &[mounts::Mount]) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = all
        .iter()
        .filter(|m| m.devnum == dev)
        .map(|m| m.mount_point.clone())
        .filter(|p| p != Path::new("/") && !p.starts_with(super::NEXTROOT))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v
}

/// The steps that let go of the live root's stack once nothing runs from it; written to
/// [`STACK_FILE`].
pub fn record() -> Result<Vec<Step>> {
    let all = mounts::mounts()?;
    let root = mounts::root_mount()?;
    let mut top: Vec<DevNum> = vec![];
    match OverlayRoot::of_root()? {
        Some(o) => top.extend(o.upper.iter().chain(o.lowers.iter()).map(|l| l.devnum)),
        None => top.push(root.devnum),
    }
    let (mut layer_mounts, mut dms, mut zrams, mut loops, mut media) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut seen: Vec<DevNum> = vec![];
    let mut queue = top.clone();
    while !queue.is_empty() {
        let d = queue.remove(0);
        if seen.contains(&d) || d.major == 0 {
            continue;
        }
        seen.push(d);
        let Ok(bd) = BlockDev::from_devnum(d) else {
            continue;
        };
        if let Some(name) = bd.dm_name() {
            if name.starts_with(crate::wrapper::PREFIX)
                || name.starts_with(crate::live::LIVE_DM_PREFIX)
            {
                layer_mounts.extend(mount_points(d, &all));
                dms.push(Step::RemoveDm(name));
                queue.extend(bd.slaves().iter().map(|s| s.devnum));
            }
        } else if let Some(id) = zram::zram_id(&bd.kname) {
            layer_mounts.extend(mount_points(d, &all));
            zrams.push(Step::FreeZram(id));
        } else if let Some(b) = LoopBinding::of(&bd.kname) {
            layer_mounts.extend(mount_points(d, &all));
            loops.push(Step::DetachLoop(bd.path.clone()));
            queue.push(b.file_dev);
            // dmsquash-live's live-base: a linear map of the same image loop beside the snapshot,
            // not below it; the loop cannot go while it holds it
            queue.extend(
                bd.holder_devs()
                    .into_iter()
                    .filter(|h| {
                        h.dm_name()
                            .is_some_and(|n| n.starts_with(crate::live::LIVE_DM_PREFIX))
                    })
                    .map(|h| h.devnum),
            );
        } else if !top.contains(&d) {
            // what image files are on: the medium (a CD, a USB stick, the disk an ISO file is on)
            media.push(bd);
        } else {
            // a layer straight on a partition: a live disk's persistence partition
            layer_mounts.extend(mount_points(d, &all));
        }
    }
    let mut steps: Vec<Step> = layer_mounts.into_iter().map(Step::Unmount).collect();
    steps.extend(dms);
    steps.extend(zrams);
    steps.extend(loops);
    for m in media {
        steps.extend(mount_points(m.devnum, &all).into_iter().map(Step::Unmount));
        if m.kname.starts_with("sr") {
            steps.push(Step::Eject(m.path.clone()));
        }
    }
    let text: String = steps.iter().map(|s| format!("{s}\n")).collect();
    crate::finish::ids::write_atomic(Path::new(STACK_FILE), text.as_bytes(), 0o600)?;
    Ok(steps)
}

/// Retry `f` for a while when it fails with EBUSY (the old root's overlay lets go of its layers
/// a moment after its last user is gone).
fn busy_retry(mut f: impl FnMut() -> nix::Result<()>) -> nix::Result<()> {
    let t0 = Instant::now();
    loop {
        match f() {
            Err(nix::errno::Errno::EBUSY) if t0.elapsed() < Duration::from_secs(15) => {
                sleep(Duration::from_millis(250))
            }
            r => return r,
        }
    }
}

fn run_step(s: &Step, dm: &mut Option<Dm>) -> Result<String> {
    match s {
        Step::Unmount(p) => {
            if !mounts::mounts()?.iter().any(|m| &m.mount_point == p) {
                return Ok(format!("{} was not mounted any more", p.display()));
            }
            busy_retry(|| nix::mount::umount2(p, nix::mount::MntFlags::empty()))
                .with_context(|| format!("umount {}", p.display()))?;
            Ok(format!("unmounted {}", p.display()))
        }
        Step::RemoveDm(name) => {
            if dm.is_none() {
                *dm = Some(Dm::open()?);
            }
            let dm = dm.as_ref().ok_or_else(|| anyhow!("no dm"))?;
            if !dm.list()?.iter().any(|(n, _)| n == name) {
                return Ok(format!("dm {name} was gone"));
            }
            let t0 = Instant::now();
            loop {
                match dm.remove(name) {
                    Ok(()) => return Ok(format!("removed dm {name}")),
                    Err(_) if t0.elapsed() < Duration::from_secs(15) => {
                        sleep(Duration::from_millis(250))
                    }
                    Err(e) => return Err(e.context(format!("removing dm {name}"))),
                }
            }
        }
        Step::FreeZram(id) => {
            if !Path::new(&format!("/sys/block/zram{id}")).exists() {
                return Ok(format!("zram{id} was gone"));
            }
            let bd = BlockDev::from_path(Path::new(&format!("/dev/zram{id}")))?;
            if !bd.holders().is_empty() || !mounts::mounts_of(bd.devnum)?.is_empty() {
                bail!("zram{id} is still in use");
            }
            Ok(match zram::free(*id)? {
                true => format!("freed and removed zram{id}"),
                false => format!("freed zram{id} (its memory; the device stays, empty)"),
            })
        }
        Step::DetachLoop(p) => {
            let kname = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if LoopBinding::of(&kname).is_none() {
                return Ok(format!("{} was detached already", p.display()));
            }
            let f = fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
            ioctl::loop_detach(f.as_fd())
                .with_context(|| format!("LOOP_CLR_FD {}", p.display()))?;
            drop(f);
            // LOOP_CLR_FD on a loop something still holds only marks it (autoclear): it goes
            // with its last user. Say "detached" only when it went.
            let t = Instant::now();
            while LoopBinding::of(&kname).is_some() {
                if t.elapsed() > Duration::from_secs(3) {
                    let holders = BlockDev::from_path(p)
                        .map(|b| b.holders())
                        .unwrap_or_default();
                    bail!(
                        "{} is still bound (held by {}): the kernel detaches it when that goes",
                        p.display(),
                        if holders.is_empty() {
                            "an open file or mount".into()
                        } else {
                            holders.join(", ")
                        }
                    );
                }
                sleep(Duration::from_millis(50));
            }
            Ok(format!("detached {}", p.display()))
        }
        Step::Eject(p) => {
            use std::os::unix::fs::OpenOptionsExt;
            let f = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(p)
                .with_context(|| format!("opening {}", p.display()))?;
            ioctl::cdrom_eject(f.as_fd()).with_context(|| format!("ejecting {}", p.display()))?;
            Ok(format!("ejected {}", p.display()))
        }
    }
}

/// `rootshift release-live`: carry out the recorded steps. A step that fails is reported and the
/// ones that depend on the same devices still try; the result is written to [`RELEASED_FILE`].
/// Errors when something was kept.
pub fn release_live() -> Result<()> {
    let text = match fs::read_to_string(STACK_FILE) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("nothing to release: {STACK_FILE} is not there (no soft-reboot from a live session)");
            return Ok(());
        }
        Err(e) => return Err(anyhow!("{STACK_FILE}: {e}")),
    };
    let steps = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.parse::<Step>().map_err(|e| anyhow!("{STACK_FILE}: {e}")))
        .collect::<Result<Vec<_>>>()?;
    let mut lines = vec![];
    let mut kept = 0;
    let mut dm = None;
    for s in &steps {
        let line = match run_step(s, &mut dm) {
            Ok(l) => l,
            Err(e) => {
                kept += 1;
                format!("kept: {s}: {e:#}")
            }
        };
        println!("{line}");
        lines.push(line);
    }
    crate::finish::ids::write_atomic(
        Path::new(RELEASED_FILE),
        serde_json::json!({"released": lines, "kept": kept})
            .to_string()
            .as_bytes(),
        0o644,
    )?;
    fs::remove_file(STACK_FILE).with_context(|| format!("removing {STACK_FILE}"))?;
    if kept > 0 {
        bail!(
            "{kept} of {} steps could not be done (see above)",
            steps.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_trip_and_bad_lines_are_named() {
        for s in [
            "unmount /run/live/overlay",
            "remove-dm rootshift-upper",
            "free-zram 0",
            "detach-loop /dev/loop0",
            "eject /dev/sr0",
        ] {
            let st: Step = s.parse().unwrap();
            assert_eq!(st.to_string(), s);
        }
        assert!("free-zram x"
            .parse::<Step>()
            .unwrap_err()
            .contains("no zram number"));
        assert!("frobnicate /x"
            .parse::<Step>()
            .unwrap_err()
            .contains("unknown step"));
        assert!("unmount".parse::<Step>().is_err());
    }
}
