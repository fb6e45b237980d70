//! After the point of no return: switched → grown → done (grow the device and the filesystem,
//! give the detached source a new identity). Idempotent: `--resume` runs it again after a crash.

use super::*;

impl Run {
    /// switched → grown → done. Idempotent: `--resume` runs it again after a crash.
    pub(super) fn finish(&mut self) -> Result<()> {
        if !self.journal.step.switched() {
            self.journal.set_step(Step::Switched)?;
        }
        failpoint::hit("migrate::journal-switched")?;
        let dev_size = match self.backend.grow_device(&self.target) {
            Err(e) if switch::unconfirmed(&e) => self.stuck(&e),
            r => r?,
        };
        failpoint::hit("migrate::device-grown")?;
        // An encrypted root's twins: the old header's new LUKS UUID comes first, before the
        // resize and the grow (the boot tells twins apart by the journal token in their headers,
        // but a LUKS1 container has none, and an unlock by UUID must never take the old copy)
        if self.crypt.as_ref().is_some_and(|c| c.luks) {
            self.renew_source_id()?;
        }
        // an encrypted root: its container's payload first, then the filesystem in it
        if let Some(c) = &self.crypt {
            let before = c.dev.size().map(|b| *b as u64).unwrap_or(0);
            c.resize().with_context(|| {
                format!(
                    "growing the encrypted container {} (the data is safe on {}; `rootshift migrate --resume` retries)",
                    c.name,
                    self.target.display()
                )
            })?;
            let after = c.dev.size().map(|b| *b as u64).unwrap_or(0);
            self.progress.event(
                "crypt-grown",
                &format!(
                    "grew the encrypted container {} from {} to {}",
                    c.name,
                    human(Bytes(before.into())),
                    human(Bytes(after.into()))
                ),
                json!({"device": c.name, "before_bytes": before, "after_bytes": after}),
            );
        }
        // the filesystem: on the wrapper, or in the encrypted container (its mapping's size: the
        // wrapper's less the LUKS header)
        let (fs_mount, fs_dev_size) = match &self.crypt {
            Some(c) => (
                c.mount.as_ref(),
                c.dev
                    .size()
                    .with_context(|| format!("reading the size of {}", c.name))?,
            ),
            None => (self.mount.as_ref(), dev_size),
        };
        if let Some(m) = fs_mount {
            let g = grow_mounted(&m.mount_point, &m.fs_type, fs_dev_size).with_context(|| {
                format!(
                    "growing the {} filesystem on {} (the data is safe on {}; `rootshift migrate --resume` retries)",
                    m.fs_type,
                    m.mount_point.display(),
                    self.target.display()
                )
            })?;
            self.journal.fs_before_bytes.get_or_insert(g.before);
            self.journal.fs_after_bytes = Some(g.after);
            self.progress.event(
                "grown",
                &format!(
                    "grew {} ({}) from {} to {}",
                    m.mount_point.display(),
                    m.fs_type,
                    human(Bytes(g.before.into())),
                    human(Bytes(g.after.into()))
                ),
                json!({"mount_point": m.mount_point, "fs_type": m.fs_type, "before_bytes": g.before, "after_bytes": g.after}),
            );
        }
        self.journal.set_step(Step::Grown)?;
        failpoint::hit("migrate::fs-grown")?;
        self.renew_source_id()?;
        // the target was written beneath its page cache: readers of it (blkid -p, a backup tool)
        // see what it holds now, not what udev cached of it blank (best effort: nothing of the
        // migration depends on it)
        let _ = self.target.drop_cache();
        // --encrypt: the old disk's plaintext overwritten or reported
        self.after_encrypt();
        // an overlay root's image files onto their partition, then the medium and the zram
        // device the upper was on let go of
        let mut freed = vec![];
        if let Some(plan) = self.images.clone() {
            let progress = &self.progress;
            crate::live::overlay::move_images(&plan, |m| {
                progress.event(
                    "image",
                    &format!(
                        "moved {} ({}) to {}: {} reads the verified copy now",
                        m.file.display(),
                        human(Bytes(m.bytes.into())),
                        m.device,
                        m.loop_dev.display()
                    ),
                    json!({"file": m.file, "bytes": m.bytes, "device": m.device, "loop": m.loop_dev}),
                )
            })
            .with_context(|| {
                format!(
                    "moving the live image files to {} (the root is complete on {}; the image is still read from the medium; `rootshift migrate --resume` retries)",
                    plan.part.display(),
                    self.target.display()
                )
            })?;
            freed.extend(crate::live::media::release_medium(&plan));
        }
        freed.extend(crate::live::media::release_zram(&self.source));
        match crate::live::release_old(&self.source).map(|mut r| {
            r.extend(freed);
            r
        }) {
            Ok(r) if r.is_empty() => {}
            Ok(r) => self.progress.event(
                "released",
                &format!("released the old device stack: {}", r.join("; ")),
                json!({"released": r}),
            ),
            Err(e) => self.progress.event(
                "released",
                &format!("the old device stack was not released: {e:#}"),
                json!({"released": [], "error": format!("{e:#}")}),
            ),
        }
        self.journal.set_step(Step::Done)?;
        self.journal.drop_header_token();
        if let Some(sig) = self.signals.pending() {
            self.progress.event(
                "signal-deferred",
                &format!(
                    "{sig} arrived after the point of no return: the migration was finished first"
                ),
                json!({"signal": sig}),
            );
        }

        let free = self.source.holders().is_empty();
        let copy_s = self.journal.copy_seconds.unwrap_or(0.0);
        let rate = if copy_s > 0.0 {
            *self.to_copy as f64 / copy_s
        } else {
            0.0
        };
        let window_ms = self.journal.switch_window_ms.unwrap_or(0.0);
        let what = self
            .mount
            .as_ref()
            .map(|m| format!("{} ({})", m.mount_point.display(), m.fs_type))
            .unwrap_or_else(|| self.w.name.clone());
        let mode = self.journal.copy_mode.clone().unwrap_or_default();
        self.progress.event(
            "done",
            &format!(
                "done: {what} moved from {} to {} in {:.1} s ({mode} copy of {} in {:.1} s at {}/s, switch window {window_ms:.1} ms); {} {}",
                self.source.display(),
                self.target.display(),
                self.t_start.elapsed().as_secs_f64(),
                human(self.to_copy),
                copy_s,
                human(Bytes(rate as u128)),
                self.source.display(),
                if free { "is no longer used" } else { "is still held by something" }
            ),
            json!({"source": self.journal.source, "target": self.journal.target, "seconds": self.t_start.elapsed().as_secs_f64(),
                   "copy_seconds": copy_s, "rate_bytes_per_sec": rate.round() as u64, "switch_window_ms": window_ms,
                   "fs_before_bytes": self.journal.fs_before_bytes, "fs_after_bytes": self.journal.fs_after_bytes,
                   "source_free": free, "copy_mode": mode, "region_bytes": self.journal.region_bytes,
                   "copied_bytes": *self.to_copy as u64,
                   "peak_rss_kib": crate::kernel::memlock::peak_rss_kib()}),
        );
        Ok(())
    }

