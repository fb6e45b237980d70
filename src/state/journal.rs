//! The migration journal: a small versioned JSON file under /run/rootshift recording the state
//! machine's step, so `status`, `abort` and a later run know where an interrupted migration was.
//!
//! Written atomically (temp file, fsync, rename). /run is a tmpfs: the journal records what this
//! boot did; it is not on the device being migrated and is never written while that is suspended.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub const DIR: &str = "/run/rootshift";
pub const VERSION: u32 = 1;

pub use super::core::Step;

/// Where the journal's copy inside the root filesystem lives (relative to its mount point).
pub const PERSIST_DIR: &str = "var/lib/rootshift";
/// Where it lives when [`PERSIST_DIR`] is on another filesystem (a separate /var would hide it
/// from the boot hook, which mounts the root filesystem alone).
pub const FALLBACK_DIR: &str = ".rootshift";
/// Every place a reader looks, in that order.
pub const PERSIST_DIRS: [&str; 2] = [PERSIST_DIR, FALLBACK_DIR];

/// The directory for the copy inside the root filesystem mounted at `root` (created): the first
/// of [`PERSIST_DIRS`] that is on that filesystem itself (same `st_dev` as `root`).
pub fn persist_dir(root: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| {
        fs::metadata(p)
            .map(|m| m.dev())
            .with_context(|| format!("stat {}", p.display()))
    };
    let root_dev = dev(root)?;
    for d in PERSIST_DIRS {
        let dir = root.join(d);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        if dev(&dir)? == root_dev {
            return Ok(dir);
        }
    }
    anyhow::bail!(
        "neither {} nor {} is on the root filesystem: the boot hook could not read the journal",
        root.join(PERSIST_DIR).display(),
        root.join(FALLBACK_DIR).display()
    )
}

/// A journal file's bytes, for [`parse_bytes`] (not text: a torn write may have left bytes that
/// are not UTF-8, and the two-slot copy is read at fixed byte offsets).
pub fn read_bytes(p: &Path) -> std::io::Result<Vec<u8>> {
    fs::read(p)
}

/// [`parse`] on a file's bytes: the two-slot copy (format 2) by its fixed offsets, anything
/// else as text (bytes that are not UTF-8 make it torn).
pub fn parse_bytes(bytes: &[u8]) -> Parsed {
    // the persisted copy's format 2: two slots, each a format-1 journal (persisted.rs)
    if super::persisted::is_v2(bytes) {
        return match super::persisted::read_slots(bytes) {
            Ok(inner) if super::persisted::is_v2(inner.as_bytes()) => {
                Parsed::Torn("a two-slot file inside a slot".into())
            }
            Ok(inner) => parse_bytes(inner.as_bytes()),
            Err(e) => Parsed::Torn(e),
        };
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_text(text),
        Err(e) => Parsed::Torn(e.to_string()),
    }
}

/// What a journal file's text is.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Ok(Box<Journal>),
    /// A journal of a version this build does not know ([`super::core::KNOWN_VERSIONS`]): its
    /// other fields are not looked at.
    UnknownVersion(u64),
    /// Not a journal: a torn write, garbage, a missing field.
    Torn(String),
}

/// Parse a journal file (the persisted copy's padding of spaces included). The version is read
/// first, alone; only a known version is parsed as a [`Journal`].
pub fn parse(text: &str) -> Parsed {
    parse_bytes(text.as_bytes())
}

/// A format-1 journal's text (the /run copy, the persisted copy before format 2, a slot's).
fn parse_text(text: &str) -> Parsed {
    #[derive(Deserialize)]
    struct Versioned {
        version: u64,
    }
    match serde_json::from_str::<Versioned>(text) {
        Err(e) => return Parsed::Torn(e.to_string()),
        Ok(v) if !super::core::known_version(v.version) => {
            return Parsed::UnknownVersion(v.version)
        }
        Ok(_) => {}
    }
    match serde_json::from_str::<Journal>(text) {
        Ok(j) => Parsed::Ok(Box::new(j)),
        Err(e) => Parsed::Torn(e.to_string()),
    }
}

