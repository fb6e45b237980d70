//! Devices a journal records, found again in this boot by identity, never by `major:minor`:
//! numbers change between boots (disks probed in another order, a USB disk later than an NVMe
//! one), and a number reused by another disk must never get `tune2fs -U`, `e2fsck -y`,
//! `resize2fs` or its first MiB zeroed.
//!
//! A record is resolved by its PARTUUID, else its disk serial/WWN and partition number, among
//! every block device present; the identity must be unique (cloned disks share GPT ids), and
//! the device found must show the content expected (the filesystem UUID, or for a half copy the
//! root's UUID or nothing) before anything touches it. Otherwise the caller refuses, naming both
//! identities. [`resolve`] is the pure decision; [`find`] reads the devices.

// A refusal carries both identities for its message; one is built per command, on a path that
// stops there: its size is not worth a Box.
#![allow(clippy::result_large_err)]

use std::fmt;

use super::journal::DevRecord;
use super::recovery::Identity;
use crate::kernel::blockdev::BlockDev;
use crate::kernel::devnum::DevNum;
use crate::kernel::fs::{boot_uuid, PROBE_BYTES};

/// A block device present in this boot, as resolution sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Present {
    pub devnum: DevNum,
    pub path: String,
    pub identity: Identity,
    /// The filesystem UUID its first bytes show (read only for identity matches).
    pub fs_uuid: Option<String>,
}

/// What the device found must show before anything is done to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// A filesystem with one of these UUIDs (the root's; the new one a step already gave it).
    FsUuid(Vec<String>),
    /// A half copy of the root: its UUID, or no filesystem yet (the copy never reached the
    /// superblock, or the first MiB was cleared already). Another filesystem is not a half copy.
    HalfCopy(String),
    /// Anything: the kernel's own mapping decides (a leg the wrapper maps right now).
    Any,
}

/// Why a record names no device in this boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// The journal recorded no identity for it (no PARTUUID, no serial).
    NoIdentity,
    /// No device present has the identity.
    Missing,
    /// More than one device has it (cloned disks): which one is meant cannot be told.
    Ambiguous(Vec<Present>),
    /// The one device with the identity shows other content.
    WrongContent(Present),
}

/// A record and why it could not be resolved: the message names both identities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub what: String,
    pub record: DevRecord,
    pub expect: Expect,
    pub why: Unresolved,
}

pub fn describe(id: &Identity) -> String {
    match (&id.partuuid, &id.serial) {
        (Some(p), Some(s)) => format!("PARTUUID={p}, serial {s}"),
        (Some(p), None) => format!("PARTUUID={p}"),
        (None, Some(s)) => format!("serial {s}"),
        (None, None) => "no identity".into(),
    }
}

fn describe_present(p: &Present) -> String {
    format!(
        "{} ({}, {}, filesystem UUID {})",
        p.path,
        p.devnum,
        describe(&p.identity),
        p.fs_uuid.as_deref().unwrap_or("none")
    )
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rec = &self.record;
        let recorded = format!(
            "the {} recorded as {} ({} before the reboot, {})",
            self.what,
            rec.path,
            rec.dev,
            rec.identity
                .as_ref()
                .map(describe)
                .unwrap_or_else(|| "no identity".into())
        );
        match &self.why {
            Unresolved::NoIdentity => write!(
                f,
                "{recorded} cannot be found again: the journal has no PARTUUID or serial for it, and device numbers change between boots"
            ),
            Unresolved::Missing => write!(f, "{recorded} is not present: no device has that identity"),
            Unresolved::Ambiguous(found) => write!(
                f,
                "{recorded} is not unique: {} devices have that identity ({}); cloned disks share ids, which one is meant cannot be told",
                found.len(),
                found.iter().map(describe_present).collect::<Vec<_>>().join("; ")
            ),
            Unresolved::WrongContent(p) => {
                let want = match &self.expect {
                    Expect::FsUuid(u) => format!("filesystem UUID {}", u.join(" or ")),
                    Expect::HalfCopy(u) => format!("a half copy (filesystem UUID {u} or none)"),
                    Expect::Any => "anything".into(),
                };
                write!(f, "{recorded} has the identity of {}, which does not show {want}", describe_present(p))
            }
        }
    }
}

impl std::error::Error for Refused {}

