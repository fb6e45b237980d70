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
    /// The target may be the device the system runs on: from `switching` (every write reached
    /// it, and the boot choice picks it after a crash there) to `done`.
    pub fn target_may_run(self) -> bool {
        self == Step::Switching || self.switched()
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

pub mod advice;
mod boot;
pub use boot::*;

#[cfg(test)]
mod tests;
