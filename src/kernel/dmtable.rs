//! Typed device-mapper target parameters and status lines, as the kernel prints and parses them.
//!
//! Each type round-trips through `Display`/`FromStr` and is tested on literal strings copied from
//! the kernel's formats (drivers/md/dm-linear.c, dm-raid1.c, dm-log.c). Devices are always written
//! as `major:minor`, which is also how the kernel prints them back.

use std::fmt;
use std::str::FromStr;

use devicemapper::Sectors;

use super::devnum::DevNum;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("cannot parse dm {what} {text:?}: {why}")]
pub struct ParseError {
    pub what: &'static str,
    pub text: String,
    pub why: String,
}

pub(super) fn perr(what: &'static str, text: &str, why: impl Into<String>) -> ParseError {
    ParseError {
        what,
        text: text.to_string(),
        why: why.into(),
    }
}

/// Pulls whitespace-separated words off a parameter string, with errors that name the field.
pub(super) struct Words<'a> {
    what: &'static str,
    text: &'a str,
    it: std::str::SplitWhitespace<'a>,
}

impl<'a> Words<'a> {
    pub(super) fn new(what: &'static str, text: &'a str) -> Self {
        Words {
            what,
            text,
            it: text.split_whitespace(),
        }
    }
    pub(super) fn word(&mut self, field: &str) -> Result<&'a str, ParseError> {
        self.it
            .next()
            .ok_or_else(|| perr(self.what, self.text, format!("missing {field}")))
    }
    pub(super) fn num<T: FromStr>(&mut self, field: &str) -> Result<T, ParseError> {
        let w = self.word(field)?;
        w.parse().map_err(|_| {
            perr(
                self.what,
                self.text,
                format!("{field} {w:?} is not a number"),
            )
        })
    }
    pub(super) fn dev(&mut self, field: &str) -> Result<DevNum, ParseError> {
        let w = self.word(field)?;
        w.parse().map_err(|_| {
            perr(
                self.what,
                self.text,
                format!("{field} {w:?} is not major:minor"),
            )
        })
    }
    fn peek_rest(&mut self) -> Option<&'a str> {
        self.it.clone().next()
    }
    fn end(mut self) -> Result<(), ParseError> {
        match self.it.next() {
            None => Ok(()),
            Some(w) => Err(perr(self.what, self.text, format!("unexpected {w:?}"))),
        }
    }
}

/// `linear` target parameters: `<dev> <offset>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearParams {
    pub dev: DevNum,
    pub offset: Sectors,
}

impl fmt::Display for LinearParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.dev, *self.offset)
    }
}

impl FromStr for LinearParams {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let mut w = Words::new("linear table", s);
        let dev = w.dev("device")?;
        let offset = Sectors(w.num("offset")?);
        w.end()?;
        Ok(LinearParams { dev, offset })
    }
}

/// Whether a mirror starts by copying everything (`sync`, the default) or trusts the legs (`nosync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    Default,
    Sync,
    NoSync,
}

/// The dirty-region log of a mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorLog {
    /// In-memory log: a crash restarts the copy.
    Core { region: Sectors, sync: SyncMode },
    /// On-disk log: header + clean bitmap on `dev` (see dm-log.c).
    Disk {
        dev: DevNum,
        region: Sectors,
        sync: SyncMode,
    },
}

impl MirrorLog {
    pub fn region(&self) -> Sectors {
        match self {
            MirrorLog::Core { region, .. } | MirrorLog::Disk { region, .. } => *region,
        }
    }
}

/// One leg of a mirror: device and offset into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorLeg {
    pub dev: DevNum,
    pub offset: Sectors,
}

/// `mirror` target parameters:
/// `<log type> <#log args> <log args...> <#legs> <dev> <offset>... [<#features> <features...>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorParams {
    pub log: MirrorLog,
    pub legs: Vec<MirrorLeg>,
    /// `handle_errors`, `keep_log`. rootshift never sets `handle_errors`: with it a failed write is
    /// held until a reload, which on a root device with no event daemon is a hang.
    pub features: Vec<String>,
}

impl MirrorParams {
    /// The kernel accepts 2 to 9 legs (dm-raid1.c: DM_KCOPYD_MAX_REGIONS + 1).
    pub const MAX_LEGS: usize = 9;

    /// A core-log mirror that copies the first leg onto the others.
    pub fn core(region: Sectors, legs: &[DevNum]) -> Self {
        MirrorParams {
            log: MirrorLog::Core {
                region,
                sync: SyncMode::Default,
            },
            legs: legs
                .iter()
                .map(|&dev| MirrorLeg {
                    dev,
                    offset: Sectors(0),
                })
                .collect(),
            features: vec![],
        }
    }
}

