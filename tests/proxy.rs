//! The proxy end to end, with real peers in three namespaces: Linux
//! clients (`a`) → lastack (`b`: native XDP + AF_XDP on the client veth, a
//! shard with its io_uring) → Linux backends (`c`, kernel sockets, several
//! addresses on one veth).

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lastack::config::{BindMode, Service, XdpMode};
use lastack::link::xdp::Steering;
use lastack::link::xsk::XskSocket;
use lastack::shard::{ListenerSpec, Shard, ShardHandle, ShardStats};
use lastack::tcp::{Secret, TcpConfig};
use lastack::upstream::pool::HealthBoard;

/// What a test backend does with each connection.
#[derive(Debug, Clone, Copy)]
enum Backend {
    /// Echoes until EOF, then closes (so it closes second).
    Echo,
    /// Reads a request of this many bytes, answers with `response` bytes
    /// and closes at once (the server closes first).
    Respond { request: usize, response: usize },
    /// Parses a PROXY v2 header and answers with the address it names
    /// ("a.b.c.d:port\n"), then echoes.
    ProxyV2Reporter,
    /// Reads `chunk` bytes every `pause` (a slow reader, receive buffer
    /// 128 KiB), counting them in `Server::bytes`.
    Slow { chunk: usize, pause: Duration },
    /// Writes `bytes` pattern bytes as fast as the peer takes them
    /// (counted in `Server::bytes` as they are written), then closes.
    Stream { bytes: usize },
    /// Answers every connection with this backend's index (one byte), then
    /// echoes.
    Identify(u8),
}

/// Sets SO_RCVBUF or SO_SNDBUF (which also stops the kernel's
/// autotuning), so buffers between the ends are bounded and known.
fn set_buffer(stream: &TcpStream, option: i32, bytes: i32) {
    use std::os::fd::AsRawFd;
    // Safety: a live socket and an i32 option value.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&bytes as *const i32).cast(),
            4,
        )
    };
    assert_eq!(rc, 0);
}

/// A backend server on `addr` in namespace `ns`, until `stop` (then its
/// listening socket closes: the backend is "killed").
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub accepted: Arc<AtomicU64>,
    /// Bytes read (`Slow`) or written (`Stream`) by all connections.
    pub bytes: Arc<AtomicU64>,
}

impl Server {
    fn start(ns: &str, addr: SocketAddrV4, kind: Backend) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let thread_bytes = bytes.clone();
        let path = format!("/var/run/netns/{ns}");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (thread_stop, thread_accepted) = (stop.clone(), accepted.clone());
        let thread = std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let listener = TcpListener::bind(addr).unwrap();
            listener.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            while !thread_stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        thread_accepted.fetch_add(1, Ordering::Relaxed);
                        stream.set_nonblocking(false).unwrap();
                        let bytes = thread_bytes.clone();
                        std::thread::spawn(move || serve(stream, kind, &bytes));
                    }
                    Err(_) => std::thread::sleep(Duration::from_micros(200)),
                }
            }
        });
        ready_rx.recv().unwrap();
        Self {
            stop,
            thread: Some(thread),
            accepted,
            bytes,
        }
    }

    fn kill(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn serve(mut stream: TcpStream, kind: Backend, bytes: &AtomicU64) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    match kind {
        Backend::Echo => loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        },
        Backend::Respond { request, response } => {
            let mut got = 0;
            while got < request {
                match stream.read(&mut buf[..request - got]) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got += n,
                }
            }
            let body: Vec<u8> = (0..response).map(common::pattern).collect();
            let _ = stream.write_all(&body);
        }
        Backend::ProxyV2Reporter => {
            let mut header = [0u8; 28];
            if stream.read_exact(&mut header).is_err() {
                return;
            }
            assert_eq!(&header[..12], b"\r\n\r\n\0\r\nQUIT\n", "v2 signature");
            assert_eq!(header[12], 0x21, "version 2, PROXY");
            assert_eq!(header[13], 0x11, "TCP over IPv4");
            assert_eq!(u16::from_be_bytes([header[14], header[15]]), 12);
            let src = Ipv4Addr::new(header[16], header[17], header[18], header[19]);
            let port = u16::from_be_bytes([header[24], header[25]]);
            let _ = stream.write_all(format!("{src}:{port}\n").as_bytes());
            serve(stream, Backend::Echo, bytes);
        }
        Backend::Slow { chunk, pause } => {
            set_buffer(&stream, libc::SO_RCVBUF, 128 * 1024);
            loop {
                match stream.read(&mut buf[..chunk]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        bytes.fetch_add(n as u64, Ordering::Relaxed);
                        std::thread::sleep(pause);
                    }
                }
            }
        }
        Backend::Stream { bytes: total } => {
            let mut sent = 0;
            while sent < total {
                let n = buf.len().min(total - sent);
                for (k, b) in buf[..n].iter_mut().enumerate() {
                    *b = common::pattern(sent + k);
                }
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
                sent += n;
                bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        Backend::Identify(index) => {
            if stream.write_all(&[index]).is_ok() {
                serve(stream, Backend::Echo, bytes);
            }
        }
    }
}

