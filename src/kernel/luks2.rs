//! A LUKS2 header's metadata, read without the key: the binary header and the JSON area that
//! follows it, kept twice (the primary at 0, the secondary at the primary's header size). Each
//! copy carries a sequence id and a checksum over itself (binary header with the checksum field
//! zeroed, then the JSON area); the valid copy with the higher sequence id is the current one, as
//! libcryptsetup reads it (`LUKS2_disk_hdr_read`).
//!
//! rootshift reads one thing there: its own token (`tokens.N`, type [`JOURNAL_TOKEN_TYPE`]), in
//! which a migration of an encrypted root keeps its journal, so the boot can tell the twin
//! copies of a container apart before anything is unlocked (issue 21 §1). The token is written by
//! `cryptsetup token import` (crate::state::token), never by rootshift itself: the header is the
//! only way into the data, and only cryptsetup writes it.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The type of rootshift's token in a LUKS2 header.
pub const JOURNAL_TOKEN_TYPE: &str = "rootshift-journal";
/// The binary header's size; the JSON area follows it.
const BIN_LEN: usize = 4096;
/// The header sizes LUKS2 allows (binary header + JSON area): 16 KiB to 4 MiB, powers of two.
const HDR_SIZES: [u64; 9] = [
    0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000, 0x400000,
];
/// The most a reader needs: both copies at the largest header size.
pub const MAX_BYTES: usize = 2 * 0x400000;

const MAGIC_PRIMARY: &[u8; 6] = b"LUKS\xba\xbe";
const MAGIC_SECONDARY: &[u8; 6] = b"SKUL\xba\xbe";

fn be64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// The version of a LUKS header at the start of `buf` (1 or 2), None when there is none.
pub fn version(buf: &[u8]) -> Option<u16> {
    if buf.get(..6)? != MAGIC_PRIMARY {
        return None;
    }
    Some(u16::from_be_bytes(buf.get(6..8)?.try_into().ok()?))
}

/// The header size the primary binary header states, when it is a LUKS2 one (what a reader
/// must read: twice that, for both copies). Needs the first 16 bytes.
pub fn header_size(buf: &[u8]) -> Option<u64> {
    (version(buf)? == 2)
        .then(|| be64(buf, 8))
        .flatten()
        .filter(|s| HDR_SIZES.contains(s))
}

/// One valid copy of the metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    pub seqid: u64,
    /// Where the copy was (0: the primary).
    pub offset: u64,
    pub json: Value,
}

/// The copy at `off` in `buf`, checked: its magic, version, size, offset field and checksum
/// (sha256, what cryptsetup 2.x writes; another algorithm is refused), then its JSON.
fn copy_at(buf: &[u8], off: u64, magic: &[u8; 6]) -> Result<Metadata, String> {
    let o = usize::try_from(off).map_err(|_| "offset too large".to_string())?;
    let bin = buf
        .get(o..o + BIN_LEN)
        .ok_or_else(|| format!("the header at {off} is past the {} bytes read", buf.len()))?;
    if &bin[..6] != magic || bin[6..8] != [0, 2] {
        return Err(format!("no LUKS2 header at {off}"));
    }
    let size = be64(bin, 8).filter(|s| HDR_SIZES.contains(s));
    let size = size.ok_or_else(|| format!("the header at {off} states no valid size"))?;
    if be64(bin, 256) != Some(off) {
        return Err(format!("the header at {off} says it is elsewhere"));
    }
    let alg = &bin[72..104];
    let alg = String::from_utf8_lossy(&alg[..alg.iter().position(|&c| c == 0).unwrap_or(32)]);
    if alg != "sha256" {
        return Err(format!(
            "the header at {off} has a {alg} checksum (rootshift checks sha256 only)"
        ));
    }
    let json_area = buf.get(o + BIN_LEN..o + size as usize).ok_or_else(|| {
        format!(
            "the JSON area at {off} is past the {} bytes read",
            buf.len()
        )
    })?;
    let mut zeroed = bin.to_vec();
    zeroed[448..448 + 64].fill(0);
    let mut h = Sha256::new();
    h.update(&zeroed);
    h.update(json_area);
    if h.finalize().as_slice() != &bin[448..448 + 32] {
        return Err(format!("the header at {off} fails its checksum"));
    }
    let end = json_area
        .iter()
        .position(|&c| c == 0)
        .unwrap_or(json_area.len());
    let json = serde_json::from_slice(&json_area[..end])
        .map_err(|e| format!("the JSON area at {off}: {e}"))?;
    Ok(Metadata {
        seqid: be64(bin, 16).unwrap_or(0),
        offset: off,
        json,
    })
}