    /// The detached source still carries the root's identity: the filesystem's UUID, or (an
    /// encrypted root) the container's LUKS UUID, which crypttab and rd.luks.uuid= unlock by.
    /// Give it a new one, so no boot can ever take it for the root again (a live medium's image
    /// needs nothing). Once: the journal keeps the new UUID.
    fn renew_source_id(&mut self) -> Result<()> {
        if self.journal.source_uuid_changed.is_none() {
            let renew = match &self.crypt {
                Some(c) if c.luks => Some((
                    "LUKS",
                    "the container's LUKS",
                    c.new_header_uuid(&self.source),
                )),
                Some(_) => None,
                None if self.journal.source_live => None,
                None => self
                    .mount
                    .as_ref()
                    .filter(|m| m.mount_point == std::path::Path::new("/"))
                    .map(|m| {
                        (
                            "filesystem",
                            "the root's filesystem",
                            finish::ids::set_uuid_offline(&self.source, &m.fs_type),
                        )
                    }),
            };
            match renew {
            Some((kind, _, Ok(u))) => {
                self.journal.source_uuid_changed = Some(u.clone());
                self.journal.save()?;
                let mut data = json!({"device": self.source.display(), "uuid": u});
                if kind == "LUKS" {
                    data["what"] = json!("luks");
                }
                self.progress.event(
                    "source-id",
                    &format!("the old device {} got the new {kind} UUID {u}", self.source.display()),
                    data,
                );
            }
            Some((_, whose, Err(e))) => self.progress.event(
                "warning",
                &format!(
                    "the old device {} still carries {whose} UUID ({e:#}); remove it or change its UUID \
                     before the next boot",
                    self.source.display()
                ),
                json!({"device": self.source.display(), "error": format!("{e:#}")}),
            ),
            None => {}
        }
        }
        Ok(())
    }
}