/// Clients (`a`) and lastack (`b`) joined by a veth (`10.<net>.0.0/24`),
/// lastack and the backends (`c`) by another (`10.<net>.1.0/24`), with
/// `backends` addresses `10.<net>.1.11…` in `c`.
fn network(net: u8, backends: usize) -> (common::VethPair, common::Netns, Vec<Ipv4Addr>) {
    let pair = common::VethPair::new(net);
    let backends_ns = common::Netns::new("lsc");
    let (b_if, c_if) = (common::unique_name("vbb"), common::unique_name("vbc"));
    common::run(&[
        "ip",
        "link",
        "add",
        &b_if,
        "netns",
        &pair.b.name,
        "type",
        "veth",
        "peer",
        "name",
        &c_if,
        "netns",
        &backends_ns.name,
    ]);
    pair.b.exec(&[
        "ip",
        "addr",
        "add",
        &format!("10.{net}.1.1/24"),
        "dev",
        &b_if,
    ]);
    pair.b.exec(&["ip", "link", "set", &b_if, "up"]);
    let backend_addrs: Vec<Ipv4Addr> = (0..backends)
        .map(|i| Ipv4Addr::new(10, net, 1, 11 + i as u8))
        .collect();
    for addr in &backend_addrs {
        backends_ns.exec(&["ip", "addr", "add", &format!("{addr}/24"), "dev", &c_if]);
    }
    backends_ns.exec(&["ip", "link", "set", &c_if, "up"]);
    // The lastack namespace reuses its backend-leg TIME-WAITs (the
    // deployment sysctl in deploy/README.md); clients get a wide port range.
    pair.b.exec(&["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"]);
    pair.a
        .exec(&["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535"]);
    (pair, backends_ns, backend_addrs)
}

/// The three namespaces, the steering program and one shard.
struct Topology {
    pair: common::VethPair,
    backends_ns: common::Netns,
    backend_addrs: Vec<Ipv4Addr>,
    steering: Steering,
    shards: Vec<ShardHandle>,
    board: Arc<HealthBoard>,
    checkers_stop: Arc<AtomicBool>,
    checkers: Vec<JoinHandle<()>>,
}

const PORT: u16 = 80;
const BACKEND_PORT: u16 = 8080;

impl Topology {
    /// `backends` addresses `10.<net>.1.11…` in namespace `c`; `listeners`
    /// and `pool` are TOML fragments (the VIP and backend list are filled
    /// in).
    fn start(net: u8, backends: usize, listener: &str, pool: &str) -> Self {
        Self::start_with(net, backends, listener, pool, &[])
    }

