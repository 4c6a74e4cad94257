//! One running lastack, built from a config: the steering program on each
//! interface, a shard per rx queue (each building its engine and io_uring
//! on its own thread), the health checkers and the admin endpoint; and
//! its life: reloads, drains, supervision. `lastack run` and the
//! integration tests start lastack through here, so they run the same
//! wiring.
//!
//! # Signals (`lastack run`)
//! | signal | effect |
//! |---|---|
//! | SIGHUP | reload the config file (an invalid one is refused, logged and counted; the running config stays) |
//! | SIGTERM | graceful drain: `/ready` turns 503, listeners close (new attempts get `[drain] new_connections`), established connections finish for up to `[drain] timeout`, what is left gets FIN and then RST `[drain] close_grace` later; exit 0. A second SIGTERM stops at once |
//! | SIGINT | fast stop: RST to every connection, exit 0 |
//!
//! # Reload
//! Re-read, validated, then applied without touching established
//! connections: pools and backends added, removed (a removed backend gets
//! no new connections; its connections finish), reweighted, drained;
//! health checks restarted with the new settings (health carried over for
//! backends that stay); listeners added (XDP map updated) or removed
//! (closed at once, removed from the XDP map once their connections are
//! gone); `[tcp]` and listener settings for new connections. What needs a
//! restart — `[[interfaces]]`, `[admin]`, `[logging]` — is refused with a
//! message that says so. Each shard takes its update between two batches.
//!
//! # Supervision
//! A shard whose thread panics is restarted on its queue (a new AF_XDP
//! socket and engine; the connections it held are lost, their next
//! segments meet the new shard and are reset), counted
//! (`lastack_shard_restarts_total`) and logged; `/ready` is 503 meanwhile.
//! If it cannot be restarted, `/live` turns 503 and `lastack run` exits
//! with status 4 so the service manager restarts the process.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::admin::{AdminServer, AdminState, Control, ControlRequest};
use crate::config::{self, Config, DrainRefusal, Interface};
use crate::link::xdp::{SteerCounters, Steering};
use crate::link::xsk::XskSocket;
use crate::proxy::UpstreamPlan;
use crate::shard::relay::{IcmpRelay, SegmentRelay};
use crate::shard::{
    Command, Forwarding, ListenerCounts, ListenerPlan, Serve, Shard, ShardHandle, ShardPlan,
    ShardStats, ShardUpdate,
};
use crate::tcp::{Refuse, Secret, TcpConfig};
use crate::upstream::checker::Checker;
use crate::upstream::host::HostTcp;
use crate::upstream::pool::HealthBoard;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The MTU an interface needs for `config`: a full segment of `tcp.mss`
/// bytes with IPv4 and TCP headers (RFC 9293 §3.7.1: the MSS counts
/// neither), and with `[cluster] peers` the outer header of a segment
/// forwarded to a peer (`wire::tunnel`). A larger segment would be dropped
/// on the path, silently. `lastack run` refuses to start without it and
/// `lastack check --host` reports it.
pub fn mtu_needed(config: &Config) -> u64 {
    let tunnel = Forwarding::from_config(&config.cluster)
        .map_or(0, |f| crate::wire::ip::header_len(f.address.is_ipv6()));
    u64::from(config.tcp.mss) + 40 + tunnel as u64
}

fn check_mss_fits(iface: &Interface, config: &Config) -> Result<(), Error> {
    let path = format!("/sys/class/net/{}/mtu", iface.name);
    let Some(mtu) = crate::upstream::host::read_number(&path) else {
        return Ok(()); // not a Linux sysfs: nothing to check against
    };
    let needed = mtu_needed(config);
    if needed > mtu {
        let what = if Forwarding::from_config(&config.cluster).is_some() {
            "IP and TCP headers, and the outer header of a segment forwarded to a peer"
        } else {
            "IPv4 and TCP headers"
        };
        let mss = config.tcp.mss;
        return Err(format!(
            "interface {}: tcp.mss {mss} needs an MTU of at least {needed} ({what}), the interface has {mtu}: lower tcp.mss to {} or raise the MTU",
            iface.name,
            (mtu + u64::from(mss)).saturating_sub(needed)
        )
        .into());
    }
    Ok(())
}

