//! The install step (`migrate --install`, `rootshift finish`): the boot finalisation of
//! `crate::finish` on the migrated root, recorded in the journal.

use super::*;

impl Run {
    /// After `done`: the install step, when it was asked for.
    pub(super) fn install(&mut self) -> Result<()> {
        let Some(plan) = self.install.take() else {
            return Ok(());
        };
        let mut rec = self.journal.install.clone().unwrap_or_default();
        rec.source_uuid = self.journal.source_uuid_changed.clone();
        let node = self.w.node();
        let journal = &mut self.journal;
        let res = finish::run(
            &plan,
            &node,
            &self.target,
            Some(&self.source),
            &mut rec,
            &self.progress,
            |r| {
                journal.install = Some(r.clone());
                let _ = journal.save();
            },
        );
        installed(
            res,
            &mut rec,
            &mut self.journal,
            &self.progress,
            &self.target,
        )
    }
}

/// Report the install step's outcome (event, journal); on failure say where the system stands.
pub(super) fn installed(
    res: Result<finish::Outcome>,
    rec: &mut finish::Record,
    journal: &mut Journal,
    progress: &Progress,
    target: &BlockDev,
) -> Result<()> {
    match res {
        Ok(o) => {
            journal.install = Some(rec.clone());
            journal.save()?;
            progress.event(
                "installed",
                &format!(
                    "installed: {} boots on its own ({}, root UUID {}){}",
                    o.target,
                    o.bootloader,
                    o.root_uuid,
                    o.machine_id
                        .as_ref()
                        .map(|m| format!(", new machine-id {m}"))
                        .unwrap_or_default()
                ),
                serde_json::to_value(&o).unwrap_or_default(),
            );
            Ok(())
        }
        Err(e) => {
            rec.state = "failed".into();
            rec.error = Some(format!("{e:#}"));
            journal.install = Some(rec.clone());
            let _ = journal.save();
            Err(e.context(format!(
                "the system runs on {} with all its data, but making it boot on its own failed; fix the cause \
                 and run `rootshift finish`",
                target.display()
            )))
        }
    }
}

/// `rootshift finish`: make the system that runs from its target bootable on its own.
pub fn finish_command(
    name: Option<&str>,
    yes: bool,
    json_out: bool,
    opts: finish::Options,
) -> Result<()> {
    preflight::require_root()?;
    let _lock = Lock::acquire()?;
    let (w, backend) = super::idle_wrapper(name)?;
    preflight::check_not_overlay_install("finish")?;
    let legs = backend.legs()?;
    let [leg] = legs.as_slice() else {
        bail!("{} maps {} devices", w.name, legs.len());
    };
    let target = BlockDev::from_devnum(*leg).context("finding the device / runs on")?;
    let mut journal = Journal::load(&w.name)?;
    // the journal's target is the device / runs on by identity, not by its number
    let leg_id = recovery::Identity::of(&target);
    let migrated_here = journal.as_ref().filter(|j| {
        j.step.switched()
            && match j.target.identity.as_ref().filter(|i| i.is_known()) {
                Some(i) => i.matches(&leg_id),
                None => j.target.dev == leg.to_string(),
            }
    });
    let live_source = migrated_here.is_some_and(|j| j.source_live);
    let progress = Progress::new(json_out);
    // the detached source, only by identity and only if it shows the root's UUID (or the one
    // the migration gave it): whatever now has its old number is never given a new UUID
    let source = match migrated_here.filter(|j| !j.source_live) {
        None => None,
        Some(j) => {
            let root = finish::ids::uuid_on(&target)?;
            let expect = identify::Expect::FsUuid(
                root.into_iter()
                    .chain(j.source_uuid_changed.clone())
                    .chain(j.install.as_ref().and_then(|i| i.source_uuid.clone()))
                    .collect(),
            );
            match identify::find("source", &j.source, expect) {
                Ok(s) => Some(s),
                Err(e) => {
                    progress.event(
                        "warning",
                        &format!("the old device is left alone: {e}"),
                        json!({"source": j.source.path, "error": e.to_string()}),
                    );
                    None
                }
            }
        }
    }
    .filter(|s| s.holders().is_empty());
    let mount = mounts::mounts_of(w.devnum)?.into_iter().next();
    let plan = finish::preflight(opts, source.as_ref(), live_source, &target, mount.as_ref())?;
    confirm(
        &format!(
            "Make {} boot on its own ({}; new filesystem UUID, fstab, initramfs)?",
            target.display(),
            plan.boot.bootloader.as_str()
        ),
        yes,
    )?;
    // the migration may have given the detached source its new UUID already (right after the
    // switch, or in an install step a power cut interrupted): the target then keeps the root's
    // UUID, as an uninterrupted `migrate --install` leaves it — never a second new one
    let source_uuid = migrated_here.and_then(|j| {
        j.source_uuid_changed
            .clone()
            .or_else(|| j.install.as_ref().and_then(|i| i.source_uuid.clone()))
    });
    let mut rec = finish::Record {
        bootloader: plan.boot.bootloader.as_str().into(),
        initramfs: format!("{:?}", plan.initramfs).to_lowercase(),
        state: "planned".into(),
        source_uuid,
        ..Default::default()
    };
    let node = w.node();
    let res = finish::run(
        &plan,
        &node,
        &target,
        source.as_ref(),
        &mut rec,
        &progress,
        |r| {
            if let Some(j) = journal.as_mut() {
                j.install = Some(r.clone());
                let _ = j.save();
            }
        },
    );
    match journal.as_mut() {
        Some(j) => installed(res, &mut rec, j, &progress, &target),
        None => res.map(|o| {
            progress.event(
                "installed",
                &format!(
                    "installed: {} boots on its own ({}, root UUID {})",
                    o.target, o.bootloader, o.root_uuid
                ),
                serde_json::to_value(&o).unwrap_or_default(),
            )
        }),
    }
}
