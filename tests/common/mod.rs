//! What the integration tests share beyond the test kit: lastack started
//! in-process from a TOML config, through the same runtime as `lastack
//! run`, on a test-kit topology; its counters; and the `lastack` binary.
#![allow(dead_code, unused_imports)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lastack::link::xdp::SteerCounters;
use lastack::runtime::{Runtime, Secrets};
use lastack::shard::ShardStats;
use lastack::upstream::pool::HealthBoard;
pub use lastack_testkit::netns::{privileged, unique_name, Family, Netns, Shape, Topology};
pub use lastack_testkit::{backend, client, pattern, process, wait};

/// The `lastack` binary of this build.
pub const LASTACK: &str = env!("CARGO_BIN_EXE_lastack");

/// lastack running in a topology's lastack namespace.
pub struct Lastack {
    pub topo: Topology,
    runtime: Option<Runtime>,
    /// The `[[interfaces]]` entry (and the rest the harness adds).
    queues: u32,
}

impl Lastack {
    /// Starts lastack on `topo`'s lastack veth with `queues` shards,
    /// serving `body` (TOML: listeners, pools, `[tcp]`, ...; the
    /// `[[interfaces]]` entry is written here, the admin endpoint is off
    /// unless `body` has an `[admin]` table). `{vip}` in `body` stands for
    /// the topology's VIP.
    pub fn start(topo: Topology, queues: u32, body: &str) -> Self {
        let toml = config_text(&topo, queues, body);
        let config = lastack::config::parse(&toml, Path::new("test.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{toml}"));
        // In lastack's namespace: the shard threads it spawns stay there,
        // so their backend sockets are created there.
        let runtime = topo
            .lastack
            .enter(|| Runtime::start(&config, Secrets::Fixed(9)).map_err(|e| e.to_string()))
            .unwrap_or_else(|e| panic!("lastack did not start: {e}\n{toml}"));
        Self {
            topo,
            runtime: Some(runtime),
            queues,
        }
    }

    fn runtime(&self) -> &Runtime {
        self.runtime.as_ref().expect("running")
    }

    /// The whole config file for `body` (as [`Lastack::start`] writes it).
    pub fn config_text(&self, body: &str) -> String {
        config_text(&self.topo, self.queues, body)
    }

    /// Reloads with `body` (in lastack's namespace, where the checkers it
    /// starts must run), then waits until every shard has taken it.
    pub fn reload(&mut self, body: &str) -> Result<String, String> {
        let toml = self.config_text(body);
        let config =
            lastack::config::parse(&toml, Path::new("reload.toml")).map_err(|e| e.to_string())?;
        let runtime = self.runtime.as_mut().expect("running");
        let result = self.topo.lastack.enter(|| runtime.reload(config));
        if result.is_ok() {
            self.wait_generation();
        }
        result
    }

    /// Reloads from a file, as SIGHUP does.
    pub fn reload_from(&mut self, path: &Path) -> Result<String, String> {
        let runtime = self.runtime.as_mut().expect("running");
        self.topo.lastack.enter(|| runtime.reload_from(path))
    }

    /// Waits until every shard runs the latest config generation.
    pub fn wait_generation(&self) {
        let generation = self.runtime().generation();
        self.wait_for("every shard took the reload", Duration::from_secs(5), |s| {
            s.iter().all(|s| s.config_generation == generation)
        });
    }

    /// One round of the runtime's supervision (in lastack's namespace,
    /// where a restarted shard must bind its queue).
    pub fn supervise(&mut self) {
        let runtime = self.runtime.as_mut().expect("running");
        self.topo.lastack.enter(|| runtime.supervise());
    }

    /// The runtime's counters and flags (what the admin endpoint shows).
    pub fn admin(&self) -> Arc<lastack::admin::AdminState> {
        Arc::clone(self.runtime().admin())
    }

    /// Injects a panic into shard `shard`.
    pub fn inject_fault(&self, shard: usize) {
        self.runtime().inject_fault(shard);
    }

