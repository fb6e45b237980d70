//! The parallel walk: a shared queue of directories, `threads` workers, each copying the entries
//! of one directory and queueing the subdirectories it created. Directory metadata is applied at
//! the end, deepest first, so that creating the children does not undo a parent's times (and an
//! immutable directory is made immutable only once it is complete).

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use anyhow::{anyhow, Context, Result};

use super::{entry, meta, Options, Stats};

/// One directory to copy the entries of (it exists in the copy already).
pub(super) struct Job {
    pub src: PathBuf,
    pub dst: PathBuf,
    pub depth: usize,
    /// The copy was made by this pass (empty when its entries are copied).
    pub fresh: bool,
}

struct Queue {
    jobs: Vec<Job>,
    busy: usize,
    error: Option<anyhow::Error>,
}

/// What the workers share.
struct Shared<'a> {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Every directory of the copy, for its metadata at the end: (src, dst, depth).
    dirs: Mutex<Vec<(PathBuf, PathBuf, usize)>>,
    ctx: entry::Ctx<'a>,
}

pub(super) fn run(
    src: &Path,
    dst: &Path,
    src_mnt: u64,
    opts: &Options,
    stats: &Stats,
) -> Result<()> {
    let sh = Shared {
        queue: Mutex::new(Queue {
            jobs: vec![Job {
                src: src.to_path_buf(),
                dst: dst.to_path_buf(),
                depth: 0,
                fresh: false,
            }],
            busy: 0,
            error: None,
        }),
        wake: Condvar::new(),
        dirs: Mutex::new(vec![(src.to_path_buf(), dst.to_path_buf(), 0)]),
        ctx: entry::Ctx {
            links: Mutex::new(HashMap::new()),
            src_mnt,
            skip: opts.skip.iter().cloned().collect(),
            since: opts.since,
            stats,
            fresh_ok: passes_nothing_on(dst),
        },
    };
    std::thread::scope(|s| {
        for _ in 0..opts.threads.max(1) {
            s.spawn(|| worker(&sh));
        }
    });
    let q = sh
        .queue
        .into_inner()
        .map_err(|_| anyhow!("a copy worker panicked"))?;
    if let Some(e) = q.error {
        return Err(e);
    }
    let mut dirs = sh.dirs.into_inner().map_err(|_| anyhow!("poisoned"))?;
    // Deepest first: a parent's times are set after its children are complete.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.2));
    for (s, d, _) in dirs {
        let md = match fs::symlink_metadata(&s) {
            Ok(m) if m.is_dir() => m,
            // Gone or replaced meanwhile: the next catch-up pass deals with it.
            _ => continue,
        };
        meta::apply_path(&s, &d, &md).with_context(|| format!("{}", d.display()))?;
    }
    Ok(())
}

/// Whether directories made below `dst` start neutral: `dst` has no setgid bit (its group would
/// go to everything made below) and no default ACL.
fn passes_nothing_on(dst: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(dst).is_ok_and(|m| m.mode() & 0o2000 == 0)
        && xattr::get(dst, "system.posix_acl_default")
            .ok()
            .flatten()
            .is_none()
}

fn worker(sh: &Shared<'_>) {
    loop {
        let job = {
            let mut q = sh.queue.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if q.error.is_some() {
                    return;
                }
                if let Some(j) = q.jobs.pop() {
                    q.busy += 1;
                    break j;
                }
                if q.busy == 0 {
                    sh.wake.notify_all();
                    return;
                }
                q = sh.wake.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        let r = directory(sh, &job);
        let mut q = sh.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.busy -= 1;
        match r {
            Ok(children) => q.jobs.extend(children),
            Err(e) => {
                if q.error.is_none() {
                    q.error = Some(e);
                }
            }
        }
        sh.wake.notify_all();
    }
}

/// Copy the entries of one directory; the subdirectories to enter come back.
fn directory(sh: &Shared<'_>, job: &Job) -> Result<Vec<Job>> {
    let names: Vec<OsString> = match fs::read_dir(&job.src) {
        Ok(rd) => rd
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("reading {}", job.src.display()))?,
        // Removed while we were copying: the next pass removes the copy.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("reading {}", job.src.display())),
    };
    if sh.ctx.since.is_some() {
        let keep: HashSet<&OsString> = names.iter().collect();
        for e in fs::read_dir(&job.dst).with_context(|| format!("reading {}", job.dst.display()))? {
            let e = e?;
            if !keep.contains(&e.file_name()) {
                entry::remove(&e.path())?;
                Stats::add(&sh.ctx.stats.removed, 1);
            }
        }
    }
    let mut children = vec![];
    for n in names {
        let s = job.src.join(&n);
        let d = job.dst.join(&n);
        let md = match fs::symlink_metadata(&s) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("{}", s.display())),
        };
        if let Some(dir) = entry::copy(&sh.ctx, &s, &d, &md, job.fresh)? {
            sh.dirs.lock().unwrap_or_else(|e| e.into_inner()).push((
                s.clone(),
                d.clone(),
                job.depth + 1,
            ));
            if dir.enter {
                children.push(Job {
                    src: s,
                    dst: d,
                    depth: job.depth + 1,
                    fresh: dir.fresh,
                });
            }
        }
    }
    Ok(children)
}
