//! lastack's core: what can be written without I/O.
//!
//! - [`wire`]: zero-copy packet views and reprs (Ethernet, ARP, IPv4, TCP
//!   and its options, the Internet checksum); no allocation, no I/O.
//! - [`tcp`]: the sans-IO TCP engine (RFC 9293 and friends): it never
//!   touches a socket, a clock or an RNG; time and secrets are passed in.
//! - [`pattern`]: the test byte stream (the `source` service, the tests).
//!
//! This crate forbids `unsafe` and has no I/O dependency: both rules are
//! enforced by the compiler, not by review.
#![forbid(unsafe_code)]

pub mod pattern;
pub mod slots;
pub mod tcp;
pub mod wire;
