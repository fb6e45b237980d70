//! dm `mirror` backend: linear(source) → mirror(source, target) → linear(target, full size).
//!
//! This is the reload sequence lvm2's pvmove uses. All tables of one dm device share one holder,
//! so the same leg can sit in the live and the inactive table at once.

use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use devicemapper::{Bytes, DevId, DmFlags, DmName, DmOptions, Sectors, DM};

use super::{Backend, SwitchOutcome, SyncState};
use crate::kernel::blockdev::BlockDev;
use crate::kernel::dm::Dm;
use crate::kernel::dmtable::{LinearParams, MirrorParams, MirrorStatus, TableLine, WrapperTable};
use crate::kernel::memlock::MemLock;
use crate::wrapper::Wrapper;

/// Region size for a full copy. dm-mirror recovers one region at a time (kcopyd splits it into
/// 8 parallel sub-jobs of 512 KiB), so larger regions copy faster; a write into the region
/// being recovered waits for that region, which at ~150 MiB/s under TCG is ~30 ms for 4 MiB.
pub const REGION: Sectors = Sectors(8192);

pub struct DmMirror {
    dm: Dm,
    wrapper: Wrapper,
}

impl DmMirror {
    pub fn new(dm: Dm, wrapper: Wrapper) -> Self {
        DmMirror { dm, wrapper }
    }

    pub fn dm(&self) -> &Dm {
        &self.dm
    }

    fn name(&self) -> &str {
        &self.wrapper.name
    }

    /// The region size of the live mirror table.
    fn region(&self) -> Result<Sectors> {
        match self.wrapper.dm_table(&self.dm)? {
            WrapperTable::Mirror { params, .. } => Ok(params.log.region()),
            WrapperTable::Linear { .. } => bail!("{} is not mirroring", self.name()),
        }
    }

    fn mirror_status(&self) -> Result<(Sectors, MirrorStatus)> {
        let lines = self.dm.status(self.name())?;
        match lines.as_slice() {
            [l] if l.target == "mirror" => Ok((
                l.len,
                l.params
                    .parse()
                    .with_context(|| format!("status of {}", self.name()))?,
            )),
            _ => bail!("{} is not mirroring", self.name()),
        }
    }
}

fn linear(dev: &BlockDev, len: Sectors) -> TableLine {
    TableLine::new(
        Sectors(0),
        len,
        "linear",
        LinearParams {
            dev: dev.devnum,
            offset: Sectors(0),
        },
    )
}

fn sectors_of(dev: &BlockDev) -> Result<Sectors> {
    let (size, _) = dev
        .geometry()
        .with_context(|| format!("reading the size of {}", dev.display()))?;
    Ok(Sectors((*size / 512) as u64))
}

/// Resume, retrying: a device under `/` must never stay suspended.
fn resume_hard(dm: &DM, id: &DevId<'_>) -> Result<(), devicemapper::DmError> {
    let mut last = None;
    for _ in 0..20 {
        match dm.device_suspend(id, DmOptions::default()) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
        sleep(Duration::from_millis(10));
    }
    Err(last.expect("at least one attempt"))
}

/// In the window: is the single mirror line fully in sync with every leg alive?
/// Works on the raw ioctl result; allocates only what the parser does.
fn synced(v: &[(u64, u64, String, String)]) -> bool {
    match v {
        [(_, _, t, p)] if t == "mirror" => p
            .parse::<MirrorStatus>()
            .map(|s| s.legs.len() >= 2 && s.fully_synced())
            .unwrap_or(false),
        _ => false,
    }
}

