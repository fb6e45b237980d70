//! Filesystems: what a device already holds (signature probe), and growing a mounted filesystem.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use devicemapper::Bytes;
use nix::sys::statvfs::fstatvfs;

use super::ioctl;

/// How many bytes of a device `probe` wants to see.
pub const PROBE_BYTES: usize = 68 * 1024;

/// Something recognisable at the start of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    Ext2,
    Ext3,
    Ext4,
    Xfs,
    Btrfs,
    Swap,
    Vfat,
    Iso9660,
    Squashfs,
    Luks,
    LvmPv,
    MdRaid,
    Gpt,
    Mbr,
}

impl Content {
    /// Phrase for "already holds …".
    pub fn describe(self) -> &'static str {
        match self {
            Content::Ext2 => "an ext2 filesystem",
            Content::Ext3 => "an ext3 filesystem",
            Content::Ext4 => "an ext4 filesystem",
            Content::Xfs => "an xfs filesystem",
            Content::Btrfs => "a btrfs filesystem",
            Content::Swap => "a swap area",
            Content::Vfat => "a FAT filesystem",
            Content::Iso9660 => "an ISO 9660 filesystem",
            Content::Squashfs => "a squashfs image",
            Content::Luks => "a LUKS header",
            Content::LvmPv => "an LVM physical volume",
            Content::MdRaid => "an md RAID superblock",
            Content::Gpt => "a GPT partition table",
            Content::Mbr => "an MBR partition table",
        }
    }
}

fn at(buf: &[u8], off: usize, sig: &[u8]) -> bool {
    buf.get(off..off + sig.len()) == Some(sig)
}

/// Recognise the most common on-disk signatures in the first `PROBE_BYTES` of a device.
/// Filesystems are checked before partition tables (a FAT boot sector also ends in 55 AA).
pub fn probe(buf: &[u8]) -> Option<Content> {
    if at(buf, 1080, &[0x53, 0xEF]) {
        // Superblock at 1024: s_feature_compat at +0x5C, s_feature_incompat at +0x60.
        let word = |off: usize| u32::from_le_bytes(buf[off..off + 4].try_into().expect("4 bytes"));
        let (compat, incompat) = (word(1024 + 0x5C), word(1024 + 0x60));
        const HAS_JOURNAL: u32 = 0x4;
        const EXT4_ONLY: u32 = 0x40 | 0x80 | 0x200; // extents, 64bit, flex_bg
        return Some(if incompat & EXT4_ONLY != 0 {
            Content::Ext4
        } else if compat & HAS_JOURNAL != 0 {
            Content::Ext3
        } else {
            Content::Ext2
        });
    }
    if at(buf, 0, b"XFSB") {
        return Some(Content::Xfs);
    }
    if at(buf, 65600, b"_BHRfS_M") {
        return Some(Content::Btrfs);
    }
    if at(buf, 4086, b"SWAPSPACE2") || at(buf, 4086, b"SWAP-SPACE") {
        return Some(Content::Swap);
    }
    if at(buf, 0, b"LUKS\xba\xbe") {
        return Some(Content::Luks);
    }
    if at(buf, 0, b"hsqs") {
        return Some(Content::Squashfs);
    }
    if (0..4).any(|s| at(buf, s * 512, b"LABELONE")) {
        return Some(Content::LvmPv);
    }
    let md_magic = 0xa92b4efcu32.to_le_bytes();
    if at(buf, 4096, &md_magic) || at(buf, 0, &md_magic) {
        return Some(Content::MdRaid);
    }
    if at(buf, 32769, b"CD001") {
        return Some(Content::Iso9660);
    }
    if at(buf, 512, b"EFI PART") || at(buf, 4096, b"EFI PART") {
        return Some(Content::Gpt);
    }
    let boot_sig = at(buf, 510, &[0x55, 0xAA]);
    if boot_sig && (at(buf, 54, b"FAT") || at(buf, 82, b"FAT32")) {
        return Some(Content::Vfat);
    }
    if boot_sig && (0..4).any(|i| buf.get(446 + 16 * i + 4).is_some_and(|&t| t != 0)) {
        return Some(Content::Mbr);
    }
    None
}

