//! `migrate --resume`: continue an interrupted migration from its journal and what the kernel
//! shows (the core decides what may be done from there).

use super::*;

/// Keep the journal's copy in the root filesystem current too (installed systems): the root
/// on the wrapper, or in a LUKS container opened over it, whose LUKS2 header then keeps a copy
/// too (the boot reads it before unlocking: crate::state::token).
pub(super) fn keep_persisted(j: &mut Journal, w: &Wrapper) {
    let root_on = |d: DevNum| {
        mounts::mounts_of(d)
            .ok()
            .and_then(|m| m.into_iter().next())
            .is_some_and(|m| m.mount_point == std::path::Path::new("/"))
    };
    let wdev = BlockDev::from_devnum(w.devnum).ok();
    let in_container = wdev
        .as_ref()
        .and_then(crate::kernel::dm::crypt_holder)
        .is_some_and(|c| root_on(c.devnum));
    if j.source_live || !(root_on(w.devnum) || in_container) {
        return;
    }
    j.persist_root = Some(PathBuf::from("/"));
    if let Some(d) = wdev.filter(|d| in_container && crate::state::token::holds_luks2(&d.path)) {
        j.header_token_on = Some(d.path);
    }
}

/// The message for a refused `--resume` (`legs`, `target`: what the kernel maps, the journal's
/// target, once read).
pub(super) fn resume_refused(
    r: core::ResumeRefusal,
    w: &Wrapper,
    legs: &[DevNum],
    target: Option<DevNum>,
) -> anyhow::Error {
    match r {
        core::ResumeRefusal::NoJournal => refuse(
            format!(
                "there is no interrupted migration of {} to resume (no journal in {})",
                w.name,
                journal::DIR
            ),
            Some("start one with `rootshift migrate TARGET`"),
        ),
        core::ResumeRefusal::Over(step) => refuse(
            format!(
                "the last migration of {} is {} already; nothing to resume",
                w.name,
                step.as_str()
            ),
            None,
        ),
        core::ResumeRefusal::NotAttached => refuse(
            format!(
                "{} maps {} alone: the interrupted migration never attached the target, or was rolled back",
                w.name,
                legs.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
            ),
            Some("start again with `rootshift migrate TARGET`"),
        ),
        core::ResumeRefusal::OtherTarget => refuse(
            format!(
                "{} mirrors onto {legs:?}, not the journal's target {}",
                w.name,
                target.map(|t| t.to_string()).unwrap_or_default()
            ),
            Some("`rootshift abort` goes back to the source"),
        ),
    }
}

