//! `rootshift abort`: end a migration before its point of no return (the core decides).

use super::*;

/// `rootshift abort`: before the switch, go back to the source alone.
pub fn abort(name: Option<&str>, json_out: bool) -> Result<()> {
    preflight::require_root()?;
    let _lock = Lock::acquire()?;
    let dm = Dm::open().ok();
    let w = wrapper::find(dm.as_ref(), name)?;
    let progress = Progress::new(json_out);
    let mut journal = Journal::load(&w.name)?;
    let mut backend = backend::open(&w)?;
    let legs = backend.legs()?;
    let first = *legs
        .first()
        .ok_or_else(|| anyhow!("{} maps no device", w.name))?;
    let switched_msg = |path: &str| {
        refuse(
            format!(
                "the system already runs on the target {path}: the switch is the point of no return, there is nothing to abort"
            ),
            Some("the source no longer has the latest writes; `rootshift migrate --resume` finishes the migration"),
        )
    };
    let seen = if backend.mirroring()? {
        core::AbortSeen::Mirror {
            past: backend.past_point_of_no_return(first)?,
        }
    } else if let Some(j) = journal.as_ref() {
        let leg_id = recovery::Identity::of(&BlockDev::from_devnum(first)?);
        core::AbortSeen::Single {
            // by identity; the number only when none was recorded (and then a wrong guess
            // refuses the abort, it never clears anything)
            is_target: match j.target.identity.as_ref().filter(|i| i.is_known()) {
                Some(i) => i.matches(&leg_id),
                None => j.target.dev == first.to_string(),
            },
        }
    } else {
        core::AbortSeen::Single { is_target: false }
    };
    let action = core::may_abort(journal.as_ref().map(|j| j.step), seen);
    if action == core::AbortAction::Refuse {
        let t = journal
            .as_ref()
            .map(|j| j.target.path.clone())
            .unwrap_or_else(|| "target".into());
        return Err(switched_msg(&t));
    }
    if action == core::AbortAction::RollBack {
        let source = BlockDev::from_devnum(first)?;
        let mount = mounts::mounts_of(w.devnum)?.into_iter().next();
        let _guardian = Guardian::start(&w, mount.as_ref().map(|m| m.mount_point.as_path()))?;
        let attached: Vec<BlockDev> = legs
            .iter()
            .skip(1)
            .filter_map(|d| BlockDev::from_devnum(*d).ok())
            .collect();
        backend.detach_target(&source)?;
        if let Some(j) = journal.as_mut() {
            keep_persisted(j, &w);
            j.error = Some("aborted by `rootshift abort`".into());
            j.set_step(Step::Aborted)?;
        }
        progress.event(
            "aborted",
            &format!("aborted: {} maps {} alone again", w.name, source.display()),
            json!({"wrapper": w.name, "source": source.devnum}),
        );
        clear_half_copies(&attached, &progress);
        return Ok(());
    }
    if let Some(j) = journal.as_mut() {
        keep_persisted(j, &w);
        let leg = BlockDev::from_devnum(first)?;
        if action == core::AbortAction::Abandon {
            // Interrupted (a crash, a reboot) while the source still had every write, and the
            // system runs from it: the migration is abandoned and its half copy cleared.
            j.error =
                Some("interrupted before the switch; found running on the source alone".into());
            j.set_step(Step::Aborted)?;
            // the half copies, found by identity and only if they show the root's filesystem
            // UUID or none: whatever now has their old numbers is never cleared
            let root_uuid = finish::ids::boot_uuid_on(&BlockDev::from_devnum(w.devnum)?)?
                .ok_or_else(|| anyhow!("{} shows no filesystem UUID", w.name))?;
            let mut half = vec![];
            let mut refused = vec![];
            for (what, r) in std::iter::once(("target".to_string(), &j.target)).chain(
                j.clones
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (format!("clone {}", i + 1), c)),
            ) {
                match identify::find(&what, r, identify::Expect::HalfCopy(root_uuid.clone())) {
                    Ok(d) if d.devnum == first => refused.push(format!(
                        "the {what} recorded as {} is {} in this boot, the device the system runs on",
                        r.path,
                        d.display()
                    )),
                    Ok(d) => half.push(d),
                    Err(identify::Refused {
                        why: identify::Unresolved::Missing,
                        ..
                    }) => {}
                    Err(e) => refused.push(e.to_string()),
                }
            }
            progress.event(
                "aborted",
                &format!(
                    "the interrupted migration to {} is abandoned; {} maps {} alone",
                    j.target.path,
                    w.name,
                    leg.display()
                ),
                json!({"wrapper": w.name, "source": first, "target": j.target.path}),
            );
            clear_half_copies(&half, &progress);
            if !refused.is_empty() {
                return Err(refuse(
                    format!(
                        "the migration is abandoned, but not every half copy was cleared: {}",
                        refused.join("; ")
                    ),
                    Some("clear the half copy yourself (wipefs -a DEVICE) once you know which device it is"),
                ));
            }
            return Ok(());
        }
    }
    let dev = BlockDev::from_devnum(first)
        .map(|d| d.display())
        .unwrap_or_else(|_| first.to_string());
    progress.event(
        "nothing-to-abort",
        &format!("nothing to abort: {} maps {dev} alone", w.name),
        json!({"wrapper": w.name, "device": first}),
    );
    Ok(())
}
