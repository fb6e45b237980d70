//! `/etc/fstab` as a typed value. Comments, blank lines and the order of entries are kept; only
//! the entries rootshift owns (the root, the ESP, moved swap) are replaced, and entries that only
//! made sense on the live medium are dropped.

use std::fmt;
use std::str::FromStr;

/// One mount entry (fields kept as written, octal escapes included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub spec: String,
    pub file: String,
    pub vfstype: String,
    pub mntops: String,
    pub freq: u32,
    pub passno: u32,
}

impl Entry {
    pub fn new(spec: &str, file: &str, vfstype: &str, mntops: &str, passno: u32) -> Entry {
        Entry {
            spec: spec.into(),
            file: file.into(),
            vfstype: vfstype.into(),
            mntops: mntops.into(),
            freq: 0,
            passno,
        }
    }
}

impl Entry {
    /// The path the spec names: a tag (`UUID=`, `PARTUUID=`, `LABEL=`, `PARTLABEL=`) as udev's
    /// `/dev/disk/by-*` link, anything else as written.
    pub fn spec_path(&self) -> String {
        match self.spec.split_once('=') {
            Some(("UUID", u)) => format!("/dev/disk/by-uuid/{u}"),
            Some(("PARTUUID", u)) => format!("/dev/disk/by-partuuid/{}", u.to_ascii_lowercase()),
            Some(("LABEL", l)) => format!("/dev/disk/by-label/{l}"),
            Some(("PARTLABEL", l)) => format!("/dev/disk/by-partlabel/{l}"),
            _ => self.spec.clone(),
        }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {}",
            self.spec, self.file, self.vfstype, self.mntops, self.freq, self.passno
        )
    }
}

