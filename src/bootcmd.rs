//! `rootshift boot enable|disable|show`: whether the initrd hook wraps the root at boot, kept in
//! /etc/rootshift/rootshift.conf (`state::bootconf`), which the hook's initramfs build copies
//! into the initrd; so a change is written, then every kernel's initramfs is regenerated, and a
//! failed regeneration puts the old setting back.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use anyhow::{anyhow, Context, Result};

use crate::error::{refuse, Refusal};
use crate::finish::cmdline::Cmdline;
use crate::finish::ids::write_atomic;
use crate::finish::initramfs::{self, Mode, Tool};
use crate::lock::Lock;
use crate::state::bootconf::{BootConf, Setting, Wrap, PATH};
use crate::state::bootrecord::BootRecord;
use crate::wrapper::Kind;

/// `rootshift boot enable [--backend dm|md] [--no-initramfs]`.
pub fn enable(backend: Kind, initramfs: bool) -> Result<()> {
    let w = match backend {
        Kind::Dm => Wrap::Dm,
        Kind::Md => Wrap::Md,
    };
    set(w, initramfs)?;
    if initramfs {
        println!(
            "the root is wrapped ({w}) from the next boot; `rootshift boot disable` turns it off"
        );
    }
    Ok(())
}

/// `rootshift boot disable [--no-initramfs]`.
pub fn disable(initramfs: bool) -> Result<()> {
    set(Wrap::No, initramfs)?;
    if initramfs {
        println!(
            "the root is not wrapped from the next boot; `rootshift boot enable` turns it back on"
        );
    }
    Ok(())
}

/// `rootshift boot show`: the setting and where it comes from, this boot's kernel command line
/// when it overrides it, and what the hook did at this boot.
pub fn show() -> Result<()> {
    let s = Setting::read();
    if let Some(e) = &s.error {
        return Err(refuse(e.clone(), Some(FIX_THE_FILE)));
    }
    println!("{}", s.describe());
    if let Some(note) = cmdline_override() {
        println!("{note}");
    }
    match BootRecord::read() {
        Some(b) => println!("this boot: the rootshift hook {}", b.summary()),
        None => {
            println!("this boot: the rootshift initrd hook did not run (no /run/rootshift/boot)")
        }
    }
    Ok(())
}

const FIX_THE_FILE: &str =
    "correct that line, or remove the file (no file means wrap=no), then run this again";

/// `rd.rootshift=` on this boot's kernel command line, which overrides the setting.
fn cmdline_override() -> Option<String> {
    let v = Cmdline::read().ok()?.get("rd.rootshift")?.to_string();
    Some(format!(
        "note: this boot's kernel command line has rd.rootshift={v}, which overrides the setting \
         at every boot it is given"
    ))
}

/// The distribution's initramfs tool and the kernels, checked before anything is changed. The
/// refusal's way out names --no-initramfs (`check`'s own names `--initramfs keep`, which is an
/// option of `finish`).
fn check_initramfs() -> Result<(Tool, Vec<String>)> {
    if initramfs::kernels().is_empty() {
        return Err(refuse(
            "no kernel in /boot (no /boot/vmlinuz-VERSION with /lib/modules/VERSION): there is no \
             initramfs to rebuild",
            Some("pass --no-initramfs to write only the setting (it takes effect once the initramfs is built)"),
        ));
    }
    match initramfs::check(Mode::Regenerate) {
        Ok((Some(t), ks)) => Ok((t, ks)),
        Ok((None, _)) => Err(anyhow!("no initramfs tool chosen")),
        Err(e) => match e.downcast_ref::<Refusal>() {
            Some(r) => {
                let first = r
                    .hint
                    .as_deref()
                    .and_then(|h| h.split(", or pass --initramfs keep").next())
                    .map(|h| format!("{h}; or "))
                    .unwrap_or_default();
                Err(refuse(
                    r.message.clone(),
                    Some(&format!(
                        "{first}pass --no-initramfs to write only the setting (it takes effect \
                         once the initramfs is rebuilt)"
                    )),
                ))
            }
            None => Err(e),
        },
    }
}

/// The file's content (None: there is none).
fn read_file(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Write the file (0644, atomically; /etc/rootshift made 0755 when missing), or remove it
/// (None).
fn put_file(path: &Path, content: Option<&str>) -> Result<()> {
    match content {
        Some(text) => {
            if let Some(dir) = path.parent().filter(|d| !d.exists()) {
                use std::os::unix::fs::DirBuilderExt;
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                // whatever the umask
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
                    .with_context(|| format!("setting the mode of {}", dir.display()))?;
            }
            write_atomic(path, text.as_bytes(), 0o644)
        }
        None => match fs::remove_file(path) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        },
    }
}

