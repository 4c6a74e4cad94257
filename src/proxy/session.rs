//! One proxied connection: the client side (a connection of our TCP
//! stack) and the backend side (a kernel socket owned by the shard's
//! io_uring), as four small state machines with named states.
//!
//! # States
//! - [`Leg`], the backend socket: (`WaitingForPort` →) `Connecting` →
//!   `Connected` → `Closed` (released to the io_uring layer, which closes
//!   it; nothing more comes from it).
//! - [`Upload`], client → backend: `Open` → `Shut` (the client's FIN,
//!   after its last byte, became shutdown(SHUT_WR) toward the backend).
//! - [`Download`], backend → client: `Open` → `Ended` (the backend's FIN,
//!   its failure, or our wait for its FIN after ours timed out). Bytes the
//!   client could not take yet stay held in the io_uring slot.
//! - [`Client`], our handle on the client: `Open` → `FinSent` (we
//!   half-closed: `immediate`, or the grace period ended with fallback
//!   `fin`) → `Gone` (closed, aborted, or it was reset).
//!
//! # Transitions
//! | on | when | then |
//! |---|---|---|
//! | accept | a backend can take it | `Leg::Connecting` |
//! | accept, connect failed | no backend left (retries spent, all down) | RST client: `Client::Gone`, `Leg::Closed` |
//! | connected | | `Leg::Connected`; the PROXY header, if any, goes first |
//! | no source port ready, or others waiting | | `Leg::WaitingForPort` in the pool's line (first come, first served): the first retries every 20 ms, the next is woken when it leaves; RST at `connect_timeout` |
//! | connect failed `EADDRNOTAVAIL` | port retries left | same backend, next source port |
//! | connect failed, a local error (no port, no descriptor, no memory) | | RST to the client; the backend's health is untouched |
//! | connect failed | attempts left | passive health failure; next backend |
//! | connected | | passive health success |
//! | client bytes | `Upload::Open`, connected, outbox empty | into the outbox, sent |
//! | client FIN | all its bytes sent | shutdown(SHUT_WR): `Upload::Shut`, wait for the backend's FIN until `backend_wait`; with `backend_close = "reset"` and all of them acknowledged: RST, `Leg::Closed` |
//! | backend bytes | | to the client as its buffer takes them (backpressure) |
//! | backend FIN | | `Download::Ended` |
//! | backend error | | RST client (`Client::Gone`), `Download::Ended` |
//! | `Download::Ended`, nothing held | the client closed first | close: CLOSE-WAIT → LAST-ACK, `Client::Gone` (the client keeps TIME-WAIT) |
//! | `Download::Ended`, nothing held | `immediate` | FIN to the client: `Client::FinSent` |
//! | `Download::Ended`, nothing held | `client-first` | hold our FIN until `grace` |
//! | `grace` passes | `Client::Open` | fallback `fin` → `FinSent`; `reset` → RST, `Gone` |
//! | `backend_wait` passes | `Download::Open` | `Download::Ended` |
//! | idle timeout passes | client not gone, no activity | close the client: `Client::Gone` |
//! | `fin_timeout` passes | `Client::FinSent`, no activity | RST the client: `Client::Gone` (no FIN-WAIT-2 for ever) |
//! | client reset | | `Client::Gone`; the backend socket is reset (`SO_LINGER` 0) |
//! | client gone | connected, `Upload::Open`, no send in flight | shutdown(SHUT_WR): `Upload::Shut` |
//! | `Download::Ended` and (`Upload::Shut` or client gone); or client gone before connected | | release the socket: `Leg::Closed` |
//! | `Client::Gone` and `Leg::Closed` | | the session is finished |

use std::time::Duration;

use crate::tcp::{ConnId, Instant};
use crate::upstream::lease::BackendLease;
use crate::upstream::ports::WaitTicket;
use crate::upstream::uring::SocketId;

use super::{PoolRef, ProxyPolicy};

/// The backend socket's life.
#[derive(Debug)]
pub enum Leg {
    /// No source port ready (all in use, resting, or spread), or others
    /// were waiting first: in line (`ticket`); the first tries again at
    /// `retry_at`, the others when woken; gives up (RST to the client) at
    /// `until`.
    WaitingForPort {
        lease: BackendLease,
        ticket: WaitTicket,
        retry_at: Instant,
        until: Instant,
    },
    /// connect() in flight.
    Connecting {
        socket: SocketId,
        lease: BackendLease,
    },
    /// Connected: bytes flow.
    Connected {
        socket: SocketId,
        lease: BackendLease,
    },
    /// Released to the io_uring layer (closing or closed), or never
    /// opened: nothing more comes from the backend.
    Closed,
}

impl Leg {
    /// The socket, while it serves this session.
    pub fn socket(&self) -> Option<SocketId> {
        match self {
            Leg::Connecting { socket, .. } | Leg::Connected { socket, .. } => Some(*socket),
            Leg::WaitingForPort { .. } | Leg::Closed => None,
        }
    }

    /// The socket, once connected.
    pub fn connected(&self) -> Option<SocketId> {
        match self {
            Leg::Connected { socket, .. } => Some(*socket),
            _ => None,
        }
    }
}

/// Client → backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    Open,
    /// The client's FIN was passed on.
    Shut,
}

/// Backend → client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Download {
    Open,
    /// Nothing more comes from the backend (held bytes still go out).
    Ended,
}

/// Our handle on the client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Open,
    /// We sent FIN (half-close); the client may still send.
    FinSent,
    /// Released: closed, aborted, or reset.
    Gone,
}

