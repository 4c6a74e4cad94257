//! Backend pools at run time: the health every shard reads
//! ([`HealthBoard`], shared), and each shard's own view of a pool
//! ([`ShardPool`]: balancing state, open connections per backend, source
//! addresses and their port queues).

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::balance::{least_connections, BackendState, Maglev, RoundRobin};
use super::health::{Health, Transition};
use super::host::{HostTcp, TIME_WAIT_REST};
use super::lease::{BackendCount, BackendLease, Source, SourcePort, Sources};
use super::ports::{Line, PortLine, PortQueue, Woken};
use crate::config::{BackendClose, Balance, Pool, ProxyProtocol};

/// One backend's health, shared by the shards and the checker.
#[derive(Debug)]
pub struct BackendHealth {
    pub address: SocketAddr,
    /// Fast read for every new connection: may it get one?
    accepts: AtomicBool,
    /// Fast read for panic mode: draining (never chosen, even in panic).
    draining: AtomicBool,
    /// Fast reads of `state`: up, and up with failures in its streak (a
    /// success then has a streak to reset). A success on a backend up and
    /// not failing changes nothing: it takes no lock.
    up: AtomicBool,
    failing: AtomicBool,
    state: Mutex<Health>,
    /// Connect failures seen by the shards (passive checks).
    pub connect_failures: AtomicU64,
    /// Health changes: up → down, down → up.
    pub went_down: AtomicU64,
    pub went_up: AtomicU64,
    /// Connections to it from every shard.
    pub count: Arc<BackendCount>,
}

/// Health of every backend of every pool, indexed `[pool][backend]`.
/// Changes bump `epoch`, so shards rebuild what depends on the set of
/// live backends (a Maglev table) only when it changed.
#[derive(Debug)]
pub struct HealthBoard {
    /// Pool names, in config order.
    names: Vec<String>,
    pools: Vec<Vec<BackendHealth>>,
    epoch: AtomicU64,
}

impl HealthBoard {
    pub fn new(pools: &[Pool]) -> Self {
        Self::carrying_over(pools, None)
    }

    /// The board for `pools` (a reload): a backend that was on `previous`
    /// (same pool name and address) keeps its health and its failure
    /// count under the new thresholds; its draining flag is the config's.
    pub fn carrying_over(pools: &[Pool], previous: Option<&HealthBoard>) -> Self {
        let pools_health = pools
            .iter()
            .map(|pool| {
                let (rise, fall) = (pool.health_check.rise, pool.health_check.fall);
                pool.backends
                    .iter()
                    .map(|b| {
                        let before = previous.and_then(|p| p.find(&pool.name, *b.address));
                        let mut health = match before {
                            Some(old) => old
                                .state
                                .lock()
                                .expect("health lock")
                                .with_thresholds(rise, fall),
                            None => Health::new(rise, fall),
                        };
                        health.set_draining(b.drain);
                        let carried = |f: fn(&BackendHealth) -> &AtomicU64| {
                            AtomicU64::new(before.map_or(0, |old| f(old).load(Ordering::Relaxed)))
                        };
                        BackendHealth {
                            address: *b.address,
                            accepts: AtomicBool::new(health.accepts_new()),
                            draining: AtomicBool::new(b.drain),
                            up: AtomicBool::new(health.is_up()),
                            failing: AtomicBool::new(health.is_up() && health.streak() > 0),
                            state: Mutex::new(health),
                            connect_failures: carried(|h| &h.connect_failures),
                            went_down: carried(|h| &h.went_down),
                            went_up: carried(|h| &h.went_up),
                            count: before
                                .map_or_else(BackendCount::new, |old| Arc::clone(&old.count)),
                        }
                    })
                    .collect()
            })
            .collect();
        Self {
            names: pools.iter().map(|p| p.name.clone()).collect(),
            pools: pools_health,
            epoch: AtomicU64::new(0),
        }
    }

    /// The backend `address` of pool `pool`, if the board has it.
    fn find(&self, pool: &str, address: SocketAddr) -> Option<&BackendHealth> {
        let p = self.names.iter().position(|n| n == pool)?;
        self.pools[p].iter().find(|b| b.address == address)
    }

    /// The indexes of backend `address` in pool `pool`.
    pub fn locate(&self, pool: &str, address: SocketAddr) -> Option<(usize, usize)> {
        let p = self.names.iter().position(|n| n == pool)?;
        let b = self.pools[p].iter().position(|b| b.address == address)?;
        Some((p, b))
    }

