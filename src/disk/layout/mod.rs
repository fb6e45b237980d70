//! The partition layout `rootshift install` writes on a target disk: BIOS boot, ESP, /boot, the
//! root's clones, the root, a data partition, and optionally the old table's last partition kept
//! as it is (KIWI's `rd.kiwi.install.retain_last`).
//!
//! [`Plan::plan`] is pure and makes every refusal; [`Plan::write`] then writes the protective MBR
//! and both copies of the GPT through the device handle it is given.

use std::fmt;
use std::str::FromStr;

use anyhow::{ensure, Result};
use gptman::GPTPartitionEntry;

use super::{types, Guid, Table};
use crate::error::refuse;
use crate::units::MIB;

mod retain;
mod write;

use retain::{exact_hint, kept_entry};
pub use retain::{last_entry, Retain};

/// Partitions start on (and their sizes are multiples of) this many bytes.
pub const ALIGN_BYTES: u64 = MIB;
/// Size of the BIOS boot partition.
pub const BIOS_BOOT_SIZE: u64 = MIB;
/// The smallest root rootshift plans.
pub const MIN_ROOT: u64 = 64 * MIB;
/// dm-mirror takes at most 9 legs: the source, the target root and at most 7 clones.
pub const MAX_CLONES: u32 = 7;
/// How to make a layout smaller.
const SHRINK_HINT: &str =
    "choose a smaller --root-size (or `rest`), a smaller --esp-size or fewer --root-clones";
/// The GPT partition entry array rootshift writes: 128 entries of 128 bytes.
const ENTRY_ARRAY_BYTES: u64 = 128 * 128;

/// Size of the root partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootSize {
    /// All the space the other partitions leave.
    Rest,
    /// A fixed size in bytes (rounded up to the 1 MiB alignment).
    Bytes(u64),
}

impl FromStr for RootSize {
    type Err = String;
    /// `rest`, or a size as [`crate::units::parse_size`] reads it (`20G`).
    fn from_str(s: &str) -> Result<RootSize, String> {
        if s.trim().eq_ignore_ascii_case("rest") {
            Ok(RootSize::Rest)
        } else {
            crate::units::parse_size(s).map(RootSize::Bytes)
        }
    }
}

/// Where the partition ids are written on the installed system (KIWI's `/config.partids` format).
pub const PARTIDS: &str = "/etc/rootshift/partids";

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutOptions {
    pub root_size: RootSize,
    /// ESP size in bytes; 0 = no ESP.
    pub esp_size: u64,
    /// A 1 MiB BIOS boot partition first (GRUB for BIOS on GPT).
    pub bios_boot: bool,
    /// A separate /boot (XBOOTLDR) of this many bytes.
    pub boot_partition: Option<u64>,
    /// Partitions the size of the root, before it, for the root's clones.
    pub root_clones: u32,
    /// A data partition of this many bytes after the root.
    pub data_partition: Option<u64>,
    /// Keep the existing table's last partition as the new table's last entry.
    pub retain_last: Option<Retain>,
}

/// What a planned partition is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    BiosBoot,
    Esp,
    Boot,
    /// The n-th clone of the root (1-based).
    RootClone(u32),
    Root,
    Data,
    /// The old table's last partition, kept as it was.
    Retained,
}

impl Role {
    /// The short name rootshift gives the partition (its GPT name). A retained partition keeps
    /// its own name (see [`PlannedPart::name`]); here it is `retained`.
    pub fn name(&self) -> String {
        match self {
            Role::BiosBoot => "bios".into(),
            Role::Esp => "esp".into(),
            Role::Boot => "boot".into(),
            Role::RootClone(n) => format!("root-clone{n}"),
            Role::Root => "root".into(),
            Role::Data => "data".into(),
            Role::Retained => "retained".into(),
        }
    }
}

/// One entry of the planned table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPart {
    /// Entry number (1-based, table order).
    pub number: u32,
    pub role: Role,
    /// First and last sector, inclusive.
    pub first_lba: u64,
    pub last_lba: u64,
    pub type_guid: Guid,
    pub guid: Guid,
    /// The GPT name: [`Role::name`], or the retained entry's own name.
    pub name: String,
    pub attributes: u64,
}

impl PlannedPart {
    pub fn sectors(&self) -> u64 {
        self.last_lba + 1 - self.first_lba
    }
}

