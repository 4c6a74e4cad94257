//! `lastack churn`: a connection-churn load generator on kernel sockets,
//! usable against any TCP service. Threads of edge-triggered epoll loops
//! keep `concurrency` flows going (closed loop), or start flows at a fixed
//! rate (open loop, latency counted from when each was due). A connection
//! carries one request/response (churn) or several (kept alive, like
//! neper's `tcp_rr`). It reports connections/s and requests/s, latency
//! percentiles of connect and of each request/response, errors by kind,
//! the client side's TIME-WAIT sockets and its own CPU use (so a run can
//! show it was not the bottleneck).

pub mod histogram;
pub mod server;
pub mod worker;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use histogram::Histogram;
use worker::{Progress, Worker};

/// Who closes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CloseOrder {
    /// Connect, send, read the whole response (`response` bytes), close.
    ClientFirst,
    /// Connect, send, read until the server closes.
    ServerFirst,
}

/// A churn run.
#[derive(Debug, Clone)]
pub struct ChurnConfig {
    pub targets: Vec<SocketAddr>,
    pub concurrency: usize,
    pub threads: usize,
    /// Stop starting flows after this long (unless `connections` first).
    pub duration: Option<Duration>,
    /// Stop after this many flows.
    pub connections: Option<u64>,
    pub request: usize,
    pub response: usize,
    pub close: CloseOrder,
    /// Request/response exchanges per connection: 1 is churn; more keep
    /// the connection alive between them (client-first only); 0 keeps it
    /// until the run stops.
    pub requests_per_connection: u32,
    /// Open loop: requests started per second (all threads; a new
    /// connection's first request is one of them).
    pub rate: Option<f64>,
    /// Source addresses, used in turn (ports chosen by the kernel at
    /// connect, `IP_BIND_ADDRESS_NO_PORT`).
    pub sources: Vec<IpAddr>,
    /// A flow not finished by then fails as a timeout.
    pub timeout: Duration,
    /// Set from outside (e.g. Ctrl-C) to end the run early.
    pub cancel: Option<std::sync::Arc<AtomicBool>>,
}

/// Failed flows by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Errors {
    pub refused: u64,
    pub reset: u64,
    pub timeout: u64,
    /// The server closed before the whole response.
    pub short_read: u64,
    /// No local port or address (`EADDRNOTAVAIL`, `EADDRINUSE`).
    pub address: u64,
    pub other: u64,
}

impl Errors {
    fn count(&mut self, error: &io::Error) {
        match error.raw_os_error() {
            Some(libc::ECONNREFUSED) => self.refused += 1,
            Some(libc::ECONNRESET) | Some(libc::EPIPE) => self.reset += 1,
            Some(libc::ETIMEDOUT) => self.timeout += 1,
            Some(libc::EADDRNOTAVAIL) | Some(libc::EADDRINUSE) => self.address += 1,
            _ => self.other += 1,
        }
    }

    fn add(&mut self, other: &Errors) {
        self.refused += other.refused;
        self.reset += other.reset;
        self.timeout += other.timeout;
        self.short_read += other.short_read;
        self.address += other.address;
        self.other += other.other;
    }

