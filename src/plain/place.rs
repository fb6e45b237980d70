//! Where a plain install goes, decided (and checked) before anything is written: a whole disk laid
//! out anew (GPT: BIOS boot, ESP, root; `--retain-last`, `--data-partition`), or one existing
//! partition made anew, with the ESP and BIOS boot partition its disk already has. An ESP holding a
//! FAT filesystem is used as it is (other systems' loaders stay); a blank one gets a FAT; one
//! holding anything else is refused.

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::{PlainFs, PlainOptions};
use crate::disk::layout::{last_entry, Plan, Role};
use crate::disk::{self, signatures, Table, TableKind};
use crate::error::refuse;
use crate::kernel::blockdev::BlockDev;
use crate::migrate::preflight;
use crate::progress::Progress;
use crate::units::human;

pub enum Place {
    Disk {
        disk: BlockDev,
        plan: Plan,
        existing: Table,
    },
    Part {
        disk: BlockDev,
        root: BlockDev,
        number: u32,
        esp: Option<BlockDev>,
        format_esp: bool,
        /// The ESP's fallback path is another system's: GRUB goes to \EFI\<id>\ + NVRAM.
        esp_foreign: bool,
        bios_boot: bool,
    },
}

/// The partitions once they exist.
pub struct Made {
    pub root: BlockDev,
    pub esp: Option<BlockDev>,
    pub format_esp: bool,
    pub esp_foreign: bool,
    /// `/etc/rootshift/partids` of a disk laid out anew.
    pub partids: Option<String>,
}

/// A whole disk, laid out anew.
pub fn on_disk(disk: BlockDev, opts: &PlainOptions) -> Result<Place> {
    let d = disk.display();
    if disk.dm_name().is_some() || disk.kname.starts_with("md") {
        return Err(refuse(
            format!("{d} is not a plain disk (a device-mapper or md device)"),
            Some("name a whole disk (e.g. /dev/sdb) or a partition of one (see lsblk)"),
        ));
    }
    let existing = disk::read_disk(&disk)?;
    let kept_entry = {
        let mut f = std::fs::File::open(&disk.path).with_context(|| format!("opening {d}"))?;
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
        &opts.layout,
    )
    .map_err(|e| {
        let hint = crate::error::hint(&e).map(str::to_string);
        refuse(format!("{d}: {e}"), hint.as_deref())
    })?;
    let kept_dev = plan
        .retained()
        .and_then(|k| existing.parts.iter().find(|p| p.first_lba == k.first_lba))
        .and_then(|p| disk::part_dev(&disk, p.number));
    preflight::check_unused_except(&disk, kept_dev.as_ref().map(|k| k.devnum))?;
    if kept_dev
        .as_ref()
        .is_some_and(|k| preflight::check_unused_except(k, None).is_err())
    {
        return Err(refuse(
            "the partition to keep is in use; a plain install rewrites the table with BLKRRPART",
            Some("unmount it for the install"),
        ));
    }
    Ok(Place::Disk {
        disk,
        plan,
        existing,
    })
}

/// One partition, made anew; its disk's table is not changed.
pub fn on_partition(part: &BlockDev, opts: &PlainOptions) -> Result<Place> {
    let p = part.display();
    let l = &opts.layout;
    if l.data_partition.is_some() || l.retain_last.is_some() {
        return Err(refuse(
            format!("{p} is a partition: --data-partition and --retain-last lay out a whole disk"),
            Some("leave them out, or name the whole disk"),
        ));
    }
    let dp = disk::locate(part)?;
    let entry = dp.part();
    if entry.is_esp() || entry.is_bios_boot() {
        return Err(refuse(
            format!(
                "{p} is the disk's {} partition, not a place for a root",
                if entry.is_esp() {
                    "EFI System"
                } else {
                    "BIOS boot"
                }
            ),
            Some("name the partition the root goes on"),
        ));
    }
    preflight::check_unused_except(part, None)?;
    let esp = dp
        .table
        .esp()
        .and_then(|e| disk::part_dev(&dp.disk, e.number));
    let (mut format_esp, mut esp_foreign) = (false, false);
    if let Some(e) = &esp {
        preflight::check_unused_except(e, None).map_err(|err| {
            refuse(
                format!(
                    "the disk's EFI System Partition {} is in use: {err:#}",
                    e.display()
                ),
                Some("unmount it for the install"),
            )
        })?;
        match signatures::holds(e)? {
            None => format_esp = true,
            Some(h) if h.contains("vfat") || h.contains("FAT") => {
                esp_foreign = fallback_taken(e)?;
                if esp_foreign && !std::path::Path::new("/sys/firmware/efi/efivars").is_dir() {
                    return Err(refuse(
                        format!(
                            "the fallback loader \\EFI\\BOOT\\BOOTX64.EFI on the ESP {} belongs to another system, and \
                             this session did not boot with UEFI, so no NVRAM entry can be written for the new one",
                            e.display()
                        ),
                        Some("boot the live medium with UEFI, or choose --bootloader grub-bios"),
                    ));
                }
            }
            Some(h) => {
                return Err(refuse(
                    format!("the disk's EFI System Partition {} holds {h}, not a FAT filesystem", e.display()),
                    Some("format it (mkfs.vfat) if nothing on it is needed, or choose --bootloader grub-bios"),
                ))
            }
        }
    }
    let bios_boot = match dp.table.kind {
        TableKind::Gpt => dp.table.bios_boot().is_some(),
        TableKind::Dos => true, // GRUB's core goes into the gap after the MBR
        TableKind::None => false,
    };
    Ok(Place::Part {
        disk: dp.disk.clone(),
        root: part.clone(),
        number: dp.number,
        esp,
        format_esp,
        esp_foreign,
        bios_boot,
    })
}

