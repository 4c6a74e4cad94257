//! The admin endpoint, on kernel TCP (not the VIP), served by `tiny_http`
//! on a few threads (a slow or silent client never holds up a scrape:
//! `tiny_http` reads requests on its own threads and hands over only
//! complete ones):
//!
//! | request | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text exposition (format 0.0.4) |
//! | `GET /metrics.json` | the same samples as JSON (see [`lastack_tools::metrics`]) |
//! | `GET /live` | 200 while lastack runs its shards, 503 if one is lost for good |
//! | `GET /ready` | 200 while it takes new connections, 503 while it starts, drains or misses a shard |
//! | `POST /reload` | re-reads the config file; 200 with a summary, 400 with the file:line:column errors |
//! | `POST /backends/drain?pool=P&backend=ADDR` | no new connections to that backend (until undrained or the next reload) |
//! | `POST /backends/undrain?pool=P&backend=ADDR` | new connections again |
//!
//! `POST` requests go to the runtime's loop, which owns the config; they
//! answer 403 when `[admin] control = false`. Metrics are rendered from the
//! declarations in [`metrics`].

pub mod metrics;

use std::io;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lastack_tools::metrics::Exposition;

use crate::link::xdp::SteerCounters;
use crate::shard::ShardStats;
use crate::upstream::pool::HealthBoard;
use metrics::{BackendView, PoolView, Snapshot};

/// Threads answering requests.
const THREADS: usize = 4;

/// What a `POST` asks of the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Re-read the config file and apply it.
    Reload,
    /// Drain (or undrain) one backend of one pool.
    SetDraining {
        pool: String,
        backend: SocketAddrV4,
        draining: bool,
    },
}

/// A control request and where its answer goes (`Ok`: a summary; `Err`:
/// what was wrong).
#[derive(Debug)]
pub struct ControlRequest {
    pub control: Control,
    pub reply: mpsc::Sender<Result<String, String>>,
}

/// Counters the runtime keeps (not per shard).
#[derive(Debug, Default)]
pub struct RuntimeCounters {
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// Shards restarted after their thread panicked.
    pub shard_restarts: AtomicU64,
}

/// What the endpoint reads: the shards' published snapshots, the XDP
/// counters and the health board (both refreshed by the runtime), the
/// runtime's flags and counters.
pub struct AdminState {
    pub shards: Mutex<Vec<Arc<Mutex<ShardStats>>>>,
    pub xdp: Mutex<Vec<(String, SteerCounters)>>,
    pub board: Mutex<Arc<HealthBoard>>,
    pub started: Instant,
    /// Takes new connections (serving, not draining, every shard alive).
    pub ready: AtomicBool,
    /// Runs every shard it should (false once one is lost for good).
    pub live: AtomicBool,
    pub draining: AtomicBool,
    pub counters: RuntimeCounters,
    /// Where `POST` requests go (`None`: control is off, or no runtime loop
    /// listens).
    pub control: Mutex<Option<mpsc::Sender<ControlRequest>>>,
}

impl AdminState {
    pub fn new(shards: Vec<Arc<Mutex<ShardStats>>>, board: Arc<HealthBoard>) -> Self {
        Self {
            shards: Mutex::new(shards),
            xdp: Mutex::new(Vec::new()),
            board: Mutex::new(board),
            started: Instant::now(),
            ready: AtomicBool::new(false),
            live: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            counters: RuntimeCounters::default(),
            control: Mutex::new(None),
        }
    }

    /// Every metric now.
    pub fn collect(&self) -> Exposition {
        let shards: Vec<ShardStats> = self
            .shards
            .lock()
            .expect("shards lock")
            .iter()
            .map(|s| s.lock().expect("stats lock").clone())
            .collect();
        let xdp = self.xdp.lock().expect("xdp lock").clone();
        let board = Arc::clone(&self.board.lock().expect("board lock"));
        let pools: Vec<PoolView> = board
            .pool_names()
            .iter()
            .enumerate()
            .map(|(p, name)| PoolView {
                name: name.clone(),
                backends: board
                    .backends(p)
                    .iter()
                    .enumerate()
                    .map(|(i, b)| BackendView {
                        address: b.address,
                        up: board.is_up(p, i),
                        accepts_new: board.accepts(p, i),
                        connect_failures: b.connect_failures.load(Ordering::Relaxed),
                    })
                    .collect(),
            })
            .collect();
        metrics::collect(&Snapshot {
            shards: &shards,
            xdp: &xdp,
            pools: &pools,
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            runtime: &self.counters,
            ready: self.ready.load(Ordering::Relaxed),
            draining: self.draining.load(Ordering::Relaxed),
        })
    }

