//! `/etc/crypttab` (crypttab(5)): `NAME SOURCE [KEY [OPTIONS]]` per line, `#` comments. The
//! install step of an encrypted root (`--encrypt`) adds the root's container, by its LUKS UUID,
//! so that the initramfs (cryptsetup-initramfs' cryptroot, dracut's crypt module) unlocks it
//! before the root is looked for. Every other line is kept as it was.

use std::fmt;
use std::str::FromStr;

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub source: String,
    /// A key file, or `none` (a passphrase asked for at boot).
    pub key: String,
    pub options: String,
}

impl Entry {
    /// The entry of a LUKS container found by its UUID.
    pub fn luks(name: &str, luks_uuid: &str, key: Option<&str>) -> Entry {
        Entry {
            name: name.into(),
            source: format!("UUID={luks_uuid}"),
            key: key.unwrap_or("none").into(),
            options: "luks,discard".into(),
        }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.name, self.source, self.key, self.options
        )
    }
}

impl FromStr for Entry {
    type Err = String;
    fn from_str(s: &str) -> Result<Entry, String> {
        let w: Vec<&str> = s.split_whitespace().collect();
        match w.as_slice() {
            [name, source, rest @ ..] if rest.len() <= 2 => Ok(Entry {
                name: name.to_string(),
                source: source.to_string(),
                key: rest.first().unwrap_or(&"none").to_string(),
                options: rest.get(1).unwrap_or(&"").to_string(),
            }),
            _ => Err(format!(
                "{s:?}: a crypttab entry is NAME SOURCE [KEY [OPTIONS]]"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Entry(Entry),
    /// A comment, a blank line.
    Other(String),
}

/// The whole file, its lines in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Crypttab {
    lines: Vec<Line>,
}

impl FromStr for Crypttab {
    type Err = String;
    fn from_str(s: &str) -> Result<Crypttab, String> {
        let lines = s
            .lines()
            .enumerate()
            .map(|(i, l)| {
                let t = l.trim();
                if t.is_empty() || t.starts_with('#') {
                    Ok(Line::Other(l.to_string()))
                } else {
                    t.parse()
                        .map(Line::Entry)
                        .map_err(|e| format!("line {}: {e}", i + 1))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Crypttab { lines })
    }
}

impl fmt::Display for Crypttab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.lines {
            match l {
                Line::Entry(e) => writeln!(f, "{e}")?,
                Line::Other(t) => writeln!(f, "{t}")?,
            }
        }
        Ok(())
    }
}

impl Crypttab {
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.lines.iter().filter_map(|l| match l {
            Line::Entry(e) => Some(e),
            Line::Other(_) => None,
        })
    }

    /// Put `e` in: it replaces every entry of the same name or the same source (compared without
    /// regard to case: a UUID), at the first one's place; else it is appended. Returns what it
    /// replaced.
    pub fn set(&mut self, e: Entry) -> Vec<Entry> {
        let same = |x: &Entry| x.name == e.name || x.source.eq_ignore_ascii_case(&e.source);
        let mut replaced = vec![];
        let mut at = None;
        let mut kept = vec![];
        for l in self.lines.drain(..) {
            match l {
                Line::Entry(x) if same(&x) => {
                    at.get_or_insert(kept.len());
                    replaced.push(x);
                }
                l => kept.push(l),
            }
        }
        kept.insert(at.unwrap_or(kept.len()), Line::Entry(e));
        self.lines = kept;
        replaced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &str = "# <target name>\t<source device>\t\t<key file>\t<options>\n\
                          sda3_crypt UUID=0b3c9f8e-1111-4b8e-9d55-1c1e6f0a7b31 none luks,discard\n\
                          cswap /dev/sda4 /dev/urandom swap,cipher=aes-xts-plain64,size=256\n";

    #[test]
    fn parses_and_prints_back() {
        let t: Crypttab = DEBIAN.parse().unwrap();
        let e: Vec<&Entry> = t.entries().collect();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].name, "sda3_crypt");
        assert_eq!(e[1].key, "/dev/urandom");
        assert_eq!(e[1].options, "swap,cipher=aes-xts-plain64,size=256");
        // the comment kept; the entries with single spaces
        assert!(t
            .to_string()
            .starts_with("# <target name>\t<source device>"));
        assert_eq!(t.to_string().parse::<Crypttab>().unwrap(), t);
        // two words: key none, no options
        let x: Entry = "data UUID=abc".parse().unwrap();
        assert_eq!((x.key.as_str(), x.options.as_str()), ("none", ""));
        assert!("lonely".parse::<Entry>().is_err());
        assert!("a b c d e".parse::<Entry>().is_err());
        assert!("ok /dev/x none luks\nbad"
            .parse::<Crypttab>()
            .unwrap_err()
            .contains("line 2"));
    }

    #[test]
    fn the_root_entry_replaces_its_own_and_appends_otherwise() {
        let mut t: Crypttab = DEBIAN.parse().unwrap();
        let e = Entry::luks("luks-4f1c", "4F1C7A52-0000", None);
        assert_eq!(
            e.to_string(),
            "luks-4f1c UUID=4F1C7A52-0000 none luks,discard"
        );
        assert!(t.set(e.clone()).is_empty());
        assert_eq!(t.entries().last(), Some(&e));
        // the same container again, by another name and a key file: replaced in place
        let k = Entry::luks("root", "4f1c7a52-0000", Some("/etc/keys/root.key"));
        let old = t.set(k.clone());
        assert_eq!(old, vec![e]);
        assert_eq!(t.entries().count(), 3);
        // another entry of that name: replaced at its place, the other dropped
        let mut t: Crypttab = DEBIAN.parse().unwrap();
        t.set(Entry::luks("cswap", "1234", None));
        let names: Vec<&str> = t.entries().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["sda3_crypt", "cswap"]);
        // an empty file
        let mut t = Crypttab::default();
        t.set(k.clone());
        assert_eq!(t.to_string(), format!("{k}\n"));
    }
}