fn fmt_sync(sync: SyncMode) -> (u32, &'static str) {
    match sync {
        SyncMode::Default => (0, ""),
        SyncMode::Sync => (1, " sync"),
        SyncMode::NoSync => (1, " nosync"),
    }
}

impl fmt::Display for MirrorParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.log {
            MirrorLog::Core { region, sync } => {
                let (n, word) = fmt_sync(*sync);
                write!(f, "core {} {}{}", 1 + n, **region, word)?;
            }
            MirrorLog::Disk { dev, region, sync } => {
                let (n, word) = fmt_sync(*sync);
                write!(f, "disk {} {} {}{}", 2 + n, dev, **region, word)?;
            }
        }
        write!(f, " {}", self.legs.len())?;
        for leg in &self.legs {
            write!(f, " {} {}", leg.dev, *leg.offset)?;
        }
        if !self.features.is_empty() {
            write!(f, " {}", self.features.len())?;
            for feat in &self.features {
                write!(f, " {feat}")?;
            }
        }
        Ok(())
    }
}

fn parse_sync(w: &mut Words<'_>, nargs: usize, fixed: usize) -> Result<SyncMode, ParseError> {
    match nargs.checked_sub(fixed) {
        Some(0) => Ok(SyncMode::Default),
        Some(1) => match w.word("sync mode")? {
            "sync" => Ok(SyncMode::Sync),
            "nosync" => Ok(SyncMode::NoSync),
            other => Err(perr(
                "mirror table",
                w.text,
                format!("unknown log argument {other:?}"),
            )),
        },
        _ => Err(perr(
            "mirror table",
            w.text,
            format!("bad log argument count {nargs}"),
        )),
    }
}

impl FromStr for MirrorParams {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let mut w = Words::new("mirror table", s);
        let log = match w.word("log type")? {
            "core" => {
                let nargs: usize = w.num("log argument count")?;
                let region = Sectors(w.num("region size")?);
                let sync = parse_sync(&mut w, nargs, 1)?;
                MirrorLog::Core { region, sync }
            }
            "disk" => {
                let nargs: usize = w.num("log argument count")?;
                let dev = w.dev("log device")?;
                let region = Sectors(w.num("region size")?);
                let sync = parse_sync(&mut w, nargs, 2)?;
                MirrorLog::Disk { dev, region, sync }
            }
            other => {
                return Err(perr(
                    "mirror table",
                    s,
                    format!("unknown log type {other:?}"),
                ))
            }
        };
        let nlegs: usize = w.num("leg count")?;
        if !(1..=MirrorParams::MAX_LEGS).contains(&nlegs) {
            return Err(perr("mirror table", s, format!("bad leg count {nlegs}")));
        }
        let mut legs = Vec::with_capacity(nlegs);
        for _ in 0..nlegs {
            let dev = w.dev("leg device")?;
            let offset = Sectors(w.num("leg offset")?);
            legs.push(MirrorLeg { dev, offset });
        }
        let mut features = vec![];
        if w.peek_rest().is_some() {
            let n: usize = w.num("feature count")?;
            for _ in 0..n {
                features.push(w.word("feature")?.to_string());
            }
        }
        w.end()?;
        Ok(MirrorParams {
            log,
            legs,
            features,
        })
    }
}

/// Health of one mirror leg, the character dm-raid1 prints per leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Health {
    /// `A`: alive, no errors.
    Alive,
    /// `D`: a write failed: the leg is out of date from that region on.
    WriteError,
    /// `S`: copying onto this leg failed.
    SyncError,
    /// `R`: a read from this leg failed.
    ReadError,
    /// `F`: a flush failed.
    FlushError,
    /// `U`: unknown (reported by some kernels for a leg without an error record).
    Unknown,
}

impl Health {
    pub fn from_char(c: char) -> Option<Health> {
        Some(match c {
            'A' => Health::Alive,
            'D' => Health::WriteError,
            'S' => Health::SyncError,
            'R' => Health::ReadError,
            'F' => Health::FlushError,
            'U' => Health::Unknown,
            _ => return None,
        })
    }
    pub fn as_char(self) -> char {
        match self {
            Health::Alive => 'A',
            Health::WriteError => 'D',
            Health::SyncError => 'S',
            Health::ReadError => 'R',
            Health::FlushError => 'F',
            Health::Unknown => 'U',
        }
    }
    pub fn is_alive(self) -> bool {
        self == Health::Alive
    }
    pub fn describe(self) -> &'static str {
        match self {
            Health::Alive => "alive",
            Health::WriteError => "write error",
            Health::SyncError => "copy (sync) error",
            Health::ReadError => "read error",
            Health::FlushError => "flush error",
            Health::Unknown => "unknown",
        }
    }
}

