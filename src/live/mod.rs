//! Live media: a booted dracut dmsquash-live system, whose root rootshift wrapped at boot.
//!
//! ```text
//! rootshift-root ── live-rw  snapshot 7:1 7:2 PO 8 ──┬─ loop1 = LiveOS/rootfs.img in the squashfs (lazily
//!                   live-base linear 7:1 ────────────┘  unmounted by dracut) on loop0 = LiveOS/squashfs.img
//!                                                        on /run/initramfs/live (the medium, e.g. sr0)
//!                                                     └─ loop2 = /overlay (deleted, in the initramfs: RAM)
//! ```
//! Before the copy, [`overlay_check`] makes sure writes during the migration cannot overflow the
//! snapshot's copy-on-write store, which is normally in RAM: an overflowing snapshot turns invalid
//! and the root filesystem with it. After the switch, [`release_old`] tears down what only the old
//! root used, so the medium is free and can be ejected.

pub mod bootfiles;
pub mod media;
pub mod overlay;
pub mod verified;

use std::fs::{self, File};
use std::os::fd::AsFd;
use std::str::FromStr;
use std::time::{Duration, Instant};
use std::{fmt, thread};

use anyhow::{Context, Result};
use devicemapper::Sectors;

use crate::error::refuse;
use crate::kernel::blockdev::BlockDev;
use crate::kernel::devnum::DevNum;
use crate::kernel::dm::Dm;
use crate::kernel::dmtable::ParseError;
use crate::kernel::{ioctl, mounts};
use crate::units::human;

/// Names dracut's dmsquash-live gives its dm devices (`live-rw`, `live-base`, `live-ro`,
/// `live-overlay-pool`): only these are torn down, and only when nothing uses them.
pub const LIVE_DM_PREFIX: &str = "live-";
/// What `migrate` lets the live overlay take until the switch: writes by the running system
/// during the copy (the copy itself only reads the source).
pub const OVERLAY_NEED_BYTES: u64 = 256 << 20;
/// Where dracut mounts the live medium and its images.
pub const LIVE_MOUNT_DIR: &str = "/run/initramfs";

fn perr(what: &'static str, text: &str, why: impl Into<String>) -> ParseError {
    ParseError {
        what,
        text: text.to_string(),
        why: why.into(),
    }
}

fn num<T: FromStr>(
    what: &'static str,
    text: &str,
    field: &str,
    w: Option<&str>,
) -> Result<T, ParseError> {
    let w = w.ok_or_else(|| perr(what, text, format!("missing {field}")))?;
    w.parse()
        .map_err(|_| perr(what, text, format!("{field} {w:?} is not a number")))
}

/// `snapshot` target parameters as the kernel prints the table (drivers/md/dm-snap.c,
/// dm-snap-persistent.c, dm-snap-transient.c): `<origin> <cow> P|PO|N <chunk sectors>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotParams {
    pub origin: DevNum,
    pub cow: DevNum,
    /// `P`/`PO`: the exception store is on the COW device; `N`: transient.
    pub persistent: bool,
    /// `PO`: a full store makes the snapshot report `Overflow` (and refuse writes) instead of
    /// turning invalid.
    pub overflow: bool,
    pub chunk: Sectors,
}

impl fmt::Display for SnapshotParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let store = match (self.persistent, self.overflow) {
            (true, true) => "PO",
            (true, false) => "P",
            (false, _) => "N",
        };
        write!(f, "{} {} {store} {}", self.origin, self.cow, *self.chunk)
    }
}

impl FromStr for SnapshotParams {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        const WHAT: &str = "snapshot params";
        let mut w = s.split_whitespace();
        let origin = num(WHAT, s, "origin", w.next())?;
        let cow = num(WHAT, s, "cow device", w.next())?;
        let (persistent, overflow) = match w.next() {
            Some("P" | "p") => (true, false),
            Some("PO" | "po") => (true, true),
            Some("N" | "n") => (false, false),
            Some(x) => return Err(perr(WHAT, s, format!("unknown store type {x:?}"))),
            None => return Err(perr(WHAT, s, "missing store type")),
        };
        let chunk = Sectors(num(WHAT, s, "chunk size", w.next())?);
        if *chunk == 0 {
            return Err(perr(WHAT, s, "chunk size 0"));
        }
        if let Some(x) = w.next() {
            return Err(perr(WHAT, s, format!("unexpected {x:?}")));
        }
        Ok(SnapshotParams {
            origin,
            cow,
            persistent,
            overflow,
            chunk,
        })
    }
}

