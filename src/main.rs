use std::process::ExitCode;

use clap::Parser;

use rootshift::cli::{Cli, Command};
use rootshift::error::{exit_code, hint};
use rootshift::{boot, migrate, status};

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
        Command::Status { name, json } => status::status(name.as_deref(), json),
        Command::Migrate {
            target,
            resume,
            yes,
            force,
            json,
            name,
            copy,
            region_size,
            rate_limit,
            throttle,
            verify,
            clones,
            install,
            no_install,
            finish,
        } => migrate::migrate(&migrate::MigrateOptions {
            target: target.unwrap_or_default(),
            resume,
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
            install: if no_install {
                Some(false)
            } else if install || finish.given() {
                Some(true)
            } else {
                None
            },
            finish: finish.options(),
        }),
        Command::Install {
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
            finish,
        } => {
            use rootshift::finish::bootloader::Choice;
            let efi_only = matches!(
                finish.bootloader,
                Some(Choice::GrubEfi | Choice::SystemdBoot)
            );
            rootshift::install::install(&rootshift::install::InstallOptions {
                disk,
                layout: rootshift::disk::layout::LayoutOptions {
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
                },
                dry_run,
                yes,
                json,
                name,
                copy,
                finish: finish.options(),
            })
        }
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
        Command::Abort { name, json } => migrate::abort(name.as_deref(), json),
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
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rootshift: error: {e:#}");
            if let Some(h) = hint(&e) {
                eprintln!("hint: {h}");
            }
            ExitCode::from(exit_code(&e) as u8)
        }
    }
}