/// A new partition table for a disk, ready to be written.
#[derive(Debug, Clone)]
pub struct Plan {
    pub sector_size: u64,
    pub disk_guid: Guid,
    pub parts: Vec<PlannedPart>,
    pub total_sectors: u64,
    /// The retained entry exactly as read, written back verbatim (name padding included).
    kept: Option<GPTPartitionEntry>,
}

/// Sector arithmetic of one disk.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    sector_size: u64,
    total: u64,
    /// Alignment in sectors.
    align: u64,
    /// Where the first partition starts: the first aligned sector after the entry array.
    first_start: u64,
    last_usable: u64,
}

impl Geometry {
    fn new(disk_bytes: u64, sector_size: u64) -> Result<Geometry> {
        ensure!(
            sector_size.is_power_of_two() && (512..=ALIGN_BYTES).contains(&sector_size),
            "unsupported logical sector size {sector_size}"
        );
        let total = disk_bytes / sector_size;
        let array = ENTRY_ARRAY_BYTES.div_ceil(sector_size);
        let align = ALIGN_BYTES / sector_size;
        // protective MBR, header and entries at the start; entries and header again at the end
        let first_start = (2 + array).div_ceil(align) * align;
        if total < first_start + array + 2 {
            return Err(refuse(
                format!(
                    "the disk ({}) is too small for a partition table",
                    size(disk_bytes)
                ),
                Some("use a bigger disk"),
            ));
        }
        Ok(Geometry {
            sector_size,
            total,
            align,
            first_start,
            last_usable: total - array - 2,
        })
    }

    /// Whole aligned sectors for `bytes` (rounded up).
    fn sectors(&self, bytes: u64) -> u64 {
        bytes.div_ceil(ALIGN_BYTES) * self.align
    }

    /// Bytes in `sectors` (wide: sizes asked for may exceed any disk).
    fn bytes(&self, sectors: u64) -> u128 {
        u128::from(sectors) * u128::from(self.sector_size)
    }

    /// `sector N (1.5 GiB)`.
    fn at(&self, lba: u64) -> String {
        format!("sector {lba} ({})", size(self.bytes(lba)))
    }
}

/// A human size: `512.0 MiB`.
fn size(bytes: impl Into<u128>) -> String {
    crate::units::human_bytes(bytes)
}

fn type_guid(text: &str) -> Guid {
    text.parse().expect("partition type constants are GUIDs")
}

/// Appends partitions one after the other.
struct Builder {
    parts: Vec<PlannedPart>,
    next: u64,
}

impl Builder {
    fn add(&mut self, role: Role, sectors: u64, type_text: &str) {
        self.parts.push(PlannedPart {
            number: self.parts.len() as u32 + 1,
            role,
            first_lba: self.next,
            last_lba: self.next + sectors - 1,
            type_guid: type_guid(type_text),
            guid: Guid::random(),
            name: role.name(),
            attributes: 0,
        });
        self.next += sectors;
    }
}

