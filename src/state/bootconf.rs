//! `/etc/rootshift/rootshift.conf`: whether the initrd hook wraps the root at boot. The
//! initramfs-tools hook and the dracut module copy it into the initrd when it is built; the hook
//! reads it there (`rd.rootshift=` on the kernel command line still overrides it). Written by
//! `rootshift boot enable|disable`, or by hand.
//!
//! The format: `key=value` lines; blank lines and lines whose first non-blank character is `#`
//! are comments (a `#` after a value is part of the value); spaces and tabs around the key and
//! the value are ignored. Keys now:
//!
//! - `wrap`: `dm` or `md` (wrap the root in that backend), `no` (do not wrap; `off` and `0` are
//!   read as `no`, and `no` is what rootshift writes). No `wrap` line, or no file: `no`. When
//!   `wrap` is given more than once the last line counts (the hook reads the file top to bottom).
//!
//! - `live`: `upper` puts a live medium's overlay upper layer on `rootshift-upper` (ext4 on zram)
//!   at boot (initrd-hook/README.md); read by the hooks only.
//!
//! Any other key is kept as it is (a newer rootshift's setting): a rewrite changes only the
//! `wrap` line, in place, and keeps every other line, comments included.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Where the setting lives (also inside the initrd).
pub const PATH: &str = "/etc/rootshift/rootshift.conf";

/// What the hook does with the root at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Wrap {
    /// Wrap it in a device-mapper linear device.
    Dm,
    /// Wrap it in a superblock-less md raid1.
    Md,
    /// Boot it unwrapped (the default).
    #[default]
    No,
}

impl Wrap {
    pub fn as_str(self) -> &'static str {
        match self {
            Wrap::Dm => "dm",
            Wrap::Md => "md",
            Wrap::No => "no",
        }
    }
}

impl fmt::Display for Wrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The values `wrap=` takes, for messages.
pub const WRAP_VALUES: &str = "dm, md or no (off and 0 also mean no)";

impl FromStr for Wrap {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "dm" => Ok(Wrap::Dm),
            "md" => Ok(Wrap::Md),
            "no" | "off" | "0" => Ok(Wrap::No),
            _ => Err(format!("wrap={s}: the value must be {WRAP_VALUES}")),
        }
    }
}

/// A line of the file that is not what the format allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{PATH} line {line}: {why}")]
pub struct BadConf {
    /// 1-based.
    pub line: usize,
    pub why: String,
}

/// The file's content: every line as written, and where the `wrap` line is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BootConf {
    lines: Vec<String>,
    /// The index in `lines` of the `wrap` line that counts (the last one), and its value.
    wrap: Option<(usize, Wrap)>,
}

/// What a line of the file is.
fn key_value(line: &str) -> Option<(&str, &str)> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    Some(match t.split_once('=') {
        Some((k, v)) => (k.trim(), v.trim()),
        None => (t, ""),
    })
}

impl FromStr for BootConf {
    type Err = BadConf;
    fn from_str(s: &str) -> Result<Self, BadConf> {
        let mut c = BootConf::default();
        for (i, line) in s.lines().enumerate() {
            if let Some((k, v)) = key_value(line) {
                if !line.contains('=') || k.is_empty() {
                    return Err(BadConf {
                        line: i + 1,
                        why: format!("{:?} is not a key=value line or a # comment", line.trim()),
                    });
                }
                if k == "wrap" {
                    let w = v.parse().map_err(|why| BadConf { line: i + 1, why })?;
                    c.wrap = Some((i, w));
                }
            }
            c.lines.push(line.to_string());
        }
        Ok(c)
    }
}

/// The lines as read (a rewritten `wrap` line as `wrap=VALUE`), each ending in a newline.
impl fmt::Display for BootConf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.lines {
            writeln!(f, "{l}")?;
        }
        Ok(())
    }
}

impl BootConf {
    /// What a file written from nothing starts with.
    pub const HEADER: &'static str = "# rootshift: wrap the root filesystem at boot, so that \
        `rootshift migrate` can move it (read by the initrd hook; rebuild the initramfs after \
        a change).\n# wrap=dm|md|no (default no); rd.rootshift= on the kernel command line \
        overrides it. `rootshift boot enable|disable` edits this file.\n";

    /// A new file: the header comment and nothing set.
    pub fn new_file() -> BootConf {
        Self::HEADER.parse().expect("the header is comments")
    }