/// `snapshot` target status (STATUSTYPE_INFO, dm-snap.c `snapshot_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotStatus {
    /// `<allocated>/<total> <metadata>`, in sectors of the COW device: `allocated` counts data and
    /// metadata chunks in use, `total` is the COW device's size.
    Usage {
        allocated: Sectors,
        total: Sectors,
        metadata: Sectors,
    },
    /// The store filled up (or failed) without the overflow option: the snapshot lost writes.
    Invalid,
    /// The store is full (overflow option): writes to the snapshot fail.
    Overflow,
    MergeFailed,
    Unknown,
}

impl SnapshotStatus {
    /// Sectors of the COW device not yet used.
    pub fn free(&self) -> Option<Sectors> {
        match self {
            SnapshotStatus::Usage {
                allocated, total, ..
            } => Some(Sectors(total.saturating_sub(**allocated))),
            _ => None,
        }
    }
}

impl fmt::Display for SnapshotStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotStatus::Usage {
                allocated,
                total,
                metadata,
            } => write!(f, "{}/{} {}", **allocated, **total, **metadata),
            SnapshotStatus::Invalid => f.write_str("Invalid"),
            SnapshotStatus::Overflow => f.write_str("Overflow"),
            SnapshotStatus::MergeFailed => f.write_str("Merge failed"),
            SnapshotStatus::Unknown => f.write_str("Unknown"),
        }
    }
}

impl FromStr for SnapshotStatus {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        const WHAT: &str = "snapshot status";
        match s.trim() {
            "Invalid" => return Ok(SnapshotStatus::Invalid),
            "Overflow" => return Ok(SnapshotStatus::Overflow),
            "Merge failed" => return Ok(SnapshotStatus::MergeFailed),
            "Unknown" => return Ok(SnapshotStatus::Unknown),
            _ => {}
        }
        let mut w = s.split_whitespace();
        let used = w.next().ok_or_else(|| perr(WHAT, s, "empty"))?;
        let (a, t) = used
            .split_once('/')
            .ok_or_else(|| perr(WHAT, s, format!("{used:?} is not <allocated>/<total>")))?;
        let allocated = Sectors(num(WHAT, s, "allocated sectors", Some(a))?);
        let total = Sectors(num(WHAT, s, "total sectors", Some(t))?);
        let metadata = Sectors(num(WHAT, s, "metadata sectors", w.next())?);
        if let Some(x) = w.next() {
            return Err(perr(WHAT, s, format!("unexpected {x:?}")));
        }
        if allocated > total {
            return Err(perr(WHAT, s, "more sectors allocated than the store has"));
        }
        Ok(SnapshotStatus::Usage {
            allocated,
            total,
            metadata,
        })
    }
}

/// Bytes the store can still take as data. A persistent store spends one metadata chunk on every
/// `chunk bytes / 16` exceptions (dm-snap-persistent.c: 16-byte `disk_exception`s).
fn usable_bytes(free: Sectors, params: &SnapshotParams) -> u64 {
    let bytes = *free * 512;
    if !params.persistent {
        return bytes;
    }
    let per_area = (*params.chunk * 512 / 16).max(1);
    bytes / (per_area + 1) * per_area
}