impl Plan {
    /// Plan a fresh table for a disk of `disk_bytes` with logical sectors of `sector_size`.
    ///
    /// `existing` is the disk's current table and `existing_last_entry` the GPT entry of its
    /// last partition (see [`last_entry`]); both are only needed with `retain_last`.
    /// Every impossible layout is refused here, before anything is written.
    #[allow(clippy::self_named_constructors)] // `Plan::plan(..)` reads as intended
    pub fn plan(
        disk_bytes: u64,
        sector_size: u64,
        existing: Option<&Table>,
        existing_last_entry: Option<&GPTPartitionEntry>,
        opts: &LayoutOptions,
    ) -> Result<Plan> {
        let g = Geometry::new(disk_bytes, sector_size)?;
        if opts.root_clones > MAX_CLONES {
            return Err(refuse(
                format!(
                    "{} root clones asked, at most {MAX_CLONES} are possible: dm-mirror takes at \
                     most 9 legs (the source, the target root and its clones)",
                    opts.root_clones
                ),
                Some("ask for fewer --root-clones"),
            ));
        }
        if opts.retain_last.is_some() && opts.data_partition.is_some() {
            return Err(refuse(
                "--retain-last and --data-partition both want the last place on the disk",
                Some("drop one of them"),
            ));
        }
        if let RootSize::Bytes(b) = opts.root_size {
            if b < MIN_ROOT {
                return Err(refuse(
                    format!(
                        "a root of {} is too small: at least {} is needed",
                        size(b),
                        size(MIN_ROOT)
                    ),
                    Some("give a bigger --root-size, or `rest`"),
                ));
            }
        }
        let kept = match opts.retain_last {
            Some(_) => Some(kept_entry(&g, existing, existing_last_entry)?),
            None => None,
        };

        let mut b = Builder {
            parts: vec![],
            next: g.first_start,
        };
        if opts.bios_boot {
            b.add(Role::BiosBoot, g.sectors(BIOS_BOOT_SIZE), types::BIOS_BOOT);
        }
        if opts.esp_size > 0 {
            b.add(Role::Esp, g.sectors(opts.esp_size), types::ESP);
        }
        if let Some(bytes) = opts.boot_partition.filter(|&s| s > 0) {
            b.add(Role::Boot, g.sectors(bytes), types::XBOOTLDR);
        }

        let fixed_end = b.next;
        let slots = u64::from(opts.root_clones) + 1;
        let data = opts.data_partition.map_or(0, |s| g.sectors(s));
        let limit = kept.as_ref().map_or(g.last_usable + 1, |k| k.starting_lba);
        let min_root = g.sectors(MIN_ROOT);
        let root = match opts.root_size {
            RootSize::Bytes(bytes) => g.sectors(bytes),
            RootSize::Rest => {
                let room = limit.saturating_sub(fixed_end).saturating_sub(data);
                (room / slots / g.align * g.align).max(min_root)
            }
        };
        // where the partition after the root (and its clones) starts: the data partition, the
        // kept one, or nothing
        let roots_end = fixed_end + slots * root;
        let new_end = roots_end + data;

        match (opts.retain_last, kept.as_ref()) {
            (Some(Retain::Exact), Some(k))
                if opts.root_size != RootSize::Rest && roots_end != k.starting_lba =>
            {
                return Err(refuse(
                    format!(
                        "--retain-last exact: the new layout would place the last partition at {}, \
                         but the partition to keep starts at {}",
                        g.at(roots_end),
                        g.at(k.starting_lba)
                    ),
                    Some(exact_hint(&g, fixed_end, slots, k.starting_lba).as_str()),
                ));
            }
            (Some(mode), Some(k)) if new_end > k.starting_lba => {
                return Err(refuse(
                    format!(
                        "--retain-last {}: the new partitions would end at {}, past the start of \
                         the partition to keep at {} (an overlap of {})",
                        mode.arg(),
                        g.at(new_end - 1),
                        g.at(k.starting_lba),
                        size(g.bytes(new_end - k.starting_lba))
                    ),
                    Some(SHRINK_HINT),
                ));
            }
            _ if new_end > limit => {
                // the GPT's backup copy takes the sectors after the last usable one
                let needed = g.bytes(new_end + g.total - 1 - g.last_usable);
                return Err(refuse(
                    format!(
                        "the disk ({}) is too small for this layout, which needs {}",
                        size(disk_bytes),
                        size(needed)
                    ),
                    Some(format!("{SHRINK_HINT}, or use a bigger disk").as_str()),
                ));
            }
            _ => {}
        }

        for n in 1..=opts.root_clones {
            b.add(Role::RootClone(n), root, types::LINUX_FS);
        }
        b.add(Role::Root, root, types::LINUX_ROOT_X86_64);
        if data > 0 {
            b.add(Role::Data, data, types::LINUX_FS);
        }
        if let Some(k) = &kept {
            b.parts.push(PlannedPart {
                number: b.parts.len() as u32 + 1,
                role: Role::Retained,
                first_lba: k.starting_lba,
                last_lba: k.ending_lba,
                type_guid: Guid(k.partition_type_guid),
                guid: Guid(k.unique_partition_guid),
                name: k.partition_name.as_str().to_string(),
                attributes: k.attribute_bits,
            });
        }
        Ok(Plan {
            sector_size,
            disk_guid: Guid::random(),
            parts: b.parts,
            total_sectors: g.total,
            kept,
        })
    }

    fn find(&self, role: Role) -> Option<&PlannedPart> {
        self.parts.iter().find(|p| p.role == role)
    }

