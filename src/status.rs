//! `rootshift status`: the wrapper, its legs, sync progress, the journal's step.

use anyhow::Result;
use serde::Serialize;

use crate::backend;
use crate::error::refuse;
use crate::kernel::blockdev::BlockDev;
use crate::kernel::dm::Dm;
use crate::kernel::dmtable::Health;
use crate::kernel::mounts;
use crate::state::bootconf::Setting;
use crate::state::bootrecord::BootRecord;
use crate::state::core::advice::{self, Advice};
use crate::state::journal::{Journal, Step};
use crate::units::human;
use crate::wrapper::{self, Wrapper};

#[derive(Debug, Serialize)]
pub struct LegReport {
    pub role: &'static str,
    pub dev: String,
    pub path: String,
    pub size_bytes: Option<u64>,
    pub health: Option<char>,
}

#[derive(Debug, Serialize)]
pub struct SyncReport {
    pub in_sync: u64,
    pub total: u64,
    pub percent: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub name: String,
    /// `dm-mirror` or `md-raid1`.
    pub backend: &'static str,
    pub dev: String,
    pub path: String,
    pub size_bytes: u64,
    pub table: &'static str,
    pub table_line: String,
    pub legs: Vec<LegReport>,
    pub sync: Option<SyncReport>,
    pub state: String,
    pub mounted_on: Option<String>,
    pub journal: Option<Journal>,
    /// What to run next after an interruption (None: nothing to do, or a run is under way).
    pub next: Option<Advice>,
}

fn leg(
    role: &'static str,
    dev: crate::kernel::devnum::DevNum,
    health: Option<Health>,
) -> LegReport {
    let bd = BlockDev::from_devnum(dev).ok();
    LegReport {
        role,
        dev: dev.to_string(),
        path: bd.as_ref().map(|d| d.display()).unwrap_or_default(),
        size_bytes: bd.and_then(|d| d.size().ok()).map(|b| *b as u64),
        health: health.map(Health::as_char),
    }
}

pub fn report(w: &Wrapper) -> Result<Report> {
    let b = backend::open(w)?;
    let journal = Journal::load(&w.name)?;
    let line = b.describe()?;
    let devs = b.legs()?;
    let mirroring = b.mirroring()?;
    let (legs, sync, table, state, on_target) = if mirroring {
        let st = b.sync_state().ok();
        let legs = devs
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                leg(
                    if i == 0 { "source" } else { "target" },
                    d,
                    st.as_ref().and_then(|s| s.health_of(d)),
                )
            })
            .collect();
        let sync = st.as_ref().map(|s| SyncReport {
            in_sync: s.units_done,
            total: s.units_total,
            percent: if s.units_total == 0 {
                100.0
            } else {
                (s.units_done as f64 * 1000.0 / s.units_total as f64).round() / 10.0
            },
        });
        let state = if st.as_ref().is_some_and(|s| s.complete()) {
            "in-sync"
        } else {
            "mirroring"
        };
        (legs, sync, "mirror", state.to_string(), false)
    } else {
        let dev = *devs
            .first()
            .ok_or_else(|| anyhow::anyhow!("{} maps no device", w.name))?;
        // the journal's target by identity (numbers change between boots), by number only when
        // it was recorded without one
        let on_target = journal.as_ref().is_some_and(|j| {
            // from `switching` on: after a crash there the boot chose the target (the power-cut
            // campaign's runs at the switching failpoints were advised `abort` on the target)
            j.step.target_may_run()
                && match j.target.identity.as_ref().filter(|i| i.is_known()) {
                    Some(i) => BlockDev::from_devnum(dev)
                        .is_ok_and(|d| i.matches(&crate::migrate::recovery::Identity::of(&d))),
                    None => j.target.dev == dev.to_string(),
                }
        });
        let state = match journal.as_ref().map(|j| j.step) {
            Some(s) if on_target => s.as_str().to_string(),
            Some(Step::Aborted) => "aborted".to_string(),
            _ => "wrapped".to_string(),
        };
        (
            vec![leg(if on_target { "target" } else { "source" }, dev, None)],
            None,
            "linear",
            state,
            on_target,
        )
    };
    let size = BlockDev::from_devnum(w.devnum)
        .and_then(|d| d.size())
        .map(|b| *b as u64)
        .unwrap_or(0);
    let mounted_on = mounts::mounts_of(w.devnum)?
        .first()
        .map(|m| m.mount_point.display().to_string());
    let next = advice::advise(advice::Seen {
        step: journal.as_ref().map(|j| j.step),
        mirroring,
        on_target,
        running: crate::lock::Lock::held_elsewhere(),
        install_pending: journal
            .as_ref()
            .and_then(|j| j.install.as_ref())
            .is_some_and(|i| i.state != "done"),
    });
    Ok(Report {
        name: w.name.clone(),
        backend: b.kind(),
        dev: w.devnum.to_string(),
        path: w.node().display().to_string(),
        size_bytes: size,
        table,
        table_line: line,
        legs,
        sync,
        state,
        mounted_on,
        journal,
        next,
    })
}

