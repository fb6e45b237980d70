//! The boot choice (`rootshift choose` / `rootshift wrap` in the initrd): which of the devices
//! carrying the root's filesystem UUID to boot, from the journals read on them. Pure: no I/O.

use serde::{Deserialize, Serialize};

use super::{Step, KNOWN_VERSIONS};

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

impl Identity {
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

/// A device as a journal records it (the part the boot choice uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegView {
    pub path: String,
    pub identity: Option<Identity>,
}

/// What the boot choice reads of a journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalView {
    pub wrapper: String,
    /// "dm-mirror" or "md-raid1": both decide alike (the legs carry the filesystem at offset 0).
    pub backend: String,
    pub step: Step,
    /// With `wrapper`, names the migration.
    pub started_unix: u64,
    pub updated_unix: u64,
    /// The filesystem's journal generation: one more with every save, carried across attempts
    /// (a new migration continues from the counter of the journal it finds). None: written by a
    /// rootshift before the counter (then wall-clock time orders, as it did).
    pub seq: Option<u64>,
    /// A random id of the migration attempt (None: written before the id existed).
    pub migration: Option<String>,
    pub source: LegView,
    pub target: LegView,
}

impl JournalView {
    /// Which leg has every write when this journal is the newest word: `switching` or later
    /// (not `aborted`) → the target; else the source.
    pub fn wanted(&self) -> (Leg, &LegView) {
        if self.step >= Step::Switching && self.step != Step::Aborted {
            (Leg::Target, &self.target)
        } else {
            (Leg::Source, &self.source)
        }
    }
}

/// What reading the journal on one candidate gave.
#[derive(Debug, Clone, PartialEq, Eq)]
// One value per device at boot (a handful): the size difference costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
pub enum JournalRead {
    /// No journal file (or no filesystem rootshift can read it from, or not read at all).
    Missing,
    /// The filesystem could not be mounted / the file could not be read.
    Unreadable(String),
    /// The file is there but is not a journal (a torn write, garbage).
    Torn(String),
    /// A journal of a version this build does not know: never interpreted.
    UnknownVersion(u64),
    Ok(JournalView),
}

/// One device that carries the root's filesystem UUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateView {
    pub path: String,
    pub identity: Identity,
    pub journal: JournalRead,
}

/// The migration's source or target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    Source,
    Target,
}

/// Why a candidate is booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootBy {
    /// It is the only device carrying the UUID and its own journal (if any) does not say a twin
    /// is needed: none, unreadable, or one of a finished or aborted migration it is not a leg of.
    Only,
    /// `rd.rootshift.pick=`: the user named it; no journal was consulted.
    Picked,
    /// The newest journal, at `step`, names this leg.
    Journal { step: Step, leg: Leg },
}

/// Why no candidate is booted (`wrap` exits 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootRefusal {
    NoCandidates,
    /// Candidate `index` holds a journal of a version this build does not know.
    UnknownVersion {
        index: usize,
        version: u64,
    },
    /// No candidate holds a readable journal (`torn`/`unreadable`: how many had a bad one).
    NoJournal {
        torn: usize,
        unreadable: usize,
    },
    /// The newest journals (same time and step) name different devices: different migrations.
    Conflict {
        step: Step,
    },
    /// The newest journal names a leg without an identity that can be matched after a reboot.
    NoIdentity {
        step: Step,
        leg: Leg,
        path: String,
    },
    /// The leg the newest journal names is not among the candidates.
    Absent {
        step: Step,
        leg: Leg,
        path: String,
    },
    /// More than one candidate has the identity of the leg to boot.
    Duplicate {
        step: Step,
        leg: Leg,
        path: String,
    },
    /// One device is visible and its own journal says it is not complete alone: the target of
    /// an unfinished migration (before `switched`), the source of one that reached `switching`,
    /// or a device the journal does not name (`leg` None). `twin`: the device it needs.
    TwinMissing {
        step: Step,
        leg: Option<Leg>,
        twin: String,
    },
    /// `rd.rootshift.pick=` names no candidate (`found` 0) or more than one.
    Pick {
        pick: String,
        found: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Boot { index: usize, by: BootBy },
    Refuse(BootRefusal),
}

