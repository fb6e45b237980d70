//! The copy: attach the target as a mirror leg and wait until every region is in sync,
//! watching signals and leg health; then the switch attempts.

use super::*;

impl Run {
    /// Wait until every region is in sync, watching signals and leg health every tick.
    pub(super) fn copy(&mut self) -> Result<(), Stop> {
        let mut first = true;
        loop {
            if let Some(sig) = self.signals.pending() {
                return Err(Stop::Signal(sig));
            }
            let st = self.backend.sync_state().map_err(Stop::Error)?;
            self.progress.update(
                *st.done as u64,
                *st.total as u64,
                json!({"in_sync": st.units_done, "total": st.units_total,
                       "health": st.legs.iter().map(|(_, h)| h.as_char()).collect::<String>()}),
            );
            if let Some((dev, h)) = st.legs.iter().find(|(_, h)| !h.is_alive()) {
                let msg = format!(
                    "leg {dev} reports a {} (health {})",
                    h.describe(),
                    h.as_char()
                );
                if *dev == self.target.devnum {
                    return Err(Stop::TargetFailed(format!(
                        "the target {} ({}) failed during the copy: {msg}",
                        self.target.display(),
                        self.target.devnum
                    )));
                }
                if let Some(c) = self.clones.iter().find(|c| c.devnum == *dev) {
                    return Err(Stop::TargetFailed(format!(
                        "the clone {} ({}) failed during the copy: {msg}",
                        c.display(),
                        c.devnum
                    )));
                }
                return Err(Stop::SourceFailed(msg));
            }
            if st.complete() {
                return Ok(());
            }
            if first {
                failpoint::hit("migrate::copying").map_err(Stop::Error)?;
                first = false;
            }
            self.backend.wait(TICK).map_err(Stop::Error)?;
        }
    }

    /// mirroring → switched. Rolls back to the source on any failure before the switch.
    pub(super) fn copy_and_switch(&mut self) -> Result<SwitchTiming> {
        self.progress.start_copy(*self.to_copy as u64);
        let mut attempts = 0;
        loop {
            let stopped = self.copy();
            self.progress.finish_copy();
            if let Err(stop) = stopped {
                return Err(self.roll_back(stop));
            }
            if let Err(e) = failpoint::hit("migrate::synced") {
                return Err(self.roll_back(Stop::Error(e)));
            }
            if self.verify && self.journal.verified_bytes.is_none() {
                if let Err(e) = self.verify_copy() {
                    return Err(self.roll_back(Stop::Error(e)));
                }
            }
            // Last look before the point of no return; from the switch on signals wait.
            if let Some(sig) = self.signals.pending() {
                return Err(self.roll_back(Stop::Signal(sig)));
            }
            self.journal.copy_seconds = Some(self.progress.copy_elapsed().as_secs_f64());
            attempts += 1;
            // Durably, before the switch (the mirror is in sync, so this reaches every leg): after a
            // crash from here on, the boot hook picks the target (see recovery.rs).
            if let Err(e) = self.journal.set_step(Step::Switching) {
                return Err(self.roll_back(Stop::Error(
                    e.context("recording the switch in the journal"),
                )));
            }
            if let Err(e) = failpoint::hit("migrate::switching") {
                return Err(self.roll_back(Stop::Error(e)));
            }
            // Write back what is dirty now, so that the suspend (which waits for the I/O in flight)
            // has little left to wait for: the window every process touching `/` stalls for.
            let presync = self.mount.as_ref().map(|m| {
                let t = std::time::Instant::now();
                let _ = crate::kernel::fs::syncfs(&m.mount_point);
                t.elapsed()
            });
            // With clones, the filesystem is frozen across the switch: every detached leg then holds
            // a consistent image, not a crash image. (The guardian thaws it if we die in between.)
            // A thaw that is not confirmed, or a switch that left the device suspended, ends in
            // `SwitchError::Unconfirmed` (handled below: no I/O to `/`).
            let switched = match (&self.mount, self.clones.is_empty()) {
                (Some(m), false) => {
                    let target = &self.target;
                    let backend = &mut self.backend;
                    match RealFreeze::open(&m.mount_point)
                        .map_err(anyhow::Error::from)
                        .and_then(|mut fs| {
                            with_frozen(&mut fs, || backend.switch_to_target(target))
                                .map_err(anyhow::Error::from)
                        }) {
                        Ok(r) => r,
                        Err(e) if switch::unconfirmed(&e) => Err(e),
                        Err(e) => {
                            let e = anyhow!(
                                "freezing {} to detach the clones: {e:#}",
                                m.mount_point.display()
                            );
                            return Err(self.roll_back(Stop::Error(e)));
                        }
                    }
                }
                _ => self.backend.switch_to_target(&self.target),
            };
            match switched {
                Ok(SwitchOutcome::Switched { window, suspend }) => {
                    return Ok(SwitchTiming {
                        window,
                        suspend,
                        presync,
                    })
                }
                Ok(SwitchOutcome::NotInSync { status, window }) if attempts < SWITCH_ATTEMPTS => {
                    let _ = self.journal.set_step(Step::Mirroring);
                    self.progress.event(
                        "switch-retry",
                        &format!("not switching: the mirror was not in sync inside the window ({status}); copying on"),
                        json!({"status": status, "window_ms": window.as_secs_f64() * 1e3}),
                    );
                }
                Ok(SwitchOutcome::NotInSync { status, .. }) => {
                    let e = anyhow!("the mirror never stayed in sync for the switch ({status})");
                    return Err(self.roll_back(Stop::Error(e)));
                }
                // The device may be suspended or `/` frozen: no I/O to `/`, exit for the guardian.
                Err(e) if switch::unconfirmed(&e) => self.stuck(&e),
                // switch_to_target resumed the mirror on its error paths: go back to the source.
                Err(e) => return Err(self.roll_back(Stop::Error(e))),
            }
        }
    }
}

/// A region size in bytes → sectors, refusing what dm-mirror would reject.
pub(super) fn region_sectors(bytes: u64) -> Result<devicemapper::Sectors> {
    if !bytes.is_power_of_two() || bytes < 4096 {
        return Err(refuse(
            format!("--region-size {bytes} must be a power of two of at least 4K"),
            Some("e.g. 512K, 1M, 4M"),
        ));
    }
    Ok(devicemapper::Sectors(bytes / 512))
}

/// How long the switch took: the window (suspend → resume), the suspend ioctl within it (dm),
/// and the write-back of dirty data just before it.
#[derive(Debug, Clone, Copy)]
pub(super) struct SwitchTiming {
    pub window: Duration,
    pub suspend: Option<Duration>,
    pub presync: Option<Duration>,
}
