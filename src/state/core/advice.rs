//! What `rootshift status` advises after an interruption (a power cut, a kill): the one command
//! that moves the system on from what the journal and the kernel show. Pure: no I/O.

use serde::Serialize;

use super::Step;

/// What status sees of a wrapper, as far as the advice cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The journal's step (None: no journal).
    pub step: Option<Step>,
    /// A target is attached (the wrapper mirrors).
    pub mirroring: bool,
    /// The wrapper maps the journal's target alone.
    pub on_target: bool,
    /// A rootshift process holds the lock (a migration is running now).
    pub running: bool,
    /// The migration was asked to install the target and that is not done.
    pub install_pending: bool,
}

/// The command to run next, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Advice {
    /// `abort`, `resume` or `finish`.
    pub action: &'static str,
    pub command: &'static str,
    pub why: &'static str,
}

const ABORT: &str = "rootshift abort";
const RESUME: &str = "rootshift migrate --resume";
const FINISH: &str = "rootshift finish";

/// The advice for what is seen; None when nothing is interrupted (or a run is under way).
pub fn advise(s: Seen) -> Option<Advice> {
    if s.running {
        return None;
    }
    let step = s.step?;
    let a = |action, command, why| {
        Some(Advice {
            action,
            command,
            why,
        })
    };
    match step {
        _ if s.mirroring => a(
            "resume",
            RESUME,
            "a mirror is attached and no migration runs: --resume copies on and switches \
             (`rootshift abort` goes back to the source instead)",
        ),
        Step::Mirroring | Step::Switching if !s.on_target => a(
            "abort",
            ABORT,
            "the migration was interrupted before the switch and the system runs on the source: \
             abort records it and clears the half copy; migrate again when you want",
        ),
        Step::Switching | Step::Switched | Step::Grown if s.on_target => a(
            "resume",
            RESUME,
            "the system runs on the target, past the point of no return: --resume finishes the \
             migration (grow, the old device's new UUID)",
        ),
        Step::Done if s.install_pending => a(
            "finish",
            FINISH,
            "the migration is done but making the target boot on its own was not: finish does it \
             (UUIDs, fstab, initramfs, boot loader)",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(step: Option<Step>) -> Seen {
        Seen {
            step,
            mirroring: false,
            on_target: false,
            running: false,
            install_pending: false,
        }
    }
    fn action(s: Seen) -> Option<&'static str> {
        advise(s).map(|a| a.action)
    }

    #[test]
    fn before_the_switch_on_the_source_is_abort() {
        assert_eq!(action(seen(Some(Step::Mirroring))), Some("abort"));
        assert_eq!(action(seen(Some(Step::Switching))), Some("abort"));
    }

    #[test]
    fn on_the_target_past_the_switch_is_resume() {
        for st in [Step::Switching, Step::Switched, Step::Grown] {
            assert_eq!(
                action(Seen {
                    on_target: true,
                    ..seen(Some(st))
                }),
                Some("resume"),
                "{st:?}"
            );
        }
    }

    #[test]
    fn an_attached_mirror_without_a_run_is_resume() {
        assert_eq!(
            action(Seen {
                mirroring: true,
                ..seen(Some(Step::Mirroring))
            }),
            Some("resume")
        );
    }

    #[test]
    fn a_pending_install_is_finish_and_a_done_one_nothing() {
        let done = Seen {
            on_target: true,
            ..seen(Some(Step::Done))
        };
        assert_eq!(
            action(Seen {
                install_pending: true,
                ..done
            }),
            Some("finish")
        );
        assert_eq!(action(done), None);
    }

    #[test]
    fn nothing_while_running_without_a_journal_or_after_an_abort() {
        let running = Seen {
            running: true,
            mirroring: true,
            ..seen(Some(Step::Mirroring))
        };
        assert_eq!(action(running), None);
        assert_eq!(action(seen(None)), None);
        assert_eq!(action(seen(Some(Step::Aborted))), None);
        // a journal that says switched while the source is mapped alone: the boot chose the
        // source (no target present); nothing this command could safely do
        assert_eq!(action(seen(Some(Step::Switched))), None);
    }
}
