//! Crash safety across a reboot.
//!
//! From the first copied block two devices carry the same filesystem UUID, so after a crash
//! `root=UUID=…` could land on the half-copied target (before the switch) or on the stale source
//! (after it). The journal is therefore also kept *inside* the root filesystem
//! (`/var/lib/rootshift/<wrapper>.json`, fsynced) — written through the wrapper, it reaches every
//! leg that is in sync, and only the target after the switch — and `rootshift wrap` (the initrd
//! hook) picks the leg by it:
//!
//! - the newest journal found on the candidates says `switching` or later → the target: the
//!   copy was complete and in sync when `switching` was written, and from the switch on only the
//!   target got writes;
//! - it says `mirroring` or `aborted` → the source, which had every write;
//! - no journal, or the journal's device is not among the candidates → refuse to boot either.
//!
//! Devices are recognised by the identity recorded in the journal (GPT PARTUUID, else the disk's
//! serial and the partition number), not by their kernel names, which can change across boots.
//! Right after the switch the detached source gets a new filesystem UUID, which ends the
//! ambiguity for good; after an abort the target's first MiB is cleared for the same reason.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

use super::journal::{Journal, Step};
use crate::kernel::blockdev::BlockDev;
use crate::kernel::devnum::DevNum;
use crate::kernel::fs::{fs_uuid, probe, Content, PROBE_BYTES};

/// Where, inside the root filesystem, the journal survives a reboot.
pub const PERSIST_DIR: &str = "var/lib/rootshift";

/// How a device is recognised after a reboot.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Identity {
    /// GPT partition GUID (PARTUUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partuuid: Option<String>,
    /// The disk's serial (or WWID) and, for a partition, its number: `vdb-serial#2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

impl Identity {
    pub fn of(dev: &BlockDev) -> Identity {
        let partuuid = if dev.is_partition() {
            crate::disk::locate(dev)
                .ok()
                .and_then(|dp| dp.part().guid)
                .map(|g| g.to_string())
        } else {
            None
        };
        let disk = dev.whole_disk().ok();
        let serial = disk.and_then(|d| {
            read_trim(&d.sysfs.join("serial"))
                .or_else(|| read_trim(&d.sysfs.join("device/serial")))
                .or_else(|| read_trim(&d.sysfs.join("device/wwid")))
                .or_else(|| read_trim(&d.sysfs.join("wwid")))
        });
        let serial = serial.map(|s| match dev.partition_number() {
            Some(n) => format!("{s}#{n}"),
            None => s,
        });
        Identity { partuuid, serial }
    }

    /// Whether two identities name the same device (PARTUUID first, then serial).
    pub fn matches(&self, other: &Identity) -> bool {
        match (&self.partuuid, &other.partuuid) {
            (Some(a), Some(b)) => return a.eq_ignore_ascii_case(b),
            (Some(_), None) | (None, Some(_)) => return false,
            (None, None) => {}
        }
        matches!((&self.serial, &other.serial), (Some(a), Some(b)) if a == b)
    }

    pub fn is_known(&self) -> bool {
        self.partuuid.is_some() || self.serial.is_some()
    }
}

/// One device that carries the root's filesystem UUID, with what its filesystem says.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub path: PathBuf,
    pub identity: Identity,
    pub journal: Option<Journal>,
}

/// Which candidate to boot, or why none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Boot(usize),
    Refuse(String),
}

/// The decision, on what was read (pure; see the module doc).
pub fn decide(cands: &[Candidate]) -> Verdict {
    let newest = cands
        .iter()
        .filter_map(|c| c.journal.as_ref())
        .max_by_key(|j| (j.updated_unix, j.step));
    let Some(j) = newest else {
        return Verdict::Refuse(format!(
            "{} devices carry the root filesystem's UUID ({}) and none holds a rootshift journal saying which one \
             is complete",
            cands.len(),
            names(cands)
        ));
    };
    let (want, which) = if j.step >= Step::Switching && j.step != Step::Aborted {
        (&j.target, "the target (the migration reached the switch)")
    } else {
        (&j.source, "the source (the migration had not switched)")
    };
    let Some(id) = &want.identity else {
        return Verdict::Refuse(format!(
            "the journal ({}) names {which} {} without an identity rootshift can match after a reboot",
            j.step.as_str(),
            want.path
        ));
    };
    match cands.iter().position(|c| id.matches(&c.identity)) {
        Some(i) => Verdict::Boot(i),
        None => Verdict::Refuse(format!(
            "the journal ({}) says to boot {which} {}, but it is not among the devices carrying the UUID ({})",
            j.step.as_str(),
            want.path,
            names(cands)
        )),
    }
}

