//! Crash safety across a reboot.
//!
//! From the first copied block two devices carry the same filesystem UUID, so after a crash
//! `root=UUID=…` could land on the half-copied target (before the switch) or on the stale source
//! (after it). The journal is therefore also kept *inside* the root filesystem
//! (`/var/lib/rootshift/<wrapper>.json`, or `/.rootshift/` with a separate /var; fsynced) —
//! written through the wrapper, it reaches every leg that is in sync, and only the target after
//! the switch — and `rootshift choose` (the initrd hook, before `wrap`) picks the leg by it, the
//! journals of all devices read (the newest by generation counter decides), a lone device's own
//! journal too (it may need its twin: [`choose_root`]):
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

use crate::kernel::blockdev::BlockDev;
use crate::kernel::devnum::DevNum;
use crate::kernel::fs::{boot_uuid, probe, Content, PROBE_BYTES};
use crate::state::core::{self, CandidateView, JournalRead, JournalView};
use crate::state::journal::{self, Journal, Parsed};
use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Where, inside the root filesystem, the journal survives a reboot.
pub use crate::state::journal::PERSIST_DIR;

pub use crate::state::core::Identity;

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
}

/// One device that carries the root's filesystem UUID, with what its filesystem says.
pub type Candidate = CandidateView;

/// Which candidate to boot, or why none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Boot(usize),
    Refuse(String),
}

/// The decision, on what was read: the pure core's ([`core::choose_boot`]), with its message.
pub fn decide(cands: &[Candidate]) -> Verdict {
    match core::choose_boot(cands) {
        core::Verdict::Boot { index, .. } => Verdict::Boot(index),
        core::Verdict::Refuse(r) => Verdict::Refuse(r.message(cands)),
    }
}

fn names(cands: &[Candidate]) -> String {
    cands
        .iter()
        .map(|c| c.path.clone())
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
        if boot_uuid(&head).as_deref() == Some(uuid) {
            out.push(dev);
        }
    }
    out
}

/// Read the persistent journal(s) inside the filesystem on `dev`, mounted read-only without
/// replaying its log (nothing is written to it). The newest one, if any; a journal of a version
/// this build does not know wins over any other (it is never interpreted, see core.rs).
pub fn journal_on(dev: &BlockDev) -> JournalRead {
    match read_journals_on(dev) {
        Ok(r) => r,
        Err(e) => JournalRead::Unreadable(format!("{e:#}")),
    }
}

/// A block device made read-only at the block layer (BLKROSET) for as long as this lives; its
/// earlier setting is restored on drop. A probe mount of a possible half copy then cannot write
/// to it, whatever the filesystem driver decides (a log replay, an orphan cleanup, an error
/// handler updating the superblock).
struct ReadOnly {
    fd: fs::File,
    was_ro: bool,
}

impl ReadOnly {
    fn set(dev: &BlockDev) -> Result<ReadOnly> {
        use std::os::fd::AsFd;
        let fd = fs::File::open(&dev.path)
            .with_context(|| format!("opening {} to make it read-only", dev.display()))?;
        let was_ro = crate::kernel::ioctl::blk_ro_get(fd.as_fd())
            .with_context(|| format!("BLKROGET on {}", dev.display()))?;
        if !was_ro {
            crate::kernel::ioctl::blk_ro_set(fd.as_fd(), true)
                .with_context(|| format!("BLKROSET on {}", dev.display()))?;
        }
        Ok(ReadOnly { fd, was_ro })
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        use std::os::fd::AsFd;
        if !self.was_ro {
            let _ = crate::kernel::ioctl::blk_ro_set(self.fd.as_fd(), false);
        }
    }
}

/// The probe mount's filesystem type and options: never a log replay (ext4 `noload`, xfs
/// `norecovery`), and on an error the ext driver goes on (`errors=continue`) instead of
/// remounting or panicking on what may be a half copy.
pub fn probe_mount_opts(c: Option<Content>) -> Option<(&'static str, &'static str)> {
    match c {
        Some(Content::Ext4 | Content::Ext3) => Some(("ext4", "noload,errors=continue")),
        Some(Content::Ext2) => Some(("ext2", "errors=continue")),
        Some(Content::Xfs) => Some(("xfs", "norecovery,nouuid")),
        _ => None,
    }
}

