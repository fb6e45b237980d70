//! The core's tables, case by case. Counts (reported in issue 14's closing note):
//! - (step, event): 6 steps × 8 events = 48 pairs, every one with its exact answer;
//! - `may_abort`: 7 journal states (none + 6 steps) × 4 kernel views = 28;
//! - `may_resume`: 7 journal states × 5 kernel views = 35;
//! - boot choice: [`BOOT_CASES`] named cases, each run under both backends (dm-mirror,
//!   md-raid1), and an exhaustive comparison with the decision of the code before the core
//!   (`legacy_decide`, verbatim) over every combination of journal reads on 2 and 3 candidates;
//! - golden journals (`src/state/golden/`): decisions and the serialised form frozen.

use super::*;
use crate::state::journal::{self, DevRecord, Journal, Parsed};

use Event as E;
use Step as S;

// ---------------------------------------------------------------- transitions

const O: Result<Step, Refused> = Err(Refused::OutOfOrder);
const P: Result<Step, Refused> = Err(Refused::PastPointOfNoReturn);
const X: Result<Step, Refused> = Err(Refused::Over);

/// Every (step, event) pair and its answer, written out (not computed).
#[rustfmt::skip]
const TRANSITIONS: [(Step, Event, Result<Step, Refused>); 48] = [
    (S::Mirroring, E::SwitchBegin,     Ok(S::Switching)),
    (S::Mirroring, E::SwitchNotInSync, O),
    (S::Mirroring, E::Switched,        O),
    (S::Mirroring, E::FoundSwitched,   Ok(S::Switched)),
    (S::Mirroring, E::Grown,           O),
    (S::Mirroring, E::Finished,        O),
    (S::Mirroring, E::RolledBack,      Ok(S::Aborted)),
    (S::Mirroring, E::Abort,           Ok(S::Aborted)),

    (S::Switching, E::SwitchBegin,     Ok(S::Switching)),
    (S::Switching, E::SwitchNotInSync, Ok(S::Mirroring)),
    (S::Switching, E::Switched,        Ok(S::Switched)),
    (S::Switching, E::FoundSwitched,   Ok(S::Switched)),
    (S::Switching, E::Grown,           O),
    (S::Switching, E::Finished,        O),
    (S::Switching, E::RolledBack,      Ok(S::Aborted)),
    (S::Switching, E::Abort,           Ok(S::Aborted)),

    (S::Switched,  E::SwitchBegin,     P),
    (S::Switched,  E::SwitchNotInSync, P),
    (S::Switched,  E::Switched,        P),
    (S::Switched,  E::FoundSwitched,   Ok(S::Switched)),
    (S::Switched,  E::Grown,           Ok(S::Grown)),
    (S::Switched,  E::Finished,        O),
    (S::Switched,  E::RolledBack,      P),
    (S::Switched,  E::Abort,           P),

    (S::Grown,     E::SwitchBegin,     P),
    (S::Grown,     E::SwitchNotInSync, P),
    (S::Grown,     E::Switched,        P),
    (S::Grown,     E::FoundSwitched,   Ok(S::Grown)),
    (S::Grown,     E::Grown,           Ok(S::Grown)),
    (S::Grown,     E::Finished,        Ok(S::Done)),
    (S::Grown,     E::RolledBack,      P),
    (S::Grown,     E::Abort,           P),

    (S::Done,      E::SwitchBegin,     X),
    (S::Done,      E::SwitchNotInSync, X),
    (S::Done,      E::Switched,        X),
    (S::Done,      E::FoundSwitched,   X),
    (S::Done,      E::Grown,           X),
    (S::Done,      E::Finished,        X),
    (S::Done,      E::RolledBack,      X),
    (S::Done,      E::Abort,           X),

    (S::Aborted,   E::SwitchBegin,     X),
    (S::Aborted,   E::SwitchNotInSync, X),
    (S::Aborted,   E::Switched,        X),
    (S::Aborted,   E::FoundSwitched,   X),
    (S::Aborted,   E::Grown,           X),
    (S::Aborted,   E::Finished,        X),
    (S::Aborted,   E::RolledBack,      X),
    (S::Aborted,   E::Abort,           X),
];

#[test]
fn transitions_all_48_step_event_pairs() {
    // the table names each pair exactly once
    for s in Step::ALL {
        for e in Event::ALL {
            let n = TRANSITIONS
                .iter()
                .filter(|(ts, te, _)| *ts == s && *te == e)
                .count();
            assert_eq!(n, 1, "({s:?}, {e:?}) appears {n} times in the table");
        }
    }
    assert_eq!(TRANSITIONS.len(), Step::ALL.len() * Event::ALL.len());
    for (s, e, want) in TRANSITIONS {
        assert_eq!(next(s, e), want, "({s:?}, {e:?})");
    }
}

