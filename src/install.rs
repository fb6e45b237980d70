//! `rootshift install --disk`: lay out a whole disk (GPT: BIOS boot, ESP, /boot, root clones, root,
//! data, or the old table's last partition kept), then move the running root onto it and make it
//! boot — the live equivalent of a KIWI OEM dump, without the reboot.
//!
//! Order: every check (layout, sizes, boot loader, initramfs, nothing on the disk in use) before
//! the first write; the table is planned whole in memory and written in one go; the kernel is told
//! (BLKRRPART, or BLKPG per partition while the kept partition is in use); the new partitions'
//! first MiB is cleared; then the ordinary migrate + finish path runs on the root partition, with
//! the clone partitions as extra mirror legs.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use devicemapper::Bytes;
use serde_json::json;

use crate::backend::CopyMode;
use crate::disk::layout::{last_entry, LayoutOptions, Plan, Role};
use crate::disk::{self, DiskPart, Part, Table, TableKind};
use crate::error::refuse;
use crate::finish::{self, bootloader, initramfs};
use crate::kernel::blockdev::BlockDev;
use crate::lock::Lock;
use crate::migrate::{self, preflight};
use crate::progress::Progress;
use crate::units::human;

pub use crate::disk::layout::PARTIDS;

pub struct InstallOptions {
    pub disk: PathBuf,
    pub layout: LayoutOptions,
    pub dry_run: bool,
    pub yes: bool,
    pub json: bool,
    pub name: Option<String>,
    pub copy: CopyMode,
    pub finish: finish::Options,
    /// `--encrypt`: the root partition becomes a LUKS2 container (with a /boot partition).
    pub encrypt: Option<migrate::EncryptOptions>,
    pub key_file: Option<PathBuf>,
}

/// The planned table as a [`Table`], for the boot loader checks made before it exists.
fn as_table(plan: &Plan) -> Table {
    Table {
        kind: TableKind::Gpt,
        sector_size: plan.sector_size,
        parts: plan
            .parts
            .iter()
            .map(|p| Part {
                number: p.number,
                first_lba: p.first_lba,
                last_lba: p.last_lba,
                type_id: p.type_guid.to_string(),
                guid: Some(p.guid),
                name: p.name.clone(),
            })
            .collect(),
        disk_guid: Some(plan.disk_guid),
    }
}