fn read_journals_on(dev: &BlockDev) -> Result<JournalRead> {
    let head = dev.read_head(PROBE_BYTES)?;
    if probe(&head) == Some(Content::Luks) {
        return Ok(journal_in_header(dev));
    }
    let Some((fstype, opts)) = probe_mount_opts(probe(&head)) else {
        return Ok(JournalRead::Missing);
    };
    // read-only at the block level before the mount, restored after the unmount
    let ro = ReadOnly::set(dev)?;
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
    // var/lib/rootshift, or .rootshift at the top when /var was another filesystem
    let mut texts = vec![];
    for d in journal::PERSIST_DIRS {
        let Ok(rd) = fs::read_dir(mp.join(d)) else {
            continue;
        };
        for e in rd.filter_map(|e| e.ok()) {
            if e.path().extension().is_some_and(|x| x == "json") {
                texts.push(
                    journal::read_bytes(&e.path()).map_err(|err| {
                        format!("reading {}: {err}", e.file_name().to_string_lossy())
                    }),
                );
            }
        }
    }
    // not a lazy unmount: the device's read-only flag goes back only once nothing holds it
    umount2(&mp, MntFlags::empty())
        .or_else(|_| umount2(&mp, MntFlags::MNT_DETACH))
        .with_context(|| format!("unmounting {}", mp.display()))?;
    drop(ro);
    let _ = fs::remove_dir(&mp);
    Ok(best_of(texts))
}

/// An encrypted root's journal: the token a migration keeps in the container's LUKS2 header
/// (crate::state::token), read without the key. LUKS1 has no tokens: Missing.
fn journal_in_header(dev: &BlockDev) -> JournalRead {
    match crate::kernel::luks2::read(dev) {
        Err(e) => {
            JournalRead::Unreadable(format!("reading the LUKS header of {}: {e}", dev.display()))
        }
        Ok(None) => JournalRead::Missing,
        Ok(Some(Err(e))) => {
            JournalRead::Unreadable(format!("the LUKS2 header of {}: {e}", dev.display()))
        }
        Ok(Some(Ok(m))) => match m.journal_token() {
            None => JournalRead::Missing,
            Some(t) => best_of(vec![Ok::<_, String>(t.journal)]),
        },
    }
}

/// Of the journal files read in one filesystem: an unknown version if any, else the newest
/// journal, else why there is none (torn before unreadable before missing).
pub fn best_of<T: AsRef<[u8]>>(texts: Vec<std::result::Result<T, String>>) -> JournalRead {
    let mut best: Option<Journal> = None;
    let mut bad = JournalRead::Missing;
    for t in texts {
        match t.map(|t| journal::parse_bytes(t.as_ref())) {
            Err(e) => {
                if bad == JournalRead::Missing {
                    bad = JournalRead::Unreadable(e);
                }
            }
            Ok(Parsed::UnknownVersion(v)) => return JournalRead::UnknownVersion(v),
            Ok(Parsed::Torn(e)) => {
                if !matches!(bad, JournalRead::Torn(_)) {
                    bad = JournalRead::Torn(e);
                }
            }
            Ok(Parsed::Ok(j)) => {
                if best.as_ref().is_none_or(|b| match (j.seq, b.seq) {
                    // the generation counter where both have one, else the clock
                    (Some(x), Some(y)) => x > y,
                    _ => j.updated_unix > b.updated_unix,
                }) {
                    best = Some(*j);
                }
            }
        }
    }
    match best {
        Some(j) => JournalRead::Ok(JournalView::of(&j)),
        None => bad,
    }
}

/// How `rootshift choose` / `wrap` choose.
#[derive(Debug, Clone, Default)]
pub struct ChooseOpts {
    /// `rd.rootshift.pick=`: boot the candidate with this identity, whatever the journals say.
    pub pick: Option<Identity>,
    /// How long to wait for the twin a lone device's journal names (`rd.rootshift.wait=`).
    pub wait: std::time::Duration,
}

/// The default of `rd.rootshift.wait=` (seconds).
pub const DEFAULT_WAIT_SECS: u64 = 30;

/// Read the journals of `n` candidates, every one of them (the newest decides, so no journal
/// may be left unread because an earlier one looked decisive); only a journal of an unknown
/// version stops the reading (the boot is refused whatever the others say: mount no more twins).
/// Half copies are mounted too, read-only at the block level ([`journal_on`]); the ext4 driver
/// may log errors about blocks not copied yet (`errors=continue`: it goes on; seen in
/// crash-copy), which is the price of never leaving a newer journal unread.
pub fn read_all(n: usize, mut read: impl FnMut(usize) -> JournalRead) -> Vec<JournalRead> {
    let mut out = vec![];
    for i in 0..n {
        let r = read(i);
        let stop = matches!(r, JournalRead::UnknownVersion(_));
        out.push(r);
        if stop {
            break;
        }
    }
    out.resize(n, JournalRead::Missing);
    out
}

