//! The migration's state, below everything that acts on it: the pure transition core (steps,
//! events, what abort/resume may do, which copy a boot uses) and the journal that records the
//! step on disk (its format frozen: the initrd's rootshift may be older or newer), including the
//! install step's record; and the small boot-time files the initrd hook reads and writes
//! (`bootconf`: whether it wraps the root; `bootrecord`: what it did). No backend, no boot
//! finalisation, no driver in here.

pub mod bootconf;
pub mod bootrecord;
pub mod core;
pub mod journal;
pub mod persisted;
pub mod token;
