//! The admin endpoint: a small HTTP server on kernel TCP (not the VIP)
//! serving `GET /metrics` (Prometheus text exposition, see [`metrics`]).
//! One thread, one request per connection, bounded reads with a timeout:
//! a slow or hostile admin client cannot hold it for long.

pub mod metrics;

use std::io::{self, Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
    /// The exposition now.
    pub fn render(&self) -> String {
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
        metrics::render(&Snapshot {
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
    let listener = TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Err(e) = answer(stream, &state) {
                            tracing::debug!("admin request: {e}");
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })
}

fn answer(mut stream: TcpStream, state: &AdminState) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut request = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&chunk[..n]);
        if request.len() > 8192 {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "too long\n",
            );
        }
    }
    let line = String::from_utf8_lossy(&request);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    match (method, path) {
        ("GET", "/metrics") => respond(
            &mut stream,
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            &state.render(),
        ),
        ("GET", "/") => respond(
            &mut stream,
            "200 OK",
            "text/plain; charset=utf-8",
            "lastack admin: GET /metrics (Prometheus text format)\n",
        ),
        ("GET", _) => respond(&mut stream, "404 Not Found", "text/plain", "not found\n"),
        _ => respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n",
        ),
    }
}

fn respond(stream: &mut TcpStream, status: &str, kind: &str, body: &str) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

/// Fetches `/metrics` from a running instance (for `lastack stats`).
pub fn fetch(admin: SocketAddrV4) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&admin.into(), Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: lastack\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an HTTP response"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(io::Error::other(
            head.lines().next().unwrap_or("").to_string(),
        ));
    }
    Ok(body.to_string())
}

/// The exposition as a readable table: one line per metric family with
/// its total over all label sets, then each labelled sample indented.
pub fn table(exposition: &str) -> String {
    let mut out = String::new();
    let mut current = String::new();
    let mut samples: Vec<(String, f64)> = Vec::new();
    let flush = |out: &mut String, name: &str, samples: &mut Vec<(String, f64)>| {
        if name.is_empty() {
            return;
        }
        let total: f64 = samples.iter().map(|s| s.1).sum();
        out.push_str(&format!(
            "{:<48} {:>14}\n",
            name.trim_start_matches("lastack_"),
            fmt_value(total)
        ));
        if samples.len() > 1 || samples.first().is_some_and(|s| !s.0.is_empty()) {
            for (labels, v) in samples.iter().filter(|s| s.1 != 0.0) {
                out.push_str(&format!("    {:<44} {:>14}\n", labels, fmt_value(*v)));
            }
        }
        samples.clear();
    };
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            flush(&mut out, &current, &mut samples);
            current = rest.split(' ').next().unwrap_or("").to_string();
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or((line, "0"));
        let labels = series
            .split_once('{')
            .map(|(_, l)| l.trim_end_matches('}').replace('"', ""))
            .unwrap_or_default();
        samples.push((labels, value.parse().unwrap_or(0.0)));
    }
    flush(&mut out, &current, &mut samples);
    out
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.1}")
    }
}