/// The label of an ext2/3/4 filesystem (superblock at 1024, `s_volume_name` at +0x78, 16 bytes).
pub fn ext_label(buf: &[u8]) -> Option<String> {
    if !matches!(probe(buf)?, Content::Ext2 | Content::Ext3 | Content::Ext4) {
        return None;
    }
    let raw = buf.get(1024 + 0x78..1024 + 0x88)?;
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    Some(String::from_utf8_lossy(&raw[..end]).into_owned()).filter(|l| !l.is_empty())
}

/// The identity a filesystem carries in its superblock: what `UUID=` in fstab and on the kernel
/// command line refers to. ext2/3/4 and xfs: a UUID; FAT: the 32-bit volume id (`ABCD-1234`).
pub fn fs_uuid(buf: &[u8]) -> Option<String> {
    let uuid_at = |off: usize| {
        let b: [u8; 16] = buf.get(off..off + 16)?.try_into().ok()?;
        Some(uuid::Uuid::from_bytes(b).hyphenated().to_string())
    };
    match probe(buf)? {
        // ext superblock at 1024, s_uuid at +0x68
        Content::Ext2 | Content::Ext3 | Content::Ext4 => uuid_at(1024 + 0x68),
        // xfs: sb_uuid at byte 32 of the primary superblock
        Content::Xfs => uuid_at(32),
        // btrfs superblock at 64 KiB, fsid at +0x20
        Content::Btrfs => uuid_at(65536 + 0x20),
        // swap header v1 (SWAPSPACE2): 1024 boot bytes, version, last_page, nr_badpages, then the uuid
        Content::Swap if at(buf, 4086, b"SWAPSPACE2") => uuid_at(1024 + 12),
        Content::Vfat => {
            // FAT32 keeps the volume id at 0x43, FAT12/16 at 0x27
            let off = if at(buf, 82, b"FAT32") { 0x43 } else { 0x27 };
            let id = u32::from_le_bytes(buf.get(off..off + 4)?.try_into().ok()?);
            Some(format!("{:04X}-{:04X}", id >> 16, id & 0xffff))
        }
        _ => None,
    }
}

/// The UUID in a LUKS header (LUKS1 and LUKS2 both keep it as text at byte 168, 40 bytes,
/// NUL-padded): what crypttab, `rd.luks.uuid=` and the boot hooks find an encrypted root by.
pub fn luks_uuid(buf: &[u8]) -> Option<String> {
    if probe(buf)? != Content::Luks {
        return None;
    }
    let raw = buf.get(168..208)?;
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let s = std::str::from_utf8(&raw[..end]).ok()?;
    uuid::Uuid::parse_str(s)
        .ok()
        .map(|u| u.hyphenated().to_string())
}

/// The UUID the boot finds the root device by: the filesystem's, or for an encrypted root the
/// LUKS container's (its filesystem cannot be read before it is unlocked).
pub fn boot_uuid(buf: &[u8]) -> Option<String> {
    fs_uuid(buf).or_else(|| luks_uuid(buf))
}

// ---- freeze notes --------------------------------------------------------------------------
// The guardian (a separate process that resumes/thaws if rootshift dies mid-change) must thaw
// only a freeze rootshift made of the filesystem it guards, never someone else's. So every
// freeze of that filesystem made through this module is noted on a pipe, one byte before the
// FIFREEZE and one after the thaw (or after a freeze that failed).

/// Byte written before a freeze of the noted filesystem.
pub const NOTE_FREEZE: u8 = b'F';
/// Byte written after its thaw (or after a freeze attempt that failed).
pub const NOTE_THAW: u8 = b'T';
static NOTE_FD: AtomicI32 = AtomicI32::new(-1);
static NOTE_DEV: AtomicU64 = AtomicU64::new(u64::MAX);