/// A stacked root (dmsquash-live's live-rw, an LVM volume, an md array, a loop device).
fn stacked(d: &BlockDev) -> bool {
    d.dm_name().is_some() || d.kname.starts_with("md") || d.loop_backing_file().is_some()
}

/// `rootshift choose` (and `wrap` without `--chosen`): which device to boot. The journal of
/// the device about to be booted is always read, also when it is the only one carrying the
/// root's filesystem UUID (so far): when it says it needs its twin (a target before the switch,
/// a source after it), the twin is waited for (`opts.wait`), then the boot refused. With two or
/// more, every journal is read and the newest decides ([`core::choose_boot`]). Any failure
/// while twins exist refuses (exit 4), never a guess.
pub fn choose_root(given: &BlockDev, opts: &ChooseOpts) -> Result<(BlockDev, Option<String>)> {
    let head = given.read_head(PROBE_BYTES)?;
    let Some(uuid) = boot_uuid(&head) else {
        return Ok((given.clone(), None));
    };
    // An encrypted root's journal is read from its LUKS2 header's token (journal_in_header):
    // when none decides, the refusal says what else tells the copies apart.
    let encrypted = probe(&head) == Some(Content::Luks);
    let kind = if encrypted { "LUKS" } else { "filesystem" };
    choose_by_uuid(given, &uuid, kind, opts).map_err(|e| match e.downcast::<Ambiguous>() {
        Ok(a) if encrypted => anyhow::Error::new(Ambiguous(encrypted_note(
            &a.0.replace("the root filesystem's UUID", "the root's LUKS UUID"),
        ))),
        Ok(a) => anyhow::Error::new(a),
        Err(e) => e,
    })
}

/// A refusal over an encrypted root's twins, with why no journal could be read (before the way
/// out, when the message has one).
fn encrypted_note(msg: &str) -> String {
    let note = ". The root is encrypted: a migration keeps its journal in the container's LUKS2 \
                header (a rootshift-journal token, readable before unlocking), and no header here has \
                one that decides (a LUKS1 container has no tokens). Right after the switch the old \
                header gets a new UUID, so twins mean the power went almost always before the switch, \
                and then the disk the system ran from is the complete one. To be sure, unlock each copy \
                read-only from a rescue system: the one whose var/lib/rootshift journal says \
                \"switched\" (or later) is the complete one; if neither does, the old disk is. Boot \
                that, then migrate again";
    match msg.find(crate::state::core::ESCAPE_HATCH_START) {
        Some(i) => format!("{}{note}{}", &msg[..i], &msg[i..]),
        None => format!("{msg}{note}"),
    }
}

fn choose_by_uuid(
    given: &BlockDev,
    uuid: &str,
    kind: &str,
    opts: &ChooseOpts,
) -> Result<(BlockDev, Option<String>)> {
    let uuid = uuid.to_string();
    let deadline = std::time::Instant::now() + opts.wait;
    let mut read: Vec<(DevNum, JournalRead)> = vec![];
    loop {
        let mut devs = devices_with_uuid(&uuid);
        if !devs.iter().any(|d| d.devnum == given.devnum) {
            // a stacked root (not scanned) or one not found: the given device is a candidate
            devs.insert(0, given.clone());
        }
        let twins = devs.len() > 1;
        let r = choose_among(
            given,
            &devs,
            &format!("{kind} UUID {uuid}"),
            opts,
            &mut read,
        );
        let r = match r {
            Err(e) if twins && !e.is::<Ambiguous>() => {
                bail!(Ambiguous(format!(
                    "{} devices carry {kind} UUID {uuid} and choosing between them failed: {e:#}",
                    devs.len()
                )))
            }
            r => r,
        };
        let waiting = matches!(&r, Err(e) if e.downcast_ref::<TwinMissing>().is_some());
        if waiting && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(500));
            continue;
        }
        return r.map_err(|e| match e.downcast::<TwinMissing>() {
            Ok(t) => anyhow::Error::new(Ambiguous(format!(
                "{} (waited {} s: rd.rootshift.wait=)",
                t.0,
                opts.wait.as_secs()
            ))),
            Err(e) => e,
        });
    }
}