/// How the shards' secrets are chosen.
#[derive(Debug, Clone, Copy)]
pub enum Secrets {
    /// From the kernel's CSPRNG (production).
    Random,
    /// Derived from a fixed seed (tests: reproducible ISNs and cookies).
    Fixed(u8),
}

/// A shard and where it runs.
struct ShardSlot {
    handle: ShardHandle,
    /// Index into `Runtime::programs` (and the config's interfaces).
    interface: usize,
    queue: u32,
    /// Restart attempts that failed in a row (its queue may take a moment
    /// to be free again after the dead shard's socket closed).
    failed_restarts: u32,
}

/// Restart attempts (one per loop round, ~20 ms apart) before a dead
/// shard counts as lost.
const RESTART_ATTEMPTS: u32 = 50;

/// How a run ended (`lastack run` turns it into an exit status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Drained or stopped as asked.
    Clean,
    /// A shard was lost and could not be restarted.
    ShardLost,
}

/// A running instance.
pub struct Runtime {
    config: Config,
    secrets: Secrets,
    /// The keys of `[cluster] key_file`, as last read (start, reloads).
    cluster_keys: Option<Vec<Secret>>,
    shards: Vec<ShardSlot>,
    /// Steering programs by interface, in config order.
    programs: Vec<(String, Steering)>,
    board: Arc<HealthBoard>,
    /// ICMP messages passed between shards (`shard::relay`).
    relay: Arc<IcmpRelay>,
    /// Forwarded segments passed between shards (`shard::relay`).
    segments: Arc<SegmentRelay>,
    checker: Option<Checker>,
    admin: Option<AdminServer>,
    admin_stop: Arc<AtomicBool>,
    admin_state: Arc<AdminState>,
    control: mpsc::Receiver<ControlRequest>,
    /// Backends drained or undrained through the admin endpoint, kept
    /// across reloads.
    drain_overrides: BTreeMap<(String, SocketAddr), bool>,
    /// Listener addresses a reload removed, still in the XDP maps while
    /// their connections finish.
    retiring: Vec<SocketAddr>,
    draining: bool,
    /// Reloads applied so far (each shard publishes the one it runs).
    generation: u64,
    /// Open connections per listener name, over every shard and reload.
    listener_counts: ListenerCounts,
    /// The kernel's TIME-WAIT settings in lastack's namespace, read at
    /// start (a reload may run on a thread of another namespace).
    host: HostTcp,
}

/// Descriptors lastack holds besides backend sockets: AF_XDP sockets, io_uring
/// rings, eventfds, BPF maps and programs, the admin endpoint's
/// connections, logs.
pub const FIXED_DESCRIPTORS: u64 = 256;

/// The descriptors a config may need at once: a backend socket per proxied
/// connection (the proxy listeners' `max_connections`), a health check per
/// backend, and [`FIXED_DESCRIPTORS`].
#[derive(Debug, Clone, Copy)]
pub struct DescriptorNeeds {
    pub proxied: u64,
    pub checks: u64,
}

impl DescriptorNeeds {
    pub fn of(config: &Config) -> Self {
        Self {
            proxied: config
                .listeners
                .iter()
                .filter(|l| l.service == config::Service::Proxy)
                .map(|l| u64::from(l.max_connections))
                .sum(),
            checks: config.pools.iter().map(|p| p.backends.len() as u64).sum(),
        }
    }

    pub fn total(&self) -> u64 {
        self.proxied + self.checks + FIXED_DESCRIPTORS
    }
}