    /// Pool names, in config order (the board's indexes).
    pub fn pool_names(&self) -> &[String] {
        &self.names
    }

    pub fn backends(&self, pool: usize) -> &[BackendHealth] {
        &self.pools[pool]
    }

    pub fn accepts(&self, pool: usize, backend: usize) -> bool {
        self.pools[pool][backend].accepts.load(Ordering::Relaxed)
    }

    pub fn is_draining(&self, pool: usize, backend: usize) -> bool {
        self.pools[pool][backend].draining.load(Ordering::Relaxed)
    }

    /// The process-wide connection count of a backend.
    pub fn count(&self, pool: usize, backend: usize) -> Arc<BackendCount> {
        Arc::clone(&self.pools[pool][backend].count)
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Records a check or connect result; logs and publishes a change.
    /// Cheap for the common case, a success on a healthy backend (a few
    /// atomic reads, no lock): every connection reports one.
    pub fn record(&self, pool: usize, backend: usize, ok: bool) {
        let entry = &self.pools[pool][backend];
        if ok && entry.up.load(Ordering::Relaxed) && !entry.failing.load(Ordering::Relaxed) {
            return;
        }
        if !ok {
            entry.connect_failures.fetch_add(1, Ordering::Relaxed);
        }
        let mut state = entry.state.lock().expect("health lock");
        let change = state.record(ok);
        entry.up.store(state.is_up(), Ordering::Relaxed);
        entry
            .failing
            .store(state.is_up() && state.streak() > 0, Ordering::Relaxed);
        let Some(change) = change else {
            return;
        };
        entry.accepts.store(state.accepts_new(), Ordering::Relaxed);
        self.epoch.fetch_add(1, Ordering::Release);
        let pool_name = &self.names[pool];
        match change {
            Transition::WentDown => {
                entry.went_down.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(pool = %pool_name, backend = %entry.address, "backend down");
            }
            Transition::WentUp => {
                entry.went_up.fetch_add(1, Ordering::Relaxed);
                tracing::info!(pool = %pool_name, backend = %entry.address, "backend up");
            }
        }
    }

    /// Drains a backend (existing connections finish, no new ones).
    pub fn set_draining(&self, pool: usize, backend: usize, draining: bool) {
        let entry = &self.pools[pool][backend];
        let mut state = entry.state.lock().expect("health lock");
        state.set_draining(draining);
        entry.accepts.store(state.accepts_new(), Ordering::Relaxed);
        entry.draining.store(draining, Ordering::Relaxed);
        self.epoch.fetch_add(1, Ordering::Release);
    }

    pub fn is_up(&self, pool: usize, backend: usize) -> bool {
        self.pools[pool][backend].up.load(Ordering::Relaxed)
    }
}

/// One shard's view of a pool: balancing state, open connections per
/// backend (counted by [`BackendLease`]s), source addresses and their port
/// queues (taken as [`SourcePort`] leases), and the health board it
/// reads and reports to.
#[derive(Debug)]
pub struct ShardPool {
    /// The pool as configured (a reload compares it).
    config: Pool,
    board: Arc<HealthBoard>,
    /// This pool's index on `board`.
    index: usize,
    pub backends: Vec<SocketAddr>,
    weights: Vec<u32>,
    /// Process-wide, from the board.
    counts: Vec<Arc<BackendCount>>,
    balance: Balance,
    round_robin: RoundRobin,
    least_start: usize,
    maglev: Option<Maglev>,
    maglev_epoch: Option<u64>,
    sources: Sources,
    /// Connections waiting for one of `sources`' ports (kept with them).
    pub line: Line,
    /// Per backend: a connection said whether it uses timestamps.
    timestamps_known: Vec<bool>,
    next_source: usize,
    pub connect_timeout: Duration,
    pub retries: u32,
    pub proxy_protocol: ProxyProtocol,
    /// The per-backend limit, all shards (0: none).
    pub max_per_backend: u32,
    /// How lastack closes a backend connection it closes first.
    pub backend_close: BackendClose,
    /// Below this share of healthy backends (percent), balance over all.
    panic_threshold: u32,
    scratch: Vec<BackendState>,
}

impl ShardPool {
    /// Shard `shard` of `shards`' view of config pool `index` on `board`.
    /// Without configured source addresses, sockets bind the wildcard
    /// address (the route chooses it) and still get their port from
    /// lastack. `previous` (a reload) lends what stays: the connection
    /// counts of backends still there, and the source ports if the source
    /// addresses did not change.
    pub fn new(
        index: usize,
        pool: &Pool,
        board: &Arc<HealthBoard>,
        (shard, shards): (usize, usize),
        host: &HostTcp,
        woken: &Woken,
        previous: Option<&ShardPool>,
    ) -> Self {
        let backend_close = pool.backend_close;
        let (sources, line) = match previous {
            Some(old)
                if old.config.source_addresses == pool.source_addresses
                    && old.config.source_ports == pool.source_ports
                    && old.backend_close == backend_close =>
            {
                (Rc::clone(&old.sources), Rc::clone(&old.line))
            }
            _ => (
                new_sources(
                    pool,
                    shard,
                    shards,
                    host.port_quarantine(pool.backend_close),
                ),
                PortLine::new(woken),
            ),
        };
        let backends: Vec<SocketAddr> = pool.backends.iter().map(|b| *b.address).collect();
        let counts = (0..backends.len()).map(|b| board.count(index, b)).collect();
        Self {
            config: pool.clone(),
            board: Arc::clone(board),
            index,
            backends,
            weights: pool.backends.iter().map(|b| b.weight).collect(),
            counts,
            balance: pool.balance,
            round_robin: RoundRobin::default(),
            least_start: shard,
            maglev: None,
            maglev_epoch: None,
            timestamps_known: vec![false; pool.backends.len()],
            sources,
            line,
            next_source: 0,
            connect_timeout: *pool.connect_timeout,
            retries: pool.retries,
            proxy_protocol: pool.proxy_protocol,
            max_per_backend: pool.max_connections_per_backend,
            backend_close,
            panic_threshold: pool.panic_threshold,
            scratch: Vec::new(),
        }
    }