/// `rootshift install --disk DISK`.
pub fn install(opts: &InstallOptions) -> Result<()> {
    preflight::require_root()?;
    // a dry run writes nothing, not even the lock file (as `migrate --dry-run`)
    let _lock = if opts.dry_run {
        None
    } else {
        Some(Lock::acquire()?)
    };
    let progress = Progress::new(opts.json);
    let (w, backend) = migrate::idle_wrapper(opts.name.as_deref())?;
    // an overlayfs live session (its upper on the wrapper): image partition + persistence partition
    let overlay = crate::live::overlay::OverlayRoot::of_root()?
        .filter(|o| o.upper.as_ref().is_some_and(|u| u.devnum == w.devnum));
    let mut layout = opts.layout.clone();
    if let Some(o) = &overlay {
        if opts.encrypt.is_some() {
            return Err(refuse(
                "--encrypt is not built for a live session's disk (an image partition and a persistence partition)",
                Some("leave out --encrypt"),
            ));
        }
        if matches!(opts.finish.bootloader, bootloader::Choice::SystemdBoot) {
            return Err(refuse(
                "a live session's disk boots with GRUB (a static grub.cfg on the image partition); systemd-boot is \
                 not supported for it yet",
                Some("leave --bootloader out, or use grub-bios / grub-efi"),
            ));
        }
        let need = crate::live::overlay::image_partition_bytes(o, LIVE_KERNEL_ROOM)?;
        match layout.boot_partition {
            Some(b) if b < need => {
                return Err(refuse(
                    format!(
                        "--boot-partition {} is too small for the live image partition: it needs {} (the images, \
                         their kernels and initrds, and {} for kernel updates)",
                        human(Bytes(b.into())),
                        human(Bytes(need.into())),
                        human(Bytes(LIVE_KERNEL_ROOM.into()))
                    ),
                    Some("leave --boot-partition out: rootshift sizes it"),
                ))
            }
            Some(_) => {}
            None => layout.boot_partition = Some(need),
        }
    }
    // an encrypted root: GRUB and the kernels on an unencrypted /boot
    if opts.encrypt.is_some() && layout.boot_partition.is_none() {
        layout.boot_partition = Some(ENCRYPTED_BOOT_BYTES);
    }
    let source_dev = *backend
        .legs()?
        .first()
        .ok_or_else(|| anyhow!("{} maps no device", w.name))?;
    let source = BlockDev::from_devnum(source_dev).context("finding the source device")?;
    let disk = preflight::resolve_target(&opts.disk)?;
    let d = disk.display();
    if disk.is_partition() {
        return Err(refuse(
            format!("{d} is a partition; `rootshift install` lays out a whole disk"),
            Some(&format!("name the disk, or move the root onto this partition with `rootshift migrate {d} --install`")),
        ));
    }
    if disk.devnum == w.devnum || disk.dm_name().is_some() || disk.kname.starts_with("md") {
        return Err(refuse(
            format!("{d} is not a plain disk (a device-mapper or md device)"),
            Some("name a whole disk, e.g. /dev/sdb (see lsblk)"),
        ));
    }
    preflight::check_overlap(&source, &disk)?;

    // The current table: what --retain-last keeps.
    let existing = disk::read_disk(&disk)?;
    let kept_entry = {
        let mut f = File::open(&disk.path).with_context(|| format!("opening {d}"))?;
        last_entry(&mut f)?
    };
    let (disk_bytes, lbs) = disk
        .geometry()
        .with_context(|| format!("reading the size of {d}"))?;
    let plan = Plan::plan(
        *disk_bytes as u64,
        u64::from(lbs),
        Some(&existing),
        kept_entry.as_ref(),
        &layout,
    )
    .map_err(|e| {
        if crate::error::exit_code(&e) == crate::error::exit::REFUSED {
            let hint = crate::error::hint(&e).map(str::to_string);
            refuse(format!("{d}: {e}"), hint.as_deref())
        } else {
            e.context(format!("planning the layout of {d}"))
        }
    })?;
    // The kept partition may stay in use (a mounted data partition); nothing else on the disk.
    let kept_dev = plan
        .retained()
        .and_then(|k| existing.parts.iter().find(|p| p.first_lba == k.first_lba))
        .and_then(|p| disk::part_dev(&disk, p.number));
    preflight::check_unused_except(&disk, kept_dev.as_ref().map(|k| k.devnum))?;
    let kept_in_use = kept_dev
        .as_ref()
        .is_some_and(|k| preflight::check_unused_except(k, None).is_err());
    if let (Some(k), Some(kd), true) = (plan.retained(), &kept_dev, kept_in_use) {
        if kd.partition_number() != Some(k.number) {
            return Err(refuse(
                format!(
                    "the partition to keep, {}, is in use and would become partition {} of the new table: the \
                     kernel cannot renumber a partition in use",
                    kd.display(),
                    k.number
                ),
                Some("unmount it (and stop what uses it) for the install, or keep the same number of partitions before it"),
            ));
        }
    }

    // --encrypt: the LUKS2 header goes before the root in its partition
    let source_size = source.size()?
        + Bytes(if opts.encrypt.is_some() {
            u128::from(migrate::LUKS2_HEADER)
        } else {
            0
        });
    let root = plan.root();
    let root_bytes = Bytes(u128::from(root.sectors()) * u128::from(plan.sector_size));
    if root_bytes < source_size {
        return Err(refuse(
            format!(
                "the planned root partition is smaller than the source: {} < {}",
                human(root_bytes),
                human(source_size)
            ),
            Some("give the root more room (--root-size rest, a smaller --esp-size or fewer --root-clones)"),
        ));
    }
    let live = overlay
        .as_ref()
        .map(|o| {
            crate::finish::live::preflight(
                plan.bios_boot().is_some() && opts.finish.bootloader != bootloader::Choice::GrubEfi,
                plan.esp().is_some() && opts.finish.bootloader != bootloader::Choice::GrubBios,
                o,
            )
        })
        .transpose()?;
    if let Some(l) = &live {
        return install_live(opts, &progress, &disk, &plan, &existing, kept_in_use, l);
    }
    // The boot loader and initramfs checks, against the table about to be written.
    let boot = bootloader::plan_fresh(
        opts.finish.bootloader,
        DiskPart {
            disk: disk.clone(),
            table: as_table(&plan),
            number: root.number,
        },
        &disk,
    )?;
    initramfs::check(opts.finish.initramfs)?;
    crate::finish::cryptboot::check(
        opts.encrypt.is_some(),
        opts.encrypt.as_ref().is_some_and(|e| e.tpm2_pcrs.is_some()),
        opts.finish.crypttab_key.as_deref(),
        opts.finish.initramfs,
        plan.boot().is_some(),
    )?;
    if opts.encrypt.is_some() {
        encrypt_early_checks(opts.key_file.as_deref())?;
    }
    if plan.boot().is_some() && std::path::Path::new("/boot").exists() && boot_is_separate()? {
        return Err(refuse(
            "/boot is a separate mount already; --boot-partition would hide it",
            Some("leave out --boot-partition"),
        ));
    }

    let table_text = format!(
        "new partition table for {d} ({}):\n{plan}",
        human(disk_bytes)
    );
    if !opts.json {
        // the plan is this command's answer (--dry-run): stdout, not the narration on stderr
        print!("{table_text}");
        if !table_text.ends_with('\n') {
            println!();
        }
    }
    progress.event(
        "layout",
        if opts.json { &table_text } else { "" },
        json!({"disk": d, "disk_guid": plan.disk_guid.to_string(), "bootloader": boot.bootloader.as_str(),
               "partitions": plan.parts.iter().map(|p| json!({
                   "number": p.number, "role": p.role.name(), "name": p.name, "first_lba": p.first_lba,
                   "last_lba": p.last_lba, "bytes": p.sectors() * plan.sector_size,
                   "type": p.type_guid.to_string(), "partuuid": p.guid.to_string()})).collect::<Vec<_>>()}),
    );
    if opts.dry_run {
        progress.event("dry-run", "dry run: nothing was written", json!({}));
        return Ok(());
    }
    let kept_note = plan
        .retained()
        .map(|k| format!(" except partition {} ({}), which is kept", k.number, k.name))
        .unwrap_or_default();
    migrate::confirm(
        &format!(
            "Write this table to {d}? Everything on it{kept_note} is lost; then / moves onto partition {} and \
             is made bootable ({}).",
            root.number,
            boot.bootloader.as_str()
        ),
        opts.yes,
    )?;

    // ---- from here the disk changes
    let how = disk::apply::write_table(&disk, &plan, &existing, kept_in_use)?;
    let devs = disk::apply::wait_for_partitions(&disk, &plan)?;
    for p in plan.parts.iter().filter(|p| p.role != Role::Retained) {
        disk::apply::clear_start(&devs[&p.number])
            .with_context(|| format!("clearing the start of partition {}", p.number))?;
    }
    progress.event(
        "partitioned",
        &format!(
            "wrote the table on {d}: {} partitions (the kernel told by {})",
            plan.parts.len(),
            if how == "blkpg" {
                "BLKPG, partition by partition: one is in use"
            } else {
                "BLKRRPART"
            }
        ),
        json!({"disk": d, "partitions": plan.parts.len(), "kernel": how}),
    );
    let target = &devs[&root.number];
    let clones: Vec<PathBuf> = plan
        .clones()
        .iter()
        .map(|c| devs[&c.number].path.clone())
        .collect();
    let mut finish_opts = opts.finish.clone();
    finish_opts.boot_partition = plan.boot().map(|b| devs[&b.number].path.clone());
    migrate::migrate_locked(&migrate::MigrateOptions {
        dry_run: false,
        target: target.path.clone(),
        name: opts.name.clone(),
        yes: true,
        force: true, // the partitions were just created (and their first MiB cleared)
        json: opts.json,
        copy: opts.copy,
        region_size: None,
        rate_limit: None,
        throttle: None,
        resume: false,
        verify: false,
        clones,
        image_to: None,
        install: Some(true),
        finish: finish_opts,
        key_file: opts.key_file.clone(),
        encrypt: opts.encrypt.clone(),
        wipe_source: false,
    })?;
    let ids = plan.partids();
    finish::ids::write_atomic(Path::new(PARTIDS), ids.as_bytes(), 0o644)?;
    progress.event(
        "partids",
        &format!("wrote {PARTIDS}: {}", ids.trim().replace('\n', " ")),
        json!({"path": PARTIDS, "partids": ids}),
    );
    Ok(())
}

