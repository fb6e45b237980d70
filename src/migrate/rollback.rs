//! Before the point of no return: put the wrapper back on the source, record why, and clear
//! the half copies so no device carries a second, incomplete copy of the root's filesystem.

use super::*;

impl Run {
    /// Before the switch: put the wrapper back on the source and record why.
    pub(super) fn roll_back(&mut self, stop: Stop) -> anyhow::Error {
        if let Stop::Error(e) = &stop {
            if switch::unconfirmed(e) {
                self.stuck(e);
            }
        }
        let src = self.source.display();
        let back = format!(
            "rolled back: {} maps {src} alone again, nothing lost",
            self.w.name
        );
        let (why, err): (String, anyhow::Error) = match stop {
            Stop::SourceFailed(msg) => {
                // Going back to a source with failed writes could lose data: keep the mirror.
                let e = anyhow!(
                    "the source {src} failed during the copy: {msg}; the mirror is left in place so no \
                     write is lost (see `rootshift status`)"
                );
                self.journal.error = Some(format!("{e:#}"));
                let _ = self.journal.save();
                return e;
            }
            Stop::Signal(sig) => (
                format!("{sig} received"),
                Interrupted {
                    signal: sig,
                    detail: back.clone(),
                }
                .into(),
            ),
            Stop::TargetFailed(msg) => (msg.clone(), anyhow!("{msg}; {back}")),
            Stop::Error(e) => (format!("{e:#}"), e.context(back.clone())),
        };
        // A switch that did not happen is recorded while the mirror still writes both legs:
        // after the detach the target's blocks would keep saying `switching` for good, and a
        // boot (or a retry onto it) could take that stale copy for the newest.
        if self.journal.step == Step::Switching {
            if let Err(e) = self.journal.set_step(Step::Mirroring) {
                self.progress.event(
                    "warning",
                    &format!("recording the failed switch before rolling back: {e:#}"),
                    json!({"error": format!("{e:#}")}),
                );
            }
        }
        if let Err(rb) = self.backend.detach_target(&self.source) {
            if switch::unconfirmed(&rb) {
                self.stuck(&rb.context(why));
            }
            self.journal.error = Some(format!("{why}; rolling back failed: {rb:#}"));
            let _ = self.journal.save();
            return anyhow!("{why}, and rolling back to {src} failed: {rb:#}");
        }
        let _ = failpoint::hit("migrate::rolled-back");
        self.journal.error = Some(why.clone());
        let _ = self.journal.set_step(Step::Aborted);
        self.progress.event(
            "aborted",
            &format!("aborted ({why}): back on {src} alone, nothing lost"),
            json!({"reason": why, "source": self.journal.source}),
        );
        let mut targets = vec![self.target.clone()];
        targets.extend(self.clones.iter().cloned());
        clear_half_copies(&targets, &self.progress);
        err
    }
}

/// After a roll-back: clear the first MiB of the targets, so no half copy carries the
/// filesystem's UUID for a later boot to pick. Best effort (a failing target may refuse).
pub(super) fn clear_half_copies(targets: &[BlockDev], progress: &Progress) {
    use std::io::Write;
    for t in targets {
        if !t.holders().is_empty() || mounts::mounts_of(t.devnum).is_ok_and(|m| !m.is_empty()) {
            continue;
        }
        let res = std::fs::OpenOptions::new()
            .write(true)
            .open(&t.path)
            .and_then(|mut f| {
                let n = t.size().map(|b| (*b as u64).min(1 << 20)).unwrap_or(0) as usize;
                f.write_all(&vec![0u8; n])?;
                f.sync_all()
            });
        match res {
            Ok(()) => progress.event(
                "cleared",
                &format!(
                    "cleared the first MiB of {}: the half copy no longer carries the filesystem",
                    t.display()
                ),
                json!({"device": t.display()}),
            ),
            Err(e) => progress.event(
                "warning",
                &format!("could not clear the half copy on {}: {e}", t.display()),
                json!({"device": t.display(), "error": e.to_string()}),
            ),
        }
    }
}
