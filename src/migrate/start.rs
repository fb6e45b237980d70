//! `rootshift migrate TARGET`: the preflight, then one run of the state machine.

use super::*;
use crate::backend::usedmap::FsSpan;

/// `rootshift migrate TARGET` (or `--resume`).
pub fn migrate(opts: &MigrateOptions) -> Result<()> {
    preflight::require_root()?;
    // a dry run writes nothing, not even the lock file (a migration under way is refused by
    // the attached-mirror check all the same)
    let _lock = if opts.dry_run {
        None
    } else {
        Some(Lock::acquire()?)
    };
    migrate_locked(opts)
}

/// `migrate` for a caller that holds the lock already (`rootshift install`).
pub fn migrate_locked(opts: &MigrateOptions) -> Result<()> {
    let dm = Dm::open().ok();
    let w = wrapper::find(dm.as_ref(), opts.name.as_deref())?;
    if opts.resume {
        return resume::resume(w, opts);
    }
    let mut backend = backend::open(&w)?;
    if backend.mirroring()? {
        return Err(refuse(
            format!("a migration of {} is already in progress (a target is attached)", w.name),
            Some("`rootshift migrate --resume` continues it, `rootshift abort` goes back to the source"),
        ));
    }
    let source_dev = *backend
        .legs()?
        .first()
        .ok_or_else(|| anyhow!("{} maps no device", w.name))?;
    let source = BlockDev::from_devnum(source_dev).context("finding the source device")?;
    preflight::check_not_encrypted(&source, &format!("the source of {}", w.name))?;
    let target = preflight::resolve_target(&opts.target)?;
    // an encrypted root on the wrapper: its container moves whole, the key to grow it tested now
    // (--encrypt: --key-file is the new container's key)
    let crypt_key = opts
        .encrypt
        .is_none()
        .then_some(opts.key_file.as_deref())
        .flatten();
    let crypt = crypt::Crypt::above(&w, crypt_key, opts.copy)?;
    let checked = preflight::check_target(&w, &source, &target, opts.force)?;
    let encrypt = encrypt_preflight(opts, crypt.as_ref(), &source, &target, checked.source_size)?;
    let mut clones: Vec<BlockDev> = vec![];
    for c in &opts.clones {
        let dev = preflight::resolve_target(c)?;
        if dev.devnum == target.devnum || clones.iter().any(|x| x.devnum == dev.devnum) {
            return Err(refuse(
                format!(
                    "{} is named twice (target and clones must be distinct devices)",
                    dev.display()
                ),
                None,
            ));
        }
        preflight::check_target(&w, &source, &dev, opts.force)
            .context("checking a clone device")?;
        clones.push(dev);
    }
    let images = opts
        .image_to
        .as_deref()
        .map(|p| preflight::check_image_part(p, &target, &clones, opts.force))
        .transpose()?;
    crate::live::overlay_check(&source, crate::live::OVERLAY_NEED_BYTES)?;
    let mount = mounts::mounts_of(w.devnum)?.into_iter().next();
    // the filesystem the copy sees: on the wrapper, or in the encrypted container over it
    let fs = fs_mount(mount.as_ref(), crypt.as_ref());
    let plan = CopyPlan {
        mode: opts.copy,
        region: opts.region_size.map(region_sectors).transpose()?,
        mount: fs.map(|(m, _)| (m.mount_point.clone(), m.fs_type.clone())),
        fs_span: fs.map(|(_, span)| span).unwrap_or_default(),
        clones: clones.clone(),
    };
    backend.check_plan(&plan)?;
    if !clones.is_empty()
        && !mount
            .as_ref()
            .is_some_and(|m| m.fs_type.starts_with("ext") || m.fs_type == "xfs")
    {
        return Err(refuse(
            "clones need the wrapper's ext4 or xfs filesystem mounted: each clone is detached with it frozen \
             and then gets its own filesystem UUID",
            None,
        ));
    }
    let live_source = finish::is_live_source(&source);
    if opts.install == Some(true) {
        preflight::check_not_overlay_install("--install")?;
        if let Some(c) = &crypt {
            return Err(refuse(
                format!(
                    "the install step cannot make the encrypted root on {} boot yet (crypttab, an initramfs that \
                     unlocks it and the boot loader are not written for a LUKS container)",
                    c.name
                ),
                Some("migrate with --no-install: the container keeps its LUKS UUID, which crypttab and the boot \
                      entry name, and the old disk's header gets a new one"),
            ));
        }
    }
    let install = if opts.install.unwrap_or(live_source) {
        Some(finish::preflight(
            finish::Options {
                encrypt: encrypt.is_some(),
                tpm2: opts.encrypt.as_ref().is_some_and(|e| e.tpm2_pcrs.is_some()),
                ..opts.finish.clone()
            },
            Some(&source),
            live_source,
            &target,
            mount.as_ref(),
        )?)
    } else {
        None
    };
    let moves_root = mount
        .as_ref()
        .is_some_and(|m| m.mount_point == std::path::Path::new("/"));
    if install.is_none() && moves_root && !live_source {
        // Without the install step nothing rewrites how the system finds its root: a name of the
        // old device would boot the stale copy after the migration (issue 15 item 8). A live
        // medium boots its image whatever happens, and a non-root wrapper is not booted.
        let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        let fstab_root = std::fs::read_to_string("/etc/fstab")
            .ok()
            .and_then(|t| t.parse::<finish::fstab::Fstab>().ok())
            .and_then(|f| f.entries().find(|e| e.file == "/").map(|e| e.spec.clone()));
        let gpt_auto = [
            "/usr/lib/systemd/system-generators/systemd-gpt-auto-generator",
            "/lib/systemd/system-generators/systemd-gpt-auto-generator",
        ]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
        if let Some(why) =
            finish::rootspec::stale_after_migration(&cmdline, fstab_root.as_deref(), gpt_auto)
        {
            return Err(refuse(
                why,
                Some(
                    "run with --install (it points the boot entry and fstab at the new root's UUID), or \
                     name the root by UUID= in the boot entry and fstab first",
                ),
            ));
        }
    }
    let into = if encrypt.is_some() {
        " into a new LUKS2 container on it"
    } else {
        ""
    };
    let what = match (&mount, &crypt) {
        (Some(m), _) => format!("{} ({})", m.mount_point.display(), m.fs_type),
        (None, Some(c)) => format!(
            "the encrypted container {}{} (whole, as ciphertext)",
            c.name,
            c.mount
                .as_ref()
                .map(|m| format!(" of {} ({})", m.mount_point.display(), m.fs_type))
                .unwrap_or_default()
        ),
        (None, None) => w.name.clone(),
    };
    let then = install
        .as_ref()
        .map(|p| {
            format!(
                " Then make it boot on its own ({}, {} initramfs).",
                p.boot.bootloader.as_str(),
                if p.initramfs == finish::initramfs::Mode::Keep {
                    "prebuilt"
                } else {
                    "regenerated"
                }
            )
        })
        .unwrap_or_default();
    if opts.dry_run {
        let progress = Progress::new(opts.json);
        let copy = serde_json::to_value(opts.copy)?;
        progress.event(
            "plan",
            &format!(
                "would move {what} from {} ({}) to {} ({}){into} through {} ({}, copy {}){}{then}",
                source.display(),
                human(checked.source_size),
                target.display(),
                human(checked.target_size),
                w.name,
                backend.kind(),
                copy.as_str().unwrap_or("?"),
                if clones.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", clones {}",
                        clones.iter().map(|c| c.display()).collect::<Vec<_>>().join(", ")
                    )
                },
            ),
            json!({
                "wrapper": w.name,
                "backend": backend.kind(),
                "source": record(&source, checked.source_size),
                "target": record(&target, checked.target_size),
                "copy_mode": copy,
                "encrypt": encrypt.is_some(),
                "clones": clones.iter().map(|c| record(c, c.size().unwrap_or(Bytes(0)))).collect::<Vec<_>>(),
                "install": install.as_ref().map(|p| json!({
                    "bootloader": p.boot.bootloader.as_str(),
                    "initramfs": format!("{:?}", p.initramfs).to_lowercase(),
                })),
                "target_holds": crate::disk::signatures::holds(&target).ok().flatten(),
                "image_to": images.as_ref().map(|p| json!({"device": p.part.display(), "bytes": p.bytes(),
                    "files": p.files.iter().map(|f| f.rel.clone()).collect::<Vec<_>>()})),
            }),
        );
        progress.event(
            "dry-run",
            "dry run: every check passed, nothing was changed",
            json!({}),
        );
        return Ok(());
    }
    // the prompt names the disk as its label says (model, serial) and what is on it now
    let about = if opts.yes {
        String::new()
    } else {
        let (model, serial) = target.disk_model_serial();
        let holds = crate::disk::signatures::holds(&target)
            .ok()
            .flatten()
            .unwrap_or_else(|| "no signature found".into());
        [
            model,
            serial.map(|s| format!("serial {s}")),
            Some(format!("holds: {holds}")),
        ]
        .into_iter()
        .flatten()
        .map(|x| format!("; {x}"))
        .collect()
    };
    confirm(
        &format!(
            "Move {what} from {} ({}) to {} ({}{about}){into}? Everything on {} will be overwritten.{then}",
            source.display(),
            human(checked.source_size),
            target.display(),
            human(checked.target_size),
            target.display()
        ),
        opts.yes,
    )?;
    // Refused here when the backend cannot honour it; undone when the backend is dropped.
    if let Some(r) = opts.rate_limit {
        backend.set_rate_limit(RateLimit::BytesPerSec(r))?;
    }
    if let Some(p) = opts.throttle {
        backend.set_rate_limit(RateLimit::Percent(p))?;
    }

    // --encrypt: the target formatted and opened; the mirror fills the open mapping
    let encrypted = encrypt
        .as_ref()
        .map(|e| e.format_and_open(&target))
        .transpose()?;
    let raw_target = target.clone();
    let target = encrypted.as_ref().map(|o| o.dev.clone()).unwrap_or(target);
    let target_size = match &encrypted {
        Some(o) => o
            .dev
            .size()
            .with_context(|| format!("reading the size of {}", o.name))?,
        None => checked.target_size,
    };
    // From here on the kernel's state changes: a guardian resumes/thaws if we die mid-change.
    // (an encrypted root's filesystem is the one a used-only copy freezes)
    let guardian = Guardian::start(&w, fs.map(|(m, _)| m.mount_point.as_path()))?;
    let signals = Signals::install()?;
    let progress = Progress::new(opts.json);
    let mut journal = Journal::new(
        &w.name,
        backend.kind(),
        record(&source, checked.source_size),
        record(&target, target_size),
    );
    journal.source_live = live_source;
    // An installed system's root: keep the journal inside it too, where the boot hook finds it
    // after a crash (a live medium's root lives in RAM: nothing would survive there).
    if !live_source {
        keep_persisted(&mut journal, &w);
    }
    // a counter that only grows across attempts, and this attempt's id (the boot choice orders
    // the journals by them, not by the clock)
    journal.begin_generation();
    journal.image_to = images.as_ref().map(|p| p.part.display());
    journal.clones = clones
        .iter()
        .map(|c| record(c, c.size().unwrap_or(Bytes(0))))
        .collect();
    journal.install = install.as_ref().map(|p| finish::Record {
        bootloader: p.boot.bootloader.as_str().into(),
        initramfs: format!("{:?}", p.initramfs).to_lowercase(),
        state: "planned".into(),
        ..Default::default()
    });
    let mut run = Run {
        w,
        backend,
        source,
        target,
        mount,
        journal,
        progress,
        signals,
        t_start: Instant::now(),
        to_copy: checked.source_size,
        info: None,
        install,
        clones,
        verify: opts.verify,
        images,
        crypt,
        encrypted,
        wipe_source: opts.wipe_source,
        _guardian: guardian,
    };
    if let Some(o) = &run.encrypted {
        run.progress.event(
            "encrypted",
            &format!(
                "formatted {} as LUKS2 (UUID {}{}) and opened it as {}: the root is mirrored into it",
                raw_target.display(),
                o.uuid,
                if o.tpm2 { ", the TPM enrolled" } else { "" },
                o.name
            ),
            json!({"device": raw_target.display(), "luks_uuid": o.uuid, "mapping": o.name, "tpm2": o.tpm2}),
        );
    }
    run.journal.save()?;
    run.progress.event(
        "start",
        &format!(
            "mirroring {} onto {} through {}",
            run.source.display(),
            run.target.display(),
            run.w.name
        ),
        json!({"wrapper": run.w.name, "backend": run.backend.kind(), "source": run.journal.source, "target": run.journal.target}),
    );
    if run.images.is_none() {
        // an overlay root's upper alone: its lower layers still come from the medium
        if let Ok(Some(o)) = crate::live::overlay::OverlayRoot::of_root()
            .map(|o| o.filter(|o| o.upper.as_ref().is_some_and(|u| u.devnum == run.w.devnum)))
        {
            let lowers: Vec<String> = o
                .lowers
                .iter()
                .map(|l| format!("{} ({})", l.dir.display(), l.source))
                .collect();
            run.progress.event(
                "warning",
                &format!(
                    "only the session's changes move: the live image ({}) is still read from the medium, which must stay in place; `--image-to PART` moves it too",
                    lowers.join(", ")
                ),
                json!({"what": "medium", "error": "the overlay's lower layers stay on the medium"}),
            );
        }
    }

    // the target and the clones blank: no partitions of them left in the kernel, no signature
    // at either end (an old GPT's backup header, an md 1.0 superblock) outliving the copy
    for t in std::iter::once(&run.target).chain(run.clones.iter()) {
        match crate::disk::wipe::blank(t) {
            Ok(done) => run.progress.event(
                "blank",
                &format!("cleared {}: {}", t.display(), done.join("; ")),
                json!({"device": t.display(), "done": done}),
            ),
            Err(e) => {
                run.journal.error = Some(format!("{e:#}"));
                let _ = run.journal.set_step(Step::Aborted);
                return Err(e);
            }
        }
    }
    // mirroring
    let attached = failpoint::hit("migrate::before-attach")
        .and_then(|_| run.backend.attach(&run.source, &run.target, &plan));
    let info = match attached {
        Ok(i) => i,
        Err(e) if switch::unconfirmed(&e) => run.stuck(&e),
        Err(e) => {
            run.journal.error = Some(format!("{e:#}"));
            let _ = run.journal.set_step(Step::Aborted);
            return Err(e);
        }
    };
    run.journal.copy_mode = Some(info.mode.to_string());
    run.journal.region_bytes = Some(*info.region as u64);
    run.journal.copied_bytes = Some(*info.to_copy as u64);
    run.journal.save()?;
    run.to_copy = info.to_copy;
    run.progress.event(
        "copy",
        &format!(
            "copying {} of {} ({} copy{})",
            human(info.to_copy),
            human(checked.source_size),
            info.mode,
            if *info.region > 0 { format!(", {} regions", human(info.region)) } else { String::new() }
        ),
        json!({"copy_mode": info.mode, "region_bytes": *info.region as u64, "copied_bytes": *info.to_copy as u64}),
    );
    run.info = Some(info);
    if let Err(e) = failpoint::hit("migrate::attached") {
        return Err(run.roll_back(Stop::Error(e)));
    }
    let window = run.copy_and_switch()?;
    // ---- switched: the point of no return ----
    if let Some(o) = run.encrypted.as_mut() {
        o.keep();
    }
    run.switched(window)?;
    run.finish()?;
    run.finish_clones()?;
    run.install()
}

