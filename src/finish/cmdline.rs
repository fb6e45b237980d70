//! The kernel command line as a typed value: parse `/proc/cmdline`, drop what only made sense
//! for the live medium or this one boot, and carry the rest into the installed system.

use std::fmt;
use std::str::FromStr;

/// A kernel command line: its words in order (a quoted value keeps its quotes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cmdline(pub Vec<String>);

impl FromStr for Cmdline {
    type Err = String;
    fn from_str(s: &str) -> Result<Cmdline, String> {
        let mut words = vec![];
        let mut cur = String::new();
        let mut quoted = false;
        for c in s.trim().chars() {
            match c {
                '"' => {
                    quoted = !quoted;
                    cur.push(c);
                }
                c if c.is_whitespace() && !quoted => {
                    if !cur.is_empty() {
                        words.push(std::mem::take(&mut cur));
                    }
                }
                c => cur.push(c),
            }
        }
        if quoted {
            return Err(format!("unbalanced quote in kernel command line {s:?}"));
        }
        if !cur.is_empty() {
            words.push(cur);
        }
        Ok(Cmdline(words))
    }
}

impl fmt::Display for Cmdline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

/// Options that describe how *this* boot found its root or its live medium, never how the
/// installed system should boot (dracut dmsquash-live, Debian live-boot, casper, anaconda, GRUB).
const DROP_KEYS: &[&str] = &[
    "root",
    "rootfstype",
    "rootflags",
    "ro",
    "rw",
    "BOOT_IMAGE",
    "initrd",
    "iso-scan/filename",
    "findiso",
    "boot",
    "cdroot",
    "rd.writable.fsimg",
    "rd.break",
    "rd.luks.uuid",
    "resume",
    // Debian live-boot's (manual page live-boot(7)): how this boot found its medium and layers
    "components",
    "persistence",
    "persistence-label",
    "persistence-media",
    "persistence-path",
    "persistence-storage",
    "nopersistence",
    "union",
    "noeject",
    "toram",
    "fetch",
    "httpfs",
    "ftpfs",
    "ignore_uuid",
    "module",
    "plainroot",
];
const DROP_PREFIXES: &[&str] = &[
    "rd.live.",
    "live-",
    "inst.",
    "rd.overlay",
    "rd.rootshift.live",
];

impl Cmdline {
    pub fn read() -> std::io::Result<Cmdline> {
        let s = std::fs::read_to_string("/proc/cmdline")?;
        s.parse().map_err(std::io::Error::other)
    }

    fn key(word: &str) -> &str {
        word.split_once('=').map_or(word, |(k, _)| k)
    }

    /// The value of the last `key=value` (None when absent; "" for a bare `key`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find_map(|w| match w.split_once('=') {
            Some((k, v)) if k == key => Some(v),
            None if w == key => Some(""),
            _ => None,
        })
    }

    /// The options the installed system keeps: everything except how this boot found its root.
    pub fn for_installed(&self) -> Cmdline {
        Cmdline(
            self.0
                .iter()
                .filter(|w| {
                    let k = Self::key(w);
                    !DROP_KEYS.contains(&k) && !DROP_PREFIXES.iter().any(|p| k.starts_with(p))
                })
                .cloned()
                .collect(),
        )
    }

    /// The first serial console (`console=ttyS1,115200n8` → unit 1, speed 115200).
    pub fn serial_console(&self) -> Option<(u32, u32)> {
        self.0.iter().find_map(|w| {
            let v = w.strip_prefix("console=ttyS")?;
            let (unit, rest) = v.split_once(',').unwrap_or((v, ""));
            let unit = unit.parse().ok()?;
            let speed: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            Some((unit, speed.parse().unwrap_or(9600)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_back() {
        let c: Cmdline = "  BOOT_IMAGE=/vmlinuz root=UUID=1 ro  quiet  opt=\"a b\" "
            .parse()
            .unwrap();
        assert_eq!(
            c.0,
            [
                "BOOT_IMAGE=/vmlinuz",
                "root=UUID=1",
                "ro",
                "quiet",
                "opt=\"a b\""
            ]
        );
        assert_eq!(
            c.to_string(),
            "BOOT_IMAGE=/vmlinuz root=UUID=1 ro quiet opt=\"a b\""
        );
        assert!("a=\"b".parse::<Cmdline>().is_err());
        assert_eq!(c.get("root"), Some("UUID=1"));
        assert_eq!(c.get("quiet"), Some(""));
        assert_eq!(c.get("splash"), None);
    }

    #[test]
    fn live_options_do_not_reach_the_installed_system() {
        let live: Cmdline = "console=ttyS0,115200 panic=-1 root=live:CDLABEL=ROOTSHIFT-LIVE rd.live.image \
                             rd.live.overlay.size=4096 rd.shell=0 systemd.unit=multi-user.target \
                             BOOT_IMAGE=/boot/vmlinuz initrd=/boot/initrd.img rd.rootshift=md quiet"
            .parse()
            .unwrap();
        assert_eq!(
            live.for_installed().to_string(),
            "console=ttyS0,115200 panic=-1 rd.shell=0 systemd.unit=multi-user.target rd.rootshift=md quiet"
        );
        let debian_live: Cmdline =
            "boot=live components findiso=/x.iso live-media=/dev/sdb nomodeset"
                .parse()
                .unwrap();
        assert_eq!(debian_live.for_installed().to_string(), "nomodeset");
    }

    #[test]
    fn serial_console() {
        let c: Cmdline = "console=tty0 console=ttyS1,115200n8".parse().unwrap();
        assert_eq!(c.serial_console(), Some((1, 115200)));
        let c: Cmdline = "console=ttyS0".parse().unwrap();
        assert_eq!(c.serial_console(), Some((0, 9600)));
        let c: Cmdline = "console=tty0 quiet".parse().unwrap();
        assert_eq!(c.serial_console(), None);
    }
}