/// Backends tried and connect attempts made for this connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attempts {
    /// Bit i: backend i was tried.
    pub tried: u64,
    /// Connects to distinct backends so far (retries are those after the
    /// first).
    pub backends: u32,
    /// Connects retried on another source port because the 4-tuple was
    /// still in TIME-WAIT.
    pub ports: u32,
}

/// One proxied connection.
#[derive(Debug)]
pub struct Session {
    /// The shard's key for this session: the engine's tag of the client
    /// connection and the owner of the backend socket.
    pub key: u64,
    /// The client connection in the engine (its four-tuple, the client's
    /// address and the VIP, is the engine's: `Stack::tuple`).
    pub client: ConnId,
    pub policy: ProxyPolicy,
    /// The pool it connects through (the one current when it started).
    pub pool: PoolRef,
    pub leg: Leg,
    pub upload: Upload,
    pub download: Download,
    pub client_state: Client,
    pub attempts: Attempts,
    /// The backend chosen last (for passive health).
    pub backend: usize,
    /// client-first: our FIN is held until then.
    pub grace: Option<Instant>,
    /// After our FIN to the backend, its FIN is awaited until then.
    pub backend_wait: Option<Instant>,
    /// When data last moved either way.
    pub last_active: Instant,
    /// When the idle timeout is checked next (moved forward lazily, at
    /// expiry, so activity never touches the timer wheel).
    pub idle_check: Instant,
}

impl Session {
    pub fn new(key: u64, client: ConnId, policy: ProxyPolicy, pool: PoolRef, now: Instant) -> Self {
        Self {
            key,
            client,
            policy,
            pool,
            leg: Leg::Closed,
            upload: Upload::Open,
            download: Download::Open,
            client_state: Client::Open,
            attempts: Attempts::default(),
            backend: 0,
            grace: None,
            backend_wait: None,
            last_active: now,
            idle_check: now + policy.idle_timeout,
        }
    }

    /// Both sides are done: the session can go.
    pub fn finished(&self) -> bool {
        self.client_state == Client::Gone && matches!(self.leg, Leg::Closed)
    }

    /// How long the client may stay quiet: `idle_timeout`, or
    /// `fin_timeout` once half-closed (our FIN sent).
    pub fn quiet_limit(&self) -> Duration {
        match self.client_state {
            Client::FinSent => self.policy.fin_timeout.min(self.policy.idle_timeout),
            _ => self.policy.idle_timeout,
        }
    }

    /// Our FIN goes to the client: from now on it has `fin_timeout` to
    /// finish (or move data).
    pub fn fin_sent(&mut self, now: Instant) {
        self.client_state = Client::FinSent;
        self.idle_check = self.idle_check.min(now + self.quiet_limit());
    }

    /// How long after our FIN to the backend we wait for its own.
    pub fn backend_wait_for(&self) -> Duration {
        self.policy.close_grace.max(Duration::from_secs(1))
    }

    /// The earliest deadline still relevant: the idle check while the
    /// client is there, the grace period while our FIN is held, the wait
    /// for the backend's FIN while it is awaited.
    pub fn deadline(&self) -> Option<Instant> {
        if let Leg::WaitingForPort { retry_at, .. } = self.leg {
            return Some(retry_at);
        }
        let idle = (self.client_state != Client::Gone).then_some(self.idle_check);
        let grace = self.grace.filter(|_| self.client_state == Client::Open);
        let backend = self
            .backend_wait
            .filter(|_| self.download == Download::Open && self.leg.socket().is_some());
        [idle, grace, backend].into_iter().flatten().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClosePolicy, GraceFallback};

    fn session() -> Session {
        let policy = ProxyPolicy {
            pool: 0,
            close_policy: ClosePolicy::ClientFirst,
            close_grace: Duration::from_millis(400),
            grace_fallback: GraceFallback::Fin,
            idle_timeout: Duration::from_secs(300),
            fin_timeout: Duration::from_secs(60),
        };
        let addr: std::net::SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let now = Instant::from_micros(1_000_000);
        let mut stack = crate::tcp::Stack::new(Default::default(), crate::tcp::Secret([1; 16]), 4);
        let peer = "10.0.0.2:80".parse().unwrap();
        let id = stack
            .connect(now, addr, peer, [0; 16], crate::tcp::Tag(0))
            .unwrap();
        let config: crate::config::Config = crate::config::parse(
            "[[interfaces]]\nname = \"x\"\n[[listeners]]\nname = \"l\"\nvip = \"10.0.0.1\"\nport = 80\npool = \"p\"\n[[pools]]\nname = \"p\"\n[[pools.backends]]\naddress = \"10.0.0.2:80\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let board = std::sync::Arc::new(crate::upstream::pool::HealthBoard::new(&config.pools));
        let pool = crate::upstream::pool::ShardPool::new(
            0,
            &config.pools[0],
            &board,
            (0, 1),
            &Default::default(),
            &Default::default(),
            None,
        );
        let pool = std::rc::Rc::new(std::cell::RefCell::new(pool));
        Session::new(0, id, policy, pool, now)
    }

    #[test]
    fn the_deadline_follows_the_states() {
        let mut s = session();
        let start = Instant::from_micros(1_000_000);
        assert_eq!(s.deadline(), Some(start + Duration::from_secs(300)), "idle");
        s.grace = Some(start + Duration::from_millis(400));
        assert_eq!(s.deadline(), s.grace, "grace is earlier");
        s.fin_sent(start + Duration::from_secs(1));
        assert_eq!(
            s.deadline(),
            Some(start + Duration::from_secs(61)),
            "the grace period is over once our FIN went; fin_timeout runs"
        );
        s.client_state = Client::Gone;
        assert_eq!(s.deadline(), None, "nothing to wait for");
        assert!(s.finished(), "client gone, no socket");
    }
}
