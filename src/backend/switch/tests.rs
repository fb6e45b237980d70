//! The switch sequences against the fake, with every call position failing in turn.

use nix::errno::Errno;

use super::fake::{accept, line, Call, Fake, Fault, Script};
use super::*;

fn new_table() -> Vec<RawLine> {
    line("linear", "254:16 0")
}

fn dev(minor: u32) -> DevNum {
    DevNum { major: 8, minor }
}

fn at(i: usize, fault: Fault) -> Script {
    Script {
        at: i,
        fault,
        sticky: false,
    }
}

fn sticky(i: usize, fault: Fault) -> Script {
    Script {
        at: i,
        fault,
        sticky: true,
    }
}

/// The rules every run of the dm switch keeps, whatever failed.
fn check_dm(f: &Fake, r: &Result<Reload, SwitchError>, old: &[RawLine], ctx: &str) {
    assert!(f.violations.is_empty(), "{ctx}: {:?}", f.violations);
    match r {
        Ok(Reload { switched: true, .. }) => {
            assert!(
                same_table(&f.live, &new_table()),
                "{ctx}: switched, live {:?}",
                f.live
            );
            assert!(!f.suspended, "{ctx}: switched but suspended");
            // The live table was read back after the last resume.
            let last_resume = f.calls.iter().rposition(|c| *c == Call::Resume).unwrap();
            assert!(
                f.calls[last_resume..].contains(&Call::LiveTable),
                "{ctx}: no read-back after the resume: {:?}",
                f.calls
            );
        }
        Ok(Reload {
            switched: false, ..
        }) => {
            assert!(
                same_table(&f.live, old),
                "{ctx}: not switched, live {:?}",
                f.live
            );
            assert!(!f.suspended, "{ctx}: left suspended");
        }
        Err(SwitchError::Failed(_)) => {
            assert!(!f.suspended, "{ctx}: Failed but suspended: {:?}", f.calls);
        }
        // Allowed only when the undo itself could not be confirmed.
        Err(SwitchError::Unconfirmed(_)) => {}
    }
    // Never suspended without the caller being told.
    if f.suspended {
        assert!(
            matches!(r, Err(SwitchError::Unconfirmed(_))),
            "{ctx}: suspended but {r:?}"
        );
    }
    // Any table still in the inactive slot is the live one (a resume cannot switch).
    if let Some(t) = &f.inactive {
        assert!(
            same_table(t, &f.live) || matches!(r, Err(SwitchError::Unconfirmed(_))),
            "{ctx}: unverified table left inactive: {t:?}, {r:?}"
        );
    }
}

#[test]
fn dm_switch_in_sync_switches_and_reads_back() {
    let mut f = Fake::dm(true);
    let r = critical_reload(&mut f, &new_table(), accept);
    assert!(matches!(r, Ok(Reload { switched: true, .. })), "{r:?}");
    assert_eq!(
        f.calls,
        [
            Call::LiveTable,
            Call::Load,
            Call::Suspend,
            Call::Status,
            Call::Resume,
            Call::LiveTable
        ]
    );
    check_dm(&f, &r, &Fake::dm(true).live, "happy");
}