    /// The pool's name in the config.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// True if this view serves `pool` on `board` unchanged (a reload may
    /// keep it as it is, balancing state included).
    pub fn serves(&self, pool: &Pool, board: &Arc<HealthBoard>) -> bool {
        self.config == *pool && Arc::ptr_eq(&self.board, board)
    }

    /// Records a connect result for `backend` (passive health).
    pub fn record(&self, backend: usize, ok: bool) {
        self.board.record(self.index, backend, ok);
    }

    /// Per source address: ports ready now and ports resting after a
    /// TIME-WAIT (this shard's share).
    pub fn source_ports(&self) -> Vec<(IpAddr, usize, usize)> {
        self.sources
            .borrow()
            .iter()
            .map(|s| {
                let (ready, resting) = s.ports.free();
                (s.address, ready, resting)
            })
            .collect()
    }

    /// Counts a new connection to `backend` until the lease drops.
    pub fn lease(&self, backend: usize) -> BackendLease {
        self.counts[backend].lease(backend)
    }

    /// Chooses a backend for `client`, skipping those down, draining, at
    /// their connection limit, or in `exclude` (already tried). `None`:
    /// nothing can take the connection.
    pub fn choose(&mut self, client: IpAddr, exclude: u64) -> Option<usize> {
        self.scratch.clear();
        let panic = self.in_panic();
        for i in 0..self.backends.len() {
            let active = self.counts[i].active();
            let full = self.max_per_backend > 0 && active >= self.max_per_backend;
            let excluded = i < 64 && exclude & (1 << i) != 0;
            let healthy = if panic {
                !self.board.is_draining(self.index, i)
            } else {
                self.board.accepts(self.index, i)
            };
            self.scratch.push(BackendState {
                weight: self.weights[i],
                up: healthy && !full && !excluded,
                active,
            });
        }
        match self.balance {
            Balance::RoundRobin => self.round_robin.pick(&self.scratch),
            Balance::LeastConnections => {
                self.least_start = self.least_start.wrapping_add(1);
                least_connections(&self.scratch, self.least_start % self.backends.len().max(1))
            }
            Balance::Maglev => {
                self.refresh_maglev();
                let pick = self.maglev.as_ref().map(|m| m.pick(client));
                match pick {
                    Some(i) if self.scratch[i].up => Some(i),
                    _ => least_connections(&self.scratch, 0),
                }
            }
        }
    }

