//! Disk layout: partition tables read (and, for `rootshift install`, planned and written) through
//! the gptman crate, and what the boot finalisation needs to know about the target's disk (its
//! EFI System Partition, its BIOS boot partition).
//!
//! GPT GUIDs are kept as [`Guid`], which converts between the on-disk mixed-endian byte order
//! gptman uses and the usual text form.

pub mod apply;
pub mod layout;
pub mod signatures;
pub mod wipe;

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::str::FromStr;

use anyhow::{anyhow, bail, Context, Result};

use crate::kernel::blockdev::BlockDev;

/// A GPT GUID. Stored as its on-disk bytes (first three fields little-endian).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// A random (version 4) GUID.
    pub fn random() -> Guid {
        Guid::from_uuid(uuid::Uuid::new_v4())
    }
    pub fn from_uuid(u: uuid::Uuid) -> Guid {
        Guid(u.to_bytes_le())
    }
    pub fn to_uuid(self) -> uuid::Uuid {
        uuid::Uuid::from_bytes_le(self.0)
    }
    pub fn is_zero(self) -> bool {
        self.0 == [0; 16]
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_uuid().hyphenated())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

impl FromStr for Guid {
    type Err = String;
    fn from_str(s: &str) -> Result<Guid, String> {
        uuid::Uuid::parse_str(s.trim())
            .map(Guid::from_uuid)
            .map_err(|e| format!("{s:?} is not a GUID: {e}"))
    }
}

/// Partition types rootshift knows by name.
pub mod types {
    /// EFI System Partition.
    pub const ESP: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
    /// BIOS boot partition (GRUB's core.img on GPT disks).
    pub const BIOS_BOOT: &str = "21686148-6449-6e6f-744e-656564454649";
    /// Linux filesystem data.
    pub const LINUX_FS: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";
    /// Linux root (x86-64), Discoverable Partitions Specification.
    pub const LINUX_ROOT_X86_64: &str = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709";
    /// Linux swap.
    pub const LINUX_SWAP: &str = "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f";
    /// Extended Boot Loader partition (/boot).
    pub const XBOOTLDR: &str = "bc13c2ff-59e6-4262-a352-b275fd6f7172";

    /// A short name for a type GUID (for tables and messages).
    pub fn name(guid: &str) -> &'static str {
        match guid {
            ESP => "EFI System",
            BIOS_BOOT => "BIOS boot",
            LINUX_FS => "Linux filesystem",
            LINUX_ROOT_X86_64 => "Linux root (x86-64)",
            LINUX_SWAP => "Linux swap",
            XBOOTLDR => "Linux extended boot",
            _ => "other",
        }
    }
}

/// The kind of partition table on a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    Gpt,
    /// MS-DOS (MBR) table.
    Dos,
    None,
}

/// One partition as the table describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Partition number (1-based, as the kernel names it: vda**3**).
    pub number: u32,
    /// First and last sector (logical sectors of the disk), inclusive.
    pub first_lba: u64,
    pub last_lba: u64,
    /// GPT: the type GUID in text form; DOS: `0xEF`-style type byte.
    pub type_id: String,
    /// GPT only.
    pub guid: Option<Guid>,
    pub name: String,
}

impl Part {
    pub fn is_esp(&self) -> bool {
        self.type_id == types::ESP || self.type_id.eq_ignore_ascii_case("0xef")
    }
    pub fn is_bios_boot(&self) -> bool {
        self.type_id == types::BIOS_BOOT
    }
    pub fn sectors(&self) -> u64 {
        self.last_lba + 1 - self.first_lba
    }
}

/// A disk's partition table.
#[derive(Debug, Clone)]
pub struct Table {
    pub kind: TableKind,
    pub sector_size: u64,
    pub parts: Vec<Part>,
    /// GPT: the disk GUID.
    pub disk_guid: Option<Guid>,
}

