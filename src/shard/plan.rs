//! What a shard is built from, decided once from the config: one
//! [`ListenerPlan`] per configured listener (every shard serves the same
//! listeners, in config order, so a listener's index is the same
//! everywhere: in the config, in the plans, and in the engine's
//! [`ListenerId`](crate::tcp::ListenerId)), and the shard's own resources
//! ([`ShardPlan`]). The shard thread builds the shard from its plan: the
//! engine, the io_uring and the backend leases are created on, and never
//! leave, that thread.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
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
    pub addr: SocketAddr,
    pub serve: Serve,
    /// A connection idle this long is closed (by lastack, so lastack keeps
    /// the TIME-WAIT). For proxy listeners the policy carries it too.
    pub idle_timeout: Duration,
    /// Most connections open at once on this listener, over every shard.
    pub max_connections: u32,
    /// Its connections open now, over every shard.
    pub open: ListenerCount,
}

/// A listener's open connections, shared by every shard (and kept by name
/// across reloads), so its `max_connections` holds for the process
/// however the NIC spreads connections over queues.
#[derive(Debug, Clone, Default)]
pub struct ListenerCount(Arc<AtomicU32>);

impl PartialEq for ListenerCount {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ListenerCount {}

impl ListenerCount {
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }

    /// One more connection, unless `max` (0: no limit) are open already.
    pub fn lease(&self, max: u32) -> Option<ListenerLease> {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |open| {
                (max == 0 || open < max).then_some(open + 1)
            })
            .ok()?;
        Some(ListenerLease(Arc::clone(&self.0)))
    }
}

/// One open connection counted against its listener until dropped (with
/// its entry: also when a shard thread unwinds).
#[derive(Debug)]
pub struct ListenerLease(Arc<AtomicU32>);

impl Drop for ListenerLease {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The shared count of each listener, by name, for the life of the process.
#[derive(Debug, Default)]
pub struct ListenerCounts(Mutex<BTreeMap<String, ListenerCount>>);

impl ListenerCounts {
    pub fn of(&self, name: &str) -> ListenerCount {
        self.0
            .lock()
            .expect("listener counts lock")
            .entry(name.to_string())
            .or_default()
            .clone()
    }
}

impl ListenerPlan {
    /// The plans of every listener of `config`, sharing `counts`.
    pub fn all(config: &Config, counts: &ListenerCounts) -> Vec<Self> {
        config
            .listeners
            .iter()
            .enumerate()
            .map(|(i, l)| Self {
                name: l.name.clone(),
                addr: SocketAddr::new(*l.vip, l.port),
                serve: match l.service {
                    Service::Echo => Serve::Echo,
                    Service::Discard => Serve::Discard,
                    Service::Source => Serve::Source,
                    Service::Proxy => Serve::Proxy(
                        ProxyPolicy::for_listener(config, i).expect("a proxy listener"),
                    ),
                },
                idle_timeout: *l.idle_timeout,
                max_connections: l.max_connections,
                open: counts.of(&l.name),
            })
            .collect()
    }
}

/// Forwarding segments of flows an ECMP change moved here to the cluster
/// instance that owns them (`[cluster] peers`, docs/cluster.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarding {
    /// This instance's id (in its TSvals).
    pub instance: u8,
    /// This instance's address: the outer source of what it forwards.
    pub address: IpAddr,
    /// The peers' addresses by id.
    pub peers: [Option<IpAddr>; crate::tcp::keys::MAX_INSTANCES as usize],
}

impl Forwarding {
    /// From a validated `[cluster]` table; `None` without peers.
    pub fn from_config(cluster: &crate::config::Cluster) -> Option<Self> {
        if cluster.peers.is_empty() {
            return None;
        }
        let mut peers = [None; crate::tcp::keys::MAX_INSTANCES as usize];
        for peer in &cluster.peers {
            peers[usize::from(peer.id)] = Some(*peer.address);
        }
        Some(Self {
            instance: cluster.instance?,
            address: *cluster.address?,
            peers,
        })
    }

    /// The peers' ids as bits (`1 << id`).
    pub fn peer_mask(&self) -> u16 {
        self.peers
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_some())
            .fold(0, |mask, (id, _)| mask | 1 << id)
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
    /// The cluster's handshake keys (`[cluster] key_file`), if any.
    pub cluster_keys: Option<Vec<Secret>>,
    /// Forwarding to the cluster's other instances, if configured.
    pub forwarding: Option<Forwarding>,
    /// ICMP messages that reached another shard than their flow's; one
    /// for every shard of the runtime.
    pub relay: std::sync::Arc<super::relay::IcmpRelay>,
    /// Forwarded segments that reached another shard than their flow's;
    /// one for every shard of the runtime.
    pub segments: std::sync::Arc<super::relay::SegmentRelay>,
    /// This shard's index among the runtime's, and how many there are.
    pub index: (usize, usize),
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
    /// The cluster's handshake keys now: the first mints, the others are
    /// honoured; `None`: the shard's own key.
    pub cluster_keys: Option<Vec<Secret>>,
    /// Forwarding to the cluster's other instances now.
    pub forwarding: Option<Forwarding>,
}
