use std::process::ExitCode;

use clap::Parser;

use rootshift::cli::{Cli, Command};
use rootshift::error::{exit_code, hint};
use rootshift::{boot, migrate, session, status};

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Wrap {
            source,
            name,
            backend,
            chosen,
            choice,
        } => {
            migrate::preflight::require_root()?;
            let _lock = rootshift::lock::Lock::acquire()?;
            let choice = (!chosen).then(|| choice.opts());
            let node = boot::wrap(backend, &source, &name, choice.as_ref())?;
            println!("{}", node.display());
            Ok(())
        }
        Command::Choose { source, choice } => {
            migrate::preflight::require_root()?;
            let dev = boot::choose(&source, &choice.opts())?;
            println!("{}", dev.display());
            Ok(())
        }
        Command::Status {
            follow: true, json, ..
        } => session::follow(json),
        Command::Status { name, json, .. } => status::status(name.as_deref(), json),
        Command::Targets { name, json } => {
            migrate::preflight::require_root()?;
            rootshift::targets::targets(name.as_deref(), json)
        }
        Command::Migrate {
            detach: true, yes, ..
        } => detach_this_run(yes, "migration"),
        Command::Migrate {
            target,
            resume,
            yes,
            force,
            json,
            detach: _,
            dry_run,
            name,
            copy,
            region_size,
            rate_limit,
            throttle,
            verify,
            clones,
            image_to,
            key_file,
            encryption,
            wipe_source,
            install,
            no_install,
            finish,
        } => {
            // a dry run changes nothing: no event log, no inhibitor
            if !dry_run {
                session::start_event_log();
            }
            let _inhibit = (!dry_run).then(|| session::Inhibitor::take(&format!(
                "rootshift is moving the root filesystem{}: powering off now would need a recovery at the next boot",
                target.as_ref().map(|t| format!(" to {}", t.display())).unwrap_or_default()
            ), json));
            migrate::migrate(&migrate::MigrateOptions {
                target: target.unwrap_or_default(),
                resume,
                dry_run,
                name,
                yes,
                force,
                json,
                copy,
                region_size,
                rate_limit,
                throttle,
                verify,
                clones,
                image_to,
                install: if no_install {
                    Some(false)
                } else if install || finish.given() {
                    Some(true)
                } else {
                    None
                },
                finish: rootshift::finish::Options {
                    force,
                    ..finish.options()
                },
                key_file,
                encrypt: encryption.options(),
                wipe_source,
            })
        }
        Command::Install {
            detach: true, yes, ..
        } => detach_this_run(yes, "install"),
        Command::Install {
            detach: _,
            disk,
            root_size,
            esp_size,
            bios_boot,
            no_bios_boot,
            boot_partition,
            root_clones,
            data_partition,
            retain_last,
            dry_run,
            yes,
            json,
            name,
            copy,
            layout: install_layout,
            fs,
            no_soft_reboot,
            encryption,
            key_file,
            finish,
        } => {
            use rootshift::finish::bootloader::Choice;
            // like migrate: the event log `status --follow` reads, the shutdown inhibitor
            if !dry_run {
                session::start_event_log();
            }
            let plain = install_layout == rootshift::cli::InstallLayout::Plain;
            let inhibit = (!dry_run).then(|| {
                session::Inhibitor::take(&if plain {
                    format!("rootshift is copying the live system onto {}: powering off now loses the install (the live medium is untouched)", disk.display())
                } else {
                    format!("rootshift is installing the running system onto {}: powering off now would need a recovery at the next boot", disk.display())
                }, json)
            }).flatten();
            let efi_only = matches!(
                finish.bootloader,
                Some(Choice::GrubEfi | Choice::SystemdBoot)
            );
            let layout = rootshift::disk::layout::LayoutOptions {
                root_size,
                esp_size,
                bios_boot: if no_bios_boot {
                    false
                } else {
                    bios_boot || !efi_only
                },
                boot_partition,
                root_clones,
                data_partition,
                retain_last,
            };
            if install_layout != rootshift::cli::InstallLayout::Plain
                && (fs.is_some() || no_soft_reboot)
            {
                return Err(rootshift::error::refuse(
                    "--fs and --no-soft-reboot are options of --layout plain",
                    Some("add --layout plain, or leave them out"),
                ));
            }
            if plain && encryption.encrypt {
                return Err(rootshift::error::refuse(
                    "--encrypt is not built for --layout plain (a copy file by file into a new filesystem)",
                    Some("leave out --layout plain, or --encrypt"),
                ));
            }
            if plain {
                return rootshift::plain::install(
                    &rootshift::plain::PlainOptions {
                        disk,
                        layout,
                        bootloader: finish.options().bootloader,
                        dry_run,
                        yes,
                        json,
                        fs: fs.unwrap_or(rootshift::plain::PlainFs::Ext4),
                        soft_reboot: !no_soft_reboot,
                    },
                    inhibit,
                );
            }
            let _inhibit = inhibit;
            rootshift::install::install(&rootshift::install::InstallOptions {
                disk,
                layout,
                dry_run,
                yes,
                json,
                name,
                copy,
                finish: finish.options(),
                encrypt: encryption.options(),
                key_file,
            })
        }
        Command::ReleaseLive => rootshift::plain::release::release_live(),
        Command::Finish {
            name,
            yes,
            json,
            finish,
        } => migrate::finish_command(name.as_deref(), yes, json, finish.options()),
        Command::ViewExec {
            part,
            root_dev,
            fstype,
            bind,
            argv,
        } => {
            let view = rootshift::finish::view::View {
                part,
                root_dev,
                fstype,
                binds: bind,
            };
            rootshift::finish::view::exec(&view, &argv).map(|_| ())
        }
        Command::Boot(b) => {
            use rootshift::cli::BootCommand;
            match b {
                BootCommand::Enable {
                    backend,
                    no_initramfs,
                } => rootshift::bootcmd::enable(backend, !no_initramfs),
                BootCommand::Disable { no_initramfs } => rootshift::bootcmd::disable(!no_initramfs),
                BootCommand::Show => rootshift::bootcmd::show(),
                BootCommand::FlattenFinish { root } => {
                    let m = rootshift::plain::flatmove::finish_mounted(&root)?;
                    if m != Default::default() {
                        let line = format!(
                            "rootshift: flatten finished: {} old entries set aside, {} moved to the top, old upper {}",
                            m.set_aside,
                            m.moved,
                            if m.removed_old { "removed" } else { "kept" }
                        );
                        eprintln!("{line}");
                        // the initrd's stderr is the console only; the kernel log reaches the journal
                        let _ = std::fs::OpenOptions::new()
                            .write(true)
                            .open("/dev/kmsg")
                            .and_then(|mut k| {
                                std::io::Write::write_all(&mut k, format!("{line}\n").as_bytes())
                            });
                    }
                    Ok(())
                }
                BootCommand::LiveSync { kernel } => {
                    migrate::preflight::require_root()?;
                    let k = rootshift::finish::live::live_sync(kernel.as_deref())?;
                    println!("live boot entries: {}", k.join(", "));
                    Ok(())
                }
            }
        }
        Command::Flatten {
            no_soft_reboot,
            dry_run,
            yes,
            json,
            bootloader,
        } => {
            if !dry_run {
                session::start_event_log();
            }
            let inhibit = (!dry_run)
                .then(|| {
                    session::Inhibitor::take(
                        "rootshift is flattening this live disk: powering off now loses the copy (the live system still boots)",
                        json,
                    )
                })
                .flatten();
            rootshift::plain::flatten(
                &rootshift::plain::FlattenOptions {
                    bootloader: bootloader.unwrap_or(rootshift::finish::bootloader::Choice::Auto),
                    dry_run,
                    yes,
                    json,
                    soft_reboot: !no_soft_reboot,
                },
                inhibit,
            )
        }
        Command::Abort { name, json } => migrate::abort(name.as_deref(), json),
        Command::Generate { what, dir } => {
            let files = match what {
                rootshift::cli::Generated::Man => rootshift::docgen::man_pages(&dir)?,
                rootshift::cli::Generated::Completions => rootshift::docgen::completions(&dir)?,
            };
            for f in files {
                println!("{f}");
            }
            Ok(())
        }
        Command::CopyTree {
            src,
            dst,
            threads,
            catch_up,
            since,
            compare,
            json,
        } => rootshift::treecopy::command::run(
            &src,
            &dst,
            rootshift::treecopy::command::Passes {
                threads,
                catch_up,
                since,
            },
            compare,
            json,
        ),
        Command::Guardian { name, kind, thaw } => rootshift::guardian::run(&name, kind, thaw),
        #[cfg(feature = "testing")]
        Command::Testing(t) => match t {
            rootshift::cli::Testing::DmCreate { name, table } => {
                rootshift::testing::dm_create(&name, &table)
            }
            rootshift::cli::Testing::DmRemove { name } => rootshift::testing::dm_remove(&name),
            rootshift::cli::Testing::DmReload { name, table } => {
                rootshift::testing::dm_reload(&name, &table)
            }
            rootshift::cli::Testing::SwitchWindow { n, name } => {
                rootshift::testing::switch_window(n, name.as_deref())
            }
        },
    }
}

