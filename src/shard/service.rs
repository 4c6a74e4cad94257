//! In-process services, selectable per listener: echo, discard and source
//! (for tests and benchmarks; the proxy replaces them). Each respects
//! backpressure: it moves only what the send buffer takes, and runs again
//! on the connection's next event (`Readable` when data arrives,
//! `Writable` when a full send buffer drains, `PeerClosed`).

use std::time::Duration;

use crate::pattern;
use crate::proxy::Step;
use crate::tcp::{ConnId, Instant, Stack};

/// Which service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Echo,
    Discard,
    Source,
}

/// A connection served in-process.
#[derive(Debug, Clone, Copy)]
pub struct Local {
    pub id: ConnId,
    pub kind: Kind,
    /// Bytes sent by `source` so far.
    pub sent: u64,
    /// When data last moved.
    pub last_active: Instant,
    pub idle_timeout: Duration,
    /// When the idle timeout is checked next (moved lazily, at expiry).
    pub idle_check: Instant,
}

impl Local {
    pub fn new(id: ConnId, kind: Kind, idle_timeout: Duration, now: Instant) -> Self {
        Self {
            id,
            kind,
            sent: 0,
            last_active: now,
            idle_timeout,
            idle_check: now + idle_timeout,
        }
    }

    /// Moves data for the connection; once the peer has closed and
    /// everything is echoed or read, closes our side too (the client
    /// closed first: we never hold TIME-WAIT).
    pub fn pump(&mut self, stack: &mut Stack, now: Instant, scratch: &mut [u8]) -> Step {
        let moved = match self.kind {
            Kind::Echo => echo(stack, now, self.id, scratch),
            Kind::Discard => discard(stack, now, self.id, scratch),
            Kind::Source => {
                discard(stack, now, self.id, scratch);
                self.source(stack, now, scratch)
            }
        };
        if moved {
            self.last_active = now;
        }
        if stack.peer_closed(self.id) && stack.readable(self.id) == 0 {
            let _ = stack.close(now, self.id);
            return Step::Finished;
        }
        Step::Continue
    }

    /// Fills the send buffer with the test stream: a full buffer brings a
    /// `Writable` event once the peer has taken half of it.
    fn source(&mut self, stack: &mut Stack, now: Instant, scratch: &mut [u8]) -> bool {
        let mut moved = false;
        loop {
            let room = stack.send_capacity(self.id).min(scratch.len());
            if room == 0 {
                return moved;
            }
            pattern::fill(0, self.sent, &mut scratch[..room]);
            let n = stack.send(now, self.id, &scratch[..room]).unwrap_or(0);
            if n == 0 {
                return moved;
            }
            self.sent += n as u64;
            moved = true;
        }
    }

    /// The idle check came due: closes the connection (lastack sends FIN
    /// first and will hold the TIME-WAIT) if it was idle all along.
    pub fn on_timeout(&mut self, stack: &mut Stack, now: Instant) -> Step {
        if now - self.last_active >= self.idle_timeout {
            let _ = stack.close(now, self.id);
            return Step::Finished;
        }
        self.idle_check = self.last_active + self.idle_timeout;
        Step::Continue
    }
}

fn echo(stack: &mut Stack, now: Instant, id: ConnId, scratch: &mut [u8]) -> bool {
    let mut moved = false;
    loop {
        let room = stack.send_capacity(id).min(scratch.len());
        if room == 0 {
            return moved;
        }
        let n = stack.recv(now, id, &mut scratch[..room]).unwrap_or(0);
        if n == 0 {
            return moved;
        }
        let _ = stack.send(now, id, &scratch[..n]);
        moved = true;
    }
}

fn discard(stack: &mut Stack, now: Instant, id: ConnId, scratch: &mut [u8]) -> bool {
    let mut moved = false;
    while stack.recv(now, id, scratch).unwrap_or(0) > 0 {
        moved = true;
    }
    moved
}