fn shows(p: &Present, expect: &Expect) -> bool {
    let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    match expect {
        Expect::Any => true,
        Expect::FsUuid(u) => p
            .fs_uuid
            .as_deref()
            .is_some_and(|f| u.iter().any(|u| same(u, f))),
        Expect::HalfCopy(u) => p.fs_uuid.as_deref().is_none_or(|f| same(u, f)),
    }
}

/// The one device present with the record's identity, if it shows what is expected. The
/// recorded number plays no part.
pub fn resolve<'a>(
    rec: &DevRecord,
    present: &'a [Present],
    expect: &Expect,
) -> Result<&'a Present, Unresolved> {
    let Some(id) = rec.identity.as_ref().filter(|i| i.is_known()) else {
        return Err(Unresolved::NoIdentity);
    };
    let found: Vec<&Present> = present.iter().filter(|p| id.matches(&p.identity)).collect();
    match found.as_slice() {
        [] => Err(Unresolved::Missing),
        [one] if shows(one, expect) => Ok(one),
        [one] => Err(Unresolved::WrongContent((*one).clone())),
        many => Err(Unresolved::Ambiguous(
            many.iter().map(|p| (*p).clone()).collect(),
        )),
    }
}

/// Every block device in this boot with its identity (sysfs).
pub fn scan() -> Vec<BlockDev> {
    let Ok(dir) = std::fs::read_dir("/sys/class/block") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("dev")).ok())
        .filter_map(|s| s.trim().parse::<DevNum>().ok())
        .filter_map(|d| BlockDev::from_devnum(d).ok())
        .collect()
}

/// Resolve a record among the devices present now: [`resolve`] on what sysfs and the devices'
/// first bytes show (read only for the devices with the record's identity).
pub fn find(what: &str, rec: &DevRecord, expect: Expect) -> Result<BlockDev, Refused> {
    let want = rec.identity.clone().unwrap_or_default();
    let mut devs = vec![];
    let mut present = vec![];
    for d in scan() {
        let identity = Identity::of(&d);
        let fs_uuid = if want.is_known() && want.matches(&identity) {
            d.read_head(PROBE_BYTES).ok().and_then(|h| boot_uuid(&h))
        } else {
            None
        };
        present.push(Present {
            devnum: d.devnum,
            path: d.display(),
            identity,
            fs_uuid,
        });
        devs.push(d);
    }
    match resolve(rec, &present, &expect) {
        Ok(p) => Ok(devs
            .into_iter()
            .find(|d| d.devnum == p.devnum)
            .expect("resolved among the scanned devices")),
        Err(why) => Err(Refused {
            what: what.to_string(),
            record: rec.clone(),
            expect,
            why,
        }),
    }
}

