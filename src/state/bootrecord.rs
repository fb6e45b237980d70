//! `/run/rootshift/boot`: what the initrd hook did with the root at this boot (written by
//! `rootshift_state` in `initrd-hook/lib/rootshift-lib.sh`, key=value lines), shown by `status`.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Where the hook records its outcome.
pub const PATH: &str = "/run/rootshift/boot";

/// The hook's outcome at this boot.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct BootRecord {
    /// `wrapped`, `off` (rd.rootshift=0), `failed` (booted unwrapped), `refused` (boot stopped).
    pub state: String,
    /// `dm` or `md` (empty when off).
    pub backend: String,
    /// The device the root was found on.
    pub component: String,
    /// The wrapper's node when wrapped.
    pub wrapper: String,
    /// Why, when not wrapped.
    pub message: String,
}

/// A line the hook never writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a key=value line of {PATH}: {0:?}")]
pub struct BadLine(pub String);

impl FromStr for BootRecord {
    type Err = BadLine;
    fn from_str(s: &str) -> Result<Self, BadLine> {
        let mut r = BootRecord::default();
        for line in s.lines().filter(|l| !l.trim().is_empty()) {
            let (k, v) = line.split_once('=').ok_or_else(|| BadLine(line.into()))?;
            let v = v.to_string();
            match k {
                "state" => r.state = v,
                "backend" => r.backend = v,
                "component" => r.component = v,
                "wrapper" => r.wrapper = v,
                "message" => r.message = v,
                _ => {} // a newer hook's key: ignored
            }
        }
        if r.state.is_empty() {
            return Err(BadLine(format!("no state= line in {s:?}")));
        }
        Ok(r)
    }
}

impl fmt::Display for BootRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "state={}\nbackend={}\ncomponent={}\nwrapper={}\nmessage={}\n",
            self.state, self.backend, self.component, self.wrapper, self.message
        )
    }
}

impl BootRecord {
    /// This boot's record; None when the hook did not run (no file) or wrote nothing readable.
    pub fn read() -> Option<BootRecord> {
        std::fs::read_to_string(PATH).ok()?.parse().ok()
    }

    /// One line for humans: `wrapped /dev/vda1 in dm as /dev/mapper/rootshift-root`,
    /// `refused (dm, /dev/vda2): <why>`.
    pub fn summary(&self) -> String {
        match self.state.as_str() {
            "wrapped" => format!(
                "wrapped {} in {} as {}",
                self.component, self.backend, self.wrapper
            ),
            st => {
                let mut what = vec![];
                if !self.backend.is_empty() {
                    what.push(self.backend.as_str());
                }
                if !self.component.is_empty() {
                    what.push(self.component.as_str());
                }
                let what = if what.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", what.join(", "))
                };
                if self.message.is_empty() {
                    format!("{st}{what}")
                } else {
                    format!("{st}{what}: {}", self.message)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_hook_writes() {
        let r: BootRecord = "state=refused\nbackend=dm\ncomponent=/dev/vda2\nwrapper=\n\
                             message=the root is on dm-crypt (luks-1234): refusing\n"
            .parse()
            .unwrap();
        assert_eq!(r.state, "refused");
        assert_eq!(r.component, "/dev/vda2");
        assert_eq!(r.wrapper, "");
        assert_eq!(r.message, "the root is on dm-crypt (luks-1234): refusing");
        assert_eq!(
            r.summary(),
            "refused (dm, /dev/vda2): the root is on dm-crypt (luks-1234): refusing"
        );
        assert_eq!(r.to_string().parse::<BootRecord>().unwrap(), r);
    }

    #[test]
    fn a_value_may_hold_equals_signs_and_unknown_keys_are_ignored() {
        let r: BootRecord = "state=off\nbackend=\ncomponent=/dev/vda1\nwrapper=\n\
                             message=turned off by rd.rootshift=0\nnewkey=x\n"
            .parse()
            .unwrap();
        assert_eq!(r.message, "turned off by rd.rootshift=0");
        assert_eq!(r.summary(), "off (/dev/vda1): turned off by rd.rootshift=0");
        let w: BootRecord =
            "state=wrapped\nbackend=md\ncomponent=/dev/vda1\nwrapper=/dev/md/rootshift-root\nmessage=\n"
                .parse()
                .unwrap();
        assert_eq!(
            w.summary(),
            "wrapped /dev/vda1 in md as /dev/md/rootshift-root"
        );
    }

    #[test]
    fn garbage_is_refused() {
        assert!("hello".parse::<BootRecord>().is_err());
        assert!("backend=dm\n".parse::<BootRecord>().is_err());
    }
}