impl Backend for DmMirror {
    fn kind(&self) -> &'static str {
        "dm-mirror"
    }

    fn legs(&self) -> Result<Vec<crate::kernel::devnum::DevNum>> {
        Ok(self.wrapper.dm_table(&self.dm)?.devices())
    }

    fn mirroring(&self) -> Result<bool> {
        Ok(matches!(
            self.wrapper.dm_table(&self.dm)?,
            WrapperTable::Mirror { .. }
        ))
    }

    fn describe(&self) -> Result<String> {
        Ok(self
            .dm
            .table(self.name())?
            .first()
            .map(|l| l.to_string())
            .unwrap_or_default())
    }

    fn attach(&mut self, source: &BlockDev, target: &BlockDev) -> Result<()> {
        self.dm.ensure_target("mirror", "dm_mirror")?;
        let len = match self.wrapper.dm_table(&self.dm)? {
            WrapperTable::Linear { len, params } if params.dev == source.devnum => len,
            t => bail!(
                "{} maps {} ({:?}), not the source {} alone",
                self.name(),
                t.kind(),
                t.devices(),
                source.devnum
            ),
        };
        // Source first: kcopyd copies from the first leg, and writes to not-yet-synced regions
        // go to the first leg only.
        let params = MirrorParams::core(REGION, &[source.devnum, target.devnum]);
        let table = [TableLine::new(Sectors(0), len, "mirror", params)];
        self.dm
            .reload(self.name(), &table)
            .with_context(|| format!("adding {} as a mirror leg", target.display()))
    }

    fn sync_state(&self) -> Result<SyncState> {
        let region = self.region()?;
        let (len, st) = self.mirror_status()?;
        let size = Bytes(u128::from(*len) * 512);
        let done = Bytes((u128::from(st.in_sync) * u128::from(*region) * 512).min(*size));
        Ok(SyncState {
            done,
            total: size,
            legs: st.legs.clone(),
            units_done: st.in_sync,
            units_total: st.total,
        })
    }

    fn wait(&self, timeout: Duration) -> Result<()> {
        // dm-mirror raises an event when recovery completes, but no event for a failing leg
        // without handle_errors: the caller re-reads the status after every (bounded) wait.
        self.dm.wait_event(timeout).map(|_| ())
    }

    fn switch_to_target(&mut self, target: &BlockDev) -> Result<SwitchOutcome> {
        // Everything that allocates, reads files or may fail for ordinary reasons happens here,
        // before the window.
        let len = sectors_of(target)?;
        let table = [linear(target, len)];
        let name = self.wrapper.name.clone();
        let dm_name = DmName::new(&name).map_err(|e| anyhow!("bad dm name {name}: {e}"))?;
        let id = DevId::Name(dm_name);
        let suspend_opts =
            DmOptions::default().set_flags(DmFlags::DM_SUSPEND | DmFlags::DM_SKIP_LOCKFS);
        let _lock = MemLock::acquire()?;
        self.dm
            .load(&name, &table)
            .with_context(|| format!("preparing the switch to {}", target.display()))?;
        let raw = self.dm.raw();

        // ---- critical section: no file I/O, no logging, no fork/exec until resumed ----
        let t0 = Instant::now();
        // Suspend with flush: in-flight writes complete on both legs first.
        if let Err(e) = raw.device_suspend(&id, suspend_opts) {
            // The device may or may not be suspended. Drop the linear table first so that the
            // resume below cannot switch, then resume.
            let cleared = raw.table_clear(&id);
            let resumed = resume_hard(raw, &id);
            drop(_lock);
            return Err(anyhow!(
                "suspending {name} for the switch failed: {e}; inactive table cleared: {}; resumed: {}",
                cleared.is_ok(),
                resumed.is_ok()
            ));
        }
        let status = raw.table_status(&id, DmOptions::default());
        let ok = status.as_ref().map(|(_, v)| synced(v)).unwrap_or(false);
        if !ok {
            // Not safe: a write may have failed on the target at the last moment. Keep the mirror.
            let mut cleared = raw.table_clear(&id).is_ok();
            for _ in 0..5 {
                if cleared {
                    break;
                }
                sleep(Duration::from_millis(10));
                cleared = raw.table_clear(&id).is_ok();
            }
            if !cleared {
                // Resuming now would switch to an incomplete copy. The mirror's own table is
                // the safe thing to put in the inactive slot instead.
                if let Ok((_, cur)) = raw.table_status(
                    &id,
                    DmOptions::default().set_flags(DmFlags::DM_STATUS_TABLE),
                ) {
                    cleared = raw.table_load(&id, &cur, DmOptions::default()).is_ok();
                }
            }
            let resumed = if cleared {
                resume_hard(raw, &id)
            } else {
                Ok(())
            };
            let window = t0.elapsed();
            // ---- end of critical section (or, if nothing could be cleared, still suspended) ----
            drop(_lock);
            if !cleared {
                bail!(
                    "{name} is SUSPENDED: the switch found the mirror out of sync and could not drop the \
                     prepared table; resuming would switch to an incomplete copy. Run `dmsetup clear {name}; dmsetup resume {name}`"
                );
            }
            resumed.map_err(|e| anyhow!("resuming {name} after a refused switch failed: {e}"))?;
            let shown = match status {
                Ok((_, v)) => v
                    .first()
                    .map(|l| l.3.trim().to_string())
                    .unwrap_or_default(),
                Err(e) => format!("status unreadable: {e}"),
            };
            return Ok(SwitchOutcome::NotInSync {
                status: shown,
                window,
            });
        }
        let resumed = resume_hard(raw, &id);
        let window = t0.elapsed();
        // ---- end of critical section ----
        drop(_lock);
        resumed.map_err(|e| anyhow!("resuming {name} onto {} failed: {e}", target.display()))?;
        Ok(SwitchOutcome::Switched { window })
    }

    fn detach_target(&mut self, source: &BlockDev) -> Result<()> {
        let (len, params) = match self.wrapper.dm_table(&self.dm)? {
            WrapperTable::Mirror { len, params } => (len, params),
            WrapperTable::Linear { params, .. } if params.dev == source.devnum => return Ok(()),
            WrapperTable::Linear { params, .. } => bail!(
                "{} maps {} alone, not the source {}",
                self.name(),
                params.dev,
                source.devnum
            ),
        };
        if params.legs.first().map(|l| l.dev) != Some(source.devnum) {
            bail!(
                "{}: the source {} is not the first mirror leg",
                self.name(),
                source.devnum
            );
        }
        // Every write reached the first leg (synced regions go to all legs, the others to the
        // first only), unless the source itself reported a write error.
        let (_, st) = self.mirror_status()?;
        if let Some(h) = st
            .health_of(source.devnum)
            .filter(|h| !h.is_alive() && *h != crate::kernel::dmtable::Health::ReadError)
        {
            bail!(
                "the source leg {} reports a {} (health {}): going back to it could lose writes; \
                 the mirror is left in place",
                source.devnum,
                h.describe(),
                h.as_char()
            );
        }
        let table = [linear(source, len)];
        self.dm
            .reload(self.name(), &table)
            .with_context(|| format!("going back to {} alone", source.display()))
    }

    fn grow_device(&mut self, target: &BlockDev) -> Result<Bytes> {
        // The switch already loaded linear at the target's full size.
        let want = sectors_of(target)?;
        let have = self.wrapper.dm_table(&self.dm)?.len();
        if have < want {
            self.dm.reload(self.name(), &[linear(target, want)])?;
        }
        Ok(Bytes(u128::from(*want) * 512))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synced_requires_one_mirror_line_all_in_sync_all_alive() {
        let line = |p: &str| vec![(0u64, 1024u64, "mirror".to_string(), p.to_string())];
        assert!(synced(&line("2 254:0 254:16 64/64 1 AA 1 core")));
        assert!(!synced(&line("2 254:0 254:16 63/64 1 AA 1 core")));
        assert!(!synced(&line("2 254:0 254:16 64/64 1 AD 1 core")));
        assert!(!synced(&line("garbage")));
        assert!(!synced(&[(
            0,
            1024,
            "linear".to_string(),
            "254:0 0".to_string()
        )]));
        assert!(!synced(&[]));
    }
}
