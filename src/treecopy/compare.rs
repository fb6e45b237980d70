//! Compare a tree with its copy, everything the copier carries: the check behind the copier's
//! tests and `rootshift copy-tree --compare`.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, Metadata};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::meta::{carried_xattr, xattr_names, CARRIED};
use crate::kernel::ioctl::inode;

/// One way the copy differs from the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Relative to the trees' roots.
    pub path: PathBuf,
    pub what: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.what)
    }
}

struct Cmp<'a> {
    skip: &'a [PathBuf],
    out: Vec<Difference>,
    /// Source inode (dev, ino) → the copy's inode, for hard links.
    links: HashMap<(u64, u64), u64>,
    /// Copy inode → the source inode it stands for.
    back: HashMap<u64, (u64, u64)>,
    root_mnt: u64,
}

/// Every difference between `a` (source) and `b` (copy); directories in `skip` (absolute, under
/// `a`) are compared but not entered. Atime is not compared (reading the source changes it).
pub fn compare_trees(a: &Path, b: &Path, skip: &[PathBuf]) -> Result<Vec<Difference>> {
    let mut c = Cmp {
        skip,
        out: vec![],
        links: HashMap::new(),
        back: HashMap::new(),
        root_mnt: inode::mount_id(a)?,
    };
    let (ma, mb) = (fs::symlink_metadata(a)?, fs::symlink_metadata(b)?);
    c.entry(a, b, Path::new("."), &ma, &mb, true)?;
    c.dir(a, b, Path::new(""))?;
    Ok(c.out)
}

fn xattrs(p: &Path) -> Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let mut m = BTreeMap::new();
    for n in xattr_names(p).with_context(|| format!("xattrs of {}", p.display()))? {
        if carried_xattr(n.as_encoded_bytes()) {
            let v = xattr::get(p, &n)?.unwrap_or_default();
            m.insert(n.as_encoded_bytes().to_vec(), v);
        }
    }
    Ok(m)
}

fn flags(p: &Path, md: &Metadata) -> u32 {
    if !(md.is_file() || md.is_dir()) {
        return 0;
    }
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(p)
        .ok()
        .and_then(|f| inode::get_flags(std::os::fd::AsFd::as_fd(&f)).ok())
        .map(|v| v & CARRIED)
        .unwrap_or(0)
}

fn same_content(a: &Path, b: &Path) -> Result<bool> {
    let (mut fa, mut fb) = (fs::File::open(a)?, fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba)?;
        let mut m = 0;
        while m < n {
            let k = fb.read(&mut bb[m..n])?;
            if k == 0 {
                return Ok(false);
            }
            m += k;
        }
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(fb.read(&mut bb[..1])? == 0);
        }
    }
}

impl Cmp<'_> {
    fn diff(&mut self, rel: &Path, what: String) {
        self.out.push(Difference {
            path: rel.to_path_buf(),
            what,
        });
    }

    fn dir(&mut self, a: &Path, b: &Path, rel: &Path) -> Result<()> {
        let mut names: Vec<_> = fs::read_dir(a)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        let mut extra: Vec<_> = fs::read_dir(b)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        extra.retain(|n| !names.contains(n));
        for n in extra {
            self.diff(&rel.join(&n), "only in the copy".into());
        }
        for n in names {
            let (pa, pb, r) = (a.join(&n), b.join(&n), rel.join(&n));
            let ma = fs::symlink_metadata(&pa)?;
            let Ok(mb) = fs::symlink_metadata(&pb) else {
                self.diff(&r, "missing from the copy".into());
                continue;
            };
            // The root of another mount (the copy's own target among them) changes as that
            // filesystem is used: its times are not compared.
            let other = ma.is_dir() && inode::mount_id(&pa)? != self.root_mnt;
            self.entry(&pa, &pb, &r, &ma, &mb, !other)?;
            if !(ma.is_dir() && mb.is_dir()) {
                continue;
            }
            if self.skip.contains(&pa) || other {
                // Not entered (a skip path, another mount: cp -x): the copy stays empty.
                if fs::read_dir(&pb)?.next().is_some() {
                    self.diff(&r, "not entered, yet the copy is not empty".into());
                }
            } else {
                self.dir(&pa, &pb, &r)?;
            }
        }
        Ok(())
    }

    fn entry(
        &mut self,
        a: &Path,
        b: &Path,
        r: &Path,
        ma: &Metadata,
        mb: &Metadata,
        times: bool,
    ) -> Result<()> {
        if ma.file_type() != mb.file_type() {
            self.diff(
                r,
                format!("type {:?} vs {:?}", ma.file_type(), mb.file_type()),
            );
            return Ok(());
        }
        let link = ma.file_type().is_symlink();
        if (ma.uid(), ma.gid()) != (mb.uid(), mb.gid()) {
            self.diff(
                r,
                format!(
                    "owner {}:{} vs {}:{}",
                    ma.uid(),
                    ma.gid(),
                    mb.uid(),
                    mb.gid()
                ),
            );
        }
        if !link && ma.mode() & 0o7777 != mb.mode() & 0o7777 {
            self.diff(
                r,
                format!("mode {:o} vs {:o}", ma.mode() & 0o7777, mb.mode() & 0o7777),
            );
        }
        if times && (ma.mtime(), ma.mtime_nsec()) != (mb.mtime(), mb.mtime_nsec()) {
            self.diff(
                r,
                format!(
                    "mtime {}.{:09} vs {}.{:09}",
                    ma.mtime(),
                    ma.mtime_nsec(),
                    mb.mtime(),
                    mb.mtime_nsec()
                ),
            );
        }
        let (xa, xb) = (xattrs(a)?, xattrs(b)?);
        if xa != xb {
            let names = |m: &BTreeMap<Vec<u8>, Vec<u8>>| {
                m.keys()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            self.diff(
                r,
                format!(
                    "xattrs [{}] vs [{}] (or their values)",
                    names(&xa),
                    names(&xb)
                ),
            );
        }
        let (fa, fb) = (flags(a, ma), flags(b, mb));
        if fa != fb {
            self.diff(r, format!("inode flags {fa:#x} vs {fb:#x}"));
        }
        if link && fs::read_link(a)? != fs::read_link(b)? {
            self.diff(r, "symlink target".into());
        }
        let ft = ma.file_type();
        use std::os::unix::fs::FileTypeExt;
        if (ft.is_char_device() || ft.is_block_device()) && ma.rdev() != mb.rdev() {
            self.diff(r, format!("device {:#x} vs {:#x}", ma.rdev(), mb.rdev()));
        }
        if ft.is_file() {
            if ma.len() != mb.len() {
                self.diff(r, format!("size {} vs {}", ma.len(), mb.len()));
            } else if !same_content(a, b)? {
                self.diff(r, "content".into());
            }
            // A sparse source (fewer blocks than its length needs) must stay sparse.
            if ma.blocks() * 512 + 65536 < ma.len() && mb.blocks() * 512 >= mb.len() {
                self.diff(
                    r,
                    format!("holes filled: {} blocks vs {}", ma.blocks(), mb.blocks()),
                );
            }
            if ma.nlink() != mb.nlink() {
                self.diff(r, format!("{} links vs {}", ma.nlink(), mb.nlink()));
            }
            if ma.nlink() > 1 {
                let key = (ma.dev(), ma.ino());
                let want = *self.links.entry(key).or_insert(mb.ino());
                let back = *self.back.entry(mb.ino()).or_insert(key);
                if want != mb.ino() || back != key {
                    self.diff(r, "hard links grouped differently".into());
                }
            }
        }
        Ok(())
    }
}
