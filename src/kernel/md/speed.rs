//! `md/sync_speed_min` and `md/sync_speed_max` as typed values: what md prints ([`SpeedLimit`])
//! and what may be written ([`SpeedSetting`]). Pure: no I/O here.

use std::fmt;
use std::str::FromStr;

use super::attr::{parse_u64, perr, ParseError};

/// `md/sync_speed_min` or `md/sync_speed_max` as md prints it (md.c `sync_min_show`/`sync_max_show`,
/// `"%d (%s)\n"`): the limit in force in KiB/s and whose it is: `local` (set for this array) or
/// `system` (none set: `/proc/sys/dev/raid/speed_limit_min`/`_max`, 1000 and 200000 by default).
/// md keeps the per-array value in an `int`: one written above `i32::MAX` reads back negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SpeedLimit {
    pub kib: i32,
    /// Set for this array (`local`), not the system-wide sysctl (`system`).
    pub local: bool,
}

impl fmt::Display for SpeedLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whose = if self.local { "local" } else { "system" };
        write!(f, "{} ({whose})", self.kib)
    }
}

impl FromStr for SpeedLimit {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let err = || perr("sync_speed_min/max", s);
        let (num, whose) = s.trim().split_once(' ').ok_or_else(err)?;
        let local = match whose {
            "(local)" => true,
            "(system)" => false,
            _ => return Err(err()),
        };
        let digits = num.strip_prefix('-').unwrap_or(num);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        Ok(SpeedLimit {
            kib: num.parse().map_err(|_| err())?,
            local,
        })
    }
}

/// What may be written to `md/sync_speed_min` or `md/sync_speed_max` (md.c `sync_min_store`/
/// `sync_max_store`): `system` (drop the array's own value, follow the sysctl) or KiB/s for this
/// array. md parses the number with `kstrtouint` and refuses 0 (EINVAL) and anything above
/// `u32::MAX` (ERANGE), then stores it in an `int`, so only 1..=[`SpeedSetting::MAX_KIB`] keeps
/// its meaning and reads back as written; this type holds nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum SpeedSetting {
    System,
    Kib(u32),
}

impl SpeedSetting {
    /// The largest per-array limit md stores as written: `i32::MAX` KiB/s (~2 TiB/s).
    pub const MAX_KIB: u32 = i32::MAX as u32;

    /// A per-array limit of `kib` KiB/s, if md can hold it (1..=[`Self::MAX_KIB`]).
    pub fn kib(kib: u64) -> Option<SpeedSetting> {
        u32::try_from(kib)
            .ok()
            .filter(|k| (1..=Self::MAX_KIB).contains(k))
            .map(SpeedSetting::Kib)
    }
}

impl fmt::Display for SpeedSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpeedSetting::System => f.write_str("system"),
            SpeedSetting::Kib(k) => write!(f, "{k}"),
        }
    }
}

impl FromStr for SpeedSetting {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.trim() {
            "system" => Ok(SpeedSetting::System),
            _ => SpeedSetting::kib(parse_u64("sync_speed_min/max setting", s)?)
                .ok_or_else(|| perr("sync_speed_min/max setting", s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_limits_as_md_prints_them() {
        // md.c sync_min_show / sync_max_show: "%d (%s)\n", local or system.
        let l: SpeedLimit = "1000 (system)\n".parse().unwrap();
        assert_eq!(
            l,
            SpeedLimit {
                kib: 1000,
                local: false
            }
        );
        assert_eq!(format!("{l}\n"), "1000 (system)\n");
        let l: SpeedLimit = "2147483647 (local)\n".parse().unwrap();
        assert_eq!(l.kib, i32::MAX);
        assert!(l.local);
        assert_eq!(l.to_string(), "2147483647 (local)");
        // 4294967295 written: kstrtouint takes it, the int field holds -1
        let l: SpeedLimit = "-1 (local)\n".parse().unwrap();
        assert_eq!(l.kib, -1);
        assert_eq!(l.to_string(), "-1 (local)");
        for bad in [
            "",
            "1000",
            "1000 system",
            "1000 (System)",
            "(local)",
            "- (local)",
            "1000  (local)",
            "2147483648 (local)",
            "12k (local)",
            "1000 (local) x",
        ] {
            assert!(bad.parse::<SpeedLimit>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn speed_settings_md_takes() {
        assert_eq!(SpeedSetting::System.to_string(), "system");
        assert_eq!("system\n".parse(), Ok(SpeedSetting::System));
        assert_eq!(SpeedSetting::kib(51_200), Some(SpeedSetting::Kib(51_200)));
        assert_eq!(SpeedSetting::Kib(51_200).to_string(), "51200");
        assert_eq!("51200".parse(), Ok(SpeedSetting::Kib(51_200)));
        assert_eq!(SpeedSetting::MAX_KIB, 2_147_483_647);
        assert_eq!(
            SpeedSetting::kib(2_147_483_647).map(|s| s.to_string()),
            Some("2147483647".to_string())
        );
        // 0 is md's EINVAL; above i32::MAX md would store a negative number
        assert_eq!(SpeedSetting::kib(0), None);
        assert_eq!(SpeedSetting::kib(2_147_483_648), None);
        assert_eq!(SpeedSetting::kib(u64::MAX), None);
        for bad in ["0", "2147483648", "-1", "", "System", "local", "1e6"] {
            assert!(bad.parse::<SpeedSetting>().is_err(), "{bad:?}");
        }
        // what md prints back for a setting written
        let l: SpeedLimit = format!("{} (local)", SpeedSetting::Kib(SpeedSetting::MAX_KIB))
            .parse()
            .unwrap();
        assert_eq!(l.kib as u32, SpeedSetting::MAX_KIB);
    }
}
