//! Command line (clap derive; the doc comments are the help text).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Move a running root filesystem to another block device without rebooting.
///
/// The root must be mounted from a rootshift wrapper (/dev/mapper/rootshift-root), which the
/// rootshift initrd hook sets up at boot.
#[derive(Debug, Parser)]
#[command(name = "rootshift", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Wrap SOURCE in a thin device (run from the initrd, before mounting the root).
    ///
    /// dm: a linear device /dev/mapper/rootshift-NAME. md: a superblock-less raid1
    /// /dev/md_rootshift-NAME (nothing is written to SOURCE).
    Wrap {
        /// Block device holding the root filesystem.
        source: PathBuf,
        /// Wrapper name; the device is rootshift-NAME.
        #[arg(long, default_value = crate::wrapper::DEFAULT_NAME)]
        name: String,
        /// Kernel mechanism for the wrapper and later migrations.
        #[arg(long, value_enum, default_value = "dm")]
        backend: crate::wrapper::Kind,
    },
    /// Show the wrapper, its legs, copy progress and the last migration.
    Status {
        /// Wrapper name (default: the one / is mounted from).
        #[arg(long)]
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy the running root onto TARGET, switch to it and grow the filesystem.
    Migrate {
        /// Disk or partition to move to; everything on it is overwritten.
        target: PathBuf,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Overwrite a target that already holds a filesystem or partition table.
        #[arg(long)]
        force: bool,
        /// Print progress and events as JSON lines on stdout.
        #[arg(long)]
        json: bool,
        /// Wrapper name (default: the one / is mounted from).
        #[arg(long)]
        name: Option<String>,
    },
    /// Before the switch, stop a migration: back to the source alone.
    Abort {
        /// Wrapper name (default: the one / is mounted from).
        #[arg(long)]
        name: Option<String>,
        /// Print events as JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Test fixtures for the VM suite (test builds only).
    #[cfg(feature = "testing")]
    #[command(subcommand, hide = true)]
    Testing(Testing),
}

#[cfg(feature = "testing")]
#[derive(Debug, Subcommand)]
pub enum Testing {
    /// Create a dm device from table lines separated by ';'.
    DmCreate { name: String, table: String },
    /// Remove a dm device.
    DmRemove { name: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_fits_80_columns() {
        let mut cmd = Cli::command().term_width(80);
        let mut all = vec![cmd.render_long_help().to_string()];
        for sub in cmd.get_subcommands_mut() {
            all.push(sub.clone().term_width(80).render_long_help().to_string());
        }
        for text in all {
            for line in text.lines() {
                assert!(line.chars().count() <= 80, "help line too long: {line:?}");
            }
        }
    }
}