/// From now on, note freezes of the filesystem on device `st_dev` (as `stat` reports it) to `fd`.
/// The caller keeps `fd` open until [`stop_noting_freezes`].
pub fn note_freezes_to(fd: RawFd, st_dev: u64) {
    NOTE_DEV.store(st_dev, Ordering::SeqCst);
    NOTE_FD.store(fd, Ordering::SeqCst);
}

/// Stop noting to `fd` (call before closing it).
pub fn stop_noting_freezes(fd: RawFd) {
    let _ = NOTE_FD.compare_exchange(fd, -1, Ordering::SeqCst, Ordering::SeqCst);
}

fn note(file: &File, b: u8) {
    let fd = NOTE_FD.load(Ordering::SeqCst);
    if fd < 0 {
        return;
    }
    match file.metadata() {
        Ok(m) if m.dev() == NOTE_DEV.load(Ordering::SeqCst) => {
            let _ = ioctl::write_byte_raw(fd, b);
        }
        _ => {}
    }
}

/// Write back the dirty data and metadata of the filesystem mounted at `mount_point` (syncfs).
pub fn syncfs(mount_point: &Path) -> io::Result<()> {
    let f = File::open(mount_point)?;
    nix::unistd::syncfs(f.as_fd()).map_err(io::Error::from)
}

/// FIFREEZE the filesystem `file` is on, noted (see above).
pub fn freeze_file(file: &File) -> io::Result<()> {
    note(file, NOTE_FREEZE);
    ioctl::fs_freeze(file.as_fd()).inspect_err(|_| note(file, NOTE_THAW))
}

/// FITHAW the filesystem `file` is on, noted when it is no longer frozen (thawed, or EINVAL:
/// it was not frozen).
pub fn thaw_file(file: &File) -> io::Result<()> {
    let r = ioctl::fs_thaw(file.as_fd());
    if r.is_ok() || r.as_ref().err().and_then(|e| e.raw_os_error()) == Some(libc::EINVAL) {
        note(file, NOTE_THAW);
    }
    r
}

/// A frozen filesystem (FIFREEZE); thawed when dropped, on every path.
pub struct Frozen {
    file: File,
    thawed: bool,
}

impl Frozen {
    pub fn freeze(mount_point: &Path) -> io::Result<Frozen> {
        let file = File::open(mount_point)?;
        freeze_file(&file)?;
        Ok(Frozen {
            file,
            thawed: false,
        })
    }

    /// The open mount point, for more ioctls while frozen.
    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn thaw(mut self) -> io::Result<()> {
        self.thawed = true;
        thaw_file(&self.file)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if !self.thawed {
            let _ = thaw_file(&self.file);
        }
    }
}

/// Free extents `(start, length)` in bytes of the filesystem `fd` belongs to, on its data device
/// `dev` (FS_IOC_GETFSMAP). Works on a frozen filesystem.
pub fn free_extents(file: &File, dev: super::devnum::DevNum) -> io::Result<Vec<(u64, u64)>> {
    let recs = ioctl::getfsmap(file.as_fd())?;
    let want = ioctl::md_dev_arg(dev);
    Ok(recs
        .iter()
        .filter(|r| Some(r.device) == want || recs.iter().all(|x| x.device == recs[0].device))
        .filter(|r| r.flags & ioctl::FMR_OF_SPECIAL_OWNER != 0 && r.owner == ioctl::FMR_OWN_FREE)
        .map(|r| (r.physical, r.length))
        .collect())
}

/// Sizes of a filesystem before and after a grow.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Grown {
    pub before: u64,
    pub after: u64,
}

fn fs_bytes(f: &File) -> io::Result<u64> {
    let st = fstatvfs(f.as_fd()).map_err(io::Error::from)?;
    Ok(st.blocks() * st.fragment_size())
}