/// The lone device's journal names a twin that is not there (yet).
#[derive(Debug)]
struct TwinMissing(String);
impl std::fmt::Display for TwinMissing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for TwinMissing {}

/// One round of the choice over `devs` (journals read once per device, kept in `read`).
fn choose_among(
    given: &BlockDev,
    devs: &[BlockDev],
    named: &str,
    opts: &ChooseOpts,
    read: &mut Vec<(DevNum, JournalRead)>,
) -> Result<(BlockDev, Option<String>)> {
    let mut cands: Vec<Candidate> = devs
        .iter()
        .map(|d| Candidate {
            path: d.path.display().to_string(),
            identity: Identity::of(d),
            journal: JournalRead::Missing,
        })
        .collect();
    let journals = read_all(devs.len(), |i| {
        let d = &devs[i];
        if let Some((_, r)) = read.iter().find(|(n, _)| *n == d.devnum) {
            return r.clone();
        }
        let r = journal_on(d);
        read.push((d.devnum, r.clone()));
        r
    });
    for (c, j) in cands.iter_mut().zip(journals) {
        c.journal = j;
    }
    // A stacked root with no journal of its own is what the initrd built for this boot (a live
    // medium's live-rw carries the UUID of the image it came from): boot it, as before.
    if stacked(given)
        && devs.len() > 1
        && opts.pick.is_none()
        && !matches!(
            cands[0].journal,
            JournalRead::Ok(_) | JournalRead::UnknownVersion(_)
        )
    {
        return Ok((given.clone(), None));
    }
    match core::choose_boot_picked(&cands, opts.pick.as_ref()) {
        core::Verdict::Boot {
            index,
            by: core::BootBy::Only,
        } => Ok((devs[index].clone(), None)),
        core::Verdict::Boot { index, by } => {
            let chosen = devs[index].clone();
            let how = match by {
                core::BootBy::Journal { step, .. } => {
                    format!("the rootshift journal ({}) picks", step.as_str())
                }
                _ => "rd.rootshift.pick= picks".to_string(),
            };
            let why = format!(
                "{} carry {named} ({}); {how} {}",
                match devs.len() {
                    1 => "1 device".to_string(),
                    n => format!("{n} devices"),
                },
                names(&cands),
                chosen.display()
            );
            let tell = devs.len() > 1 || chosen.devnum != given.devnum;
            Ok((chosen, tell.then_some(why)))
        }
        core::Verdict::Refuse(r @ core::BootRefusal::TwinMissing { .. }) => {
            bail!(TwinMissing(r.message(&cands)))
        }
        core::Verdict::Refuse(r) => bail!(Ambiguous(r.message(&cands))),
    }
}

