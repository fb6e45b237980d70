//! dm `mirror` backend: linear(source) → mirror(source, target) → linear(target, full size).
//!
//! This is the reload sequence lvm2's pvmove uses. All tables of one dm device share one holder,
//! so the same leg can sit in the live and the inactive table at once.
//!
//! Two copy modes. *full*: a core (in-memory) log, every region starts dirty, kcopyd copies them
//! all. *used*: a disk log on a RAM-backed loop device whose clean bitmap is pre-seeded from the
//! filesystem's free-space map (see `usedmap`), written while the filesystem is frozen, so nothing
//! can be allocated between reading the map and the mirror taking over; only regions holding data
//! are copied, and writes into free regions reach both legs from the first moment.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use devicemapper::{Bytes, DevId, DmName, Sectors};

use super::switch::{self, RealDm};
use super::usedmap::{clean_map, log_image, BITS_OFFSET};
use super::{Backend, CopyInfo, CopyMode, CopyPlan, RateLimit, SwitchOutcome, SyncState};
use crate::error::refuse;
use crate::kernel::blockdev::BlockDev;
use crate::kernel::devnum::DevNum;
use crate::kernel::dm::Dm;
use crate::kernel::dmtable::{
    LinearParams, MirrorLog, MirrorParams, MirrorStatus, TableLine, WrapperTable,
};
use crate::kernel::fs::{free_extents, Frozen};
use crate::kernel::loopdev::LoopDev;
use crate::kernel::memlock::{MemLock, SignalsBlocked};
use crate::wrapper::Wrapper;

/// Region size for a full copy. dm-mirror recovers one region at a time (kcopyd splits it into
/// 8 parallel sub-jobs of 512 KiB), so larger regions copy faster; a write into the region
/// being recovered waits for that region, which at ~150 MiB/s under TCG is ~30 ms for 4 MiB.
pub const REGION_FULL: Sectors = Sectors(8192);
/// Region size for a used-only copy: small enough that a mostly free region is not copied for
/// a few used blocks, large enough that one-region-at-a-time recovery keeps near full speed.
/// Measured (bench/RESULTS.md, 2 GiB ext4 at 10 % used): 4 MiB regions copied 3 % more bytes
/// than 1 MiB ones and finished 21 % sooner (0.93 s vs 1.18 s) — but on a live medium's
/// dm-snapshot source (live-rw) under TCG they stalled a kworker for 52 s ("soft lockup") at the
/// start of the copy, which 1 MiB regions never did: 1 MiB it stays.
pub const REGION_USED: Sectors = Sectors(2048);
/// dm_mirror's global recovery throttle (percent of time kcopyd may use).
const THROTTLE_PARAM: &str = "/sys/module/dm_mirror/parameters/raid1_resync_throttle";

pub use super::switch::RawLine;

pub struct DmMirror {
    dm: Dm,
    wrapper: Wrapper,
    /// The RAM-backed dirty-region log of a used-only copy (auto-clears when released).
    log: Option<LoopDev>,
    /// The log's pages, locked in memory while this process holds the mirror (tmpfs pages can
    /// go to swap, and swap may live on the wrapper itself: `/swapfile`).
    log_lock: Option<crate::kernel::ioctl::dm::LockedMap>,
    /// Regions already in sync when the copy started (pre-seeded clean).
    baseline: Option<u64>,
    /// The throttle value to put back.
    throttle_restore: Option<String>,
}