/// The boot choice over the devices carrying the root's filesystem UUID (source, target,
/// clones, in any order, under any kernel names).
///
/// - one device: boot it (no ambiguity; its journal is not consulted);
/// - any journal of an unknown version: refuse — never guess what a newer rootshift meant;
/// - the newest readable journal by (`updated_unix`, step) decides, as [`JournalView::wanted`]
///   says, matched by identity; missing, torn and unreadable journals on other candidates do
///   not matter (before the switch the source's journal is the newest, from `switching` on every
///   copy says "the target");
/// - refuse when no journal is readable, when equally new journals name different devices,
///   when the wanted leg has no identity, is absent, or more than one candidate has its identity.
pub fn choose_boot(cands: &[CandidateView]) -> Verdict {
    match cands.len() {
        0 => return Verdict::Refuse(BootRefusal::NoCandidates),
        1 => return choose_single(&cands[0]),
        _ => {}
    }
    if let Some((index, version)) = cands.iter().enumerate().find_map(|(i, c)| match c.journal {
        JournalRead::UnknownVersion(v) => Some((i, v)),
        _ => None,
    }) {
        return Verdict::Refuse(BootRefusal::UnknownVersion { index, version });
    }
    let journals: Vec<&JournalView> = cands
        .iter()
        .filter_map(|c| match &c.journal {
            JournalRead::Ok(j) => Some(j),
            _ => None,
        })
        .collect();
    // the generation counter orders when every journal has one; a journal without (written by
    // a rootshift before the counter) falls back to wall-clock time for all, as before
    let by_seq = journals.iter().all(|j| j.seq.is_some());
    let key = |j: &JournalView| {
        let n = if by_seq {
            j.seq.unwrap_or(0)
        } else {
            j.updated_unix
        };
        (n, j.step)
    };
    let Some(newest_key) = journals.iter().map(|j| key(j)).max() else {
        let count = |f: fn(&JournalRead) -> bool| cands.iter().filter(|c| f(&c.journal)).count();
        return Verdict::Refuse(BootRefusal::NoJournal {
            torn: count(|r| matches!(r, JournalRead::Torn(_))),
            unreadable: count(|r| matches!(r, JournalRead::Unreadable(_))),
        });
    };
    let newest: Vec<&JournalView> = journals
        .into_iter()
        .filter(|j| key(j) == newest_key)
        .collect();
    let j = newest[0];
    let (leg, want) = j.wanted();
    if newest
        .iter()
        .any(|o| o.wanted().1.identity != want.identity || (by_seq && o.migration != j.migration))
    {
        return Verdict::Refuse(BootRefusal::Conflict { step: j.step });
    }
    let Some(id) = &want.identity else {
        return Verdict::Refuse(BootRefusal::NoIdentity {
            step: j.step,
            leg,
            path: want.path.clone(),
        });
    };
    let mut hits = cands
        .iter()
        .enumerate()
        .filter(|(_, c)| id.matches(&c.identity));
    let path = want.path.clone();
    match (hits.next(), hits.next()) {
        (Some((index, _)), None) => Verdict::Boot {
            index,
            by: BootBy::Journal { step: j.step, leg },
        },
        (None, _) => Verdict::Refuse(BootRefusal::Absent {
            step: j.step,
            leg,
            path,
        }),
        (Some(_), Some(_)) => Verdict::Refuse(BootRefusal::Duplicate {
            step: j.step,
            leg,
            path,
        }),
    }
}