    /// The setting: the `wrap` line's value, or `no` when there is none.
    pub fn wrap(&self) -> Wrap {
        self.wrap_given().unwrap_or_default()
    }

    /// The `wrap` line's value (None: no `wrap` line).
    pub fn wrap_given(&self) -> Option<Wrap> {
        self.wrap.map(|(_, w)| w)
    }

    /// Set `wrap`: the line that counts is replaced in place (earlier `wrap` lines, which did not
    /// count, are dropped), or `wrap=VALUE` is appended.
    pub fn set_wrap(&mut self, w: Wrap) {
        let line = format!("wrap={w}");
        match self.wrap {
            Some((at, _)) => {
                self.lines[at] = line;
                // drop the earlier wrap lines, keeping the index of the one that counts right
                let mut i = 0;
                let mut removed = 0;
                self.lines.retain(|l| {
                    let keep = i >= at || key_value(l).is_none_or(|(k, _)| k != "wrap");
                    if !keep {
                        removed += 1;
                    }
                    i += 1;
                    keep
                });
                self.wrap = Some((at - removed, w));
            }
            None => {
                self.lines.push(line);
                self.wrap = Some((self.lines.len() - 1, w));
            }
        }
    }
}

/// The setting in force and where it comes from (`boot show`, `status --json`'s `setting`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting {
    /// The value (None: the file could not be read or parsed; see `error`).
    pub wrap: Option<Wrap>,
    /// `default` (no file, or no `wrap` line in it) or the file's path.
    pub from: String,
    /// Why the file could not be used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the file exists (for the wording of [`Setting::describe`]).
    #[serde(skip)]
    pub file_exists: bool,
}

impl Setting {
    /// From the file's content (None: there is no file).
    pub fn of(content: Option<&str>) -> Setting {
        let Some(text) = content else {
            return Setting {
                wrap: Some(Wrap::No),
                from: "default".into(),
                error: None,
                file_exists: false,
            };
        };
        match text.parse::<BootConf>() {
            Ok(c) => Setting {
                wrap: Some(c.wrap()),
                from: if c.wrap_given().is_some() {
                    PATH.into()
                } else {
                    "default".into()
                },
                error: None,
                file_exists: true,
            },
            Err(e) => Setting {
                wrap: None,
                from: PATH.into(),
                error: Some(e.to_string()),
                file_exists: true,
            },
        }
    }

