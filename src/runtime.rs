//! One running lastack, built from a config: the steering program on each
//! interface, a shard per rx queue (each building its engine and io_uring
//! on its own thread), the health checkers and the admin endpoint.
//! `lastack run` and the integration tests start lastack through here, so
//! they run the same wiring.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::admin::AdminState;
use crate::config::{Config, Interface};
use crate::link::xdp::{SteerCounters, Steering};
use crate::link::xsk::XskSocket;
use crate::proxy::UpstreamPlan;
use crate::shard::{ListenerPlan, Serve, Shard, ShardHandle, ShardPlan, ShardStats};
use crate::tcp::{Secret, TcpConfig};
use crate::upstream::pool::HealthBoard;

/// A running instance.
pub struct Runtime {
    shards: Vec<ShardHandle>,
    /// Steering programs by interface (detached when dropped).
    programs: Vec<(String, Steering)>,
    board: Arc<HealthBoard>,
    /// Stops the checkers and the admin endpoint.
    stop: Arc<AtomicBool>,
    checkers: Vec<JoinHandle<()>>,
    admin: Option<JoinHandle<()>>,
    admin_state: Arc<AdminState>,
}

/// How the shards' secrets are chosen.
#[derive(Debug, Clone, Copy)]
pub enum Secrets {
    /// From the kernel's CSPRNG (production).
    Random,
    /// Derived from a fixed seed (tests: reproducible ISNs and cookies).
    Fixed(u8),
}

impl Runtime {
    /// Builds and starts everything `config` describes, in the calling
    /// thread's network namespace.
    pub fn start(config: &Config, secrets: Secrets) -> Result<Self, Box<dyn std::error::Error>> {
        if config.interfaces.is_empty() {
            return Err("no [[interfaces]] configured: nothing to serve".into());
        }
        let total_shards: usize = config.interfaces.iter().map(|i| i.queues as usize).sum();
        let listeners = ListenerPlan::all(config, total_shards);
        let proxies = listeners.iter().any(|l| matches!(l.serve, Serve::Proxy(_)));
        let tcp = TcpConfig::from(&config.tcp);
        let board = Arc::new(HealthBoard::new(&config.pools));
        let stop = Arc::new(AtomicBool::new(false));
        // Each shard's engine holds its share of every listener's limit,
        // plus room for the handshakes a listener queues: a connection over
        // a listener's limit must still be established to get its RST.
        let queued = (tcp.syn_backlog + tcp.accept_backlog) * config.listeners.len();
        let max_connections = config
            .listeners
            .iter()
            .map(|l| l.max_connections.div_ceil(total_shards.max(1) as u32) as usize)
            .sum::<usize>()
            + queued;
        let mut programs = Vec::new();
        let mut shards = Vec::new();
        for interface in &config.interfaces {
            let steering = Steering::load()?;
            for listener in &listeners {
                steering.add_listener(*listener.addr.ip(), listener.addr.port())?;
            }
            let first = shards.len();
            let plan = |socket: XskSocket, queue: u32| -> std::io::Result<ShardPlan> {
                let shard = first + queue as usize;
                Ok(ShardPlan {
                    socket,
                    tcp: tcp.clone(),
                    secret: secret(secrets, shard)?,
                    max_connections,
                    listeners: listeners.clone(),
                    busy_poll: *interface.busy_poll,
                    upstream: proxies
                        .then(|| UpstreamPlan::new(config, &board, shard, total_shards)),
                })
            };
            shards.extend(serve_interface(interface, steering, plan, &mut programs)?);
        }
        let checkers = crate::upstream::checker::spawn(&board, &config.pools, &stop);
        let admin_state = Arc::new(AdminState {
            shards: shards.iter().map(|h| Arc::clone(&h.stats)).collect(),
            xdp: Mutex::new(Vec::new()),
            board: Arc::clone(&board),
            pool_names: config.pools.iter().map(|p| p.name.clone()).collect(),
            started: std::time::Instant::now(),
        });
        let admin = if config.admin.enabled {
            let listen = *config.admin.listen;
            let handle = crate::admin::spawn(listen, Arc::clone(&admin_state), Arc::clone(&stop))
                .map_err(|e| format!("admin endpoint {listen}: {e}"))?;
            tracing::info!(%listen, "admin endpoint: GET /metrics, GET /metrics.json");
            Some(handle)
        } else {
            None
        };
        Ok(Self {
            shards,
            programs,
            board,
            stop,
            checkers,
            admin,
            admin_state,
        })
    }

