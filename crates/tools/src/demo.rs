//! `lastack demo`: the proxy in front of three backends, in network
//! namespaces it creates, driven by the churn load generator; prints where
//! TIME-WAIT ended up under each close policy. Everything is torn down at
//! the end, on error, and on Ctrl-C.
//!
//! ```text
//!  lsdemo-c (clients: lastack churn, 16 source addresses)
//!     │ veth, 2 queues
//!  lsdemo-l (lastack run -c config/demo.toml; XDP on lsdemo0, VIPs
//!            10.99.0.10 and fd00:99::10)
//!     │ bridge lsdemo-br 10.98.0.1-4 (the pool's source addresses)
//!  lsdemo-b1/b2/b3 (lastack backend on 10.98.0.11-13:8080)
//! ```

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lastack_testkit::netns::{veth, Netns};
use lastack_testkit::{process, wait};

use crate::churn::{self, ChurnConfig, CloseOrder, Report};
use crate::metrics::Exposition;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 10);
/// The IPv6 VIP (`client-first-v6` in config/demo.toml).
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0x10);
const CLIENT_SOURCES: u8 = 16;
const BACKENDS: usize = 3;

/// The demo's namespaces and processes; dropped = torn down (processes
/// first, then the namespaces).
struct Demo {
    children: Vec<(String, Child)>,
    clients: Netns,
    lastack: Netns,
    backends: Vec<Netns>,
}

impl Demo {
    /// Namespaces for clients, lastack and three backends (see the module
    /// docs); the names and addresses are the ones `config/demo.toml` uses.
    fn build() -> io::Result<Self> {
        let clients = Netns::named("lsdemo-c")?;
        let lastack = Netns::named("lsdemo-l")?;
        let backends = (1..=BACKENDS)
            .map(|i| Netns::named(&format!("lsdemo-b{i}")))
            .collect::<io::Result<Vec<_>>>()?;
        // Clients ↔ lastack: two queues, so both shards get flows.
        veth(&clients, "lsdemo-c0", &lastack, "lsdemo0", 2)?;
        clients.add_address("lsdemo-c0", "10.99.0.1/24")?;
        for i in 0..CLIENT_SOURCES {
            clients.add_address("lsdemo-c0", &format!("10.99.1.{}/16", i + 1))?;
        }
        clients.add_address("lsdemo-c0", "fd00:99::1/64")?;
        for i in 0..CLIENT_SOURCES {
            clients.add_address("lsdemo-c0", &format!("fd00:99::1:{:x}/64", i + 1))?;
        }
        lastack.add_address("lsdemo0", &format!("{VIP}/16"))?;
        lastack.add_address("lsdemo0", &format!("{VIP6}/64"))?;
        clients.link_up("lsdemo-c0")?;
        lastack.link_up("lsdemo0")?;
        clients.offloads_off("lsdemo-c0")?;
        // Clients: 16 addresses × 64k ports, TIME-WAIT reuse as a load
        // generator needs, and no cap on TIME-WAIT sockets (so they count).
        clients.sysctl("net.ipv4.ip_local_port_range", "1024 65535")?;
        clients.sysctl("net.ipv4.tcp_tw_reuse", "1")?;
        clients.sysctl("net.ipv4.tcp_max_tw_buckets", "4000000")?;
        // lastack ↔ backends: a bridge in lastack's namespace, with the
        // pool's four source addresses.
        lastack.try_exec(&["ip", "link", "add", "lsdemo-br", "type", "bridge"])?;
        for a in 1..=4 {
            lastack.add_address("lsdemo-br", &format!("10.98.0.{a}/24"))?;
        }
        lastack.link_up("lsdemo-br")?;
        lastack.sysctl("net.ipv4.tcp_tw_reuse", "1")?;
        for (i, backend) in backends.iter().enumerate() {
            let (outside, inside) = (format!("lsdemo-p{}", i + 1), format!("lsdemo-q{}", i + 1));
            veth(&lastack, &outside, backend, &inside, 1)?;
            lastack.try_exec(&["ip", "link", "set", &outside, "master", "lsdemo-br"])?;
            lastack.link_up(&outside)?;
            backend.add_address(&inside, &format!("10.98.0.{}/24", 11 + i))?;
            backend.link_up(&inside)?;
        }
        Ok(Self {
            children: Vec::new(),
            clients,
            lastack,
            backends,
        })
    }

    /// Starts `lastack ARGS` (this binary) in the namespace `ns` picks,
    /// known as `what`.
    fn spawn(&mut self, what: &str, ns: impl Fn(&Self) -> &Netns, args: &[&str]) -> io::Result<()> {
        let exe = std::env::current_exe()?;
        let exe = exe
            .to_str()
            .ok_or_else(|| io::Error::other("the binary's path"))?;
        let child = process::spawn_in(ns(self), exe, args);
        self.children.push((what.to_string(), child));
        Ok(())
    }