/// One device visible: boot it unless its own journal says it needs its twin (item 3 of issue
/// 15: a fast target seen before a slow source must not boot alone). The caller waits (bounded)
/// for the twin, then refuses with this verdict.
///
/// - no journal, torn, unreadable: boot it (nothing says a migration touched it);
/// - unknown version: refuse (never a guess);
/// - the journal's target: complete alone from `switched` on (only it got writes since);
/// - the journal's source: complete alone at `mirroring` and `aborted` (it had every write);
///   from `switching` on the target may have newer writes;
/// - neither leg (no identity, a clone, a disk copied later): complete alone only when the
///   migration is over (`aborted`, `done`).
fn choose_single(c: &CandidateView) -> Verdict {
    let j = match &c.journal {
        JournalRead::UnknownVersion(v) => {
            return Verdict::Refuse(BootRefusal::UnknownVersion {
                index: 0,
                version: *v,
            })
        }
        JournalRead::Ok(j) => j,
        JournalRead::Missing | JournalRead::Torn(_) | JournalRead::Unreadable(_) => {
            return Verdict::Boot {
                index: 0,
                by: BootBy::Only,
            }
        }
    };
    let is = |l: &LegView| {
        l.identity
            .as_ref()
            .is_some_and(|id| id.matches(&c.identity))
    };
    let leg = if is(&j.target) {
        Some(Leg::Target)
    } else if is(&j.source) {
        Some(Leg::Source)
    } else {
        None
    };
    let complete = match leg {
        Some(Leg::Target) => j.step.switched(),
        Some(Leg::Source) => matches!(j.step, Step::Mirroring | Step::Aborted),
        // a device the journal does not name (a clone, a disk copied later) is complete alone
        // once the migration is over either way
        None => matches!(j.step, Step::Aborted | Step::Done),
    };
    if complete {
        return Verdict::Boot {
            index: 0,
            by: match leg {
                Some(leg) => BootBy::Journal { step: j.step, leg },
                None => BootBy::Only,
            },
        };
    }
    let twin = match leg {
        Some(Leg::Target) => &j.source,
        Some(Leg::Source) => &j.target,
        None => j.wanted().1,
    };
    Verdict::Refuse(BootRefusal::TwinMissing {
        step: j.step,
        leg,
        twin: twin.path.clone(),
    })
}

/// An explicit choice (`rd.rootshift.pick=PARTUUID=…` or `SERIAL=…`) over the candidates, or
/// the journals' ([`choose_boot`]) without one.
pub fn choose_boot_picked(cands: &[CandidateView], pick: Option<&Identity>) -> Verdict {
    let Some(p) = pick else {
        return choose_boot(cands);
    };
    let hits: Vec<usize> = (0..cands.len())
        .filter(|&i| p.matches(&cands[i].identity))
        .collect();
    match hits[..] {
        [index] => Verdict::Boot {
            index,
            by: BootBy::Picked,
        },
        _ => Verdict::Refuse(BootRefusal::Pick {
            pick: p.pick_arg(),
            found: hits.len(),
        }),
    }
}

impl Identity {
    /// Parse `PARTUUID=…` or `SERIAL=…` (the value of `rd.rootshift.pick=`).
    pub fn parse_pick(s: &str) -> Option<Identity> {
        let (k, v) = s.split_once('=')?;
        if v.is_empty() {
            return None;
        }
        match k.to_ascii_uppercase().as_str() {
            "PARTUUID" => Some(Identity {
                partuuid: Some(v.to_string()),
                serial: None,
            }),
            "SERIAL" => Some(Identity {
                partuuid: None,
                serial: Some(v.to_string()),
            }),
            _ => None,
        }
    }

    /// How `rd.rootshift.pick=` names this device (None without an identity).
    pub fn pick_arg(&self) -> String {
        match (&self.partuuid, &self.serial) {
            (Some(p), _) => format!("PARTUUID={p}"),
            (None, Some(s)) => format!("SERIAL={s}"),
            (None, None) => String::new(),
        }
    }
}

