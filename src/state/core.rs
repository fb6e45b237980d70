//! The migration's rules in one pure module: no I/O, no clock, no kernel.
//!
//! - [`next`]: which step may follow which, on which [`Event`];
//! - [`may_abort`] / [`may_resume`]: what `rootshift abort` and `rootshift migrate --resume` may
//!   do from a journal's step and what the kernel shows;
//! - [`choose_boot`]: which of the devices carrying the root's filesystem UUID a boot after a
//!   power cut uses (`rootshift wrap` in the initrd), from the journals read on them.
//!
//! The driver (`migrate/mod.rs`) and the boot hook (`recovery.rs`) do the I/O and ask here.
//! The on-disk step names are [`Step`]'s serde names (`journal.rs`); they are frozen, as is the
//! journal format (see the golden files in `src/state/golden/`).
//!
//! ```text
//! mirroring ──SwitchBegin──► switching ──Switched──► switched ──Grown──► grown ──Finished──► done
//!     ▲                        │   │                    ▲                 ▲ │
//!     └────SwitchNotInSync─────┘   └──FoundSwitched─────┘ (also from      └─┘ Grown, FoundSwitched
//!                                                          mirroring, switched)   (resume)
//! mirroring, switching ──RolledBack / Abort──► aborted
//! switched, grown ──RolledBack / Abort──► refused: past the point of no return
//! done, aborted ──anything──► refused: over
//! ```
//! A migration starts in `mirroring` (`Journal::new`, before the attach; a failed attach is
//! `RolledBack`; `SwitchBegin` from `switching` is a resumed switch). A crash or a reboot changes
//! no step: what follows it is the boot choice, then
//! `abort` or `--resume`.

use serde::{Deserialize, Serialize};

/// Steps of the migration state machine, in order. `Switched` is the point of no return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// The target is a mirror leg; the copy runs. Abort goes back to the source.
    Mirroring,
    /// The copy is complete and in sync, the switch is under way: after a crash the target is
    /// the one to boot (every write reached it).
    Switching,
    /// The wrapper maps the target alone. Only the target has every write from now on.
    Switched,
    /// The filesystem fills the target.
    Grown,
    /// Finished.
    Done,
    /// Rolled back to the source before the switch.
    Aborted,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Mirroring => "mirroring",
            Step::Switching => "switching",
            Step::Switched => "switched",
            Step::Grown => "grown",
            Step::Done => "done",
            Step::Aborted => "aborted",
        }
    }
    /// Past the point of no return.
    pub fn switched(self) -> bool {
        matches!(self, Step::Switched | Step::Grown | Step::Done)
    }
}

/// The journal format versions this build reads. A journal of any other version is never
/// interpreted (the boot refuses, `status`/`abort`/`resume` refuse).
pub const KNOWN_VERSIONS: &[u64] = &[1];

/// Whether a journal of `version` may be interpreted by this build.
pub fn known_version(version: u64) -> bool {
    KNOWN_VERSIONS.contains(&version)
}

/// What happens to a migration between two recorded steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The copy is complete and in sync (verified if asked); the switch is about to start. Recorded
    /// before the switch, through the mirror, so every leg has it (`Run::copy_and_switch`).
    /// Also from `switching` again: `--resume` found the mirror attached and retries the switch.
    SwitchBegin,
    /// The switch's in-window status check found the mirror not in sync: nothing switched, the
    /// copy goes on (`SwitchOutcome::NotInSync`, below the attempt limit).
    SwitchNotInSync,
    /// The switch went through: the wrapper maps the target alone (`Run::switched`).
    Switched,
    /// `--resume` (or `finish` after it) found the kernel past the point of no return — on the
    /// target alone, or the source detached — while the journal may still say an earlier step
    /// (`Run::finish`: "if not switched, record switched").
    FoundSwitched,
    /// The filesystem was grown to fill the target (again, on `--resume`).
    Grown,
    /// The old device stack was released: the migration is finished.
    Finished,
    /// Before the switch, the driver put the wrapper back on the source (an error, a signal, a
    /// failed target, a failed attach) (`Run::roll_back`).
    RolledBack,
    /// `rootshift abort`: before the switch, back to the source (or a migration interrupted
    /// before the switch, found running on the source alone, is abandoned).
    Abort,
}

