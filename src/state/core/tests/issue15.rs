//! Issue 15's boot-choice cases (items 3, 4, 6): a lone device's own journal, the generation
//! counter and migration id ordering the journals, `rd.rootshift.pick=`. Each case that the
//! code before this change decided wrongly says so, and asserts the old decision
//! (`legacy_decide`, verbatim; a lone device was booted unread: `BootBy::Only`).

use super::*;

/// `r` with generation `seq` of migration `mig`.
fn g(r: JournalRead, seq: u64, mig: &str) -> JournalRead {
    match r {
        JournalRead::Ok(j) => JournalRead::Ok(JournalView {
            seq: Some(seq),
            migration: Some(mig.into()),
            ..j
        }),
        other => other,
    }
}

fn twin_missing(step: Step, leg: Option<Leg>, twin: &str) -> Verdict {
    refuse(BootRefusal::TwinMissing {
        step,
        leg,
        twin: twin.into(),
    })
}

fn only() -> Verdict {
    Verdict::Boot {
        index: 0,
        by: BootBy::Only,
    }
}

/// The decision before issue 15 for one device: booted unread.
const OLD_LONE: Verdict = Verdict::Boot {
    index: 0,
    by: BootBy::Only,
};

type Lone = (&'static str, fn() -> CandidateView, fn() -> Verdict);

/// Item 3: one device visible (slow USB source, fast NVMe target): its own journal decides
/// whether it may boot alone; `TwinMissing` makes the caller wait, then refuse.
const LONE: [Lone; 17] = [
    ("no journal", || tgt(MISSING), only),
    ("torn journal", || tgt(torn()), only),
    ("unreadable journal", || tgt(unreadable()), only),
    (
        "unknown version",
        || tgt(JournalRead::UnknownVersion(3)),
        || {
            refuse(BootRefusal::UnknownVersion {
                index: 0,
                version: 3,
            })
        },
    ),
    // FAILS on the old code (booted the half copy alone)
    (
        "unfinished target, mirroring",
        || tgt(m1(S::Mirroring, 10)),
        || twin_missing(S::Mirroring, Some(Leg::Target), "/dev/disk/aaaa"),
    ),
    // FAILS on the old code: a stale `switching` may be an earlier attempt's
    (
        "target at switching",
        || tgt(m1(S::Switching, 20)),
        || twin_missing(S::Switching, Some(Leg::Target), "/dev/disk/aaaa"),
    ),
    (
        "target, aborted",
        || tgt(m1(S::Aborted, 20)),
        || twin_missing(S::Aborted, Some(Leg::Target), "/dev/disk/aaaa"),
    ),
    (
        "target, switched",
        || tgt(m1(S::Switched, 20)),
        || boot(0, S::Switched, Leg::Target),
    ),
    (
        "target, grown",
        || tgt(m1(S::Grown, 20)),
        || boot(0, S::Grown, Leg::Target),
    ),
    (
        "target, done",
        || tgt(m1(S::Done, 20)),
        || boot(0, S::Done, Leg::Target),
    ),
    (
        "source, mirroring",
        || src(m1(S::Mirroring, 10)),
        || boot(0, S::Mirroring, Leg::Source),
    ),
    (
        "source, aborted",
        || src(m1(S::Aborted, 10)),
        || boot(0, S::Aborted, Leg::Source),
    ),
    // FAILS on the old code (booted the stale source alone)
    (
        "source of a switched migration",
        || src(m1(S::Switched, 20)),
        || twin_missing(S::Switched, Some(Leg::Source), "/dev/disk/bbbb"),
    ),
    (
        "source at switching",
        || src(m1(S::Switching, 20)),
        || twin_missing(S::Switching, Some(Leg::Source), "/dev/disk/bbbb"),
    ),
    // FAILS on the old code: a clone alone, the migration unfinished
    (
        "a clone alone",
        || clone1(m1(S::Switched, 20)),
        || twin_missing(S::Switched, None, "/dev/disk/bbbb"),
    ),
    (
        "legs without identity",
        || c("/dev/vda1", pu("aaaa"), jv(S::Mirroring, 10, 5, "", "")),
        || twin_missing(S::Mirroring, None, "/dev/disk/"),
    ),
    (
        "a disk the finished migration does not name (copied later)",
        || clone1(m1(S::Done, 40)),
        only,
    ),
];

#[test]
fn a_lone_device_reads_its_own_journal_17_cases() {
    let mut changed = 0;
    for (what, cand, want) in LONE {
        for backend in ["dm-mirror", "md-raid1"] {
            let cands = with_backend(vec![cand()], backend);
            let got = choose_boot(&cands);
            assert_eq!(got, want(), "{what} ({backend})");
            if let Verdict::Refuse(r) = &got {
                let m = r.message(&cands);
                assert!(m.contains("rd.rootshift.pick="), "{what}: {m}");
            }
        }
        if matches!(want(), Verdict::Refuse(BootRefusal::TwinMissing { .. })) {
            assert_ne!(want(), OLD_LONE);
            changed += 1;
        }
    }
    assert_eq!(changed, 7, "cases the old code booted alone and now wait");
    let cands = [tgt(m1(S::Mirroring, 10))];
    let m = choose_boot(&cands);
    let Verdict::Refuse(r) = m else { panic!() };
    let m = r.message(&cands);
    assert!(
        m.contains("/dev/vdb1") && m.contains("/dev/disk/aaaa") && m.contains("PARTUUID=bbbb"),
        "{m}"
    );
}

type Gen = (
    &'static str,
    fn() -> Vec<CandidateView>,
    fn() -> Verdict,
    Option<usize>,
);

/// Item 4: the generation counter (and the migration id) order the journals, not wall-clock
/// time or device order. (what, candidates, verdict, what the old code booted).
const GENERATIONS: [Gen; 8] = [
    (
        // FAILS on the old code: attempt 1 failed its switch and rolled back; attempt 2 onto
        // the same target crashed while copying, in the same second: the target's blocks
        // still say attempt 1's `switching`, and (time, step) ranked it first
        "stale switching on a retried target, same second",
        || {
            vec![
                tgt(g(m1(S::Switching, 20), 5, "one")),
                src(g(m1(S::Mirroring, 20), 9, "two")),
            ]
        },
        || boot(1, S::Mirroring, Leg::Source),
        Some(0),
    ),
    (
        // FAILS on the old code: the clock went back between the attempts (no RTC, no NTP in
        // the initrd)
        "counters decide against wall-clock order",
        || {
            vec![
                src(g(m1(S::Mirroring, 10), 9, "two")),
                tgt(g(m1(S::Switching, 500), 5, "one")),
            ]
        },
        || boot(0, S::Mirroring, Leg::Source),
        Some(1),
    ),
    (
        "a newer generation after the switch: the target",
        || {
            vec![
                src(g(m1(S::Switching, 900), 6, "one")),
                tgt(g(m1(S::Switched, 100), 7, "one")),
            ]
        },
        || boot(1, S::Switched, Leg::Target),
        Some(1),
    ),
    (
        "equal generations of one migration (both legs, through the mirror)",
        || {
            vec![
                src(g(m1(S::Switching, 20), 6, "one")),
                tgt(g(m1(S::Switching, 20), 6, "one")),
            ]
        },
        || boot(1, S::Switching, Leg::Target),
        Some(1),
    ),
    (
        "equal generations, different migration ids: refused",
        || {
            vec![
                src(g(m1(S::Mirroring, 20), 6, "one")),
                tgt(g(m1(S::Mirroring, 20), 6, "two")),
            ]
        },
        || refuse(BootRefusal::Conflict { step: S::Mirroring }),
        Some(0),
    ),
    (
        "a journal without a counter: wall-clock time for all, as before",
        || {
            vec![
                src(m1(S::Mirroring, 10)),
                tgt(g(m1(S::Switching, 20), 1, "one")),
            ]
        },
        || boot(1, S::Switching, Leg::Target),
        Some(1),
    ),
    (
        "device order does not matter",
        || {
            vec![
                src(g(m1(S::Mirroring, 20), 9, "two")),
                tgt(g(m1(S::Switching, 20), 5, "one")),
            ]
        },
        || boot(0, S::Mirroring, Leg::Source),
        Some(1),
    ),
    (
        "torn and missing journals beside a counted one",
        || {
            vec![
                tgt(torn()),
                src(g(m1(S::Aborted, 20), 9, "two")),
                clone1(MISSING),
            ]
        },
        || boot(1, S::Aborted, Leg::Source),
        Some(1),
    ),
];

#[test]
fn generations_decide_8_cases() {
    let mut fails_old = 0;
    for (what, cands, want, old) in GENERATIONS {
        for backend in ["dm-mirror", "md-raid1"] {
            let cands = with_backend(cands(), backend);
            assert_eq!(choose_boot(&cands), want(), "{what} ({backend})");
            assert_eq!(legacy_decide(&cands), old, "{what}: the old decision");
        }
        if let (Verdict::Boot { index, .. }, Some(o)) = (want(), old) {
            if index != o {
                fails_old += 1;
            }
        }
    }
    assert_eq!(fails_old, 3, "cases the old code booted the stale copy in");
}

#[test]
fn pick_overrides_the_journals_and_must_name_one_device() {
    let cands = [src(MISSING), tgt(MISSING)];
    assert!(matches!(
        choose_boot(&cands),
        Verdict::Refuse(BootRefusal::NoJournal { .. })
    ));
    let pick = Identity::parse_pick("PARTUUID=BBBB").unwrap();
    assert_eq!(
        choose_boot_picked(&cands, Some(&pick)),
        Verdict::Boot {
            index: 1,
            by: BootBy::Picked
        }
    );
    // over a journal that says otherwise, too: the user's word
    let cands = [src(m1(S::Mirroring, 10)), tgt(m1(S::Mirroring, 10))];
    assert_eq!(
        choose_boot_picked(&cands, Some(&pick)),
        Verdict::Boot {
            index: 1,
            by: BootBy::Picked
        }
    );
    let serial = Identity::parse_pick("SERIAL=vdb-serial#1").unwrap();
    assert_eq!(
        choose_boot_picked(
            &[c("/dev/vdb1", ser("vdb-serial#1"), MISSING)],
            Some(&serial)
        ),
        Verdict::Boot {
            index: 0,
            by: BootBy::Picked
        }
    );
    let none = Identity::parse_pick("PARTUUID=ffff").unwrap();
    let v = choose_boot_picked(&cands, Some(&none));
    assert_eq!(
        v,
        refuse(BootRefusal::Pick {
            pick: "PARTUUID=ffff".into(),
            found: 0
        })
    );
    let twice = [src(MISSING), c("/dev/sdz1", pu("aaaa"), MISSING)];
    let v = choose_boot_picked(&twice, Identity::parse_pick("PARTUUID=aaaa").as_ref());
    assert!(matches!(
        v,
        Verdict::Refuse(BootRefusal::Pick { found: 2, .. })
    ));
    assert_eq!(choose_boot_picked(&cands, None), choose_boot(&cands));
    for bad in ["", "PARTUUID=", "LABEL=root", "aaaa"] {
        assert_eq!(Identity::parse_pick(bad), None, "{bad}");
    }
}

#[test]
fn every_refusal_names_the_escape_hatch() {
    let cands = [src(MISSING), tgt(MISSING)];
    let Verdict::Refuse(r) = choose_boot(&cands) else {
        panic!()
    };
    let m = r.message(&cands);
    assert!(
        m.contains("rd.rootshift.pick=PARTUUID=aaaa (/dev/vda1)")
            && m.contains("rd.rootshift.pick=PARTUUID=bbbb (/dev/vdb1)"),
        "{m}"
    );
    assert_eq!(
        BootRefusal::NoCandidates.message(&[]),
        "no device carries the root filesystem"
    );
}

// ------------------------------------------- golden: the two-slot persisted copy (format 2)

const GOLDEN_V2: &str = "journal-persisted-v2-dm-mirror-switching.json";

/// A format-2 copy: slot 0 an older save (mirroring, seq 6), slot 1 the newer (switching,
/// seq 7), of a journal with the generation counter and a migration id.
fn golden_v2() -> Vec<u8> {
    let mut j = golden_journal("dm-mirror", Step::Mirroring);
    j.seq = Some(6);
    j.migration_id = Some("0123456789abcdef0123456789abcdef".into());
    let older = serde_json::to_string_pretty(&j).unwrap();
    let mut f = crate::state::persisted::layout(&older, 1).unwrap();
    // what two later saves through persisted::write make of it: slot 0 (seq 2), slot 1 (seq 3)
    let dir = std::env::temp_dir().join(format!("rootshift-golden-v2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("rootshift-root.json");
    std::fs::write(&p, &f).unwrap();
    crate::state::persisted::write(&p, &older, |_| panic!("in place")).unwrap();
    j.step = Step::Switching;
    j.seq = Some(7);
    let newer = serde_json::to_string_pretty(&j).unwrap();
    crate::state::persisted::write(&p, &newer, |_| panic!("in place")).unwrap();
    f = std::fs::read(&p).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    f
}

#[test]
fn golden_two_slot_copy_reads_the_newer_slot_and_decides() {
    let path = format!("{GOLDEN_DIR}/{GOLDEN_V2}");
    if std::env::var_os("ROOTSHIFT_WRITE_GOLDEN").is_some() {
        std::fs::write(&path, golden_v2()).unwrap();
    }
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{GOLDEN_V2}: {e}"));
    assert_eq!(bytes, golden_v2(), "the format-2 layout is frozen");
    let j = match journal::parse_bytes(&bytes) {
        Parsed::Ok(j) => j,
        other => panic!("{other:?}"),
    };
    assert_eq!((j.step, j.seq), (Step::Switching, Some(7)));
    // what a format-1 reader does with it: reads "version": 2 and never interprets it
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["version"], 2);
    assert!(!known_version(2));
    // the boot choice from it: the target, by the counter
    let mut tgt_j = JournalView::of(&j);
    tgt_j.source.identity = Some(pu("aaaa"));
    tgt_j.target.identity = Some(pu("bbbb"));
    let mut stale = tgt_j.clone();
    stale.step = Step::Mirroring;
    stale.seq = Some(6);
    stale.updated_unix += 100; // a clock that went forward then back: the counter decides
    let cands = [src(JournalRead::Ok(stale)), tgt(JournalRead::Ok(tgt_j))];
    assert_eq!(choose_boot(&cands), boot(1, S::Switching, Leg::Target));
}
