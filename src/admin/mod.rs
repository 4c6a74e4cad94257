//! The admin endpoint, on kernel TCP (not the VIP), served by `tiny_http`
//! on one thread:
//! - `GET /metrics`: Prometheus text exposition (format 0.0.4);
//! - `GET /metrics.json`: the same samples as JSON (see
//!   [`lastack_tools::metrics`]), what `lastack stats`, the demo, the tests
//!   and the benchmark read.
//!
//! Both are rendered from the declarations in [`metrics`].

pub mod metrics;

use std::io;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lastack_tools::metrics::Exposition;

use crate::link::xdp::SteerCounters;
use crate::shard::ShardStats;
use crate::upstream::pool::HealthBoard;
use metrics::{BackendView, PoolView, Snapshot};

/// What the endpoint reads: the shards' published snapshots, the XDP
/// counters (refreshed by the main thread), the health board.
pub struct AdminState {
    pub shards: Vec<Arc<Mutex<ShardStats>>>,
    pub xdp: Mutex<Vec<(String, SteerCounters)>>,
    pub board: Arc<HealthBoard>,
    /// Pool names, in config order (the board's indexes).
    pub pool_names: Vec<String>,
    pub started: Instant,
}

impl AdminState {
    /// Every metric now.
    pub fn collect(&self) -> Exposition {
        let shards: Vec<ShardStats> = self
            .shards
            .iter()
            .map(|s| s.lock().expect("stats lock").clone())
            .collect();
        let xdp = self.xdp.lock().expect("xdp lock").clone();
        let pools: Vec<PoolView> = self
            .pool_names
            .iter()
            .enumerate()
            .map(|(p, name)| PoolView {
                name: name.clone(),
                backends: self
                    .board
                    .backends(p)
                    .iter()
                    .enumerate()
                    .map(|(i, b)| BackendView {
                        address: b.address,
                        up: self.board.is_up(p, i),
                        accepts_new: self.board.accepts(p, i),
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
        })
    }
}

/// Serves until `stop`.
pub fn spawn(
    listen: SocketAddrV4,
    state: Arc<AdminState>,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    let server = tiny_http::Server::http(listen).map_err(io::Error::other)?;
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match server.recv_timeout(Duration::from_millis(100)) {
                    Ok(Some(request)) => {
                        if let Err(e) = answer(request, &state) {
                            tracing::debug!("admin request: {e}");
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!("admin endpoint: {e}"),
                }
            }
        })
}

fn answer(request: tiny_http::Request, state: &AdminState) -> io::Result<()> {
    use tiny_http::{Header, Method, Response};
    let content = |kind: &str| {
        Header::from_bytes(&b"Content-Type"[..], kind.as_bytes()).expect("a valid header")
    };
    if *request.method() != Method::Get {
        let response = Response::from_string("GET only\n").with_status_code(405);
        return request.respond(response);
    }
    let response = match request.url() {
        "/metrics" => Response::from_string(state.collect().to_prometheus_text())
            .with_header(content("text/plain; version=0.0.4; charset=utf-8")),
        "/metrics.json" => Response::from_string(
            serde_json::to_string(&state.collect()).map_err(io::Error::other)?,
        )
        .with_header(content("application/json")),
        "/" => Response::from_string(
            "lastack admin: GET /metrics (Prometheus text), GET /metrics.json (JSON)\n",
        ),
        _ => Response::from_string("not found\n").with_status_code(404),
    };
    request.respond(response)
}