/// The way out named in every refusal: which `rd.rootshift.pick=` boots which candidate.
/// How the way out of a refusal starts (a caller adds its own explanation before it).
pub const ESCAPE_HATCH_START: &str = ". To boot one device anyway";

fn escape_hatch(cands: &[CandidateView]) -> String {
    let picks: Vec<String> = cands
        .iter()
        .filter(|c| c.identity.is_known())
        .map(|c| format!("rd.rootshift.pick={} ({})", c.identity.pick_arg(), c.path))
        .collect();
    if picks.is_empty() {
        return String::new();
    }
    format!(
        "{ESCAPE_HATCH_START} (after checking it is the complete one, e.g. with `rootshift status` \
         from a rescue system), add to the kernel command line: {}",
        picks.join(" or ")
    )
}

fn leg_words(leg: Leg) -> &'static str {
    match leg {
        Leg::Target => "the target (the migration reached the switch)",
        Leg::Source => "the source (the migration had not switched)",
    }
}

impl BootRefusal {
    /// The message `wrap` prints before exiting 4 (`names`: the candidates' paths).
    pub fn message(&self, cands: &[CandidateView]) -> String {
        let m = self.reason(cands);
        match self {
            BootRefusal::NoCandidates => m,
            _ => m + &escape_hatch(cands),
        }
    }

    fn reason(&self, cands: &[CandidateView]) -> String {
        let names = cands
            .iter()
            .map(|c| c.path.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        match self {
            BootRefusal::NoCandidates => "no device carries the root filesystem".to_string(),
            BootRefusal::UnknownVersion { index, version } => format!(
                "{} holds a rootshift journal of version {version}, which this rootshift (journal \
                 version {}) cannot read: it was written by another rootshift; not guessing which of \
                 {names} is complete",
                cands[*index].path,
                KNOWN_VERSIONS
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            BootRefusal::NoJournal { torn, unreadable } => {
                let mut bad = vec![];
                if *torn > 0 {
                    bad.push(format!("{torn} torn"));
                }
                if *unreadable > 0 {
                    bad.push(format!("{unreadable} unreadable"));
                }
                format!(
                    "{} devices carry the root filesystem's UUID ({names}) and none holds a rootshift journal \
                     saying which one is complete{}",
                    cands.len(),
                    if bad.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", bad.join(", "))
                    }
                )
            }
            BootRefusal::Conflict { step } => format!(
                "the newest rootshift journals ({}) on {names} are equally new and name different devices \
                 (different migrations)",
                step.as_str()
            ),
            BootRefusal::NoIdentity { step, leg, path } => format!(
                "the journal ({}) names {} {path} without an identity rootshift can match after a reboot",
                step.as_str(),
                leg_words(*leg)
            ),
            BootRefusal::Absent { step, leg, path } => format!(
                "the journal ({}) says to boot {} {path}, but it is not among the devices carrying the UUID ({names})",
                step.as_str(),
                leg_words(*leg)
            ),
            BootRefusal::Duplicate { step, leg, path } => format!(
                "the journal ({}) says to boot {} {path}, but more than one of {names} has its identity",
                step.as_str(),
                leg_words(*leg)
            ),
            BootRefusal::TwinMissing { step, leg, twin } => format!(
                "only {names} carries the root filesystem, and its rootshift journal ({}) says it is {}: \
                 booting it alone could lose data, and its twin {twin} did not appear",
                step.as_str(),
                match leg {
                    Some(Leg::Target) => "the target of an unfinished migration (a half copy, or one \
                                          the source may have newer writes than)",
                    Some(Leg::Source) => "the source of a migration that reached the switch (the \
                                          target may have newer writes)",
                    None => "neither leg of an unfinished migration it records",
                }
            ),
            BootRefusal::Pick { pick, found } => format!(
                "rd.rootshift.pick={pick} names {} of the devices carrying the root filesystem ({names})",
                if *found == 0 { "none" } else { "more than one" }
            ),
        }
    }
}