#[test]
fn the_drivers_sequences_are_accepted() {
    let run = |from: Step, events: &[Event]| {
        events
            .iter()
            .try_fold(from, |s, e| next(s, *e).map_err(|r| (s, *e, r)))
    };
    // migrate: attach, copy, switch, grow, done
    let happy = [E::SwitchBegin, E::Switched, E::Grown, E::Finished];
    assert_eq!(run(S::Mirroring, &happy), Ok(S::Done));
    // a switch attempt that found the mirror out of sync, then the retry
    let retry = [
        E::SwitchBegin,
        E::SwitchNotInSync,
        E::SwitchBegin,
        E::Switched,
    ];
    assert_eq!(run(S::Mirroring, &retry), Ok(S::Switched));
    // errors before the switch roll back, also after `switching` was recorded
    assert_eq!(run(S::Mirroring, &[E::RolledBack]), Ok(S::Aborted));
    assert_eq!(
        run(S::Mirroring, &[E::SwitchBegin, E::RolledBack]),
        Ok(S::Aborted)
    );
    // --resume after a crash: past the point of no return from any earlier step, finish again
    for s in [S::Mirroring, S::Switching, S::Switched] {
        assert_eq!(
            run(s, &[E::FoundSwitched, E::Grown, E::Finished]),
            Ok(S::Done)
        );
    }
    assert_eq!(
        run(S::Grown, &[E::FoundSwitched, E::Grown, E::Finished]),
        Ok(S::Done)
    );
    // and nothing goes back once switched
    assert_eq!(
        run(S::Switching, &[E::Switched, E::RolledBack]),
        Err((S::Switched, E::RolledBack, Refused::PastPointOfNoReturn))
    );
}

#[test]
fn the_point_of_no_return_agrees_with_step_switched() {
    // (done is switched too, but over: it refuses everything as such)
    for s in [
        S::Mirroring,
        S::Switching,
        S::Switched,
        S::Grown,
        S::Aborted,
    ] {
        let back = next(s, E::RolledBack) == Err(Refused::PastPointOfNoReturn);
        assert_eq!(back, s.switched(), "{s:?}");
    }
}

// ---------------------------------------------------------------- abort, resume

#[test]
fn may_abort_28_cases() {
    use AbortAction::*;
    let mirror = AbortSeen::Mirror { past: false };
    let mirror_past = AbortSeen::Mirror { past: true };
    let on_source = AbortSeen::Single { is_target: false };
    let on_target = AbortSeen::Single { is_target: true };
    #[rustfmt::skip]
    let table: [(Option<Step>, [AbortAction; 4]); 7] = [
        //                    mirror    mirror_past on_source on_target
        (None,               [RollBack, Refuse,     Nothing,  Nothing]),
        (Some(S::Mirroring), [RollBack, Refuse,     Abandon,  Abandon]),
        (Some(S::Switching), [RollBack, Refuse,     Abandon,  Refuse]),
        (Some(S::Switched),  [RollBack, Refuse,     Nothing,  Refuse]),
        (Some(S::Grown),     [RollBack, Refuse,     Nothing,  Refuse]),
        (Some(S::Done),      [RollBack, Refuse,     Nothing,  Refuse]),
        (Some(S::Aborted),   [RollBack, Refuse,     Nothing,  Nothing]),
    ];
    let mut n = 0;
    for (step, want) in table {
        for (seen, w) in [mirror, mirror_past, on_source, on_target]
            .into_iter()
            .zip(want)
        {
            assert_eq!(may_abort(step, seen), w, "{step:?} {seen:?}");
            n += 1;
        }
    }
    assert_eq!(n, 28);
}

#[test]
fn may_resume_35_cases() {
    use ResumeAction::*;
    use ResumeRefusal::*;
    let seen = |mirroring, target_attached, on_target_alone, past| ResumeSeen {
        mirroring,
        target_attached,
        on_target_alone,
        past,
    };
    let mirror = seen(true, true, false, false);
    let mirror_past = seen(true, true, false, true);
    let mirror_other = seen(true, false, false, false);
    let target_alone = seen(false, false, true, true);
    let source_alone = seen(false, false, false, false);
    let r = Refuse;
    #[rustfmt::skip]
    let table: [(Option<Step>, [ResumeAction; 5]); 7] = [
        //                    mirror         mirror_past  mirror_other     target_alone  source_alone
        (None,               [r(NoJournal),  r(NoJournal), r(NoJournal),   r(NoJournal), r(NoJournal)]),
        (Some(S::Mirroring), [CopyAndSwitch, Finish,       r(OtherTarget), Finish,       r(NotAttached)]),
        (Some(S::Switching), [CopyAndSwitch, Finish,       r(OtherTarget), Finish,       r(NotAttached)]),
        (Some(S::Switched),  [CopyAndSwitch, Finish,       r(OtherTarget), Finish,       r(NotAttached)]),
        (Some(S::Grown),     [CopyAndSwitch, Finish,       r(OtherTarget), Finish,       r(NotAttached)]),
        (Some(S::Done),      [r(Over(S::Done)); 5]),
        (Some(S::Aborted),   [r(Over(S::Aborted)); 5]),
    ];
    let mut n = 0;
    for (step, want) in table {
        let views = [
            mirror,
            mirror_past,
            mirror_other,
            target_alone,
            source_alone,
        ];
        for (v, w) in views.into_iter().zip(want) {
            assert_eq!(may_resume(step, v), w, "{step:?} {v:?}");
            n += 1;
        }
        assert_eq!(
            resume_from(step).is_err(),
            matches!(step, None | Some(S::Done | S::Aborted))
        );
    }
    assert_eq!(n, 35);
}