    /// This system's setting, from [`PATH`].
    pub fn read() -> Setting {
        match std::fs::read_to_string(PATH) {
            Ok(s) => Setting::of(Some(&s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Setting::of(None),
            Err(e) => Setting {
                wrap: None,
                from: PATH.into(),
                error: Some(format!("reading {PATH}: {e}")),
                file_exists: true,
            },
        }
    }

    /// `wrap=dm (from /etc/rootshift/rootshift.conf)`, `wrap=no (default: no
    /// /etc/rootshift/rootshift.conf)`, `wrap=no (default: no wrap= line in …)`.
    pub fn describe(&self) -> String {
        match (&self.wrap, &self.error) {
            (_, Some(e)) => format!("unknown: {e}"),
            (Some(w), None) if self.from != "default" => format!("wrap={w} (from {PATH})"),
            (Some(w), None) if self.file_exists => {
                format!("wrap={w} (default: no wrap= line in {PATH})")
            }
            (Some(w), None) => format!("wrap={w} (default: no {PATH})"),
            (None, None) => format!("unknown ({PATH})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrap_comments_and_unknown_keys() {
        let s = "# wrap the root\n\n  wrap = md  \nlive=toram\n";
        let c: BootConf = s.parse().unwrap();
        assert_eq!(c.wrap(), Wrap::Md);
        assert_eq!(c.wrap_given(), Some(Wrap::Md));
        assert_eq!(c.to_string(), s, "round trip keeps every line as written");
        for (v, w) in [
            ("dm", Wrap::Dm),
            ("md", Wrap::Md),
            ("no", Wrap::No),
            ("off", Wrap::No),
            ("0", Wrap::No),
        ] {
            assert_eq!(format!("wrap={v}").parse::<BootConf>().unwrap().wrap(), w);
        }
    }

    #[test]
    fn no_file_or_no_wrap_line_is_no() {
        assert_eq!("".parse::<BootConf>().unwrap().wrap(), Wrap::No);
        let c: BootConf = "# nothing\nlive=x\n".parse().unwrap();
        assert_eq!(c.wrap(), Wrap::No);
        assert_eq!(c.wrap_given(), None);
        assert_eq!(BootConf::default().wrap(), Wrap::No);
    }

    #[test]
    fn set_wrap_in_place_keeps_the_rest() {
        let mut c: BootConf = "# top\nwrap=dm\n# after\nfuture=1\n".parse().unwrap();
        c.set_wrap(Wrap::No);
        assert_eq!(c.to_string(), "# top\nwrap=no\n# after\nfuture=1\n");
        c.set_wrap(Wrap::Md);
        assert_eq!(c.to_string(), "# top\nwrap=md\n# after\nfuture=1\n");
        assert_eq!(c.to_string().parse::<BootConf>().unwrap(), c);
    }

    #[test]
    fn set_wrap_appends_when_absent() {
        let mut c: BootConf = "# keep me\nfuture = yes".parse().unwrap();
        c.set_wrap(Wrap::Dm);
        assert_eq!(c.to_string(), "# keep me\nfuture = yes\nwrap=dm\n");
        let mut n = BootConf::new_file();
        assert_eq!(n.wrap_given(), None);
        n.set_wrap(Wrap::Dm);
        assert_eq!(n.to_string(), format!("{}wrap=dm\n", BootConf::HEADER));
    }

    #[test]
    fn the_last_wrap_line_counts_and_a_rewrite_leaves_one() {
        let mut c: BootConf = "wrap=dm\n# x\nwrap=off\ny=2\n".parse().unwrap();
        assert_eq!(c.wrap(), Wrap::No);
        c.set_wrap(Wrap::Md);
        assert_eq!(c.to_string(), "# x\nwrap=md\ny=2\n");
        assert_eq!(c.wrap(), Wrap::Md);
        c.set_wrap(Wrap::Dm);
        assert_eq!(c.to_string(), "# x\nwrap=dm\ny=2\n");
    }

    #[test]
    fn off_and_0_are_rewritten_as_no_only_when_set() {
        let mut c: BootConf = "wrap=off\n".parse().unwrap();
        assert_eq!(c.to_string(), "wrap=off\n");
        c.set_wrap(Wrap::No);
        assert_eq!(c.to_string(), "wrap=no\n");
    }

    #[test]
    fn bad_values_name_the_file_the_line_and_the_allowed_values() {
        let e = "# c\nwrap=yes\n".parse::<BootConf>().unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(
            e.to_string(),
            "/etc/rootshift/rootshift.conf line 2: wrap=yes: the value must be dm, md or no \
             (off and 0 also mean no)"
        );
        for bad in ["wrap=", "wrap=DM", "wrap=\"dm\"", "wrap=dm # inline"] {
            assert!(bad.parse::<BootConf>().is_err(), "{bad}");
        }
        let e = "wrap=dm\njust words\n".parse::<BootConf>().unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().contains("not a key=value line"), "{e}");
        assert!("=dm\n".parse::<BootConf>().is_err());
    }

    #[test]
    fn comments_may_be_indented_and_hold_equals_signs() {
        let s = "   # wrap=yes would be wrong\n\t\nwrap=dm\n";
        let c: BootConf = s.parse().unwrap();
        assert_eq!(c.wrap(), Wrap::Dm);
        assert_eq!(c.to_string(), s);
    }

    #[test]
    fn setting_says_where_it_comes_from() {
        let none = Setting::of(None);
        assert_eq!(none.wrap, Some(Wrap::No));
        assert_eq!(none.from, "default");
        assert_eq!(
            none.describe(),
            "wrap=no (default: no /etc/rootshift/rootshift.conf)"
        );
        let file = Setting::of(Some("wrap=dm\n"));
        assert_eq!(
            file.describe(),
            "wrap=dm (from /etc/rootshift/rootshift.conf)"
        );
        assert_eq!(
            serde_json::to_string(&file).unwrap(),
            r#"{"wrap":"dm","from":"/etc/rootshift/rootshift.conf"}"#
        );
        let empty = Setting::of(Some("# nothing\n"));
        assert_eq!(
            empty.describe(),
            "wrap=no (default: no wrap= line in /etc/rootshift/rootshift.conf)"
        );
        let bad = Setting::of(Some("wrap=maybe\n"));
        assert_eq!(bad.wrap, None);
        assert!(bad.describe().contains("line 1: wrap=maybe"));
        assert!(serde_json::to_string(&bad)
            .unwrap()
            .contains(r#""wrap":null"#));
    }
}