fn print_human(r: &Report) {
    println!(
        "{}  {} ({})  {}",
        r.name,
        r.path,
        r.dev,
        human(devicemapper::Bytes(r.size_bytes.into()))
    );
    if let Some(m) = &r.mounted_on {
        println!("  mounted on: {m}");
    }
    println!("  state:      {}", r.state);
    println!("  {:<11} {}", format!("{}:", r.backend), r.table_line);
    for l in &r.legs {
        let size = l
            .size_bytes
            .map(|b| human(devicemapper::Bytes(b.into())))
            .unwrap_or_else(|| "?".into());
        let health = l
            .health
            .map(|h| format!("  health {h}"))
            .unwrap_or_default();
        println!("  {:<7} {} ({})  {size}{health}", l.role, l.path, l.dev);
    }
    if let Some(s) = &r.sync {
        println!(
            "  sync:       {}/{} regions ({:.1}%)",
            s.in_sync, s.total, s.percent
        );
    }
    if let Some(j) = &r.journal {
        let mut line = format!(
            "  last run:   {} {} -> {}: {}",
            j.backend,
            j.source.path,
            j.target.path,
            j.step.as_str()
        );
        if let Some(w) = j.switch_window_ms {
            line += &format!(", switch window {w:.1} ms");
        }
        if let (Some(a), Some(b)) = (j.fs_before_bytes, j.fs_after_bytes) {
            line += &format!(
                ", fs {} -> {}",
                human(devicemapper::Bytes(a.into())),
                human(devicemapper::Bytes(b.into()))
            );
        }
        println!("{line}");
        if let Some(e) = &j.error {
            println!("  stopped:    {e}");
        }
    }
    if let Some(n) = &r.next {
        println!("  next:       {}", n.command);
        println!("              ({})", n.why);
    }
}

/// The version of `status --json`'s shape (`docs/json.md`).
pub const STATUS_VERSION: u32 = 1;

/// `status --json`: one shape, also when nothing is wrapped.
#[derive(Debug, Serialize)]
pub struct StatusDoc {
    pub version: u32,
    /// The wrappers asked for (the root's, or all; empty when none exists).
    pub wrappers: Vec<Report>,
    /// What the initrd hook did at this boot (None: it did not run).
    pub boot: Option<BootRecord>,
    /// Whether the hook wraps the root at the next boot (/etc/rootshift/rootshift.conf).
    pub setting: Setting,
}

/// The way out when the hook was off at this boot.
pub const TURN_ON: &str = "`rootshift boot enable` (then reboot) wraps the root at boot; \
    rd.rootshift=dm on the kernel command line does it for one boot";

/// `rootshift status [--name N] [--json]`.
pub fn status(name: Option<&str>, json: bool) -> Result<()> {
    let dm = Dm::open().ok();
    let boot = BootRecord::read();
    // an explicit name that does not exist is an error in either form
    let chosen: Vec<Wrapper> = if name.is_some() {
        vec![wrapper::find(dm.as_ref(), name)?]
    } else if let Ok(w) = wrapper::find(dm.as_ref(), None) {
        vec![w]
    } else {
        wrapper::list(dm.as_ref())?
    };
    let reports = chosen.iter().map(report).collect::<Result<Vec<_>>>()?;
    if json {
        let doc = StatusDoc {
            version: STATUS_VERSION,
            wrappers: reports,
            boot,
            setting: Setting::read(),
        };
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    if reports.is_empty() {
        return Err(refuse(
            "no rootshift wrapper exists (no device-mapper device named rootshift-*)",
            Some(&no_wrapper_hint(boot.as_ref())),
        ));
    }
    for r in &reports {
        print_human(r);
    }
    if let Some(b) = boot.filter(|b| b.state != "wrapped") {
        println!("boot hook: {}", b.summary());
    }
    Ok(())
}

/// The hint of human `status` when nothing is wrapped: what the hook did at this boot, and the
/// way to have the root wrapped.
fn no_wrapper_hint(boot: Option<&BootRecord>) -> String {
    let this_boot = match boot {
        Some(b) => format!("this boot: the rootshift hook {}", b.summary()),
        None => "this boot: the rootshift initrd hook did not run (no /run/rootshift/boot)".into(),
    };
    let way_out = if boot.is_some_and(|b| b.state == "off") {
        TURN_ON
    } else {
        "the root is wrapped at boot by the rootshift initrd hook, or by `rootshift wrap` before mounting"
    };
    format!("{this_boot}; {way_out}")
}

/// What the system runs on now, for the `error` event (best effort; None without a wrapper):
/// `{"wrapper", "state", "on"}` — `on` the paths of the devices the root's wrapper maps.
pub fn system_now() -> Option<serde_json::Value> {
    let dm = Dm::open().ok();
    let w = wrapper::find(dm.as_ref(), None).ok()?;
    let r = report(&w).ok()?;
    Some(serde_json::json!({
        "wrapper": r.name,
        "state": r.state,
        "on": r.legs.iter().map(|l| l.path.clone()).collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_names_boot_enable_when_the_hook_was_off() {
        let off: BootRecord = "state=off\nbackend=\ncomponent=/dev/vda1\nwrapper=\n\
            message=wrapping is not enabled (wrap=no in /etc/rootshift/rootshift.conf, the default)\n"
            .parse()
            .unwrap();
        assert_eq!(
            no_wrapper_hint(Some(&off)),
            "this boot: the rootshift hook off (/dev/vda1): wrapping is not enabled (wrap=no in \
             /etc/rootshift/rootshift.conf, the default); `rootshift boot enable` (then reboot) \
             wraps the root at boot; rd.rootshift=dm on the kernel command line does it for one boot"
        );
        let failed: BootRecord = "state=failed\nbackend=dm\ncomponent=/dev/vda1\nmessage=x\n"
            .parse()
            .unwrap();
        assert!(no_wrapper_hint(Some(&failed)).ends_with("or by `rootshift wrap` before mounting"));
        assert!(
            no_wrapper_hint(None).starts_with("this boot: the rootshift initrd hook did not run")
        );
    }
}
