//! The TCP state machine one behaviour at a time (after smoltcp's
//! `socket/tcp.rs` tests): our `Stack` on one side, the peer played by hand
//! with `send!` and checked with `recv!` against template segments. Every
//! segment crosses as bytes with checksums verified.

#[macro_use]
#[path = "tcp_states/harness.rs"]
mod harness;

#[path = "tcp_states"]
mod states {
    mod close;
    mod cluster;
    mod cookies;
    mod ecn;
    mod established;
    mod handshake;
    mod pmtu;
    mod sack;
    mod security;
    mod spurious_rto;
    mod time_wait;
    mod worked_example;
}