impl Table {
    pub fn part(&self, number: u32) -> Option<&Part> {
        self.parts.iter().find(|p| p.number == number)
    }
    pub fn esp(&self) -> Option<&Part> {
        self.parts.iter().find(|p| p.is_esp())
    }
    pub fn bios_boot(&self) -> Option<&Part> {
        self.parts.iter().find(|p| p.is_bios_boot())
    }
}

/// Read the partition table of a disk image or device (GPT first, then DOS).
pub fn read_table<R: Read + Seek>(r: &mut R) -> Result<Table> {
    match gptman::GPT::find_from(r) {
        Ok(gpt) => {
            let parts = gpt
                .iter()
                .filter(|(_, e)| e.is_used())
                .map(|(n, e)| Part {
                    number: n,
                    first_lba: e.starting_lba,
                    last_lba: e.ending_lba,
                    type_id: Guid(e.partition_type_guid).to_string(),
                    guid: Some(Guid(e.unique_partition_guid)),
                    name: e.partition_name.as_str().to_string(),
                })
                .collect();
            return Ok(Table {
                kind: TableKind::Gpt,
                sector_size: gpt.sector_size,
                parts,
                disk_guid: Some(Guid(gpt.header.disk_guid)),
            });
        }
        Err(gptman::Error::InvalidSignature) | Err(gptman::Error::ReadError(..)) => {}
        Err(e) => return Err(anyhow!("reading the GPT: {e}")),
    }
    let mut mbr = [0u8; 512];
    r.seek(SeekFrom::Start(0))?;
    r.read_exact(&mut mbr).context("reading sector 0")?;
    Ok(parse_dos(&mbr))
}

/// The four primary entries of an MS-DOS table (extended partitions are not followed).
pub fn parse_dos(mbr: &[u8; 512]) -> Table {
    let none = Table {
        kind: TableKind::None,
        sector_size: 512,
        parts: vec![],
        disk_guid: None,
    };
    if mbr[510] != 0x55 || mbr[511] != 0xAA {
        return none;
    }
    let mut parts = vec![];
    for i in 0..4 {
        let e = &mbr[446 + 16 * i..446 + 16 * (i + 1)];
        let ty = e[4];
        let start = u32::from_le_bytes([e[8], e[9], e[10], e[11]]) as u64;
        let len = u32::from_le_bytes([e[12], e[13], e[14], e[15]]) as u64;
        if ty == 0 || len == 0 {
            continue;
        }
        if ty == 0xEE {
            // a protective MBR whose GPT did not read: no usable table
            return none;
        }
        parts.push(Part {
            number: i as u32 + 1,
            first_lba: start,
            last_lba: start + len - 1,
            type_id: format!("0x{ty:02x}"),
            guid: None,
            name: String::new(),
        });
    }
    if parts.is_empty() {
        return none;
    }
    Table {
        kind: TableKind::Dos,
        sector_size: 512,
        parts,
        disk_guid: None,
    }
}

/// A partition of a disk, with the table it is in.
#[derive(Debug, Clone)]
pub struct DiskPart {
    pub disk: BlockDev,
    pub table: Table,
    pub number: u32,
}

impl DiskPart {
    pub fn part(&self) -> &Part {
        self.table
            .part(self.number)
            .expect("DiskPart always names a partition of its table")
    }
}

/// Read the table of a whole disk.
pub fn read_disk(disk: &BlockDev) -> Result<Table> {
    let mut f = File::open(disk.node_path())
        .with_context(|| format!("opening {} to read its partition table", disk.display()))?;
    read_table(&mut f).with_context(|| format!("reading the partition table of {}", disk.display()))
}

/// The disk and table entry of a partition block device (`/dev/vda3` → vda, partition 3).
pub fn locate(part: &BlockDev) -> Result<DiskPart> {
    let Some(number) = part.partition_number() else {
        bail!("{} is not a partition", part.display());
    };
    let disk = part
        .whole_disk()
        .with_context(|| format!("finding the disk of {}", part.display()))?;
    let table = read_disk(&disk)?;
    if table.part(number).is_none() {
        bail!(
            "the kernel knows {} as partition {number} of {}, but the partition table on the disk has no \
             such entry (was it changed without telling the kernel?)",
            part.display(),
            disk.display()
        );
    }
    Ok(DiskPart {
        disk,
        table,
        number,
    })
}