/// Status of the mirror's log, the tail of the status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogStatus {
    /// `1 core`
    Core,
    /// `3 disk <dev> <health>`
    Disk { dev: DevNum, health: Health },
}

/// `mirror` INFO status: `<#legs> <dev>... <in_sync>/<total> 1 <health chars> <log status>`,
/// e.g. `2 253:1 8:17 8192/8192 1 AA 1 core`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorStatus {
    pub legs: Vec<(DevNum, Health)>,
    /// Regions in sync and total regions.
    pub in_sync: u64,
    pub total: u64,
    pub log: LogStatus,
}

impl MirrorStatus {
    /// Every region copied and every leg healthy: the only state in which the mirror may be
    /// replaced by one of its legs.
    pub fn fully_synced(&self) -> bool {
        let log_ok = match self.log {
            LogStatus::Core => true,
            LogStatus::Disk { health, .. } => health.is_alive(),
        };
        self.in_sync == self.total && self.legs.iter().all(|(_, h)| h.is_alive()) && log_ok
    }
    pub fn health_of(&self, dev: DevNum) -> Option<Health> {
        self.legs.iter().find(|(d, _)| *d == dev).map(|(_, h)| *h)
    }
}

impl fmt::Display for MirrorStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.legs.len())?;
        for (dev, _) in &self.legs {
            write!(f, " {dev}")?;
        }
        let chars: String = self.legs.iter().map(|(_, h)| h.as_char()).collect();
        write!(f, " {}/{} 1 {}", self.in_sync, self.total, chars)?;
        match &self.log {
            LogStatus::Core => write!(f, " 1 core"),
            LogStatus::Disk { dev, health } => write!(f, " 3 disk {dev} {}", health.as_char()),
        }
    }
}

impl FromStr for MirrorStatus {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let mut w = Words::new("mirror status", s);
        let n: usize = w.num("leg count")?;
        if !(1..=MirrorParams::MAX_LEGS).contains(&n) {
            return Err(perr("mirror status", s, format!("bad leg count {n}")));
        }
        let mut devs = Vec::with_capacity(n);
        for _ in 0..n {
            devs.push(w.dev("leg device")?);
        }
        let ratio = w.word("in_sync/total")?;
        let (a, b) = ratio
            .split_once('/')
            .ok_or_else(|| perr("mirror status", s, format!("{ratio:?} is not N/M")))?;
        let in_sync: u64 = a
            .parse()
            .map_err(|_| perr("mirror status", s, "bad in_sync count"))?;
        let total: u64 = b
            .parse()
            .map_err(|_| perr("mirror status", s, "bad region total"))?;
        if w.word("health arg count")? != "1" {
            return Err(perr("mirror status", s, "expected 1 health argument"));
        }
        let chars = w.word("health chars")?;
        if chars.chars().count() != n {
            return Err(perr(
                "mirror status",
                s,
                format!("{n} legs but health {chars:?}"),
            ));
        }
        let mut legs = Vec::with_capacity(n);
        for (dev, c) in devs.into_iter().zip(chars.chars()) {
            let h = Health::from_char(c)
                .ok_or_else(|| perr("mirror status", s, format!("unknown health char {c:?}")))?;
            legs.push((dev, h));
        }
        let log = match (w.word("log arg count")?, w.word("log type")?) {
            ("1", "core") => LogStatus::Core,
            ("3", "disk") => {
                let dev = w.dev("log device")?;
                let c = w.word("log health")?;
                let health = c
                    .chars()
                    .next()
                    .and_then(Health::from_char)
                    .ok_or_else(|| perr("mirror status", s, format!("bad log health {c:?}")))?;
                LogStatus::Disk { dev, health }
            }
            (n, t) => {
                return Err(perr(
                    "mirror status",
                    s,
                    format!("unknown log status {n} {t}"),
                ))
            }
        };
        w.end()?;
        Ok(MirrorStatus {
            legs,
            in_sync,
            total,
            log,
        })
    }
}

/// One line of a dm table or status: `<start> <length> <target type> <params>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableLine {
    pub start: Sectors,
    pub len: Sectors,
    pub target: String,
    pub params: String,
}

impl TableLine {
    pub fn new(start: Sectors, len: Sectors, target: &str, params: impl fmt::Display) -> Self {
        TableLine {
            start,
            len,
            target: target.to_string(),
            params: params.to_string(),
        }
    }
}

