//! The copier on a prepared tree on the host's filesystem (needs root: owners, devices, trusted.*
//! attributes, chattr, a tmpfs mount for the mount boundary).

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

use super::*;
use crate::kernel::ioctl::inode;

struct TempTree {
    root: PathBuf,
    mounts: Vec<PathBuf>,
}

impl TempTree {
    fn new(tag: &str) -> TempTree {
        let root =
            std::env::temp_dir().join(format!("rootshift-treecopy-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("src")).unwrap();
        fs::create_dir_all(root.join("dst")).unwrap();
        TempTree {
            root,
            mounts: vec![],
        }
    }
    fn src(&self) -> PathBuf {
        self.root.join("src")
    }
    fn dst(&self) -> PathBuf {
        self.root.join("dst")
    }
}

impl Drop for TempTree {
    fn drop(&mut self) {
        for m in self.mounts.iter().rev() {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
        // Immutable/append-only entries would stop the removal.
        for side in ["src", "dst"] {
            let _ = Command::new("chattr")
                .args(["-R", "-ia"])
                .arg(self.root.join(side))
                .output();
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

use std::process::Command;

fn set_times(p: &Path, sec: i64, nsec: i64) {
    let t = TimeSpec::new(sec, nsec);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        p,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

fn set_flag(p: &Path, flag: u32) {
    let f = fs::File::open(p).unwrap();
    let cur = inode::get_flags(std::os::fd::AsFd::as_fd(&f)).unwrap();
    inode::set_flags(std::os::fd::AsFd::as_fd(&f), cur | flag).unwrap();
}

/// A POSIX ACL in the kernel's xattr form (`posix_acl_xattr_header` + entries).
fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        v.extend(tag.to_le_bytes());
        v.extend(perm.to_le_bytes());
        v.extend(id.to_le_bytes());
    }
    v
}

/// Everything the copier claims to carry.
fn prepare(t: &mut TempTree) {
    let s = t.src();
    let w = |p: &str, data: &[u8]| {
        let p = s.join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, data).unwrap();
        p
    };
    fs::create_dir_all(s.join("home/user/.config")).unwrap();
    let big: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i * 7 + i / 4096) as u8)
        .collect();
    w("home/user/big", &big);
    w("home/user/.config/empty", b"");
    let suid = w("usr/bin/suid", b"#!/bin/true\n");
    fs::set_permissions(&suid, fs::Permissions::from_mode(0o4755)).unwrap();
    let sgid = w("usr/bin/sgid", b"x");
    std::os::unix::fs::chown(&sgid, Some(1000), Some(1000)).unwrap();
    fs::set_permissions(&sgid, fs::Permissions::from_mode(0o2750)).unwrap();
    std::os::unix::fs::chown(s.join("home/user"), Some(1000), Some(1000)).unwrap();
    fs::set_permissions(s.join("home/user"), fs::Permissions::from_mode(0o750)).unwrap();
    let tmp = s.join("var/tmp");
    fs::create_dir_all(&tmp).unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).unwrap();
    // Attributes of every namespace, a capability, ACLs; overlayfs' own must not come along.
    let x = w("etc/xattrs", b"x");
    xattr::set(&x, "user.note", b"hello").unwrap();
    xattr::set(&x, "trusted.secret", b"t").unwrap();
    xattr::set(&x, "security.label", b"s").unwrap();
    let cap = w("usr/bin/ping", b"ping");
    let mut c = (0x0200_0000u32 | 1).to_le_bytes().to_vec(); // VFS_CAP_REVISION_2 | EFFECTIVE
    c.extend((1u32 << 13).to_le_bytes()); // CAP_NET_RAW permitted
    c.extend([0u8; 12]);
    xattr::set(&cap, "security.capability", &c).unwrap();
    let a = acl(&[
        (1, 6, u32::MAX),
        (2, 4, 1000),
        (4, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 0, u32::MAX),
    ]);
    let af = w("srv/shared/file", b"acl");
    xattr::set(&af, "system.posix_acl_access", &a).unwrap();
    xattr::set(s.join("srv/shared"), "system.posix_acl_default", &a).unwrap();
    xattr::set(s.join("srv"), "trusted.overlay.opaque", b"y").unwrap();
    // Hard links, in different directories.
    let l = w("usr/lib/lib.so", b"library");
    fs::create_dir_all(s.join("opt")).unwrap();
    fs::hard_link(&l, s.join("usr/lib/lib.so.1")).unwrap();
    fs::hard_link(&l, s.join("opt/lib-copy")).unwrap();
    // A sparse file: 64 MiB long, two 4 KiB extents.
    let sp = s.join("var/lib/sparse.img");
    fs::create_dir_all(sp.parent().unwrap()).unwrap();
    let f = fs::File::create(&sp).unwrap();
    f.set_len(64 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0xa5; 4096], 1 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0x5a; 4096], 32 << 20).unwrap();
    drop(f);
    // Symlinks (owned by a user; one dangling), nodes, a fifo, a socket.
    std::os::unix::fs::symlink("../usr/lib/lib.so", s.join("opt/link")).unwrap();
    std::os::unix::fs::lchown(s.join("opt/link"), Some(1234), Some(1234)).unwrap();
    std::os::unix::fs::symlink("/nowhere", s.join("opt/dangling")).unwrap();
    fs::create_dir_all(s.join("lib/udev/devices")).unwrap();
    let n = |p: &str, k: SFlag, dev: u64| {
        nix::sys::stat::mknod(&s.join(p), k, Mode::from_bits_truncate(0o640), dev).unwrap()
    };
    n(
        "lib/udev/devices/null",
        SFlag::S_IFCHR,
        nix::sys::stat::makedev(1, 3),
    );
    n(
        "lib/udev/devices/loop0",
        SFlag::S_IFBLK,
        nix::sys::stat::makedev(7, 0),
    );
    n("lib/udev/devices/fifo", SFlag::S_IFIFO, 0);
    n("lib/udev/devices/sock", SFlag::S_IFSOCK, 0);
    // A name that is not UTF-8.
    let odd = s.join(OsStr::from_bytes(b"etc/caf\xe9 \n\xff"));
    fs::write(&odd, b"odd").unwrap();
    // What is not entered: a skip path with content, and another mount with content.
    w("proc/1/status", b"not copied");
    fs::create_dir_all(s.join("media/usb")).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &s.join("media/usb"),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .expect("mounting a tmpfs (the test needs root)");
    t.mounts.push(s.join("media/usb"));
    fs::write(s.join("media/usb/file"), b"on another mount").unwrap();
    // Times with nanoseconds everywhere, directories after their contents; flags last.
    let mut all = vec![];
    collect(&s, &mut all);
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in all.iter().enumerate() {
        if p.starts_with(s.join("media/usb")) && p != &s.join("media/usb") {
            continue;
        }
        set_times(p, 1_600_000_000 + i as i64, 123_456_789 - i as i64);
    }
    set_flag(&s.join("etc/xattrs"), 0x10); // immutable
    set_flag(&s.join("home/user/big"), 0x20 | 0x40); // append-only, nodump
    set_flag(&s.join("var/lib"), 0x40); // a nodump directory
}

