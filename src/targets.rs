//! `rootshift targets`: every disk and partition this machine has, and whether `migrate` could
//! move the root onto it — "usable", or the refusal `migrate` would print (with its way out).
//! What an installer needs to offer a choice. Only reads: the same checks `migrate` runs first.

use std::fs;

use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use serde_json::json;

use crate::backend;
use crate::error::hint;
use crate::kernel::blockdev::BlockDev;
use crate::kernel::devnum::DevNum;
use crate::kernel::dm::Dm;
use crate::migrate::preflight;
use crate::units::human;
use crate::wrapper;

#[derive(Debug, Serialize)]
pub struct Candidate {
    pub path: String,
    pub dev: String,
    /// `disk` or `partition`.
    pub kind: &'static str,
    pub size_bytes: u64,
    pub model: Option<String>,
    pub serial: Option<String>,
    /// What is on it now: the signatures wipefs finds (the built-in probe where it is missing).
    pub holds: Option<String>,
    pub usable: bool,
    /// Why not (the refusal `migrate` would give), and the way out.
    pub why_not: Option<String>,
    pub hint: Option<String>,
}

fn read_trim(p: std::path::PathBuf) -> Option<String> {
    fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Disks and partitions the kernel has (no loop, ram, zram, dm or md devices: a target is a
/// real disk or one of its partitions).
fn block_devices() -> Result<Vec<BlockDev>> {
    let mut v = vec![];
    for e in fs::read_dir("/sys/class/block").context("listing /sys/class/block")? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if ["loop", "ram", "zram", "dm-", "md", "sr", "nbd"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            continue;
        }
        let dev = read_trim(format!("/sys/class/block/{name}/dev").into())
            .and_then(|d| d.parse::<DevNum>().ok());
        if let Some(d) = dev.and_then(|d| BlockDev::from_devnum(d).ok()) {
            v.push(d);
        }
    }
    v.sort_by_key(|a| a.display());
    Ok(v)
}

pub fn targets(name: Option<&str>, json_out: bool) -> Result<()> {
    let dm = Dm::open().ok();
    let w = wrapper::find(dm.as_ref(), name)?;
    let source_dev = *backend::open(&w)?
        .legs()?
        .first()
        .ok_or_else(|| anyhow!("{} maps no device", w.name))?;
    let source = BlockDev::from_devnum(source_dev).context("finding the source device")?;
    let mut out = vec![];
    for d in block_devices()? {
        let (usable, why_not, how) = match preflight::check_target(&w, &source, &d, false) {
            Ok(_) => (true, None, None),
            Err(e) => (false, Some(format!("{e:#}")), hint(&e).map(str::to_string)),
        };
        let disk = d.whole_disk().ok();
        let dsys = disk.as_ref().map(|x| x.sysfs.clone());
        out.push(Candidate {
            path: d.display(),
            dev: d.devnum.to_string(),
            kind: if d.is_partition() {
                "partition"
            } else {
                "disk"
            },
            size_bytes: d.size().map(|s| *s as u64).unwrap_or(0),
            model: dsys
                .as_ref()
                .and_then(|s| read_trim(s.join("device/model"))),
            serial: dsys.as_ref().and_then(|s| {
                read_trim(s.join("serial")).or_else(|| read_trim(s.join("device/serial")))
            }),
            holds: crate::disk::signatures::holds(&d).ok().flatten(),
            usable,
            why_not,
            hint: how,
        });
    }
    if json_out {
        let v = json!({
            "version": crate::progress::EVENT_VERSION,
            "wrapper": w.name,
            "source": source.display(),
            "targets": out,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "the root is on {} ({}); candidate targets:",
        w.name,
        source.display()
    );
    for c in &out {
        let what = [c.model.as_deref(), c.serial.as_deref(), c.holds.as_deref()]
            .iter()
            .flatten()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "  {:<16} {:>10}  {}{}",
            c.path,
            human(devicemapper::Bytes(c.size_bytes as u128)),
            if c.usable {
                "usable".to_string()
            } else {
                format!("not usable: {}", c.why_not.as_deref().unwrap_or("?"))
            },
            if what.is_empty() {
                String::new()
            } else {
                format!(" [{what}]")
            }
        );
    }
    Ok(())
}
