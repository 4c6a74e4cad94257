//! `lastack demo`: the proxy in front of three backends, in network
//! namespaces it creates, driven by the churn load generator; prints where
//! TIME-WAIT ended up under each close policy. Everything is torn down at
//! the end, on error, and on Ctrl-C.
//!
//! ```text
//!  lsdemo-c (clients: lastack churn, 16 source addresses)
//!     │ veth, 2 queues
//!  lsdemo-l (lastack run -c config/demo.toml; XDP on lsdemo0, VIP 10.99.0.10)
//!     │ bridge lsdemo-br 10.98.0.1-4 (the pool's source addresses)
//!  lsdemo-b1/b2/b3 (lastack backend on 10.98.0.11-13:8080)
//! ```

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::churn::{self, ChurnConfig, CloseOrder, Report};
use crate::metrics::Exposition;

const CLIENTS: &str = "lsdemo-c";
const LASTACK: &str = "lsdemo-l";
const BACKENDS: [&str; 3] = ["lsdemo-b1", "lsdemo-b2", "lsdemo-b3"];
const VIP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 10);
const CLIENT_SOURCES: u8 = 16;

fn sh(args: &[&str]) -> io::Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn ns(name: &str, args: &[&str]) -> io::Result<()> {
    let mut full = vec!["ip", "netns", "exec", name];
    full.extend_from_slice(args);
    sh(&full)
}

/// Runs `f` on a thread inside namespace `name`.
fn in_ns<R: Send>(name: &str, f: impl FnOnce() -> R + Send) -> io::Result<R> {
    let path = format!("/var/run/netns/{name}");
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> io::Result<R> {
                let file = std::fs::File::open(&path)?;
                nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(io::Error::other)?;
                Ok(f())
            })
            .join()
            .map_err(|_| io::Error::other("a demo thread panicked"))?
    })
}

/// Namespaces and processes of the demo; dropped = torn down.
struct Demo {
    children: Vec<(String, Child)>,
}

impl Demo {
    fn spawn(&mut self, what: &str, netns: &str, args: &[&str]) -> io::Result<()> {
        let exe = std::env::current_exe()?;
        let child = Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        self.children.push((what.to_string(), child));
        Ok(())
    }

    /// Stops the processes named `what` (SIGTERM, by PID) and waits.
    fn stop(&mut self, what: &str) {
        let (stopping, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.children)
            .into_iter()
            .partition(|(w, _)| w == what);
        self.children = keep;
        for (_, mut child) in stopping {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        }
    }

    fn alive(&mut self, what: &str) -> io::Result<()> {
        for (w, child) in &mut self.children {
            if w == what {
                if let Some(status) = child.try_wait()? {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = io::Read::read_to_string(&mut e, &mut err);
                    }
                    return Err(io::Error::other(format!("{what} exited ({status}): {err}")));
                }
            }
        }
        Ok(())
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let all: Vec<String> = self.children.iter().map(|(w, _)| w.clone()).collect();
        for what in all {
            self.stop(&what);
        }
        teardown();
    }
}

fn teardown() {
    for name in [CLIENTS, LASTACK].iter().chain(BACKENDS.iter()) {
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(Stdio::null())
            .status();
    }
}

