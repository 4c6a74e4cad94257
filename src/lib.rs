//! lastack: an L4 reverse proxy with its own TCP stack on XDP/AF_XDP.
//!
//! See `DESIGN.md` in the shared folder and the README for the data flow.
//! Module boundaries:
//! - [`wire`]: zero-copy packet views; no allocation, no I/O.
//! - [`tcp`]: the sans-IO TCP engine; never a socket, a clock or an RNG.
//! - [`link`]: packet I/O (the XDP steering program, AF_XDP, TUN, raw).
//! - [`shard`]: one core's loop gluing `link`, `tcp` and the services.
//! - [`proxy`]: the backend side (so far the PROXY protocol header).
//! - [`upstream`]: backend pools (so far the balancing algorithms).
//! - [`config`]: the TOML schema, loading and validation.

pub mod admin;
pub mod churn;
pub mod config;
pub mod demo;
pub mod link;
pub mod proxy;
pub mod shard;
pub mod tcp;
pub mod upstream;
pub mod wire;