/// The decision of [`overlay_check`], on values read from the kernel. `ram_available` is set when
/// the COW store lives in memory (MemAvailable then bounds it too).
fn overlay_verdict(
    name: &str,
    params: &SnapshotParams,
    status: &SnapshotStatus,
    ram_available: Option<u64>,
    need: u64,
) -> Result<()> {
    let hint = "the live system's changes are kept in a RAM overlay: free memory (stop programs, \
                delete files written since boot), or boot with a larger rd.live.overlay.size= or a \
                persistent overlay";
    let Some(free) = status.free() else {
        return match status {
            SnapshotStatus::Unknown => Ok(()),
            _ => Err(refuse(
                format!(
                    "the live overlay {name} reports \"{status}\": it already lost writes or refuses \
                     them, so the running root filesystem cannot be trusted to copy"
                ),
                Some("reboot the live medium; nothing was changed"),
            )),
        };
    };
    let cow = usable_bytes(free, params);
    let room = ram_available.map_or(cow, |r| cow.min(r));
    if room >= need {
        return Ok(());
    }
    let ram = ram_available
        .map(|r| {
            format!(
                " and {} of RAM is available for it",
                human(devicemapper::Bytes(r.into()))
            )
        })
        .unwrap_or_default();
    Err(refuse(
        format!(
            "the live overlay {name} could overflow during the migration: its store has {} free ({status}){ram}, \
             but up to {} may be written before the switch; an overflowing snapshot invalidates the root filesystem",
            human(devicemapper::Bytes(cow.into())),
            human(devicemapper::Bytes(need.into()))
        ),
        Some(hint),
    ))
}

/// Whether a block device keeps its data in memory: a loop device over a file on a filesystem
/// without a block device (tmpfs, ramfs, the initramfs; device major 0), or a RAM disk.
fn in_ram(dev: DevNum) -> bool {
    let Ok(d) = BlockDev::from_devnum(dev) else {
        return false;
    };
    if d.kname.starts_with("ram") || d.kname.starts_with("zram") {
        return true;
    }
    if d.loop_backing_file().is_none() {
        return false;
    }
    File::open(&d.path)
        .and_then(|f| ioctl::loop_status(f.as_fd()))
        .map(|st| DevNum::from_dev_t(st.lo_device).major == 0)
        .unwrap_or(false)
}

fn mem_available() -> Result<u64> {
    let text = fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .context("no MemAvailable in /proc/meminfo")
}

/// The `snapshot` table of a dm device, if it is one.
fn snapshot_of(dm: &Dm, name: &str) -> Result<Option<SnapshotParams>> {
    let table = dm.table(name)?;
    match table.as_slice() {
        [line] if line.target == "snapshot" => Ok(Some(
            line.params
                .parse()
                .with_context(|| format!("reading the table of {name}"))?,
        )),
        _ => Ok(None),
    }
}

/// Refuse (exit 2, nothing changed) when `source` is a dm snapshot whose copy-on-write store
/// could overflow before the switch: `need_bytes` is what may be written to the root until then.
/// Any other source passes.
pub fn overlay_check(source: &BlockDev, need_bytes: u64) -> Result<()> {
    let Some(name) = source.dm_name() else {
        return Ok(());
    };
    let dm = Dm::open()?;
    let Some(params) = snapshot_of(&dm, &name)? else {
        return Ok(());
    };
    let status: SnapshotStatus = match dm.status(&name)?.as_slice() {
        [line] => line
            .params
            .parse()
            .with_context(|| format!("reading the status of {name}"))?,
        other => anyhow::bail!(
            "{name}: {} status lines for a one-line snapshot",
            other.len()
        ),
    };
    let ram = if in_ram(params.cow) {
        Some(mem_available()?)
    } else {
        None
    };
    overlay_verdict(&name, &params, &status, ram, need_bytes)
}

// ---- release ----------------------------------------------------------------------------------

/// What `release_old` did, in order; `kept` entries say why something stayed.
#[derive(Debug, Default)]
struct Report(Vec<String>);

impl Report {
    fn done(&mut self, s: String) {
        self.0.push(s);
    }
    fn kept(&mut self, what: &str, why: impl fmt::Display) {
        self.0.push(format!("kept {what}: {why}"));
    }
}

