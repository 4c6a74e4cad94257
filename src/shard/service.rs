//! In-process services on the accept queue, selectable per listener: echo,
//! discard and source (for tests and benchmarks; the proxy replaces them).
//! Each respects backpressure: it moves only what the send buffer takes,
//! and is pumped again on the connection's next event (Readable when data
//! arrives, Writable when a full send buffer drains, PeerClosed).

use crate::config::Service;
use crate::tcp::{ConnId, Instant, Stack};

/// A connection being served.
#[derive(Debug, Clone, Copy)]
pub struct Served {
    pub id: ConnId,
    pub service: Service,
    /// Bytes sent by `source` so far.
    pub sent: u64,
    /// We closed our side (the handle is gone from then on).
    pub shut: bool,
    /// Last time data moved (for the listener's idle timeout).
    pub last_active: Instant,
}

/// The byte at offset `i` of what `source` sends.
pub fn source_byte(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// Moves data for one connection; returns true if anything moved.
pub fn pump(stack: &mut Stack, now: Instant, served: &mut Served, scratch: &mut [u8]) -> bool {
    let id = served.id;
    let mut moved = false;
    match served.service {
        Service::Proxy => {
            // The proxy is not built yet (`lastack run` refuses such
            // listeners); a connection here gets a clean reset, never a hang.
            let _ = stack.abort(now, id);
            served.shut = true;
            return true;
        }
        Service::Echo => loop {
            let room = stack.send_capacity(id).min(scratch.len());
            if room == 0 {
                break;
            }
            let n = stack.recv(now, id, &mut scratch[..room]).unwrap_or(0);
            if n == 0 {
                break;
            }
            let _ = stack.send(now, id, &scratch[..n]);
            moved = true;
        },
        Service::Discard => loop {
            let n = stack.recv(now, id, scratch).unwrap_or(0);
            if n == 0 {
                break;
            }
            moved = true;
        },
        Service::Source => {
            while stack.recv(now, id, scratch).unwrap_or(0) > 0 {}
            // Fill the send buffer: a full buffer brings a Writable event
            // once the peer has taken half of it.
            while !served.shut {
                let room = stack.send_capacity(id).min(scratch.len());
                if room == 0 {
                    break;
                }
                for (k, byte) in scratch[..room].iter_mut().enumerate() {
                    *byte = source_byte(served.sent + k as u64);
                }
                let n = stack.send(now, id, &scratch[..room]).unwrap_or(0);
                if n == 0 {
                    break;
                }
                served.sent += n as u64;
                moved = true;
            }
        }
    }
    if moved {
        served.last_active = now;
    }
    // Once the peer has closed and everything is echoed or read, close
    // our side too: the client closed first, we never hold TIME-WAIT.
    if !served.shut && stack.peer_closed(id) && stack.readable(id) == 0 {
        let _ = stack.close(now, id);
        served.shut = true;
        moved = true;
    }
    moved
}
