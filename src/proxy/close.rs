//! Ending a session (step 4): the close policy on the client side, the
//! grace period, and the backend socket's end (see the transition table in
//! [`super::session`]).

use super::session::{Client, Download, Leg, Session, Upload};
use super::Proxy;
use crate::config::{BackendClose, ClosePolicy, GraceFallback};
use crate::tcp::{Instant, Stack};
use crate::upstream::uring::{Release, SocketId};

impl Proxy {
    /// Once the backend has finished and all its bytes are queued to the
    /// client: close after the client (client-first), FIN at once
    /// (immediate), or hold our FIN until the grace period ends.
    pub(super) fn close_client_side(&mut self, stack: &mut Stack, now: Instant, s: &mut Session) {
        if s.download != Download::Ended || s.client_state == Client::Gone {
            return;
        }
        if s.leg
            .socket()
            .is_some_and(|socket| self.uring.holds_received(socket))
        {
            return;
        }
        if stack.peer_closed(s.client) && stack.readable(s.client) == 0 {
            if s.client_state == Client::Open {
                self.stats.client_closed_first += 1;
            }
            // CLOSE-WAIT → LAST-ACK: the client keeps TIME-WAIT.
            let _ = stack.close(now, s.client);
            s.client_state = Client::Gone;
        } else if s.client_state == Client::Open {
            match s.policy.close_policy {
                ClosePolicy::Immediate => {
                    s.fin_sent(now);
                    let _ = stack.shutdown(now, s.client);
                }
                ClosePolicy::ClientFirst => {
                    s.grace.get_or_insert(now + s.policy.close_grace);
                }
            }
        }
    }

    /// client-first: the grace period ended without the client's FIN.
    pub(super) fn expire_grace(&mut self, stack: &mut Stack, now: Instant, s: &mut Session) {
        if s.grace.is_none_or(|at| now < at) || s.client_state != Client::Open {
            return;
        }
        self.stats.grace_expired += 1;
        match s.policy.grace_fallback {
            GraceFallback::Fin => {
                s.fin_sent(now);
                let _ = stack.shutdown(now, s.client);
            }
            GraceFallback::Reset => {
                let _ = stack.abort(now, s.client);
                s.client_state = Client::Gone;
            }
        }
    }

    /// The backend socket: released once both directions are done, or when
    /// the client went away before it connected; when the client went away
    /// after, our FIN goes to the backend and its own is awaited (bounded).
    pub(super) fn finish_leg(&mut self, now: Instant, s: &mut Session) {
        let gone = s.client_state == Client::Gone;
        match s.leg {
            Leg::Closed => {}
            Leg::WaitingForPort { .. } | Leg::Connecting { .. } => {
                if gone {
                    self.release_leg(s, Release::Close);
                }
            }
            Leg::Connected { socket, .. } => {
                if s.download == Download::Ended && (s.upload == Upload::Shut || gone) {
                    self.release_leg(s, Release::Close);
                } else if gone && s.upload == Upload::Open && !self.uring.sending(socket) {
                    self.shut_upload(now, s, socket);
                }
            }
        }
    }

    /// Nothing more goes to the backend: our FIN, whose answer is awaited
    /// until `backend_wait`, and which leaves this host the TIME-WAIT of
    /// the 4-tuple. With `backend_close = "reset"`, a backend that has
    /// acknowledged every byte and not finished yet is reset instead: no
    /// TIME-WAIT here, its source port is free again at once. (What the
    /// backend sends after that is lost: the option is for protocols where
    /// the client's end means the exchange is over, like HAProxy's
    /// `option nolinger`.)
    pub(super) fn shut_upload(&mut self, now: Instant, s: &mut Session, socket: SocketId) {
        s.upload = Upload::Shut;
        let reset = s.pool.borrow().backend_close == BackendClose::Reset
            && s.download == Download::Open
            && !self.uring.holds_received(socket)
            && self.uring.unacknowledged(socket) == Some(0);
        if reset {
            self.stats.backend_closed_with_reset += 1;
            s.download = Download::Ended;
            self.release_leg(s, Release::Reset);
        } else {
            if s.download == Download::Open {
                self.leaves_time_wait(socket);
            }
            s.backend_wait = Some(now + s.backend_wait_for());
            self.uring.shutdown_write(socket);
        }
    }

    /// The backend reset or failed mid-stream: RST to the client.
    pub(super) fn backend_failed(&mut self, stack: &mut Stack, now: Instant, s: &mut Session) {
        s.download = Download::Ended;
        if s.client_state != Client::Gone {
            self.stats.backend_resets += 1;
            let _ = stack.abort(now, s.client);
            s.client_state = Client::Gone;
        }
        self.release_leg(s, Release::Close);
    }
}