    pub fn root(&self) -> &PlannedPart {
        self.find(Role::Root).expect("a plan always has a root")
    }
    /// The root's clones, in order.
    pub fn clones(&self) -> Vec<&PlannedPart> {
        self.parts
            .iter()
            .filter(|p| matches!(p.role, Role::RootClone(_)))
            .collect()
    }
    pub fn esp(&self) -> Option<&PlannedPart> {
        self.find(Role::Esp)
    }
    pub fn bios_boot(&self) -> Option<&PlannedPart> {
        self.find(Role::BiosBoot)
    }
    pub fn boot(&self) -> Option<&PlannedPart> {
        self.find(Role::Boot)
    }
    pub fn data(&self) -> Option<&PlannedPart> {
        self.find(Role::Data)
    }
    pub fn retained(&self) -> Option<&PlannedPart> {
        self.find(Role::Retained)
    }

    /// KIWI-style partition ids (`kiwi_RootPart="4"`), one line per partition, in table order.
    pub fn partids(&self) -> String {
        self.parts
            .iter()
            .map(|p| {
                let key = match p.role {
                    Role::BiosBoot => "kiwi_BiosGrub".to_string(),
                    Role::Esp => "kiwi_EfiPart".into(),
                    Role::Boot => "kiwi_BootPart".into(),
                    Role::RootClone(n) => format!("kiwi_rootPartClone{n}"),
                    Role::Root => "kiwi_RootPart".into(),
                    Role::Data | Role::Retained => "kiwi_DataPart".into(),
                };
                format!("{key}=\"{}\"\n", p.number)
            })
            .collect()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let type_text = |p: &PlannedPart| {
            let guid = p.type_guid.to_string();
            match types::name(&guid) {
                "other" => guid,
                known => known.to_string(),
            }
        };
        let tw = self
            .parts
            .iter()
            .map(|p| type_text(p).len())
            .max()
            .unwrap_or(0)
            .max("type".len());
        let line = |f: &mut fmt::Formatter<'_>, cols: [&str; 6]| {
            let [n, start, end, sz, ty, name] = cols;
            let text = format!("{n:>3}  {start:>13}  {end:>13}  {sz:>10}  {ty:<tw$}  {name}");
            writeln!(f, "{}", text.trim_end())
        };
        line(
            f,
            ["#", "start(sector)", "end(sector)", "size", "type", "name"],
        )?;
        for p in &self.parts {
            let name = if p.role == Role::Retained {
                format!("{} (kept)", p.name)
            } else {
                p.name.clone()
            };
            line(
                f,
                [
                    &p.number.to_string(),
                    &p.first_lba.to_string(),
                    &p.last_lba.to_string(),
                    &size(p.sectors() * self.sector_size),
                    &type_text(p),
                    &name,
                ],
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{read_table, Part, TableKind};
    use crate::error::exit_code;
    use std::io::Cursor;

    use crate::units::GIB;

    pub(super) fn opts() -> LayoutOptions {
        LayoutOptions {
            root_size: RootSize::Rest,
            esp_size: 256 * MIB,
            bios_boot: true,
            boot_partition: None,
            root_clones: 0,
            data_partition: None,
            retain_last: None,
        }
    }

    pub(super) fn lbas(p: &PlannedPart) -> (u64, u64) {
        (p.first_lba, p.last_lba)
    }

    /// An existing GPT (512-byte sectors) whose last partition spans `first..=last`.
    fn existing(first: u64, last: u64) -> (Table, GPTPartitionEntry) {
        let entry = GPTPartitionEntry {
            partition_type_guid: type_guid(types::LINUX_FS).0,
            unique_partition_guid: Guid::random().0,
            starting_lba: first,
            ending_lba: last,
            attribute_bits: 1 << 60,
            partition_name: "home".into(),
        };
        let table = Table {
            kind: TableKind::Gpt,
            sector_size: 512,
            parts: vec![
                Part {
                    number: 1,
                    first_lba: 2048,
                    last_lba: 4095,
                    type_id: types::BIOS_BOOT.into(),
                    guid: Some(Guid::random()),
                    name: "bios".into(),
                },
                Part {
                    number: 2,
                    first_lba: first,
                    last_lba: last,
                    type_id: types::LINUX_FS.into(),
                    guid: Some(Guid(entry.unique_partition_guid)),
                    name: "home".into(),
                },
            ],
            disk_guid: Some(Guid::random()),
        };
        (table, entry)
    }

    fn plan_retain(disk: u64, kept: (u64, u64), o: &LayoutOptions) -> Result<Plan> {
        let (t, e) = existing(kept.0, kept.1);
        Plan::plan(disk, 512, Some(&t), Some(&e), o)
    }

    fn assert_refused(r: Result<Plan>) -> String {
        let e = r.expect_err("the layout should be refused");
        assert_eq!(exit_code(&e), 2, "{e:#}");
        e.to_string()
    }

    #[test]
    fn root_size_parses() {
        assert_eq!("rest".parse(), Ok(RootSize::Rest));
        assert_eq!("20G".parse(), Ok(RootSize::Bytes(20 * GIB)));
        assert!("twenty".parse::<RootSize>().is_err());
    }

    #[test]
    fn default_layout_on_8gib() {
        let p = Plan::plan(8 * GIB, 512, None, None, &opts()).unwrap();
        assert_eq!(p.total_sectors, 16_777_216);
        assert_eq!(p.parts.len(), 3);
        assert_eq!(lbas(p.bios_boot().unwrap()), (2048, 4095));
        assert_eq!(lbas(p.esp().unwrap()), (4096, 528_383));
        // last usable LBA 16777182; the root ends on the last whole MiB before it
        assert_eq!(lbas(p.root()), (528_384, 16_775_167));
        assert_eq!(p.root().number, 3);
        assert_eq!(p.root().type_guid.to_string(), types::LINUX_ROOT_X86_64);
        assert_eq!(p.esp().unwrap().type_guid.to_string(), types::ESP);
        assert_eq!(p.root().name, "root");
        assert!(p.clones().is_empty() && p.boot().is_none() && p.retained().is_none());
        assert_ne!(p.root().guid, p.esp().unwrap().guid);
    }

    #[test]
    fn clones_equal_the_root_and_precede_it() {
        let o = LayoutOptions {
            root_clones: 2,
            boot_partition: Some(512 * MIB),
            ..opts()
        };
        let p = Plan::plan(8 * GIB, 512, None, None, &o).unwrap();
        assert_eq!(lbas(p.boot().unwrap()), (528_384, 1_576_959));
        assert_eq!(p.boot().unwrap().type_guid.to_string(), types::XBOOTLDR);
        // (16777183 - 1576960) / 3 = 5066741, rounded down to 2048 sectors: 5064704
        let c = p.clones();
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].number, c[0].name.as_str()), (4, "root-clone1"));
        assert_eq!((c[1].number, c[1].name.as_str()), (5, "root-clone2"));
        assert_eq!(lbas(c[0]), (1_576_960, 6_641_663));
        assert_eq!(lbas(c[1]), (6_641_664, 11_706_367));
        assert_eq!(lbas(p.root()), (11_706_368, 16_771_071));
        assert_eq!(p.root().number, 6);
        assert!(c.iter().all(|c| c.sectors() == p.root().sectors()));
        assert_eq!(c[0].type_guid.to_string(), types::LINUX_FS);
    }

    #[test]
    fn partids_in_table_order() {
        let o = LayoutOptions {
            root_clones: 1,
            ..opts()
        };
        let p = Plan::plan(8 * GIB, 512, None, None, &o).unwrap();
        assert_eq!(
            p.partids(),
            "kiwi_BiosGrub=\"1\"\nkiwi_EfiPart=\"2\"\nkiwi_rootPartClone1=\"3\"\nkiwi_RootPart=\"4\"\n"
        );
        let o = LayoutOptions {
            bios_boot: false,
            boot_partition: Some(GIB),
            data_partition: Some(GIB),
            ..opts()
        };
        let p = Plan::plan(8 * GIB, 512, None, None, &o).unwrap();
        assert_eq!(
            p.partids(),
            "kiwi_EfiPart=\"1\"\nkiwi_BootPart=\"2\"\nkiwi_RootPart=\"3\"\nkiwi_DataPart=\"4\"\n"
        );
    }

    #[test]
    fn fixed_root_size_and_data_last() {
        let o = LayoutOptions {
            root_size: RootSize::Bytes(2 * GIB),
            data_partition: Some(GIB),
            ..opts()
        };
        let p = Plan::plan(8 * GIB, 512, None, None, &o).unwrap();
        assert_eq!(lbas(p.root()), (528_384, 4_722_687));
        let d = p.data().unwrap();
        assert_eq!((d.number, d.name.as_str()), (4, "data"));
        assert_eq!(lbas(d), (4_722_688, 6_819_839));
        // a size that is not a whole MiB is rounded up
        let o = LayoutOptions {
            root_size: RootSize::Bytes(100 * MIB + 1),
            ..opts()
        };
        let p = Plan::plan(8 * GIB, 512, None, None, &o).unwrap();
        assert_eq!(p.root().sectors(), 101 * 2048);
    }

    #[test]
    fn retain_exact_accepts_a_matching_start() {
        let o = LayoutOptions {
            root_size: RootSize::Bytes(2 * GIB),
            retain_last: Some(Retain::Exact),
            ..opts()
        };
        let p = plan_retain(8 * GIB, (4_722_688, 16_777_182), &o).unwrap();
        assert_eq!(lbas(p.root()), (528_384, 4_722_687));
        let k = p.retained().unwrap();
        assert_eq!((k.number, k.name.as_str()), (4, "home"));
        assert_eq!(lbas(k), (4_722_688, 16_777_182));
        assert_eq!(k.attributes, 1 << 60);
        // with `rest` the root fills the space up to the kept partition
        let o = LayoutOptions {
            root_size: RootSize::Rest,
            ..o
        };
        let p = plan_retain(8 * GIB, (6_293_504, 16_777_182), &o).unwrap();
        assert_eq!(lbas(p.root()), (528_384, 6_293_503));
    }

    #[test]
    fn retain_exact_refuses_a_mismatch_naming_both_addresses() {
        let o = LayoutOptions {
            root_size: RootSize::Bytes(3 * GIB),
            bios_boot: false,
            esp_size: 0,
            retain_last: Some(Retain::Exact),
            ..opts()
        };
        // the layout ends at 1 MiB + 3 GiB, the kept partition starts at 2 GiB + 1 MiB
        let msg = assert_refused(plan_retain(8 * GIB, (4_196_352, 16_777_182), &o));
        assert!(msg.contains("sector 6293504 (3.0 GiB)"), "{msg}");
        assert!(msg.contains("sector 4196352 (2.0 GiB)"), "{msg}");
        // a gap is refused too in exact mode
        let msg = assert_refused(plan_retain(8 * GIB, (8_388_608, 16_777_182), &o));
        assert!(msg.contains("6293504") && msg.contains("8388608"), "{msg}");
        // the hint names the root size that would fit exactly
        let e = plan_retain(8 * GIB, (8_388_608, 16_777_182), &o).unwrap_err();
        assert!(crate::error::hint(&e)
            .unwrap()
            .contains("--root-size 4095M"));
        // with `rest`, the fixed partitions must fit before it
        let o = LayoutOptions {
            root_size: RootSize::Rest,
            esp_size: 256 * MIB,
            ..o
        };
        let msg = assert_refused(plan_retain(8 * GIB, (100_000, 16_777_182), &o));
        assert!(msg.contains("100000"), "{msg}");
    }

    #[test]
    fn retain_fit_accepts_a_gap_and_refuses_an_overlap() {
        let o = LayoutOptions {
            root_size: RootSize::Bytes(2 * GIB),
            retain_last: Some(Retain::Fit),
            ..opts()
        };
        let p = plan_retain(8 * GIB, (6_291_456, 16_777_182), &o).unwrap();
        assert_eq!(lbas(p.root()), (528_384, 4_722_687));
        assert_eq!(lbas(p.retained().unwrap()), (6_291_456, 16_777_182));
        let rest = LayoutOptions {
            root_size: RootSize::Rest,
            ..o.clone()
        };
        let p = plan_retain(8 * GIB, (6_291_456, 16_777_182), &rest).unwrap();
        assert_eq!(lbas(p.root()), (528_384, 6_291_455));
        let big = LayoutOptions {
            root_size: RootSize::Bytes(3 * GIB),
            ..o
        };
        let msg = assert_refused(plan_retain(8 * GIB, (6_291_456, 16_777_182), &big));
        assert!(
            msg.contains("sector 6819839") && msg.contains("sector 6291456"),
            "{msg}"
        );
        assert!(msg.contains("overlap of 258.0 MiB"), "{msg}");
    }

    #[test]
    fn retain_needs_a_gpt_and_excludes_data() {
        let o = LayoutOptions {
            retain_last: Some(Retain::Fit),
            ..opts()
        };
        let msg = assert_refused(Plan::plan(8 * GIB, 512, None, None, &o));
        assert!(msg.contains("has no partition table"), "{msg}");
        let empty = Table {
            kind: TableKind::Gpt,
            sector_size: 512,
            parts: vec![],
            disk_guid: None,
        };
        let msg = assert_refused(Plan::plan(8 * GIB, 512, Some(&empty), None, &o));
        assert!(msg.contains("an empty GPT"), "{msg}");
        let dos = Table {
            kind: TableKind::Dos,
            ..existing(4_722_688, 16_777_182).0
        };
        let msg = assert_refused(Plan::plan(8 * GIB, 512, Some(&dos), None, &o));
        assert!(msg.contains("MS-DOS"), "{msg}");
        let o = LayoutOptions {
            data_partition: Some(GIB),
            ..o
        };
        assert_refused(plan_retain(8 * GIB, (6_291_456, 16_777_182), &o));
    }

    #[test]
    fn refuses_small_disks_roots_and_too_many_clones() {
        let msg = assert_refused(Plan::plan(200 * MIB, 512, None, None, &opts()));
        assert!(
            msg.contains("200.0 MiB") && msg.contains("322.0 MiB"),
            "{msg}"
        );
        let o = LayoutOptions {
            root_size: RootSize::Bytes(10 * GIB),
            ..opts()
        };
        let msg = assert_refused(Plan::plan(8 * GIB, 512, None, None, &o));
        assert!(msg.contains("8.0 GiB") && msg.contains("10.3 GiB"), "{msg}");
        let o = LayoutOptions {
            root_size: RootSize::Bytes(u64::MAX),
            root_clones: 7,
            ..opts()
        };
        assert_refused(Plan::plan(8 * GIB, 512, None, None, &o));
        let o = LayoutOptions {
            root_size: RootSize::Bytes(63 * MIB),
            ..opts()
        };
        assert_refused(Plan::plan(8 * GIB, 512, None, None, &o));
        let o = LayoutOptions {
            root_clones: 8,
            ..opts()
        };
        let msg = assert_refused(Plan::plan(64 * GIB, 512, None, None, &o));
        assert!(msg.contains("9 legs"), "{msg}");
        let o = LayoutOptions {
            root_clones: 7,
            ..opts()
        };
        assert_eq!(
            Plan::plan(64 * GIB, 512, None, None, &o)
                .unwrap()
                .clones()
                .len(),
            7
        );
        assert_refused(Plan::plan(4096, 512, None, None, &opts()));
    }

    #[test]
    fn aligns_4096_byte_sectors() {
        let p = Plan::plan(8 * GIB, 4096, None, None, &opts()).unwrap();
        assert_eq!(p.total_sectors, 2_097_152);
        assert_eq!(lbas(p.bios_boot().unwrap()), (256, 511));
        assert_eq!(lbas(p.esp().unwrap()), (512, 66_047));
        // last usable LBA 2097146
        assert_eq!(lbas(p.root()), (66_048, 2_096_895));
        // written and read back on a small disk
        let o = LayoutOptions {
            esp_size: 16 * MIB,
            ..opts()
        };
        let p = Plan::plan(128 * MIB, 4096, None, None, &o).unwrap();
        let mut disk = Cursor::new(vec![0u8; 128 * MIB as usize]);
        p.write(&mut disk).unwrap();
        let t = read_table(&mut disk).unwrap();
        assert_eq!(t.sector_size, 4096);
        // 32768 sectors, last usable 32762
        assert_eq!(t.part(3).unwrap().first_lba, 4608);
        assert_eq!(t.part(3).unwrap().last_lba, 32_511);
    }

    #[test]
    fn display_lists_every_partition() {
        let o = LayoutOptions {
            root_size: RootSize::Bytes(2 * GIB),
            retain_last: Some(Retain::Exact),
            ..opts()
        };
        let p = plan_retain(8 * GIB, (4_722_688, 16_777_182), &o).unwrap();
        let text = p.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with("  #  start(sector)"), "{text}");
        assert!(
            lines[0].contains("end(sector)") && lines[0].ends_with("name"),
            "{text}"
        );
        assert!(
            lines[1].contains("BIOS boot") && lines[1].ends_with("bios"),
            "{text}"
        );
        assert!(
            lines[2].contains("256.0 MiB") && lines[2].contains("EFI System"),
            "{text}"
        );
        assert!(
            lines[3].contains("2.0 GiB") && lines[3].contains("528384"),
            "{text}"
        );
        assert!(lines[4].ends_with("home (kept)"), "{text}");
        // the columns line up
        let col = |l: &str| l.find("start(sector)").map(|i| i + 13).unwrap_or(0);
        let start_end = col(lines[0]);
        assert!(lines[1..]
            .iter()
            .all(|l| l[..start_end].ends_with(char::is_numeric)));
    }
}