// ---------------------------------------------------------------- boot choice

fn pu(p: &str) -> Identity {
    Identity {
        partuuid: Some(p.into()),
        serial: None,
    }
}

fn ser(s: &str) -> Identity {
    Identity {
        partuuid: None,
        serial: Some(s.into()),
    }
}

fn leg(path: &str, id: Option<Identity>) -> LegView {
    LegView {
        path: path.into(),
        identity: id,
    }
}

/// A journal of migration `started` from `src` to `tgt` (partuuids; "" = no identity).
fn jv(step: Step, updated: u64, started: u64, src: &str, tgt: &str) -> JournalRead {
    let id = |p: &str| (!p.is_empty()).then(|| pu(p));
    JournalRead::Ok(JournalView {
        wrapper: "rootshift-root".into(),
        backend: "dm-mirror".into(),
        step,
        started_unix: started,
        updated_unix: updated,
        seq: None,
        migration: None,
        source: leg(&format!("/dev/disk/{src}"), id(src)),
        target: leg(&format!("/dev/disk/{tgt}"), id(tgt)),
    })
}

/// Migration 1: aaaa → bbbb (clones cccc, dddd).
fn m1(step: Step, updated: u64) -> JournalRead {
    jv(step, updated, 5, "aaaa", "bbbb")
}

fn c(path: &str, id: Identity, j: JournalRead) -> CandidateView {
    CandidateView {
        path: path.into(),
        identity: id,
        journal: j,
    }
}

fn src(j: JournalRead) -> CandidateView {
    c("/dev/vda1", pu("aaaa"), j)
}
fn tgt(j: JournalRead) -> CandidateView {
    c("/dev/vdb1", pu("bbbb"), j)
}
fn clone1(j: JournalRead) -> CandidateView {
    c("/dev/vdc1", pu("cccc"), j)
}
fn clone2(j: JournalRead) -> CandidateView {
    c("/dev/vdd1", pu("dddd"), j)
}

const MISSING: JournalRead = JournalRead::Missing;
fn torn() -> JournalRead {
    JournalRead::Torn("EOF while parsing an object at line 9 column 3".into())
}
fn unreadable() -> JournalRead {
    JournalRead::Unreadable("mounting /dev/vdb1 read-only: EUCLEAN".into())
}

fn boot(index: usize, step: Step, leg: Leg) -> Verdict {
    Verdict::Boot {
        index,
        by: BootBy::Journal { step, leg },
    }
}

fn refuse(r: BootRefusal) -> Verdict {
    Verdict::Refuse(r)
}

fn absent(step: Step, leg: Leg, path: &str) -> Verdict {
    refuse(BootRefusal::Absent {
        step,
        leg,
        path: path.into(),
    })
}

