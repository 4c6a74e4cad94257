//! lastack's test kit, shared by the integration tests, the demo and the
//! benchmarks:
//! - [`captured`]: frames captured from a real Linux exchange (literal
//!   vectors for the wire, BPF and bench code);
//! - [`sim`]: two TCP stacks on a virtual clock over a seeded lossy link
//!   (the simulation `Pair`);
//! - [`link`]: a TUN device and an `AF_PACKET` socket, for putting the
//!   engine and exact frames in front of the Linux kernel.
//!
//! `unsafe` is denied here except in [`link`] (each block with a
//! `// Safety:` comment).
#![deny(unsafe_code)]

pub mod captured;
#[allow(unsafe_code)]
pub mod link;
pub mod sim;