/// The filesystem the copy sees and where it lies on the wrapper: the one on the wrapper itself,
/// or the one in the encrypted container over it (behind its header).
pub(super) fn fs_mount<'a>(
    mount: Option<&'a mounts::Mount>,
    crypt: Option<&'a crypt::Crypt>,
) -> Option<(&'a mounts::Mount, FsSpan)> {
    match (mount, crypt) {
        (Some(m), _) => Some((m, FsSpan::default())),
        (None, Some(c)) => Some((c.mount.as_ref()?, c.span?)),
        (None, None) => None,
    }
}

/// `--encrypt`: what it cannot be combined with, then every check of the new container (before
/// anything is written). `--wipe-source` without it is refused.
fn encrypt_preflight(
    opts: &MigrateOptions,
    crypt: Option<&crypt::Crypt>,
    source: &BlockDev,
    target: &BlockDev,
    source_size: Bytes,
) -> Result<Option<encrypt::Encrypt>> {
    let Some(e) = &opts.encrypt else {
        if opts.wipe_source {
            return Err(refuse(
                "--wipe-source overwrites the old disk after a migration with --encrypt, and --encrypt is not given",
                Some("add --encrypt, or leave --wipe-source out"),
            ));
        }
        return Ok(None);
    };
    if let Some(c) = crypt {
        return Err(refuse(
            format!(
                "the root is encrypted already ({} is a dm-crypt mapping over the wrapper)",
                c.name
            ),
            Some("leave --encrypt out: the container moves as it is"),
        ));
    }
    let no = |what: &str| {
        Err(refuse(
            format!("--encrypt cannot be combined with {what} yet"),
            Some(&format!("leave {what} out")),
        ))
    };
    if !opts.clones.is_empty() {
        return no("--clone");
    }
    if opts.image_to.is_some() {
        return no("--image-to");
    }
    encrypt::Encrypt::prepare(e, opts.key_file.as_deref(), source, source_size, target).map(Some)
}
