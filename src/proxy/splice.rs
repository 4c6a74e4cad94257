//! Moving bytes both ways (session step 3), with backpressure:
//! - client → backend: what the client sent is read into the backend
//!   socket's outbox only when the outbox is empty, and one send is in
//!   flight at a time: a slow backend leaves the bytes in our stack, whose
//!   receive window then closes on the client;
//! - backend → client: a receive is armed only while the client's send
//!   buffer has room, limited to that room (a multishot receive with a
//!   byte limit while at least half is free, one buffer at a time below
//!   that, none when full: the client's `Writable` event brings us back).
//!   Received bytes the client cannot take yet stay held in the socket's
//!   slot and no receive is armed meanwhile, so the backend's socket
//!   buffer fills and its window closes.

use super::session::{Client, Download, Session, Upload};
use super::Proxy;
use crate::tcp::{Instant, Stack};
use crate::upstream::uring::{Receive, SocketId};

impl Proxy {
    /// Client → backend.
    pub(super) fn pump_upload(&mut self, stack: &mut Stack, now: Instant, s: &mut Session) {
        let Some(socket) = s.leg.connected() else {
            return;
        };
        if s.upload != Upload::Open || s.client_state == Client::Gone {
            return;
        }
        // `None` while a send is in flight.
        let Some(pending) = self.uring.fill_outbox(socket, |buffer| {
            stack.recv(now, s.client, buffer).unwrap_or(0)
        }) else {
            return;
        };
        if pending > 0 {
            self.uring.send(socket);
            s.last_active = now;
        } else if stack.peer_closed(s.client) && stack.readable(s.client) == 0 {
            // The client's FIN, after all its bytes: pass it on.
            self.shut_upload(now, s, socket);
        }
    }

    /// Backend → client: flush what is held, then keep a receive armed
    /// while the client keeps up.
    pub(super) fn pump_download(&mut self, stack: &mut Stack, now: Instant, s: &mut Session) {
        let Some(socket) = s.leg.connected() else {
            return;
        };
        self.flush_to_client(stack, now, s, socket);
        if self.uring.holds_received(socket) {
            // The client is short of room: stop reading until it has some.
            self.uring.cancel_receive(socket);
            return;
        }
        if s.download != Download::Open {
            return;
        }
        let gone = s.client_state == Client::Gone;
        let room = stack.send_capacity(s.client);
        let half = stack.send_buffer_size(s.client) / 2;
        if !self.uring.receiving(socket) {
            if gone {
                // Only the backend's FIN matters now (what comes is dropped).
                self.uring.receive(socket, Receive::Once);
            } else if room >= half {
                let limit = room.min(u32::MAX as usize) as u32;
                self.uring.receive(socket, Receive::Multishot { limit });
            } else if room > 0 {
                self.uring.receive(socket, Receive::Once);
            }
        } else if !gone && room < half && !self.uring.limits_supported() {
            // Without a kernel limit, what a multishot receive pulls in
            // before its cancel lands must fit the remaining room.
            self.uring.cancel_receive(socket);
        }
    }

    /// Queues held backend bytes to the client as far as its send buffer
    /// takes them; drops them if the client can take nothing more.
    fn flush_to_client(
        &mut self,
        stack: &mut Stack,
        now: Instant,
        s: &mut Session,
        socket: SocketId,
    ) {
        loop {
            let chunk = self.uring.received(socket);
            let len = chunk.len();
            if len == 0 {
                return;
            }
            if s.client_state == Client::Gone {
                self.uring.consume(socket, len);
                continue;
            }
            match stack.send(now, s.client, chunk) {
                Ok(0) => return,
                Ok(n) => {
                    self.stats.bytes_to_client += n as u64;
                    s.last_active = now;
                    self.uring.consume(socket, n);
                    if n < len {
                        return;
                    }
                }
                // The client closed its receive side or is gone.
                Err(_) => self.uring.consume(socket, len),
            }
        }
    }
}
