//! rootshift