    /// The shards' latest published counters.
    pub fn shard_stats(&self) -> Vec<ShardStats> {
        self.shards.iter().map(ShardHandle::snapshot).collect()
    }

    pub fn board(&self) -> &Arc<HealthBoard> {
        &self.board
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

    /// Stops the shards (resetting what they still serve), the checkers
    /// and the admin endpoint, and detaches the steering programs; returns
    /// the shards' last counters.
    pub fn stop(mut self) -> Result<Vec<ShardStats>, Box<dyn std::error::Error>> {
        for handle in &self.shards {
            handle.stop.store(true, Ordering::Relaxed);
        }
        let mut last = Vec::new();
        for handle in std::mem::take(&mut self.shards) {
            let stats = handle.thread.join().map_err(|_| "a shard panicked")?;
            tracing::info!(
                queue = stats.queue,
                rx = stats.rx_frames,
                tx = stats.tx_frames,
                connections = stats.tcp.connections_opened,
                proxied = stats.proxy.sessions_opened,
                time_wait = stats.time_wait,
                slots = stats.slots_created,
                "shard stopped"
            );
            last.push(stats);
        }
        self.stop.store(true, Ordering::Relaxed);
        for checker in self.checkers.drain(..) {
            let _ = checker.join();
        }
        if let Some(admin) = self.admin.take() {
            let _ = admin.join();
        }
        for (name, steering) in &self.programs {
            tracing::info!(interface = %name, counters = ?steering.counters()?, "detaching XDP steering");
        }
        Ok(last)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        for handle in &self.shards {
            handle.stop.store(true, Ordering::Relaxed);
        }
        for handle in self.shards.drain(..) {
            let _ = handle.thread.join();
        }
        self.stop.store(true, Ordering::Relaxed);
        for checker in self.checkers.drain(..) {
            let _ = checker.join();
        }
        if let Some(admin) = self.admin.take() {
            let _ = admin.join();
        }
    }
}

/// Attaches `steering` to `interface`, then for each of its queues binds
/// an AF_XDP socket, registers it with the program and starts a shard from
/// `plan`; the program joins `programs`.
fn serve_interface(
    interface: &Interface,
    mut steering: Steering,
    plan: impl Fn(XskSocket, u32) -> std::io::Result<ShardPlan>,
    programs: &mut Vec<(String, Steering)>,
) -> Result<Vec<ShardHandle>, Box<dyn std::error::Error>> {
    let ifindex = nix::net::if_::if_nametoindex(interface.name.as_str())
        .map_err(|e| format!("interface {}: {e}", interface.name))?;
    steering.attach(ifindex, interface.xdp_mode)?;
    let frames = std::num::NonZeroU32::new(interface.umem_frames).expect("validated");
    let mut shards = Vec::new();
    for queue in 0..interface.queues {
        let socket = XskSocket::bind_with_frame_size(
            &interface.name,
            queue,
            frames,
            interface.frame_size,
            interface.bind_mode,
        )?;
        steering.register_socket(queue, socket.fd())?;
        let core = interface.cores.get(queue as usize).map(|&c| c as usize);
        shards.push(Shard::spawn(plan(socket, queue)?, core)?);
    }
    tracing::info!(interface = %interface.name, mode = ?interface.xdp_mode, queues = interface.queues, "serving");
    programs.push((interface.name.clone(), steering));
    Ok(shards)
}

/// A shard's ISN and cookie secret.
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
