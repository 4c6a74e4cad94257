//! lastack's tools, offered by the `lastack` binary as subcommands:
//! - [`churn`]: `lastack churn`, a connection-churn load generator for any
//!   TCP service, and `lastack backend`, the backend server of the demo
//!   and the benchmarks;
//! - [`demo`]: `lastack demo`, the proxy in front of three backends in
//!   network namespaces, driven by churn.
//!
//! Kernel sockets only, through safe wrappers: this crate forbids `unsafe`.
#![forbid(unsafe_code)]

pub mod churn;
pub mod demo;
pub mod metrics;
pub mod net;