/// Whether the FAT on `esp` already has a fallback loader (another system's): mounted read-only
/// for a look, then unmounted.
fn fallback_taken(esp: &BlockDev) -> Result<bool> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    let dir = std::path::Path::new("/run/rootshift/esp-probe");
    std::fs::create_dir_all(dir)?;
    mount(
        Some(esp.path.as_path()),
        dir,
        Some("vfat"),
        MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .with_context(|| format!("mounting the ESP {} read-only for a look", esp.display()))?;
    let taken = dir.join("EFI/BOOT/BOOTX64.EFI").exists();
    umount2(dir, MntFlags::empty()).with_context(|| format!("unmounting {}", dir.display()))?;
    Ok(taken)
}

impl Place {
    pub fn disk(&self) -> &BlockDev {
        match self {
            Place::Disk { disk, .. } | Place::Part { disk, .. } => disk,
        }
    }

    pub fn root_bytes(&self) -> u64 {
        match self {
            Place::Disk { plan, .. } => plan.root().sectors() * plan.sector_size,
            Place::Part { root, .. } => root.size().map(|b| *b as u64).unwrap_or(0),
        }
    }

    pub fn has_bios_boot(&self) -> bool {
        match self {
            Place::Disk { plan, .. } => plan.bios_boot().is_some(),
            Place::Part { bios_boot, .. } => *bios_boot,
        }
    }

    pub fn has_esp(&self) -> bool {
        match self {
            Place::Disk { plan, .. } => plan.esp().is_some(),
            Place::Part { esp, .. } => esp.is_some(),
        }
    }

    /// What will be written, for the terminal.
    pub fn describe(&self, fs: PlainFs) -> String {
        match self {
            Place::Disk { disk, plan, .. } => format!(
                "new partition table for {} ({}), a plain {} root on partition {}:\n{plan}",
                disk.display(),
                human(disk.size().unwrap_or_default()),
                fs.name(),
                plan.root().number
            ),
            Place::Part {
                root,
                esp,
                format_esp,
                ..
            } => format!(
                "a plain {} root on {} ({}); the partition table stays as it is; ESP: {}\n",
                fs.name(),
                root.display(),
                human(root.size().unwrap_or_default()),
                match (esp, format_esp) {
                    (Some(e), true) => format!("{} (blank: it gets a FAT filesystem)", e.display()),
                    (Some(e), false) => format!("{} (used as it is)", e.display()),
                    (None, _) => "none (BIOS only)".into(),
                }
            ),
        }
    }

    /// The `layout` event's fields.
    pub fn layout_json(&self) -> Value {
        match self {
            Place::Disk { disk, plan, .. } => json!({
                "disk": disk.display(), "disk_guid": plan.disk_guid.to_string(),
                "partitions": plan.parts.iter().map(|p| json!({
                    "number": p.number, "role": p.role.name(), "name": p.name, "first_lba": p.first_lba,
                    "last_lba": p.last_lba, "bytes": p.sectors() * plan.sector_size,
                    "partuuid": p.guid.to_string()})).collect::<Vec<_>>()}),
            Place::Part {
                disk,
                root,
                number,
                esp,
                ..
            } => json!({
                "disk": disk.display(), "disk_guid": null, "partition": root.display(), "number": number,
                "esp": esp.as_ref().map(|e| e.display()), "partitions": []}),
        }
    }

    pub fn question(&self) -> String {
        match self {
            Place::Disk { disk, plan, .. } => format!(
                "Write this table to {}? Everything on it{} is lost; the root goes on partition {}.",
                disk.display(),
                plan.retained()
                    .map(|k| format!(" except partition {} ({}), which is kept", k.number, k.name))
                    .unwrap_or_default(),
                plan.root().number
            ),
            Place::Part { root, .. } => {
                format!("Make a new filesystem on {}? Everything on it is lost.", root.display())
            }
        }
    }

    /// Write the table (a whole disk) or clear the partition's start; the devices then.
    pub fn prepare(&self, progress: &Progress) -> Result<Made> {
        match self {
            Place::Disk {
                disk,
                plan,
                existing,
            } => {
                let d = disk.display();
                disk::apply::write_table(disk, plan, existing, false)?;
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
                Ok(Made {
                    root: devs[&plan.root().number].clone(),
                    esp: plan.esp().map(|e| devs[&e.number].clone()),
                    format_esp: true,
                    esp_foreign: false,
                    partids: Some(plan.partids()),
                })
            }
            Place::Part {
                root,
                esp,
                format_esp,
                esp_foreign,
                ..
            } => {
                disk::apply::clear_start(root)
                    .with_context(|| format!("clearing the start of {}", root.display()))?;
                Ok(Made {
                    root: root.clone(),
                    esp: esp.clone(),
                    format_esp: *format_esp,
                    esp_foreign: *esp_foreign,
                    partids: None,
                })
            }
        }
    }
}