type Case = (&'static str, fn() -> Vec<CandidateView>, fn() -> Verdict);

/// The named boot-choice cases: (what, candidates, verdict).
const BOOT_CASES: [Case; 34] = [
    ("no candidate", Vec::new, || {
        refuse(BootRefusal::NoCandidates)
    }),
    (
        "one device, no journal: booted unread",
        || vec![tgt(MISSING)],
        || Verdict::Boot {
            index: 0,
            by: BootBy::Only,
        },
    ),
    (
        // changed by design (issue 15 item 3): the lone device's journal is read too, and an
        // unknown version is never a guess
        "one device, unknown version: refused",
        || vec![src(JournalRead::UnknownVersion(2))],
        || {
            refuse(BootRefusal::UnknownVersion {
                index: 0,
                version: 2,
            })
        },
    ),
    (
        "mirroring, target not copied yet",
        || vec![src(m1(S::Mirroring, 10)), tgt(MISSING)],
        || boot(0, S::Mirroring, Leg::Source),
    ),
    (
        "mirroring, names swapped across the reboot",
        || {
            vec![
                c("/dev/vda1", pu("BBBB"), m1(S::Mirroring, 10)),
                c("/dev/vdb1", pu("aaaa"), m1(S::Mirroring, 10)),
            ]
        },
        || boot(1, S::Mirroring, Leg::Source),
    ),
    (
        "mirroring, target read first and torn",
        || vec![tgt(torn()), src(m1(S::Mirroring, 10))],
        || boot(1, S::Mirroring, Leg::Source),
    ),
    (
        "mirroring, target unreadable",
        || vec![src(m1(S::Mirroring, 10)), tgt(unreadable())],
        || boot(0, S::Mirroring, Leg::Source),
    ),
    (
        "switching on both",
        || vec![src(m1(S::Switching, 20)), tgt(m1(S::Switching, 20))],
        || boot(1, S::Switching, Leg::Target),
    ),
    (
        "switching on the source only, target unread",
        || vec![src(m1(S::Switching, 20)), tgt(MISSING)],
        || boot(1, S::Switching, Leg::Target),
    ),
    (
        "switched on the target beats switching on the source",
        || vec![src(m1(S::Switching, 20)), tgt(m1(S::Switched, 21))],
        || boot(1, S::Switched, Leg::Target),
    ),
    (
        "grown, source torn",
        || vec![src(torn()), tgt(m1(S::Grown, 30))],
        || boot(1, S::Grown, Leg::Target),
    ),
    (
        "done on the target",
        || vec![tgt(m1(S::Done, 40)), src(m1(S::Switching, 20))],
        || boot(0, S::Done, Leg::Target),
    ),
    (
        "an abort written later to the source wins over an older switching",
        || vec![src(m1(S::Aborted, 30)), tgt(m1(S::Switching, 20))],
        || boot(0, S::Aborted, Leg::Source),
    ),
    (
        "same second: the later step wins",
        || vec![src(m1(S::Mirroring, 20)), tgt(m1(S::Switching, 20))],
        || boot(1, S::Switching, Leg::Target),
    ),
    (
        "no journal anywhere",
        || vec![src(MISSING), tgt(MISSING)],
        || {
            refuse(BootRefusal::NoJournal {
                torn: 0,
                unreadable: 0,
            })
        },
    ),
    (
        "only torn and unreadable journals",
        || vec![src(torn()), tgt(unreadable()), clone1(torn())],
        || {
            refuse(BootRefusal::NoJournal {
                torn: 2,
                unreadable: 1,
            })
        },
    ),
    (
        "unknown version on the target refuses, even with a readable source journal",
        || {
            vec![
                src(m1(S::Mirroring, 10)),
                tgt(JournalRead::UnknownVersion(2)),
            ]
        },
        || {
            refuse(BootRefusal::UnknownVersion {
                index: 1,
                version: 2,
            })
        },
    ),
    (
        "version 0 is unknown too",
        || {
            vec![
                src(JournalRead::UnknownVersion(0)),
                tgt(m1(S::Switched, 30)),
            ]
        },
        || {
            refuse(BootRefusal::UnknownVersion {
                index: 0,
                version: 0,
            })
        },
    ),
    (
        "the source is not among the candidates",
        || {
            vec![
                c("/dev/vdc1", pu("eeee"), m1(S::Mirroring, 10)),
                tgt(MISSING),
            ]
        },
        || absent(S::Mirroring, Leg::Source, "/dev/disk/aaaa"),
    ),
    (
        "switched, target gone: a clone is never booted in its place",
        || vec![src(m1(S::Switching, 20)), clone1(m1(S::Switching, 20))],
        || absent(S::Switching, Leg::Target, "/dev/disk/bbbb"),
    ),
    (
        "the target recorded without identity",
        || vec![src(jv(S::Switching, 20, 5, "aaaa", "")), tgt(MISSING)],
        || {
            refuse(BootRefusal::NoIdentity {
                step: S::Switching,
                leg: Leg::Target,
                path: "/dev/disk/".into(),
            })
        },
    ),
    (
        "source, target, clone mirroring",
        || {
            vec![
                src(m1(S::Mirroring, 10)),
                tgt(m1(S::Mirroring, 10)),
                clone1(m1(S::Mirroring, 10)),
            ]
        },
        || boot(0, S::Mirroring, Leg::Source),
    ),
    (
        "source, target, clone switching",
        || {
            vec![
                clone1(m1(S::Switching, 20)),
                src(m1(S::Switching, 20)),
                tgt(m1(S::Switching, 20)),
            ]
        },
        || boot(2, S::Switching, Leg::Target),
    ),
    (
        "four legs: the grown target, clones with the switch-time copy",
        || {
            vec![
                src(m1(S::Switching, 20)),
                clone1(m1(S::Switching, 20)),
                clone2(MISSING),
                tgt(m1(S::Grown, 40)),
            ]
        },
        || boot(3, S::Grown, Leg::Target),
    ),
    (
        "a clone's journal alone decides",
        || vec![clone1(m1(S::Switching, 20)), src(MISSING), tgt(MISSING)],
        || boot(2, S::Switching, Leg::Target),
    ),
    (
        "two clones and the source, mirroring, target unreadable",
        || {
            vec![
                clone2(torn()),
                clone1(m1(S::Mirroring, 9)),
                tgt(unreadable()),
                src(m1(S::Mirroring, 10)),
            ]
        },
        || boot(3, S::Mirroring, Leg::Source),
    ),
    (
        "different migrations: the newer (aaaa → eeee, mirroring) wins over an old switched",
        || {
            vec![
                src(jv(S::Mirroring, 50, 45, "aaaa", "eeee")),
                tgt(m1(S::Switched, 30)),
                c("/dev/vde1", pu("eeee"), MISSING),
            ]
        },
        || boot(0, S::Mirroring, Leg::Source),
    ),
    (
        "different migrations: the newer one switched to eeee",
        || {
            vec![
                src(m1(S::Aborted, 20)),
                c(
                    "/dev/vde1",
                    pu("eeee"),
                    jv(S::Switching, 50, 45, "aaaa", "eeee"),
                ),
            ]
        },
        || boot(1, S::Switching, Leg::Target),
    ),
    (
        "different migrations equally new, naming different devices",
        || {
            vec![
                src(m1(S::Switching, 50)),
                tgt(MISSING),
                c(
                    "/dev/vde1",
                    pu("eeee"),
                    jv(S::Switching, 50, 45, "aaaa", "eeee"),
                ),
            ]
        },
        || refuse(BootRefusal::Conflict { step: S::Switching }),
    ),
    (
        "different migrations equally new, naming the same source",
        || {
            vec![
                src(m1(S::Mirroring, 50)),
                c(
                    "/dev/vde1",
                    pu("eeee"),
                    jv(S::Mirroring, 50, 45, "aaaa", "eeee"),
                ),
            ]
        },
        || boot(0, S::Mirroring, Leg::Source),
    ),
    (
        "two candidates with the wanted identity",
        || {
            vec![
                src(m1(S::Mirroring, 10)),
                c("/dev/vdz1", pu("AAAA"), MISSING),
            ]
        },
        || {
            refuse(BootRefusal::Duplicate {
                step: S::Mirroring,
                leg: Leg::Source,
                path: "/dev/disk/aaaa".into(),
            })
        },
    ),
    (
        "identities by serial (whole disks)",
        || {
            let j = JournalRead::Ok(JournalView {
                source: leg("/dev/vda", Some(ser("src-serial"))),
                target: leg("/dev/vdb", Some(ser("tgt-serial"))),
                ..as_view(m1(S::Switched, 30))
            });
            vec![
                c("/dev/vda", ser("src-serial"), j.clone()),
                c("/dev/vdb", ser("tgt-serial"), j),
            ]
        },
        || boot(1, S::Switched, Leg::Target),
    ),
    (
        "a serial-only record does not match a device known by PARTUUID",
        || {
            let j = JournalRead::Ok(JournalView {
                target: leg("/dev/vdb1", Some(ser("tgt-serial#1"))),
                ..as_view(m1(S::Switched, 30))
            });
            vec![
                src(j),
                c(
                    "/dev/vdb1",
                    Identity {
                        partuuid: Some("bbbb".into()),
                        serial: Some("tgt-serial#1".into()),
                    },
                    MISSING,
                ),
            ]
        },
        || absent(S::Switched, Leg::Target, "/dev/vdb1"),
    ),
    (
        "PARTUUIDs match whatever their case",
        || {
            vec![
                c("/dev/sda1", pu("AAAA"), m1(S::Mirroring, 10)),
                tgt(MISSING),
            ]
        },
        || boot(0, S::Mirroring, Leg::Source),
    ),
];

fn as_view(r: JournalRead) -> JournalView {
    match r {
        JournalRead::Ok(j) => j,
        other => panic!("not a journal: {other:?}"),
    }
}

fn with_backend(mut cands: Vec<CandidateView>, backend: &str) -> Vec<CandidateView> {
    for c in &mut cands {
        if let JournalRead::Ok(j) = &mut c.journal {
            j.backend = backend.into();
        }
    }
    cands
}

#[test]
fn boot_choice_34_cases_on_both_backends() {
    assert_eq!(BOOT_CASES.len(), 34);
    for (what, cands, want) in BOOT_CASES {
        for backend in ["dm-mirror", "md-raid1"] {
            let cands = with_backend(cands(), backend);
            let got = choose_boot(&cands);
            assert_eq!(got, want(), "{what} ({backend})");
            if let Verdict::Refuse(r) = &got {
                assert!(!r.message(&cands).is_empty());
            }
            // where the code before the core decided without a guess, the core decides alike
            if let Some(old) = legacy_comparable(&cands, &got) {
                assert_eq!(
                    old, got,
                    "{what} ({backend}): differs from the decision before the core"
                );
            }
        }
    }
}

/// The decision of `recovery::decide` before the core (verbatim logic), on journal reads as
/// `journal_on` gave them then: torn, unreadable and missing were all "no journal".
fn legacy_decide(cands: &[CandidateView]) -> Option<usize> {
    let journal = |c: &CandidateView| match &c.journal {
        JournalRead::Ok(j) => Some(j.clone()),
        _ => None,
    };
    let newest = cands
        .iter()
        .filter_map(journal)
        .max_by_key(|j| (j.updated_unix, j.step))?;
    let want = if newest.step >= Step::Switching && newest.step != Step::Aborted {
        &newest.target
    } else {
        &newest.source
    };
    let id = want.identity.as_ref()?;
    cands.iter().position(|c| id.matches(&c.identity))
}

/// The old decision as a core verdict's index, unless the core refuses what the old code guessed
/// at (a single device, an unknown version, conflicting or duplicated devices).
fn legacy_comparable(cands: &[CandidateView], got: &Verdict) -> Option<Verdict> {
    match got {
        Verdict::Boot {
            by: BootBy::Only, ..
        } => return None,
        Verdict::Refuse(
            BootRefusal::NoCandidates
            | BootRefusal::UnknownVersion { .. }
            | BootRefusal::Conflict { .. }
            | BootRefusal::Duplicate { .. },
        ) => return None,
        _ => {}
    }
    Some(match (legacy_decide(cands), got) {
        (Some(i), Verdict::Boot { by, .. }) => Verdict::Boot { index: i, by: *by },
        (Some(i), Verdict::Refuse(_)) => Verdict::Boot {
            index: i,
            by: BootBy::Only,
        },
        (None, v) => match v {
            Verdict::Refuse(_) => v.clone(),
            Verdict::Boot { .. } => Verdict::Refuse(BootRefusal::NoCandidates),
        },
    })
}

/// Every combination of what the journals on 2 and 3 candidates (source, target, a clone) can
/// read as within one migration: missing, torn, unreadable, or any step at one of two times.
/// The core must decide as the code before it did.
#[test]
fn boot_choice_agrees_with_the_code_before_the_core_exhaustively() {
    let mut reads = vec![MISSING, torn(), unreadable()];
    for s in Step::ALL {
        for t in [10, 20] {
            reads.push(m1(s, t));
        }
    }
    let mut n = 0;
    for a in &reads {
        for b in &reads {
            let two = [
                vec![src(a.clone()), tgt(b.clone())],
                vec![tgt(a.clone()), src(b.clone())],
            ];
            for cands in two {
                let got = choose_boot(&cands);
                assert_eq!(
                    legacy_comparable(&cands, &got),
                    Some(got.clone()),
                    "{cands:?}"
                );
                n += 1;
            }
            for k in &reads {
                let cands = vec![clone1(k.clone()), src(a.clone()), tgt(b.clone())];
                let got = choose_boot(&cands);
                assert_eq!(
                    legacy_comparable(&cands, &got),
                    Some(got.clone()),
                    "{cands:?}"
                );
                n += 1;
            }
        }
    }
    assert_eq!(n, 15 * 15 * 2 + 15 * 15 * 15);
}

#[test]
fn refusal_messages_name_the_problem() {
    let cands = [
        src(m1(S::Mirroring, 10)),
        tgt(JournalRead::UnknownVersion(7)),
    ];
    let m = BootRefusal::UnknownVersion {
        index: 1,
        version: 7,
    }
    .message(&cands);
    assert!(m.contains("/dev/vdb1") && m.contains("version 7"), "{m}");
    let m = BootRefusal::NoJournal {
        torn: 1,
        unreadable: 0,
    }
    .message(&cands);
    assert!(
        m.contains("none holds a rootshift journal") && m.contains("1 torn"),
        "{m}"
    );
}

// ---------------------------------------------------------------- golden journals

const GOLDEN_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/state/golden");

fn rec(dev: &str, path: &str, size: u64, id: Identity) -> DevRecord {
    DevRecord {
        dev: dev.into(),
        path: path.into(),
        size_bytes: size,
        identity: Some(id),
    }
}

/// A journal as today's driver writes it at `step` (fixed times), for a backend.
fn golden_journal(backend: &str, step: Step) -> Journal {
    let (source, target) = if backend == "dm-mirror" {
        (
            rec(
                "252:1",
                "/dev/vda1",
                4 << 30,
                pu("0b6a4c52-7c1e-4b0e-9a51-2d1f7f0b9e01"),
            ),
            rec(
                "252:17",
                "/dev/vdb1",
                8 << 30,
                pu("5d0c8e11-3a7f-4c6d-8e2b-6f4a1c9d7e02"),
            ),
        )
    } else {
        (
            rec("8:0", "/dev/sda", 4 << 30, ser("QM00001")),
            rec("8:16", "/dev/sdb", 8 << 30, ser("QM00002")),
        )
    };
    let mut j = Journal::new("rootshift-root", backend, source, target);
    j.started_unix = 1_764_000_000;
    j.updated_unix = 1_764_000_000 + 10 * (step as u64 + 1);
    j.step = step;
    j.copy_mode = Some("used".into());
    j.region_bytes = Some(if backend == "dm-mirror" { 524_288 } else { 0 });
    j.copied_bytes = Some(1_234_567_890);
    if step != Step::Mirroring {
        j.copy_seconds = Some(12.5);
    }
    if step.switched() {
        j.switch_window_ms = Some(3.25);
    }
    if step >= Step::Grown && step != Step::Aborted {
        j.fs_before_bytes = Some(4_227_858_432);
        j.fs_after_bytes = Some(8_455_716_864);
        j.source_uuid_changed = Some("9e0e7f55-1c2b-4d3a-8f6e-0a1b2c3d4e5f".into());
    }
    if step == Step::Aborted {
        j.error = Some("SIGINT received".into());
    }
    j
}

/// The persisted copy with clones, verify and install records (every optional field).
fn golden_full() -> Journal {
    let mut j = golden_journal("dm-mirror", Step::Switching);
    j.clones = vec![rec(
        "252:33",
        "/dev/vdc1",
        8 << 30,
        pu("c10e0001-0000-4000-8000-000000000001"),
    )];
    j.clones_done = 0;
    j.verified_bytes = Some(1_234_567_890);
    j.source_live = false;
    j.install = Some(crate::state::journal::InstallRecord {
        bootloader: "grub-bios".into(),
        initramfs: "regenerate".into(),
        state: "planned".into(),
        ..Default::default()
    });
    j
}

fn golden_name(backend: &str, step: Step) -> String {
    format!("journal-{backend}-{}.json", step.as_str())
}

fn read_golden(name: &str) -> String {
    std::fs::read_to_string(format!("{GOLDEN_DIR}/{name}"))
        .unwrap_or_else(|e| panic!("{name}: {e} (ROOTSHIFT_WRITE_GOLDEN=1 writes the files)"))
}

/// `ROOTSHIFT_WRITE_GOLDEN=1 cargo test golden` (re)writes the golden files. Never do that to
/// make a failing test pass: a change to the format means a new journal version and new files.
fn maybe_write_goldens() {
    if std::env::var_os("ROOTSHIFT_WRITE_GOLDEN").is_none() {
        return;
    }
    std::fs::create_dir_all(GOLDEN_DIR).unwrap();
    let write =
        |name: &str, text: &[u8]| std::fs::write(format!("{GOLDEN_DIR}/{name}"), text).unwrap();
    for backend in ["dm-mirror", "md-raid1"] {
        for s in Step::ALL {
            let text = serde_json::to_string_pretty(&golden_journal(backend, s)).unwrap();
            write(&golden_name(backend, s), text.as_bytes());
        }
    }
    // the persisted copy: the JSON, a newline, spaces up to PERSIST_BYTES (see journal.rs)
    let mut buf = serde_json::to_string_pretty(&golden_full())
        .unwrap()
        .into_bytes();
    buf.push(b'\n');
    buf.resize(journal::PERSIST_BYTES, b' ');
    write("journal-persisted-dm-mirror-switching-full.json", &buf);
    let v2 = serde_json::to_string_pretty(&golden_journal("dm-mirror", Step::Switching))
        .unwrap()
        .replacen("\"version\": 1,", "\"version\": 2,", 1);
    write("journal-version-2.json", v2.as_bytes());
    let text = serde_json::to_string_pretty(&golden_journal("dm-mirror", Step::Switched)).unwrap();
    write("journal-torn.json", &text.as_bytes()[..text.len() / 2]);
}

/// What today's code decides for a journal at each step (from `recovery::decide` and
/// `migrate::abort`/`resume` before the core), written out:
/// (step, boots the target?, abort on the source alone, abort on the target alone, resume with
/// the target alone mapped).
#[rustfmt::skip]
const GOLDEN_DECISIONS: [(Step, bool, AbortAction, AbortAction, ResumeAction); 6] = [
    (S::Mirroring, false, AbortAction::Abandon, AbortAction::Abandon, ResumeAction::Finish),
    (S::Switching, true,  AbortAction::Abandon, AbortAction::Refuse,  ResumeAction::Finish),
    (S::Switched,  true,  AbortAction::Nothing, AbortAction::Refuse,  ResumeAction::Finish),
    (S::Grown,     true,  AbortAction::Nothing, AbortAction::Refuse,  ResumeAction::Finish),
    (S::Done,      true,  AbortAction::Nothing, AbortAction::Refuse,  ResumeAction::Refuse(ResumeRefusal::Over(S::Done))),
    (S::Aborted,   false, AbortAction::Nothing, AbortAction::Nothing, ResumeAction::Refuse(ResumeRefusal::Over(S::Aborted))),
];

fn parse_ok(name: &str) -> Journal {
    match journal::parse(&read_golden(name)) {
        Parsed::Ok(j) => *j,
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn golden_journals_decide_as_before() {
    maybe_write_goldens();
    let mut n = 0;
    for backend in ["dm-mirror", "md-raid1"] {
        for (step, to_target, abort_src, abort_tgt, resume) in GOLDEN_DECISIONS {
            let name = golden_name(backend, step);
            let j = parse_ok(&name);
            assert_eq!(j.step, step, "{name}");
            assert_eq!(j.backend, backend, "{name}");
            let id = |r: &DevRecord| r.identity.clone().unwrap();
            let view = JournalRead::Ok(JournalView::of(&j));
            let s = || c("/dev/x1", id(&j.source), view.clone());
            let t = |r: JournalRead| c("/dev/x2", id(&j.target), r);
            let k = || c("/dev/x3", pu("c10e"), view.clone());
            // the journal on the source only, on both, on all three legs (target read first)
            let want = |src_i: usize, tgt_i: usize| Verdict::Boot {
                index: if to_target { tgt_i } else { src_i },
                by: BootBy::Journal {
                    step,
                    leg: if to_target { Leg::Target } else { Leg::Source },
                },
            };
            assert_eq!(choose_boot(&[s(), t(MISSING)]), want(0, 1), "{name}");
            assert_eq!(choose_boot(&[t(view.clone()), s()]), want(1, 0), "{name}");
            assert_eq!(choose_boot(&[t(torn()), k(), s()]), want(2, 0), "{name}");
            let legacy = [s(), t(MISSING)];
            assert_eq!(
                legacy_decide(&legacy),
                Some(if to_target { 1 } else { 0 }),
                "{name}"
            );
            let single = |is_target| AbortSeen::Single { is_target };
            assert_eq!(may_abort(Some(j.step), single(false)), abort_src, "{name}");
            assert_eq!(may_abort(Some(j.step), single(true)), abort_tgt, "{name}");
            let target_alone = ResumeSeen {
                mirroring: false,
                target_attached: false,
                on_target_alone: true,
                past: true,
            };
            assert_eq!(may_resume(Some(j.step), target_alone), resume, "{name}");
            // frozen in both directions: today's writer gives exactly the file
            let text = serde_json::to_string_pretty(&golden_journal(backend, step)).unwrap();
            assert_eq!(
                text,
                read_golden(&name),
                "{name}: the journal format changed"
            );
            n += 1;
        }
    }
    assert_eq!(n, 12);
}

#[test]
fn golden_persisted_copy_parses_with_its_padding() {
    maybe_write_goldens();
    let name = "journal-persisted-dm-mirror-switching-full.json";
    let text = read_golden(name);
    assert_eq!(text.len(), journal::PERSIST_BYTES);
    let j = parse_ok(name);
    assert_eq!(j, golden_full());
    assert_eq!(j.clones.len(), 1);
    let cands = [
        c(
            "/dev/vdc1",
            j.clones[0].identity.clone().unwrap(),
            JournalRead::Ok(JournalView::of(&j)),
        ),
        c("/dev/vdb1", j.target.identity.clone().unwrap(), MISSING),
        c("/dev/vda1", j.source.identity.clone().unwrap(), MISSING),
    ];
    assert_eq!(choose_boot(&cands), boot(1, S::Switching, Leg::Target));
}

#[test]
fn golden_unknown_version_and_torn_journals_are_never_interpreted() {
    maybe_write_goldens();
    let v2 = read_golden("journal-version-2.json");
    assert_eq!(journal::parse(&v2), Parsed::UnknownVersion(2));
    // what an initrd rootshift does with it next to a readable journal: refuse (exit 4)
    let ok = JournalRead::Ok(JournalView::of(&golden_journal("dm-mirror", S::Switching)));
    let v = choose_boot(&[src(ok), tgt(JournalRead::UnknownVersion(2))]);
    assert_eq!(
        v,
        refuse(BootRefusal::UnknownVersion {
            index: 1,
            version: 2
        })
    );
    // a version alone decides, whatever else the file holds
    assert_eq!(
        journal::parse(r#"{"version": 3}"#),
        Parsed::UnknownVersion(3)
    );
    assert_eq!(
        journal::parse(r#"{"version": 0, "step": "done"}"#),
        Parsed::UnknownVersion(0)
    );
    assert!(matches!(
        journal::parse(&read_golden("journal-torn.json")),
        Parsed::Torn(_)
    ));
    assert!(matches!(
        journal::parse(r#"{"step": "done"}"#),
        Parsed::Torn(_)
    ));
    assert!(matches!(
        journal::parse(r#"{"version": 1, "step": "done"}"#),
        Parsed::Torn(_)
    ));
    assert!(known_version(u64::from(journal::VERSION)));
}

mod issue15;

#[test]
fn the_target_may_run_from_switching_to_done() {
    for (s, may) in [
        (Step::Mirroring, false),
        (Step::Switching, true),
        (Step::Switched, true),
        (Step::Grown, true),
        (Step::Done, true),
        (Step::Aborted, false),
    ] {
        assert_eq!(s.target_may_run(), may, "{s:?}");
    }
}