    /// As [`Topology::start`], with extra TOML lines per backend.
    fn start_with(net: u8, backends: usize, listener: &str, pool: &str, extra: &[&str]) -> Self {
        let (pair, backends_ns, backend_addrs) = network(net, backends);
        let backend_list: String = backend_addrs
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let more = extra.get(i).copied().unwrap_or("");
                format!("[[pools.backends]]\naddress = \"{a}:{BACKEND_PORT}\"\n{more}\n")
            })
            .collect();
        let toml = format!(
            "[[interfaces]]\nname = \"{}\"\n\n[[listeners]]\nname = \"l\"\nvip = \"{}\"\nport = \
             {PORT}\npool = \"p\"\n{listener}\n\n[[pools]]\nname = \"p\"\n{pool}\n{backend_list}",
            pair.b_if, pair.b_addr
        );
        let config = lastack::config::parse(&toml, Path::new("test.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{toml}"));
        let board = Arc::new(HealthBoard::new(&config.pools));
        let checkers_stop = Arc::new(AtomicBool::new(false));

        let mut steering = Steering::load().unwrap();
        let vip = SocketAddrV4::new(pair.b_addr, PORT);
        steering.add_listener(*vip.ip(), vip.port()).unwrap();
        let ifindex = pair.b_ifindex();
        let b_if = pair.b_if.clone();
        let spec = ListenerSpec {
            addr: vip,
            service: Service::Proxy,
            idle_timeout: *config.listeners[0].idle_timeout,
        };
        // Shards and checkers start inside the lastack namespace: their
        // backend sockets must be created there.
        let (shards, checkers) = pair.b.enter(|| {
            steering.attach(ifindex, XdpMode::Native).unwrap();
            let socket =
                XskSocket::bind(&b_if, 0, NonZeroU32::new(4096).unwrap(), BindMode::Copy).unwrap();
            steering.register_socket(0, socket.fd()).unwrap();
            let proxy = lastack::proxy::for_shard(&config, &board, 0, 1)
                .unwrap()
                .expect("a proxy listener");
            let shard = Shard::new(
                socket,
                TcpConfig::default(),
                Secret([9; 16]),
                20_000,
                &[spec],
            )
            .with_proxy(proxy)
            .spawn(None);
            let checkers = lastack::upstream::checker::spawn(&board, &config.pools, &checkers_stop);
            (vec![shard], checkers)
        });
        Self {
            pair,
            backends_ns,
            backend_addrs,
            steering,
            shards,
            board,
            checkers_stop,
            checkers,
        }
    }

    fn vip(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.pair.b_addr, PORT)
    }

    fn backend(&self, i: usize, kind: Backend) -> Server {
        Server::start(
            &self.backends_ns.name,
            SocketAddrV4::new(self.backend_addrs[i], BACKEND_PORT),
            kind,
        )
    }

    fn client<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pair.a.enter(f)
    }

    fn stats(&self) -> ShardStats {
        self.shards[0].stats.lock().unwrap().clone()
    }

    /// Waits until a snapshot newer than now satisfies `done` (bounded).
    fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&ShardStats) -> bool,
    ) -> ShardStats {
        let since = self.stats().published;
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.stats();
            if stats.published > since + 1 && done(&stats) {
                return stats;
            }
            assert!(Instant::now() < deadline, "{what}: {stats:#?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for every session and connection to finish, then stops.
    fn stop(&mut self) -> ShardStats {
        let _ = self.wait_for_quiet(Duration::from_secs(10));
        self.checkers_stop.store(true, Ordering::Relaxed);
        for c in self.checkers.drain(..) {
            c.join().unwrap();
        }
        let handle = self.shards.pop().unwrap();
        handle.stop.store(true, Ordering::Relaxed);
        handle.thread.join().expect("shard thread")
    }

    fn wait_for_quiet(&self, timeout: Duration) -> Option<ShardStats> {
        let since = self.stats().published;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let stats = self.stats();
            let quiet = stats.proxy.sessions_active == 0
                && stats
                    .states
                    .iter()
                    .all(|(name, n)| *n == 0 || *name == "TIME-WAIT");
            if stats.published > since + 1 && quiet {
                return Some(stats);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn kernel_time_wait(ns: &common::Netns) -> usize {
        let out = ns.exec(&["ss", "-Htan", "state", "time-wait"]);
        String::from_utf8_lossy(&out.stdout).lines().count()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.checkers_stop.store(true, Ordering::Relaxed);
        for handle in self.shards.drain(..) {
            handle.stop.store(true, Ordering::Relaxed);
            let _ = handle.thread.join();
        }
        let _ = &self.steering;
    }
}

/// One short exchange: `request` bytes out, then read `response` bytes
/// (or until EOF if `until_eof`), then close. Returns the bytes read.
fn exchange(
    vip: SocketAddrV4,
    request: usize,
    response: usize,
    until_eof: bool,
) -> std::io::Result<usize> {
    let mut stream = TcpStream::connect_timeout(&vip.into(), Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_nodelay(true)?;
    let req: Vec<u8> = (0..request).map(common::pattern).collect();
    stream.write_all(&req)?;
    let mut got = Vec::with_capacity(response);
    let mut buf = [0u8; 4096];
    loop {
        if !until_eof && got.len() >= response {
            break;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(got.len())
}

/// `total` exchanges over `concurrency` client threads; returns the
/// number that failed.
fn churn(
    vip: SocketAddrV4,
    total: usize,
    concurrency: usize,
    request: usize,
    response: usize,
) -> usize {
    let failures = AtomicU64::new(0);
    let next = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..concurrency {
            scope.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < total as u64 {
                    match exchange(vip, request, response, false) {
                        Ok(n) if n == response => {}
                        other => {
                            if failures.fetch_add(1, Ordering::Relaxed) < 5 {
                                eprintln!("exchange failed: {other:?}");
                            }
                        }
                    }
                }
            });
        }
    });
    failures.load(Ordering::Relaxed) as usize
}

const ECHO_POOL: &str = "connect_timeout = \"500ms\"\n[pools.health_check]\nenabled = false\n";

/// Test 1: 10 MiB each way byte-exact through the proxy, then 1,000
/// short connections, all successful; the client closes first and lastack
/// holds no TIME-WAIT on its client side.
#[test]
fn echo_10_mib_each_way_and_1000_short_connections() {
    if !common::privileged("echo_10_mib_each_way_and_1000_short_connections") {
        return;
    }
    let mut topo = Topology::start(71, 2, "", ECHO_POOL);
    let _servers = [
        topo.backend(0, Backend::Echo),
        topo.backend(1, Backend::Echo),
    ];
    let vip = topo.vip();
    topo.client(|| {
        let started = Instant::now();
        common::echo_exact(common::connect(vip, Duration::from_secs(10)), 10 << 20);
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "10 MiB each way through lastack in {secs:.2}s ({:.0} Mbit/s each way)",
            10.0 * 8.0 * 1.048576 / secs
        );
    });
    let failures = topo.client(|| churn(vip, 1000, 8, 64, 64));
    assert_eq!(failures, 0);
    let stats = topo.stop();
    assert_eq!(stats.proxy.sessions_opened, 1001);
    assert_eq!(stats.proxy.bytes_to_backend, (10 << 20) + 64 * 1000);
    assert_eq!(stats.proxy.bytes_to_client, (10 << 20) + 64 * 1000);
    assert_eq!(stats.proxy.client_closed_first, 1001);
    assert_eq!(stats.time_wait, 0, "the clients closed first: {stats:#?}");
    assert!(Topology::kernel_time_wait(&topo.pair.a) >= 1000);
}

/// `n` exchanges against a backend that answers `response` bytes and
/// closes first; each client reads until EOF or just the response.
fn server_first_round(vip: SocketAddrV4, n: usize, response: usize, until_eof: bool) {
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for i in 0..n / 4 {
                    let got = exchange(vip, 64, response, until_eof).expect("exchange");
                    assert_eq!(got, response, "exchange {i}");
                }
            });
        }
    });
}