/// The refusal as the error the commands return, with the way out.
pub fn refusal(r: Refused) -> anyhow::Error {
    crate::error::refuse(
        format!("{r}; nothing was changed on it"),
        Some("attach the recorded device (alone, not a clone of it) and run the command again; `rootshift status` shows the journal"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "0b4c1d2e-0000-4000-8000-000000000001";
    const OTHER: &str = "0b4c1d2e-0000-4000-8000-0000000000ff";

    fn id(partuuid: Option<&str>, serial: Option<&str>) -> Identity {
        Identity {
            partuuid: partuuid.map(str::to_string),
            serial: serial.map(str::to_string),
        }
    }

    fn rec(dev: &str, identity: Option<Identity>) -> DevRecord {
        DevRecord {
            dev: dev.into(),
            path: "/dev/vdb1".into(),
            size_bytes: 1 << 30,
            identity,
        }
    }

    fn dev(n: u32, path: &str, identity: Identity, fs: Option<&str>) -> Present {
        Present {
            devnum: DevNum::new(252, n),
            path: path.into(),
            identity,
            fs_uuid: fs.map(str::to_string),
        }
    }

    fn root() -> Expect {
        Expect::FsUuid(vec![ROOT.into()])
    }

    #[test]
    fn unique_match() {
        let present = [
            dev(0, "/dev/vda", id(None, Some("vda")), None),
            dev(1, "/dev/vda1", id(Some("AAAA"), Some("vda#1")), Some(ROOT)),
            dev(17, "/dev/vdb1", id(Some("BBBB"), Some("vdb#1")), Some(ROOT)),
        ];
        let r = rec("252:17", Some(id(Some("bbbb"), Some("vdb#1"))));
        assert_eq!(resolve(&r, &present, &root()).unwrap().path, "/dev/vdb1");
        // a whole disk by serial alone
        let r = rec("252:0", Some(id(None, Some("vda"))));
        assert_eq!(
            resolve(&r, &present, &Expect::Any).unwrap().path,
            "/dev/vda"
        );
    }

    #[test]
    fn number_changed_is_found_by_identity_and_the_number_is_ignored() {
        // before the reboot the target was 252:17; now the disks came back swapped and 252:17 is
        // the source's partition
        let present = [
            dev(1, "/dev/vda1", id(Some("BBBB"), Some("t#1")), Some(ROOT)),
            dev(17, "/dev/vdb1", id(Some("AAAA"), Some("s#1")), Some(ROOT)),
        ];
        let r = rec("252:17", Some(id(Some("BBBB"), Some("t#1"))));
        let p = resolve(&r, &present, &root()).unwrap();
        assert_eq!(p.devnum, DevNum::new(252, 1));
    }

    #[test]
    fn no_match_and_no_identity() {
        let present = [dev(17, "/dev/vdb1", id(Some("AAAA"), None), Some(ROOT))];
        let r = rec("252:17", Some(id(Some("BBBB"), None)));
        assert_eq!(resolve(&r, &present, &root()), Err(Unresolved::Missing));
        // the number alone is never enough, even when a device has it
        let r = rec("252:17", None);
        assert_eq!(resolve(&r, &present, &root()), Err(Unresolved::NoIdentity));
        let r = rec("252:17", Some(id(None, None)));
        assert_eq!(resolve(&r, &present, &root()), Err(Unresolved::NoIdentity));
    }

    #[test]
    fn two_matches_refuse_naming_both() {
        // a cloned disk: same GPT, same PARTUUIDs
        let present = [
            dev(1, "/dev/vda1", id(Some("AAAA"), Some("x#1")), Some(ROOT)),
            dev(17, "/dev/vdb1", id(Some("AAAA"), Some("y#1")), Some(OTHER)),
        ];
        let r = rec("252:1", Some(id(Some("AAAA"), Some("x#1"))));
        let Err(why) = resolve(&r, &present, &root()) else {
            panic!("two devices with one PARTUUID must not resolve")
        };
        assert!(matches!(&why, Unresolved::Ambiguous(v) if v.len() == 2));
        let msg = Refused {
            what: "target".into(),
            record: r,
            expect: root(),
            why,
        }
        .to_string();
        assert!(
            msg.contains("/dev/vda1") && msg.contains("/dev/vdb1"),
            "{msg}"
        );
        assert!(msg.contains("PARTUUID=AAAA"), "{msg}");
    }

    #[test]
    fn fs_uuid_mismatch_refuses() {
        let present = [dev(17, "/dev/vdb1", id(Some("BBBB"), None), Some(OTHER))];
        let r = rec("252:17", Some(id(Some("BBBB"), None)));
        let Err(why) = resolve(&r, &present, &root()) else {
            panic!("another filesystem must not resolve")
        };
        assert!(matches!(why, Unresolved::WrongContent(_)));
        let msg = Refused {
            what: "source".into(),
            record: r.clone(),
            expect: root(),
            why,
        }
        .to_string();
        assert!(msg.contains(OTHER) && msg.contains(ROOT), "{msg}");
        // no filesystem at all is not the source either
        let blank = [dev(17, "/dev/vdb1", id(Some("BBBB"), None), None)];
        assert!(matches!(
            resolve(&r, &blank, &root()),
            Err(Unresolved::WrongContent(_))
        ));
        // the new UUID a step already gave it is accepted
        let two = Expect::FsUuid(vec![ROOT.into(), OTHER.into()]);
        assert!(resolve(&r, &present, &two).is_ok());
    }

    #[test]
    fn half_copy_is_the_roots_uuid_or_nothing() {
        let half = Expect::HalfCopy(ROOT.into());
        let r = rec("252:17", Some(id(Some("BBBB"), None)));
        for fs in [Some(ROOT), None] {
            let p = [dev(17, "/dev/vdb1", id(Some("BBBB"), None), fs)];
            assert!(resolve(&r, &p, &half).is_ok(), "{fs:?}");
        }
        let p = [dev(17, "/dev/vdb1", id(Some("BBBB"), None), Some(OTHER))];
        assert!(matches!(
            resolve(&r, &p, &half),
            Err(Unresolved::WrongContent(_))
        ));
    }
}
