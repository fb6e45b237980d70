//! A fake [`SwitchOps`]: a dm device (live and inactive slot, suspended flag), an md array's
//! members and a filesystem's frozen flag, kept as plain state; any call can be scripted to fail
//! (an errno, no effect) or to time out (the effect happens, the answer is ETIMEDOUT), once or from
//! then on. It records every call and every broken rule ([`Fake::violations`]).

use std::time::Duration;

use nix::errno::Errno;

use super::{same_table, RawLine, SwitchOps};
use crate::kernel::devnum::DevNum;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Load,
    Suspend,
    Status,
    Clear,
    Resume,
    LiveTable,
    DiskState,
    SetFaulty,
    Remove,
    Freeze,
    Thaw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call fails with this errno and changes nothing.
    Fail(Errno),
    /// The call takes effect, but answers ETIMEDOUT.
    Timeout,
}

impl Fault {
    /// The faults every position is tried with.
    pub const ALL: [Fault; 5] = [
        Fault::Fail(Errno::EIO),
        Fault::Fail(Errno::EINTR),
        Fault::Fail(Errno::EBUSY),
        Fault::Fail(Errno::EINVAL),
        Fault::Timeout,
    ];
}

/// Where a fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Script {
    /// The call with this index (0-based, over all calls).
    pub at: usize,
    pub fault: Fault,
    /// Also every later call of the same kind.
    pub sticky: bool,
}

#[derive(Debug, Clone)]
pub struct Md {
    pub dev: DevNum,
    pub in_sync: bool,
    pub faulty: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Fake {
    pub calls: Vec<Call>,
    pub scripts: Vec<Script>,
    sticky_kinds: Vec<(Call, Fault)>,
    // dm
    pub live: Vec<RawLine>,
    pub inactive: Option<Vec<RawLine>>,
    pub suspended: bool,
    /// What a status read says while the test wants the mirror in sync.
    pub in_sync: bool,
    /// A resume swaps in the inactive table (false: a kernel that "forgot" it).
    pub no_swap: bool,
    /// A status read while suspended since the last load/suspend said "synced".
    verified: bool,
    // md
    pub members: Vec<Md>,
    /// The first member is the source; this one fails right after its GET_DISK_INFO.
    pub fail_after_check: Option<DevNum>,
    // fs
    pub frozen: bool,
    pub violations: Vec<String>,
}

pub fn line(t: &str, p: &str) -> Vec<RawLine> {
    vec![(0, 1024, t.to_string(), p.to_string())]
}

/// The status accept function the tests use.
pub fn accept(v: &[RawLine]) -> bool {
    v.first().is_some_and(|l| l.3 == "synced")
}

impl Fake {
    pub fn dm(in_sync: bool) -> Fake {
        Fake {
            live: line("mirror", "2 254:0 254:16"),
            in_sync,
            ..Default::default()
        }
    }

    pub fn md(source: DevNum, target: DevNum, clones: &[DevNum]) -> Fake {
        let mut members = vec![
            Md {
                dev: source,
                in_sync: true,
                faulty: false,
            },
            Md {
                dev: target,
                in_sync: true,
                faulty: false,
            },
        ];
        members.extend(clones.iter().map(|&dev| Md {
            dev,
            in_sync: true,
            faulty: false,
        }));
        Fake {
            members,
            ..Default::default()
        }
    }

    pub fn with(mut self, s: Script) -> Fake {
        self.scripts.push(s);
        self
    }

    pub fn count(&self, c: Call) -> usize {
        self.calls.iter().filter(|x| **x == c).count()
    }

    /// Record the call; Some(fault) if one strikes it.
    fn enter(&mut self, c: Call) -> Option<Fault> {
        let i = self.calls.len();
        self.calls.push(c);
        if let Some(s) = self.scripts.iter().find(|s| s.at == i) {
            if s.sticky {
                self.sticky_kinds.push((c, s.fault));
            }
            return Some(s.fault);
        }
        self.sticky_kinds
            .iter()
            .find(|(k, _)| *k == c)
            .map(|(_, f)| *f)
    }

    fn member(&mut self, dev: DevNum) -> Option<&mut Md> {
        self.members.iter_mut().find(|m| m.dev == dev)
    }