    /// `vip:port`.
    pub fn vip(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.topo.vip, port)
    }

    /// Backend `i`'s address at `port`.
    pub fn backend_addr(&self, i: usize, port: u16) -> SocketAddr {
        SocketAddr::new(self.topo.backend_addrs[i], port)
    }

    /// A test backend on backend address `i`.
    pub fn backend(&self, i: usize, port: u16, behaviour: backend::Behaviour) -> backend::Server {
        backend::Server::start(self.topo.backends(), self.backend_addr(i, port), behaviour)
    }

    /// Runs `f` in the clients' namespace.
    pub fn client<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.topo.client(f)
    }

    /// The steering program's counters (the one interface).
    pub fn steering_counters(&self) -> SteerCounters {
        self.runtime().steering_counters()[0].1
    }

    pub fn board(&self) -> Arc<HealthBoard> {
        self.runtime().board()
    }

    /// Every shard's latest published counters.
    pub fn stats(&self) -> Vec<ShardStats> {
        self.runtime().shard_stats()
    }

    /// Waits until snapshots published after this call satisfy `done`
    /// (bounded); returns them.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[ShardStats]) -> bool,
    ) -> Vec<ShardStats> {
        let since: Vec<u64> = self.stats().iter().map(|s| s.published).collect();
        wait::until(what, timeout, || {
            let stats = self.stats();
            let fresh = stats.iter().zip(&since).all(|(s, &t)| s.published > t + 1);
            if fresh && done(&stats) {
                Ok(stats)
            } else {
                Err(stats)
            }
        })
    }

    /// Waits until every connection and session has finished (TIME-WAIT
    /// entries aside), as published after this call.
    ///
    /// Handshakes still in SYN-RECEIVED are left out: on a multi-queue veth
    /// the client kernel sends a socketless reply (the reset that answers a
    /// SYN-ACK for a connect it abandoned) on the tx queue of the flow's
    /// dissected hash, not of the socket's random one, so with two shards it
    /// can land on the shard that does not hold the handshake (a NIC's RSS
    /// hashes both alike). Such a half-open ends at its own bound, the
    /// SYN-ACK retries (`synack_retries`, tested in tcp_states). With more
    /// than one shard, LAST-ACK is left out for the same reason: the
    /// client's last word on a connection it dropped (wrk stopping) — the
    /// reset from a closed socket, or the ACK from a TIME-WAIT one — is
    /// socketless too, and may reach the other shard, whose listener
    /// ignores an RST (seen once in a run here: 3 of 3,208 connections left
    /// in LAST-ACK, the resets on shard 0). Such a connection ends at its
    /// retransmission limit.
    pub fn wait_quiet(&self, timeout: Duration) -> Vec<ShardStats> {
        self.wait_for("every connection finished", timeout, |stats| {
            let last_ack = if stats.len() > 1 {
                in_state(stats, "LAST-ACK")
            } else {
                0
            };
            stats.iter().map(|s| s.connections).sum::<usize>()
                == in_state(stats, "SYN-RECEIVED") + last_ack
                && stats
                    .iter()
                    .all(|s| s.served == 0 && s.proxy.sessions_active == 0)
        })
    }

    /// Waits for quiet (panicking with the counters if it never comes),
    /// then stops lastack (the topology stays until drop); returns every
    /// shard's last counters.
    pub fn stop_all(&mut self) -> Vec<ShardStats> {
        self.wait_quiet(Duration::from_secs(10));
        self.runtime
            .take()
            .expect("running")
            .stop()
            .unwrap_or_else(|e| panic!("stopping: {e}"))
    }

    /// [`Lastack::stop_all`], as one shard's counters ([`total`]).
    pub fn stop(&mut self) -> ShardStats {
        total(&self.stop_all())
    }
}

/// Connections of the engine in `state` (RFC 9293 name), over every shard.
pub fn in_state(stats: &[ShardStats], state: &str) -> usize {
    stats
        .iter()
        .flat_map(|s| &s.states)
        .filter(|(name, _)| *name == state)
        .map(|(_, n)| n)
        .sum()
}

/// Every shard's counters as one: with several shards, their totals (the
/// engine's own [`ShardStats::tcp`] counters are left zero then: read them
/// per shard).
pub fn total(all: &[ShardStats]) -> ShardStats {
    let mut total = all.first().expect("a shard").clone();
    for s in &all[1..] {
        total.tcp = Default::default();
        total.rx_frames += s.rx_frames;
        total.tx_frames += s.tx_frames;
        total.connections += s.connections;
        total.slots_in_use += s.slots_in_use;
        total.slots_held += s.slots_held;
        total.served += s.served;
        total.time_wait += s.time_wait;
        total.buffer_lent_bytes += s.buffer_lent_bytes;
        total.buffer_held_bytes += s.buffer_held_bytes;
        total.proxy += &s.proxy;
        total.listeners.extend(s.listeners.iter().cloned());
    }
    total
}

/// The config file for `body` on `topo` with `queues` shards: the
/// `[[interfaces]]` entry is written here, the admin endpoint is off unless
/// `body` has an `[admin]` table; `{vip}` in `body` stands for the VIP
/// (of the topology's family), `{vip4}` and `{vip6}` for that of each.
fn config_text(topo: &Topology, queues: u32, body: &str) -> String {
    let body = body
        .replace("{vip}", &topo.vip.to_string())
        .replace("{vip4}", &topo.vip_of(Family::V4).to_string())
        .replace("{vip6}", &topo.vip_of(Family::V6).to_string());
    let admin = if body.contains("[admin]") {
        ""
    } else {
        "\n[admin]\nenabled = false\n"
    };
    // Services in-process need no pool (top-level keys come first).
    let pools = if body.contains("[[pools]]") {
        ""
    } else {
        "pools = []\n"
    };
    format!(
        "{pools}[[interfaces]]\nname = \"{}\"\nqueues = {queues}\numem_frames = 4096\n\n{body}\n{admin}",
        topo.lastack_if
    )
}

/// A config file for `lastack run` on `topo`, in a fresh temporary
/// directory (returned, to remove): `queues` shards, one listener `web` on
/// the VIP's port 80 in front of pool `p` with `backend`; `pool` lines go
/// in the pool's table before its backend, `rest` after everything.
pub fn run_config(
    topo: &Topology,
    queues: u32,
    backend: SocketAddr,
    pool: &str,
    rest: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(unique_name("lsrun"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("lastack.toml");
    std::fs::write(
        &config,
        format!(
            "[[interfaces]]\nname = \"{}\"\nqueues = {queues}\numem_frames = 1024\n\n\
             [[listeners]]\nname = \"web\"\nvip = \"{}\"\nport = 80\npool = \"p\"\n\n\
             [[pools]]\nname = \"p\"\n{pool}[[pools.backends]]\naddress = \"{backend}\"\n{rest}",
            topo.lastack_if, topo.vip
        ),
    )
    .unwrap();
    (dir, config)
}

/// Starts `lastack run -c config` in `ns` (stderr captured).
pub fn lastack_run(ns: &Netns, config: &Path) -> std::process::Child {
    process::spawn_in(
        ns,
        LASTACK,
        &["run", "-c", config.to_str().expect("a path")],
    )
}