/// Why a block device cannot be torn down now, if it cannot.
fn in_use(dev: &BlockDev) -> Option<String> {
    let holders = dev.holders();
    if !holders.is_empty() {
        return Some(format!("held by {}", holders.join(", ")));
    }
    match mounts::mounts_of(dev.devnum) {
        Ok(m) if !m.is_empty() => {
            return Some(format!("mounted on {}", m[0].mount_point.display()));
        }
        Err(e) => return Some(format!("cannot read the mount table: {e}")),
        Ok(_) => {}
    }
    if let Err(e) = dev.open_exclusive() {
        return Some(format!("opened exclusively by another program ({e})"));
    }
    None
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    loop {
        if f() {
            return true;
        }
        if t0.elapsed() >= timeout {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn remove_dm(dm: &Dm, dev: &BlockDev, name: &str, r: &mut Report) -> bool {
    let what = format!("dm {name}");
    if let Some(why) = in_use(dev) {
        r.kept(&what, why);
        return false;
    }
    match dm.info(name) {
        Ok(i) if i.open_count > 0 => {
            r.kept(&what, format!("opened by {} program(s)", i.open_count));
            return false;
        }
        Err(e) => {
            r.kept(&what, format!("{e:#}"));
            return false;
        }
        Ok(_) => {}
    }
    match dm.remove(name) {
        Ok(()) => {
            r.done(format!("removed dm {name} ({})", dev.devnum));
            true
        }
        Err(e) => {
            r.kept(&what, format!("{e:#}"));
            false
        }
    }
}

/// Unbind an unused loop device; returns the device its backing file is on.
fn detach_loop(dev: &BlockDev, r: &mut Report) -> Option<DevNum> {
    let file = dev.loop_backing_file()?;
    let what = format!("{} ({})", dev.display(), file.display());
    // Mounting the loop device or a dm table on it holds it; a lazily unmounted filesystem on it
    // (dracut's squashfs) lets go a moment after its last file is closed.
    if !wait_until(Duration::from_secs(3), || in_use(dev).is_none()) {
        r.kept(&what, in_use(dev).unwrap_or_default());
        return None;
    }
    let f = match File::open(&dev.path) {
        Ok(f) => f,
        Err(e) => {
            r.kept(&what, e);
            return None;
        }
    };
    let under = ioctl::loop_status(f.as_fd())
        .ok()
        .map(|st| DevNum::from_dev_t(st.lo_device));
    if let Err(e) = ioctl::loop_detach(f.as_fd()) {
        r.kept(&what, format!("LOOP_CLR_FD: {e}"));
        return None;
    }
    drop(f);
    // With other openers the kernel only marks it for autoclear; it unbinds on their last close.
    if wait_until(Duration::from_secs(2), || dev.loop_backing_file().is_none()) {
        r.done(format!("detached {what}"));
    } else {
        r.done(format!(
            "detached {what} (deferred: another program still has it open; it unbinds on its last close)"
        ));
    }
    under
}

/// The block device behind `dev`'s mounts under /run/initramfs, unmounted when nothing uses them.
fn unmount_medium(dev: DevNum, r: &mut Report) {
    let ms = match mounts::mounts_of(dev) {
        Ok(m) => m,
        Err(e) => {
            return r.kept(
                &dev.to_string(),
                format!("cannot read the mount table: {e}"),
            )
        }
    };
    for m in ms {
        let mp = m.mount_point.display().to_string();
        if !m.mount_point.starts_with(LIVE_MOUNT_DIR) {
            r.kept(
                &format!("mount {mp}"),
                format!("not a live-media mount under {LIVE_MOUNT_DIR}"),
            );
            continue;
        }
        // Never lazily: a busy mount stays, and says so.
        match nix::mount::umount2(&m.mount_point, nix::mount::MntFlags::empty()) {
            Ok(()) => r.done(format!("unmounted {mp} ({} on {})", m.fs_type, m.source)),
            Err(e) => r.kept(&format!("mount {mp}"), format!("umount: {e}")),
        }
    }
}

/// After the switch: tear down what only the old root used, when the old root was a live system's
/// dm snapshot (`live-rw`): the snapshot, `live-base`, their loop devices (LOOP_CLR_FD), the image
/// files' loop devices below them, and the medium's mounts under /run/initramfs, so the medium is
/// unused (a CD can be ejected). Nothing held, mounted or open by someone else is touched.
///
/// Returns one line per step in order: `removed …`, `detached …`, `unmounted …`, or `kept …: why`.
/// Empty when `old` is not a live snapshot (a disk or partition needs no teardown). Steps that fail
/// are reported as `kept`, not as errors: the migration itself is complete at this point.
pub fn release_old(old: &BlockDev) -> Result<Vec<String>> {
    let mut r = Report::default();
    let Some(name) = old.dm_name() else {
        return Ok(r.0);
    };
    if !name.starts_with(LIVE_DM_PREFIX) {
        r.kept(&format!("dm {name}"), "not a live-media device");
        return Ok(r.0);
    }
    let dm = Dm::open()?;
    let slaves: Vec<BlockDev> = old.slaves();
    if !remove_dm(&dm, old, &name, &mut r) {
        return Ok(r.0);
    }

    // The stack below: loop devices, and other live-* dm devices on them (live-base).
    let mut loops: Vec<BlockDev> = vec![];
    for s in slaves {
        if s.loop_backing_file().is_some() && !loops.iter().any(|l| l.devnum == s.devnum) {
            loops.push(s);
        }
    }
    for (other, devnum) in dm.list()? {
        if !other.starts_with(LIVE_DM_PREFIX) {
            continue;
        }
        let Ok(dev) = BlockDev::from_devnum(devnum) else {
            continue;
        };
        let below = dev.slaves();
        if !below
            .iter()
            .any(|b| loops.iter().any(|l| l.devnum == b.devnum))
        {
            continue;
        }
        if remove_dm(&dm, &dev, &other, &mut r) {
            for b in below {
                if b.loop_backing_file().is_some() && !loops.iter().any(|l| l.devnum == b.devnum) {
                    loops.push(b);
                }
            }
        }
    }

    // Loop devices, then whatever their backing files were on: another loop device (the squashfs
    // image) or the medium's mount.
    let mut media: Vec<DevNum> = vec![];
    let mut i = 0;
    while i < loops.len() {
        let l = loops[i].clone();
        i += 1;
        let Some(under) = detach_loop(&l, &mut r) else {
            continue;
        };
        if under.major == 0 {
            continue; // tmpfs/ramfs/initramfs: the overlay file's memory is freed with it
        }
        match BlockDev::from_devnum(under) {
            Ok(u) if u.loop_backing_file().is_some() => {
                if !loops.iter().any(|x| x.devnum == u.devnum) {
                    loops.push(u);
                }
            }
            Ok(_) => {
                if !media.contains(&under) {
                    media.push(under);
                }
            }
            Err(_) => {}
        }
    }
    for m in media {
        unmount_medium(m, &mut r);
    }
    Ok(r.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::units::{GIB, MIB};

    #[test]
    fn snapshot_params_as_dmsquash_live_makes_them() {
        // dmsquash-live-root.sh: echo 0 $sz snapshot $base $over PO 8 | dmsetup create live-rw
        let p: SnapshotParams = "7:1 7:2 PO 8".parse().unwrap();
        assert_eq!(p.origin, DevNum::new(7, 1));
        assert_eq!(p.cow, DevNum::new(7, 2));
        assert!(p.persistent && p.overflow);
        assert_eq!(p.chunk, Sectors(8));
        assert_eq!(p.to_string(), "7:1 7:2 PO 8");
        for s in ["253:0 253:1 P 16", "7:1 7:3 N 8"] {
            assert_eq!(s.parse::<SnapshotParams>().unwrap().to_string(), s);
        }
        assert!(!"7:1 7:3 N 8".parse::<SnapshotParams>().unwrap().persistent);
    }

    #[test]
    fn snapshot_params_errors_name_the_field() {
        let e = "7:1 7:2 X 8".parse::<SnapshotParams>().unwrap_err();
        assert!(e.why.contains("store type"), "{e}");
        assert!("7:1 7:2 P"
            .parse::<SnapshotParams>()
            .unwrap_err()
            .why
            .contains("chunk"));
        assert!("7:1 7:2 P 0".parse::<SnapshotParams>().is_err());
        assert!("7:1 7:2 P 8 extra".parse::<SnapshotParams>().is_err());
        assert!("sda 7:2 P 8"
            .parse::<SnapshotParams>()
            .unwrap_err()
            .why
            .contains("origin"));
    }

    #[test]
    fn snapshot_status_strings_of_dm_snap_c() {
        // a fresh 32 GiB RAM overlay: two metadata chunks (header + first exception area)
        let s: SnapshotStatus = "16/67108864 16".parse().unwrap();
        assert_eq!(
            s,
            SnapshotStatus::Usage {
                allocated: Sectors(16),
                total: Sectors(67108864),
                metadata: Sectors(16)
            }
        );
        assert_eq!(s.to_string(), "16/67108864 16");
        assert_eq!(s.free(), Some(Sectors(67108848)));
        for (text, want) in [
            ("Invalid", SnapshotStatus::Invalid),
            ("Overflow", SnapshotStatus::Overflow),
            ("Merge failed", SnapshotStatus::MergeFailed),
            ("Unknown", SnapshotStatus::Unknown),
        ] {
            assert_eq!(text.parse::<SnapshotStatus>().unwrap(), want);
            assert_eq!(want.to_string(), text);
            assert_eq!(want.free(), None);
        }
        assert!("16 16".parse::<SnapshotStatus>().is_err());
        assert!("16/x 16".parse::<SnapshotStatus>().is_err());
        assert!("16/32"
            .parse::<SnapshotStatus>()
            .unwrap_err()
            .why
            .contains("metadata"));
        assert!("64/32 16".parse::<SnapshotStatus>().is_err());
        assert!("".parse::<SnapshotStatus>().is_err());
    }

    #[test]
    fn usable_space_leaves_room_for_the_exception_store() {
        let p: SnapshotParams = "7:1 7:2 PO 8".parse().unwrap();
        // 4 KiB chunks: 256 exceptions per metadata chunk, so 256 of every 257 chunks hold data
        assert_eq!(usable_bytes(Sectors(257 * 8), &p), 256 * 4096);
        let n: SnapshotParams = "7:1 7:2 N 8".parse().unwrap();
        assert_eq!(usable_bytes(Sectors(257 * 8), &n), 257 * 4096);
    }

    #[test]
    fn verdicts() {
        let p: SnapshotParams = "7:1 7:2 PO 8".parse().unwrap();
        let fresh: SnapshotStatus = "16/67108864 16".parse().unwrap();
        // 32 GiB store on disk: plenty
        assert!(overlay_verdict("live-rw", &p, &fresh, None, GIB).is_ok());
        // in RAM, with only 100 MiB available: refused, with both figures in the message
        let e = overlay_verdict("live-rw", &p, &fresh, Some(100 * MIB), 256 * MIB).unwrap_err();
        assert!(crate::error::exit_code(&e) == crate::error::exit::REFUSED);
        let m = e.to_string();
        assert!(
            m.contains("live-rw") && m.contains("100.0 MiB") && m.contains("256.0 MiB"),
            "{m}"
        );
        assert!(crate::error::hint(&e)
            .unwrap()
            .contains("rd.live.overlay.size"));
        // a nearly full 64 MiB store (rd.live.overlay.size=64) and plenty of RAM: refused
        let full: SnapshotStatus = "120000/131072 480".parse().unwrap();
        assert!(overlay_verdict("live-rw", &p, &full, Some(4 * GIB), 64 * MIB).is_err());
        assert!(overlay_verdict("live-rw", &p, &full, Some(4 * GIB), 5 * MIB).is_ok());
        // broken snapshots are refused whatever the sizes
        for s in [
            SnapshotStatus::Invalid,
            SnapshotStatus::Overflow,
            SnapshotStatus::MergeFailed,
        ] {
            let e = overlay_verdict("live-rw", &p, &s, None, 0).unwrap_err();
            assert!(e.to_string().contains(&format!("\"{s}\"")), "{e}");
        }
        assert!(overlay_verdict("live-rw", &p, &SnapshotStatus::Unknown, None, GIB).is_ok());
    }
}
