//! `--retain-last`: keeping the old table's last partition (KIWI's
//! `rd.kiwi.install.retain_last`): which entry is kept, the refusals, and the hint for an exact
//! fit.

use std::io::{Read, Seek};

use anyhow::{anyhow, ensure, Context, Result};
use gptman::{GPTPartitionEntry, GPT};

use super::{Geometry, MIN_ROOT};
use crate::disk::{Guid, Table, TableKind};
use crate::error::refuse;
use crate::units::MIB;

/// How `--retain-last` keeps the old table's last partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Retain {
    /// The new partitions must end exactly where the kept one starts.
    Exact,
    /// The new partitions must end before the kept one starts (a gap is fine).
    Fit,
}

impl Retain {
    /// The value as given on the command line.
    pub(super) fn arg(self) -> &'static str {
        match self {
            Retain::Exact => "exact",
            Retain::Fit => "fit",
        }
    }
}

/// The entry `--retain-last` keeps: the existing GPT's partition that ends last.
pub(super) fn kept_entry(
    g: &Geometry,
    existing: Option<&Table>,
    entry: Option<&GPTPartitionEntry>,
) -> Result<GPTPartitionEntry> {
    let table = match existing {
        Some(t) if t.kind == TableKind::Gpt && !t.parts.is_empty() => t,
        other => {
            let what = match other.map(|t| t.kind) {
                Some(TableKind::Gpt) => "an empty GPT",
                Some(TableKind::Dos) => "an MS-DOS partition table",
                _ => "no partition table",
            };
            return Err(refuse(
                format!(
                    "--retain-last needs an existing GPT with a partition to keep; the disk has \
                     {what}"
                ),
                Some("drop --retain-last"),
            ));
        }
    };
    let last = table
        .parts
        .iter()
        .max_by_key(|p| p.last_lba)
        .expect("the table has partitions");
    ensure!(
        table.sector_size == g.sector_size,
        "the existing table uses {}-byte sectors, the disk {}-byte ones",
        table.sector_size,
        g.sector_size
    );
    let entry = entry.with_context(|| {
        format!(
            "--retain-last: the GPT entry of partition {} was not read",
            last.number
        )
    })?;
    ensure!(
        entry.starting_lba == last.first_lba
            && entry.ending_lba == last.last_lba
            && Some(Guid(entry.unique_partition_guid)) == last.guid,
        "--retain-last: the GPT entry given is not the one of partition {}",
        last.number
    );
    if entry.ending_lba > g.last_usable {
        return Err(refuse(
            format!(
                "--retain-last: partition {} ends at {}, past the last usable {} of the disk",
                last.number,
                g.at(entry.ending_lba),
                g.at(g.last_usable)
            ),
            Some("drop --retain-last"),
        ));
    }
    Ok(entry.clone())
}

/// What would make an exact retain work: the root size that ends the layout at `kept_start`.
pub(super) fn exact_hint(g: &Geometry, fixed_end: u64, slots: u64, kept_start: u64) -> String {
    let room = kept_start.saturating_sub(fixed_end);
    if room > 0 && room.is_multiple_of(slots * g.align) && room / slots >= g.sectors(MIN_ROOT) {
        format!(
            "--root-size {}M ends the layout exactly there; --retain-last fit accepts a gap",
            room / slots * g.sector_size / MIB
        )
    } else {
        "--root-size rest fills the space up to it; --retain-last fit accepts a gap".into()
    }
}

/// The GPT entry `--retain-last` keeps on a disk: the used entry that ends last, if the disk
/// has a GPT with partitions.
pub fn last_entry<R: Read + Seek>(r: &mut R) -> Result<Option<GPTPartitionEntry>> {
    match GPT::find_from(r) {
        Ok(gpt) => Ok(gpt
            .iter()
            .map(|(_, e)| e)
            .filter(|e| e.is_used())
            .max_by_key(|e| e.ending_lba)
            .cloned()),
        Err(gptman::Error::InvalidSignature) | Err(gptman::Error::ReadError(..)) => Ok(None),
        Err(e) => Err(anyhow!("reading the GPT: {e}")),
    }
}