/// Test 3: where TIME-WAIT lands. `immediate` with a backend that closes
/// first leaves it on lastack (so the counting can fail); `client-first`
/// with a client that closes once it has the framed response leaves none.
#[test]
fn close_policy_decides_where_time_wait_lands() {
    if !common::privileged("close_policy_decides_where_time_wait_lands") {
        return;
    }
    let respond = Backend::Respond {
        request: 64,
        response: 3000,
    };
    // immediate: lastack forwards the backend's FIN at once, the client
    // reads until EOF and closes second: lastack holds the TIME-WAITs.
    let mut topo = Topology::start(72, 1, "close_policy = \"immediate\"", ECHO_POOL);
    let _server = topo.backend(0, respond);
    let vip = topo.vip();
    topo.client(|| server_first_round(vip, 200, 3000, true));
    let stats = topo.stop();
    assert_eq!(stats.proxy.sessions_opened, 200);
    assert_eq!(stats.time_wait, 200, "immediate: lastack closed first");
    drop(topo);

    // client-first, and the client closes as soon as it has the whole
    // response (Content-Length framing): lastack passes LAST-ACK only.
    let mut topo = Topology::start(73, 1, "close_policy = \"client-first\"", ECHO_POOL);
    let _server = topo.backend(0, respond);
    let vip = topo.vip();
    topo.client(|| server_first_round(vip, 1000, 3000, false));
    let stats = topo.stop();
    assert_eq!(stats.proxy.sessions_opened, 1000);
    assert_eq!(stats.proxy.client_closed_first, 1000);
    assert_eq!(stats.proxy.grace_expired, 0);
    assert_eq!(stats.time_wait, 0, "client-first: {stats:#?}");
    assert!(Topology::kernel_time_wait(&topo.pair.a) >= 1000);
}

/// Test 3, last part: a client that reads until EOF still gets all its
/// bytes and then lastack's FIN once `close_grace` has passed.
#[test]
fn a_client_reading_until_eof_gets_fin_after_the_grace_period() {
    if !common::privileged("a_client_reading_until_eof_gets_fin_after_the_grace_period") {
        return;
    }
    let mut topo = Topology::start(
        74,
        1,
        "close_grace = \"400ms\"\ngrace_fallback = \"fin\"",
        ECHO_POOL,
    );
    let _server = topo.backend(
        0,
        Backend::Respond {
            request: 64,
            response: 100_000,
        },
    );
    let vip = topo.vip();
    let (got, elapsed) = topo.client(|| {
        let started = Instant::now();
        let got = exchange(vip, 64, 100_000, true).unwrap();
        (got, started.elapsed())
    });
    assert_eq!(got, 100_000, "all bytes, then EOF");
    assert!(
        elapsed >= Duration::from_millis(400),
        "FIN held {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "FIN after the grace: {elapsed:?}"
    );
    let stats = topo.stop();
    assert_eq!(stats.proxy.grace_expired, 1);
    assert_eq!(stats.time_wait, 1, "fallback fin: lastack closed first");
}

/// Test 8: 20,000 connections to a single backend address, the client
/// closing first, without an error: lastack binds each backend socket to
/// its least recently used source port, so connect() never scans for one.
#[test]
fn twenty_thousand_connections_to_one_backend_address() {
    if !common::privileged("twenty_thousand_connections_to_one_backend_address") {
        return;
    }
    let mut topo = Topology::start(75, 1, "", ECHO_POOL);
    let _server = topo.backend(0, Backend::Echo);
    let vip = topo.vip();
    let started = Instant::now();
    let failures = topo.client(|| churn(vip, 20_000, 32, 64, 64));
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "20,000 connections in {secs:.1}s ({:.0}/s)",
        20_000.0 / secs
    );
    assert_eq!(failures, 0);
    let stats = topo.stop();
    assert_eq!(stats.proxy.sessions_opened, 20_000);
    assert_eq!(stats.slots_in_use, 0, "every connection handle released");
    assert_eq!(
        stats.proxy.connects_failed + stats.proxy.connects_timed_out,
        0
    );
    assert_eq!(stats.time_wait, 0);
    // The backend leg's TIME-WAITs are the kernel's, in lastack's namespace.
    let backend_leg_tw = Topology::kernel_time_wait(&topo.pair.b);
    eprintln!(
        "backend-leg TIME-WAIT in the kernel: {backend_leg_tw}; port retries: {}",
        stats.proxy.port_retries
    );
}

