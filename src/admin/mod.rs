//! The admin endpoint, on kernel TCP (not the VIP): HTTP/1.1 by `hyper` on
//! a single-threaded runtime of its own thread, each connection a task
//! with a header timeout and an overall bound, so a slow or silent client
//! never holds up a scrape. (`tiny_http` was tried first: its thread pool
//! can queue a new connection behind silent ones and leave it unanswered.)
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
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lastack_tools::metrics::Exposition;

use crate::link::xdp::SteerCounters;
use crate::shard::ShardStats;
use crate::upstream::pool::HealthBoard;
use metrics::{BackendView, PoolView, Snapshot};

/// What a `POST` asks of the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Re-read the config file and apply it.
    Reload,
    /// Drain (or undrain) one backend of one pool.
    SetDraining {
        pool: String,
        backend: SocketAddr,
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
                        connections: b.count.active(),
                        opened: b.count.opened(),
                        went_down: b.went_down.load(Ordering::Relaxed),
                        went_up: b.went_up.load(Ordering::Relaxed),
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

/// The running endpoint: its thread ends when `stop` is set.
pub struct AdminServer {
    thread: JoinHandle<()>,
}

impl AdminServer {
    /// Waits for the thread (after `stop` was set).
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// How long a client may take to send its request's head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may last.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

type Body = http_body_util::Full<hyper::body::Bytes>;

/// Serves until `stop`; `control` says whether `POST`s are answered.
pub fn spawn(
    listen: SocketAddr,
    state: Arc<AdminState>,
    control: bool,
    stop: Arc<AtomicBool>,
) -> io::Result<AdminServer> {
    let listener = std::net::TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let thread = std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || runtime.block_on(serve(listener, state, control, stop)))?;
    Ok(AdminServer { thread })
}

async fn serve(
    listener: std::net::TcpListener,
    state: Arc<AdminState>,
    control: bool,
    stop: Arc<AtomicBool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!("admin endpoint: {e}");
            return;
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let accepted = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
        let stream = match accepted {
            Ok(Ok((stream, _))) => stream,
            Ok(Err(e)) => {
                // Out of descriptors, most likely: the connection stays
                // queued; try again in a moment rather than spin.
                tracing::debug!("admin accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(_) => continue,
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = Arc::clone(&state);
                async move { Ok::<_, std::convert::Infallible>(answer(request, state, control).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
                tracing::debug!("admin connection: {e}");
            }
        });
    }
}

async fn answer(
    request: hyper::Request<hyper::body::Incoming>,
    state: Arc<AdminState>,
    control: bool,
) -> hyper::Response<Body> {
    use hyper::Method;
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    match (request.method(), path.as_str()) {
        (&Method::GET, "/metrics") => respond(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            state.collect().to_prometheus_text(),
        ),
        (&Method::GET, "/metrics.json") => match serde_json::to_string(&state.collect()) {
            Ok(json) => respond(200, "application/json", json),
            Err(e) => text(500, format!("{e}\n")),
        },
        (&Method::GET, "/live") => health(state.live.load(Ordering::Relaxed), "live"),
        (&Method::GET, "/ready") => health(state.ready.load(Ordering::Relaxed), "ready"),
        (&Method::GET, "/") => text(200, USAGE.to_string()),
        (&Method::POST, _) if !control => text(403, "control is off ([admin] control)\n".into()),
        (&Method::POST, "/reload" | "/backends/drain" | "/backends/undrain") => {
            // The runtime answers from its own loop: wait off this thread.
            let asked = tokio::task::spawn_blocking(move || match path.as_str() {
                "/reload" => state.ask(Control::Reload),
                "/backends/drain" => backend_control(&state, &query, true),
                _ => backend_control(&state, &query, false),
            })
            .await;
            match asked {
                Ok(Ok(body)) => text(200, body),
                Ok(Err((status, body))) => text(status, body),
                Err(e) => text(500, format!("{e}\n")),
            }
        }
        (&Method::GET | &Method::POST, _) => text(404, "not found\n".into()),
        _ => text(405, "GET or POST\n".into()),
    }
}

const USAGE: &str = "lastack admin: GET /metrics, /metrics.json, /live, /ready; \
POST /reload, /backends/drain?pool=P&backend=ADDR, /backends/undrain?pool=P&backend=ADDR\n";

fn respond(status: u16, kind: &str, body: String) -> hyper::Response<Body> {
    hyper::Response::builder()
        .status(status)
        .header("Content-Type", kind)
        .body(Body::from(body))
        .expect("a valid response")
}

fn text(status: u16, body: String) -> hyper::Response<Body> {
    respond(status, "text/plain; charset=utf-8", body)
}

fn health(ok: bool, what: &str) -> hyper::Response<Body> {
    if ok {
        text(200, format!("{what}\n"))
    } else {
        text(503, format!("not {what}\n"))
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
