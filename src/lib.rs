//! lastack: an L4 reverse proxy with its own TCP stack on XDP/AF_XDP.
//!
//! See `DESIGN.md` in the shared folder and the README for the data flow.
//! Module boundaries:
//! - [`wire`]: zero-copy packet views; no allocation, no I/O.
//! - [`config`]: the TOML schema, loading and validation.
//! - [`link`]: packet I/O (the XDP steering program and, later, AF_XDP).

pub mod config;
pub mod link;
pub mod shard;
pub mod tcp;
pub mod wire;