/// The current metadata of the LUKS2 header at the start of `buf` (both copies read: the valid
/// one with the higher sequence id). Err says why neither copy is valid.
pub fn parse(buf: &[u8]) -> Result<Metadata, String> {
    let primary = copy_at(buf, 0, MAGIC_PRIMARY);
    // the secondary is at the primary's size; a damaged primary: every size LUKS2 allows
    let offsets: Vec<u64> = match header_size(buf) {
        Some(s) => vec![s],
        None => HDR_SIZES.to_vec(),
    };
    let secondary = offsets
        .iter()
        .map(|&o| copy_at(buf, o, MAGIC_SECONDARY))
        .find(|r| r.is_ok())
        .unwrap_or_else(|| Err("no valid secondary header".into()));
    match (primary, secondary) {
        (Ok(p), Ok(s)) if s.seqid > p.seqid => Ok(s),
        (Ok(p), _) => Ok(p),
        (Err(_), Ok(s)) => Ok(s),
        (Err(p), Err(s)) => Err(format!("{p}; {s}")),
    }
}

/// The current metadata of the LUKS2 header on `dev` (both copies read); None when `dev`
/// carries no LUKS2 header (LUKS1 has no tokens), Some(Err) when neither copy is valid.
pub fn read(
    dev: &crate::kernel::blockdev::BlockDev,
) -> std::io::Result<Option<Result<Metadata, String>>> {
    let head = dev.read_head(BIN_LEN)?;
    if version(&head) != Some(2) {
        return Ok(None);
    }
    let n = header_size(&head).map_or(MAX_BYTES, |s| 2 * s as usize);
    Ok(Some(parse(&dev.read_head(n)?)))
}

/// A token of rootshift's in the metadata: its id and what it carries (`journal`, a string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalToken {
    pub id: u32,
    pub journal: String,
}

impl Metadata {
    /// rootshift's token, if the header has one (the lowest id, were there several).
    pub fn journal_token(&self) -> Option<JournalToken> {
        let tokens = self.json.get("tokens")?.as_object()?;
        let mut ours: Vec<JournalToken> = tokens
            .iter()
            .filter(|(_, t)| t.get("type").and_then(Value::as_str) == Some(JOURNAL_TOKEN_TYPE))
            .filter_map(|(id, t)| {
                Some(JournalToken {
                    id: id.parse().ok()?,
                    journal: t.get("journal")?.as_str()?.to_string(),
                })
            })
            .collect();
        ours.sort_by_key(|t| t.id);
        ours.into_iter().next()
    }

    /// Whether the header has a token of this type (`systemd-tpm2`, `systemd-fido2`, …).
    pub fn has_token_type(&self, t: &str) -> bool {
        self.json
            .get("tokens")
            .and_then(Value::as_object)
            .is_some_and(|m| {
                m.values()
                    .any(|x| x.get("type").and_then(Value::as_str) == Some(t))
            })
    }

    /// The token ids in use.
    pub fn token_ids(&self) -> Vec<u32> {
        self.json
            .get("tokens")
            .and_then(Value::as_object)
            .map(|t| t.keys().filter_map(|k| k.parse().ok()).collect())
            .unwrap_or_default()
    }
}

/// The token id for rootshift's journal: the one it has, else the highest free one (LUKS2 has
/// 32, 0–31; systemd-cryptenroll and cryptsetup fill them from 0 up).
pub fn journal_token_id(m: &Metadata) -> Option<u32> {
    if let Some(t) = m.journal_token() {
        return Some(t.id);
    }
    let used = m.token_ids();
    (0..32u32).rev().find(|i| !used.contains(i))
}