/// At start: raises the descriptor limit and says, once, if what the config
/// allows may not fit in it; says what the kernel's TIME-WAIT settings
/// allow on the backend leg.
fn report_host(config: &Config) {
    let needs = DescriptorNeeds::of(config);
    let needed = needs.total();
    match crate::upstream::host::raise_descriptor_limit() {
        Ok(limit) if limit.soft < needed => tracing::warn!(
            limit = limit.soft,
            needed,
            proxied = needs.proxied,
            checks = needs.checks,
            fixed = FIXED_DESCRIPTORS,
            "descriptor limit (RLIMIT_NOFILE) below what the listeners' max_connections may \
             need: past it clients get RST (counted as lastack_proxy_socket_errors_total); \
             raise LimitNOFILE or lower max_connections"
        ),
        Ok(limit) => tracing::info!(limit = limit.soft, needed, "descriptor limit"),
        Err(e) => tracing::warn!("descriptor limit: {e}"),
    }
    if !config.pools.is_empty() {
        tracing::info!("{}", HostTcp::read().describe());
    }
}

impl Runtime {
    /// Builds and starts everything `config` describes, in the calling
    /// thread's network namespace (the threads it starts stay there).
    pub fn start(config: &Config, secrets: Secrets) -> Result<Self, Error> {
        if config.interfaces.is_empty() {
            return Err("no [[interfaces]] configured: nothing to serve".into());
        }
        report_host(config);
        let board = Arc::new(HealthBoard::new(&config.pools));
        let (sender, control) = mpsc::channel();
        let admin_state = Arc::new(AdminState::new(Vec::new(), Arc::clone(&board)));
        if config.admin.control {
            *admin_state.control.lock().expect("control lock") = Some(sender);
        }
        let cluster_keys = cluster_keys(config)?;
        let mut runtime = Self {
            config: config.clone(),
            secrets,
            cluster_keys,
            shards: Vec::new(),
            programs: Vec::new(),
            board,
            relay: Arc::default(),
            segments: Arc::default(),
            checker: None,
            admin: None,
            admin_stop: Arc::new(AtomicBool::new(false)),
            admin_state,
            control,
            drain_overrides: BTreeMap::new(),
            retiring: Vec::new(),
            draining: false,
            generation: 0,
            listener_counts: ListenerCounts::default(),
            host: HostTcp::read(),
        };
        // The admin endpoint comes first: a port already taken fails the
        // start before any interface is touched, and the metrics are there
        // as soon as traffic flows (`/ready` stays 503 until every shard
        // runs).
        if config.admin.enabled {
            let listen = *config.admin.listen;
            let server = crate::admin::spawn(
                listen,
                Arc::clone(&runtime.admin_state),
                config.admin.control,
                Arc::clone(&runtime.admin_stop),
            )
            .map_err(|e| format!("admin endpoint {listen}: {e}"))?;
            tracing::info!(%listen, "admin endpoint: GET /metrics, /metrics.json, /live, /ready");
            runtime.admin = Some(server);
        }
        let listeners = runtime.listener_plans(config);
        for (i, interface) in config.interfaces.iter().enumerate() {
            let steering = Steering::load()?;
            for listener in &listeners {
                steering.add_listener(listener.addr.ip(), listener.addr.port())?;
            }
            let ifindex = nix::net::if_::if_nametoindex(interface.name.as_str())
                .map_err(|e| format!("interface {}: {e}", interface.name))?;
            let mut steering = steering;
            steering.attach(ifindex, interface.xdp_mode)?;
            runtime.programs.push((interface.name.clone(), steering));
            for queue in 0..interface.queues {
                let handle = runtime.spawn_shard(i, queue)?;
                runtime.shards.push(ShardSlot {
                    handle,
                    interface: i,
                    queue,
                    failed_restarts: 0,
                });
            }
            tracing::info!(interface = %interface.name, mode = ?interface.xdp_mode, queues = interface.queues, "serving");
        }
        runtime.publish_shards();
        runtime.checker = Some(Checker::start(&runtime.board, &config.pools)?);
        runtime.admin_state.ready.store(true, Ordering::Relaxed);
        Ok(runtime)
    }

    // ---- Building shards ----

    fn listener_plans(&self, config: &Config) -> Vec<ListenerPlan> {
        ListenerPlan::all(config, &self.listener_counts)
    }

    fn shard_count(&self, config: &Config) -> usize {
        config.interfaces.iter().map(|i| i.queues as usize).sum()
    }

