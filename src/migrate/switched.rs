//! Around the switch: record it, and the one way out when a suspend or freeze could not be
//! confirmed undone (no I/O to `/`, exit so the guardian acts).

use super::*;

impl Run {
    /// A suspend or freeze whose undo is not confirmed: the device under `/` may be suspended or
    /// its filesystem frozen, and any write or fsync there would hang. The journal goes to /run
    /// only, the message to stderr unless that is a file on the device, then exit at once (no
    /// destructors: they may write), so the guardian resumes and thaws.
    pub(super) fn stuck(&mut self, e: &anyhow::Error) -> ! {
        self.journal.error = Some(format!("{e:#}"));
        let _ = self.journal.save_run_only();
        if !stderr_on(self.w.devnum) {
            let msg = format!("rootshift: error: {e:#}\n");
            let _ = nix::unistd::write(std::io::stderr(), msg.as_bytes());
        }
        std::process::exit(crate::error::exit::FAILED)
    }

    pub(super) fn switched(&mut self, t: super::copy::SwitchTiming) -> Result<()> {
        failpoint::hit("migrate::switched")?;
        let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        let window_ms = ms(t.window);
        self.journal.switch_window_ms = Some(window_ms);
        self.journal.set_step(Step::Switched)?;
        self.progress.event(
            "switched",
            &format!(
                "switched {} to {} alone (switch window {window_ms:.1} ms)",
                self.w.name,
                self.target.display()
            ),
            json!({"window_ms": window_ms, "target": self.journal.target,
                   "suspend_ms": t.suspend.map(ms), "presync_ms": t.presync.map(ms)}),
        );
        Ok(())
    }
}

/// Whether our stderr is a file on the device `dev` (writing to it could hang while suspended).
pub(super) fn stderr_on(dev: DevNum) -> bool {
    nix::sys::stat::fstat(std::io::stderr()).is_ok_and(|st| DevNum::from_dev_t(st.st_dev) == dev)
}