/// The token JSON `cryptsetup token import` takes for a journal.
pub fn token_json(journal: &str) -> String {
    serde_json::json!({"type": JOURNAL_TOKEN_TYPE, "keyslots": [], "journal": journal}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first 32 KiB of a container cryptsetup 2.6.1 made (`luksFormat --type luks2`, then
    /// `token import --token-id 31` of a rootshift-journal token): both header copies.
    const REAL: &[u8] = include_bytes!("testdata/luks2-token.hdr");

    #[test]
    fn reads_the_token_cryptsetup_wrote() {
        assert_eq!(version(REAL), Some(2));
        assert_eq!(header_size(REAL), Some(16384));
        let m = parse(REAL).unwrap();
        assert_eq!(m.offset, 0);
        assert_eq!(m.seqid, 4);
        let t = m.journal_token().unwrap();
        assert_eq!(t.id, 31);
        assert_eq!(t.journal, r#"{"version":1,"step":"mirroring"}"#);
        assert_eq!(m.token_ids(), vec![31]);
        assert_eq!(journal_token_id(&m), Some(31));
        assert_eq!(
            m.json["config"]["json_size"].as_str(),
            Some("12288"),
            "{}",
            m.json
        );
    }

    #[test]
    fn a_damaged_copy_falls_back_to_the_other() {
        // the primary's JSON damaged: its checksum fails, the secondary is read
        let mut b = REAL.to_vec();
        b[4096 + 10] ^= 0x55;
        let m = parse(&b).unwrap();
        assert_eq!(m.offset, 16384);
        assert_eq!(m.journal_token().unwrap().id, 31);
        // the primary's binary header gone whole: the secondary is found at a size LUKS2 allows
        b[..4096].fill(0);
        assert_eq!(parse(&b).unwrap().offset, 16384);
        // both damaged: why, for each
        b[16384 + 4096 + 3] ^= 1;
        let e = parse(&b).unwrap_err();
        assert!(e.contains("no LUKS2 header at 0"), "{e}");
        assert!(e.contains("no valid secondary"), "{e}");
        // a short read: neither copy whole
        assert!(parse(&REAL[..8192]).is_err());
    }

    #[test]
    fn the_newer_copy_wins() {
        // the secondary's sequence id raised (and its checksum made again): it is current
        let mut b = REAL.to_vec();
        let s = 16384;
        b[s + 16..s + 24].copy_from_slice(&9u64.to_be_bytes());
        b[s + 448..s + 512].fill(0);
        let mut h = Sha256::new();
        h.update(&b[s..s + 16384]);
        let d = h.finalize();
        b[s + 448..s + 480].copy_from_slice(&d);
        let m = parse(&b).unwrap();
        assert_eq!((m.offset, m.seqid), (16384, 9));
        // the same bytes with the checksum left stale: the primary
        b[s + 449] ^= 1;
        assert_eq!(parse(&b).unwrap().offset, 0);
    }

    #[test]
    fn not_luks2() {
        assert_eq!(version(&[0u8; 64]), None);
        let mut l1 = vec![0u8; 4096];
        l1[..6].copy_from_slice(MAGIC_PRIMARY);
        l1[7] = 1;
        assert_eq!(version(&l1), Some(1));
        assert_eq!(header_size(&l1), None);
        assert!(parse(&l1).is_err());
    }

    #[test]
    fn token_ids_and_json() {
        let m = |tokens: Value| Metadata {
            seqid: 1,
            offset: 0,
            json: serde_json::json!({ "tokens": tokens }),
        };
        // systemd's tokens from 0 up: ours takes the highest free id
        let x = m(
            serde_json::json!({"0": {"type": "systemd-tpm2", "keyslots": ["1"]},
                                    "31": {"type": "other", "keyslots": []}}),
        );
        assert_eq!(x.journal_token(), None);
        assert_eq!(journal_token_id(&x), Some(30));
        assert!(x.has_token_type("systemd-tpm2") && !x.has_token_type("systemd-fido2"));
        let full: serde_json::Map<String, Value> = (0..32)
            .map(|i| {
                (
                    i.to_string(),
                    serde_json::json!({"type": "x", "keyslots": []}),
                )
            })
            .collect();
        assert_eq!(journal_token_id(&m(Value::Object(full))), None);
        let t = token_json(r#"{"step":"switched"}"#);
        let v: Value = serde_json::from_str(&t).unwrap();
        assert_eq!(v["type"], JOURNAL_TOKEN_TYPE);
        assert_eq!(v["keyslots"], serde_json::json!([]));
        assert_eq!(v["journal"], r#"{"step":"switched"}"#);
        let back = m(serde_json::json!({ "7": v }));
        assert_eq!(
            back.journal_token(),
            Some(JournalToken {
                id: 7,
                journal: r#"{"step":"switched"}"#.into()
            })
        );
    }
}