impl Event {
    pub const ALL: [Event; 8] = [
        Event::SwitchBegin,
        Event::SwitchNotInSync,
        Event::Switched,
        Event::FoundSwitched,
        Event::Grown,
        Event::Finished,
        Event::RolledBack,
        Event::Abort,
    ];
}

impl Step {
    pub const ALL: [Step; 6] = [
        Step::Mirroring,
        Step::Switching,
        Step::Switched,
        Step::Grown,
        Step::Done,
        Step::Aborted,
    ];
}

/// Why a transition is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// From `switched` on only the target has every write: nothing may go back to the source.
    PastPointOfNoReturn,
    /// The migration is over (`done` or `aborted`).
    Over,
    /// The event does not follow this step (e.g. a grow before the switch).
    OutOfOrder,
}

/// The transition table.
pub fn next(step: Step, event: Event) -> Result<Step, Refused> {
    use Event as E;
    use Step as S;
    match (step, event) {
        (S::Done | S::Aborted, _) => Err(Refused::Over),
        (S::Mirroring | S::Switching, E::SwitchBegin) => Ok(S::Switching),
        (S::Switching, E::SwitchNotInSync) => Ok(S::Mirroring),
        (S::Switching, E::Switched) => Ok(S::Switched),
        (S::Mirroring | S::Switching | S::Switched, E::FoundSwitched) => Ok(S::Switched),
        (S::Grown, E::FoundSwitched) => Ok(S::Grown),
        (S::Switched | S::Grown, E::Grown) => Ok(S::Grown),
        (S::Grown, E::Finished) => Ok(S::Done),
        (S::Mirroring | S::Switching, E::RolledBack | E::Abort) => Ok(S::Aborted),
        (S::Switched | S::Grown, E::RolledBack | E::Abort) => Err(Refused::PastPointOfNoReturn),
        (S::Switched | S::Grown, E::SwitchBegin | E::SwitchNotInSync | E::Switched) => {
            Err(Refused::PastPointOfNoReturn)
        }
        (S::Mirroring, E::SwitchNotInSync | E::Switched | E::Grown | E::Finished) => {
            Err(Refused::OutOfOrder)
        }
        (S::Switching, E::Grown | E::Finished) => Err(Refused::OutOfOrder),
        (S::Switched, E::Finished) => Err(Refused::OutOfOrder),
    }
}

/// What the kernel shows of a wrapper, as far as `abort` cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortSeen {
    /// A mirror (a target attached); `past`: the backend says the source no longer has every
    /// write (md: the source was failed out).
    Mirror { past: bool },
    /// One device; `is_target`: it is the journal's target (by number or identity).
    Single { is_target: bool },
}

/// What `rootshift abort` may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortAction {
    /// Detach the target (and clones), back on the source alone; the journal (if any) says
    /// `aborted`; clear the half copies. While a mirror is attached and the source still has
    /// every write, the kernel wins over a journal that says otherwise (whatever its step:
    /// [`next`] is the rule for the journal alone).
    RollBack,
    /// Running on the source alone after an interruption before the switch: record `aborted`
    /// and clear the half copies.
    Abandon,
    /// Refuse: the system runs on the target, the switch is the point of no return.
    Refuse,
    /// Nothing to abort.
    Nothing,
}