fn main() -> ExitCode {
    rootshift::failpoint::init();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // bad usage is bad input: one `rootshift: error:` line, the way out as a hint, exit 2
            let text = e.render().to_string();
            let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
            let mut first = lines
                .next()
                .unwrap_or("bad command line")
                .trim_start_matches("error: ")
                .to_string();
            let mut rest: Vec<&str> = lines.collect();
            if first.ends_with(':') && !rest.is_empty() {
                first = format!("{first} {}", rest.remove(0));
            }
            eprintln!("rootshift: error: {first}");
            if !rest.is_empty() {
                eprintln!("hint: {}", rest.join("; "));
            }
            return ExitCode::from(rootshift::error::exit::REFUSED as u8);
        }
    };
    let json = matches!(
        &cli.command,
        Command::Migrate { json: true, .. } | Command::Install { json: true, .. }
    );
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = exit_code(&e);
            // the last word of the event stream (stdout with --json, and the log `status
            // --follow` reads): what failed, the way out, the exit code
            let ev = serde_json::json!({
                "event": "error",
                "version": rootshift::progress::EVENT_VERSION,
                "message": format!("{e:#}"),
                "hint": hint(&e),
                "exit_code": code,
                // the state the system is in after the failure (null: no wrapper)
                "system": rootshift::status::system_now(),
            });
            rootshift::progress::log_event(&ev);
            if json {
                use std::io::Write;
                let _ = writeln!(std::io::stdout(), "{ev}");
            }
            // stderr may be gone (a closed terminal): never panic over it
            use std::io::Write;
            let mut err = std::io::stderr();
            let _ = writeln!(err, "rootshift: error: {e:#}");
            if let Some(h) = hint(&e) {
                let _ = writeln!(err, "hint: {h}");
            }
            ExitCode::from(code as u8)
        }
    }
}

/// `--detach`: check, then start this command line again without it, away from the terminal.
fn detach_this_run(yes: bool, what: &str) -> anyhow::Result<()> {
    session::require_yes_for_detach(yes)?;
    migrate::preflight::require_root()?;
    session::detach(session::detached_args(std::env::args()), what)
}
