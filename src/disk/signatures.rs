//! What a device holds, as `wipefs --no-act --json` reports it: libblkid's full probe (the one
//! `blkid -p` uses) of every filesystem, RAID, volume-manager and partition-table signature,
//! wherever it sits — md 0.90/1.0 superblocks and ZFS labels at the end, bcache, f2fs, ReiserFS,
//! BitLocker. The built-in probe of the first 68 KiB (`kernel::fs::probe`) remains for the initrd
//! and for a system without util-linux's wipefs.

use std::fmt;
use std::str::FromStr;

use anyhow::Result;
use serde::Deserialize;

use crate::kernel::blockdev::BlockDev;
use crate::tools;

/// One signature wipefs found.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Signature {
    /// Byte offset, as wipefs prints it (`0x438`).
    pub offset: String,
    /// libblkid's name for it: `ext4`, `vfat`, `linux_raid_member`, `zfs_member`, `gpt`, `PMBR`…
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
}

/// Everything wipefs found on one device, in its order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signatures(pub Vec<Signature>);

#[derive(Deserialize)]
struct WipefsJson {
    #[serde(default)]
    signatures: Vec<Signature>,
}

impl FromStr for Signatures {
    type Err = String;
    /// `wipefs --json` output; util-linux prints nothing at all for a device without signatures.
    fn from_str(s: &str) -> Result<Signatures, String> {
        if s.trim().is_empty() {
            return Ok(Signatures::default());
        }
        serde_json::from_str::<WipefsJson>(s)
            .map(|w| Signatures(w.signatures))
            .map_err(|e| format!("unexpected wipefs --json output: {e}"))
    }
}

impl Signatures {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every signature is one of `kinds` (an ESP that holds only a FAT filesystem).
    pub fn only(&self, kinds: &[&str]) -> bool {
        self.0.iter().all(|s| kinds.contains(&s.kind.as_str()))
    }

    /// The kinds, each once, in the order first found.
    pub fn kinds(&self) -> Vec<&str> {
        let mut k: Vec<&str> = vec![];
        for s in &self.0 {
            if !k.contains(&s.kind.as_str()) {
                k.push(&s.kind);
            }
        }
        k
    }
}

impl fmt::Display for Signatures {
    /// One item per kind: `ext4 "data" (UUID …) at 0x438`, `zfs_member (256 signatures from
    /// 0x20c00)` — a ZFS label repeats its uberblock magic hundreds of times.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no signature");
        }
        let items: Vec<String> = self
            .kinds()
            .into_iter()
            .map(|k| {
                let all: Vec<&Signature> = self.0.iter().filter(|s| s.kind == k).collect();
                let first = all[0];
                let mut item = k.to_string();
                if let Some(l) = first.label.as_deref().filter(|l| !l.is_empty()) {
                    item += &format!(" \"{l}\"");
                }
                if let Some(u) = first.uuid.as_deref().filter(|u| !u.is_empty()) {
                    item += &format!(" (UUID {u})");
                }
                if all.len() == 1 {
                    item += &format!(" at {}", first.offset);
                } else {
                    item += &format!(" ({} signatures from {})", all.len(), first.offset);
                }
                item
            })
            .collect();
        f.write_str(&items.join(", "))
    }
}

/// `wipefs --no-act --json DEV` (reads only). None when wipefs is not installed.
pub fn probe(dev: &BlockDev) -> Result<Option<Signatures>> {
    if tools::find("wipefs").is_none() {
        return Ok(None);
    }
    let path = dev.path.display().to_string();
    let out = tools::run("wipefs", &["--no-act", "--json", &path])?;
    out.parse::<Signatures>()
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{path}: {e}"))
}

/// What is on `dev`, in words (None: nothing found): wipefs's full probe, or the built-in probe
/// of the first 68 KiB where wipefs is missing.
pub fn holds(dev: &BlockDev) -> Result<Option<String>> {
    if let Some(s) = probe(dev)? {
        return Ok((!s.is_empty()).then(|| s.to_string()));
    }
    let head = dev.read_head(crate::kernel::fs::PROBE_BYTES)?;
    Ok(crate::kernel::fs::probe(&head).map(|c| c.describe().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXT4: &str = r#"{
   "signatures": [
      {
         "device": "nbt.raw",
         "offset": "0x438",
         "type": "ext4",
         "uuid": "f80dec36-2b54-45ff-8a35-dd62acc71812",
         "label": "lab"
      }
   ]
}"#;

    #[test]
    fn parses_wipefs_json() {
        let s: Signatures = EXT4.parse().unwrap();
        assert_eq!(s.0.len(), 1);
        assert_eq!(s.0[0].kind, "ext4");
        assert_eq!(s.0[0].offset, "0x438");
        assert_eq!(
            s.to_string(),
            "ext4 \"lab\" (UUID f80dec36-2b54-45ff-8a35-dd62acc71812) at 0x438"
        );
        assert!(!s.only(&["vfat"]));
    }

    #[test]
    fn nothing_found_is_empty_whether_printed_or_not() {
        assert!("".parse::<Signatures>().unwrap().is_empty());
        assert!("{\n   \"signatures\": [\n\n   ]\n}\n"
            .parse::<Signatures>()
            .unwrap()
            .is_empty());
        assert!("not json".parse::<Signatures>().is_err());
    }

    #[test]
    fn repeated_signatures_are_summed_up_per_kind() {
        let one = |off: &str, kind: &str| {
            format!(r#"{{"device":"d","offset":"{off}","type":"{kind}","uuid":null,"label":null}}"#)
        };
        let text = format!(
            r#"{{"signatures":[{},{},{},{}]}}"#,
            one("0x3fc00", "zfs_member"),
            one("0x3f800", "zfs_member"),
            one("0x3ffe000", "linux_raid_member"),
            one("0x200", "gpt")
        );
        let s: Signatures = text.parse().unwrap();
        assert_eq!(s.kinds(), ["zfs_member", "linux_raid_member", "gpt"]);
        assert_eq!(
            s.to_string(),
            "zfs_member (2 signatures from 0x3fc00), linux_raid_member at 0x3ffe000, gpt at 0x200"
        );
        assert!(!s.only(&["vfat"]));
        assert!(Signatures(vec![]).only(&["vfat"]));
    }
}