/// Grow the filesystem mounted at `mount_point` (of type `fs_type`) to fill `dev_size` bytes,
/// online. Returns the sizes statvfs reports before and after.
pub fn grow_mounted(mount_point: &Path, fs_type: &str, dev_size: Bytes) -> io::Result<Grown> {
    let f = File::open(mount_point)?;
    let before = fs_bytes(&f)?;
    let dev_size = u64::try_from(*dev_size).map_err(io::Error::other)?;
    match fs_type {
        "ext4" | "ext3" | "ext2" => {
            // For ext*, statvfs f_bsize is the filesystem block size.
            let bsize = fstatvfs(f.as_fd()).map_err(io::Error::from)?.block_size();
            ioctl::ext4_resize(f.as_fd(), dev_size / bsize)?;
        }
        "xfs" => {
            let g = ioctl::xfs_geometry(f.as_fd())?;
            let blocks = dev_size / u64::from(g.blocksize);
            if blocks > g.datablocks {
                ioctl::xfs_grow_data(f.as_fd(), blocks, g.imaxpct)?;
            }
        }
        other => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("rootshift cannot grow a mounted {other} filesystem (ext4 and xfs only); the device has grown, grow the filesystem with its own tool"),
            ))
        }
    }
    let after = fs_bytes(&f)?;
    Ok(Grown { before, after })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freezes_are_noted_only_for_the_guarded_filesystem_and_only_while_published() {
        use std::os::fd::AsRawFd;
        let (r, w) = nix::unistd::pipe().unwrap();
        let here = File::open(".").unwrap();
        let dev = here.metadata().unwrap().dev();
        note(&here, NOTE_FREEZE); // nothing published: nothing written
        note_freezes_to(w.as_raw_fd(), dev);
        note(&here, NOTE_FREEZE);
        note(&here, NOTE_THAW);
        note_freezes_to(w.as_raw_fd(), dev.wrapping_add(1)); // another fs guarded
        note(&here, NOTE_FREEZE);
        stop_noting_freezes(w.as_raw_fd());
        note_freezes_to(-1, dev);
        note(&here, NOTE_FREEZE); // unpublished again
        drop(w);
        let mut buf = [0u8; 8];
        let n = nix::unistd::read(&r, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"FT");
    }

    #[test]
    fn uuids_from_superblocks() {
        let mut b = blank();
        b[1080] = 0x53;
        b[1081] = 0xEF;
        b[1024 + 0x60] = 0x40; // extents: ext4
        let u = uuid::Uuid::parse_str("3e4fb094-2b7c-436c-8af5-ba861c002d33").unwrap();
        b[1024 + 0x68..1024 + 0x78].copy_from_slice(u.as_bytes());
        assert_eq!(
            fs_uuid(&b).as_deref(),
            Some("3e4fb094-2b7c-436c-8af5-ba861c002d33")
        );
        let mut x = blank();
        x[..4].copy_from_slice(b"XFSB");
        x[32..48].copy_from_slice(u.as_bytes());
        assert_eq!(
            fs_uuid(&x).as_deref(),
            Some("3e4fb094-2b7c-436c-8af5-ba861c002d33")
        );
        let mut v = blank();
        v[510] = 0x55;
        v[511] = 0xAA;
        v[82..87].copy_from_slice(b"FAT32");
        v[0x43..0x47].copy_from_slice(&0x1234_ABCDu32.to_le_bytes());
        assert_eq!(fs_uuid(&v).as_deref(), Some("1234-ABCD"));
        assert_eq!(fs_uuid(&blank()), None);
    }

    fn blank() -> Vec<u8> {
        vec![0u8; PROBE_BYTES]
    }

    #[test]
    fn empty_device_holds_nothing() {
        assert_eq!(probe(&blank()), None);
        assert_eq!(probe(&[]), None);
    }

    #[test]
    fn recognises_filesystems() {
        let mut b = blank();
        b[1080] = 0x53;
        b[1081] = 0xEF;
        assert_eq!(probe(&b), Some(Content::Ext2));
        b[1024 + 0x5C] = 0x4;
        assert_eq!(probe(&b), Some(Content::Ext3));
        b[1024 + 0x60] = 0x40 | 0x2;
        assert_eq!(probe(&b), Some(Content::Ext4));
        let mut b = blank();
        b[..4].copy_from_slice(b"XFSB");
        assert_eq!(probe(&b), Some(Content::Xfs));
        let mut b = blank();
        b[65600..65608].copy_from_slice(b"_BHRfS_M");
        assert_eq!(probe(&b), Some(Content::Btrfs));
        let mut b = blank();
        b[4086..4096].copy_from_slice(b"SWAPSPACE2");
        assert_eq!(probe(&b), Some(Content::Swap));
        // what `mkswap -U 4c44d9e3-cf22-4238-8e76-85e1c3eb1b0e` writes at byte 1036
        b[1036..1052].copy_from_slice(&[
            0x4c, 0x44, 0xd9, 0xe3, 0xcf, 0x22, 0x42, 0x38, 0x8e, 0x76, 0x85, 0xe1, 0xc3, 0xeb,
            0x1b, 0x0e,
        ]);
        assert_eq!(
            fs_uuid(&b).as_deref(),
            Some("4c44d9e3-cf22-4238-8e76-85e1c3eb1b0e")
        );
        let mut b = blank();
        b[32769..32774].copy_from_slice(b"CD001");
        assert_eq!(probe(&b), Some(Content::Iso9660));
    }

    #[test]
    fn recognises_partition_tables() {
        let mut b = blank();
        b[510] = 0x55;
        b[511] = 0xAA;
        assert_eq!(
            probe(&b),
            None,
            "a boot signature with no partitions is not a table"
        );
        b[446 + 4] = 0x83;
        assert_eq!(probe(&b), Some(Content::Mbr));
        b[512..520].copy_from_slice(b"EFI PART");
        assert_eq!(probe(&b), Some(Content::Gpt));
        let mut f = blank();
        f[510] = 0x55;
        f[511] = 0xAA;
        f[82..87].copy_from_slice(b"FAT32");
        f[446 + 4] = 0x0c;
        assert_eq!(probe(&f), Some(Content::Vfat));
    }

    #[test]
    fn recognises_volume_headers() {
        let mut b = blank();
        b[512..520].copy_from_slice(b"LABELONE");
        assert_eq!(probe(&b), Some(Content::LvmPv));
        let mut b = blank();
        b[4096..4100].copy_from_slice(&0xa92b4efcu32.to_le_bytes());
        assert_eq!(probe(&b), Some(Content::MdRaid));
        let mut b = blank();
        b[..6].copy_from_slice(b"LUKS\xba\xbe");
        assert_eq!(probe(&b), Some(Content::Luks));
    }

    #[test]
    fn luks_uuid_from_the_header() {
        let mut b = blank();
        b[..6].copy_from_slice(b"LUKS\xba\xbe");
        b[6..8].copy_from_slice(&2u16.to_be_bytes());
        let u = "0b9f3c6e-1d2a-4c55-9e0f-3a1b2c3d4e5f";
        b[168..168 + u.len()].copy_from_slice(u.as_bytes());
        assert_eq!(luks_uuid(&b).as_deref(), Some(u));
        assert_eq!(boot_uuid(&b).as_deref(), Some(u));
        assert_eq!(fs_uuid(&b), None);
        // not a uuid (a torn header), or no LUKS magic: none
        b[170] = b'!';
        assert_eq!(luks_uuid(&b), None);
        let mut e = blank();
        e[168..168 + u.len()].copy_from_slice(u.as_bytes());
        assert_eq!(luks_uuid(&e), None);
    }
}
