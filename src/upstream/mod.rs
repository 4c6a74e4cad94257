//! The backend side: the shard's io_uring driver ([`uring`]), backend
//! sockets ([`socket`]) and their source ports ([`ports`]), the leases a
//! connection holds on them ([`lease`]), pools and
//! balancing ([`pool`], [`balance`]), health ([`health`], [`checker`]).

pub mod balance;
pub mod checker;
pub mod health;
pub mod host;
pub mod lease;
pub mod pool;
pub mod ports;
pub mod socket;
pub mod uring;