pub use crate::error::Ambiguous;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_note_goes_before_the_way_out() {
        let m = format!(
            "2 devices carry it{} add rd.rootshift.pick=SERIAL=vdb",
            crate::state::core::ESCAPE_HATCH_START
        );
        let n = encrypted_note(&m);
        let enc = n.find("The root is encrypted").unwrap();
        let out = n.find("To boot one device anyway").unwrap();
        assert!(
            n.starts_with("2 devices carry it. The root is encrypted"),
            "{n}"
        );
        assert!(
            enc < out && n.ends_with("rd.rootshift.pick=SERIAL=vdb"),
            "{n}"
        );
        // no way out in the message (no identities): the note ends it
        assert!(encrypted_note("2 devices carry it").ends_with("then migrate again"));
    }
    use crate::state::journal::{DevRecord, Step};

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
            journal: match j {
                Some(j) => JournalRead::Ok(JournalView::of(&j)),
                None => JournalRead::Missing,
            },
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
    fn a_legs_journal_files_unknown_version_first_then_newest_then_why_none() {
        let text = |step, t| Ok(serde_json::to_string_pretty(&journal(step, t)).unwrap());
        let v2 = || {
            Ok(text(Step::Done, 1)
                .unwrap()
                .replacen("\"version\": 1", "\"version\": 2", 1))
        };
        let torn = || Ok("{\"version\": 1, \"wrap".to_string());
        let unreadable = || Err("reading rootshift-root.json: EIO".to_string());
        let step = |r: JournalRead| match r {
            JournalRead::Ok(j) => Some((j.step, j.updated_unix)),
            _ => None,
        };
        assert_eq!(best_of::<String>(vec![]), JournalRead::Missing);
        assert_eq!(
            step(best_of(vec![
                text(Step::Mirroring, 10),
                torn(),
                text(Step::Switching, 20)
            ])),
            Some((Step::Switching, 20))
        );
        assert_eq!(
            best_of(vec![text(Step::Switching, 20), v2()]),
            JournalRead::UnknownVersion(2)
        );
        assert!(matches!(
            best_of(vec![unreadable(), torn()]),
            JournalRead::Torn(_)
        ));
        assert!(matches!(
            best_of(vec![unreadable()]),
            JournalRead::Unreadable(_)
        ));
    }

    #[test]
    fn a_refused_boot_exits_4() {
        let c = [
            cand("/dev/vda1", "aaaa", Some(journal(Step::Mirroring, 10))),
            Candidate {
                journal: JournalRead::UnknownVersion(2),
                ..cand("/dev/vdb1", "bbbb", None)
            },
        ];
        let Verdict::Refuse(m) = decide(&c) else {
            panic!("an unknown journal version must refuse the boot")
        };
        assert!(m.contains("/dev/vdb1") && m.contains("version 2"), "{m}");
        let e = anyhow::Error::new(Ambiguous(m));
        assert_eq!(
            crate::error::exit_code(&e),
            crate::error::exit::AMBIGUOUS_ROOT
        );
    }

    /// The reading loop before issue 15 (verbatim logic): stop at the first journal that decides.
    fn old_read_loop(cands: &mut [Candidate], mut read: impl FnMut(usize) -> JournalRead) {
        for i in 0..cands.len() {
            cands[i].journal = read(i);
            if matches!(cands[i].journal, JournalRead::UnknownVersion(_)) {
                break;
            }
            if matches!(cands[i].journal, JournalRead::Ok(_))
                && matches!(core::choose_boot(cands), core::Verdict::Boot { .. })
            {
                break;
            }
        }
    }

    #[test]
    fn every_journal_is_read_not_the_first_that_decides() {
        // the target comes first in device order and its blocks still say an earlier attempt's
        // `switching`; the source's journal (a later attempt, copying) was never read
        let mut stale = journal(Step::Switching, 20);
        stale.continue_from(Some(4));
        stale.seq = Some(5);
        let mut now = journal(Step::Mirroring, 20);
        now.continue_from(Some(8));
        now.seq = Some(9);
        let reads = [
            JournalRead::Ok(JournalView::of(&stale)),
            JournalRead::Ok(JournalView::of(&now)),
        ];
        let mut cands = [
            cand("/dev/nvme0n1p1", "bbbb", None),
            cand("/dev/sda1", "aaaa", None),
        ];
        let mut mounted = 0;
        old_read_loop(&mut cands, |i| {
            mounted += 1;
            reads[i].clone()
        });
        assert_eq!(mounted, 1);
        // FAILS on the old code: the stale half copy boots
        assert_eq!(decide(&cands), Verdict::Boot(0));
        let mut mounted = 0;
        let all = read_all(2, |i| {
            mounted += 1;
            reads[i].clone()
        });
        assert_eq!(mounted, 2);
        for (c, j) in cands.iter_mut().zip(all) {
            c.journal = j;
        }
        assert_eq!(decide(&cands), Verdict::Boot(1));
        // an unknown version stops the reading: the boot is refused whatever the others say
        let mut mounted = 0;
        let all = read_all(3, |i| {
            mounted += 1;
            [
                JournalRead::Missing,
                JournalRead::UnknownVersion(9),
                JournalRead::Missing,
            ][i]
                .clone()
        });
        assert_eq!(mounted, 2);
        assert_eq!(all.len(), 3);
    }

    #[test]
    fn probe_mounts_never_replay_a_log_and_go_on_after_errors() {
        assert_eq!(
            probe_mount_opts(Some(Content::Ext4)),
            Some(("ext4", "noload,errors=continue"))
        );
        assert_eq!(
            probe_mount_opts(Some(Content::Ext3)),
            Some(("ext4", "noload,errors=continue"))
        );
        assert_eq!(
            probe_mount_opts(Some(Content::Ext2)),
            Some(("ext2", "errors=continue"))
        );
        assert_eq!(
            probe_mount_opts(Some(Content::Xfs)),
            Some(("xfs", "norecovery,nouuid"))
        );
        assert_eq!(probe_mount_opts(None), None);
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
