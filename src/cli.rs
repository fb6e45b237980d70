//! Command line (clap derive; the doc comments are the help text).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// `--version`: a build with the `testing` feature (failpoints, fixture devices) says so.
const VERSION: &str = if cfg!(feature = "testing") {
    concat!(
        env!("CARGO_PKG_VERSION"),
        " (testing build: failpoints and fixtures; never ship it)"
    )
} else {
    env!("CARGO_PKG_VERSION")
};

/// Move a running root filesystem to another block device without rebooting.
///
/// The root must be mounted from a rootshift wrapper (/dev/mapper/rootshift-root), which the
/// rootshift initrd hook sets up at boot once `rootshift boot enable` turned it on.
#[derive(Debug, Parser)]
#[command(name = "rootshift", version = VERSION, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// How the boot device is chosen (`choose`, `wrap`).
#[derive(Debug, Clone, clap::Args)]
pub struct ChoiceArgs {
    /// Boot the device with this identity whatever the journals say (rd.rootshift.pick=):
    /// PARTUUID=… or SERIAL=….
    #[arg(long, value_parser = parse_pick)]
    pub pick: Option<crate::state::core::Identity>,
    /// Seconds to wait for the twin a lone device's journal names (rd.rootshift.wait=).
    #[arg(long, default_value_t = crate::migrate::recovery::DEFAULT_WAIT_SECS)]
    pub wait: u64,
}

impl ChoiceArgs {
    pub fn opts(&self) -> crate::migrate::recovery::ChooseOpts {
        crate::migrate::recovery::ChooseOpts {
            pick: self.pick.clone(),
            wait: std::time::Duration::from_secs(self.wait),
        }
    }
}

