//! md raid1 backend: a superblock-less raid1 (`md_rootshift-NAME`) over the source, driven by
//! ioctls and sysfs only (never the mdadm binary).
//!
//! attach: HOT_ADD_DISK the target (it joins as a spare and gets the whole device as its size),
//! raise `raid_disks` to 2 → md recovers slot 0 onto it. switch: only when `sync_action` is idle,
//! `degraded` is 0 and the target is in_sync — checked again by GET_DISK_INFO right before —
//! SET_DISK_FAULTY on the source: that is the point of no return (md never sends another write to
//! a faulty member). After it: HOT_REMOVE_DISK the source (EBUSY for a moment is normal),
//! `raid_disks` back to 1 (raid1 packs the target into slot 0), then the grow the 2007 attempt
//! lacked: `dev-<target>/size` = 0 (re-read the member's size; a member bound by ADD_NEW_DISK or
//! left at a stale size blocks every grow with ENOSPC) and `component_size` = 0 (fit the smallest
//! — now the only — member). The root stays on /dev/md_rootshift-NAME until the next boot.

use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use devicemapper::Bytes;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::switch::{self, MdSwitch, RealMd};
use super::{Backend, CopyInfo, CopyMode, CopyPlan, RateLimit, SwitchOutcome, SyncState};
use crate::error::refuse;
use crate::kernel::blockdev::BlockDev;
use crate::kernel::devnum::DevNum;
use crate::kernel::dmtable::Health;
use crate::kernel::md::{
    build_raid1, MdArray, MdError, MdMember, Slot, SpeedSetting, SyncAction, SyncCompleted,
};
use crate::wrapper::{Wrapper, MD_PREFIX};

/// `rootshift wrap --backend md SOURCE`: build the one-member array and return its node.
pub fn wrap(source: &BlockDev, full_name: &str) -> Result<PathBuf> {
    let name = format!("{MD_PREFIX}{full_name}");
    let array = build_raid1(&name, source)
        .with_context(|| format!("building md raid1 {name} over {}", source.display()))?;
    let node = array.node();
    if !node.exists() {
        bail!("{} did not appear after building {name}", node.display());
    }
    Ok(node)
}

// md's sync thread (md.c `md_do_sync`) runs a copy between the array's two limits, comparing them
// with its speed over the last marks: above `sync_speed_max` it sleeps; between the two, whenever
// the members see I/O other than the copy's (`is_mddev_idle()` false), it lets the copy's I/O in
// flight drain before issuing more, so foreground I/O gets the disk in between; below
// `sync_speed_min` it copies whatever else happens. Both default to `system`, the sysctls
// `/proc/sys/dev/raid/speed_limit_min`/`_max` (1000 and 200,000 KiB/s).

/// The array's `sync_speed_max` during a copy without `--rate-limit` (KiB/s): no practical cap.
/// md's default cap (200,000 KiB/s, ~195 MiB/s) held the md copy in bench/RESULTS.md at 192 MiB/s
/// and would make it 10-30x slower than an NVMe disk. md.c `sync_max_store` parses the value with
/// `kstrtouint` (0 is EINVAL) but keeps it in the `int` `mddev->sync_speed_max`, and `sync_max_show`
/// prints it with `%d`: `i32::MAX` (~2 TiB/s) is the largest value that stays positive and reads
/// back as written (dm-raid's `max_recovery_rate` stops there too).
const SPEED_MAX_KIB: u32 = SpeedSetting::MAX_KIB;

/// The array's `sync_speed_min` during a copy without `--rate-limit` (KiB/s): the floor, below
/// which md copies whatever the foreground does. md's own 1000 KiB/s is too low: the root is busy
/// (journald, the user; the suite's writer) nearly all the time, so the floor is all the copy can
/// count on. At 1000 KiB/s the suite's 512 MiB roots would take ~9 min (beyond the scenarios'
/// 400 s) and 1 TiB ~12 days; the 200,000 used before made the floor the cap, so md never stepped
/// back for foreground I/O. 50 MiB/s: a 512 MiB root in ~10 s and 1 TiB in ~6 h at worst, while
/// a disk doing a few hundred MiB/s or more keeps most of its bandwidth for the foreground (on a
/// slower disk the floor takes more of it: `--rate-limit` is the way to ask for less).
const SPEED_FLOOR_KIB: u32 = 51_200;
const _: () = assert!(SPEED_FLOOR_KIB < SPEED_MAX_KIB);