/// Set `wrap`, then regenerate every kernel's initramfs (unless `!initramfs`). See [`change`].
fn set(want: Wrap, initramfs: bool) -> Result<()> {
    crate::migrate::preflight::require_root()?;
    let tool = if initramfs {
        Some(check_initramfs()?)
    } else {
        None
    };
    // a migration holds the lock for its whole run (refused with the way out); holding it here
    // keeps one from starting while the initramfs is rebuilt
    let _lock = Lock::acquire()?;
    let say = &mut |l: &str| println!("{l}");
    match tool {
        Some((t, kernels)) => change(
            Path::new(PATH),
            want,
            Some(&kernels),
            &mut |ks| initramfs::regenerate(t, ks),
            say,
        ),
        None => change(Path::new(PATH), want, None, &mut |_| Ok(vec![]), say),
    }?;
    if let Some(note) = cmdline_override() {
        println!("{note}");
    }
    Ok(())
}

/// Set `wrap` in the file at `path`, then run `regen` for each of `kernels` (None: do not
/// regenerate). The file is written only when the setting changes; the initramfs is
/// regenerated either way, since the file cannot tell whether the images carry it (one built
/// before the setting existed, or after `--no-initramfs`). When a regeneration fails the old
/// file is put back and the images already rebuilt are rebuilt again with it: nothing changed.
fn change(
    path: &Path,
    want: Wrap,
    kernels: Option<&[String]>,
    regen: &mut dyn FnMut(&[String]) -> Result<Vec<String>>,
    say: &mut dyn FnMut(&str),
) -> Result<()> {
    let shown = path.display();
    let old = read_file(path)?;
    let mut conf = match &old {
        Some(text) => text
            .parse::<BootConf>()
            .map_err(|e| refuse(e.to_string(), Some(FIX_THE_FILE)))?,
        None => BootConf::new_file(),
    };
    let written = if conf.wrap() == want {
        say(&match &old {
            Some(_) if conf.wrap_given().is_some() => format!("{shown} already says wrap={want}"),
            Some(_) => format!("{shown} has no wrap= line: wrap={want} already (the default)"),
            None => format!("no {shown}: wrap={want} already (the default)"),
        });
        false
    } else {
        conf.set_wrap(want);
        put_file(path, Some(&conf.to_string()))?;
        say(&format!("wrote {shown}: wrap={want}"));
        true
    };
    let Some(kernels) = kernels else {
        say(
            "the initramfs was not rebuilt: the setting takes effect at the first boot after it \
             is (update-initramfs -u -k all, or dracut --force --regenerate-all)",
        );
        return Ok(());
    };
    let mut done: Vec<String> = vec![];
    for k in kernels {
        match regen(std::slice::from_ref(k)) {
            Ok(lines) => {
                for l in lines {
                    say(&l);
                }
                done.push(k.clone());
            }
            Err(e) if written => return Err(put_back(path, old.as_deref(), regen, &done, e)),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// After a failed regeneration: the old file back, the images rebuilt with the new one rebuilt
/// again. Returns the error to report (the cause, and the undo's failure when it failed too).
fn put_back(
    path: &Path,
    old: Option<&str>,
    regen: &mut dyn FnMut(&[String]) -> Result<Vec<String>>,
    done: &[String],
    cause: anyhow::Error,
) -> anyhow::Error {
    let undo = put_file(path, old).and_then(|()| {
        if done.is_empty() {
            Ok(vec![])
        } else {
            regen(done)
        }
    });
    match undo {
        Ok(_) => anyhow!(
            "{cause:#}; {} put back as it was{}: nothing changed",
            path.display(),
            if done.is_empty() {
                String::new()
            } else {
                format!(" and the initramfs of {} rebuilt with it", done.join(", "))
            }
        ),
        Err(u) => anyhow!(
            "{cause:#}; putting the old {} back failed too: {u:#} (run `rootshift boot \
             show`, then enable or disable again)",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_file_writes_0644_and_removes() {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("rootshift-bootcmd-{}", std::process::id()));
        let p = d.join("etc-rootshift").join("rootshift.conf");
        put_file(&p, Some("wrap=dm\n")).unwrap();
        assert_eq!(read_file(&p).unwrap().as_deref(), Some("wrap=dm\n"));
        let meta = fs::metadata(&p).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o644);
        let dir = fs::metadata(p.parent().unwrap()).unwrap();
        assert_eq!(dir.permissions().mode() & 0o777, 0o755);
        put_file(&p, None).unwrap();
        assert_eq!(read_file(&p).unwrap(), None);
        put_file(&p, None).unwrap();
        let _ = fs::remove_dir_all(&d);
    }

    fn tmp(what: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("rootshift-bootcmd-{what}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d.join("rootshift.conf")
    }

    fn run(
        p: &Path,
        want: Wrap,
        kernels: Option<&[&str]>,
        fail_at: Option<&str>,
    ) -> (Result<()>, Vec<String>, Vec<String>) {
        let ks: Option<Vec<String>> = kernels.map(|k| k.iter().map(|s| s.to_string()).collect());
        let mut regenerated = vec![];
        let mut said = vec![];
        let r = change(
            p,
            want,
            ks.as_deref(),
            &mut |ks| {
                let content = fs::read_to_string(p).unwrap_or_else(|_| "<none>".into());
                if ks.len() == 1 && Some(ks[0].as_str()) == fail_at {
                    anyhow::bail!("regenerating {} failed", ks[0]);
                }
                for k in ks {
                    regenerated.push(format!(
                        "{k}: {}",
                        content.trim_end().lines().last().unwrap_or("")
                    ));
                }
                Ok(ks
                    .iter()
                    .map(|k| format!("regenerated /boot/initrd.img-{k}"))
                    .collect())
            },
            &mut |l| said.push(l.to_string()),
        );
        (r, regenerated, said)
    }

    #[test]
    fn enable_writes_then_regenerates_each_kernel() {
        let p = tmp("enable");
        let (r, regen, said) = run(&p, Wrap::Dm, Some(&["6.1", "6.2"]), None);
        r.unwrap();
        assert_eq!(regen, ["6.1: wrap=dm", "6.2: wrap=dm"]);
        assert_eq!(said[0], format!("wrote {}: wrap=dm", p.display()));
        assert_eq!(said[1], "regenerated /boot/initrd.img-6.1");
        let text = fs::read_to_string(&p).unwrap();
        assert_eq!(text, format!("{}wrap=dm\n", BootConf::HEADER));
        // again: nothing written, regenerated all the same
        let (r, regen, said) = run(&p, Wrap::Dm, Some(&["6.1"]), None);
        r.unwrap();
        assert_eq!(said[0], format!("{} already says wrap=dm", p.display()));
        assert_eq!(regen, ["6.1: wrap=dm"]);
        // md replaces the line in place
        run(&p, Wrap::Md, None, None).0.unwrap();
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            format!("{}wrap=md\n", BootConf::HEADER)
        );
        let _ = fs::remove_dir_all(p.parent().unwrap());
    }

    #[test]
    fn disable_without_a_file_creates_none() {
        let p = tmp("disable");
        let (r, regen, said) = run(&p, Wrap::No, Some(&["6.1"]), None);
        r.unwrap();
        assert!(!p.exists());
        assert_eq!(
            said[0],
            format!("no {}: wrap=no already (the default)", p.display())
        );
        assert_eq!(regen, ["6.1: <none>"]);
        let (r, _, said) = run(&p, Wrap::No, None, None);
        r.unwrap();
        assert!(
            said[1].starts_with("the initramfs was not rebuilt"),
            "{said:?}"
        );
    }

    #[test]
    fn disable_keeps_the_other_lines() {
        let p = tmp("keep");
        put_file(&p, Some("# mine\nwrap = dm\nlive=toram\n")).unwrap();
        run(&p, Wrap::No, None, None).0.unwrap();
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            "# mine\nwrap=no\nlive=toram\n"
        );
        let _ = fs::remove_dir_all(p.parent().unwrap());
    }

    #[test]
    fn a_failed_regeneration_puts_the_old_file_back_and_rebuilds_with_it() {
        let p = tmp("rollback");
        put_file(&p, Some("# mine\nwrap=no\n")).unwrap();
        let (r, regen, _) = run(&p, Wrap::Dm, Some(&["6.1", "6.2"]), Some("6.2"));
        let e = format!("{:#}", r.unwrap_err());
        assert!(e.starts_with("regenerating 6.2 failed; "), "{e}");
        assert!(
            e.contains(
                "put back as it was and the initramfs of 6.1 rebuilt with it: nothing changed"
            ),
            "{e}"
        );
        assert_eq!(fs::read_to_string(&p).unwrap(), "# mine\nwrap=no\n");
        assert_eq!(regen, ["6.1: wrap=dm", "6.1: wrap=no"]);
        // no file before: none after
        let _ = fs::remove_file(&p);
        let (r, _, _) = run(&p, Wrap::Md, Some(&["6.1"]), Some("6.1"));
        assert!(r.is_err());
        assert!(!p.exists());
        let _ = fs::remove_dir_all(p.parent().unwrap());
    }

    #[test]
    fn a_bad_file_is_refused_and_left_alone() {
        let p = tmp("bad");
        put_file(&p, Some("wrap=yes\n")).unwrap();
        let (r, regen, _) = run(&p, Wrap::Dm, Some(&["6.1"]), None);
        let e = r.unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2);
        assert!(e.to_string().contains("line 1: wrap=yes"), "{e}");
        assert!(regen.is_empty());
        assert_eq!(fs::read_to_string(&p).unwrap(), "wrap=yes\n");
        let _ = fs::remove_dir_all(p.parent().unwrap());
    }
}
