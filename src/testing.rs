//! Test-only helpers for the VM suite (feature `testing`): fixture dm devices such as a `delay`
//! or `flakey` layer under a target. Never part of a shipped build.

use anyhow::{Context, Result};

use crate::kernel::dm::{ensure_node, Dm};
use crate::kernel::dmtable::TableLine;

/// Table lines separated by ';'.
fn parse_table(table: &str) -> Result<Vec<TableLine>> {
    table
        .split(';')
        .map(|l| l.trim().parse::<TableLine>())
        .collect::<Result<Vec<_>, _>>()
        .context("parsing the fixture table")
}

pub fn dm_create(name: &str, table: &str) -> Result<()> {
    let dm = Dm::open()?;
    let lines = parse_table(table)?;
    if let Some(t) = lines.first() {
        let module = format!("dm_{}", t.target);
        dm.ensure_target(&t.target, &module)?;
    }
    let info = dm.create(name, None, &lines)?;
    let node = ensure_node(name, info.devnum)?;
    println!("{}", node.display());
    Ok(())
}

/// Replace a fixture's table (load + resume), e.g. with `error` to make a target vanish.
pub fn dm_reload(name: &str, table: &str) -> Result<()> {
    crate::backend::switch::reload_table(&Dm::open()?, name, &parse_table(table)?)
}

pub fn dm_remove(name: &str) -> Result<()> {
    Dm::open()?.remove(name)
}

/// Time the switch's critical section `n` times and print `{"windows_ms":[...]}`.
pub fn switch_window(n: u32, name: Option<&str>) -> Result<()> {
    let dm = Dm::open()?;
    let w = crate::wrapper::find(Some(&dm), name)?;
    let windows = crate::backend::dm_mirror::switch_windows(&w, n)?;
    let ms: Vec<f64> = windows.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    println!("{}", serde_json::json!({ "windows_ms": ms }));
    Ok(())
}
