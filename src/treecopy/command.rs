//! `rootshift copy-tree`: passes of the copier with a line (or JSON object) each, then an
//! optional comparison.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};

use super::{compare_trees, copy_tree, pass_start, Options, Stats};
use crate::units::human_bytes;

/// How many passes, from when.
pub struct Passes {
    pub threads: Option<usize>,
    pub catch_up: u32,
    pub since: Option<(i64, i64)>,
}

/// `SECONDS.NANOS` (nanoseconds as 9 digits or fewer).
pub fn parse_since(s: &str) -> Result<(i64, i64), String> {
    let bad =
        || format!("{s:?} is not SECONDS.NANOS (the next_since an earlier copy-tree printed)");
    let (a, b) = s.split_once('.').unwrap_or((s, "0"));
    let secs: i64 = a.parse().map_err(|_| bad())?;
    if b.is_empty() || b.len() > 9 || !b.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let ns: i64 = format!("{b:0<9}").parse().map_err(|_| bad())?;
    Ok((secs, ns))
}

pub fn run(src: &Path, dst: &Path, passes: Passes, compare: bool, json: bool) -> Result<()> {
    let Passes {
        threads,
        catch_up,
        since,
    } = passes;
    let threads = threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| (n.get() * 2).min(16))
            .unwrap_or(4)
    });
    let mut opts = if src == Path::new("/") {
        Options::system_root(src, threads)
    } else {
        Options::new(threads)
    };
    opts.since = since;
    for pass in 0..=catch_up {
        let start = pass_start();
        let t0 = Instant::now();
        let stats = Stats::default();
        copy_tree(src, dst, &opts, &stats)?;
        let c = stats.counts();
        let secs = t0.elapsed().as_secs_f64();
        if json {
            let mut v = serde_json::to_value(c)?;
            v["event"] = "pass".into();
            v["pass"] = (pass + 1).into();
            v["seconds"] = serde_json::json!((secs * 1000.0).round() / 1000.0);
            v["next_since"] = format!("{}.{:09}", start.0, start.1).into();
            println!("{v}");
        } else {
            println!(
                "pass {}: {} files ({}), {} directories, {} symlinks, {} hard links, {} other; \
                 {} unchanged, {} removed, {} not entered; {:.1} s (next --since {}.{:09})",
                pass + 1,
                c.files,
                human_bytes(c.bytes),
                c.dirs,
                c.symlinks,
                c.hardlinks,
                c.specials,
                c.unchanged,
                c.removed,
                c.not_entered,
                secs,
                start.0,
                start.1
            );
        }
        opts.since = Some(start);
    }
    if compare {
        let d = compare_trees(src, dst, &opts.skip)?;
        if json {
            let list: Vec<String> = d.iter().map(|d| d.to_string()).collect();
            println!(
                "{}",
                serde_json::json!({"event": "compared", "differences": d.len(), "first": list.iter().take(20).collect::<Vec<_>>()})
            );
        } else {
            for x in d.iter().take(20) {
                println!("differs: {x}");
            }
            println!("compared: {} differences", d.len());
        }
        if !d.is_empty() {
            bail!(
                "the copy differs from {} in {} places (files changed after the last pass \
                 differ until another pass)",
                src.display(),
                d.len()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_since;

    #[test]
    fn since_is_seconds_dot_nanos() {
        assert_eq!(
            parse_since("1700000000.5"),
            Ok((1_700_000_000, 500_000_000))
        );
        assert_eq!(parse_since("1700000000.000000007"), Ok((1_700_000_000, 7)));
        assert_eq!(parse_since("12"), Ok((12, 0)));
        for bad in ["", "x.1", "1.", "1.1234567890", "1.-5", "1.2.3"] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }
}
