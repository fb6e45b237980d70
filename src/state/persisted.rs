//! The journal's copy inside the root filesystem: format version 2, two slots.
//!
//! The boot hook reads this copy from a filesystem it mounts read-only without replaying its
//! log (see `write_persisted` in journal.rs for why the file is rewritten in place). A save
//! interrupted by a power cut can leave a block half old, half new: with one copy that made the
//! journal unreadable, and the boot could not tell the legs apart. So the file holds two slots;
//! each save rewrites the older one, and the reader takes the valid slot with the higher
//! sequence number: a torn write loses at most the save it was making.
//!
//! Layout (exactly [`BYTES`] = 65536 bytes, every region padded with spaces):
//!
//! ```text
//! [0, 4096)        {"version": 2, "layout": "two-slot", "slots": [
//! [4096, 32768)    slot 0, its last byte a ','
//! [32768, 61440)   slot 1
//! [61440, 65536)   ]}  and a final '\n'
//! slot:            {"seq": N, "crc32": "8 hex digits", "journal": "<the journal's JSON, as a string>"}
//! ```
//!
//! `seq` grows by one with every save of the file; `crc32` (IEEE) is over the journal string's
//! bytes. The two slots never share a 4 KiB block. The whole file is one JSON document, so a
//! rootshift that reads only format 1 (a plain journal) sees `"version": 2` and refuses (exit 4)
//! instead of guessing; a slot torn mid-write makes the document invalid for it (it then reads
//! the file as a torn journal, as it would a torn format-1 file). The journal inside a slot is a
//! format-1 journal (`version: 1`, with the optional `seq` and `migration_id`).

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The file's size.
pub const BYTES: usize = 64 * 1024;
/// Its format version.
pub const VERSION: u64 = 2;
const HEADER: &str = "{\"version\": 2, \"layout\": \"two-slot\", \"slots\": [";
const HEADER_END: usize = 4096;
/// The slots' byte ranges.
const SLOTS: [(usize, usize); 2] = [(4096, 32768), (32768, 61440)];
const TRAILER: &str = "]}";

