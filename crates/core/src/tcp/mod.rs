//! The TCP engine (RFC 9293), sans-IO.
//!
//! It never touches a socket, a clock or an RNG: time ([`Instant`]) and
//! secrets ([`Secret`]) are passed in; segments come in parsed by `wire`
//! and go out written into the caller's buffer. [`Stack`] is the entry
//! point and documents the polling order.
//!
//! Files by concern: `seq` (sequence arithmetic), `isn` (RFC 6528),
//! `cookie` (RFC 4987), `keys` (the keys and clock handshakes share in a cluster), `rtt` (RFC 6298), `congestion` (RFC 5681/6582, 9438, 9406),
//! `scoreboard` (RFC 6675 SACK loss recovery),
//! `pool`, `ring` and `assembler` (buffer memory, buffers and reassembly), `conn/input` (segment
//! arrival), `conn/output` (what to send), `conn/timers`, `listener`,
//! `time_wait`, `stack` (demultiplexing and the application API).

pub mod assembler;
pub mod config;
pub mod congestion;
mod conn;
pub mod cookie;
pub mod isn;
pub mod keys;
pub mod listener;
pub mod pool;
pub mod ring;
pub mod rtt;
pub mod scoreboard;
pub mod seq;
pub mod stack;
pub mod stats;
pub mod time;
pub mod time_wait;
pub mod timer_wheel;
mod transition;
pub mod types;

pub use config::{AlgorithmKind, CookieMode, EcnMode, TcpConfig};
pub use isn::Secret;
pub use keys::HandshakeKeys;
pub use listener::Refuse;
pub use seq::Seq;
pub use stack::{Disposition, IcmpOutcome, Stack, Transmit};
pub use stats::Stats;
pub use time::Instant;
pub use types::{
    BbrInfo, CommandError, ConnId, ConnInfo, Endpoint, Event, FourTuple, ListenerId, ResetCause,
    Route, State, Tag,
};