    /// Hands `control` to the runtime and waits (bounded) for its answer.
    fn ask(&self, control: Control) -> Result<String, (u16, String)> {
        let sender = self.control.lock().expect("control lock").clone();
        let Some(sender) = sender else {
            return Err((503, "no runtime takes control requests\n".into()));
        };
        let (reply, answer) = mpsc::channel();
        sender
            .send(ControlRequest { control, reply })
            .map_err(|_| (503, "the runtime is gone\n".to_string()))?;
        match answer.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(summary)) => Ok(summary),
            Ok(Err(error)) => Err((400, error)),
            Err(_) => Err((503, "the runtime did not answer\n".into())),
        }
    }
}

/// The running endpoint: its threads end when `stop` is set.
pub struct AdminServer {
    threads: Vec<JoinHandle<()>>,
}

impl AdminServer {
    /// Waits for the threads (after `stop` was set).
    pub fn join(self) {
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// Serves until `stop`; `control` says whether `POST`s are answered.
pub fn spawn(
    listen: SocketAddrV4,
    state: Arc<AdminState>,
    control: bool,
    stop: Arc<AtomicBool>,
) -> io::Result<AdminServer> {
    let server = Arc::new(tiny_http::Server::http(listen).map_err(io::Error::other)?);
    let threads = (0..THREADS)
        .map(|i| {
            let (server, state, stop) =
                (Arc::clone(&server), Arc::clone(&state), Arc::clone(&stop));
            std::thread::Builder::new()
                .name(format!("admin-{i}"))
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match server.recv_timeout(Duration::from_millis(100)) {
                            Ok(Some(request)) => {
                                if let Err(e) = answer(request, &state, control) {
                                    tracing::debug!("admin request: {e}");
                                }
                            }
                            Ok(None) => {}
                            Err(e) => tracing::debug!("admin endpoint: {e}"),
                        }
                    }
                })
        })
        .collect::<io::Result<Vec<_>>>()?;
    Ok(AdminServer { threads })
}

fn answer(request: tiny_http::Request, state: &AdminState, control: bool) -> io::Result<()> {
    use tiny_http::{Header, Method, Response};
    let content = |kind: &str| {
        Header::from_bytes(&b"Content-Type"[..], kind.as_bytes()).expect("a valid header")
    };
    let text = |status: u16, body: String| Response::from_string(body).with_status_code(status);
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let response = match (request.method(), path) {
        (Method::Get, "/metrics") => Response::from_string(state.collect().to_prometheus_text())
            .with_header(content("text/plain; version=0.0.4; charset=utf-8")),
        (Method::Get, "/metrics.json") => Response::from_string(
            serde_json::to_string(&state.collect()).map_err(io::Error::other)?,
        )
        .with_header(content("application/json")),
        (Method::Get, "/live") => health(state.live.load(Ordering::Relaxed), "live"),
        (Method::Get, "/ready") => health(state.ready.load(Ordering::Relaxed), "ready"),
        (Method::Get, "/") => text(200, USAGE.to_string()),
        (Method::Post, _) if !control => text(403, "control is off ([admin] control)\n".into()),
        (Method::Post, "/reload") => reply(state.ask(Control::Reload)),
        (Method::Post, "/backends/drain") => reply(backend_control(state, query, true)),
        (Method::Post, "/backends/undrain") => reply(backend_control(state, query, false)),
        (Method::Get, _) | (Method::Post, _) => text(404, "not found\n".into()),
        _ => text(405, "GET or POST\n".into()),
    };
    request.respond(response)
}

const USAGE: &str = "lastack admin: GET /metrics, /metrics.json, /live, /ready; \
POST /reload, /backends/drain?pool=P&backend=ADDR, /backends/undrain?pool=P&backend=ADDR\n";

fn health(ok: bool, what: &str) -> tiny_http::Response<io::Cursor<Vec<u8>>> {
    let (status, body) = if ok {
        (200, format!("{what}\n"))
    } else {
        (503, format!("not {what}\n"))
    };
    tiny_http::Response::from_string(body).with_status_code(status)
}

fn reply(result: Result<String, (u16, String)>) -> tiny_http::Response<io::Cursor<Vec<u8>>> {
    match result {
        Ok(body) => tiny_http::Response::from_string(body).with_status_code(200),
        Err((status, body)) => tiny_http::Response::from_string(body).with_status_code(status),
    }
}

/// `pool=P&backend=ADDR` to a drain or undrain request.
fn backend_control(
    state: &AdminState,
    query: &str,
    draining: bool,
) -> Result<String, (u16, String)> {
    let value = |key: &str| {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
    };
    let pool = value("pool").ok_or((400, "missing pool=\n".to_string()))?;
    let backend = value("backend")
        .and_then(|b| b.parse().ok())
        .ok_or((400, "missing or bad backend= (ADDRESS:PORT)\n".to_string()))?;
    state.ask(Control::SetDraining {
        pool,
        backend,
        draining,
    })
}