/// A device as recorded: number, path, size, and how to recognise it after a reboot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevRecord {
    pub dev: String,
    pub path: String,
    pub size_bytes: u64,
    #[serde(default)]
    pub identity: Option<super::core::Identity>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    pub version: u32,
    pub wrapper: String,
    pub backend: String,
    pub step: Step,
    pub source: DevRecord,
    pub target: DevRecord,
    pub started_unix: u64,
    pub updated_unix: u64,
    /// The journal generation of this filesystem: one more with every save, and a migration
    /// continues from the counter of the journal it finds (`begin_generation`), so a later
    /// attempt's journal is newer than any earlier attempt's left on a target's blocks, whatever
    /// the clocks say. Absent in journals written before it (they order by `updated_unix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// A random id of this migration attempt (absent in older journals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_id: Option<String>,
    /// Suspend ioctl → resume ioctl return, for the switch that succeeded.
    #[serde(default)]
    pub switch_window_ms: Option<f64>,
    #[serde(default)]
    pub copy_seconds: Option<f64>,
    /// "used" or "full".
    #[serde(default)]
    pub copy_mode: Option<String>,
    #[serde(default)]
    pub region_bytes: Option<u64>,
    /// What the kernel had to copy.
    #[serde(default)]
    pub copied_bytes: Option<u64>,
    #[serde(default)]
    pub fs_before_bytes: Option<u64>,
    #[serde(default)]
    pub fs_after_bytes: Option<u64>,
    /// Why the migration stopped, when it did not finish.
    #[serde(default)]
    pub error: Option<String>,
    /// `--image-to`: the partition an overlay root's image files move to (`--resume` finishes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_to: Option<String>,
    /// The source was a live medium's root.
    #[serde(default)]
    pub source_live: bool,
    /// Clone legs filled with the target.
    #[serde(default)]
    pub clones: Vec<DevRecord>,
    /// How many of them already have their own ids.
    #[serde(default)]
    pub clones_done: usize,
    /// Bytes `--verify` compared (identical).
    #[serde(default)]
    pub verified_bytes: Option<u64>,
    /// The new filesystem UUID the detached source got right after the switch.
    #[serde(default)]
    pub source_uuid_changed: Option<String>,
    /// A root filesystem to keep a copy of the journal in (`var/lib/rootshift/`), where it
    /// survives a reboot; not serialised.
    #[serde(skip)]
    pub persist_root: Option<PathBuf>,
    /// An encrypted root's wrapper, whose LUKS2 header keeps a copy of the journal too (a token,
    /// [`super::token`]), for the boot to read without the key; written with the copy in
    /// [`Self::persist_root`], never alone. Not serialised.
    #[serde(skip)]
    pub header_token_on: Option<PathBuf>,
    /// The install step (`--install` / `rootshift finish`), when asked for.
    #[serde(default)]
    pub install: Option<InstallRecord>,
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn path_for(wrapper: &str) -> PathBuf {
    PathBuf::from(DIR).join(format!("{wrapper}.json"))
}

impl Journal {
    pub fn new(wrapper: &str, backend: &str, source: DevRecord, target: DevRecord) -> Journal {
        let now = now_unix();
        Journal {
            version: VERSION,
            wrapper: wrapper.to_string(),
            backend: backend.to_string(),
            step: Step::Mirroring,
            source,
            target,
            started_unix: now,
            updated_unix: now,
            seq: None,
            migration_id: None,
            switch_window_ms: None,
            copy_seconds: None,
            copy_mode: None,
            region_bytes: None,
            copied_bytes: None,
            fs_before_bytes: None,
            fs_after_bytes: None,
            error: None,
            source_live: false,
            image_to: None,
            clones: vec![],
            clones_done: 0,
            verified_bytes: None,
            source_uuid_changed: None,
            persist_root: None,
            header_token_on: None,
            install: None,
        }
    }