/// With `--rate-limit`, the floor is the limit up to this (md's default cap), as before the
/// floor above existed: the copy runs at exactly the limit below it.
const LIMITED_FLOOR_CAP_KIB: u32 = 200_000;

/// `(sync_speed_min, sync_speed_max)` for a copy at `limit_kib` KiB/s (`None`: no limit).
fn copy_speeds(limit_kib: Option<u32>) -> (SpeedSetting, SpeedSetting) {
    match limit_kib {
        None => (
            SpeedSetting::Kib(SPEED_FLOOR_KIB),
            SpeedSetting::Kib(SPEED_MAX_KIB),
        ),
        Some(l) => (
            SpeedSetting::Kib(l.min(LIMITED_FLOOR_CAP_KIB)),
            SpeedSetting::Kib(l),
        ),
    }
}

pub struct MdRaid1 {
    array: MdArray,
    /// KiB/s for sync_speed_max (and, up to md's default cap, sync_speed_min) while copying
    /// (None: the floor and no practical cap, see [`copy_speeds`]); 1..=SpeedSetting::MAX_KIB.
    limit_kib: Option<u32>,
    /// Whether sync_speed_* may hold a copy's values this process must put back to `system`:
    /// set by `attach` before it writes them, and by `detach_target`/`grow_device`, which end a
    /// copy another process may have started (`abort`, `migrate --resume`).
    speed_set: bool,
}

impl Drop for MdRaid1 {
    fn drop(&mut self) {
        if self.speed_set {
            self.restore_speeds();
        }
    }
}

fn member_dev(m: &MdMember) -> Option<DevNum> {
    m.devnum.or_else(|| {
        std::fs::read_to_string(format!("/sys/class/block/{}/dev", m.kname))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    })
}

fn slot_key(m: &MdMember) -> u32 {
    match m.slot {
        Slot::Index(i) => i,
        _ => u32::MAX,
    }
}

impl MdRaid1 {
    /// Give both sync speed limits back to the sysctls (`system`). Best effort: what is left on
    /// failure only concerns an array that no longer copies; `speed_set` stays for another try
    /// on drop.
    fn restore_speeds(&mut self) {
        let min = self.array.set_sync_speed_min(SpeedSetting::System);
        let max = self.array.set_sync_speed_max(SpeedSetting::System);
        if min.is_ok() && max.is_ok() {
            self.speed_set = false;
        }
    }

    pub fn open(w: &Wrapper) -> Result<MdRaid1> {
        let array = MdArray::open(&w.md_name())?;
        Ok(MdRaid1 {
            array,
            limit_kib: None,
            speed_set: false,
        })
    }

    /// Members in slot order (slot 0, the source, first; spares and faulty ones last).
    fn members(&self) -> Result<Vec<MdMember>> {
        let mut m = self.array.dev_dirs()?;
        m.sort_by_key(slot_key);
        Ok(m)
    }

    fn member(&self, dev: DevNum) -> Result<Option<MdMember>> {
        Ok(self
            .members()?
            .into_iter()
            .find(|m| member_dev(m) == Some(dev)))
    }

    /// Remove a member, retrying the transient EBUSY md gives while I/O is in flight.
    fn remove(&self, dev: DevNum) -> Result<()> {
        switch::md_remove(&mut RealMd { array: &self.array }, dev).map_err(|e| {
            anyhow!(
                "removing {dev} from {}: HOT_REMOVE_DISK: {e}",
                self.array.name
            )
        })
    }

    /// Set `raid_disks`, retrying EBUSY while a recovery winds down.
    fn set_raid_disks(&self, n: u32) -> Result<()> {
        self.write_when_not_busy("raid_disks", &n.to_string())
            .with_context(|| format!("setting raid_disks of {} to {n}", self.array.name))
    }

