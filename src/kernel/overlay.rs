//! overlayfs mount options as the kernel shows them in /proc/self/mountinfo's super options
//! (fs/overlayfs/params.c `ovl_show_options`): `lowerdir=A:B` (upper layers first; `::` before the
//! data-only layers), `upperdir=`, `workdir=`, plus flags rootshift does not need.
//!
//! Paths are the strings given at mount time (not resolved again by the kernel), escaped twice:
//! overlayfs escapes `:` and `,` in a path with a backslash-free octal code through
//! `seq_escape` (`\072`, `\054`), and mountinfo escapes space, tab, newline and backslash the same
//! way. [`OverlayOptions`] holds them unescaped; `Display` writes them back escaped.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where the layers of an overlay mount are.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OverlayOptions {
    /// Lower layers, uppermost first; data-only layers (after `::`) included at the end.
    pub lowerdirs: Vec<PathBuf>,
    /// The writable layer (absent on a read-only overlay).
    pub upperdir: Option<PathBuf>,
    pub workdir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("cannot parse the overlay mount options {text:?}: {why}")]
pub struct OverlayParseError {
    pub text: String,
    pub why: String,
}

/// Undo the kernel's octal escapes (`\072` → `:`); any other backslash is kept as is.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            ':' | ',' | ' ' | '\t' | '\n' | '\\' | '=' => {
                out.push_str(&format!("\\{:03o}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

impl FromStr for OverlayOptions {
    type Err = OverlayParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |why: &str| OverlayParseError {
            text: text.to_string(),
            why: why.to_string(),
        };
        let mut o = OverlayOptions::default();
        for opt in text.trim().split(',').filter(|s| !s.is_empty()) {
            let (k, v) = match opt.split_once('=') {
                Some((k, v)) => (k, v),
                None => continue, // flags: rw, ro, userxattr, …
            };
            match k {
                "lowerdir" => {
                    // separators are literal ':' (a ':' inside a path is escaped); "::" marks
                    // the start of the data-only layers
                    for p in v.split(':').filter(|p| !p.is_empty()) {
                        o.lowerdirs.push(PathBuf::from(unescape(p)));
                    }
                }
                // new mount API: one lower layer per option (shown this way by some kernels)
                "lowerdir+" | "datadir+" => o.lowerdirs.push(PathBuf::from(unescape(v))),
                "upperdir" => o.upperdir = Some(PathBuf::from(unescape(v))),
                "workdir" => o.workdir = Some(PathBuf::from(unescape(v))),
                _ => {}
            }
        }
        if o.lowerdirs.is_empty() {
            return Err(err("no lowerdir"));
        }
        if o.upperdir.is_some() != o.workdir.is_some() {
            return Err(err("upperdir and workdir come together"));
        }
        Ok(o)
    }
}

impl fmt::Display for OverlayOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lower: Vec<String> = self
            .lowerdirs
            .iter()
            .map(|p| escape(&p.to_string_lossy()))
            .collect();
        write!(f, "lowerdir={}", lower.join(":"))?;
        if let (Some(u), Some(w)) = (&self.upperdir, &self.workdir) {
            write!(
                f,
                ",upperdir={},workdir={}",
                escape(&u.to_string_lossy()),
                escape(&w.to_string_lossy())
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_boot_root() {
        // Debian 13 live-boot, /proc/self/mountinfo super options of /
        let o: OverlayOptions = "rw,lowerdir=/run/live/rootfs/filesystem.squashfs/,upperdir=/run/live/overlay/rw,workdir=/run/live/overlay/work,redirect_dir=on,uuid=on,nfs_export=on"
            .parse()
            .unwrap();
        assert_eq!(
            o.lowerdirs,
            vec![PathBuf::from("/run/live/rootfs/filesystem.squashfs/")]
        );
        assert_eq!(o.upperdir, Some(PathBuf::from("/run/live/overlay/rw")));
        assert_eq!(o.workdir, Some(PathBuf::from("/run/live/overlay/work")));
    }

    #[test]
    fn several_lowers_and_data_only_layers() {
        let o: OverlayOptions = "ro,lowerdir=/a:/b::/data,redirect_dir=follow"
            .parse()
            .unwrap();
        assert_eq!(
            o.lowerdirs,
            vec![
                PathBuf::from("/a"),
                PathBuf::from("/b"),
                PathBuf::from("/data")
            ]
        );
        assert_eq!(o.upperdir, None);
    }

    #[test]
    fn escaped_paths() {
        let o: OverlayOptions =
            "rw,lowerdir=/media/my\\040disk/x\\072y,upperdir=/u\\054v,workdir=/w"
                .parse()
                .unwrap();
        assert_eq!(o.lowerdirs, vec![PathBuf::from("/media/my disk/x:y")]);
        assert_eq!(o.upperdir, Some(PathBuf::from("/u,v")));
        assert_eq!(
            o.to_string(),
            "lowerdir=/media/my\\040disk/x\\072y,upperdir=/u\\054v,workdir=/w"
        );
        assert_eq!(o.to_string().parse::<OverlayOptions>().unwrap(), o);
    }

    #[test]
    fn new_mount_api_layers() {
        let o: OverlayOptions = "rw,lowerdir+=/l1,lowerdir+=/l2,datadir+=/d,upperdir=/u,workdir=/w"
            .parse()
            .unwrap();
        assert_eq!(o.lowerdirs.len(), 3);
    }

    #[test]
    fn errors_name_the_problem() {
        let e = "rw,upperdir=/u,workdir=/w"
            .parse::<OverlayOptions>()
            .unwrap_err();
        assert!(e.to_string().contains("no lowerdir"), "{e}");
        let e = "rw,lowerdir=/l,upperdir=/u"
            .parse::<OverlayOptions>()
            .unwrap_err();
        assert!(e.why.contains("together"), "{e}");
    }
}