    /// Read the journal of a wrapper; None when there is none. After a reboot /run is empty:
    /// then the copy kept in the root filesystem is read.
    pub fn load(wrapper: &str) -> Result<Option<Journal>> {
        let mut p = path_for(wrapper);
        if !p.exists() {
            if let Some(persisted) = PERSIST_DIRS
                .iter()
                .map(|d| Path::new("/").join(d).join(format!("{wrapper}.json")))
                .find(|p| p.exists())
            {
                p = persisted;
            }
        }
        load_from(&p)
    }
}

/// Read a journal file; None when there is none. A journal of an unknown version is refused.
fn load_from(p: &Path) -> Result<Option<Journal>> {
    let text = match read_bytes(p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
    };
    match parse_bytes(&text) {
        Parsed::Ok(j) => Ok(Some(*j)),
        Parsed::UnknownVersion(v) => Err(crate::error::refuse(
            format!(
                "{} is a journal of version {v}, which this rootshift (journal version {VERSION}) \
                 does not read: it was written by another rootshift; not acting on a guess",
                p.display()
            ),
            Some("use the rootshift that wrote it (the installed one or the initrd's), or move the file away"),
        )),
        Parsed::Torn(e) => Err(anyhow::anyhow!("parsing {}: {e}", p.display())),
    }
}

impl Journal {
    /// A new migration attempt: a fresh random id, and the generation counter continued from
    /// the highest one found in this wrapper's journals (the /run copy, the copy inside the root
    /// filesystem), so that this attempt's saves are newer than anything an earlier attempt left.
    pub fn begin_generation(&mut self) {
        let name = format!("{}.json", self.wrapper);
        let prev = std::iter::once(path_for(&self.wrapper))
            .chain(
                PERSIST_DIRS
                    .iter()
                    .map(|d| Path::new("/").join(d).join(&name)),
            )
            .filter_map(|p| read_bytes(&p).ok())
            .filter_map(|t| match parse_bytes(&t) {
                Parsed::Ok(j) => j.seq,
                _ => None,
            })
            .max();
        self.continue_from(prev);
    }

    /// [`Self::begin_generation`] on what was found (`prev`: the highest counter, if any).
    pub fn continue_from(&mut self, prev: Option<u64>) {
        self.seq = Some(prev.unwrap_or(0));
        self.migration_id = Some(uuid::Uuid::new_v4().simple().to_string());
    }

    /// Record a step (atomically).
    pub fn set_step(&mut self, step: Step) -> Result<()> {
        self.step = step;
        self.save()
    }

    /// Save to /run only, never to the persisted copy: for when the device under `/` may be
    /// suspended or its filesystem frozen (a write or fsync there would hang).
    pub fn save_run_only(&mut self) -> Result<()> {
        let persist = self.persist_root.take();
        let r = self.save();
        self.persist_root = persist;
        r
    }

    pub fn save(&mut self) -> Result<()> {
        self.updated_unix = now_unix();
        if let Some(n) = self.seq {
            self.seq = Some(n + 1);
        }
        fs::create_dir_all(DIR).with_context(|| format!("creating {DIR}"))?;
        let text = serde_json::to_string_pretty(self)?;
        write_synced(&path_for(&self.wrapper), text.as_bytes())?;
        if let Some(root) = &self.persist_root {
            let dir = persist_dir(root)?;
            let checkpoint = || -> Result<()> {
                // FIFREEZE writes the whole log out to the home blocks; thaw right away
                let frozen = crate::kernel::fs::Frozen::freeze(root).with_context(|| {
                    format!("freezing {} to checkpoint the journal file", root.display())
                })?;
                frozen
                    .thaw()
                    .with_context(|| format!("thawing {}", root.display()))?;
                Ok(())
            };
            write_persisted(
                &dir.join(format!("{}.json", self.wrapper)),
                &text,
                checkpoint,
            )?;
            if let Some(dev) = &self.header_token_on {
                super::token::write(dev, &serde_json::to_string(self)?)?;
            }
        }
        Ok(())
    }
}