    /// Write an md attribute, retrying EBUSY for up to 30 s. md answers EBUSY to `raid_disks`
    /// and `component_size` (update_size) while `MD_RECOVERY_RUNNING` is set, and
    /// md_check_recovery sets it for a moment after every member removal or `raid_disks`
    /// change, to look for spares, even when there is nothing to recover. A grow written
    /// straight after the switch can land in that moment (CI saw it once, on a 1-CPU guest).
    fn write_when_not_busy(&self, attr: &str, value: &str) -> Result<(), MdError> {
        let t0 = Instant::now();
        loop {
            match self.array.write(attr, value) {
                Err(e)
                    if e.errno() == Some(Errno::EBUSY)
                        && t0.elapsed() < Duration::from_secs(30) =>
                {
                    sleep(Duration::from_millis(100))
                }
                r => return r,
            }
        }
    }
}

impl Backend for MdRaid1 {
    fn kind(&self) -> &'static str {
        "md-raid1"
    }

    fn legs(&self) -> Result<Vec<DevNum>> {
        Ok(self.members()?.iter().filter_map(member_dev).collect())
    }

    fn mirroring(&self) -> Result<bool> {
        Ok(self.members()?.len() > 1)
    }

    fn describe(&self) -> Result<String> {
        let members: Vec<String> = self
            .members()?
            .iter()
            .map(|m| format!("{}[{}] {}", m.kname, m.slot, m.state))
            .collect();
        Ok(format!(
            "raid1 {} ({}): {}; raid_disks {}; sync_action {}",
            self.array.name,
            self.array.devnum,
            members.join(", "),
            self.array
                .raid_disks()
                .map(|r| r.to_string())
                .unwrap_or_default()
                .trim(),
            self.array
                .sync_action()
                .map(|a| a.to_string())
                .unwrap_or_default()
                .trim()
        ))
    }

    fn set_rate_limit(&mut self, limit: RateLimit) -> Result<()> {
        match limit {
            RateLimit::BytesPerSec(b) if b < 1024 => Err(refuse(
                format!("--rate-limit {b} is below md's unit of 1 KiB/s"),
                None,
            )),
            RateLimit::BytesPerSec(b) => match SpeedSetting::kib(b / 1024) {
                Some(SpeedSetting::Kib(k)) => {
                    self.limit_kib = Some(k);
                    Ok(())
                }
                _ => Err(refuse(
                    format!(
                        "--rate-limit {b} is above md's largest per-array rate ({} KiB/s)",
                        SpeedSetting::MAX_KIB
                    ),
                    Some("leave --rate-limit out: without it md's copy has no practical cap"),
                )),
            },
            RateLimit::Percent(_) => Err(refuse(
                "--throttle is dm-mirror's global percentage; md limits each array's copy rate",
                Some("use --rate-limit RATE (e.g. 50M) with the md backend"),
            )),
        }
    }

    fn check_plan(&self, plan: &CopyPlan) -> Result<()> {
        if plan.mode == CopyMode::Used {
            return Err(refuse(
                "the md backend cannot skip free blocks: a superblock-less raid1 has no bitmap to pre-seed",
                Some("use --copy full (or auto), or the dm backend for a used-blocks-only copy"),
            ));
        }
        if plan.region.is_some() {
            return Err(refuse(
                "--region-size is a dm-mirror setting; md recovers in its own units",
                None,
            ));
        }
        Ok(())
    }

    fn attach(
        &mut self,
        source: &BlockDev,
        target: &BlockDev,
        plan: &CopyPlan,
    ) -> Result<CopyInfo> {
        self.check_plan(plan)?;
        let legs = self.legs()?;
        if legs != [source.devnum] {
            bail!(
                "{} has members {legs:?}, not the source {} alone",
                self.array.name,
                source.devnum
            );
        }
        // The copy's speed limits (see SPEED_*_KIB), set before any member is added so a failure
        // leaves nothing to undo but them (on drop). With a limit, not honouring it is an error;
        // without one a cap md kept is only slower, and a floor md kept only yields more.
        let (min, max) = copy_speeds(self.limit_kib);
        self.speed_set = true;
        let set_max = self.array.set_sync_speed_max(max);
        if self.limit_kib.is_some() {
            set_max.context("setting md sync_speed_max")?;
        }
        let _ = self.array.set_sync_speed_min(min);
        let mut added = vec![];
        for t in std::iter::once(target).chain(plan.clones.iter()) {
            if let Err(e) = self
                .array
                .hot_add(t.devnum)
                .with_context(|| format!("adding {} to {}", t.display(), self.array.name))
            {
                for d in added {
                    let _ = self.remove(d);
                }
                return Err(e);
            }
            added.push(t.devnum);
        }
        if let Err(e) = self.set_raid_disks(1 + added.len() as u32) {
            let undo: Result<Vec<()>> = added.iter().map(|d| self.remove(*d)).collect();
            return Err(match undo {
                Ok(_) => e,
                Err(u) => e.context(format!("and removing the new members again failed: {u:#}")),
            });
        }
        let size = Bytes(u128::from(*self.array.size()?) * 512);
        Ok(CopyInfo {
            mode: "full",
            region: Bytes(0),
            to_copy: size,
        })
    }

    fn sync_state(&self) -> Result<SyncState> {
        let members = self.members()?;
        let size = self.array.size()?;
        let total = Bytes(u128::from(*size) * 512);
        let action = self.array.sync_action()?;
        let degraded = self.array.degraded()?.0;
        let all_in_sync = members.len() > 1 && members.iter().all(|m| m.state.is_healthy_in_sync());
        let complete = action == SyncAction::Idle && degraded == 0 && all_in_sync;
        let done_sectors = if complete {
            *size
        } else {
            match self.array.sync_completed()? {
                SyncCompleted::Progress { done, .. } => (*done).min(*size),
                _ => 0,
            }
        };
        let legs = members
            .iter()
            .filter_map(|m| {
                let h = if m.state.faulty || m.state.write_error {
                    Health::WriteError
                } else {
                    Health::Alive
                };
                member_dev(m).map(|d| (d, h))
            })
            .collect();
        Ok(SyncState {
            done: Bytes(u128::from(done_sectors) * 512),
            total,
            legs,
            units_done: done_sectors,
            units_total: *size,
        })
    }

    fn wait(&self, timeout: Duration) -> Result<()> {
        // sync_completed is sysfs_notify'd: read it, then poll for POLLPRI until it changes.
        let path = self.array.attr_path("sync_completed");
        let mut f = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let mut s = String::new();
        let _ = f.read_to_string(&mut s);
        let _ = f.rewind();
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(
            f.as_fd(),
            PollFlags::POLLPRI | PollFlags::POLLERR,
        )];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(Errno::EINTR) => Ok(()),
            Err(e) => Err(anyhow!("poll on {}: {e}", path.display())),
        }
    }

    fn switch_to_target(&mut self, target: &BlockDev) -> Result<SwitchOutcome> {
        let t0 = Instant::now();
        let st = self.sync_state()?;
        let tm = self.member(target.devnum)?;
        let slot_ok = tm
            .as_ref()
            .is_some_and(|m| matches!(m.slot, Slot::Index(_)));
        if !st.complete() || !slot_ok {
            return Ok(SwitchOutcome::NotInSync {
                status: self.describe()?,
                window: t0.elapsed(),
            });
        }
        let source = *self
            .legs()?
            .first()
            .ok_or_else(|| anyhow!("no source member"))?;
        let clones: Vec<DevNum> = self
            .legs()?
            .into_iter()
            .filter(|d| *d != source && *d != target.devnum)
            .collect();
        // From the last check (GET_DISK_INFO of the target) to the point of no return
        // (SET_DISK_FAULTY of the source; EBUSY = the target failed in between: not switched).
        let r = switch::md_switch(
            &mut RealMd { array: &self.array },
            source,
            target.devnum,
            &clones,
        )
        .with_context(|| format!("switching {} to {}", self.array.name, target.display()))?;
        Ok(match r {
            MdSwitch::Switched { window } => SwitchOutcome::Switched {
                window,
                suspend: None,
            },
            MdSwitch::NotSwitched { why, .. } => SwitchOutcome::NotInSync {
                status: why,
                window: t0.elapsed(),
            },
        })
    }

    fn past_point_of_no_return(&self, source: DevNum) -> Result<bool> {
        // Failing the source is the switch: a faulty (or already removed) source with the target
        // still a member means only the target has every write.
        let members = self.members()?;
        let sm = members.iter().find(|m| member_dev(m) == Some(source));
        Ok(members.len() > 1 && sm.is_none_or(|m| m.state.faulty))
    }

    fn detach_target(&mut self, source: &BlockDev) -> Result<()> {
        // the copy ends here, whoever started it: `system` again, now or on drop
        self.speed_set = true;
        let members = self.members()?;
        let sm = members
            .iter()
            .find(|m| member_dev(m) == Some(source.devnum));
        match sm {
            Some(m) if m.state.faulty => bail!(
                "the source {} is already failed in {}: the migration is past the point of no return, \
                 only the target has every write",
                source.display(),
                self.array.name
            ),
            None => bail!("{} is not a member of {}", source.display(), self.array.name),
            Some(_) => {}
        }
        for m in members
            .iter()
            .filter(|m| member_dev(m) != Some(source.devnum))
        {
            let dev =
                member_dev(m).ok_or_else(|| anyhow!("member {} has no device number", m.kname))?;
            if !m.state.faulty {
                self.array
                    .set_faulty(dev)
                    .with_context(|| format!("failing the target {dev} in {}", self.array.name))?;
            }
            self.remove(dev)?;
        }
        self.set_raid_disks(1)?;
        self.restore_speeds();
        Ok(())
    }

    fn grow_device(&mut self, target: &BlockDev) -> Result<Bytes> {
        // Past the switch the copy is over, whoever started it (`--resume` after a kill too).
        self.speed_set = true;
        self.restore_speeds();
        // Release the failed source, then shrink to one slot (raid1 packs the target into slot 0).
        for m in self.members()? {
            if let Some(dev) = member_dev(&m).filter(|d| *d != target.devnum) {
                self.remove(dev)?;
            }
        }
        self.set_raid_disks(1)?;
        let tm = self.member(target.devnum)?.ok_or_else(|| {
            anyhow!(
                "{} is not a member of {}",
                target.display(),
                self.array.name
            )
        })?;
        // 0 = re-read the member's device size (never write a number: it is not checked).
        self.array
            .write(&format!("{}/size", tm.dir), "0")
            .with_context(|| {
                format!(
                    "re-reading the size of {} in {}",
                    target.display(),
                    self.array.name
                )
            })?;
        // 0 = fit the smallest bound member, which is now the target alone.
        self.write_when_not_busy("component_size", "0")
            .with_context(|| format!("growing {} to {}", self.array.name, target.display()))?;
        let size = self.array.size()?;
        let (want, _) = target.geometry()?;
        // Whole KiB only: md sizes are in KiB.
        let want_sectors = (*want / 1024 * 2) as u64;
        if *size < want_sectors {
            bail!(
                "{} is {} sectors after the grow, the target has {want_sectors}",
                self.array.name,
                *size
            );
        }
        Ok(Bytes(u128::from(*size) * 512))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_speeds_floor_and_no_cap_unless_limited() {
        let (min, max) = copy_speeds(None);
        assert_eq!(min.to_string(), "51200");
        assert_eq!(max.to_string(), "2147483647");
        // md prints it back as written (sync_max_show: %d of an int)
        assert_eq!(u32::try_from(i32::MAX).ok(), Some(SPEED_MAX_KIB));
        // a limit: exactly that rate, the floor up to md's default cap (as before)
        assert_eq!(
            copy_speeds(Some(4096)),
            (SpeedSetting::Kib(4096), SpeedSetting::Kib(4096))
        );
        assert_eq!(
            copy_speeds(Some(500_000)),
            (SpeedSetting::Kib(200_000), SpeedSetting::Kib(500_000))
        );
    }
}