impl fmt::Display for TableLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            *self.start,
            *self.len,
            self.target,
            self.params.trim_end()
        )
    }
}

impl FromStr for TableLine {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let mut w = Words::new("table line", s);
        let start = Sectors(w.num("start")?);
        let len = Sectors(w.num("length")?);
        let target = w.word("target type")?.to_string();
        // The params are everything after the third word, verbatim.
        let params = s
            .trim_start()
            .splitn(4, char::is_whitespace)
            .nth(3)
            .unwrap_or("")
            .trim()
            .to_string();
        Ok(TableLine {
            start,
            len,
            target,
            params,
        })
    }
}

/// What a rootshift wrapper currently maps, decoded from its one-line table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WrapperTable {
    Linear { len: Sectors, params: LinearParams },
    Mirror { len: Sectors, params: MirrorParams },
}

impl WrapperTable {
    pub fn from_lines(lines: &[TableLine]) -> Result<Self, ParseError> {
        let text = lines
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        match lines {
            [l] if *l.start == 0 => match l.target.as_str() {
                "linear" => Ok(WrapperTable::Linear {
                    len: l.len,
                    params: l.params.parse()?,
                }),
                "mirror" => Ok(WrapperTable::Mirror {
                    len: l.len,
                    params: l.params.parse()?,
                }),
                t => Err(perr(
                    "wrapper table",
                    &text,
                    format!("unexpected target {t}"),
                )),
            },
            _ => Err(perr(
                "wrapper table",
                &text,
                "expected exactly one target line starting at 0",
            )),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            WrapperTable::Linear { .. } => "linear",
            WrapperTable::Mirror { .. } => "mirror",
        }
    }

    pub fn len(&self) -> Sectors {
        match self {
            WrapperTable::Linear { len, .. } | WrapperTable::Mirror { len, .. } => *len,
        }
    }