/// `rootshift abort`'s decision (`step`: the journal's, None without a journal).
pub fn may_abort(step: Option<Step>, seen: AbortSeen) -> AbortAction {
    match (seen, step) {
        // the kernel decides while a mirror is attached, whatever the journal says
        (AbortSeen::Mirror { past: true }, _) => AbortAction::Refuse,
        (AbortSeen::Mirror { past: false }, _) => AbortAction::RollBack,
        (AbortSeen::Single { .. }, None) => AbortAction::Nothing,
        (AbortSeen::Single { is_target: true }, Some(s))
            if s >= Step::Switching && s != Step::Aborted =>
        {
            AbortAction::Refuse
        }
        (AbortSeen::Single { .. }, Some(Step::Mirroring | Step::Switching)) => AbortAction::Abandon,
        (AbortSeen::Single { .. }, Some(_)) => AbortAction::Nothing,
    }
}

/// What the kernel shows of a wrapper, as far as `--resume` cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeSeen {
    /// A target is attached (the wrapper mirrors).
    pub mirroring: bool,
    /// The journal's target is among the mapped legs.
    pub target_attached: bool,
    /// The wrapper maps the journal's target alone.
    pub on_target_alone: bool,
    /// The backend says the source no longer has every write.
    pub past: bool,
}

/// Why `--resume` refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeRefusal {
    /// No journal: nothing was interrupted.
    NoJournal,
    /// The journal says `done` or `aborted`.
    Over(Step),
    /// One device mapped, not the target: never attached, or rolled back.
    NotAttached,
    /// A mirror, but not onto the journal's target.
    OtherTarget,
}

/// What `rootshift migrate --resume` may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeAction {
    /// The mirror is attached and the source still has every write: copy on, switch, finish.
    CopyAndSwitch,
    /// Past the point of no return: finish (record `switched` if needed, grow, done, clones).
    Finish,
    Refuse(ResumeRefusal),
}

/// What `--resume` refuses on the journal alone, before any device is looked at.
pub fn resume_from(step: Option<Step>) -> Result<(), ResumeRefusal> {
    match step {
        None => Err(ResumeRefusal::NoJournal),
        Some(s @ (Step::Done | Step::Aborted)) => Err(ResumeRefusal::Over(s)),
        Some(_) => Ok(()),
    }
}

/// `--resume`'s decision (`step`: the journal's, None without a journal).
pub fn may_resume(step: Option<Step>, seen: ResumeSeen) -> ResumeAction {
    if let Err(r) = resume_from(step) {
        return ResumeAction::Refuse(r);
    }
    if !seen.mirroring && !seen.on_target_alone {
        return ResumeAction::Refuse(ResumeRefusal::NotAttached);
    }
    if seen.mirroring && !seen.target_attached {
        return ResumeAction::Refuse(ResumeRefusal::OtherTarget);
    }
    if seen.mirroring && !seen.past {
        ResumeAction::CopyAndSwitch
    } else {
        ResumeAction::Finish
    }
}

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
    /// It is the only device carrying the UUID: no choice to make, journals are not consulted.
    Only,
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
        1 => {
            return Verdict::Boot {
                index: 0,
                by: BootBy::Only,
            }
        }
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
    let Some(key) = journals.iter().map(|j| (j.updated_unix, j.step)).max() else {
        let count = |f: fn(&JournalRead) -> bool| cands.iter().filter(|c| f(&c.journal)).count();
        return Verdict::Refuse(BootRefusal::NoJournal {
            torn: count(|r| matches!(r, JournalRead::Torn(_))),
            unreadable: count(|r| matches!(r, JournalRead::Unreadable(_))),
        });
    };
    let newest: Vec<&JournalView> = journals
        .into_iter()
        .filter(|j| (j.updated_unix, j.step) == key)
        .collect();
    let j = newest[0];
    let (leg, want) = j.wanted();
    if newest
        .iter()
        .any(|o| o.wanted().1.identity != want.identity)
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

fn leg_words(leg: Leg) -> &'static str {
    match leg {
        Leg::Target => "the target (the migration reached the switch)",
        Leg::Source => "the source (the migration had not switched)",
    }
}

impl BootRefusal {
    /// The message `wrap` prints before exiting 4 (`names`: the candidates' paths).
    pub fn message(&self, cands: &[CandidateView]) -> String {
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
        }
    }
}

#[cfg(test)]
mod tests;