fn collect(p: &Path, out: &mut Vec<PathBuf>) {
    out.push(p.to_path_buf());
    if fs::symlink_metadata(p).unwrap().is_dir() {
        for e in fs::read_dir(p).unwrap() {
            collect(&e.unwrap().path(), out);
        }
    }
}

fn skip(t: &TempTree) -> Vec<PathBuf> {
    vec![t.src().join("proc")]
}

fn assert_same(t: &TempTree) {
    let d = compare_trees(&t.src(), &t.dst(), &skip(t)).unwrap();
    assert!(
        d.is_empty(),
        "differences:\n{}",
        d.iter().map(|d| format!("  {d}\n")).collect::<String>()
    );
}

#[test]
fn a_prepared_tree_copies_whole_and_compares_equal() {
    assert_eq!(
        nix::unistd::geteuid().as_raw(),
        0,
        "the copier's tests need root"
    );
    let mut t = TempTree::new("full");
    prepare(&mut t);
    let mut o = Options::new(4);
    o.skip = skip(&t);
    let st = Stats::default();
    copy_tree(&t.src(), &t.dst(), &o, &st).unwrap();
    assert_same(&t);
    let c = st.counts();
    assert_eq!(c.hardlinks, 2, "{c:?}");
    assert_eq!(c.specials, 4, "{c:?}");
    assert_eq!(c.symlinks, 2, "{c:?}");
    assert_eq!(c.not_entered, 2, "{c:?}");
    // Only the data extents were copied: 3 MiB + 8 KiB of the sparse image + small files.
    assert!(c.bytes < (3 << 20) + 65536, "{c:?}");
    let dst = t.dst();
    assert!(xattr::get(dst.join("srv"), "trusted.overlay.opaque")
        .unwrap()
        .is_none());
    assert!(!dst.join("media/usb/file").exists() && dst.join("media/usb").is_dir());
    assert!(!dst.join("proc/1").exists() && dst.join("proc").is_dir());
    let sp = fs::metadata(dst.join("var/lib/sparse.img")).unwrap();
    assert_eq!(sp.len(), 64 << 20);
    assert!(
        sp.blocks() * 512 <= 1 << 20,
        "sparse copy allocated {} blocks",
        sp.blocks()
    );
}