/// `rootshift migrate --resume`: continue an interrupted migration from what the kernel shows.
pub(super) fn resume(w: Wrapper, opts: &MigrateOptions) -> Result<()> {
    let journal = Journal::load(&w.name)?;
    // what the journal alone refuses comes first, before any device is looked at
    if let Err(r) = core::resume_from(journal.as_ref().map(|j| j.step)) {
        return Err(resume_refused(r, &w, &[], None));
    }
    let Some(journal) = journal else {
        unreachable!("core::resume_from refuses without a journal")
    };
    let backend = backend::open(&w)?;
    let legs = backend.legs()?;
    let mirroring = backend.mirroring()?;
    let found = Recorded::find(&journal, &w, mirroring)?;
    let (source, target) = (found.source, found.target);
    let past = backend.past_point_of_no_return(source.devnum)?;
    let seen = core::ResumeSeen {
        mirroring,
        target_attached: legs.contains(&target.devnum),
        on_target_alone: !mirroring && legs == [target.devnum],
        past,
    };
    let action = core::may_resume(Some(journal.step), seen);
    if let core::ResumeAction::Refuse(r) = action {
        return Err(resume_refused(r, &w, &legs, Some(target.devnum)));
    }
    let mount = mounts::mounts_of(w.devnum)?.into_iter().next();
    let guardian = Guardian::start(&w, mount.as_ref().map(|m| m.mount_point.as_path()))?;
    let mut journal = journal;
    keep_persisted(&mut journal, &w);
    // an overlay root's image files still to move (those moved already are skipped)
    let images = journal
        .image_to
        .as_deref()
        .map(|p| preflight::check_image_part(std::path::Path::new(p), &target, &found.clones, true))
        .transpose()?;
    let crypt = crypt::Crypt::above(&w, opts.key_file.as_deref(), CopyMode::Full)?;
    let mut run = Run {
        to_copy: Bytes(u128::from(
            journal.copied_bytes.unwrap_or(journal.source.size_bytes),
        )),
        w,
        backend,
        source,
        target,
        mount,
        journal,
        progress: Progress::new(opts.json),
        signals: Signals::install()?,
        t_start: Instant::now(),
        info: None,
        install: None,
        clones: vec![],
        verify: opts.verify,
        images,
        crypt,
        encrypted: None,
        wipe_source: false,
        _guardian: guardian,
    };
    run.clones = found.clones;
    run.journal.error = None;
    run.progress.event(
        "resume",
        &format!(
            "resuming the migration of {} from {} to {} (step {})",
            run.w.name,
            run.source.display(),
            run.target.display(),
            if action == core::ResumeAction::CopyAndSwitch { "mirroring" } else { "switched" }
        ),
        json!({"wrapper": run.w.name, "step": run.journal.step, "mirroring": mirroring, "past_point_of_no_return": past}),
    );
    if action == core::ResumeAction::CopyAndSwitch {
        let window = run.copy_and_switch()?;
        run.switched(window)?;
    }
    run.finish()?;
    run.finish_clones()?;
    if run
        .journal
        .install
        .as_ref()
        .is_some_and(|r| r.state != "done")
    {
        run.progress.event(
            "install-pending",
            "the migration was asked to install the target: run `rootshift finish` to do it now",
            json!({}),
        );
    }
    Ok(())
}

/// The journal's devices found again in this boot by identity (see identify.rs), never by the
/// numbers they had before the reboot.
struct Recorded {
    source: BlockDev,
    target: BlockDev,
    clones: Vec<BlockDev>,
}

impl Recorded {
    /// While mirroring, what the kernel maps decides (a half copy shows no settled filesystem
    /// yet; the core checks the target is a leg). After the
    /// switch the detached source must show the root's filesystem UUID (or the new one the
    /// migration gave it) and a clone not yet given its own ids the root's UUID.
    fn find(j: &Journal, w: &Wrapper, mirroring: bool) -> Result<Recorded> {
        let wdev = BlockDev::from_devnum(w.devnum)?;
        let root_uuid = finish::ids::boot_uuid_on(&wdev)?;
        let find = |what: &str, r: &DevRecord, expect: identify::Expect| {
            identify::find(what, r, expect).map_err(identify::refusal)
        };
        let settled = |extra: &[Option<String>]| {
            identify::Expect::FsUuid(
                root_uuid
                    .iter()
                    .chain(extra.iter().flatten())
                    .cloned()
                    .collect(),
            )
        };
        let source = if j.source_live && !j.source.identity.as_ref().is_some_and(|i| i.is_known()) {
            // a live medium's image (a loop device) has no identity; it is never written
            let d = j
                .source
                .dev
                .parse::<DevNum>()
                .map_err(|e| anyhow!("journal: {e}"))?;
            BlockDev::from_devnum(d)?
        } else if mirroring {
            // a leg of the mirror, or (md past its point of no return) a member already failed:
            // what the kernel maps decides what may be done (core::may_resume)
            find("source", &j.source, identify::Expect::Any)?
        } else {
            let changed = [
                j.source_uuid_changed.clone(),
                j.install.as_ref().and_then(|i| i.source_uuid.clone()),
            ];
            find("source", &j.source, settled(&changed))?
        };
        // the target: a leg now (the core checks which), whatever its superblock shows yet
        let target = find("target", &j.target, identify::Expect::Any)?;
        let mut clones = vec![];
        for (i, c) in j.clones.iter().enumerate() {
            let what = format!("clone {}", i + 1);
            if i < j.clones_done {
                // done already and never touched again: the target stands in for it
                clones.push(target.clone());
            } else if mirroring {
                clones.push(find(&what, c, identify::Expect::Any)?);
            } else {
                clones.push(find(&what, c, settled(&[]))?);
            }
        }
        Ok(Recorded {
            source,
            target,
            clones,
        })
    }
}