/// Test 7: with PROXY v2, the backend sees the client's own address.
#[test]
fn proxy_v2_tells_the_backend_the_client_address() {
    if !common::privileged("proxy_v2_tells_the_backend_the_client_address") {
        return;
    }
    let pool = format!("proxy_protocol = \"v2\"\n{ECHO_POOL}");
    let mut topo = Topology::start(76, 1, "", &pool);
    let _server = topo.backend(0, Backend::ProxyV2Reporter);
    let vip = topo.vip();
    topo.client(|| {
        for _ in 0..3 {
            let mut stream = common::connect(vip, Duration::from_secs(5));
            let local = stream.local_addr().unwrap();
            let mut line = Vec::new();
            let mut byte = [0u8];
            while byte[0] != b'\n' {
                stream.read_exact(&mut byte).unwrap();
                line.push(byte[0]);
            }
            assert_eq!(String::from_utf8(line).unwrap().trim(), local.to_string());
            // And the stream goes on, echoed, after the header.
            stream.write_all(b"after the header").unwrap();
            let mut echo = [0u8; 16];
            stream.read_exact(&mut echo).unwrap();
            assert_eq!(&echo, b"after the header");
        }
    });
    let stats = topo.stop();
    assert_eq!(stats.proxy.bytes_to_backend, 3 * (28 + 16));
}

/// Test 4: a refused backend is skipped (passive health), and with every
/// backend down the client gets a RST at once instead of hanging.
#[test]
fn dead_backends_are_skipped_and_all_dead_means_reset() {
    if !common::privileged("dead_backends_are_skipped_and_all_dead_means_reset") {
        return;
    }
    let pool = "retries = 2\nconnect_timeout = \"500ms\"\n[pools.health_check]\nenabled = false\nfall = 2\n";
    let mut topo = Topology::start(77, 2, "", pool);
    let mut server = topo.backend(0, Backend::Echo);
    // Backend 1 has no listener: the kernel refuses.
    let vip = topo.vip();
    let failures = topo.client(|| churn(vip, 100, 4, 64, 64));
    assert_eq!(failures, 0, "every connection reached backend 0");
    assert_eq!(server.accepted.load(Ordering::Relaxed), 100);
    assert!(!topo.board.is_up(0, 1), "refusals took backend 1 down");
    topo.wait_for("passive failures counted", Duration::from_secs(2), |s| {
        s.proxy.connects_failed >= 2 && s.proxy.sessions_opened == 100
    });

    server.kill();
    let (result, elapsed) = topo.client(|| {
        let started = Instant::now();
        (exchange(vip, 64, 64, false), started.elapsed())
    });
    let err = result.expect_err("no backend: the client must see an error");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    let stats = topo.stop();
    assert!(stats.proxy.no_backend >= 1);
}

