//! Clone legs: detached at the switch with the filesystem frozen, then given their own ids.

use super::*;

impl Run {
    /// After the switch: every clone is checked and gets its own filesystem UUID and a label
    /// suffix, offline (it is detached and unmounted), so no two devices share an identity.
    pub(super) fn finish_clones(&mut self) -> Result<()> {
        let fs_type = self
            .mount
            .as_ref()
            .map(|m| m.fs_type.clone())
            .unwrap_or_default();
        for (i, c) in self.clones.clone().iter().enumerate() {
            if i < self.journal.clones_done {
                continue;
            }
            let n = i + 1;
            let r = finish::clone_identity(c, &fs_type, n).with_context(|| {
                format!(
                    "giving the clone {} its own identity (the system runs on {}, nothing is lost; \
                     `rootshift migrate --resume` retries)",
                    c.display(),
                    self.target.display()
                )
            })?;
            self.progress.event(
                "clone",
                &format!("clone {n} on {}: checked, UUID {}, label {}", c.display(), r.uuid, r.label),
                json!({"clone": n, "device": c.display(), "uuid": r.uuid, "label": r.label, "check": r.check}),
            );
            self.journal.clones_done = n;
            self.journal.save()?;
        }
        Ok(())
    }
}
