//! A listening endpoint (RFC 9293 LISTEN) with its two bounded queues:
//! the SYN queue (half-open connections in SYN-RECEIVED, counted here and
//! held as connections in the stack) and the accept queue (established
//! connections the application has not taken yet).

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::types::ConnId;

/// What a closed listener does with new connection attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refuse {
    /// Answer with RST (the client fails at once).
    Reset,
    /// Drop silently (the client retransmits its SYN; useful while a
    /// router withdraws the address and another instance takes over).
    Drop,
}

/// One listener.
#[derive(Debug)]
pub struct Listener {
    pub addr: SocketAddr,
    /// Closed: no new connections (a drain, or removed by a reload); the
    /// ones it already has go on.
    pub closed: Option<Refuse>,
    /// Half-open connections now in SYN-RECEIVED.
    pub syn_queue_len: usize,
    pub syn_backlog: usize,
    pub accept_queue: VecDeque<ConnId>,
    pub accept_backlog: usize,
}

impl Listener {
    pub fn new(addr: SocketAddr, syn_backlog: usize, accept_backlog: usize) -> Self {
        Self {
            addr,
            closed: None,
            syn_queue_len: 0,
            syn_backlog,
            accept_queue: VecDeque::new(),
            accept_backlog,
        }
    }

    pub fn syn_queue_full(&self) -> bool {
        self.syn_queue_len >= self.syn_backlog
    }

    pub fn accept_queue_full(&self) -> bool {
        self.accept_queue.len() >= self.accept_backlog
    }
}