    /// The shard index of `interface`'s queue `queue`.
    fn shard_index(&self, interface: usize, queue: u32) -> usize {
        let before: usize = self.config.interfaces[..interface]
            .iter()
            .map(|i| i.queues as usize)
            .sum();
        before + queue as usize
    }

    /// What every shard takes from the running config.
    fn update(&self, config: &Config) -> ShardUpdate {
        let shards = self.shard_count(config);
        let listeners = ListenerPlan::all(config, &self.listener_counts);
        let proxies = listeners.iter().any(|l| matches!(l.serve, Serve::Proxy(_)));
        let tcp = TcpConfig::from(&config.tcp);
        // Listener limits hold for the process (shared counts), and the NIC
        // may send any share of the connections to one shard: each shard's
        // engine may hold every listener's limit, plus room for the
        // handshakes a listener queues (a connection over a listener's
        // limit must still be established to get its RST). The engine
        // allocates per connection, not up front.
        let queued = (tcp.syn_backlog + tcp.accept_backlog) * config.listeners.len();
        let max_connections = config
            .listeners
            .iter()
            .map(|l| l.max_connections as usize)
            .sum::<usize>()
            + queued;
        ShardUpdate {
            generation: self.generation,
            listeners,
            max_connections,
            tcp,
            upstream: proxies
                .then(|| UpstreamPlan::new(config, &self.board, (0, shards), self.host)),
            drain_refuse: match config.drain.new_connections {
                DrainRefusal::Reset => Refuse::Reset,
                DrainRefusal::Drop => Refuse::Drop,
            },
            cluster_keys: self.cluster_keys.clone(),
            forwarding: Forwarding::from_config(&config.cluster),
        }
    }

    /// Binds `interface`'s queue `queue`, registers it with the steering
    /// program and starts a shard on it (from the running config).
    fn spawn_shard(&mut self, interface: usize, queue: u32) -> Result<ShardHandle, Error> {
        let iface: &Interface = &self.config.interfaces[interface];
        let frames = std::num::NonZeroU32::new(iface.umem_frames).expect("validated");
        check_mss_fits(iface, &self.config)?;
        let socket = XskSocket::bind_with_frame_size(
            &iface.name,
            queue,
            frames,
            iface.frame_size,
            iface.bind_mode,
        )?;
        let needed = crate::config::FRAME_HEADER_ROOM + usize::from(self.config.tcp.mss);
        if socket.frame_len() < needed {
            return Err(format!(
                "interface {}: its UMEM frames hold {} bytes after the kernel's headroom; tcp.mss {} needs {needed} (headers with options included): lower tcp.mss or raise frame_size",
                iface.name,
                socket.frame_len(),
                self.config.tcp.mss
            )
            .into());
        }
        self.programs[interface]
            .1
            .register_socket(queue, socket.fd())?;
        let shard = self.shard_index(interface, queue);
        let update = self.update(&self.config);
        let plan = ShardPlan {
            socket,
            tcp: update.tcp,
            secret: secret(self.secrets, shard)?,
            max_connections: update.max_connections,
            listeners: update.listeners,
            busy_poll: *iface.busy_poll,
            upstream: update.upstream.map(|mut u| {
                u.shard = shard;
                u
            }),
            drain_refuse: update.drain_refuse,
            generation: update.generation,
            relay: Arc::clone(&self.relay),
            segments: Arc::clone(&self.segments),
            index: (shard, self.shard_count(&self.config)),
            cluster_keys: update.cluster_keys,
            forwarding: update.forwarding,
        };
        let core = iface.cores.get(queue as usize).map(|&c| c as usize);
        let handle = Shard::spawn(plan, core)?;
        self.segments.register(shard, Arc::clone(&handle.control));
        if self.draining {
            handle.control.set(Command::Drain);
        }
        Ok(handle)
    }

    /// Points the admin endpoint at the shards' current stats.
    fn publish_shards(&self) {
        *self.admin_state.shards.lock().expect("shards lock") = self
            .shards
            .iter()
            .map(|s| Arc::clone(&s.handle.stats))
            .collect();
    }

    // ---- Reading ----

