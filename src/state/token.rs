//! The journal's copy in an encrypted root's LUKS2 header (issue 21 §1, crash safety).
//!
//! A migration of an encrypted root moves the container whole: from the first copied block both
//! disks carry its LUKS UUID, and the journal inside the filesystem cannot be read before the
//! container is unlocked, which the boot does only after choosing a disk. So the journal is also
//! kept where it can be read without the key: a token of type `rootshift-journal` in the LUKS2
//! header on the wrapper. It is written through the wrapper like the filesystem's copy, so it
//! reaches every leg in sync before the switch and only the target after it, and `rootshift
//! choose` reads it at boot ([`crate::kernel::luks2`]) exactly as it reads the filesystem's copy.
//!
//! Written by `cryptsetup token import` (the header is the only way into the data: only
//! cryptsetup writes it; it keeps both copies, their checksums and the metadata lock), replaced
//! in place (`--token-replace`) at every save, removed when the migration is over.

use std::path::Path;

use anyhow::{anyhow, Context, Result};

use crate::kernel::blockdev::BlockDev;
use crate::kernel::luks2;

/// Whether `dev` carries a LUKS2 header (which can hold the token; LUKS1 cannot).
pub fn holds_luks2(dev: &Path) -> bool {
    BlockDev::from_path(dev)
        .ok()
        .and_then(|d| d.read_head(8).ok())
        .is_some_and(|h| luks2::version(&h) == Some(2))
}

fn metadata(dev: &Path) -> Result<luks2::Metadata> {
    let d = BlockDev::from_path(dev).map_err(|e| anyhow!("{}: {e}", dev.display()))?;
    luks2::read(&d)
        .with_context(|| format!("reading the LUKS2 header of {}", dev.display()))?
        .ok_or_else(|| anyhow!("{} carries no LUKS2 header", dev.display()))?
        .map_err(|e| anyhow!("the LUKS2 header of {}: {e}", dev.display()))
}

/// Write `journal` (its JSON text) into the token on `dev`, replacing the one there.
pub fn write(dev: &Path, journal: &str) -> Result<()> {
    let m = metadata(dev)?;
    let had = m.journal_token().is_some();
    let id = luks2::journal_token_id(&m).ok_or_else(|| {
        anyhow!(
            "the LUKS2 header of {} has all 32 token slots in use: there is no room for the journal",
            dev.display()
        )
    })?;
    let (id, d) = (id.to_string(), dev.display().to_string());
    let mut args = vec!["token", "import", "--token-id", &id];
    if had {
        args.push("--token-replace");
    }
    args.push(&d);
    crate::tools::run_input("cryptsetup", &args, &luks2::token_json(journal))
        .map(|_| ())
        .with_context(|| {
            format!(
                "keeping the journal in the LUKS2 header of {}",
                dev.display()
            )
        })
}

/// Remove the token from `dev`, if it has one.
pub fn remove(dev: &Path) -> Result<()> {
    let Some(t) = metadata(dev)?.journal_token() else {
        return Ok(());
    };
    let (id, d) = (t.id.to_string(), dev.display().to_string());
    crate::tools::run("cryptsetup", &["token", "remove", "--token-id", &id, &d]).map(|_| ())
}