impl FromStr for Entry {
    type Err = String;
    fn from_str(s: &str) -> Result<Entry, String> {
        let w: Vec<&str> = s.split_whitespace().collect();
        if w.len() < 2 || w.len() > 6 {
            return Err(format!(
                "fstab line {s:?}: expected 2 to 6 fields, found {}",
                w.len()
            ));
        }
        let num = |i: usize, what: &str| -> Result<u32, String> {
            w.get(i).map_or(Ok(0), |v| {
                v.parse()
                    .map_err(|_| format!("fstab line {s:?}: {what} {v:?} is not a number"))
            })
        };
        Ok(Entry {
            spec: w[0].into(),
            file: w[1].into(),
            vfstype: w.get(2).unwrap_or(&"auto").to_string(),
            mntops: w.get(3).unwrap_or(&"defaults").to_string(),
            freq: num(4, "dump frequency")?,
            passno: num(5, "pass number")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Entry(Entry),
    /// A comment or blank line, verbatim.
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fstab(pub Vec<Line>);

impl FromStr for Fstab {
    type Err = String;
    fn from_str(s: &str) -> Result<Fstab, String> {
        s.lines()
            .map(|l| {
                let t = l.trim();
                if t.is_empty() || t.starts_with('#') {
                    Ok(Line::Other(l.to_string()))
                } else {
                    t.parse().map(Line::Entry)
                }
            })
            .collect::<Result<_, _>>()
            .map(Fstab)
    }
}

impl fmt::Display for Fstab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.0 {
            match l {
                Line::Entry(e) => writeln!(f, "{e}")?,
                Line::Other(s) => writeln!(f, "{s}")?,
            }
        }
        Ok(())
    }
}

/// A spec or mount point that only exists on a booted live medium.
pub fn is_live_only(e: &Entry) -> bool {
    e.spec.starts_with("/dev/mapper/live-")
        || e.spec == "/dev/root"
        || e.spec == "LiveOS_rootfs"
        || e.spec.starts_with("/dev/sr")
        || e.spec == "/dev/cdrom"
        || e.file.starts_with("/run/initramfs")
        || e.file == "/run/live"
        || e.file.starts_with("/lib/live")
}

impl Fstab {
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.0.iter().filter_map(|l| match l {
            Line::Entry(e) => Some(e),
            Line::Other(_) => None,
        })
    }

    pub fn entry_for(&self, file: &str) -> Option<&Entry> {
        self.entries().find(|e| e.file == file)
    }

    /// Remove every entry `pred` selects; returns them.
    pub fn remove_where(&mut self, pred: impl Fn(&Entry) -> bool) -> Vec<Entry> {
        let mut removed = vec![];
        self.0.retain(|l| match l {
            Line::Entry(e) if pred(e) => {
                removed.push(e.clone());
                false
            }
            _ => true,
        });
        removed
    }

    /// Make `new` the one entry for its mount point (swap: for its spec), in place of the first
    /// existing one. Options of a replaced entry are kept unless `keep_opts` is false.
    pub fn set(&mut self, mut new: Entry, keep_opts: bool) {
        let (is_swap, spec, file) = (new.vfstype == "swap", new.spec.clone(), new.file.clone());
        let same = |e: &Entry| {
            if is_swap {
                e.vfstype == "swap" && e.spec == spec
            } else {
                e.file == file
            }
        };
        let mut placed = false;
        self.0.retain_mut(|l| match l {
            Line::Entry(e) if same(e) => {
                if placed {
                    return false;
                }
                if keep_opts && e.mntops != "defaults" {
                    new.mntops = e.mntops.clone();
                }
                *e = new.clone();
                placed = true;
                true
            }
            _ => true,
        });
        if !placed {
            // the root first, everything else at the end
            if new.file == "/" {
                let at = self
                    .0
                    .iter()
                    .position(|l| matches!(l, Line::Entry(_)))
                    .unwrap_or(self.0.len());
                self.0.insert(at, Line::Entry(new));
            } else {
                self.0.push(Line::Entry(new));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_path_maps_tags_to_udev_links() {
        let e = |spec: &str| Entry::new(spec, "none", "swap", "sw", 0).spec_path();
        assert_eq!(e("UUID=4c44d9e3-cf22"), "/dev/disk/by-uuid/4c44d9e3-cf22");
        assert_eq!(e("PARTUUID=9F27-AB"), "/dev/disk/by-partuuid/9f27-ab");
        assert_eq!(e("LABEL=swap"), "/dev/disk/by-label/swap");
        assert_eq!(e("PARTLABEL=swap"), "/dev/disk/by-partlabel/swap");
        assert_eq!(e("/dev/vda2"), "/dev/vda2");
    }

    const DEBIAN: &str = "# /etc/fstab: static file system information.\n\
        #\n\
        # <file system> <mount point>   <type>  <options>       <dump>  <pass>\n\
        UUID=1111 /               ext4    errors=remount-ro 0       1\n\
        UUID=AB-CD  /boot/efi       vfat    umask=0077      0       1\n\
        /dev/sr0        /media/cdrom0   udf,iso9660 user,noauto     0       0\n\
        \n\
        tmpfs /tmp tmpfs defaults\n";

    #[test]
    fn parse_and_print_keep_comments_and_order() {
        let f: Fstab = DEBIAN.parse().unwrap();
        assert_eq!(f.entries().count(), 4);
        let root = f.entry_for("/").unwrap();
        assert_eq!(
            (root.spec.as_str(), root.mntops.as_str(), root.passno),
            ("UUID=1111", "errors=remount-ro", 1)
        );
        let tmp = f.entry_for("/tmp").unwrap();
        assert_eq!((tmp.freq, tmp.passno), (0, 0));
        let text = f.to_string();
        assert!(text.starts_with("# /etc/fstab: static file system information.\n#\n"));
        assert!(text.contains("UUID=1111 / ext4 errors=remount-ro 0 1\n"));
        assert_eq!(text.parse::<Fstab>().unwrap(), f);
        assert!("onlyone".parse::<Fstab>().is_err());
        assert!("a b c d x".parse::<Fstab>().is_err());
    }

    #[test]
    fn root_replaced_keeping_options_live_entries_dropped() {
        let mut f: Fstab = DEBIAN.parse().unwrap();
        f.set(Entry::new("UUID=2222", "/", "ext4", "defaults", 1), true);
        let removed = f.remove_where(is_live_only);
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].file, "/media/cdrom0");
        assert_eq!(
            f.entry_for("/").unwrap().to_string(),
            "UUID=2222 / ext4 errors=remount-ro 0 1"
        );
        assert_eq!(f.entries().filter(|e| e.file == "/").count(), 1);
    }

    #[test]
    fn live_image_fstab_gets_a_root_entry_first() {
        let mut f: Fstab =
            "# live system: / is mounted by the initrd\n/dev/root / ext4 defaults 0 0\n"
                .parse()
                .unwrap();
        f.remove_where(is_live_only);
        f.set(Entry::new("UUID=2222", "/", "ext4", "defaults", 1), true);
        f.set(
            Entry::new("UUID=AB-CD", "/boot/efi", "vfat", "umask=0077", 2),
            false,
        );
        assert_eq!(
            f.to_string(),
            "# live system: / is mounted by the initrd\nUUID=2222 / ext4 defaults 0 1\nUUID=AB-CD /boot/efi vfat umask=0077 0 2\n"
        );
    }

    #[test]
    fn swap_entries_are_keyed_by_spec() {
        let mut f: Fstab = "UUID=1 / ext4 defaults 0 1\n/dev/sda2 none swap sw 0 0\n"
            .parse()
            .unwrap();
        f.set(Entry::new("/swapfile", "none", "swap", "sw", 0), false);
        assert_eq!(f.entries().filter(|e| e.vfstype == "swap").count(), 2);
        f.remove_where(|e| e.spec == "/dev/sda2");
        assert_eq!(
            f.to_string(),
            "UUID=1 / ext4 defaults 0 1\n/swapfile none swap sw 0 0\n"
        );
    }
}