/// The size of the journal's copy inside the root filesystem. Fixed, so that every save after
/// the first overwrites the same blocks of the same inode.
pub const PERSIST_BYTES: usize = super::persisted::BYTES;

/// The journal's copy inside the root filesystem, readable by the boot hook, which mounts that
/// filesystem read-only *without replaying its log* (ext4 `noload`, xfs `norecovery`: the device
/// may be a twin that must not be written). Such a mount sees only what has reached the blocks'
/// home locations. A rename-into-place save makes a new inode each time, which lives in the fs
/// log until the next checkpoint, so the hook met "iget: checksum invalid" on it after a power
/// cut (crash-copy) and could not tell the legs apart. Hence: the file is created once (its
/// fixed [`PERSIST_BYTES`]), then the filesystem is frozen and thawed — a freeze checkpoints the
/// whole log — so its inode, extents and directory entry are at home; every later save rewrites
/// the data blocks of one of its two slots in place (data goes straight to the home blocks; only
/// the timestamps go through the log) and fsyncs. The format (version 2, two slots with a
/// sequence number and a checksum each, so a torn save loses only itself) is in persisted.rs;
/// a format-1 file there (one padded JSON journal, written before) is replaced whole.
fn write_persisted(p: &Path, text: &str, checkpoint: impl FnOnce() -> Result<()>) -> Result<()> {
    super::persisted::write(p, text, |bytes| {
        write_synced(p, bytes)?;
        checkpoint()
    })
}

/// Write a file atomically and durably: temp file, fsync, rename, fsync of the directory.
fn write_synced(p: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = p.with_extension("json.tmp");
    let mut f = fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, p).with_context(|| format!("renaming {} into place", tmp.display()))?;
    if let Some(d) = p.parent() {
        if let Ok(df) = fs::File::open(d) {
            df.sync_all()
                .with_context(|| format!("syncing {}", d.display()))?;
        }
    }
    Ok(())
}

impl Journal {
    /// Remove the copy kept in the root filesystem (a finished or aborted migration needs it no
    /// more; the /run copy stays for `status`).
    pub fn drop_persisted(&self) {
        if let Some(root) = &self.persist_root {
            let _ = fs::remove_file(
                root.join(PERSIST_DIR)
                    .join(format!("{}.json", self.wrapper)),
            );
            if let Some(dev) = &self.header_token_on {
                let _ = super::token::remove(dev);
            }
        }
    }
}

impl Journal {
    /// Remove the copy in the LUKS2 header (a finished migration: the header is the user's
    /// again). Best effort: a token left behind only repeats what the filesystem's copy says.
    pub fn drop_header_token(&self) {
        if let Some(dev) = &self.header_token_on {
            let _ = super::token::remove(dev);
        }
    }
}

/// The journal's record of the install step (`migrate --install`, `rootshift finish`), kept
/// up to date by `finish::run` as it goes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct InstallRecord {
    pub bootloader: String,
    pub initramfs: String,
    /// planned | running | done | failed
    pub state: String,
    #[serde(default)]
    pub root_uuid_before: Option<String>,
    #[serde(default)]
    pub root_uuid: Option<String>,
    /// Where the fresh UUID went: "target (online)", "source (offline)", "none (live medium)".
    #[serde(default)]
    pub uuid_changed_on: Option<String>,
    #[serde(default)]
    pub source_uuid: Option<String>,
    #[serde(default)]
    pub machine_id: Option<String>,
    #[serde(default)]
    pub steps: Vec<String>,
    #[serde(default)]
    pub error: Option<String>,
}