    /// Stops the processes known as `what` (SIGTERM, by PID) and waits.
    fn stop(&mut self, what: &str) {
        let (mut stopping, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.children)
            .into_iter()
            .partition(|(w, _)| w == what);
        self.children = keep;
        for (_, child) in &mut stopping {
            process::terminate_quietly(child);
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

    /// lastack's metrics (its admin endpoint in its namespace).
    fn metrics(&self) -> io::Result<Exposition> {
        self.lastack
            .enter(|| crate::metrics::fetch(SocketAddr::from((Ipv4Addr::LOCALHOST, 9190))))
    }

    /// Waits (bounded) until every backend accepts connections.
    fn backends_ready(&mut self) -> io::Result<()> {
        for i in 0..BACKENDS {
            let addr = SocketAddr::from(([10, 98, 0, 11 + i as u8], 8080));
            let up = wait::poll(Duration::from_secs(5), || {
                self.lastack
                    .enter(|| TcpStream::connect_timeout(&addr, Duration::from_millis(100)))
                    .ok()
            });
            if up.is_err() {
                self.alive("backend")?;
                return Err(io::Error::other(format!("backend {addr} did not come up")));
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
    }
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
    let mut demo = Demo::build()?;
    let config = config.canonicalize()?;
    let config = config
        .to_str()
        .ok_or_else(|| io::Error::other("config path"))?;
    demo.spawn("lastack", |d| &d.lastack, &["run", "-c", config])?;
    // Ready when every shard serves (`lastack_ready`, as GET /ready): the
    // admin endpoint answers earlier, before the XDP program and the
    // shards are in place, and SYNs that early reach the kernel (RST).
    let ready = || {
        demo.metrics()
            .ok()
            .filter(|m| m.sum("lastack_ready") == 1.0)
    };
    if wait::poll(Duration::from_secs(10), ready).is_err() {
        demo.alive("lastack")?;
        return Err(io::Error::other("lastack did not come up"));
    }
    println!(
        "lastack is up on {VIP}:80 (client-first), {VIP}:81 (immediate) and [{VIP6}]:80 \
         (client-first, IPv6).\n"
    );
    // Both families' source addresses: churn binds each connection to one
    // of its target's family.
    let sources: Vec<IpAddr> = (0..CLIENT_SOURCES)
        .flat_map(|i| {
            [
                IpAddr::from(Ipv4Addr::new(10, 99, 1, i + 1)),
                IpAddr::from(Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 1, u16::from(i) + 1)),
            ]
        })
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
        for i in 0..BACKENDS {
            let listen = format!("10.98.0.{}:8080", 11 + i);
            demo.spawn(
                "backend",
                |d| &d.backends[i],
                &["backend", "-l", &listen, "--close", backend_close],
            )?;
        }
        demo.backends_ready()?;
        let mut listeners = vec![
            ("client-first", SocketAddr::from((VIP, 80))),
            ("immediate", SocketAddr::from((VIP, 81))),
        ];
        if churn_close == CloseOrder::ClientFirst && backend_close == "client-first" {
            listeners.push(("client-first, IPv6", SocketAddr::from((VIP6, 80))));
        }
        for (policy, target) in listeners {
            for &flows in levels {
                if cancel.load(Ordering::Relaxed) {
                    return Err(io::Error::other("interrupted"));
                }
                let before = demo.metrics()?;
                let client_before = demo.clients.enter(churn::time_wait_sockets);
                let churn_config = ChurnConfig {
                    targets: vec![target],
                    concurrency: flows,
                    threads: 1,
                    duration: Some(Duration::from_secs(seconds)),
                    connections: None,
                    request: 64,
                    response: 64,
                    close: churn_close,
                    requests_per_connection: 1,
                    rate: None,
                    sources: sources.clone(),
                    timeout: Duration::from_secs(5),
                    cancel: Some(Arc::clone(&cancel)),
                };
                print!("  {order:<28} policy {policy:<19} {flows:>4} flows ... ");
                io::Write::flush(&mut io::stdout())?;
                let report = demo
                    .clients
                    .enter(|| churn::run(&churn_config, |_, _, _| {}))?;
                println!("{:>7.0} conn/s", report.connections_per_s);
                if report.errors.total() > 0 {
                    println!("    errors: {:?}", report.errors);
                }
                // Until every close has finished (FIN handshakes, the grace
                // period): no session left.
                let after = wait::poll(Duration::from_secs(15), || {
                    demo.metrics()
                        .ok()
                        .filter(|m| m.sum("lastack_proxy_sessions") == 0.0)
                })
                .map_err(|_| io::Error::other("lastack's sessions never finished"))?;
                let client_after = demo.clients.enter(churn::time_wait_sockets);
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
    let last = demo.metrics()?;
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