    /// Devices in table order (the source is first in a mirror).
    pub fn devices(&self) -> Vec<DevNum> {
        match self {
            WrapperTable::Linear { params, .. } => vec![params.dev],
            WrapperTable::Mirror { params, .. } => params.legs.iter().map(|l| l.dev).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_round_trip() {
        let p: LinearParams = "254:0 0".parse().unwrap();
        assert_eq!(p.dev, DevNum::new(254, 0));
        assert_eq!(p.offset, Sectors(0));
        assert_eq!(p.to_string(), "254:0 0");
        assert!("254:0".parse::<LinearParams>().is_err());
        assert!("/dev/vda 0".parse::<LinearParams>().is_err());
        assert!("254:0 0 extra".parse::<LinearParams>().is_err());
    }

    #[test]
    fn mirror_table_as_the_kernel_prints_it() {
        // dm-raid1.c mirror_status(STATUSTYPE_TABLE) after core_status(): note the kernel's
        // "core 1 1024 " with its own spacing; we parse by words.
        let t: MirrorParams = "core 1 8192 2 254:0 0 254:16 0".parse().unwrap();
        assert_eq!(
            t.log,
            MirrorLog::Core {
                region: Sectors(8192),
                sync: SyncMode::Default
            }
        );
        assert_eq!(t.legs.len(), 2);
        assert_eq!(t.legs[1].dev, DevNum::new(254, 16));
        assert_eq!(t.to_string(), "core 1 8192 2 254:0 0 254:16 0");
        assert_eq!(
            t,
            MirrorParams::core(Sectors(8192), &[DevNum::new(254, 0), DevNum::new(254, 16)])
        );
    }

    #[test]
    fn mirror_table_with_nosync_disk_log_and_features() {
        let s = "disk 3 253:5 1024 nosync 3 8:0 0 8:16 2048 8:32 0 2 handle_errors keep_log";
        let t: MirrorParams = s.parse().unwrap();
        assert_eq!(
            t.log,
            MirrorLog::Disk {
                dev: DevNum::new(253, 5),
                region: Sectors(1024),
                sync: SyncMode::NoSync
            }
        );
        assert_eq!(t.legs[1].offset, Sectors(2048));
        assert_eq!(t.features, vec!["handle_errors", "keep_log"]);
        assert_eq!(t.to_string(), s);
        let core_sync: MirrorParams = "core 2 1024 sync 2 8:0 0 8:16 0".parse().unwrap();
        assert_eq!(core_sync.to_string(), "core 2 1024 sync 2 8:0 0 8:16 0");
    }

    #[test]
    fn mirror_table_rejects_bad_input() {
        assert!("core 1 1024 2 8:0 0".parse::<MirrorParams>().is_err()); // missing leg
        assert!("core 2 1024 maybe 2 8:0 0 8:16 0"
            .parse::<MirrorParams>()
            .is_err());
        assert!("redo 1 1024 2 8:0 0 8:16 0"
            .parse::<MirrorParams>()
            .is_err());
        assert!("core 1 1024 10 8:0 0".parse::<MirrorParams>().is_err());
    }

    #[test]
    fn mirror_status_in_progress() {
        let s: MirrorStatus = "2 254:0 254:16 12/64 1 AA 1 core".parse().unwrap();
        assert_eq!(s.in_sync, 12);
        assert_eq!(s.total, 64);
        assert!(!s.fully_synced());
        assert_eq!(s.log, LogStatus::Core);
        assert_eq!(s.to_string(), "2 254:0 254:16 12/64 1 AA 1 core");
    }

    #[test]
    fn mirror_status_done() {
        let s: MirrorStatus = "2 253:1 8:17 8192/8192 1 AA 1 core".parse().unwrap();
        assert!(s.fully_synced());
        assert_eq!(s.health_of(DevNum::new(8, 17)), Some(Health::Alive));
    }

    #[test]
    fn mirror_status_degraded_health_chars() {
        // A write error on the target: regions stay out of sync, no event is raised.
        let s: MirrorStatus = "2 254:0 254:16 30/64 1 AD 1 core".parse().unwrap();
        assert_eq!(s.health_of(DevNum::new(254, 16)), Some(Health::WriteError));
        assert!(!s.fully_synced());
        // All regions counted in sync but a leg failed: still not safe to switch.
        let s: MirrorStatus = "2 254:0 254:16 64/64 1 AS 1 core".parse().unwrap();
        assert!(!s.fully_synced());
        for (c, h) in [
            ('R', Health::ReadError),
            ('F', Health::FlushError),
            ('U', Health::Unknown),
        ] {
            let st: MirrorStatus = format!("2 8:0 8:16 1/2 1 A{c} 1 core").parse().unwrap();
            assert_eq!(st.legs[1].1, h);
        }
        assert!("2 8:0 8:16 1/2 1 AX 1 core"
            .parse::<MirrorStatus>()
            .is_err());
        assert!("2 8:0 8:16 1/2 1 A 1 core".parse::<MirrorStatus>().is_err());
    }

    #[test]
    fn mirror_status_disk_log() {
        let s: MirrorStatus = "3 8:0 8:16 8:32 1024/1024 1 AAA 3 disk 253:2 A"
            .parse()
            .unwrap();
        assert_eq!(
            s.log,
            LogStatus::Disk {
                dev: DevNum::new(253, 2),
                health: Health::Alive
            }
        );
        assert_eq!(
            s.to_string(),
            "3 8:0 8:16 8:32 1024/1024 1 AAA 3 disk 253:2 A"
        );
        assert!(s.fully_synced());
        let failed_log: MirrorStatus = "2 8:0 8:16 1024/1024 1 AA 3 disk 253:2 D".parse().unwrap();
        assert!(
            !failed_log.fully_synced(),
            "a failed log is not a safe state to switch from"
        );
    }

    #[test]
    fn table_line_keeps_params_verbatim() {
        let l: TableLine = "0 1048576 mirror core 1 1024 2 254:0 0 254:16 0 "
            .parse()
            .unwrap();
        assert_eq!(l.len, Sectors(1048576));
        assert_eq!(l.target, "mirror");
        assert_eq!(l.params, "core 1 1024 2 254:0 0 254:16 0");
        assert_eq!(
            l.to_string(),
            "0 1048576 mirror core 1 1024 2 254:0 0 254:16 0"
        );
    }

    #[test]
    fn wrapper_table_decodes_both_shapes() {
        let lin = WrapperTable::from_lines(&["0 1048576 linear 254:0 0".parse().unwrap()]).unwrap();
        assert_eq!(lin.kind(), "linear");
        assert_eq!(lin.devices(), vec![DevNum::new(254, 0)]);
        let mir = WrapperTable::from_lines(&["0 1048576 mirror core 1 1024 2 254:0 0 254:16 0"
            .parse()
            .unwrap()])
        .unwrap();
        assert_eq!(
            mir.devices(),
            vec![DevNum::new(254, 0), DevNum::new(254, 16)]
        );
        assert!(WrapperTable::from_lines(&[]).is_err());
        assert!(WrapperTable::from_lines(&["0 8 zero ".parse().unwrap()]).is_err());
    }
}
