//! What a shard is built from, decided once from the config: one
//! [`ListenerPlan`] per configured listener (every shard serves the same
//! listeners, in config order, so a listener's index is the same
//! everywhere: in the config, in the plans, and in the engine's
//! [`ListenerId`](crate::tcp::ListenerId)), and the shard's own resources
//! ([`ShardPlan`]). The shard thread builds the shard from its plan: the
//! engine, the io_uring and the backend leases are created on, and never
//! leave, that thread.

use std::net::SocketAddrV4;
use std::time::Duration;

use crate::config::{Config, Service};
use crate::link::xsk::XskSocket;
use crate::proxy::{ProxyPolicy, UpstreamPlan};
use crate::tcp::{Refuse, Secret, TcpConfig};

/// What serves a listener's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    /// Echo every byte back (tests and benchmarks).
    Echo,
    /// Read and drop everything.
    Discard,
    /// Send the test stream ([`crate::pattern`]) until the client closes.
    Source,
    /// Forward to a backend.
    Proxy(ProxyPolicy),
}

impl Serve {
    /// The in-process service, if this is one (not a proxy).
    pub fn local_kind(self) -> Option<super::service::Kind> {
        use super::service::Kind;
        match self {
            Serve::Echo => Some(Kind::Echo),
            Serve::Discard => Some(Kind::Discard),
            Serve::Source => Some(Kind::Source),
            Serve::Proxy(_) => None,
        }
    }
}

/// One listener, as every shard serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerPlan {
    /// The listener's name in the config: a reload matches listeners by it.
    pub name: String,
    pub addr: SocketAddrV4,
    pub serve: Serve,
    /// A connection idle this long is closed (by lastack, so lastack keeps
    /// the TIME-WAIT). For proxy listeners the policy carries it too.
    pub idle_timeout: Duration,
}

impl ListenerPlan {
    /// The plans of every listener of `config`, for `shards` shards.
    pub fn all(config: &Config, shards: usize) -> Vec<Self> {
        config
            .listeners
            .iter()
            .enumerate()
            .map(|(i, l)| Self {
                name: l.name.clone(),
                addr: SocketAddrV4::new(*l.vip, l.port),
                serve: match l.service {
                    Service::Echo => Serve::Echo,
                    Service::Discard => Serve::Discard,
                    Service::Source => Serve::Source,
                    Service::Proxy => Serve::Proxy(
                        ProxyPolicy::for_listener(config, i, shards).expect("a proxy listener"),
                    ),
                },
                idle_timeout: *l.idle_timeout,
            })
            .collect()
    }
}

/// Everything one shard is built from.
pub struct ShardPlan {
    /// The AF_XDP socket of the shard's rx queue.
    pub socket: XskSocket,
    pub tcp: TcpConfig,
    /// Keys the shard's ISNs, cookies and timestamp offsets.
    pub secret: Secret,
    /// Connections the engine holds at most.
    pub max_connections: usize,
    pub listeners: Vec<ListenerPlan>,
    /// After work, keep polling this long before sleeping.
    pub busy_poll: Duration,
    /// The backend leg, if a listener proxies (without it, connections of
    /// proxy listeners are reset).
    pub upstream: Option<UpstreamPlan>,
    /// What new connection attempts get while the shard drains.
    pub drain_refuse: Refuse,
    /// The config generation it starts with.
    pub generation: u64,
}

/// What a reload changes in a running shard (applied between two batches).
#[derive(Debug, Clone)]
pub struct ShardUpdate {
    /// Which reload this is (0 at start); the shard publishes the one it
    /// runs, so a caller can tell when every shard has taken it.
    pub generation: u64,
    /// Every listener now: matched to the running ones by name; new ones
    /// open, missing ones close (their connections finish).
    pub listeners: Vec<ListenerPlan>,
    pub tcp: TcpConfig,
    /// Connections the engine holds at most.
    pub max_connections: usize,
    /// The pools and health board now (`None`: no listener proxies).
    pub upstream: Option<UpstreamPlan>,
    pub drain_refuse: Refuse,
}