impl super::core::JournalView {
    /// What the boot choice needs of a journal.
    pub fn of(j: &Journal) -> super::core::JournalView {
        let leg = |r: &DevRecord| super::core::LegView {
            path: r.path.clone(),
            identity: r.identity.clone(),
        };
        super::core::JournalView {
            wrapper: j.wrapper.clone(),
            backend: j.backend.clone(),
            step: j.step,
            started_unix: j.started_unix,
            updated_unix: j.updated_unix,
            seq: j.seq,
            migration: j.migration_id.clone(),
            source: leg(&j.source),
            target: leg(&j.target),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_json_round_trip() {
        let rec = |d: &str| DevRecord {
            dev: d.into(),
            path: "/dev/x".into(),
            size_bytes: 1,
            identity: None,
        };
        let mut j = Journal::new("rootshift-root", "dm-mirror", rec("254:0"), rec("254:16"));
        j.step = Step::Switched;
        j.switch_window_ms = Some(3.5);
        let text = serde_json::to_string(&j).unwrap();
        assert!(text.contains("\"step\":\"switched\""));
        let back: Journal = serde_json::from_str(&text).unwrap();
        assert_eq!(back, j);
    }

    #[test]
    fn persisted_copy_has_a_fixed_size_and_parses_with_its_padding() {
        let dir =
            std::env::temp_dir().join(format!("rootshift-journal-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("rootshift-root.json");
        let rec = |d: &str| DevRecord {
            dev: d.into(),
            path: "/dev/x".into(),
            size_bytes: 1,
            identity: None,
        };
        let mut j = Journal::new("rootshift-root", "dm-mirror", rec("254:0"), rec("254:16"));
        // the first save creates the file and asks for the checkpoint (not a real freeze here)
        let mut checkpoints = 0;
        write_persisted(&p, &serde_json::to_string_pretty(&j).unwrap(), || {
            checkpoints += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(checkpoints, 1);
        assert_eq!(fs::metadata(&p).unwrap().len(), PERSIST_BYTES as u64);
        use std::os::unix::fs::MetadataExt;
        let ino = fs::metadata(&p).unwrap().ino();
        j.step = Step::Switching;
        write_persisted(&p, &serde_json::to_string_pretty(&j).unwrap(), || {
            panic!("no checkpoint in place")
        })
        .unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().ino(),
            ino,
            "later saves rewrite the same inode"
        );
        assert_eq!(fs::metadata(&p).unwrap().len(), PERSIST_BYTES as u64);
        // format 2 (two slots): read through parse (load_from), as every reader does
        let back = load_from(&p).unwrap().unwrap();
        assert_eq!(back.step, Step::Switching);
        let huge = "x".repeat(PERSIST_BYTES);
        assert!(write_persisted(&p, &huge, || Ok(())).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn loading_refuses_an_unknown_version_and_reads_a_known_one() {
        let dir = std::env::temp_dir().join(format!("rootshift-load-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("rootshift-root.json");
        assert!(load_from(&p).unwrap().is_none());
        let rec = |d: &str| DevRecord {
            dev: d.into(),
            path: "/dev/x".into(),
            size_bytes: 1,
            identity: None,
        };
        let j = Journal::new("rootshift-root", "md-raid1", rec("8:0"), rec("8:16"));
        let text = serde_json::to_string_pretty(&j).unwrap();
        fs::write(&p, &text).unwrap();
        assert_eq!(load_from(&p).unwrap(), Some(j));
        for v in ["2", "0"] {
            fs::write(
                &p,
                text.replacen("\"version\": 1", &format!("\"version\": {v}"), 1),
            )
            .unwrap();
            let e = load_from(&p).unwrap_err();
            assert_eq!(crate::error::exit_code(&e), crate::error::exit::REFUSED);
            assert!(e.to_string().contains(&format!("version {v}")), "{e}");
        }
        fs::write(&p, &text[..text.len() / 2]).unwrap();
        let e = load_from(&p).unwrap_err();
        assert_eq!(crate::error::exit_code(&e), crate::error::exit::FAILED);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_generation_grows_with_every_save_and_continues_across_attempts() {
        let rec = |d: &str| DevRecord {
            dev: d.into(),
            path: "/dev/x".into(),
            size_bytes: 1,
            identity: None,
        };
        let mut j = Journal::new("rootshift-root", "dm-mirror", rec("254:0"), rec("254:16"));
        // a journal as before the counter: serialised without it (the golden files' form)
        let text = serde_json::to_string(&j).unwrap();
        assert!(
            !text.contains("\"seq\"") && !text.contains("migration_id"),
            "{text}"
        );
        j.continue_from(Some(41));
        let first = j.migration_id.clone().unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(j.seq, Some(41));
        // save() bumps it (not run here: it writes /run); the bump alone
        if let Some(n) = j.seq {
            j.seq = Some(n + 1);
        }
        let back = match parse(&serde_json::to_string_pretty(&j).unwrap()) {
            Parsed::Ok(b) => b,
            other => panic!("{other:?}"),
        };
        assert_eq!(back.seq, Some(42));
        assert_eq!(back.migration_id.as_deref(), Some(first.as_str()));
        assert_eq!(super::super::core::JournalView::of(&back).seq, Some(42));
        let mut again = j.clone();
        again.continue_from(back.seq);
        assert_eq!(again.seq, Some(42));
        assert_ne!(
            again.migration_id, j.migration_id,
            "a new attempt, a new id"
        );
        j.continue_from(None);
        assert_eq!(j.seq, Some(0));
    }

    #[test]
    fn the_two_slot_copy_parses_and_survives_a_torn_slot() {
        let rec = |d: &str| DevRecord {
            dev: d.into(),
            path: "/dev/x".into(),
            size_bytes: 1,
            identity: None,
        };
        let mut j = Journal::new("rootshift-root", "dm-mirror", rec("254:0"), rec("254:16"));
        j.continue_from(Some(3));
        let older = serde_json::to_string_pretty(&j).unwrap();
        let mut f = super::super::persisted::layout(&older, 1).unwrap();
        j.step = Step::Switching;
        j.seq = Some(4);
        let newer = serde_json::to_string_pretty(&j).unwrap();
        // the next save goes to slot 0 (4096..32768)
        let (i, _) = super::super::persisted::next_slot(&f);
        assert_eq!(i, 0);
        let mut whole = f.clone();
        let dir = std::env::temp_dir().join(format!("rootshift-2slot-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("rootshift-root.json");
        fs::write(&p, &whole).unwrap();
        write_persisted(&p, &newer, || panic!("in place")).unwrap();
        whole = fs::read(&p).unwrap();
        match parse_bytes(&whole) {
            Parsed::Ok(b) => assert_eq!((b.step, b.seq), (Step::Switching, Some(4))),
            other => panic!("{other:?}"),
        }
        // the same save torn (its first 512 bytes garbage): the previous save is read
        f[4096..4608].fill(0xff);
        match parse_bytes(&f) {
            Parsed::Ok(b) => assert_eq!((b.step, b.seq), (Step::Mirroring, Some(3))),
            other => panic!("{other:?}"),
        }
        // the same torn save on the format-1 copy (one padded JSON, rewritten in place): the
        // journal is lost (what the boot met before format 2)
        let mut v1 = newer.clone().into_bytes();
        v1.push(b'\n');
        v1.resize(PERSIST_BYTES, b' ');
        assert!(matches!(parse_bytes(&v1), Parsed::Ok(_)));
        v1[..512].fill(0xff);
        assert!(matches!(parse_bytes(&v1), Parsed::Torn(_)));
        // the format-1 parse path on a format-2 file (what an older rootshift does): version 2,
        // never interpreted
        assert!(!super::super::core::known_version(2));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_copy_goes_where_the_root_filesystem_itself_has_it() {
        let dir = std::env::temp_dir().join(format!("rootshift-pdir-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        // one filesystem here: var/lib/rootshift (a separate /var: .rootshift, VM-tested)
        assert_eq!(persist_dir(&dir).unwrap(), dir.join(PERSIST_DIR));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn step_order_marks_the_point_of_no_return() {
        assert!(!Step::Mirroring.switched());
        assert!(!Step::Aborted.switched());
        assert!(Step::Switched.switched() && Step::Grown.switched() && Step::Done.switched());
        assert!(Step::Mirroring < Step::Switching && Step::Switching < Step::Switched);
        assert!(!Step::Switching.switched());
    }
}
