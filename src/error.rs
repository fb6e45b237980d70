//! Errors that decide the exit code: refusals (bad input, nothing changed) and interruptions.

use std::fmt;

/// Exit codes, documented in README.md.
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const REFUSED: i32 = 2;
    pub const INTERRUPTED: i32 = 3;
    /// `wrap`: two devices carry the root's filesystem UUID and nothing says which one is
    /// complete; the initrd must not boot either.
    pub const AMBIGUOUS_ROOT: i32 = 4;
}

/// rootshift refused to act: the input or the system state is wrong, and nothing was changed.
#[derive(Debug)]
pub struct Refusal {
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refusal {}

/// A refusal as an `anyhow::Error`.
pub fn refuse(message: impl Into<String>, hint: Option<&str>) -> anyhow::Error {
    Refusal {
        message: message.into(),
        hint: hint.map(str::to_string),
    }
    .into()
}

/// A signal stopped the migration and rootshift rolled back to the source.
#[derive(Debug)]
pub struct Interrupted {
    pub signal: &'static str,
    pub detail: String,
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "interrupted by {}: {}", self.signal, self.detail)
    }
}

impl std::error::Error for Interrupted {}

/// Two devices carry the root's UUID and nothing says which one is complete (`wrap` in the
/// initrd refuses to pick; exit code [`exit::AMBIGUOUS_ROOT`]).
#[derive(Debug)]
pub struct Ambiguous(pub String);

impl fmt::Display for Ambiguous {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refusing to pick the root device: {}", self.0)
    }
}

impl std::error::Error for Ambiguous {}

/// The exit code for an error chain.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    if e.downcast_ref::<Refusal>().is_some() {
        exit::REFUSED
    } else if e.downcast_ref::<Interrupted>().is_some() {
        exit::INTERRUPTED
    } else if e.downcast_ref::<Ambiguous>().is_some() {
        exit::AMBIGUOUS_ROOT
    } else {
        exit::FAILED
    }
}

/// The hint attached to a refusal, if any.
pub fn hint(e: &anyhow::Error) -> Option<&str> {
    e.downcast_ref::<Refusal>().and_then(|r| r.hint.as_deref())
}