/// Test 4: a backend that never answers costs one connect timeout per
/// try, then RST; active checks take a killed backend down within
/// `fall` intervals and bring it back after `rise` once it is restarted.
#[test]
fn health_checks_follow_a_killed_and_restarted_backend() {
    if !common::privileged("health_checks_follow_a_killed_and_restarted_backend") {
        return;
    }
    let pool = "connect_timeout = \"300ms\"\nretries = 0\n[pools.health_check]\ninterval = \"200ms\"\ntimeout = \"100ms\"\nrise = 2\nfall = 2\n";
    let mut topo = Topology::start(78, 1, "", pool);
    let mut server = topo.backend(0, Backend::Echo);
    let vip = topo.vip();
    assert_eq!(topo.client(|| churn(vip, 10, 2, 64, 64)), 0);
    assert!(topo.board.is_up(0, 0));
    server.kill();
    let killed = Instant::now();
    while topo.board.is_up(0, 0) {
        assert!(
            killed.elapsed() < Duration::from_secs(2),
            "never marked down"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let down_after = killed.elapsed();
    let server = topo.backend(0, Backend::Echo);
    let restarted = Instant::now();
    while !topo.board.is_up(0, 0) {
        assert!(
            restarted.elapsed() < Duration::from_secs(2),
            "never back up"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "down after {down_after:?}, up after {:?}",
        restarted.elapsed()
    );
    assert_eq!(topo.client(|| churn(vip, 10, 2, 64, 64)), 0);
    assert!(server.accepted.load(Ordering::Relaxed) >= 10);

    // A blackhole: SYNs to the backend vanish; the client gets RST after
    // the connect timeout, not a hang.
    topo.backends_ns.exec(&[
        "nft", "add table inet bh { chain in { type filter hook input priority 0; tcp dport 8080 drop; }; }",
    ]);
    let (result, elapsed) = topo.client(|| {
        let started = Instant::now();
        (exchange(vip, 64, 64, false), started.elapsed())
    });
    assert_eq!(
        result.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionReset
    );
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    let stats = topo.stop();
    assert!(stats.proxy.connects_timed_out >= 1);
}

/// Test 5: backpressure both ways while 100 MiB moves. A backend that
/// reads slowly closes the client's window (the client cannot get ahead
/// of it by more than the buffers between them); a client that reads
/// slowly stops reads from a fast backend; lastack's own buffering stays
/// bounded (the provided buffers it holds at once).
#[test]
fn backpressure_both_ways_with_100_mib() {
    if !common::privileged("backpressure_both_ways_with_100_mib") {
        return;
    }
    const TOTAL: usize = 100 << 20;
    // The most that may sit between the two ends: client socket (128 KiB),
    // our receive buffer (256 KiB), one upload (16 KiB), lastack's kernel
    // socket (autotuned, at most 4 MiB), the backend's 128 KiB, and
    // segments in flight. Without backpressure the client would finish
    // ~70 MiB ahead of this slow backend.
    const BOUND: u64 = 12 << 20;
    let mut topo = Topology::start(79, 2, "", ECHO_POOL);
    let slow = topo.backend(
        0,
        Backend::Slow {
            chunk: 64 * 1024,
            pause: Duration::from_micros(1500),
        },
    );
    let vip = topo.vip();
    let slow_bytes = slow.bytes.clone();
    let started = Instant::now();
    let ahead = topo.client(|| {
        let mut stream = common::connect(vip, Duration::from_secs(30));
        set_buffer(&stream, libc::SO_SNDBUF, 128 * 1024);
        let chunk: Vec<u8> = (0..1 << 20).map(common::pattern).collect();
        for _ in 0..TOTAL >> 20 {
            stream.write_all(&chunk).unwrap();
        }
        let ahead = TOTAL as u64 - slow_bytes.load(Ordering::Relaxed);
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        ahead
    });
    while slow.bytes.load(Ordering::Relaxed) < TOTAL as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "upload stalled"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "upload: client finished {:.1} MiB ahead of the slow backend; {:.1}s",
        ahead as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );
    assert!(
        ahead <= BOUND,
        "client got {ahead} bytes ahead of the backend"
    );
    drop(slow);

    // Download: a fast backend (whichever round robin picks: both stream)
    // and a slow client.
    let fast = [
        topo.backend(0, Backend::Stream { bytes: TOTAL }),
        topo.backend(1, Backend::Stream { bytes: TOTAL }),
    ];
    let written = || -> u64 { fast.iter().map(|f| f.bytes.load(Ordering::Relaxed)).sum() };
    let behind = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        topo.client(|| {
            let mut stream = common::connect(vip, Duration::from_secs(5));
            set_buffer(&stream, libc::SO_RCVBUF, 128 * 1024);
            let mut buf = vec![0u8; 64 * 1024];
            let (mut got, mut behind) = (0usize, None);
            loop {
                let n = match stream.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) => panic!(
                        "download stalled at {got} bytes ({e}); backend wrote {}",
                        written()
                    ),
                };
                if n == 0 {
                    break;
                }
                for (k, &b) in buf[..n].iter().enumerate() {
                    assert_eq!(b, common::pattern(got + k), "byte {}", got + k);
                }
                got += n;
                if behind.is_none() && written() == TOTAL as u64 {
                    behind = Some(TOTAL - got);
                }
                std::thread::sleep(Duration::from_micros(1500));
            }
            assert_eq!(got, TOTAL);
            behind.unwrap_or(0)
        })
    }));
    let behind = behind.unwrap_or_else(|e| {
        eprintln!("STATS {:#?}", topo.stats());
        std::panic::resume_unwind(e)
    });
    eprintln!(
        "download: the fast backend finished {:.1} MiB ahead of the slow client",
        behind as f64 / 1048576.0
    );
    assert!((behind as u64) <= BOUND, "backend got {behind} bytes ahead");
    let stats = topo.stop();
    eprintln!(
        "held provided buffers at most: {}",
        stats.proxy.held_buffers_peak
    );
    assert!(
        stats.proxy.held_buffers_peak <= 4,
        "lastack held {} receive buffers at once",
        stats.proxy.held_buffers_peak
    );
    assert_eq!(stats.proxy.held_buffers, 0);
}

/// Test 6: Maglev keeps a client address on its backend, and removing one
/// of five backends (health checks take it down) moves only its clients.
/// Clients differ by source address: 40 addresses on the client veth.
#[test]
fn maglev_keeps_clients_on_their_backend() {
    if !common::privileged("maglev_keeps_clients_on_their_backend") {
        return;
    }
    let pool = "balance = \"maglev\"\nconnect_timeout = \"300ms\"\n[pools.health_check]\ninterval = \"100ms\"\ntimeout = \"50ms\"\nrise = 1\nfall = 1\n";
    let mut topo = Topology::start(80, 5, "", pool);
    let mut servers: Vec<Server> = (0..5)
        .map(|i| topo.backend(i, Backend::Identify(i as u8)))
        .collect();
    let clients: Vec<Ipv4Addr> = (0..40).map(|i| Ipv4Addr::new(10, 80, 0, 100 + i)).collect();
    for addr in &clients {
        topo.pair.a.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            &topo.pair.a_if,
        ]);
    }
    let vip = topo.vip();
    let ask = |from: Ipv4Addr| -> Option<u8> {
        let s = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Inet,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::empty(),
            None,
        )
        .ok()?;
        nix::sys::socket::bind(
            std::os::fd::AsRawFd::as_raw_fd(&s),
            &nix::sys::socket::SockaddrIn::from(SocketAddrV4::new(from, 0)),
        )
        .ok()?;
        nix::sys::socket::connect(
            std::os::fd::AsRawFd::as_raw_fd(&s),
            &nix::sys::socket::SockaddrIn::from(vip),
        )
        .ok()?;
        let mut stream = TcpStream::from(s);
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut byte = [0u8];
        stream.read_exact(&mut byte).ok()?;
        Some(byte[0])
    };
    let round = || -> Vec<u8> {
        topo.client(|| {
            clients
                .iter()
                .map(|&c| ask(c).expect("an answer"))
                .collect()
        })
    };
    let first = round();
    assert_eq!(first, round(), "the same client lands on the same backend");
    let used: std::collections::BTreeSet<u8> = first.iter().copied().collect();
    assert!(
        used.len() >= 4,
        "40 clients spread over the backends: {first:?}"
    );

    // Take down the backend with the most clients.
    let victim = (0..5u8)
        .max_by_key(|b| first.iter().filter(|&&x| x == *b).count())
        .unwrap();
    servers[victim as usize].kill();
    let killed = Instant::now();
    while topo.board.is_up(0, victim as usize) {
        assert!(killed.elapsed() < Duration::from_secs(3));
        std::thread::sleep(Duration::from_millis(10));
    }
    let after = round();
    for (i, (&before, &now)) in first.iter().zip(&after).enumerate() {
        if before == victim {
            assert_ne!(now, victim, "client {i} left the dead backend");
        } else {
            assert_eq!(now, before, "client {i} stayed (its backend is alive)");
        }
    }
    drop(servers);
    topo.stop();
}

