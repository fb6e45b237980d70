//! `rootshift status`: the wrapper, its legs, sync progress, the journal's step.

use anyhow::Result;
use serde::Serialize;

use crate::error::refuse;
use crate::kernel::blockdev::{human, BlockDev};
use crate::kernel::dm::Dm;
use crate::kernel::dmtable::{Health, MirrorStatus, WrapperTable};
use crate::kernel::mounts;
use crate::migrate::journal::{Journal, Step};
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

pub fn report(dm: &Dm, w: &Wrapper) -> Result<Report> {
    let table = w.table(dm)?;
    let journal = Journal::load(&w.name)?;
    let line = dm
        .table(&w.name)?
        .first()
        .map(|l| l.to_string())
        .unwrap_or_default();
    let (legs, sync, state) = match &table {
        WrapperTable::Mirror { .. } => {
            let st: Option<MirrorStatus> = dm
                .status(&w.name)?
                .first()
                .and_then(|l| l.params.parse().ok());
            let legs = table
                .devices()
                .into_iter()
                .enumerate()
                .map(|(i, d)| {
                    leg(
                        if i == 0 { "source" } else { "target" },
                        d,
                        st.as_ref().and_then(|s| s.health_of(d)),
                    )
                })
                .collect();
            let sync = st.as_ref().map(|s| SyncReport {
                in_sync: s.in_sync,
                total: s.total,
                percent: if s.total == 0 {
                    100.0
                } else {
                    (s.in_sync as f64 * 1000.0 / s.total as f64).round() / 10.0
                },
            });
            let state = if st.as_ref().is_some_and(|s| s.fully_synced()) {
                "in-sync"
            } else {
                "mirroring"
            };
            (legs, sync, state.to_string())
        }
        WrapperTable::Linear { params, .. } => {
            let on_target = journal
                .as_ref()
                .is_some_and(|j| j.target.dev == params.dev.to_string() && j.step.switched());
            let state = match journal.as_ref().map(|j| j.step) {
                Some(s) if on_target => s.as_str().to_string(),
                Some(Step::Aborted) => "aborted".to_string(),
                _ => "wrapped".to_string(),
            };
            (
                vec![leg(
                    if on_target { "target" } else { "source" },
                    params.dev,
                    None,
                )],
                None,
                state,
            )
        }
    };
    let size = BlockDev::from_devnum(w.devnum)
        .and_then(|d| d.size())
        .map(|b| *b as u64)
        .unwrap_or(0);
    let mounted_on = mounts::mounts_of(w.devnum)?
        .first()
        .map(|m| m.mount_point.display().to_string());
    Ok(Report {
        name: w.name.clone(),
        dev: w.devnum.to_string(),
        path: w.node().display().to_string(),
        size_bytes: size,
        table: table.kind(),
        table_line: line,
        legs,
        sync,
        state,
        mounted_on,
        journal,
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
    println!("  table:      {}", r.table_line);
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
}

/// `rootshift status [--name N] [--json]`.
pub fn status(name: Option<&str>, json: bool) -> Result<()> {
    let dm = Dm::open()?;
    let all = wrapper::list(&dm)?;
    let chosen: Vec<Wrapper> = if name.is_some() {
        vec![wrapper::find(&dm, name)?]
    } else if let Ok(w) = wrapper::find(&dm, None) {
        vec![w]
    } else {
        all
    };
    if chosen.is_empty() {
        return Err(refuse(
            "no rootshift wrapper exists (no device-mapper device named rootshift-*)",
            Some("the root is wrapped at boot by the rootshift initrd hook, or by `rootshift wrap` before mounting"),
        ));
    }
    let reports = chosen
        .iter()
        .map(|w| report(&dm, w))
        .collect::<Result<Vec<_>>>()?;
    if json {
        if reports.len() == 1 {
            println!("{}", serde_json::to_string_pretty(&reports[0])?);
        } else {
            println!("{}", serde_json::to_string_pretty(&reports)?);
        }
    } else {
        for r in &reports {
            print_human(r);
        }
    }
    Ok(())
}