#[test]
fn the_comparison_sees_what_a_bad_copy_gets_wrong() {
    let mut t = TempTree::new("cmp");
    prepare(&mut t);
    let mut o = Options::new(2);
    o.skip = skip(&t);
    copy_tree(&t.src(), &t.dst(), &o, &Stats::default()).unwrap();
    let d = t.dst();
    std::os::unix::fs::chown(d.join("usr/bin/sgid"), Some(0), None).unwrap();
    xattr::remove(d.join("usr/bin/ping"), "security.capability").unwrap();
    fs::remove_file(d.join("opt/lib-copy")).unwrap();
    fs::write(d.join("opt/lib-copy"), b"library").unwrap();
    set_times(&d.join("var/tmp"), 1, 0);
    let diffs = compare_trees(&t.src(), &d, &skip(&t)).unwrap();
    let text: String = diffs.iter().map(|d| format!("{d}\n")).collect();
    for want in [
        "usr/bin/sgid: owner",
        "usr/bin/ping: xattrs",
        "opt/lib-copy: 3 links vs 1",
        "var/tmp: mtime",
    ] {
        assert!(text.contains(want), "{want} not in:\n{text}");
    }
}

#[test]
fn a_catch_up_pass_brings_a_changed_tree_up_to_date() {
    let mut t = TempTree::new("catchup");
    prepare(&mut t);
    let s = t.src();
    let mut o = Options::new(3);
    o.skip = skip(&t);
    // pass_start() is a second early (the kernel's coarse ctime clock): the tree must be older.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let since = pass_start();
    copy_tree(&s, &t.dst(), &o, &Stats::default()).unwrap();
    // Changes as a running system makes them, the same size and mtime kept for one (only its
    // ctime tells), a removal, a new file and link, a rename, a mode and an attribute.
    let f = s.join("home/user/.config/settings");
    fs::write(&f, b"v1").unwrap();
    let lib = s.join("usr/lib/lib.so");
    let m = fs::metadata(&lib).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&lib)
        .unwrap()
        .write_all(b"LIBRARY")
        .unwrap();
    set_times(&lib, m.mtime(), m.mtime_nsec());
    fs::remove_file(s.join("opt/dangling")).unwrap();
    fs::hard_link(&f, s.join("opt/settings-link")).unwrap();
    fs::rename(s.join("lib/udev"), s.join("lib/udev2")).unwrap();
    fs::set_permissions(s.join("usr/bin/suid"), fs::Permissions::from_mode(0o755)).unwrap();
    xattr::set(s.join("home/user/.config/empty"), "user.new", b"1").unwrap();
    // Pass two.
    o.since = Some(since);
    let st = Stats::default();
    copy_tree(&s, &t.dst(), &o, &st).unwrap();
    assert_same(&t);
    let c = st.counts();
    assert!(c.removed >= 2 && c.unchanged > 0, "{c:?}");
}

#[test]
fn refuses_a_target_inside_the_source() {
    let t = TempTree::new("inside");
    fs::create_dir_all(t.src().join("mnt/target")).unwrap();
    let e = copy_tree(
        &t.src(),
        &t.src().join("mnt/target"),
        &Options::new(1),
        &Stats::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("would copy itself"), "{e}");
}

#[test]
fn a_setgid_or_acl_target_top_still_gets_the_sources_owners_and_flags() {
    // Directories made below a setgid top inherit its group (and setgid): the copier must not
    // take such a directory's new files as neutral and skip their chown.
    let t = TempTree::new("setgid");
    fs::create_dir_all(t.src().join("etc/sub")).unwrap();
    fs::write(t.src().join("etc/sub/root-owned"), b"x").unwrap();
    fs::write(t.src().join("etc/plain"), b"y").unwrap();
    let dst = t.dst();
    std::os::unix::fs::chown(&dst, Some(0), Some(4321)).unwrap();
    fs::set_permissions(&dst, fs::Permissions::from_mode(0o2775)).unwrap();
    copy_tree(&t.src(), &dst, &Options::new(2), &Stats::default()).unwrap();
    for f in ["etc/sub/root-owned", "etc/plain"] {
        let m = fs::metadata(dst.join(f)).unwrap();
        assert_eq!((m.uid(), m.gid()), (0, 0), "{f}");
    }
    let m = fs::metadata(dst.join("etc/sub")).unwrap();
    assert_eq!(m.gid(), 0, "the directory's own metadata is the source's");
}