    pub fn total(&self) -> u64 {
        self.refused + self.reset + self.timeout + self.short_read + self.address + self.other
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Latency {
    fn of(h: &Histogram) -> Self {
        Self {
            p50_us: h.percentile(50.0),
            p90_us: h.percentile(90.0),
            p99_us: h.percentile(99.0),
            p999_us: h.percentile(99.9),
            max_us: h.max(),
            mean_us: h.mean(),
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub targets: Vec<String>,
    pub concurrency: usize,
    pub threads: usize,
    pub close: CloseOrder,
    pub request_bytes: usize,
    pub response_bytes: usize,
    /// 0: kept alive until the run stopped.
    pub requests_per_connection: u32,
    pub rate_target: Option<f64>,
    pub elapsed_s: f64,
    /// Request/response exchanges completed (with one request per
    /// connection, the connections).
    pub transactions: u64,
    /// Connections that carried all their requests.
    pub connections: u64,
    pub connections_per_s: f64,
    pub requests_per_s: f64,
    pub connect: Latency,
    /// Each request, from when it was due to its whole response (the
    /// first one on a connection includes the connect).
    pub transaction: Latency,
    pub errors: Errors,
    /// TCP sockets in TIME-WAIT in this network namespace at the end.
    pub client_time_wait: u64,
    /// CPU the load generator used, in cores (user + system / wall).
    pub cpu_cores: f64,
    /// CPU-µs the load generator spent per transaction.
    pub cpu_us_per_transaction: f64,
    /// Of which in the kernel (system time): its sockets' TCP, and on veth
    /// the peers' receive processing that runs on the sender's CPU.
    pub kernel_cpu_us_per_transaction: f64,
}

/// Sockets in TIME-WAIT in the current network namespace (state 06 in
/// /proc/net/tcp).
pub fn time_wait_sockets() -> u64 {
    // thread-self: the calling thread's namespace (a test thread may have
    // entered another one than the process's main thread). IPv4 and IPv6.
    ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"]
        .iter()
        .map(|table| {
            std::fs::read_to_string(table)
                .map(|text| {
                    text.lines()
                        .skip(1)
                        .filter(|l| l.split_whitespace().nth(3) == Some("06"))
                        .count() as u64
                })
                .unwrap_or(0)
        })
        .sum()
}

/// CPU time of this process: (user, system).
fn cpu_time() -> (Duration, Duration) {
    use nix::sys::resource::{getrusage, UsageWho};
    use nix::sys::time::TimeValLike;
    getrusage(UsageWho::RUSAGE_SELF).map_or((Duration::ZERO, Duration::ZERO), |usage| {
        let micros =
            |t: nix::sys::time::TimeVal| Duration::from_micros(t.num_microseconds() as u64);
        (micros(usage.user_time()), micros(usage.system_time()))
    })
}

/// Runs `config`; `on_progress` is called about once a second with
/// (elapsed, completed, errors) while it runs.
pub fn run(
    config: &ChurnConfig,
    mut on_progress: impl FnMut(Duration, u64, u64),
) -> io::Result<Report> {
    if config.targets.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no target"));
    }
    if config.requests_per_connection != 1 && config.close == CloseOrder::ServerFirst {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "kept-alive connections (requests per connection other than 1) need the client to close first",
        ));
    }
    // A connection binds a source of its target's family.
    if !config.sources.is_empty() {
        for target in &config.targets {
            if !config
                .sources
                .iter()
                .any(|s| s.is_ipv6() == target.is_ipv6())
            {
                let family = if target.is_ipv6() { "IPv6" } else { "IPv4" };
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("target {target} is {family}, but no --source is"),
                ));
            }
        }
    }
    let threads = config.threads.clamp(1, config.concurrency.max(1));
    let stop = AtomicBool::new(false);
    let budget = config.connections.map(AtomicU64::new);
    let progress = Progress::default();
    let cpu_start = cpu_time();
    let started = Instant::now();
    let workers: Vec<Worker<'_>> = (0..threads)
        .map(|t| {
            let slots =
                config.concurrency / threads + usize::from(t < config.concurrency % threads);
            Worker::new(config, slots, t)
        })
        .collect::<io::Result<_>>()?;
    let rate = config.rate.map(|r| r / threads as f64);
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = workers
            .into_iter()
            .map(|w| {
                let (stop, budget, progress) = (&stop, budget.as_ref(), &progress);
                scope.spawn(move || w.run(stop, budget, progress, rate))
            })
            .collect();
        let mut last = Instant::now();
        while !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
            let cancelled = config
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::Relaxed));
            if cancelled || config.duration.is_some_and(|d| started.elapsed() >= d) {
                stop.store(true, Ordering::Relaxed);
            }
            if last.elapsed() >= Duration::from_secs(1) {
                last = Instant::now();
                on_progress(
                    started.elapsed(),
                    progress.completed.load(Ordering::Relaxed),
                    progress.errors.load(Ordering::Relaxed),
                );
            }
        }
        handles
            .into_iter()
            .map(|h| h.join().expect("a churn thread panicked"))
            .collect::<Vec<_>>()
    });
    let elapsed = started.elapsed();
    let (user_end, system_end) = cpu_time();
    let system = system_end.saturating_sub(cpu_start.1);
    let cpu = (user_end + system_end).saturating_sub(cpu_start.0 + cpu_start.1);
    let (mut connect, mut transaction) = (Histogram::default(), Histogram::default());
    let mut errors = Errors::default();
    let (mut completed, mut connections) = (0, 0);
    for r in &results {
        connect.merge(&r.connect);
        transaction.merge(&r.transaction);
        errors.add(&r.errors);
        completed += r.completed;
        connections += r.connections;
    }
    let secs = elapsed.as_secs_f64().max(1e-9);
    Ok(Report {
        targets: config.targets.iter().map(|t| t.to_string()).collect(),
        concurrency: config.concurrency,
        threads,
        close: config.close,
        request_bytes: config.request,
        response_bytes: config.response,
        requests_per_connection: config.requests_per_connection,
        rate_target: config.rate,
        elapsed_s: secs,
        transactions: completed,
        connections,
        connections_per_s: connections as f64 / secs,
        requests_per_s: completed as f64 / secs,
        connect: Latency::of(&connect),
        transaction: Latency::of(&transaction),
        errors,
        client_time_wait: time_wait_sockets(),
        cpu_cores: cpu.as_secs_f64() / secs,
        cpu_us_per_transaction: per_transaction(cpu, completed),
        kernel_cpu_us_per_transaction: per_transaction(system, completed),
    })
}