#[derive(Debug, Serialize, Deserialize)]
struct Slot {
    seq: u64,
    crc32: String,
    journal: String,
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's `crc32`).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Whether a file's bytes are this format (by its header, which is written once).
pub fn is_v2(bytes: &[u8]) -> bool {
    bytes.starts_with(HEADER.as_bytes())
}

/// Slot `i`'s sequence number and journal text, if the slot is whole.
fn slot(bytes: &[u8], i: usize) -> std::result::Result<(u64, String), String> {
    let (start, end) = SLOTS[i];
    let Some(region) = bytes.get(start..end) else {
        return Err(format!("slot {i}: the file is {} bytes", bytes.len()));
    };
    let region = if i == 0 {
        match region.split_last() {
            Some((b',', r)) => r,
            _ => return Err("slot 0: no ',' after it".into()),
        }
    } else {
        region
    };
    let text = std::str::from_utf8(region).map_err(|e| format!("slot {i}: {e}"))?;
    let s: Slot = serde_json::from_str(text).map_err(|e| format!("slot {i}: {e}"))?;
    let want = format!("{:08x}", crc32(s.journal.as_bytes()));
    if s.crc32 != want {
        return Err(format!(
            "slot {i}: checksum {} where the journal sums to {want}",
            s.crc32
        ));
    }
    Ok((s.seq, s.journal))
}

/// The journal text of the newest whole slot, or why there is none.
pub fn read_slots(bytes: &[u8]) -> std::result::Result<String, String> {
    let slots = [slot(bytes, 0), slot(bytes, 1)];
    let newest = slots
        .iter()
        .filter_map(|s| s.as_ref().ok())
        .max_by_key(|(seq, _)| *seq);
    match (newest, &slots) {
        (Some((_, text)), _) => Ok(text.clone()),
        (None, [Err(a), Err(b)]) => Err(format!("no whole slot in the journal file: {a}; {b}")),
        (None, _) => unreachable!(),
    }
}

/// Slot `i`'s region: the slot's JSON, spaces, (slot 0) a ','.
fn region(i: usize, seq: u64, journal: &str) -> Result<Vec<u8>> {
    let (start, end) = SLOTS[i];
    let s = Slot {
        seq,
        crc32: format!("{:08x}", crc32(journal.as_bytes())),
        journal: journal.to_string(),
    };
    let mut buf = serde_json::to_vec(&s)?;
    let room = end - start - usize::from(i == 0);
    if buf.len() > room {
        anyhow::bail!(
            "the journal grew past a slot of {room} bytes ({}); not saving it",
            buf.len()
        );
    }
    buf.resize(room, b' ');
    if i == 0 {
        buf.push(b',');
    }
    Ok(buf)
}

/// The whole file with `journal` in both slots (sequence `seq`).
pub fn layout(journal: &str, seq: u64) -> Result<Vec<u8>> {
    let mut buf = HEADER.as_bytes().to_vec();
    buf.resize(HEADER_END, b' ');
    buf.extend(region(0, seq, journal)?);
    buf.extend(region(1, seq, journal)?);
    buf.extend(TRAILER.as_bytes());
    buf.resize(BYTES - 1, b' ');
    buf.push(b'\n');
    Ok(buf)
}

/// Which slot the next save rewrites, and with which sequence number: the older (or broken)
/// one, one past the newest.
pub fn next_slot(bytes: &[u8]) -> (usize, u64) {
    let seq = |i| slot(bytes, i).ok().map(|(s, _)| s);
    match (seq(0), seq(1)) {
        (Some(a), Some(b)) if a > b => (1, a + 1),
        (Some(a), Some(b)) => (0, b.max(a) + 1),
        (Some(a), None) => (1, a + 1),
        (None, Some(b)) => (0, b + 1),
        (None, None) => (0, 1),
    }
}

/// Save `journal` into the file at `p`: in place into the older slot (its region rewritten and
/// fsynced; the other slot untouched) when the file is already this format, else the whole
/// file is written anew (`fresh`: atomically, then checkpointed).
pub fn write(p: &Path, journal: &str, fresh: impl FnOnce(&[u8]) -> Result<()>) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let existing = fs::read(p).ok().filter(|b| b.len() == BYTES && is_v2(b));
    let Some(bytes) = existing else {
        return fresh(&layout(journal, 1)?);
    };
    let (i, seq) = next_slot(&bytes);
    let buf = region(i, seq, journal)?;
    let f = fs::OpenOptions::new()
        .write(true)
        .open(p)
        .with_context(|| format!("opening {}", p.display()))?;
    f.write_all_at(&buf, SLOTS[i].0 as u64)
        .with_context(|| format!("writing {}", p.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_is_zlibs() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn the_newest_whole_slot_is_read_and_a_torn_one_is_survived() {
        let mut f = layout("{\"a\": 1}", 1).unwrap();
        assert_eq!(f.len(), BYTES);
        assert!(is_v2(&f));
        assert_eq!(read_slots(&f).unwrap(), "{\"a\": 1}");
        // every region boundary where the layout says
        assert_eq!(f[SLOTS[0].1 - 1], b',');
        assert_eq!(&f[SLOTS[1].1..SLOTS[1].1 + 2], b"]}");
        assert_eq!(SLOTS[0].1 % 4096, 0, "the slots share no 4 KiB block");
        // the whole file is one JSON document of version 2: a format-1 reader refuses it
        #[derive(Deserialize)]
        struct Versioned {
            version: u64,
        }
        let v: Versioned = serde_json::from_slice(&f).unwrap();
        assert_eq!(v.version, VERSION);
        // saves alternate: slot 1 (equal), then 0, then 1
        let save = |f: &mut Vec<u8>, text: &str| {
            let (i, seq) = next_slot(f);
            let r = region(i, seq, text).unwrap();
            f[SLOTS[i].0..SLOTS[i].1].copy_from_slice(&r);
            i
        };
        assert_eq!(save(&mut f, "{\"a\": 2}"), 0);
        assert_eq!(read_slots(&f).unwrap(), "{\"a\": 2}");
        assert_eq!(save(&mut f, "{\"a\": 3}"), 1);
        assert_eq!(read_slots(&f).unwrap(), "{\"a\": 3}");
        assert!(serde_json::from_slice::<Versioned>(&f).is_ok());
        // a torn write of the next save (slot 0): half its bytes new, half old; or zeros
        let (i, seq) = next_slot(&f);
        assert_eq!((i, seq), (0, 4));
        let r = region(i, seq, "{\"a\": 4, \"long\": \"xxxxxxxxxxxxxxxxxxxxxx\"}").unwrap();
        let mut torn = f.clone();
        torn[SLOTS[0].0..SLOTS[0].0 + 20].copy_from_slice(&r[..20]);
        assert_eq!(read_slots(&torn).unwrap(), "{\"a\": 3}");
        let mut zeros = f.clone();
        zeros[SLOTS[0].0..SLOTS[0].0 + 512].fill(0);
        assert_eq!(read_slots(&zeros).unwrap(), "{\"a\": 3}");
        // a changed byte inside the journal string: the checksum catches it
        let mut flipped = f.clone();
        let pos = SLOTS[1].0
            + f[SLOTS[1].0..SLOTS[1].1]
                .windows(2)
                .position(|w| w == b" 3")
                .unwrap();
        flipped[pos + 1] = b'7';
        assert_eq!(read_slots(&flipped).unwrap(), "{\"a\": 2}", "slot 0's");
        // both broken: why
        let mut both = zeros.clone();
        both[SLOTS[1].0..SLOTS[1].0 + 512].fill(0);
        assert!(read_slots(&both).unwrap_err().contains("no whole slot"));
        // too big for a slot
        assert!(layout(&"x".repeat(SLOTS[0].1), 1).is_err());
    }

    #[test]
    fn write_creates_then_rewrites_one_slot_in_place() {
        let dir = std::env::temp_dir().join(format!("rootshift-slots-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("rootshift-root.json");
        let mut fresh = 0;
        let mut fresh_write = |b: &[u8]| {
            fresh += 1;
            fs::write(&p, b).map_err(Into::into)
        };
        write(&p, "{\"a\": 1}", &mut fresh_write).unwrap();
        use std::os::unix::fs::MetadataExt;
        let ino = fs::metadata(&p).unwrap().ino();
        write(&p, "{\"a\": 2}", |_| panic!("in place")).unwrap();
        write(&p, "{\"a\": 3}", |_| panic!("in place")).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().ino(), ino);
        let b = fs::read(&p).unwrap();
        assert_eq!(b.len(), BYTES);
        assert_eq!(read_slots(&b).unwrap(), "{\"a\": 3}");
        assert_eq!(fresh, 1);
        // a format-1 file of the same size is replaced whole
        fs::write(&p, vec![b' '; BYTES]).unwrap();
        let mut again = 0;
        write(&p, "{\"a\": 4}", |b| {
            again += 1;
            fs::write(&p, b).map_err(Into::into)
        })
        .unwrap();
        assert_eq!(again, 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