fn topology() -> io::Result<()> {
    teardown(); // leftovers of an interrupted run
    for name in [CLIENTS, LASTACK].iter().chain(BACKENDS.iter()) {
        sh(&["ip", "netns", "add", name])?;
        ns(name, &["ip", "link", "set", "lo", "up"])?;
    }
    // Clients ↔ lastack: two queues, so both shards get flows.
    sh(&[
        "ip",
        "link",
        "add",
        "lsdemo-c0",
        "netns",
        CLIENTS,
        "numtxqueues",
        "2",
        "numrxqueues",
        "2",
        "type",
        "veth",
        "peer",
        "name",
        "lsdemo0",
        "netns",
        LASTACK,
        "numtxqueues",
        "2",
        "numrxqueues",
        "2",
    ])?;
    ns(
        CLIENTS,
        &["ip", "addr", "add", "10.99.0.1/24", "dev", "lsdemo-c0"],
    )?;
    for i in 0..CLIENT_SOURCES {
        ns(
            CLIENTS,
            &[
                "ip",
                "addr",
                "add",
                &format!("10.99.1.{}/16", i + 1),
                "dev",
                "lsdemo-c0",
            ],
        )?;
    }
    ns(
        LASTACK,
        &["ip", "addr", "add", &format!("{VIP}/16"), "dev", "lsdemo0"],
    )?;
    ns(CLIENTS, &["ip", "link", "set", "lsdemo-c0", "up"])?;
    ns(LASTACK, &["ip", "link", "set", "lsdemo0", "up"])?;
    ns(
        CLIENTS,
        &[
            "ethtool",
            "-K",
            "lsdemo-c0",
            "tx",
            "off",
            "tso",
            "off",
            "gso",
            "off",
        ],
    )?;
    // Clients: 16 addresses × 64k ports, TIME-WAIT reuse as a load
    // generator needs, and no cap on TIME-WAIT sockets (so they count).
    ns(
        CLIENTS,
        &["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535"],
    )?;
    ns(CLIENTS, &["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"])?;
    ns(
        CLIENTS,
        &["sysctl", "-qw", "net.ipv4.tcp_max_tw_buckets=4000000"],
    )?;
    // lastack ↔ backends: a bridge in lastack's namespace.
    ns(
        LASTACK,
        &["ip", "link", "add", "lsdemo-br", "type", "bridge"],
    )?;
    for a in 1..=4 {
        ns(
            LASTACK,
            &[
                "ip",
                "addr",
                "add",
                &format!("10.98.0.{a}/24"),
                "dev",
                "lsdemo-br",
            ],
        )?;
    }
    ns(LASTACK, &["ip", "link", "set", "lsdemo-br", "up"])?;
    ns(LASTACK, &["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"])?;
    for (i, backend) in BACKENDS.iter().enumerate() {
        let (outside, inside) = (format!("lsdemo-p{}", i + 1), format!("lsdemo-q{}", i + 1));
        sh(&[
            "ip", "link", "add", &outside, "netns", LASTACK, "type", "veth", "peer", "name",
            &inside, "netns", backend,
        ])?;
        ns(
            LASTACK,
            &["ip", "link", "set", &outside, "master", "lsdemo-br"],
        )?;
        ns(LASTACK, &["ip", "link", "set", &outside, "up"])?;
        ns(
            backend,
            &[
                "ip",
                "addr",
                "add",
                &format!("10.98.0.{}/24", 11 + i),
                "dev",
                &inside,
            ],
        )?;
        ns(backend, &["ip", "link", "set", &inside, "up"])?;
    }
    Ok(())
}

fn metrics() -> io::Result<Exposition> {
    in_ns(LASTACK, || {
        crate::metrics::fetch(SocketAddr::from((Ipv4Addr::LOCALHOST, 9190)))
    })?
}