/// CPU-µs per transaction (0 when none completed).
fn per_transaction(cpu: Duration, completed: u64) -> f64 {
    if completed == 0 {
        0.0
    } else {
        cpu.as_secs_f64() * 1e6 / completed as f64
    }
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

impl Report {
    /// The human-readable report.
    pub fn text(&self) -> String {
        let close = match self.close {
            CloseOrder::ClientFirst => "client-first",
            CloseOrder::ServerFirst => "server-first",
        };
        let mut out = format!(
            "churn → {}: {} flows on {} threads, {close}, {} B → {} B, {:.1} s{}\n",
            self.targets.join(", "),
            self.concurrency,
            self.threads,
            self.request_bytes,
            self.response_bytes,
            self.elapsed_s,
            self.rate_target
                .map_or(String::new(), |r| format!(", open loop at {r:.0}/s"))
        );
        if self.requests_per_connection == 1 {
            out += &format!(
                "transactions: {} ({:.0} connections/s), errors: {}\n",
                self.transactions,
                self.connections_per_s,
                self.errors.total()
            );
        } else {
            let per = match self.requests_per_connection {
                0 => "until the end".to_string(),
                n => n.to_string(),
            };
            out += &format!(
                "requests: {} ({:.0}/s) on {} connections ({:.0}/s; requests per connection: {per}), errors: {}\n",
                self.transactions,
                self.requests_per_s,
                self.connections,
                self.connections_per_s,
                self.errors.total()
            );
        }
        out += "latency (ms)        p50      p90      p99    p99.9      max\n";
        let exchange = if self.requests_per_connection == 1 {
            "transaction"
        } else {
            "request"
        };
        for (name, l) in [("connect", &self.connect), (exchange, &self.transaction)] {
            out += &format!(
                "  {name:<12} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
                ms(l.p50_us),
                ms(l.p90_us),
                ms(l.p99_us),
                ms(l.p999_us),
                ms(l.max_us)
            );
        }
        let e = &self.errors;
        out += &format!(
            "errors: refused {}, reset {}, timeout {}, short read {}, address {}, other {}\n",
            e.refused, e.reset, e.timeout, e.short_read, e.address, e.other
        );
        out += &format!("client TIME-WAIT sockets: {}\n", self.client_time_wait);
        out += &format!(
            "load generator CPU: {:.2} cores, {:.1} µs per transaction ({:.1} in the kernel)\n",
            self.cpu_cores, self.cpu_us_per_transaction, self.kernel_cpu_us_per_transaction
        );
        out
    }
}