/// The kernel's block device for partition `number` of `disk`, if it knows it.
pub fn part_dev(disk: &BlockDev, number: u32) -> Option<BlockDev> {
    disk.partitions()
        .into_iter()
        .find(|p| p.partition_number() == Some(number))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn guid_text_round_trip_and_byte_order() {
        let g: Guid = types::ESP.parse().unwrap();
        // on disk the first three fields are little-endian
        assert_eq!(&g.0[..4], &[0x28, 0x73, 0x2a, 0xc1]);
        assert_eq!(g.to_string(), types::ESP);
        assert!("not-a-guid".parse::<Guid>().is_err());
        assert_ne!(Guid::random(), Guid::random());
    }

    #[test]
    fn reads_a_gpt_written_by_gptman() {
        let ss = 512u64;
        let mut cur = Cursor::new(vec![0u8; 8 << 20]);
        let mut gpt = gptman::GPT::new_from(&mut cur, ss, Guid::random().0).unwrap();
        gpt[1] = gptman::GPTPartitionEntry {
            partition_type_guid: types::BIOS_BOOT.parse::<Guid>().unwrap().0,
            unique_partition_guid: Guid::random().0,
            starting_lba: 2048,
            ending_lba: 4095,
            attribute_bits: 0,
            partition_name: "bios".into(),
        };
        gpt[2] = gptman::GPTPartitionEntry {
            partition_type_guid: types::LINUX_FS.parse::<Guid>().unwrap().0,
            unique_partition_guid: Guid::random().0,
            starting_lba: 4096,
            ending_lba: gpt.header.last_usable_lba,
            attribute_bits: 0,
            partition_name: "root".into(),
        };
        gpt.write_into(&mut cur).unwrap();
        gptman::GPT::write_protective_mbr_into(&mut cur, ss).unwrap();
        let t = read_table(&mut cur).unwrap();
        assert_eq!(t.kind, TableKind::Gpt);
        assert_eq!(t.parts.len(), 2);
        assert_eq!(t.bios_boot().unwrap().number, 1);
        assert!(t.esp().is_none());
        assert_eq!(t.part(2).unwrap().name, "root");
        assert_eq!(t.part(1).unwrap().sectors(), 2048);
    }

    #[test]
    fn dos_table_and_blank_disk() {
        let mut mbr = [0u8; 512];
        assert_eq!(parse_dos(&mbr).kind, TableKind::None);
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        // entry 1: type 0xEF (ESP) at 2048, 100 sectors
        mbr[446 + 4] = 0xEF;
        mbr[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
        mbr[446 + 12..446 + 16].copy_from_slice(&100u32.to_le_bytes());
        // entry 2: Linux
        mbr[462 + 4] = 0x83;
        mbr[462 + 8..462 + 12].copy_from_slice(&4096u32.to_le_bytes());
        mbr[462 + 12..462 + 16].copy_from_slice(&1000u32.to_le_bytes());
        let t = parse_dos(&mbr);
        assert_eq!(t.kind, TableKind::Dos);
        assert_eq!(t.esp().unwrap().last_lba, 2147);
        assert_eq!(t.part(2).unwrap().type_id, "0x83");
        // a lone protective entry means "GPT that did not read", not a DOS disk
        let mut prot = [0u8; 512];
        prot[510] = 0x55;
        prot[511] = 0xAA;
        prot[446 + 4] = 0xEE;
        prot[446 + 12] = 1;
        assert_eq!(parse_dos(&prot).kind, TableKind::None);
        let mut blank = Cursor::new(vec![0u8; 1 << 20]);
        assert_eq!(read_table(&mut blank).unwrap().kind, TableKind::None);
    }
}