fn names(cands: &[Candidate]) -> String {
    cands
        .iter()
        .map(|c| c.path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every block device whose superblock carries filesystem UUID `uuid` (disks, partitions; not
/// loop, ram or optical devices, nor devices stacked on others).
pub fn devices_with_uuid(uuid: &str) -> Vec<BlockDev> {
    let mut out = vec![];
    let Ok(rd) = fs::read_dir("/sys/class/block") else {
        return out;
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        // legs of a migration are disks and partitions: not stacked devices (a live medium's
        // live-base and live-rw carry the same UUID by design), not loops, RAM or optical drives
        .filter(|n| {
            !["loop", "ram", "sr", "zram", "fd", "dm-", "md"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .collect();
    names.sort();
    for n in names {
        let Some(dev) = read_trim(&PathBuf::from("/sys/class/block").join(&n).join("dev"))
            .and_then(|s| s.parse::<DevNum>().ok())
            .and_then(|d| BlockDev::from_devnum(d).ok())
        else {
            continue;
        };
        let read_only = read_trim(&dev.sysfs.join("ro")).as_deref() == Some("1");
        if !dev.holders().is_empty() || !dev.path.exists() || read_only {
            continue;
        }
        let Ok(head) = dev.read_head(PROBE_BYTES) else {
            continue;
        };
        if fs_uuid(&head).as_deref() == Some(uuid) {
            out.push(dev);
        }
    }
    out
}

/// Read the persistent journal(s) inside the filesystem on `dev`, mounted read-only without
/// replaying its log (nothing is written to it). The newest one, if any.
pub fn journal_on(dev: &BlockDev) -> Result<Option<Journal>> {
    let head = dev.read_head(PROBE_BYTES)?;
    let (fstype, opts) = match probe(&head) {
        Some(Content::Ext4 | Content::Ext3) => ("ext4", "noload"),
        Some(Content::Ext2) => ("ext2", ""),
        Some(Content::Xfs) => ("xfs", "norecovery,nouuid"),
        _ => return Ok(None),
    };
    let mp = PathBuf::from(format!("/run/rootshift/probe-{}", dev.kname));
    fs::create_dir_all(&mp).with_context(|| format!("creating {}", mp.display()))?;
    mount(
        Some(dev.path.as_path()),
        &mp,
        Some(fstype),
        MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_NOSUID,
        if opts.is_empty() { None } else { Some(opts) },
    )
    .with_context(|| format!("mounting {} read-only to read its journal", dev.display()))?;
    let dir = mp.join(PERSIST_DIR);
    let mut best: Option<Journal> = None;
    if let Ok(rd) = fs::read_dir(&dir) {
        for e in rd.filter_map(|e| e.ok()) {
            if e.path().extension().is_some_and(|x| x == "json") {
                if let Some(j) = fs::read_to_string(e.path())
                    .ok()
                    .and_then(|t| serde_json::from_str::<Journal>(&t).ok())
                {
                    if best
                        .as_ref()
                        .is_none_or(|b| j.updated_unix > b.updated_unix)
                    {
                        best = Some(j);
                    }
                }
            }
        }
    }
    umount2(&mp, MntFlags::MNT_DETACH).with_context(|| format!("unmounting {}", mp.display()))?;
    let _ = fs::remove_dir(&mp);
    Ok(best)
}

/// `rootshift wrap`'s choice of the device to wrap: `given` unless another device carries the
/// same filesystem UUID, in which case the journals decide (or nothing is booted).
pub fn choose_root(given: &BlockDev) -> Result<(BlockDev, Option<String>)> {
    // A stacked root (dmsquash-live's live-rw, an LVM volume, an md array) is what the initrd
    // built for this boot: it is the root whatever disk carries a copy of its filesystem.
    if given.dm_name().is_some()
        || given.kname.starts_with("md")
        || given.loop_backing_file().is_some()
    {
        return Ok((given.clone(), None));
    }
    let head = given.read_head(PROBE_BYTES)?;
    let Some(uuid) = fs_uuid(&head) else {
        return Ok((given.clone(), None));
    };
    let devs = devices_with_uuid(&uuid);
    if devs.len() <= 1 {
        return Ok((given.clone(), None));
    }
    let mut cands: Vec<Candidate> = devs
        .iter()
        .map(|d| Candidate {
            path: d.path.clone(),
            identity: Identity::of(d),
            journal: None,
        })
        .collect();
    // Read the journals one device at a time and stop at the first that decides: one readable
    // journal is enough (before the switch the source's is the newest and the target's a copy of
    // it or missing; from `switching` on, either says "the target"), and each device not mounted
    // is a half-copied twin the kernel was not made to parse (it logs ext4 errors for one).
    for (i, d) in devs.iter().enumerate() {
        cands[i].journal = journal_on(d).unwrap_or(None);
        if cands[i].journal.is_some() && matches!(decide(&cands), Verdict::Boot(_)) {
            break;
        }
    }
    match decide(&cands) {
        Verdict::Boot(i) => {
            let chosen = devs[i].clone();
            let j = cands[i]
                .journal
                .as_ref()
                .or(cands.iter().find_map(|c| c.journal.as_ref()));
            let why = format!(
                "{} devices carry filesystem UUID {uuid} ({}); the rootshift journal ({}) picks {}",
                devs.len(),
                names(&cands),
                j.map(|j| j.step.as_str()).unwrap_or("?"),
                chosen.display()
            );
            Ok((chosen, Some(why)))
        }
        Verdict::Refuse(msg) => bail!(Ambiguous(msg)),
    }
}

pub use crate::error::Ambiguous;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::journal::DevRecord;

    fn rec(path: &str, partuuid: &str) -> DevRecord {
        DevRecord {
            dev: "0:0".into(),
            path: path.into(),
            size_bytes: 1,
            identity: Some(Identity {
                partuuid: Some(partuuid.into()),
                serial: None,
            }),
        }
    }

    fn journal(step: Step, t: u64) -> Journal {
        let mut j = Journal::new(
            "rootshift-root",
            "dm-mirror",
            rec("/dev/vda1", "aaaa"),
            rec("/dev/vdb1", "bbbb"),
        );
        j.step = step;
        j.updated_unix = t;
        j
    }

    fn cand(path: &str, partuuid: &str, j: Option<Journal>) -> Candidate {
        Candidate {
            path: path.into(),
            identity: Identity {
                partuuid: Some(partuuid.into()),
                serial: None,
            },
            journal: j,
        }
    }

    #[test]
    fn before_the_switch_the_source_boots() {
        // the names changed across the reboot: identities decide
        let c = [
            cand("/dev/vdb1", "BBBB", Some(journal(Step::Mirroring, 10))),
            cand("/dev/vda1", "aaaa", Some(journal(Step::Mirroring, 10))),
        ];
        assert_eq!(decide(&c), Verdict::Boot(1));
        // the target has no readable journal yet (not copied): the source's decides
        let c = [
            cand("/dev/sda1", "aaaa", Some(journal(Step::Mirroring, 10))),
            cand("/dev/sdb1", "bbbb", None),
        ];
        assert_eq!(decide(&c), Verdict::Boot(0));
    }

    #[test]
    fn from_switching_on_the_target_boots_and_the_newest_journal_wins() {
        let c = [
            cand("/dev/vda1", "aaaa", Some(journal(Step::Switching, 20))),
            cand("/dev/vdb1", "bbbb", Some(journal(Step::Switched, 21))),
        ];
        assert_eq!(decide(&c), Verdict::Boot(1));
        let c = [
            cand("/dev/vda1", "aaaa", Some(journal(Step::Switching, 20))),
            cand("/dev/vdb1", "bbbb", Some(journal(Step::Switching, 20))),
        ];
        assert_eq!(decide(&c), Verdict::Boot(1));
        // an abort written later (to the source only) wins over an older `switching`
        let c = [
            cand("/dev/vda1", "aaaa", Some(journal(Step::Aborted, 30))),
            cand("/dev/vdb1", "bbbb", Some(journal(Step::Switching, 20))),
        ];
        assert_eq!(decide(&c), Verdict::Boot(0));
    }

    #[test]
    fn no_journal_or_an_unknown_device_is_refused() {
        let c = [
            cand("/dev/vda1", "aaaa", None),
            cand("/dev/vdb1", "bbbb", None),
        ];
        assert!(
            matches!(decide(&c), Verdict::Refuse(m) if m.contains("none holds a rootshift journal"))
        );
        let c = [
            cand("/dev/vdc1", "cccc", Some(journal(Step::Mirroring, 10))),
            cand("/dev/vdb1", "bbbb", None),
        ];
        assert!(matches!(decide(&c), Verdict::Refuse(m) if m.contains("not among")));
    }

    #[test]
    fn identities_match_by_partuuid_then_serial() {
        let p = |u: Option<&str>, s: Option<&str>| Identity {
            partuuid: u.map(str::to_string),
            serial: s.map(str::to_string),
        };
        assert!(p(Some("AB"), None).matches(&p(Some("ab"), Some("x"))));
        assert!(!p(Some("ab"), None).matches(&p(None, Some("x"))));
        assert!(p(None, Some("vdb#1")).matches(&p(None, Some("vdb#1"))));
        assert!(!p(None, None).matches(&p(None, None)));
    }
}
