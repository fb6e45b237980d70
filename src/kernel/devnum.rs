//! `major:minor` device numbers, as the kernel prints them in dm tables, sysfs and mountinfo.

use std::fmt;
use std::str::FromStr;

/// A block device number (`dev_t`) split into major and minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(into = "String")]
pub struct DevNum {
    pub major: u32,
    pub minor: u32,
}

impl DevNum {
    pub const fn new(major: u32, minor: u32) -> Self {
        DevNum { major, minor }
    }

    pub fn from_dev_t(dev: u64) -> Self {
        DevNum {
            major: libc::major(dev),
            minor: libc::minor(dev),
        }
    }

    pub fn to_dev_t(self) -> u64 {
        libc::makedev(self.major, self.minor)
    }
}

impl fmt::Display for DevNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

impl From<DevNum> for String {
    fn from(d: DevNum) -> String {
        d.to_string()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a major:minor device number: {0:?}")]
pub struct ParseDevNumError(pub String);

impl FromStr for DevNum {
    type Err = ParseDevNumError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseDevNumError(s.to_string());
        let (ma, mi) = s.trim().split_once(':').ok_or_else(err)?;
        Ok(DevNum {
            major: ma.parse().map_err(|_| err())?,
            minor: mi.parse().map_err(|_| err())?,
        })
    }
}

impl From<devicemapper::Device> for DevNum {
    fn from(d: devicemapper::Device) -> Self {
        DevNum::new(d.major, d.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        let d: DevNum = "253:17".parse().unwrap();
        assert_eq!(d, DevNum::new(253, 17));
        assert_eq!(d.to_string(), "253:17");
        assert_eq!(DevNum::from_dev_t(d.to_dev_t()), d);
    }

    #[test]
    fn rejects_garbage() {
        assert!("253".parse::<DevNum>().is_err());
        assert!("a:1".parse::<DevNum>().is_err());
        assert!("/dev/vda".parse::<DevNum>().is_err());
    }
}