#[test]
fn dm_switch_not_in_sync_drops_the_table_then_resumes() {
    let mut f = Fake::dm(false);
    let old = f.live.clone();
    let r = critical_reload(&mut f, &new_table(), accept);
    assert!(
        matches!(
            r,
            Ok(Reload {
                switched: false,
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(
        f.calls,
        [
            Call::LiveTable,
            Call::Load,
            Call::Suspend,
            Call::Status,
            Call::Clear,
            Call::Resume
        ]
    );
    check_dm(&f, &r, &old, "not in sync");
}

/// Every call position of both dm switch paths fails with every fault, once and from then on.
#[test]
fn dm_switch_every_call_failing() {
    let mut cases = 0;
    for in_sync in [true, false] {
        let mut clean = Fake::dm(in_sync);
        let _ = critical_reload(&mut clean, &new_table(), accept);
        // Past the clean run's length too: the retries and fall-backs a failure brings.
        for i in 0..clean.calls.len() + 8 {
            for fault in Fault::ALL {
                for s in [at(i, fault), sticky(i, fault)] {
                    let mut f = Fake::dm(in_sync).with(s);
                    let old = f.live.clone();
                    let r = critical_reload(&mut f, &new_table(), accept);
                    check_dm(
                        &f,
                        &r,
                        &old,
                        &format!("in_sync={in_sync} {s:?} {:?}", f.calls),
                    );
                    cases += 1;
                }
            }
        }
    }
    assert!(cases >= 2 * 6 * 5 * 2);
}

/// Two calls failing at once (every pair of positions, sticky): the rules still hold.
#[test]
fn dm_switch_every_pair_of_calls_failing() {
    for in_sync in [true, false] {
        for i in 0..14 {
            for j in i + 1..16 {
                for fault in [Fault::Fail(Errno::EIO), Fault::Timeout] {
                    let mut f = Fake::dm(in_sync)
                        .with(sticky(i, fault))
                        .with(sticky(j, Fault::Fail(Errno::EIO)));
                    let old = f.live.clone();
                    let r = critical_reload(&mut f, &new_table(), accept);
                    check_dm(&f, &r, &old, &format!("{i},{j} {fault:?} {:?}", f.calls));
                }
            }
        }
    }
}

#[test]
fn dm_switch_retries_a_suspend_interrupted_by_eintr() {
    let mut f = Fake::dm(true).with(at(2, Fault::Fail(Errno::EINTR)));
    let r = critical_reload(&mut f, &new_table(), accept);
    assert!(matches!(r, Ok(Reload { switched: true, .. })), "{r:?}");
    assert_eq!(f.count(Call::Suspend), 2);
    // EINTR forever: bounded, then undone.
    let mut f = Fake::dm(true).with(sticky(2, Fault::Fail(Errno::EINTR)));
    let r = critical_reload(&mut f, &new_table(), accept);
    assert!(matches!(r, Err(SwitchError::Failed(_))), "{r:?}");
    assert_eq!(f.count(Call::Suspend), SUSPEND_ATTEMPTS as usize);
    assert!(!f.suspended && f.inactive.is_none());
    // Another errno is not retried.
    let mut f = Fake::dm(true).with(at(2, Fault::Fail(Errno::EIO)));
    let _ = critical_reload(&mut f, &new_table(), accept);
    assert_eq!(f.count(Call::Suspend), 1);
}

#[test]
fn dm_failed_clear_loads_the_live_table_before_resuming() {
    let mut f = Fake::dm(false).with(sticky(4, Fault::Fail(Errno::EIO)));
    let old = f.live.clone();
    let r = critical_reload(&mut f, &new_table(), accept);
    assert!(
        matches!(
            r,
            Ok(Reload {
                switched: false,
                ..
            })
        ),
        "{r:?}"
    );
    let n = f.calls.len();
    assert_eq!(f.calls[n - 2..], [Call::Load, Call::Resume]);
    assert_eq!(f.count(Call::Clear), CLEAR_ATTEMPTS as usize);
    assert!(same_table(&f.live, &old));
    assert!(f.violations.is_empty());
}

#[test]
fn dm_clear_and_live_load_failing_means_no_resume() {
    // Clear fails for good, and so does every load after the first.
    let mut f = Fake::dm(false)
        .with(sticky(4, Fault::Fail(Errno::EIO)))
        .with(at(4 + CLEAR_ATTEMPTS as usize, Fault::Fail(Errno::ENOMEM)));
    let r = critical_reload(&mut f, &new_table(), accept);
    assert!(matches!(r, Err(SwitchError::Unconfirmed(_))), "{r:?}");
    let status = f.calls.iter().position(|c| *c == Call::Status).unwrap();
    assert!(!f.calls[status..].contains(&Call::Resume), "{:?}", f.calls);
    assert!(f.suspended);
    assert!(f.violations.is_empty());
}

#[test]
fn dm_resume_failing_for_good_is_unconfirmed() {
    for in_sync in [true, false] {
        let i = if in_sync { 4 } else { 5 };
        let mut f = Fake::dm(in_sync).with(sticky(i, Fault::Fail(Errno::EIO)));
        let r = critical_reload(&mut f, &new_table(), accept);
        assert!(matches!(r, Err(SwitchError::Unconfirmed(_))), "{r:?}");
        assert_eq!(f.count(Call::Resume), RESUME_ATTEMPTS as usize);
        assert!(f.suspended);
        // Never recorded as switched; no read-back of an unresumed device.
        assert_eq!(f.calls.last(), Some(&Call::Resume));
    }
}

#[test]
fn dm_switch_confirmed_only_by_the_read_back() {
    // A resume that did not swap: the live table is still the mirror.
    let mut f = Fake::dm(true);
    f.no_swap = true;
    let r = critical_reload(&mut f, &new_table(), accept);
    assert!(
        matches!(&r, Err(SwitchError::Failed(m)) if m.contains("did not switch")),
        "{r:?}"
    );
    // The read-back failing for good: not confirmed, not Switched.
    let mut f = Fake::dm(true).with(sticky(5, Fault::Fail(Errno::EIO)));
    let r = critical_reload(&mut f, &new_table(), accept);
    assert!(matches!(r, Err(SwitchError::Failed(_))), "{r:?}");
    assert_eq!(f.count(Call::LiveTable), 1 + READBACK_ATTEMPTS as usize);
    // Failing once: retried, confirmed.
    let mut f = Fake::dm(true).with(at(5, Fault::Fail(Errno::EIO)));
    let r = critical_reload(&mut f, &new_table(), accept);
    assert!(matches!(r, Ok(Reload { switched: true, .. })), "{r:?}");
}

#[test]
fn dm_status_failing_in_the_window_keeps_the_old_table() {
    let mut f = Fake::dm(true).with(at(3, Fault::Fail(Errno::EIO)));
    let old = f.live.clone();
    let r = critical_reload(&mut f, &new_table(), accept);
    assert!(
        matches!(
            r,
            Ok(Reload {
                switched: false,
                ..
            })
        ),
        "{r:?}"
    );
    assert!(same_table(&f.live, &old));
}

#[test]
fn dm_reload_every_call_failing() {
    let mut clean = Fake::dm(true);
    reload(&mut clean, &new_table()).unwrap();
    assert_eq!(
        clean.calls,
        [Call::LiveTable, Call::Load, Call::Suspend, Call::Resume]
    );
    for i in 0..clean.calls.len() + 8 {
        for fault in Fault::ALL {
            for s in [at(i, fault), sticky(i, fault)] {
                // in_sync false: the fake counts no resume as verified; a reload wants its
                // table, so only a resume with a table nobody asked for is a violation here.
                let mut f = Fake::dm(true).with(s);
                let old = f.live.clone();
                let r = reload(&mut f, &new_table());
                let ctx = format!("{s:?} {:?}", f.calls);
                match &r {
                    Ok(()) => assert!(same_table(&f.live, &new_table()) && !f.suspended, "{ctx}"),
                    Err(SwitchError::Failed(_)) => {
                        assert!(!f.suspended, "{ctx}");
                        // A failed reload never swapped the table in.
                        assert!(same_table(&f.live, &old), "{ctx}");
                    }
                    Err(SwitchError::Unconfirmed(_)) => {}
                }
                if f.suspended {
                    assert!(matches!(r, Err(SwitchError::Unconfirmed(_))), "{ctx}");
                }
            }
        }
    }
}

const SRC: u32 = 1;
const TGT: u32 = 2;
const CLONE: u32 = 3;

fn md_fake(clones: bool) -> Fake {
    if clones {
        Fake::md(dev(SRC), dev(TGT), &[dev(CLONE)])
    } else {
        Fake::md(dev(SRC), dev(TGT), &[])
    }
}

fn faulty(f: &Fake, d: u32) -> bool {
    f.members
        .iter()
        .find(|m| m.dev == dev(d))
        .is_some_and(|m| m.faulty)
}

fn run_md(f: &mut Fake, clones: bool) -> Result<MdSwitch, SwitchError> {
    let c = if clones { vec![dev(CLONE)] } else { vec![] };
    md_switch(f, dev(SRC), dev(TGT), &c)
}

#[test]
fn md_switch_fails_the_source_then_the_clones() {
    let mut f = md_fake(true);
    let r = run_md(&mut f, true);
    assert!(matches!(r, Ok(MdSwitch::Switched { .. })), "{r:?}");
    assert_eq!(f.calls, [Call::DiskState, Call::SetFaulty, Call::SetFaulty]);
    assert!(faulty(&f, SRC) && faulty(&f, CLONE) && !faulty(&f, TGT));
}

#[test]
fn md_target_failing_after_the_check_is_not_switched() {
    // The target fails between GET_DISK_INFO and SET_DISK_FAULTY: md answers EBUSY.
    let mut f = md_fake(false);
    f.fail_after_check = Some(dev(TGT));
    let r = run_md(&mut f, false);
    assert!(
        matches!(&r, Ok(MdSwitch::NotSwitched { why, .. }) if why.contains("EBUSY")),
        "{r:?}"
    );
    assert!(!faulty(&f, SRC), "the source must stay a working member");
    // A target found failed at the check: not switched, nothing failed.
    let mut f = md_fake(false);
    f.members[1].faulty = true;
    let r = run_md(&mut f, false);
    assert!(matches!(r, Ok(MdSwitch::NotSwitched { .. })), "{r:?}");
    assert_eq!(f.calls, [Call::DiskState]);
}

/// Every call position of the md switch fails with every fault, once and from then on.
#[test]
fn md_switch_every_call_failing() {
    for clones in [false, true] {
        let mut clean = md_fake(clones);
        let _ = run_md(&mut clean, clones);
        for i in 0..clean.calls.len() + 4 {
            for fault in Fault::ALL {
                for s in [at(i, fault), sticky(i, fault)] {
                    let mut f = md_fake(clones).with(s);
                    let r = run_md(&mut f, clones);
                    let ctx = format!("clones={clones} {s:?} {:?} {r:?}", f.calls);
                    // The target is never failed; never "Unconfirmed" (md has no suspend).
                    assert!(!faulty(&f, TGT), "{ctx}");
                    match &r {
                        Ok(MdSwitch::Switched { .. }) => {
                            assert!(faulty(&f, SRC), "{ctx}");
                            if clones {
                                assert!(faulty(&f, CLONE), "{ctx}");
                            }
                        }
                        Ok(MdSwitch::NotSwitched { .. }) => {
                            assert!(!faulty(&f, SRC), "{ctx}")
                        }
                        Err(SwitchError::Failed(m)) => {
                            // Either nothing happened, or the source is failed and says so.
                            assert!(!faulty(&f, SRC) || m.contains("switched"), "{ctx}")
                        }
                        Err(SwitchError::Unconfirmed(_)) => panic!("{ctx}"),
                    }
                    // EBUSY on the source's SET_DISK_FAULTY is "not switched", never an error.
                    if f.calls.get(i) == Some(&Call::SetFaulty)
                        && i == 1
                        && fault == Fault::Fail(Errno::EBUSY)
                    {
                        assert!(matches!(r, Ok(MdSwitch::NotSwitched { .. })), "{ctx}");
                    }
                    // A SET_DISK_FAULTY that took effect but timed out is a switch.
                    if i == 1 && fault == Fault::Timeout && !clones {
                        assert!(matches!(r, Ok(MdSwitch::Switched { .. })), "{ctx}");
                    }
                }
            }
        }
    }
}

#[test]
fn md_remove_retries_ebusy_then_gives_up() {
    let mut f = md_fake(false);
    f.members[0].faulty = true;
    let mut f = f.with(at(0, Fault::Fail(Errno::EBUSY)));
    assert_eq!(md_remove(&mut f, dev(SRC)), Ok(()));
    assert_eq!(f.count(Call::Remove), 2);
    let mut f = md_fake(false).with(sticky(0, Fault::Fail(Errno::EBUSY)));
    assert_eq!(md_remove(&mut f, dev(SRC)), Err(Errno::EBUSY));
    assert_eq!(f.count(Call::Remove), 101);
    let mut f = md_fake(false).with(at(0, Fault::Fail(Errno::EIO)));
    assert_eq!(md_remove(&mut f, dev(SRC)), Err(Errno::EIO));
    assert_eq!(f.count(Call::Remove), 1);
}

/// A body standing in for the switch: suspends and resumes the fake's device through a raw
/// pointer-free copy of the calls (the freeze sequence only sees its result).
fn frozen_run(
    f: &mut Fake,
    body: Result<(), SwitchError>,
) -> Result<anyhow::Result<()>, SwitchError> {
    with_frozen(f, || body.map_err(anyhow::Error::from))
}

#[test]
fn freeze_every_call_failing() {
    let mut clean = Fake::default();
    frozen_run(&mut clean, Ok(())).unwrap().unwrap();
    assert_eq!(clean.calls, [Call::Freeze, Call::Thaw]);
    for i in 0..4 {
        for fault in Fault::ALL {
            for s in [at(i, fault), sticky(i, fault)] {
                // FITHAW answers EINVAL only when the fs is not frozen (by userspace): the
                // sequence takes it as thawed, so a fake "EINVAL while still frozen" is moot.
                if i > 0 && fault == Fault::Fail(Errno::EINVAL) {
                    continue;
                }
                let mut f = Fake::default().with(s);
                let r = frozen_run(&mut f, Ok(()));
                let ctx = format!("{s:?} {:?} {r:?}", f.calls);
                assert!(f.violations.is_empty(), "{ctx}");
                if f.frozen {
                    assert!(matches!(r, Err(SwitchError::Unconfirmed(_))), "{ctx}");
                }
                // A freeze that failed outright is not "thawed" (it may be someone else's).
                if i == 0 && matches!(fault, Fault::Fail(_)) {
                    assert_eq!(f.calls[..1], [Call::Freeze], "{ctx}");
                    assert!(matches!(r, Err(SwitchError::Failed(_))), "{ctx}");
                }
            }
        }
    }
}

#[test]
fn freeze_is_not_thawed_over_a_suspended_device() {
    let mut f = Fake::default();
    let r = frozen_run(
        &mut f,
        Err(SwitchError::Unconfirmed("resume failed".into())),
    );
    assert!(matches!(r, Err(SwitchError::Unconfirmed(_))), "{r:?}");
    assert_eq!(f.calls, [Call::Freeze]);
    assert!(f.frozen);
    // A switch that failed cleanly: thawed.
    let mut f = Fake::default();
    let r = frozen_run(&mut f, Err(SwitchError::Failed("not in sync".into())));
    assert!(matches!(r, Ok(Err(_))), "{r:?}");
    assert!(!f.frozen);
}

#[test]
fn guardian_recovery() {
    // Suspended with a prepared table: dropped, then resumed, then thawed.
    let mut d = Fake::dm(false);
    d.suspended = true;
    d.inactive = Some(new_table());
    let mut fs = Fake::default();
    fs.frozen = true;
    let acted = recover(Some((&mut d, true, true)), Some(&mut fs));
    assert!(
        !d.suspended && !fs.frozen && d.violations.is_empty(),
        "{acted:?}"
    );
    assert!(same_table(&d.live, &Fake::dm(false).live));
    // Clear failing: the live table goes over the prepared one before the resume.
    let mut d = Fake::dm(false).with(sticky(1, Fault::Fail(Errno::EIO)));
    d.suspended = true;
    d.inactive = Some(new_table());
    recover::<Fake, Fake>(Some((&mut d, true, true)), None);
    assert!(!d.suspended && d.violations.is_empty(), "{:?}", d.calls);
    assert!(same_table(&d.live, &Fake::dm(false).live));
    // Clear and load failing: no resume (it would switch), and no thaw over the suspended device.
    let mut d = Fake::dm(false)
        .with(sticky(1, Fault::Fail(Errno::EIO)))
        .with(sticky(1 + CLEAR_ATTEMPTS as usize, Fault::Fail(Errno::EIO)));
    d.suspended = true;
    d.inactive = Some(new_table());
    let mut fs = Fake::default();
    fs.frozen = true;
    d.suspended = true;
    let acted = recover(Some((&mut d, true, true)), Some(&mut fs));
    assert!(
        d.suspended && fs.frozen && d.violations.is_empty(),
        "{acted:?}"
    );
    assert_eq!(d.count(Call::Resume), 0);
    assert_eq!(fs.count(Call::Thaw), 0);
    // Nothing to do: nothing done.
    let mut d = Fake::dm(false);
    assert!(recover::<Fake, Fake>(Some((&mut d, false, false)), None).is_empty());
    assert!(d.calls.is_empty());
    // Not frozen (EINVAL): not reported as thawed.
    let mut fs = Fake::default();
    assert!(recover::<Fake, Fake>(None, Some(&mut fs)).is_empty());
}

#[test]
fn unconfirmed_is_found_through_context() {
    let e = anyhow::Error::from(SwitchError::Unconfirmed("x".into())).context("switching");
    assert!(unconfirmed(&e));
    let e = anyhow::Error::from(SwitchError::Failed("x".into())).context("switching");
    assert!(!unconfirmed(&e));
}

/// The switch with clones: freeze, the dm switch, thaw — one fake, every call position failing.
/// Never a thaw over a suspended device; frozen or suspended afterwards only when Unconfirmed.
#[test]
fn frozen_dm_switch_every_call_failing() {
    use super::fake::Shared;
    let run = |f: Fake| {
        let shared = Shared(std::rc::Rc::new(std::cell::RefCell::new(f)));
        let mut fs = shared.clone();
        let mut dm = shared.clone();
        let r = with_frozen(&mut fs, || {
            critical_reload(&mut dm, &new_table(), accept).map_err(anyhow::Error::from)
        });
        let f = shared.0.borrow().clone();
        (f, r)
    };
    let (clean, r) = run(Fake::dm(true));
    assert!(matches!(r, Ok(Ok(Reload { switched: true, .. }))), "{r:?}");
    assert_eq!(clean.calls.first(), Some(&Call::Freeze));
    assert_eq!(clean.calls.last(), Some(&Call::Thaw));
    for in_sync in [true, false] {
        for i in 0..clean.calls.len() + 8 {
            for fault in Fault::ALL {
                for s in [at(i, fault), sticky(i, fault)] {
                    let (f, r) = run(Fake::dm(in_sync).with(s));
                    let ctx = format!("in_sync={in_sync} {s:?} {:?} {r:?}", f.calls);
                    if f.calls.get(i) == Some(&Call::Thaw) && fault == Fault::Fail(Errno::EINVAL) {
                        continue; // FITHAW's EINVAL means "not frozen" (see freeze_every_call_failing)
                    }
                    assert!(f.violations.is_empty(), "{ctx}");
                    let stuck = matches!(r, Err(SwitchError::Unconfirmed(_)));
                    if f.suspended || f.frozen {
                        assert!(stuck, "{ctx}");
                    }
                    if let Ok(Ok(Reload { switched: true, .. })) = r {
                        assert!(same_table(&f.live, &new_table()), "{ctx}");
                    }
                }
            }
        }
    }
}
