//! lastack: an L4 reverse proxy with its own TCP stack on XDP/AF_XDP.
//!
//! See `DESIGN.md` in the shared folder and the README for the data flow.
//! The product, by module:
//! - [`wire`], [`tcp`]: re-exported from `lastack-core` (zero-copy packet
//!   views; the sans-IO TCP engine), which forbids `unsafe`.
//! - [`link`]: packet I/O (the XDP steering program, AF_XDP sockets).
//! - [`shard`]: one core's loop gluing `link`, `tcp` and what serves each
//!   connection (one slab, keyed by the engine's per-connection tag; one
//!   timer wheel for the deadlines).
//! - [`proxy`]: a session per proxied connection, the close policy, the
//!   PROXY protocol header.
//! - [`upstream`]: the shard's io_uring, backend sockets, pools, balancing,
//!   health.
//! - [`config`]: the TOML schema, loading and validation.
//! - [`runtime`]: one running lastack built from a config (steering,
//!   shards, health checkers, admin endpoint), shared by `lastack run` and
//!   the integration tests.
//! - [`admin`]: metrics (declared once; Prometheus text and JSON).
//!
//! `unsafe` is denied in this crate except in [`link`] and [`upstream`],
//! where every block carries a `// Safety:` comment
//! (`clippy::undocumented_unsafe_blocks` is an error).
#![deny(unsafe_code)]

pub use lastack_core::{pattern, tcp, wire};

pub mod admin;
pub mod config;
#[allow(unsafe_code)]
pub mod link;
pub mod preflight;
pub mod proxy;
pub mod runtime;
pub mod shard;
#[allow(unsafe_code)]
pub mod upstream;