struct Row {
    order: &'static str,
    policy: &'static str,
    flows: usize,
    report: Report,
    lastack_tw: u64,
    client_tw: u64,
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// Runs the demo; `config` is `config/demo.toml`.
pub fn run(config: &Path, seconds: u64) -> io::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(io::Error::other(
            "the demo creates network namespaces: run it as root (sudo make demo)",
        ));
    }
    let started = Instant::now();
    let cancel = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&cancel))?;
    }
    println!("lastack demo: building namespaces (clients, lastack, 3 backends)...");
    topology()?;
    let mut demo = Demo {
        children: Vec::new(),
    };
    let config = config.canonicalize()?;
    let config = config
        .to_str()
        .ok_or_else(|| io::Error::other("config path"))?;
    demo.spawn("lastack", LASTACK, &["run", "-c", config])?;
    // Ready when the admin endpoint answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metrics().is_err() {
        demo.alive("lastack")?;
        if Instant::now() > deadline {
            return Err(io::Error::other("lastack did not come up"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("lastack is up on {VIP}:80 (client-first) and {VIP}:81 (immediate).\n");
    let sources: Vec<IpAddr> = (0..CLIENT_SOURCES)
        .map(|i| Ipv4Addr::new(10, 99, 1, i + 1).into())
        .collect();
    let mut rows = Vec::new();
    // (what happens, backend closes, client behaviour, concurrency levels)
    let cases: [(&str, &str, CloseOrder, &[usize]); 3] = [
        (
            "client closes first",
            "client-first",
            CloseOrder::ClientFirst,
            &[16, 128],
        ),
        (
            "server first, client framed",
            "server-first",
            CloseOrder::ClientFirst,
            &[64],
        ),
        (
            "server first, client to EOF",
            "server-first",
            CloseOrder::ServerFirst,
            &[64],
        ),
    ];
    for (order, backend_close, churn_close, levels) in cases {
        for (i, backend) in BACKENDS.iter().enumerate() {
            let listen = format!("10.98.0.{}:8080", 11 + i);
            demo.spawn(
                "backend",
                backend,
                &["backend", "-l", &listen, "--close", backend_close],
            )?;
        }
        std::thread::sleep(Duration::from_millis(300));
        demo.alive("backend")?;
        for (policy, port) in [("client-first", 80), ("immediate", 81)] {
            for &flows in levels {
                if cancel.load(Ordering::Relaxed) {
                    return Err(io::Error::other("interrupted"));
                }
                let before = metrics()?;
                let client_before = in_ns(CLIENTS, churn::time_wait_sockets)?;
                let churn_config = ChurnConfig {
                    targets: vec![SocketAddr::from((VIP, port))],
                    concurrency: flows,
                    threads: 1,
                    duration: Some(Duration::from_secs(seconds)),
                    connections: None,
                    request: 64,
                    response: 64,
                    close: churn_close,
                    rate: None,
                    sources: sources.clone(),
                    timeout: Duration::from_secs(5),
                    cancel: Some(Arc::clone(&cancel)),
                };
                print!("  {order:<28} policy {policy:<13} {flows:>4} flows ... ");
                io::Write::flush(&mut io::stdout())?;
                let report = in_ns(CLIENTS, || churn::run(&churn_config, |_, _, _| {}))??;
                println!("{:>7.0} conn/s", report.connections_per_s);
                // Let closes finish (FIN handshakes, the grace period).
                std::thread::sleep(Duration::from_millis(2500));
                let after = metrics()?;
                let client_after = in_ns(CLIENTS, churn::time_wait_sockets)?;
                let entered = after.sum("lastack_tcp_time_wait_entered_total")
                    - before.sum("lastack_tcp_time_wait_entered_total");
                rows.push(Row {
                    order,
                    policy,
                    flows,
                    report,
                    lastack_tw: entered.max(0.0) as u64,
                    client_tw: client_after.saturating_sub(client_before),
                });
            }
        }
        demo.stop("backend");
    }
    let last = metrics()?;
    demo.stop("lastack");
    drop(demo);

    println!("\n| close order | lastack policy | flows | conn/s | p50 ms | p99 ms | errors | TIME-WAIT created on lastack | TIME-WAIT on clients (≥) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} |",
            r.order,
            r.policy,
            r.flows,
            r.report.connections_per_s,
            ms(r.report.transaction.p50_us),
            ms(r.report.transaction.p99_us),
            r.report.errors.total(),
            r.lastack_tw,
            r.client_tw
        );
    }
    println!("\nConnections per backend (round robin, whole demo):");
    for sample in last
        .family("lastack_backend_connections_total")
        .map_or(&[][..], |f| &f.samples)
    {
        let backend = sample.label("backend").unwrap_or("?");
        println!("  {backend:<18} {}", sample.value);
    }
    println!(
        "\nWhat this shows:\n\
         - client-first: lastack holds its FIN until the client's, so the clients keep every \
         TIME-WAIT and lastack none, whoever the backend is — also when the server closes first, \
         as long as the client closes once it has the whole response (HTTP/1.1 with \
         Content-Length).\n\
         - immediate (what HAProxy and nginx do): when the server closes first, lastack passes the \
         FIN on at once and keeps a TIME-WAIT per connection (in its compact table, not as kernel \
         sockets).\n\
         - a client that reads until EOF while the server closes first waits close_grace (2 s \
         here) for lastack's FIN under client-first (p50 shows it); then lastack closes first and \
         keeps the TIME-WAIT itself.\n\nDemo finished in {:.0} s; namespaces removed.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