    /// The shards' latest published counters.
    pub fn shard_stats(&self) -> Vec<ShardStats> {
        self.shards.iter().map(|s| s.handle.snapshot()).collect()
    }

    pub fn board(&self) -> Arc<HealthBoard> {
        Arc::clone(&self.board)
    }

    pub fn admin(&self) -> &Arc<AdminState> {
        &self.admin_state
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The steering programs' counters, by interface; also refreshes what
    /// the admin endpoint shows.
    pub fn steering_counters(&self) -> Vec<(String, SteerCounters)> {
        let counters: Vec<_> = self
            .programs
            .iter()
            .filter_map(|(name, steering)| steering.counters().ok().map(|c| (name.clone(), c)))
            .collect();
        *self.admin_state.xdp.lock().expect("xdp lock") = counters.clone();
        counters
    }

    // ---- Reload ----

    /// Re-reads `path` and applies it ([`Runtime::reload`]); a file that
    /// does not load is refused with its file:line:column errors.
    pub fn reload_from(&mut self, path: &Path) -> Result<String, String> {
        match config::load(path) {
            Ok(config) => self.reload(config),
            Err(errors) => {
                self.refused(&errors.to_string());
                Err(errors.to_string())
            }
        }
    }

    fn refused(&self, why: &str) {
        self.admin_state
            .counters
            .reloads_failed
            .fetch_add(1, Ordering::Relaxed);
        tracing::error!("reload refused, the running config stays:\n{why}");
    }

    /// Applies a validated config (see the module docs); what needs a
    /// restart is refused and nothing changes.
    pub fn reload(&mut self, new: Config) -> Result<String, String> {
        if let Err(why) = restart_needed(&self.config, &new) {
            self.refused(&why);
            return Err(why);
        }
        // Read before anything changes: a key file that went bad since the
        // config was validated refuses the reload too.
        let keys = match cluster_keys(&new) {
            Ok(keys) => keys,
            Err(why) => {
                let why = why.to_string();
                self.refused(&why);
                return Err(why);
            }
        };
        let old_addrs: Vec<SocketAddr> = self
            .listener_plans(&self.config)
            .iter()
            .map(|l| l.addr)
            .collect();
        let new_plans = self.listener_plans(&new);
        for plan in &new_plans {
            if !old_addrs.contains(&plan.addr) {
                for (name, steering) in &self.programs {
                    if let Err(e) = steering.add_listener(plan.addr.ip(), plan.addr.port()) {
                        let why = format!("interface {name}: steering {}: {e}", plan.addr);
                        self.refused(&why);
                        return Err(why);
                    }
                }
            }
            self.retiring.retain(|a| *a != plan.addr);
        }
        for addr in old_addrs {
            if !new_plans.iter().any(|p| p.addr == addr) && !self.retiring.contains(&addr) {
                self.retiring.push(addr);
            }
        }
        // Health and checks for the new pools, carrying over what stays.
        if let Some(checker) = self.checker.take() {
            checker.stop();
        }
        self.board = Arc::new(HealthBoard::carrying_over(&new.pools, Some(&self.board)));
        self.apply_drain_overrides();
        match Checker::start(&self.board, &new.pools) {
            Ok(checker) => self.checker = Some(checker),
            Err(e) => tracing::error!("health checks could not start: {e}"),
        }
        *self.admin_state.board.lock().expect("board lock") = Arc::clone(&self.board);
        if keys != self.cluster_keys {
            tracing::info!(
                keys = keys.as_ref().map_or(0, Vec::len),
                "cluster keys changed (a key dropped is honoured in cookies for 192 s more)"
            );
        }
        self.cluster_keys = keys;
        self.config = new;
        self.generation += 1;
        let update = self.update(&self.config);
        for slot in &self.shards {
            let shard = self.shard_index(slot.interface, slot.queue);
            let mut update = update.clone();
            if let Some(upstream) = update.upstream.as_mut() {
                upstream.shard = shard;
            }
            slot.handle.control.update(update);
        }
        self.admin_state
            .counters
            .reloads_ok
            .fetch_add(1, Ordering::Relaxed);
        let summary = format!(
            "reloaded: {} listener(s), {} pool(s), {} backend(s)\n",
            self.config.listeners.len(),
            self.config.pools.len(),
            self.config
                .pools
                .iter()
                .map(|p| p.backends.len())
                .sum::<usize>()
        );
        tracing::info!("{}", summary.trim_end());
        Ok(summary)
    }

    /// Reloads applied so far: every shard has taken the latest once its
    /// published `config_generation` is this.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Drains or undrains one backend (until changed again; kept across
    /// reloads).
    pub fn set_draining(
        &mut self,
        pool: &str,
        backend: SocketAddr,
        draining: bool,
    ) -> Result<String, String> {
        let (p, b) = self
            .board
            .locate(pool, backend)
            .ok_or_else(|| format!("no backend {backend} in pool {pool}\n"))?;
        self.board.set_draining(p, b, draining);
        self.drain_overrides
            .insert((pool.to_string(), backend), draining);
        let what = if draining { "draining" } else { "undrained" };
        tracing::info!(pool, %backend, "backend {what}");
        Ok(format!("{pool} {backend}: {what}\n"))
    }

    fn apply_drain_overrides(&self) {
        for ((pool, backend), &draining) in &self.drain_overrides {
            if let Some((p, b)) = self.board.locate(pool, *backend) {
                self.board.set_draining(p, b, draining);
            }
        }
    }

    // ---- The loop's work ----

    /// One round of the runtime's work: answers control requests (a
    /// reload re-reads `path`), restarts dead shards, refreshes the XDP
    /// counters, retires the XDP entries of removed listeners once their
    /// connections are gone. Returns `Ending::ShardLost` if a shard could
    /// not be restarted.
    pub fn tick(&mut self, path: Option<&Path>, wait: Duration) -> Option<Ending> {
        if let Ok(request) = self.control.recv_timeout(wait) {
            let answer = match (&request.control, path) {
                (Control::Reload, Some(path)) => self.reload_from(path),
                (Control::Reload, None) => {
                    Err("started without a config file: nothing to re-read\n".into())
                }
                (
                    Control::SetDraining {
                        pool,
                        backend,
                        draining,
                    },
                    _,
                ) => {
                    let (pool, backend, draining) = (pool.clone(), *backend, *draining);
                    self.set_draining(&pool, backend, draining)
                }
            };
            let _ = request.reply.send(answer);
        }
        let lost = self.supervise();
        self.steering_counters();
        self.retire_listeners();
        lost
    }

    /// Restarts every shard whose thread ended without being told to.
    pub fn supervise(&mut self) -> Option<Ending> {
        let mut lost = None;
        for i in 0..self.shards.len() {
            let slot = &self.shards[i];
            let told_to_stop = slot.handle.control.command() == Command::Stop;
            if !slot.handle.thread.is_finished() || told_to_stop {
                continue;
            }
            let (interface, queue) = (slot.interface, slot.queue);
            self.admin_state.ready.store(false, Ordering::Relaxed);
            if slot.failed_restarts == 0 {
                tracing::error!(interface = %self.programs[interface].0, queue, "shard thread ended: restarting it");
            }
            match self.spawn_shard(interface, queue) {
                Ok(handle) => {
                    let slot = &mut self.shards[i];
                    slot.failed_restarts = 0;
                    let old = std::mem::replace(&mut slot.handle, handle);
                    let _ = old.thread.join();
                    self.admin_state
                        .counters
                        .shard_restarts
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(queue, "shard restarted");
                }
                Err(e) => {
                    let slot = &mut self.shards[i];
                    slot.failed_restarts += 1;
                    tracing::warn!(
                        queue,
                        attempt = slot.failed_restarts,
                        "shard restart failed: {e}"
                    );
                    if slot.failed_restarts >= RESTART_ATTEMPTS {
                        tracing::error!(queue, "shard lost: it could not be restarted");
                        self.admin_state.live.store(false, Ordering::Relaxed);
                        lost = Some(Ending::ShardLost);
                    }
                }
            }
        }
        self.publish_shards();
        let all_running = self.shards.iter().all(|s| s.failed_restarts == 0);
        if lost.is_none() && all_running && !self.draining {
            self.admin_state.ready.store(true, Ordering::Relaxed);
        }
        lost
    }

    /// Removes from the XDP maps the addresses of listeners a reload
    /// removed, once no shard serves a connection of theirs.
    fn retire_listeners(&mut self) {
        if self.retiring.is_empty() {
            return;
        }
        let stats = self.shard_stats();
        let busy = |addr: &SocketAddr| {
            stats
                .iter()
                .flat_map(|s| &s.listeners)
                .any(|l| l.addr == *addr && (l.open > 0 || l.listening))
        };
        let (keep, done): (Vec<_>, Vec<_>) = self.retiring.drain(..).partition(|a| busy(a));
        self.retiring = keep;
        for addr in done {
            for (_, steering) in &self.programs {
                let _ = steering.remove_listener(addr.ip(), addr.port());
            }
            tracing::info!(%addr, "removed listener retired from steering");
        }
    }

    /// Inject a panic into shard `shard` (test-only fault injection: how
    /// supervision is tested).
    #[doc(hidden)]
    pub fn inject_fault(&self, shard: usize) {
        self.shards[shard].handle.control.set(Command::Fault);
    }

    // ---- Drain and stop ----

    /// Starts a graceful drain: `/ready` turns 503 first, then every shard
    /// closes its listeners and serves what it has.
    pub fn begin_drain(&mut self) {
        self.draining = true;
        self.admin_state.ready.store(false, Ordering::Relaxed);
        self.admin_state.draining.store(true, Ordering::Relaxed);
        for slot in &self.shards {
            slot.handle.control.set(Command::Drain);
        }
        tracing::info!(timeout = ?*self.config.drain.timeout, "draining");
    }

    /// True once every shard published, after `since` (their `published`
    /// counters then), that it serves nothing and holds no connection but
    /// TIME-WAITs.
    pub fn quiet_since(&self, since: &[u64]) -> bool {
        self.shard_stats()
            .iter()
            .zip(since)
            .all(|(s, &t)| s.published > t + 1 && s.served == 0 && s.connections == 0)
    }

    fn published(&self) -> Vec<u64> {
        self.shard_stats().iter().map(|s| s.published).collect()
    }

    /// The drain's second half: FIN to what is left, then (after
    /// `close_grace`, or sooner once quiet) the stop sends RST to what
    /// still is. Returns how many connections it closed.
    pub fn finish_drain(&mut self) -> u64 {
        for slot in &self.shards {
            slot.handle.control.set(Command::Finish);
        }
        let since = self.published();
        let deadline = Instant::now() + *self.config.drain.close_grace;
        while Instant::now() < deadline && !self.quiet_since(&since) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let closed = self
            .shard_stats()
            .iter()
            .map(|s| s.closed_at_drain_timeout)
            .sum();
        tracing::warn!(closed, "drain timed out: closed what was left");
        closed
    }

    /// Serves until signalled (see the module docs for the signal table);
    /// `path` is the config file a reload re-reads.
    pub fn serve(mut self, path: Option<PathBuf>) -> Result<Ending, Error> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGTERM, SIGINT])?;
        notify("READY=1");
        let mut drain: Option<(Instant, Vec<u64>)> = None;
        let ending = loop {
            let mut stop_now = false;
            for signal in signals.pending() {
                match signal {
                    SIGHUP => {
                        notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
                        if let Some(path) = path.as_deref() {
                            let _ = self.reload_from(path);
                        }
                        notify("READY=1");
                    }
                    SIGTERM if drain.is_none() => {
                        notify("STOPPING=1");
                        self.begin_drain();
                        drain = Some((
                            Instant::now() + *self.config.drain.timeout,
                            self.published(),
                        ));
                    }
                    _ => stop_now = true,
                }
            }
            if stop_now {
                notify("STOPPING=1");
                break Ending::Clean;
            }
            if let Some(lost) = self.tick(path.as_deref(), Duration::from_millis(20)) {
                break lost;
            }
            if let Some((deadline, since)) = &drain {
                if self.quiet_since(since) {
                    tracing::info!("drained");
                    break Ending::Clean;
                }
                if Instant::now() >= *deadline {
                    self.finish_drain();
                    break Ending::Clean;
                }
            }
        };
        self.stop()?;
        Ok(ending)
    }

    /// Stops the shards (resetting what they still serve), the checkers
    /// and the admin endpoint, and detaches the steering programs; returns
    /// the shards' last counters.
    pub fn stop(mut self) -> Result<Vec<ShardStats>, Error> {
        self.admin_state.ready.store(false, Ordering::Relaxed);
        for slot in &self.shards {
            slot.handle.control.set(Command::Stop);
        }
        let mut last = Vec::new();
        for slot in std::mem::take(&mut self.shards) {
            let stats = slot.handle.thread.join().map_err(|_| "a shard panicked")?;
            tracing::info!(
                queue = stats.queue,
                rx = stats.rx_frames,
                tx = stats.tx_frames,
                connections = stats.tcp.connections_opened,
                proxied = stats.proxy.sessions_opened,
                time_wait = stats.time_wait,
                slots = stats.slots_held,
                closed_at_drain_timeout = stats.closed_at_drain_timeout,
                "shard stopped"
            );
            last.push(stats);
        }
        self.stop_services();
        for (name, steering) in &self.programs {
            tracing::info!(interface = %name, counters = ?steering.counters()?, "detaching XDP steering");
        }
        Ok(last)
    }

    fn stop_services(&mut self) {
        if let Some(checker) = self.checker.take() {
            checker.stop();
        }
        self.admin_stop.store(true, Ordering::Relaxed);
        if let Some(admin) = self.admin.take() {
            admin.join();
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        for slot in &self.shards {
            slot.handle.control.set(Command::Stop);
        }
        for slot in self.shards.drain(..) {
            let _ = slot.handle.thread.join();
        }
        self.stop_services();
    }
}

