//! What md shows under sysfs: attributes under `/sys/block/<name>/md` (read and written as
//! the typed values of [`super::attr`]), the members' `md/dev-*` directories, and new array
//! names through `/sys/module/md_mod/parameters/new_array`.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use devicemapper::Sectors;
use nix::errno::Errno;

use super::attr::{
    parse_u64, perr, ArrayState, ComponentSize, Degraded, DevSize, DevState, ParseError, RaidDisks,
    Slot, SyncAction, SyncCompleted, SyncSpeed,
};
use super::error::{io_err, MdError};
use super::speed::{SpeedLimit, SpeedSetting};
use super::MdArray;
use crate::kernel::devnum::DevNum;

/// Where md takes new array names (md.c `add_named_array`).
pub const NEW_ARRAY_PARAM: &str = "/sys/module/md_mod/parameters/new_array";

/// The kernel's DISK_NAME_LEN: array names must be shorter.
const DISK_NAME_LEN: usize = 32;

/// The text of a sysfs attribute: one read(2) of a page at offset 0, as mdadm's `load_sys` does
/// (sysfs renders the whole attribute for that read). With `read_to_string` (reads until EOF) a
/// member's `state` once came back as "spare\nc\n" — "spare\n" and the tail of "in_sync\n" —
/// as recovery started (fault-kill-md on 6.1, 2026-12-06); the parsers also take the first line.
pub(super) fn read_text(path: &Path) -> Result<String, MdError> {
    let mut f = fs::File::open(path).map_err(|e| io_err("reading", path, e))?;
    let mut buf = vec![0u8; 4096];
    let n = f.read(&mut buf).map_err(|e| io_err("reading", path, e))?;
    buf.truncate(n);
    String::from_utf8(buf).map_err(|e| {
        io_err(
            "reading",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })
}

pub(super) fn read_typed<T: FromStr<Err = ParseError>>(path: &Path) -> Result<T, MdError> {
    read_text(path)?.parse().map_err(|source| MdError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Write `value` to a sysfs attribute in one write(2), which is where md returns its error.
pub(super) fn write_text(path: &Path, value: &str) -> Result<(), MdError> {
    let action = || format!("writing {value:?} to");
    let mut f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io_err(action(), path, e))?;
    f.write_all(value.as_bytes())
        .map_err(|e| io_err(action(), path, e))
}

/// One member of an md array, from its `md/dev-*` directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MdMember {
    /// Directory name under `md/`: `dev-` + the kernel name with `/` written as `!`.
    pub dir: String,
    /// Kernel name of the member (`vdb`, `dm-3`).
    pub kname: String,
    /// From `dev-*/block/dev` (md does not insist on making that link).
    pub devnum: Option<DevNum>,
    pub state: DevState,
    pub size: DevSize,
    pub slot: Slot,
}

fn is_gone(e: &MdError) -> bool {
    // A member unbound while we read: its directory vanished (ENOENT) or its attributes answer
    // ENODEV (md.c rdev_attr_show once rdev->mddev is NULL).
    matches!(e.errno(), Some(Errno::ENOENT) | Some(Errno::ENODEV))
}

/// The members listed under an array's `md/` directory, sorted by directory name. Members that
/// disappear while being read are left out.
fn read_members(md_dir: &Path) -> Result<Vec<MdMember>, MdError> {
    let rd = fs::read_dir(md_dir).map_err(|e| io_err("listing", md_dir, e))?;
    let mut dirs: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("dev-"))
        .collect();
    dirs.sort();
    let mut out = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let base = md_dir.join(&dir);
        let member = (|| -> Result<MdMember, MdError> {
            Ok(MdMember {
                kname: dir["dev-".len()..].replace('!', "/"),
                devnum: fs::read_to_string(base.join("block/dev"))
                    .ok()
                    .and_then(|s| s.trim().parse().ok()),
                state: read_typed(&base.join("state"))?,
                size: read_typed(&base.join("size"))?,
                slot: read_typed(&base.join("slot"))?,
                dir: dir.clone(),
            })
        })();
        match member {
            Ok(m) => out.push(m),
            Err(e) if is_gone(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Check a name against what md.c `add_named_array` accepts: `mdNNN` (NNN the minor, at most
/// 2^20-1) or `md_<anything>` (a free minor from 512 up is chosen), shorter than DISK_NAME_LEN.
/// Names with `/` or whitespace are refused here though md would take them: they make bad
/// node and sysfs names.
pub fn check_array_name(name: &str) -> Result<(), MdError> {
    let bad = |why| {
        Err(MdError::BadName {
            name: name.to_string(),
            why,
        })
    };
    if name.len() >= DISK_NAME_LEN {
        return bad("md names are at most 31 bytes");
    }
    if name.contains(|c: char| c == '/' || c == '\0' || c.is_whitespace()) {
        return bad("it contains '/', NUL or whitespace");
    }
    if let Some(rest) = name.strip_prefix("md_") {
        if rest.is_empty() {
            return bad("nothing follows md_");
        }
        return Ok(());
    }
    if let Some(num) = name.strip_prefix("md") {
        if !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) {
            return match num.parse::<u32>() {
                Ok(n) if n <= 0xf_ffff => Ok(()),
                _ => bad("the minor number is above 1048575"),
            };
        }
    }
    bad("md takes only mdNNN or md_<name>")
}

/// Create an empty md array named `name` by writing it to
/// `/sys/module/md_mod/parameters/new_array`. The kernel accepts `mdNNN` (minor NNN) or
/// `md_<name>` (any free minor; such an array lives until STOP_ARRAY). Errors: EEXIST when the
/// name or minor is taken, EINVAL for any other form, E2BIG for names of 32 bytes or more.
/// `/dev/<name>` and `/sys/block/<name>` exist when this returns (devtmpfs permitting).
pub fn create_array_name(name: &str) -> Result<(), MdError> {
    check_array_name(name)?;
    let param = Path::new(NEW_ARRAY_PARAM);
    if !param.exists() {
        let _ = crate::tools::modprobe("md_mod");
        if !param.exists() {
            return Err(MdError::NoMd(param.to_path_buf()));
        }
    }
    write_text(param, name)
}

impl MdArray {
    /// The existing array called `name`.
    pub fn open(name: &str) -> Result<MdArray, MdError> {
        let path = PathBuf::from("/sys/block").join(name).join("dev");
        let devnum: DevNum = read_text(&path)?.trim().parse().map_err(
            |e: crate::kernel::devnum::ParseDevNumError| MdError::Parse {
                path: path.clone(),
                source: perr("dev", &e.0),
            },
        )?;
        Ok(MdArray {
            name: name.to_string(),
            devnum,
        })
    }

    /// `/sys/block/<name>/md`.
    pub fn md_dir(&self) -> PathBuf {
        PathBuf::from("/sys/block").join(&self.name).join("md")
    }

    /// `/sys/block/<name>/md/<attr>`; `attr` may name a member's file (`dev-vdb/size`).
    pub fn attr_path(&self, attr: &str) -> PathBuf {
        self.md_dir().join(attr)
    }

    /// An attribute's text as read (with the kernel's newline).
    pub fn read_raw(&self, attr: &str) -> Result<String, MdError> {
        read_text(&self.attr_path(attr))
    }

    /// An attribute parsed as one of the types of this module.
    pub fn read<T: FromStr<Err = ParseError>>(&self, attr: &str) -> Result<T, MdError> {
        read_typed(&self.attr_path(attr))
    }

    /// Write an attribute; the error names the path, the value and the errno md returned.
    pub fn write(&self, attr: &str, value: &str) -> Result<(), MdError> {
        write_text(&self.attr_path(attr), value)
    }

    pub fn sync_action(&self) -> Result<SyncAction, MdError> {
        self.read("sync_action")
    }

    pub fn sync_completed(&self) -> Result<SyncCompleted, MdError> {
        self.read("sync_completed")
    }

    pub fn sync_speed(&self) -> Result<SyncSpeed, MdError> {
        self.read("sync_speed")
    }

    /// The floor of this array's sync speed (KiB/s) and whose it is.
    pub fn sync_speed_min(&self) -> Result<SpeedLimit, MdError> {
        self.read("sync_speed_min")
    }

    /// The cap of this array's sync speed (KiB/s) and whose it is.
    pub fn sync_speed_max(&self) -> Result<SpeedLimit, MdError> {
        self.read("sync_speed_max")
    }

    /// Set this array's sync speed floor, or give it back to the sysctl (`System`).
    pub fn set_sync_speed_min(&self, v: SpeedSetting) -> Result<(), MdError> {
        self.write("sync_speed_min", &v.to_string())
    }

    /// Set this array's sync speed cap, or give it back to the sysctl (`System`).
    pub fn set_sync_speed_max(&self, v: SpeedSetting) -> Result<(), MdError> {
        self.write("sync_speed_max", &v.to_string())
    }

    pub fn degraded(&self) -> Result<Degraded, MdError> {
        self.read("degraded")
    }

    pub fn component_size(&self) -> Result<ComponentSize, MdError> {
        self.read("component_size")
    }

    pub fn array_state(&self) -> Result<ArrayState, MdError> {
        self.read("array_state")
    }

    pub fn raid_disks(&self) -> Result<RaidDisks, MdError> {
        self.read("raid_disks")
    }

    /// The array's size (`/sys/block/<name>/size`, always in 512-byte sectors).
    pub fn size(&self) -> Result<Sectors, MdError> {
        let path = PathBuf::from("/sys/block").join(&self.name).join("size");
        let text = read_text(&path)?;
        parse_u64("size", &text)
            .map(Sectors)
            .map_err(|source| MdError::Parse { path, source })
    }

    /// The members (`md/dev-*`): state, size and slot of each.
    pub fn dev_dirs(&self) -> Result<Vec<MdMember>, MdError> {
        read_members(&self.md_dir())
    }

    /// Stop without a node: `clear` to `md/array_state` (md.c: the same do_md_stop()).
    pub(super) fn clear_by_sysfs(&self) -> Result<(), MdError> {
        self.write("array_state", "clear")
    }
}

/// Whether a member other than `dev` (known by number or kernel name) is in sync, healthy and
/// in a slot.
pub(super) fn has_other_in_sync(members: &[MdMember], dev: DevNum, kname: Option<&str>) -> bool {
    members
        .iter()
        .filter(|m| m.devnum != Some(dev) && Some(m.kname.as_str()) != kname)
        .any(|m| m.state.is_healthy_in_sync() && matches!(m.slot, Slot::Index(_)))
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::super::error::{ioctl_err, with_cleanup};
    use super::*;

    #[test]
    fn array_names() {
        for ok in ["md0", "md127", "md1048575", "md_rootshift-root", "md_x"] {
            assert!(check_array_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "md",
            "md_",
            "md1048576",
            "md12a",
            "mdx",
            "dm-0",
            "rootshift",
            "md_a/b",
            "md_a b",
            "md_abcdefghijklmnopqrstuvwxyz012", // 32 bytes: E2BIG in md
        ] {
            assert!(check_array_name(bad).is_err(), "{bad}");
        }
        assert!(check_array_name("md_abcdefghijklmnopqrstuvwxyz01").is_ok()); // 31 bytes
    }

    /// A scratch directory under the system temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let p = std::env::temp_dir()
                .join(format!("rootshift-md-test-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn put(dir: &Path, name: &str, text: &str) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn members_from_an_md_directory() {
        let t = Scratch::new("members");
        let md = t.0.join("md");
        // As md lays it out: attributes, rdN links, one dev-* directory per member.
        put(&md, "sync_action", "recover\n");
        put(&md, "rd0", "");
        let vda = md.join("dev-vda");
        put(&vda, "state", "in_sync\n");
        put(&vda, "size", "524288\n");
        put(&vda, "slot", "0\n");
        put(&vda.join("block"), "dev", "253:0\n");
        let vdb = md.join("dev-vdb");
        put(&vdb, "state", "spare\n");
        put(&vdb, "size", "1048576\n");
        put(&vdb, "slot", "1\n");
        put(&vdb.join("block"), "dev", "253:16\n");
        let cc = md.join("dev-cciss!c0d0");
        put(&cc, "state", "faulty\n");
        put(&cc, "size", "0\n");
        put(&cc, "slot", "none\n");
        // A member whose directory is half gone (unbound while listing): skipped.
        fs::create_dir_all(md.join("dev-vdc")).unwrap();

        let m = read_members(&md).unwrap();
        assert_eq!(
            m.iter().map(|m| m.dir.as_str()).collect::<Vec<_>>(),
            ["dev-cciss!c0d0", "dev-vda", "dev-vdb"]
        );
        assert_eq!(m[0].kname, "cciss/c0d0");
        assert_eq!(m[0].devnum, None);
        assert!(m[0].state.faulty && m[0].size.is_unset() && m[0].slot == Slot::None);
        assert_eq!(m[1].devnum, Some(DevNum::new(253, 0)));
        assert!(m[1].state.is_healthy_in_sync());
        assert_eq!(m[1].slot, Slot::Index(0));
        assert_eq!(m[2].size.kib, 1048576);
        assert!(m[2].state.spare);

        // Failing a member needs another healthy in-sync member in a slot.
        let vda_dev = DevNum::new(253, 0);
        let vdb_dev = DevNum::new(253, 16);
        assert!(!has_other_in_sync(&m, vda_dev, Some("vda")));
        assert!(!has_other_in_sync(&m, vda_dev, None));
        assert!(has_other_in_sync(&m, vdb_dev, Some("vdb")));
        let mut two = m.clone();
        two[2].state = "in_sync".parse().unwrap();
        assert!(has_other_in_sync(&two, vda_dev, Some("vda")));
        // Known by kernel name only (no block/dev link): still recognised as itself.
        two[1].devnum = None;
        two[2].state = "spare".parse().unwrap();
        assert!(!has_other_in_sync(&two, vda_dev, Some("vda")));

        // A member attribute md would never print: an error naming the file.
        put(&vdb, "slot", "two\n");
        let e = read_members(&md).unwrap_err();
        assert!(matches!(e, MdError::Parse { .. }));
        assert!(e.to_string().contains("dev-vdb/slot"), "{e}");
    }

    #[test]
    fn errors_name_the_path_and_errno() {
        let t = Scratch::new("errors");
        let missing = t.0.join("md/component_size");
        let e = write_text(&missing, "0").unwrap_err();
        assert_eq!(e.errno(), Some(Errno::ENOENT));
        let msg = e.to_string();
        assert!(msg.contains("\"0\""), "{msg}");
        assert!(msg.contains(&missing.display().to_string()), "{msg}");
        assert!(msg.contains("ENOENT"), "{msg}");

        put(&t.0, "sync_action", "recovery\n");
        let e = read_typed::<SyncAction>(&t.0.join("sync_action")).unwrap_err();
        assert_eq!(e.errno(), None);
        assert!(e.to_string().contains("sync_action"), "{e}");

        let f = t.0.join("array_state");
        put(&t.0, "array_state", "");
        write_text(&f, "clear").unwrap();
        assert_eq!(fs::read_to_string(&f).unwrap(), "clear");

        let both = with_cleanup(
            ioctl_err(
                "RUN_ARRAY",
                Path::new("/dev/md_x"),
                io::Error::from_raw_os_error(libc::EINVAL),
            ),
            Err(ioctl_err(
                "STOP_ARRAY",
                Path::new("/dev/md_x"),
                io::Error::from_raw_os_error(libc::EBUSY),
            )),
        );
        assert_eq!(both.errno(), Some(Errno::EINVAL));
        let msg = both.to_string();
        assert!(msg.contains("RUN_ARRAY on /dev/md_x: EINVAL"), "{msg}");
        assert!(msg.contains("STOP_ARRAY on /dev/md_x: EBUSY"), "{msg}");
        let alone = with_cleanup(
            ioctl_err(
                "RUN_ARRAY",
                Path::new("/dev/md_x"),
                io::Error::from_raw_os_error(libc::EINVAL),
            ),
            Ok(()),
        );
        assert!(matches!(alone, MdError::Ioctl { .. }));
    }
}