    /// Panic mode: fewer than `panic_threshold` percent of the backends
    /// that are not draining are healthy, so every one of them is a
    /// candidate (Envoy's panic threshold): better to try a backend marked
    /// down than to reset every client.
    fn in_panic(&self) -> bool {
        if self.panic_threshold == 0 {
            return false;
        }
        let (mut serving, mut healthy) = (0u32, 0u32);
        for i in 0..self.backends.len() {
            if !self.board.is_draining(self.index, i) {
                serving += 1;
                healthy += u32::from(self.board.accepts(self.index, i));
            }
        }
        serving > 0 && healthy * 100 < self.panic_threshold * serving
    }

    /// Rebuilds the Maglev table when the set of healthy backends changed.
    /// The table covers the backends that are healthy; a full or
    /// already-tried pick falls back to least connections.
    fn refresh_maglev(&mut self) {
        let board = &self.board;
        let epoch = board.epoch();
        if self.maglev_epoch == Some(epoch) {
            return;
        }
        let names: Vec<Vec<u8>> = self
            .backends
            .iter()
            .map(|a| a.to_string().into_bytes())
            .collect();
        let refs: Vec<&[u8]> = names.iter().map(|n| n.as_slice()).collect();
        let healthy: Vec<BackendState> = (0..self.backends.len())
            .map(|i| BackendState {
                weight: self.weights[i],
                up: board.accepts(self.index, i),
                active: 0,
            })
            .collect();
        self.maglev = Maglev::build(&refs, &healthy);
        self.maglev_epoch = Some(epoch);
    }

    /// A port of the next source address (in turn) that can reach
    /// `backend` (of its family; the unspecified address, when the pool
    /// names none, serves both); `None` when this shard has no free port
    /// on any such address.
    pub fn take_source(&mut self, backend: &SocketAddr) -> Option<SourcePort> {
        let count = self.sources.borrow().len();
        for _ in 0..count {
            let k = self.next_source % count;
            self.next_source = self.next_source.wrapping_add(1);
            let address = self.sources.borrow()[k].address;
            if !address.is_unspecified() && address.is_ipv6() != backend.is_ipv6() {
                continue;
            }
            if let Some(port) = SourcePort::take(&self.sources, k) {
                return Some(port);
            }
        }
        None
    }

    /// True while the pool's ports are reused after a TIME-WAIT and a
    /// connection to `backend` has not yet said whether it uses
    /// timestamps (see [`ShardPool::learn_timestamps`]).
    pub fn wants_timestamps_of(&self, backend: usize) -> bool {
        self.backend_close == BackendClose::Fin
            && !self.timestamps_known.get(backend).copied().unwrap_or(true)
            && !self.sources.borrow().iter().any(|s| s.ports.rests())
    }

    /// What the first connection to `backend` said about timestamps:
    /// without them its TIME-WAITs cannot be reused on a bound port, so
    /// the pool's ports rest from now on (see
    /// [`ShardPool::learn_no_reuse`]). True if that changed the pool.
    pub fn learn_timestamps(&mut self, backend: usize, timestamps: bool) -> bool {
        if let Some(known) = self.timestamps_known.get_mut(backend) {
            *known = true;
        }
        !timestamps && self.learn_no_reuse()
    }

    /// A backend refused to reuse a TIME-WAIT (`EADDRNOTAVAIL` on a port
    /// it should have been free on: it does not use timestamps): every
    /// source address of the pool rests its ports from now on. True the
    /// first time.
    pub fn learn_no_reuse(&self) -> bool {
        let mut learnt = false;
        for source in self.sources.borrow_mut().iter_mut() {
            learnt |= source.ports.learn_no_reuse(TIME_WAIT_REST);
        }
        learnt
    }

    /// How long until a source address may give a port (see
    /// [`PortQueue::next_take_in`]).
    pub fn next_source_in(&self) -> Option<Duration> {
        self.sources
            .borrow_mut()
            .iter_mut()
            .filter_map(|s| s.ports.next_take_in())
            .min()
    }
}

/// This shard's share of the ports of each of `pool`'s source addresses,
/// each port resting `quarantine` after it comes back.
fn new_sources(pool: &Pool, shard: usize, shards: usize, quarantine: Duration) -> Sources {
    let range = pool.source_ports;
    let addresses: Vec<IpAddr> = if pool.source_addresses.is_empty() {
        vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)]
    } else {
        pool.source_addresses.iter().map(|a| a.0).collect()
    };
    let sources = addresses
        .into_iter()
        .map(|address| Source {
            address,
            ports: PortQueue::new(range.first, range.last, shard, shards)
                .with_quarantine(quarantine),
        })
        .collect();
    Rc::new(RefCell::new(sources))
}
