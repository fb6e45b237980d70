//! `rootshift generate man|completions DIR`: the man pages (`rootshift(8)` and one per
//! subcommand, `rootshift-migrate(8)`, …) and the bash/zsh/fish completions, generated from the
//! clap definitions so they never disagree with `--help`. The packages run it at build time.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// Write `rootshift.8`, `rootshift-SUB.8` for every visible subcommand and `rootshift-SUB-SUB2.8`
/// for every visible nested one (`rootshift-boot-enable.8`) into `dir`.
pub fn man_pages(dir: &Path) -> Result<Vec<String>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command();
    cmd.build();
    let mut written = vec![];
    let mut page = |c: &clap::Command, name: String| -> Result<()> {
        let c = c.clone().name(name.clone());
        let man = clap_mangen::Man::new(c).section("8");
        let mut buf = vec![];
        man.render(&mut buf)
            .with_context(|| format!("rendering {name}(8)"))?;
        let p = dir.join(format!("{name}.8"));
        fs::write(&p, buf).with_context(|| format!("writing {}", p.display()))?;
        written.push(p.display().to_string());
        Ok(())
    };
    // rootshift, rootshift-SUB, and rootshift-SUB-SUB2 for nested ones (`boot enable`)
    let mut todo = vec![(&cmd, "rootshift".to_string())];
    while let Some((c, name)) = todo.pop() {
        page(c, name.clone())?;
        for sub in c
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        {
            todo.push((sub, format!("{name}-{}", sub.get_name())));
        }
    }
    written.sort();
    Ok(written)
}

/// Write the completions: `rootshift` (bash), `_rootshift` (zsh), `rootshift.fish` into `dir`.
pub fn completions(dir: &Path) -> Result<Vec<String>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = vec![];
    for sh in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = Cli::command();
        let p = clap_complete::generate_to(sh, &mut cmd, "rootshift", dir)
            .with_context(|| format!("writing the {sh} completion into {}", dir.display()))?;
        written.push(p.display().to_string());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_for_the_command_and_each_visible_subcommand() {
        let d = std::env::temp_dir().join(format!("rootshift-man-{}", std::process::id()));
        let w = man_pages(&d).unwrap();
        assert!(w.iter().any(|p| p.ends_with("/rootshift.8")));
        assert!(w.iter().any(|p| p.ends_with("/rootshift-migrate.8")));
        assert!(!w.iter().any(|p| p.ends_with("/rootshift-guardian.8")));
        for p in ["boot", "boot-enable", "boot-disable", "boot-show"] {
            assert!(
                w.iter().any(|w| w.ends_with(&format!("/rootshift-{p}.8"))),
                "{p}: {w:?}"
            );
        }
        let b = fs::read_to_string(d.join("rootshift-boot-enable.8")).unwrap();
        assert!(b.contains("no\\-initramfs"), "{b}");
        let m = fs::read_to_string(d.join("rootshift-migrate.8")).unwrap();
        assert!(
            m.contains(".TH rootshift-migrate 8"),
            "{}",
            &m[..200.min(m.len())]
        );
        assert!(m.contains("detach"));
        let c = completions(&d).unwrap();
        assert_eq!(c.len(), 3);
        assert!(fs::read_to_string(d.join("rootshift.bash"))
            .or_else(|_| fs::read_to_string(d.join("rootshift")))
            .unwrap()
            .contains("migrate"));
        let _ = fs::remove_dir_all(&d);
    }
}