    /// Run `effect` unless a failing fault strikes; a timeout runs it and answers ETIMEDOUT.
    fn op<T>(
        &mut self,
        c: Call,
        effect: impl FnOnce(&mut Fake) -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        match self.enter(c) {
            Some(Fault::Fail(e)) => Err(e),
            Some(Fault::Timeout) => effect(self).and(Err(Errno::ETIMEDOUT)),
            None => effect(self),
        }
    }
}

impl SwitchOps for Fake {
    fn load(&mut self, table: &[RawLine]) -> Result<(), Errno> {
        self.op(Call::Load, |f| {
            f.inactive = Some(table.to_vec());
            f.verified = false;
            Ok(())
        })
    }
    fn suspend(&mut self, _lockfs: bool) -> Result<(), Errno> {
        self.op(Call::Suspend, |f| {
            f.suspended = true;
            f.verified = false;
            Ok(())
        })
    }
    fn status(&mut self) -> Result<Vec<RawLine>, Errno> {
        let r = self.op(Call::Status, |f| {
            Ok(line("mirror", if f.in_sync { "synced" } else { "syncing" }))
        });
        if r.is_ok() && self.suspended && self.in_sync {
            self.verified = true;
        }
        r
    }
    fn clear_inactive(&mut self) -> Result<(), Errno> {
        self.op(Call::Clear, |f| {
            f.inactive = None;
            Ok(())
        })
    }
    fn resume(&mut self) -> Result<(), Errno> {
        self.op(Call::Resume, |f| {
            if let Some(t) = f.inactive.take() {
                if !same_table(&t, &f.live) && !f.verified {
                    f.violations
                        .push("resumed with an unverified table in the inactive slot".into());
                }
                if !f.no_swap {
                    f.live = t;
                }
            }
            f.suspended = false;
            f.verified = false;
            Ok(())
        })
    }
    fn live_table(&mut self) -> Result<Vec<RawLine>, Errno> {
        self.op(Call::LiveTable, |f| Ok(f.live.clone()))
    }
    fn md_disk_state(&mut self, dev: DevNum) -> Result<Option<(bool, bool)>, Errno> {
        let r = self.op(Call::DiskState, |f| {
            Ok(f.member(dev).map(|m| (m.in_sync, m.faulty)))
        });
        if self.fail_after_check == Some(dev) {
            if let Some(m) = self.member(dev) {
                m.faulty = true;
                m.in_sync = false;
            }
        }
        r
    }
    fn md_set_faulty(&mut self, dev: DevNum) -> Result<(), Errno> {
        self.op(Call::SetFaulty, |f| {
            let others_in_sync = f
                .members
                .iter()
                .any(|m| m.dev != dev && m.in_sync && !m.faulty);
            if !others_in_sync {
                // md ≥ 5.19: never fails the last in-sync member.
                return Err(Errno::EBUSY);
            }
            match f.member(dev) {
                Some(m) => {
                    m.faulty = true;
                    m.in_sync = false;
                    Ok(())
                }
                None => Err(Errno::ENODEV),
            }
        })
    }
    fn md_remove(&mut self, dev: DevNum) -> Result<(), Errno> {
        self.op(Call::Remove, |f| {
            match f.members.iter().position(|m| m.dev == dev) {
                Some(i) if f.members[i].faulty => {
                    f.members.remove(i);
                    Ok(())
                }
                Some(_) => Err(Errno::EBUSY),
                None => Err(Errno::ENXIO),
            }
        })
    }
    fn freeze(&mut self) -> Result<(), Errno> {
        self.op(Call::Freeze, |f| {
            if f.frozen {
                return Err(Errno::EBUSY);
            }
            f.frozen = true;
            Ok(())
        })
    }
    fn thaw(&mut self) -> Result<(), Errno> {
        self.op(Call::Thaw, |f| {
            if f.suspended {
                f.violations
                    .push("thawed while the device is suspended (a hang)".into());
            }
            if !f.frozen {
                return Err(Errno::EINVAL);
            }
            f.frozen = false;
            Ok(())
        })
    }
    fn pause(&mut self, _: Duration) {}
}

/// One fake shared by two users (the freeze around a switch and the switch inside it).
#[derive(Clone, Default)]
pub struct Shared(pub std::rc::Rc<std::cell::RefCell<Fake>>);

impl SwitchOps for Shared {
    fn load(&mut self, table: &[RawLine]) -> Result<(), Errno> {
        self.0.borrow_mut().load(table)
    }
    fn suspend(&mut self, lockfs: bool) -> Result<(), Errno> {
        self.0.borrow_mut().suspend(lockfs)
    }
    fn status(&mut self) -> Result<Vec<RawLine>, Errno> {
        self.0.borrow_mut().status()
    }
    fn clear_inactive(&mut self) -> Result<(), Errno> {
        self.0.borrow_mut().clear_inactive()
    }
    fn resume(&mut self) -> Result<(), Errno> {
        self.0.borrow_mut().resume()
    }
    fn live_table(&mut self) -> Result<Vec<RawLine>, Errno> {
        self.0.borrow_mut().live_table()
    }
    fn md_disk_state(&mut self, dev: DevNum) -> Result<Option<(bool, bool)>, Errno> {
        self.0.borrow_mut().md_disk_state(dev)
    }
    fn md_set_faulty(&mut self, dev: DevNum) -> Result<(), Errno> {
        self.0.borrow_mut().md_set_faulty(dev)
    }
    fn md_remove(&mut self, dev: DevNum) -> Result<(), Errno> {
        self.0.borrow_mut().md_remove(dev)
    }
    fn freeze(&mut self) -> Result<(), Errno> {
        self.0.borrow_mut().freeze()
    }
    fn thaw(&mut self) -> Result<(), Errno> {
        self.0.borrow_mut().thaw()
    }
    fn pause(&mut self, _: Duration) {}
}