/// nginx in the backends' namespace, killed (by PID) on drop.
struct Nginx {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Nginx {
    fn start(ns: &common::Netns, listen: SocketAddrV4) -> Self {
        let dir = std::env::temp_dir().join(common::unique_name("lsngx"));
        std::fs::create_dir_all(&dir).unwrap();
        let big: Vec<u8> = (0..1 << 20).map(common::pattern).collect();
        std::fs::write(dir.join("big"), &big).unwrap();
        let d = dir.display();
        let conf = format!(
            "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d};\n proxy_temp_path {d};\n\
             fastcgi_temp_path {d};\n uwsgi_temp_path {d};\n scgi_temp_path {d};\n\
             server {{\n  listen {listen};\n  location = / {{ return 200 \"hello from nginx\\n\"; }}\n\
             location = /big {{ alias {d}/big; }}\n }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = std::process::Command::new("ip")
            .args(["netns", "exec", &ns.name, "nginx", "-p"])
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nginx (make deps installs it)");
        // Ready when it accepts.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let up = ns.enter(|| {
                TcpStream::connect_timeout(&listen.into(), Duration::from_millis(100)).is_ok()
            });
            if up {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {:?}",
                std::fs::read_to_string(dir.join("error.log"))
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, dir }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Test 2 (and the real-world case of test 3): nginx as the backend;
/// curl fetches through lastack byte for byte; ab (HTTP/1.0 keep-alive) and wrk
/// (HTTP/1.1, `Connection: close`: nginx closes first, wrk closes as soon
/// as it has the Content-Length) run without an error, and lastack, with
/// `client-first`, holds no TIME-WAIT afterwards.
#[test]
fn nginx_behind_lastack_with_curl_ab_and_wrk() {
    if !common::privileged("nginx_behind_lastack_with_curl_ab_and_wrk") {
        return;
    }
    let mut topo = Topology::start(81, 1, "", ECHO_POOL);
    let _nginx = Nginx::start(
        &topo.backends_ns,
        SocketAddrV4::new(topo.backend_addrs[0], BACKEND_PORT),
    );
    let url = format!("http://{}/", topo.vip());
    let a = &topo.pair.a;
    let body = a.exec(&["curl", "-sS", "--max-time", "5", &url]);
    assert_eq!(String::from_utf8_lossy(&body.stdout), "hello from nginx\n");
    let big = a.exec(&["curl", "-sS", "--max-time", "10", &format!("{url}big")]);
    let expected: Vec<u8> = (0..1 << 20).map(common::pattern).collect();
    assert!(
        big.stdout == expected,
        "1 MiB byte for byte ({} bytes)",
        big.stdout.len()
    );

    // ab speaks HTTP/1.0; without -k it reads until the server's EOF, which
    // client-first holds back for `close_grace` (that case has its own
    // test): with keep-alive it frames by Content-Length.
    let ab = a.exec(&["ab", "-q", "-k", "-n", "2000", "-c", "16", "-s", "5", &url]);
    let ab = String::from_utf8_lossy(&ab.stdout).to_string();
    assert!(ab.contains("Complete requests:      2000"), "{ab}");
    assert!(ab.contains("Failed requests:        0"), "{ab}");

    let wrk = a.exec(&[
        "wrk",
        "-t",
        "2",
        "-c",
        "32",
        "-d",
        "2s",
        "-H",
        "Connection: close",
        &url,
    ]);
    let wrk = String::from_utf8_lossy(&wrk.stdout).to_string();
    assert!(!wrk.contains("Socket errors"), "{wrk}");
    assert!(!wrk.contains("Non-2xx"), "{wrk}");
    let requests: u64 = wrk
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in ")
                .map(|(n, _)| n.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("{wrk}"));
    assert!(requests > 100, "{wrk}");
    eprintln!(
        "wrk through lastack: {}",
        wrk.lines()
            .find(|l| l.contains("Requests/sec"))
            .unwrap_or("")
    );
    let stats = topo.stop();
    assert_eq!(
        stats.time_wait, 0,
        "client-first with Content-Length clients: {stats:#?}"
    );
    assert!(stats.proxy.sessions_opened >= 2 + 16 + requests);
    assert_eq!(stats.proxy.backend_resets + stats.proxy.no_backend, 0);
}

/// `lastack run` with a proxy listener: the binary as deployed, in the
/// lastack namespace, forwards to a kernel backend and stops on SIGTERM.
#[test]
fn lastack_run_proxies_and_stops_on_sigterm() {
    if !common::privileged("lastack_run_proxies_and_stops_on_sigterm") {
        return;
    }
    let (pair, backends_ns, addrs) = network(82, 1);
    let backend = SocketAddrV4::new(addrs[0], BACKEND_PORT);
    let _server = Server::start(&backends_ns.name, backend, Backend::Echo);
    let dir = std::env::temp_dir().join(common::unique_name("lsrun"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "[[interfaces]]\nname = \"{}\"\nqueues = 1\numem_frames = 1024\n\n\
             [[listeners]]\nname = \"web\"\nvip = \"{}\"\nport = 80\npool = \"p\"\n\n\
             [[pools]]\nname = \"p\"\n[[pools.backends]]\naddress = \"{backend}\"\n",
            pair.b_if, pair.b_addr
        ),
    )
    .unwrap();
    let child = common::lastack_run(&pair.b, &config);
    let vip = SocketAddrV4::new(pair.b_addr, 80);
    let echoed = pair
        .a
        .enter(|| common::until_echoed(vip, b"through the proxy"));
    assert_eq!(echoed, b"through the proxy");
    // The admin endpoint (default 127.0.0.1:9190 in lastack's namespace):
    // `lastack stats` shows the session, the XDP program's redirects, and
    // the backend as up with no connection left open.
    std::thread::sleep(Duration::from_millis(400));
    let raw = pair
        .b
        .exec(&[env!("CARGO_BIN_EXE_lastack"), "stats", "--raw"]);
    let raw = String::from_utf8_lossy(&raw.stdout).to_string();
    let value = |series: &str| -> f64 {
        raw.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{raw}"))
    };
    assert!(value("lastack_proxy_sessions_total{shard=\"0\"}") >= 1.0);
    assert!(
        value(&format!(
            "lastack_xdp_packets_total{{interface=\"{}\",outcome=\"redirected\"}}",
            pair.b_if
        )) >= 3.0
    );
    assert_eq!(
        value(&format!(
            "lastack_backend_up{{pool=\"p\",backend=\"{backend}\"}}"
        )),
        1.0
    );
    let table = pair.b.exec(&[env!("CARGO_BIN_EXE_lastack"), "stats"]);
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(
        table.lines().any(|l| l.starts_with("proxy_sessions_total")),
        "{table}"
    );
    let output = common::terminate(child);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit: {:?}\n{log}", output.status);
    assert!(log.contains("proxied="), "{log}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Limits: a draining backend gets no new connections, and the listener's
/// connection limit answers the connection beyond it with RST; closing one
/// makes room again.
#[test]
fn drained_backends_and_connection_limits() {
    if !common::privileged("drained_backends_and_connection_limits") {
        return;
    }
    let mut topo = Topology::start_with(83, 2, "max_connections = 3", ECHO_POOL, &["drain = true"]);
    let _servers = [
        topo.backend(0, Backend::Identify(0)),
        topo.backend(1, Backend::Identify(1)),
    ];
    let vip = topo.vip();
    topo.client(|| {
        let open = |expect_ok: bool| -> Option<TcpStream> {
            // The RST for a connection over the limit can come so soon that
            // it ends connect() itself (the handshake completed, then RST).
            let attempt = TcpStream::connect_timeout(&vip.into(), Duration::from_secs(5)).and_then(
                |mut s| {
                    s.set_read_timeout(Some(Duration::from_secs(5)))?;
                    let mut byte = [0u8];
                    s.read_exact(&mut byte)?;
                    Ok((s, byte))
                },
            );
            match attempt.map(|(s, byte)| (s, byte[0])) {
                Ok((s, byte)) => {
                    assert!(expect_ok, "a connection beyond the limit was served");
                    assert_eq!(byte, 1, "the draining backend 0 got a new connection");
                    Some(s)
                }
                Err(e) => {
                    assert!(!expect_ok, "refused within the limit: {e}");
                    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset);
                    None
                }
            }
        };
        let mut held: Vec<TcpStream> = (0..3).map(|_| open(true).unwrap()).collect();
        assert!(open(false).is_none(), "the fourth is over the limit");
        drop(held.pop());
        std::thread::sleep(Duration::from_millis(200));
        held.push(open(true).expect("room again after a close"));
    });
    let stats = topo.stop();
    assert_eq!(stats.proxy.over_limit, 1);
}