/// What `--encrypt` needs that can be checked before the table is written (the rest, with the
/// key in hand, is checked by `migrate` before the root partition is formatted).
fn encrypt_early_checks(key_file: Option<&std::path::Path>) -> Result<()> {
    if crate::tools::find("cryptsetup").is_none() {
        return Err(refuse(
            "--encrypt formats the root partition as LUKS2, and cryptsetup is missing",
            Some("install cryptsetup (Debian: cryptsetup-bin, and cryptsetup-initramfs for the boot)"),
        ));
    }
    if let Some(k) = key_file {
        if !std::fs::metadata(k).is_ok_and(|m| m.is_file()) {
            return Err(refuse(
                format!("the key file {} is not a readable file", k.display()),
                Some("name the file holding the passphrase or key"),
            ));
        }
    }
    Ok(())
}

/// The /boot partition `install --encrypt` lays out unless `--boot-partition` says otherwise:
/// room for GRUB and three kernels with their initrds.
const ENCRYPTED_BOOT_BYTES: u64 = 512 << 20;

/// Room on a live session's image partition for kernel updates (each kernel with its initrd).
const LIVE_KERNEL_ROOM: u64 = 384 << 20;

/// `install --disk` for an overlayfs live session: the planned table (BIOS boot, ESP, the image
/// partition in the `/boot` slot, the persistence partition in the root slot), then `migrate` of
/// the upper onto the persistence partition with the image files onto the image partition, then
/// the live-boot entry (`finish::live`).
fn install_live(
    opts: &InstallOptions,
    progress: &Progress,
    disk: &BlockDev,
    plan: &Plan,
    existing: &Table,
    kept_in_use: bool,
    live: &finish::live::LivePlan,
) -> Result<()> {
    let d = disk.display();
    let image = plan
        .boot()
        .ok_or_else(|| anyhow!("the plan has no image partition"))?;
    let root = plan.root();
    let table_text = format!(
        "new partition table for {d} (partition {}: the live image files, partition {}: the session's \
         persistence):\n{plan}",
        image.number, root.number
    );
    if !opts.json {
        print!("{table_text}");
        if !table_text.ends_with('\n') {
            println!();
        }
    }
    let loaders = [(live.bios, "grub-bios"), (live.efi, "grub-efi")]
        .iter()
        .filter(|x| x.0)
        .map(|x| x.1)
        .collect::<Vec<_>>()
        .join("+");
    progress.event(
        "layout",
        if opts.json { &table_text } else { "" },
        json!({"disk": d, "disk_guid": plan.disk_guid.to_string(), "bootloader": loaders,
               "partitions": plan.parts.iter().map(|p| json!({
                   "number": p.number, "role": p.role.name(), "name": p.name, "first_lba": p.first_lba,
                   "last_lba": p.last_lba, "bytes": p.sectors() * plan.sector_size,
                   "type": p.type_guid.to_string(), "partuuid": p.guid.to_string()})).collect::<Vec<_>>()}),
    );
    if opts.dry_run {
        progress.event("dry-run", "dry run: nothing was written", json!({}));
        return Ok(());
    }
    migrate::confirm(
        &format!(
            "Write this table to {d}? Everything on it is lost; then the live session moves onto it (its image to \
             partition {}, its changes to partition {}) and the disk is made to boot it ({loaders})."
            ,
            image.number, root.number
        ),
        opts.yes,
    )?;
    disk::apply::write_table(disk, plan, existing, kept_in_use)?;
    let devs = disk::apply::wait_for_partitions(disk, plan)?;
    for p in plan.parts.iter().filter(|p| p.role != Role::Retained) {
        disk::apply::clear_start(&devs[&p.number])
            .with_context(|| format!("clearing the start of partition {}", p.number))?;
    }
    progress.event(
        "partitioned",
        &format!("wrote the table on {d}: {} partitions", plan.parts.len()),
        json!({"disk": d, "partitions": plan.parts.len(), "kernel": "blkrrpart"}),
    );
    let target = &devs[&root.number];
    let image_part = &devs[&image.number];
    migrate::migrate_locked(&migrate::MigrateOptions {
        dry_run: false,
        target: target.path.clone(),
        name: opts.name.clone(),
        yes: true,
        force: true,
        json: opts.json,
        copy: opts.copy,
        region_size: None,
        rate_limit: None,
        throttle: None,
        resume: false,
        verify: false,
        clones: vec![],
        image_to: Some(image_part.path.clone()),
        install: Some(false),
        finish: opts.finish.clone(),
        key_file: None,
        encrypt: None,
        wipe_source: false,
    })?;
    let esp = plan.esp().map(|e| &devs[&e.number]);
    let conf = finish::live::install_entry(
        live,
        disk,
        image_part,
        Path::new(crate::live::overlay::IMAGE_DIR),
        target,
        esp,
    )?;
    progress.event(
        "install",
        &format!(
            "boot entry: GRUB ({loaders}), kernel command line: {}",
            conf.cmdline
        ),
        json!({"step": "live-boot-entry", "detail": conf.cmdline}),
    );
    let ids = plan.partids();
    finish::ids::write_atomic(Path::new(PARTIDS), ids.as_bytes(), 0o644)?;
    progress.event(
        "installed",
        &format!(
            "{d} boots this live session on its own: image partition {} (UUID {}), persistence partition {}",
            image_part.display(),
            conf.image_uuid,
            target.display()
        ),
        json!({"image_uuid": conf.image_uuid, "cmdline": conf.cmdline, "bootloader": loaders}),
    );
    Ok(())
}

fn boot_is_separate() -> Result<bool> {
    Ok(crate::kernel::mounts::mounts()?
        .iter()
        .any(|m| m.mount_point == Path::new("/boot")))
}