fn parse_pick(s: &str) -> Result<crate::state::core::Identity, String> {
    crate::state::core::Identity::parse_pick(s)
        .ok_or_else(|| format!("{s}: expected PARTUUID=… or SERIAL=…"))
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
        /// SOURCE was chosen by `rootshift choose`: wrap it, choose nothing again.
        #[arg(long)]
        chosen: bool,
        #[command(flatten)]
        choice: ChoiceArgs,
    },
    /// Print the device to boot (run from the initrd before `wrap`, also with rd.rootshift=0).
    ///
    /// SOURCE unless its own rootshift journal, or another device with the same filesystem
    /// UUID after an interrupted migration, says otherwise. Exit 4: boot nothing.
    Choose {
        /// Block device the initrd resolved the root to.
        source: PathBuf,
        #[command(flatten)]
        choice: ChoiceArgs,
    },
    /// Show the wrapper, its legs, copy progress and the last migration.
    Status {
        /// Wrapper name (default: the one / is mounted from).
        #[arg(long)]
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Follow the running migration (one started with --detach, or in another shell) with
        /// the same progress display until it ends.
        #[arg(long)]
        follow: bool,
    },
    /// List the disks and partitions, each "usable" as a migration target or why not (the
    /// refusal `migrate` would give). Changes nothing.
    Targets {
        /// Wrapper name (default: the one / is mounted from).
        #[arg(long)]
        name: Option<String>,
        /// Print JSON (an object with a list of targets).
        #[arg(long)]
        json: bool,
    },
    /// Copy the running root onto TARGET, switch to it and grow the filesystem.
    Migrate {
        /// Disk or partition to move to; everything on it is overwritten.
        #[arg(required_unless_present = "resume")]
        target: Option<PathBuf>,
        /// Continue an interrupted migration (after a crash or kill) from where the kernel is.
        #[arg(long, conflicts_with = "target")]
        resume: bool,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Overwrite a target that already holds a filesystem or partition table.
        #[arg(long)]
        force: bool,
        /// Print progress and events as JSON lines on stdout.
        #[arg(long)]
        json: bool,
        /// Run detached from this terminal (a systemd unit where systemd runs, else a
        /// background process); follow it with `rootshift status --follow`. Needs --yes.
        #[arg(long)]
        detach: bool,
        /// Run every check and show the plan (source, target, copy, install step), then stop:
        /// nothing is changed (exit 0: it would run; 2: refused, with the reason).
        #[arg(long, conflicts_with_all = ["resume", "detach"])]
        dry_run: bool,
        /// Wrapper name (default: the one / is mounted from).
        #[arg(long)]
        name: Option<String>,
        /// What to copy: auto = only the blocks a mounted ext4/xfs uses (dm backend),
        /// everything otherwise.
        #[arg(long, value_enum, default_value = "auto")]
        copy: crate::backend::CopyMode,
        /// dm region size (e.g. 512K, 4M; a power of two). Default: 1M used-only, 4M full.
        #[arg(long, value_parser = parse_size)]
        region_size: Option<u64>,
        /// md backend: copy at most RATE bytes per second (e.g. 50M). Without it md copies flat out
        /// while the root sees no other I/O and at a 50 MiB/s floor while it does.
        #[arg(long, value_parser = parse_size)]
        rate_limit: Option<u64>,
        /// dm backend: percentage of time the kernel may spend copying (global to all dm
        /// mirrors; dm-mirror has no per-device rate).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
        throttle: Option<u32>,
        /// Before the switch, compare source and target (O_DIRECT reads; the blocks in use
        /// for a used-only copy) and refuse to switch on any difference.
        #[arg(long)]
        verify: bool,
        /// Also fill DEVICE in the same pass (repeatable): a clone of the root, detached at the
        /// switch with the filesystem frozen and given its own filesystem UUID.
        #[arg(long = "clone", value_name = "DEVICE")]
        clones: Vec<PathBuf>,
        /// Overlayfs live root: after the switch, also move the live image files (the files
        /// under the overlay's read-only loop devices) onto PART: a fresh ext4 labelled
        /// rootshift-live, mounted on /run/rootshift/image; each copy is verified with O_DIRECT
        /// reads and its loop device moved onto it (LOOP_CHANGE_FD). Then the medium is
        /// unmounted and ejected.
        #[arg(long, value_name = "PART")]
        image_to: Option<PathBuf>,
        /// Encrypted root (a LUKS container opened over the wrapper): the file holding its
        /// passphrase or key, which growing the container after the move needs (LUKS2 keeps the
        /// volume key in the kernel keyring). Tested before anything changes; without it the
        /// passphrase is asked for on the terminal.
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
        #[command(flatten)]
        encryption: EncryptArgs,
        /// With --encrypt: after the switch, overwrite the old device with zeroes (it holds
        /// the root as plaintext).
        #[arg(long)]
        wipe_source: bool,
        /// After the migration, make the target an installed system that boots alone: fresh
        /// ids, fstab, initramfs, boot loader (`rootshift finish`). Default when the source is
        /// a live medium, or when --bootloader/--initramfs is given.
        #[arg(long, conflicts_with = "no_install")]
        install: bool,
        /// Only move the root; leave ids, fstab and boot loader alone.
        #[arg(long)]
        no_install: bool,
        #[command(flatten)]
        finish: FinishArgs,
    },
    /// Lay out a whole disk (GPT), move the running root onto it and make it boot.
    ///
    /// Plans the table (BIOS boot, ESP, optional /boot, root clones, root, optional data
    /// partition, or the existing last partition kept), shows it, asks, writes it in one go,
    /// then runs `migrate --install` onto the root partition with the clones as extra legs
    /// and writes /etc/rootshift/partids (KIWI's partids format).
    Install {
        /// The whole disk to lay out; everything on it is lost (except a --retain-last
        /// partition).
        #[arg(long)]
        disk: PathBuf,
        /// Size of the root partition, or `rest` for all the space left.
        #[arg(long, default_value = "rest")]
        root_size: crate::disk::layout::RootSize,
        /// Size of the EFI System Partition (0 = none).
        #[arg(long, default_value = "256M", value_parser = parse_size_or_zero)]
        esp_size: u64,
        /// A 1 MiB BIOS boot partition first, for GRUB on BIOS firmware (default: on unless
        /// --bootloader grub-efi or systemd-boot).
        #[arg(long, overrides_with = "no_bios_boot")]
        bios_boot: bool,
        /// No BIOS boot partition.
        #[arg(long)]
        no_bios_boot: bool,
        /// A separate /boot partition of SIZE.
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        boot_partition: Option<u64>,
        /// N partitions the size of the root, before it, filled in the same pass (KIWI's
        /// root clones: A/B updates, factory reset); each gets its own filesystem UUID.
        #[arg(long, default_value_t = 0)]
        root_clones: u32,
        /// A spare partition of SIZE placed last.
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        data_partition: Option<u64>,
        /// Keep the disk's last partition (its entry and its data). exact: the new layout
        /// must end exactly where it starts; fit: it must end before.
        #[arg(long, value_enum)]
        retain_last: Option<crate::disk::layout::Retain>,
        /// Show the planned table and stop.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Print events as JSON lines on stdout.
        #[arg(long)]
        json: bool,
        /// Run detached from this terminal (see `migrate --detach`); needs --yes.
        #[arg(long, conflicts_with = "dry_run")]
        detach: bool,
        /// Wrapper name (default: the one / is mounted from).
        #[arg(long)]
        name: Option<String>,
        /// What to copy (see `migrate --copy`).
        #[arg(long, value_enum, default_value = "auto")]
        copy: crate::backend::CopyMode,
        /// auto: the running root moves as a block device (a live overlay session: its image
        /// and persistence partitions). plain: a live session becomes a conventional installed
        /// system (a plain ext4/xfs root), copied file by file while it runs, then entered by
        /// `systemctl soft-reboot`.
        #[arg(long, value_enum, default_value = "auto")]
        layout: InstallLayout,
        #[command(flatten)]
        encryption: EncryptArgs,
        /// With --encrypt: the file holding the new container's passphrase or key (else it is
        /// asked twice on the terminal).
        #[arg(long, value_name = "FILE", requires = "encrypt")]
        key_file: Option<PathBuf>,
        /// The root filesystem of --layout plain (default: ext4).
        #[arg(long, value_enum)]
        fs: Option<crate::plain::PlainFs>,
        /// --layout plain: do not soft-reboot at the end; the installed system starts at the
        /// next boot.
        #[arg(long)]
        no_soft_reboot: bool,
        #[command(flatten)]
        finish: FinishArgs,
    },
    /// A disk made by `install --disk` from a live session (image + persistence partitions):
    /// make it a conventional installed system in place, like `install --layout plain`.
    ///
    /// The plain root goes onto the persistence partition (its filesystem and UUID kept): the
    /// running system's merged view is copied into rootshift-flat/ there while it runs, then
    /// finished in a chroot (live setup stripped, new machine-id and SSH host keys, fstab,
    /// initramfs, GRUB for BIOS and UEFI). The image partition becomes /boot; the squashfs and
    /// the live kernels on it are removed once the new boot entry is written. Then
    /// `systemctl soft-reboot` enters the tree; the next real boot's initrd moves it to the
    /// partition's top and removes the old upper.
    Flatten {
        /// Do not soft-reboot at the end; the installed system starts at the next boot.
        #[arg(long)]
        no_soft_reboot: bool,
        /// Show what would happen and stop.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Print events as JSON lines on stdout.
        #[arg(long)]
        json: bool,
        /// Boot loader: auto (GRUB for BIOS and UEFI, as the disk's partitions allow), grub-bios
        /// or grub-efi.
        #[arg(long, value_enum)]
        bootloader: Option<crate::finish::bootloader::Choice>,
    },
    /// Internal: let go of a live session's medium, loops and RAM upper after the soft-reboot
    /// of `install --layout plain` (run by a runtime unit it writes).
    #[command(hide = true)]
    ReleaseLive,
    /// Make the system running from the target bootable on its own (after `migrate`).
    ///
    /// Fresh filesystem UUID (and machine-id for a live medium), fstab, initramfs, boot
    /// loader, then the spin's hooks in /etc/rootshift/post-install.d. Re-runnable.
    Finish {
        /// Wrapper name (default: the one / is mounted from).
        #[arg(long)]
        name: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Print events as JSON lines on stdout.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        finish: FinishArgs,
    },
    /// Turn wrapping the root at boot on or off, or show the setting.
    ///
    /// The rootshift initrd hook wraps the root (so that `migrate` can move it) only when
    /// /etc/rootshift/rootshift.conf says wrap=dm or wrap=md; without the file, or a wrap=
    /// line in it, it does not. The file is copied into the initramfs when that is built, so
    /// a change takes effect at the first boot after the initramfs is rebuilt. rd.rootshift=dm,
    /// md or 0 on the kernel command line overrides the setting at that boot.
    #[command(subcommand)]
    Boot(BootCommand),
    /// Before the switch, stop a migration: back to the source alone.
    Abort {
        /// Wrapper name (default: the one / is mounted from).
        #[arg(long)]
        name: Option<String>,
        /// Print events as JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Internal: run a boot tool in the target view (see src/finish/view.rs).
    #[command(hide = true)]
    ViewExec {
        #[arg(long)]
        part: PathBuf,
        #[arg(long)]
        root_dev: PathBuf,
        #[arg(long)]
        fstype: String,
        #[arg(long)]
        bind: Vec<PathBuf>,
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// Write the man pages or the shell completions into DIR (for packaging).
    #[command(hide = true)]
    Generate {
        #[arg(value_enum)]
        what: Generated,
        dir: PathBuf,
    },
    /// Copy a directory tree file by file, everything kept, while it is in use.
    ///
    /// Into DST (normally the root of a freshly made filesystem): data (holes kept), hard links,
    /// owners, modes, nanosecond times, every extended attribute but overlayfs' own (ACLs, file
    /// capabilities, SELinux labels), chattr flags, device nodes, fifos, sockets. Directories on
    /// other mounts are created empty, not entered (`cp -x`); with SRC = / the kernel's and the
    /// session's directories (/proc /sys /dev /run /tmp) too. The first pass is followed by
    /// catch-up passes over what changed meanwhile (by ctime): the copy is as of the last pass.
    /// An overlay root is read through its merged view, never through its upper directory.
    CopyTree {
        /// Directory to copy (e.g. / of a live session).
        src: PathBuf,
        /// Existing directory to copy into.
        dst: PathBuf,
        /// Worker threads (default: twice the CPUs, at most 16).
        #[arg(long)]
        threads: Option<usize>,
        /// Catch-up passes after the first.
        #[arg(long, default_value_t = 1)]
        catch_up: u32,
        /// Start with a catch-up pass over what changed since this time (SECONDS.NANOS, as the
        /// `next_since` an earlier run printed) instead of a full pass.
        #[arg(long, value_parser = crate::treecopy::command::parse_since)]
        since: Option<(i64, i64)>,
        /// Afterwards compare SRC and DST; exit 1 when anything differs.
        #[arg(long)]
        compare: bool,
        /// Print JSON lines (one per pass, then the comparison).
        #[arg(long)]
        json: bool,
    },
    /// Internal: the process that resumes/thaws if rootshift dies mid-change.
    #[command(hide = true)]
    Guardian {
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        kind: crate::wrapper::Kind,
        #[arg(long)]
        thaw: Option<PathBuf>,
    },
    /// Test fixtures for the VM suite (test builds only).
    #[cfg(feature = "testing")]
    #[command(subcommand, hide = true)]
    Testing(Testing),
}

/// `rootshift boot …`.
#[derive(Debug, Subcommand)]
pub enum BootCommand {
    /// Wrap the root at every boot from the next one: write wrap=BACKEND, rebuild the initramfs.
    ///
    /// Writes /etc/rootshift/rootshift.conf (only its wrap= line changes; comments and other
    /// lines are kept), then regenerates the initramfs of every kernel with the
    /// distribution's tool (update-initramfs or dracut). Refused, with nothing changed, while
    /// a migration runs, or when the initramfs cannot be regenerated. When a regeneration
    /// fails the old file is put back (and the images already rebuilt are rebuilt with it).
    /// Run again with the setting already there, it only regenerates the initramfs.
    Enable {
        /// Kernel mechanism for the wrapper and later migrations.
        #[arg(long, value_enum, default_value = "dm")]
        backend: crate::wrapper::Kind,
        /// Only write the file (for image builders who build the initramfs themselves); the
        /// setting takes effect once the initramfs is rebuilt.
        #[arg(long)]
        no_initramfs: bool,
    },
    /// Stop wrapping the root at boot from the next one: write wrap=no, rebuild the initramfs.
    ///
    /// Like `enable`: only the wrap= line changes, and the old file comes back when a
    /// regeneration fails. Without the file wrap=no is the default already: nothing is
    /// written (no file is created), but the initramfs is still regenerated, since one built
    /// before wrapping became opt-in, or by a hook that wrapped by default, may wrap the root.
    /// The root stays wrapped until the reboot.
    Disable {
        /// Only write the file; the setting takes effect once the initramfs is rebuilt.
        #[arg(long)]
        no_initramfs: bool,
    },
    /// Print the setting and where it comes from, and what the hook did at this boot.
    ///
    /// "wrap=dm (from /etc/rootshift/rootshift.conf)", "wrap=no (default: no
    /// /etc/rootshift/rootshift.conf)"; a note when this boot's kernel command line has
    /// rd.rootshift=, which overrides it; then "this boot: …" from /run/rootshift/boot.
    Show,
    /// A live session installed by `install --disk`: copy the kernels in /boot (or just VERSION)
    /// to the image partition's live/ and write its grub.cfg again, newest kernel first.
    ///
    /// Run by the kernel hooks (/etc/kernel/postinst.d/zz-rootshift-live,
    /// /etc/initramfs/post-update.d/zz-rootshift-live) after a kernel or an initramfs was
    /// installed; does nothing without /etc/rootshift/live.conf.
    LiveSync {
        /// Only this kernel version (the hooks pass theirs).
        #[arg(long)]
        kernel: Option<String>,
    },
    /// Finish a `rootshift flatten` on the root filesystem mounted at ROOT (run by the initrd,
    /// before init starts): move the tree from rootshift-flat/ to the top, remove the old upper.
    ///
    /// Does nothing when ROOT has no rootshift-flat.ready, rootshift-flat.moving or
    /// rootshift-old; goes on from where a power cut stopped an earlier run.
    FlattenFinish {
        /// Where the initrd mounted the root filesystem ($rootmnt, $NEWROOT).
        root: PathBuf,
    },
}

/// Options of the install step (`migrate --install`, `finish`).
#[derive(Debug, Clone, clap::Args)]
pub struct FinishArgs {
    /// Boot loader for the target: auto = grub-efi when booted with UEFI and the target
    /// disk has an ESP, else grub-bios.
    #[arg(long, value_enum)]
    pub bootloader: Option<crate::finish::bootloader::Choice>,
    /// regenerate: rebuild the initramfs with the distribution's tool; keep: use the
    /// image's prebuilt (generic) one.
    #[arg(long, value_enum)]
    pub initramfs: Option<crate::finish::initramfs::Mode>,
    /// With --encrypt: the key file /etc/crypttab names for the root's container, so the
    /// initramfs unlocks it without asking (initramfs-tools copies it in only when
    /// KEYFILE_PATTERN in /etc/cryptsetup-initramfs/conf-hook matches it). Default: none, the
    /// passphrase is asked for at boot.
    #[arg(long, value_name = "FILE")]
    pub crypttab_key: Option<PathBuf>,
}

/// `--encrypt` and what goes with it (`migrate`, `install`).
#[derive(Debug, Clone, clap::Args)]
pub struct EncryptArgs {
    /// Encrypt the root while moving it: format the target (`install`: the root partition) as
    /// LUKS2 (cryptsetup), open it as luks-<UUID> and mirror the root into it. The key:
    /// --key-file FILE, or a passphrase asked twice on the terminal. With the install step,
    /// crypttab and an initramfs that unlocks it are written; /boot must stay unencrypted
    /// (`install --disk` lays out a /boot partition for it).
    #[arg(long)]
    pub encrypt: bool,
    /// With --encrypt: the new container's KDF memory cost in KiB (cryptsetup
    /// --pbkdf-memory; argon2id's default is up to 1 GiB).
    #[arg(long, value_name = "KIB", requires = "encrypt")]
    pub pbkdf_memory: Option<u32>,
    /// With --encrypt: the time the KDF should take on this machine, in ms (cryptsetup
    /// --iter-time).
    #[arg(long, value_name = "MS", requires = "encrypt")]
    pub iter_time: Option<u32>,
    /// With --encrypt: also enroll this machine's TPM 2.0 (systemd-cryptenroll), so the boot
    /// unlocks the root without a passphrase (crypttab gets tpm2-device=auto; needs an
    /// initramfs with systemd-cryptsetup: dracut).
    #[arg(long, requires = "encrypt")]
    pub tpm2: bool,
    /// With --tpm2: the PCRs the key is sealed to (systemd-cryptenroll --tpm2-pcrs; empty for
    /// none).
    #[arg(long, value_name = "LIST", requires = "tpm2", default_value = "7")]
    pub tpm2_pcrs: String,
}

impl EncryptArgs {
    /// What `migrate` takes: None without --encrypt.
    pub fn options(&self) -> Option<crate::migrate::EncryptOptions> {
        self.encrypt.then(|| crate::migrate::EncryptOptions {
            pbkdf_memory: self.pbkdf_memory,
            iter_time: self.iter_time,
            tpm2_pcrs: self.tpm2.then(|| self.tpm2_pcrs.clone()),
        })
    }
}

impl FinishArgs {
    pub fn given(&self) -> bool {
        self.bootloader.is_some() || self.initramfs.is_some() || self.crypttab_key.is_some()
    }
    pub fn options(&self) -> crate::finish::Options {
        crate::finish::Options {
            bootloader: self
                .bootloader
                .unwrap_or(crate::finish::bootloader::Choice::Auto),
            initramfs: self
                .initramfs
                .unwrap_or(crate::finish::initramfs::Mode::Regenerate),
            boot_partition: None,
            force: false,
            encrypt: false,
            tpm2: false,
            crypttab_key: self.crypttab_key.clone(),
        }
    }
}

pub use crate::units::{parse_size, parse_size_or_zero};

#[cfg(feature = "testing")]
#[derive(Debug, Subcommand)]
pub enum Testing {
    /// Create a dm device from table lines separated by ';'.
    DmCreate { name: String, table: String },
    /// Remove a dm device.
    DmRemove { name: String },
    /// Replace a dm device's table (table lines separated by ';').
    DmReload { name: String, table: String },
    /// Time the switch's critical section N times on the wrapper's live table (dm).
    SwitchWindow {
        n: u32,
        #[arg(long)]
        name: Option<String>,
    },
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
        for sub in cmd.get_subcommands_mut().filter(|s| !s.is_hide_set()) {
            all.push(sub.clone().term_width(80).render_long_help().to_string());
            // nested ones (`boot enable`)
            for sub2 in sub.get_subcommands_mut().filter(|s| !s.is_hide_set()) {
                all.push(sub2.clone().term_width(80).render_long_help().to_string());
            }
        }
        for text in all {
            for line in text.lines() {
                assert!(line.chars().count() <= 80, "help line too long: {line:?}");
            }
        }
    }
}

/// What `rootshift generate` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Generated {
    /// rootshift(8) and rootshift-SUBCOMMAND(8)
    Man,
    /// bash, zsh and fish completions
    Completions,
}

/// What `install` makes of the running system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InstallLayout {
    Auto,
    Plain,
}