/// `Err` naming what `new` changes that needs a restart.
fn restart_needed(old: &Config, new: &Config) -> Result<(), String> {
    let mut changed = Vec::new();
    if old.interfaces != new.interfaces {
        changed.push("[[interfaces]] (interfaces, queues, cores, XDP and UMEM settings)");
    }
    if old.admin != new.admin {
        changed.push("[admin]");
    }
    if old.logging != new.logging {
        changed.push("[logging]");
    }
    if changed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} changed: that needs a restart (the running config stays)\n",
            changed.join(", ")
        ))
    }
}

/// The keys of `config`'s `[cluster] key_file`, if it names one.
fn cluster_keys(config: &Config) -> Result<Option<Vec<Secret>>, Error> {
    let file = &config.cluster.key_file;
    if file.is_empty() {
        return Ok(None);
    }
    config::read_cluster_keys(Path::new(file))
        .map(Some)
        .map_err(|e| format!("cluster.key_file: {e}").into())
}

/// A shard's own secret (its map seed, and its ISN and cookie key without
/// a cluster key).
fn secret(secrets: Secrets, shard: usize) -> std::io::Result<Secret> {
    match secrets {
        Secrets::Fixed(seed) => Ok(Secret([seed.wrapping_add(shard as u8); 16])),
        Secrets::Random => {
            use std::io::Read;
            let mut secret = [0u8; 16];
            std::fs::File::open("/dev/urandom")?.read_exact(&mut secret)?;
            Ok(Secret(secret))
        }
    }
}

/// Tells systemd (`Type=notify`) about our state, if it listens
/// (`$NOTIFY_SOCKET`); the sd_notify protocol is a datagram of
/// `KEY=VALUE` lines.
pub fn notify(state: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().to_string();
    let address = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(&path),
    };
    if let (Ok(socket), Ok(address)) = (UnixDatagram::unbound(), address) {
        let _ = socket.send_to_addr(state.as_bytes(), &address);
    }
}

/// CLOCK_MONOTONIC in µs (sd_notify's `MONOTONIC_USEC`).
fn monotonic_usec() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
        .unwrap_or(0)
}