impl DmMirror {
    pub fn new(dm: Dm, wrapper: Wrapper) -> Self {
        DmMirror {
            dm,
            wrapper,
            log: None,
            log_lock: None,
            baseline: None,
            throttle_restore: None,
        }
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

    /// The switch's critical section, on its own: lock memory, block SIGINT/SIGTERM/SIGHUP,
    /// then `switch::critical_reload` over the real dm calls: read the live table, load `table`
    /// into the inactive slot, suspend with flush (no fs freeze; EINTR retried), read the status
    /// while suspended, and resume — onto `table` if `accept(status)` (then the live table is read
    /// back and must be `table`), else back onto the unchanged live table (the prepared table
    /// dropped first, or the live table loaded over it if DM_TABLE_CLEAR fails). Returns whether
    /// the table was switched and the time from the suspend ioctl to the resume ioctl's return.
    /// An error carrying `SwitchError::Unconfirmed` means the device may still be suspended.
    pub fn critical_reload(
        &self,
        table: &[TableLine],
        accept: fn(&[RawLine]) -> bool,
    ) -> Result<switch::Reload> {
        // Everything that allocates, reads files or may fail for ordinary reasons happens here,
        // before the window.
        let name = self.wrapper.name.clone();
        let dm_name = DmName::new(&name).map_err(|e| anyhow!("bad dm name {name}: {e}"))?;
        let raw_table: Vec<RawLine> = table
            .iter()
            .map(|l| (*l.start, *l.len, l.target.clone(), l.params.clone()))
            .collect();
        let mut ops = RealDm {
            dm: self.dm.raw(),
            id: DevId::Name(dm_name),
        };
        let lock = MemLock::acquire()?;
        let blocked = SignalsBlocked::block()?;
        let r = switch::critical_reload(&mut ops, &raw_table, accept);
        drop(blocked);
        drop(lock);
        r.with_context(|| format!("switching the table of {name}"))
    }

    /// Full copy: core log, every region dirty.
    fn attach_full(
        &mut self,
        source: &BlockDev,
        target: &BlockDev,
        clones: &[BlockDev],
        len: Sectors,
        region: Sectors,
    ) -> Result<CopyInfo> {
        let mut legs = vec![source.devnum, target.devnum];
        legs.extend(clones.iter().map(|c| c.devnum));
        let params = MirrorParams::core(region, &legs);
        let table = [TableLine::new(Sectors(0), len, "mirror", params)];
        switch::reload_table(&self.dm, self.name(), &table)
            .with_context(|| format!("adding {} as a mirror leg", target.display()))?;
        self.baseline = Some(0);
        Ok(CopyInfo {
            mode: "full",
            region: Bytes(u128::from(*region) * 512),
            to_copy: Bytes(u128::from(*len) * 512),
        })
    }

    /// Used-only copy: freeze, map free space, pre-seed a disk log, load the mirror, thaw.
    fn attach_used(
        &mut self,
        source: &BlockDev,
        target: &BlockDev,
        plan: &CopyPlan,
        len: Sectors,
        region: Sectors,
        mount: &std::path::Path,
    ) -> Result<CopyInfo> {
        let (clones, span) = (&plan.clones, plan.fs_span);
        let dev_bytes = *len * 512;
        let region_bytes = *region * 512;
        // The log lives in RAM (a loop over a file in /run): a crash restarts the copy anyway.
        let nr = dev_bytes.div_ceil(region_bytes);
        let log_bytes =
            ((BITS_OFFSET as u64 + nr.div_ceil(64) * 8).div_ceil(4096) * 4096).max(64 * 1024);
        fs::create_dir_all("/run/rootshift").context("creating /run/rootshift")?;
        let file_path = PathBuf::from(format!("/run/rootshift/{}.log", self.name()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&file_path)
            .with_context(|| format!("creating {}", file_path.display()))?;
        file.set_len(log_bytes)?;
        let locked = crate::kernel::ioctl::dm::LockedMap::lock(&file, log_bytes as usize)
            .with_context(|| {
                format!(
                    "locking the RAM-backed mirror log ({} bytes) in memory so it cannot go to swap",
                    log_bytes
                )
            })?;
        let log = LoopDev::attach(&file_path)?;
        // The loop device keeps the file alive; it disappears with the loop (autoclear).
        let _ = fs::remove_file(&file_path);

        let frozen =
            Frozen::freeze(mount).with_context(|| format!("freezing {}", mount.display()))?;
        // ---- filesystem frozen: nothing is allocated until thaw; write nothing to it ----
        let free = free_extents(frozen.file(), self.wrapper.devnum).with_context(|| {
            format!(
                "reading the free-space map of {} (FS_IOC_GETFSMAP)",
                mount.display()
            )
        })?;
        crate::failpoint::hit("attach::frozen")?;
        // an encrypted root's map is in plaintext offsets: behind the LUKS header on the wrapper
        let map = clean_map(&span.free_on_device(&free), dev_bytes, region_bytes);
        let img = log_image(&map);
        file.write_all_at(&img, 0)
            .context("writing the mirror log")?;
        (&file).flush()?;
        let params = MirrorParams {
            log: MirrorLog::Disk {
                dev: log.devnum,
                region,
                sync: crate::kernel::dmtable::SyncMode::Default,
            },
            legs: [source.devnum, target.devnum]
                .iter()
                .chain(clones.iter().map(|c| &c.devnum))
                .map(|&dev| crate::kernel::dmtable::MirrorLeg {
                    dev,
                    offset: Sectors(0),
                })
                .collect(),
            features: vec![],
        };
        let table = [TableLine::new(Sectors(0), len, "mirror", params)];
        // Suspend without lockfs: the filesystem is frozen already.
        let loaded = switch::reload_table(&self.dm, self.name(), &table);
        if let Err(e) = &loaded {
            if switch::unconfirmed(e) {
                // The device may be suspended: thawing would write the superblock to it and hang.
                // Leave the freeze to the guardian (it was told of it), which resumes first.
                std::mem::forget(frozen);
                return Err(loaded.unwrap_err().context(format!(
                    "adding {} as a mirror leg with a pre-seeded log",
                    target.display()
                )));
            }
        }
        let thawed = frozen.thaw();
        // ---- thawed ----
        loaded.with_context(|| {
            format!(
                "adding {} as a mirror leg with a pre-seeded log",
                target.display()
            )
        })?;
        thawed.with_context(|| format!("thawing {}", mount.display()))?;
        self.log = Some(log);
        self.log_lock = Some(locked);
        self.baseline = Some(map.clean);
        let (_, st) = self.mirror_status()?;
        if st.total != map.nr_regions {
            bail!(
                "the mirror has {} regions, the log was written for {}",
                st.total,
                map.nr_regions
            );
        }
        let dirty = map.nr_regions - map.clean;
        Ok(CopyInfo {
            mode: "used",
            region: Bytes(u128::from(region_bytes)),
            to_copy: Bytes(
                (u128::from(dirty) * u128::from(region_bytes)).min(u128::from(dev_bytes)),
            ),
        })
    }
}

impl Drop for DmMirror {
    fn drop(&mut self) {
        if let Some(old) = self.throttle_restore.take() {
            let _ = fs::write(THROTTLE_PARAM, old);
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

/// Where a used-only copy can read the free-space map, or None for a full copy.
fn used_mount(name: &str, plan: &CopyPlan) -> Result<Option<PathBuf>> {
    match (plan.mode, &plan.mount) {
        (CopyMode::Full, _) => Ok(None),
        (_, Some((mp, fs))) if fs == "ext4" || fs == "xfs" => Ok(Some(mp.clone())),
        (CopyMode::Auto, _) => Ok(None),
        (CopyMode::Used, m) => Err(refuse(
            format!(
                "--copy used needs a mounted ext4 or xfs filesystem on {name} ({})",
                m.as_ref()
                    .map(|(p, f)| format!("{f} on {}", p.display()))
                    .unwrap_or_else(|| "not mounted".into())
            ),
            Some("use --copy full"),
        )),
    }
}

/// In the window: is the single mirror line fully in sync with every leg alive?
/// Works on the raw ioctl result; allocates only what the parser does.
fn synced(v: &[RawLine]) -> bool {
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

    fn legs(&self) -> Result<Vec<DevNum>> {
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

    fn set_rate_limit(&mut self, limit: RateLimit) -> Result<()> {
        match limit {
            RateLimit::BytesPerSec(_) => Err(refuse(
                "dm-mirror has no per-device copy rate: the kernel offers only a global percentage \
                 throttle for all dm mirror copies",
                Some("use --throttle PERCENT (dm_mirror raid1_resync_throttle), or wrap with the md backend for a rate"),
            )),
            RateLimit::Percent(p) if !(1..=100).contains(&p) => {
                Err(refuse(format!("--throttle {p} is not a percentage from 1 to 100"), None))
            }
            RateLimit::Percent(p) => {
                let _ = self.dm.ensure_target("mirror", "dm_mirror");
                let old = fs::read_to_string(THROTTLE_PARAM)
                    .with_context(|| format!("reading {THROTTLE_PARAM}"))?;
                fs::write(THROTTLE_PARAM, p.to_string()).with_context(|| format!("writing {THROTTLE_PARAM}"))?;
                self.throttle_restore = Some(old.trim().to_string());
                Ok(())
            }
        }
    }

    fn check_plan(&self, plan: &CopyPlan) -> Result<()> {
        // dm-mirror copies to at most 8 destinations (DM_KCOPYD_MAX_REGIONS): 9 legs.
        if plan.clones.len() > 7 {
            return Err(refuse(
                format!(
                    "dm-mirror takes at most 9 legs (the source, the target and 7 clones); {} clones asked for",
                    plan.clones.len()
                ),
                Some("ask for fewer clones, or use the md backend"),
            ));
        }
        used_mount(self.name(), plan).map(|_| ())
    }

    fn attach(
        &mut self,
        source: &BlockDev,
        target: &BlockDev,
        plan: &CopyPlan,
    ) -> Result<CopyInfo> {
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
        let used_mount = used_mount(self.name(), plan)?;
        // Source first: kcopyd copies from the first leg, and writes to not-yet-synced regions
        // go to the first leg only.
        match used_mount {
            Some(mp) => {
                self.dm.ensure_target("mirror", "dm_log")?;
                let region = plan.region.unwrap_or(REGION_USED);
                self.attach_used(source, target, plan, len, region, &mp)
            }
            None => self.attach_full(
                source,
                target,
                &plan.clones,
                len,
                plan.region.unwrap_or(REGION_FULL),
            ),
        }
    }

    fn sync_state(&self) -> Result<SyncState> {
        let region = self.region()?;
        let (len, st) = self.mirror_status()?;
        let size = u128::from(*len) * 512;
        let rb = u128::from(*region) * 512;
        // Progress counts what had to be copied: pre-seeded clean regions are not work done.
        let base = self.baseline.unwrap_or(0).min(st.in_sync);
        let done = (u128::from(st.in_sync - base) * rb).min(size);
        let total = (u128::from(st.total.saturating_sub(base)) * rb).min(size);
        Ok(SyncState {
            done: Bytes(done.min(total)),
            total: Bytes(total),
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
        let len = sectors_of(target)?;
        let table = [linear(target, len)];
        // Switch only if, while suspended, every region is in sync and every leg is alive: a write
        // may have failed on the target at the last moment.
        let r = self
            .critical_reload(&table, synced)
            .with_context(|| format!("switching {} to {}", self.name(), target.display()))?;
        let window = r.window;
        if r.switched {
            return Ok(SwitchOutcome::Switched {
                window,
                suspend: Some(r.suspend),
            });
        }
        let status = self
            .dm
            .status(self.name())
            .ok()
            .and_then(|v| v.first().map(|l| l.params.clone()))
            .unwrap_or_default();
        Ok(SwitchOutcome::NotInSync { status, window })
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
        switch::reload_table(&self.dm, self.name(), &table)
            .with_context(|| format!("going back to {} alone", source.display()))
    }

    fn grow_device(&mut self, target: &BlockDev) -> Result<Bytes> {
        // The switch already loaded linear at the target's full size.
        let want = sectors_of(target)?;
        let have = self.wrapper.dm_table(&self.dm)?.len();
        if have < want {
            switch::reload_table(&self.dm, self.name(), &[linear(target, want)])?;
        }
        Ok(Bytes(u128::from(*want) * 512))
    }
}

/// Test builds: time the switch's critical section `n` times on the wrapper's live table.
#[cfg(feature = "testing")]
pub fn switch_windows(w: &Wrapper, n: u32) -> Result<Vec<Duration>> {
    let m = DmMirror::new(Dm::open()?, w.clone());
    let table = m.dm.table(&w.name)?;
    let mut out = vec![];
    for _ in 0..n {
        let r = m.critical_reload(&table, |_| true)?;
        let (switched, d) = (r.switched, r.window);
        if !switched {
            bail!("the reload was not accepted");
        }
        out.push(d);
    }
    Ok(out)
}

/// Create the dm wrapper `full` over `src`: a `linear` table over the whole device (a one-leg
/// mirror cannot be created; the copy reloads it to `mirror`), and its /dev/mapper node.
pub fn wrap(dm: &Dm, src: &BlockDev, full: &str) -> Result<PathBuf> {
    let size = src
        .size()
        .with_context(|| format!("reading the size of {}", src.display()))?;
    let sectors = devicemapper::Sectors((*size / 512) as u64);
    let table = [TableLine::new(
        devicemapper::Sectors(0),
        sectors,
        "linear",
        LinearParams {
            dev: src.devnum,
            offset: devicemapper::Sectors(0),
        },
    )];
    let uuid = format!(
        "{}{}",
        crate::wrapper::UUID_PREFIX,
        full.trim_start_matches(crate::wrapper::PREFIX)
    );
    let info = dm.create(full, Some(&uuid), &table).with_context(|| {
        format!(
            "wrapping {} (is it in use? wrap runs before the root is mounted)",
            src.display()
        )
    })?;
    crate::kernel::dm::ensure_node(full, info.devnum)
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
        assert!(synced(&line("2 254:0 254:16 64/64 1 AA 3 disk 7:0 A")));
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
