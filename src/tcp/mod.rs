//! The TCP engine (RFC 9293), sans-IO.
//!
//! It never touches a socket, a clock or an RNG: time ([`Instant`]) and
//! secrets ([`Secret`]) are passed in.

pub mod assembler;
pub mod congestion;
pub mod isn;
pub mod ring;
pub mod rtt;
pub mod seq;
pub mod time;

pub use isn::Secret;
pub use seq::Seq;
pub use time::Instant;
