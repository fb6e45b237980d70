//! Writing a [`Plan`]: the protective MBR and both copies of the GPT, through the device handle
//! given (only the table areas are written).

use std::io::{Read, Seek, SeekFrom, Write};

use anyhow::{bail, ensure, Context, Result};
use gptman::{GPTPartitionEntry, GPT};

use super::{Plan, PlannedPart, Role};
use crate::disk::Guid;

impl Plan {
    /// The GPT entry for a planned partition (the retained one exactly as it was read).
    fn entry(&self, p: &PlannedPart) -> Result<GPTPartitionEntry> {
        if p.role == Role::Retained {
            let k = self
                .kept
                .clone()
                .context("the plan has no entry to retain")?;
            ensure!(
                (k.starting_lba, k.ending_lba, Guid(k.unique_partition_guid))
                    == (p.first_lba, p.last_lba, p.guid),
                "the retained partition {} no longer matches the entry read from the disk",
                p.number
            );
            return Ok(k);
        }
        Ok(GPTPartitionEntry {
            partition_type_guid: p.type_guid.0,
            unique_partition_guid: p.guid.0,
            starting_lba: p.first_lba,
            ending_lba: p.last_lba,
            attribute_bits: p.attributes,
            partition_name: p.name.as_str().into(),
        })
    }

    /// Write the protective MBR and the GPT (primary and backup) on `dev`, the whole disk the
    /// plan was made for. Only the table areas are written.
    pub fn write<D: Read + Write + Seek>(&self, dev: &mut D) -> Result<()> {
        let ss = self.sector_size;
        let len = dev
            .seek(SeekFrom::End(0))
            .context("finding the size of the disk")?;
        ensure!(
            len / ss == self.total_sectors,
            "the disk has {} sectors of {ss} bytes, but the layout was planned for {}",
            len / ss,
            self.total_sectors
        );
        let mut gpt = GPT::new_from(dev, ss, self.disk_guid.0).context("preparing the GPT")?;
        let (first, last) = (gpt.header.first_usable_lba, gpt.header.last_usable_lba);
        let slots = gpt.header.number_of_partition_entries;
        for p in &self.parts {
            ensure!(
                (1..=slots).contains(&p.number),
                "partition number {} is outside 1..{slots}",
                p.number
            );
            ensure!(
                first <= p.first_lba && p.first_lba <= p.last_lba && p.last_lba <= last,
                "partition {} ({}) at sectors {}..{} is outside the usable sectors {first}..{last}",
                p.number,
                p.name,
                p.first_lba,
                p.last_lba
            );
        }
        let mut by_start: Vec<&PlannedPart> = self.parts.iter().collect();
        by_start.sort_by_key(|p| p.first_lba);
        for w in by_start.windows(2) {
            ensure!(
                w[0].last_lba < w[1].first_lba,
                "partitions {} ({}) and {} ({}) overlap",
                w[0].number,
                w[0].name,
                w[1].number,
                w[1].name
            );
        }
        for p in &self.parts {
            if !gpt[p.number].is_unused() {
                bail!("partition number {} is planned twice", p.number);
            }
            gpt[p.number] = self.entry(p)?;
        }
        GPT::write_protective_mbr_into(dev, ss).context("writing the protective MBR")?;
        gpt.write_into(dev).context("writing the GPT")?;
        dev.flush().context("flushing the partition table")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use gptman::GPT;

    use super::super::tests::{lbas, opts};
    use super::super::*;
    use crate::disk::read_table;

    #[test]
    fn write_keeps_the_retained_entry_byte_for_byte() {
        const DISK: u64 = 160 * MIB;
        let ss = 512u64;
        let mut disk = Cursor::new(vec![0u8; DISK as usize]);
        // the old table: something at 1 MiB, and "home" from 96 MiB to the end
        let mut old = GPT::new_from(&mut disk, ss, Guid::random().0).unwrap();
        old[1] = GPTPartitionEntry {
            partition_type_guid: type_guid(types::LINUX_FS).0,
            unique_partition_guid: Guid::random().0,
            starting_lba: 2048,
            ending_lba: 196_607,
            attribute_bits: 0,
            partition_name: "old-root".into(),
        };
        let last_usable = old.header.last_usable_lba;
        old[3] = GPTPartitionEntry {
            partition_type_guid: type_guid(types::LINUX_SWAP).0,
            unique_partition_guid: Guid::random().0,
            starting_lba: 196_608,
            ending_lba: last_usable,
            attribute_bits: 0x8000_0000_0000_0001,
            partition_name: "home ünicode".into(),
        };
        old.write_into(&mut disk).unwrap();
        GPT::write_protective_mbr_into(&mut disk, ss).unwrap();
        let entry_bytes = |d: &Cursor<Vec<u8>>, n: u32| {
            let at = (2 * ss + u64::from(n - 1) * 128) as usize;
            d.get_ref()[at..at + 128].to_vec()
        };
        let old_bytes = entry_bytes(&disk, 3);

        let table = read_table(&mut disk).unwrap();
        let entry = last_entry(&mut disk).unwrap().unwrap();
        assert_eq!(entry.starting_lba, 196_608);
        let o = LayoutOptions {
            esp_size: 16 * MIB,
            retain_last: Some(Retain::Exact),
            ..opts()
        };
        let plan = Plan::plan(DISK, ss, Some(&table), Some(&entry), &o).unwrap();
        assert_eq!(lbas(plan.root()), (36_864, 196_607));
        plan.write(&mut disk).unwrap();

        let kept = plan.retained().unwrap();
        assert_eq!(kept.number, 4);
        assert_eq!(entry_bytes(&disk, 4), old_bytes);
        let t = read_table(&mut disk).unwrap();
        assert_eq!(t.disk_guid, Some(plan.disk_guid));
        assert_eq!(t.parts.len(), 4);
        let k = t.part(4).unwrap();
        assert_eq!((k.first_lba, k.last_lba), (196_608, last_usable));
        assert_eq!(k.guid, Some(Guid(entry.unique_partition_guid)));
        assert_eq!(k.type_id, types::LINUX_SWAP);
        assert_eq!(k.name, "home ünicode");
        assert_eq!(t.part(3).unwrap().name, "root");
        assert_eq!(t.esp().unwrap().number, 2);
        // the backup copy alone carries the same table
        disk.get_mut()[ss as usize..2 * ss as usize].fill(0);
        let backup = read_table(&mut disk).unwrap();
        assert_eq!(backup.parts, t.parts);
    }

    #[test]
    fn write_checks_the_disk_and_the_entries() {
        let o = LayoutOptions {
            esp_size: 16 * MIB,
            ..opts()
        };
        let p = Plan::plan(128 * MIB, 512, None, None, &o).unwrap();
        let mut other = Cursor::new(vec![0u8; 129 * MIB as usize]);
        assert!(p.write(&mut other).is_err());
        let mut disk = Cursor::new(vec![0u8; 128 * MIB as usize]);
        let mut bad = p.clone();
        bad.parts[2].last_lba = bad.total_sectors - 1;
        assert!(bad
            .write(&mut disk)
            .unwrap_err()
            .to_string()
            .contains("outside"));
        let mut bad = p.clone();
        bad.parts[2].first_lba = 4000;
        assert!(bad
            .write(&mut disk)
            .unwrap_err()
            .to_string()
            .contains("overlap"));
        assert!(
            disk.get_ref().iter().all(|&b| b == 0),
            "nothing written on refusal"
        );
        p.write(&mut disk).unwrap();
        assert_eq!(read_table(&mut disk).unwrap().parts.len(), 3);
    }
}
