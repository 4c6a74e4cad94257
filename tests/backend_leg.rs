//! The backend leg under the trouble a default host brings: no TIME-WAIT
//! reuse toward the backend, a backend that goes away for a moment, a
//! process out of descriptors, backends that vanish. Real peers: Linux
//! clients → lastack (its own namespace, its kernel's sysctls) → Linux
//! backends.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::backend::{Behaviour, Server};
use common::client::{self, churn, churn_for, Sustained};
use common::{wait, Family, Lastack, Shape, Topology};
use lastack_tools::metrics::Exposition;

const PORT: u16 = 80;
const BACKEND_PORT: u16 = 8080;
/// A small source-port range, so tests cycle it quickly.
const FIRST_PORT: u16 = 20000;
const RANGE: u64 = 256;

/// lastack on a topology with `backends` backends, after `sysctls` in
/// lastack's namespace (`lastack`) or the backends' (`backends`); one proxy
/// listener on `vip:80` to pool `p` (`pool` lines), the backends at
/// `:8080`.
fn lastack(net: u8, backends: usize, sysctls: &[(Side, &str, &str)], pool: &str) -> Lastack {
    lastack_with(Family::V4, net, backends, sysctls, pool)
}

/// [`lastack`] with backends of `backend_family` (the clients and the VIP
/// stay IPv4).
fn lastack_with(
    backend_family: Family,
    net: u8,
    backends: usize,
    sysctls: &[(Side, &str, &str)],
    pool: &str,
) -> Lastack {
    let topo = Topology::new(
        net,
        Shape {
            queues: 1,
            backends,
            backend_family: Some(backend_family),
            ..Default::default()
        },
    );
    for (side, key, value) in sysctls {
        let ns = match side {
            Side::Lastack => &topo.lastack,
            Side::Backends => topo.backends(),
        };
        ns.sysctl(key, value).expect("sysctl");
    }
    let backend_list: String = topo
        .backend_addrs
        .iter()
        .map(|&a| {
            let address = SocketAddr::new(a, BACKEND_PORT);
            format!("[[pools.backends]]\naddress = \"{address}\"\n")
        })
        .collect();
    let body = format!(
        "[[listeners]]\nname = \"l\"\nvip = \"{{vip}}\"\nport = {PORT}\npool = \"p\"\n\n\
         [[pools]]\nname = \"p\"\n{pool}\n{backend_list}"
    );
    Lastack::start(topo, 1, &body)
}

/// Which namespace a sysctl is for.
#[derive(Clone, Copy)]
enum Side {
    Lastack,
    Backends,
}

const TW_REUSE: &str = "net.ipv4.tcp_tw_reuse";
const TIMESTAMPS: &str = "net.ipv4.tcp_timestamps";

/// The pool lines for a sustained run on the small port range.
fn sustained_pool(backend_close: &str) -> String {
    format!(
        "source_ports = \"{FIRST_PORT}-{}\"\nbackend_close = \"{backend_close}\"\n\
         connect_timeout = \"5s\"\n[pools.health_check]\nenabled = false\n",
        FIRST_PORT + RANGE as u16 - 1
    )
}

/// What a sustained run must show: no failure, no whole second without a
/// completed connection, the port range used at least twice over, and
/// the backend never marked down.
fn assert_sustained(what: &str, topo: &Lastack, run: &Sustained) {
    eprintln!(
        "{what}: {} connections, {} failed, slowest second {}, per second {:?}",
        run.completed,
        run.failed,
        run.slowest_second(),
        run.per_second
    );
    assert_eq!(run.failed, 0, "{what}: failed connections");
    assert!(
        run.slowest_second() >= 1,
        "{what}: a second without progress: {:?}",
        run.per_second
    );
    assert!(
        run.completed >= 2 * RANGE,
        "{what}: the port range was not cycled twice: {}",
        run.completed
    );
    let board = topo.board();
    let backend = &board.backends(0)[0];
    assert!(board.is_up(0, 0), "{what}: the backend is down");
    assert_eq!(
        backend.went_down.load(Ordering::Relaxed),
        0,
        "{what}: the backend was marked down"
    );
}

/// Five seconds of churn (16 flows) through lastack, one shard, the small
/// source-port range and the given `backend_close`, with one sysctl set:
/// asserts the churn was sustained and cycled the range at least ten
/// times. Returns lastack (still running), the run, the backend's address
/// and the backend itself.
fn cycle_the_range(
    what: &str,
    net: u8,
    sysctl: (Side, &str, &str),
    backend_close: &str,
) -> (Lastack, Sustained, SocketAddr, Server) {
    cycle_the_range_to(Family::V4, what, net, sysctl, backend_close)
}

/// [`cycle_the_range`] to a backend of `backend_family`.
fn cycle_the_range_to(
    backend_family: Family,
    what: &str,
    net: u8,
    sysctl: (Side, &str, &str),
    backend_close: &str,
) -> (Lastack, Sustained, SocketAddr, Server) {
    let topo = lastack_with(
        backend_family,
        net,
        1,
        &[sysctl],
        &sustained_pool(backend_close),
    );
    let server = topo.backend(0, BACKEND_PORT, Behaviour::Echo);
    let vip = topo.vip(PORT);
    let run = topo.client(|| churn_for(vip, Duration::from_secs(5), 16, 64, 64));
    assert_sustained(what, &topo, &run);
    assert!(
        run.completed >= 10 * RANGE,
        "{what}: only {} connections",
        run.completed
    );
    let backend = topo.backend_addr(0, BACKEND_PORT);
    (topo, run, backend, server)
}

/// `backend_close = "fin"` on a default host: `tcp_tw_reuse` at 0, and at
/// the kernel's default 2 (reuse toward loopback only). lastack's backend
/// sockets are bound to its own ports, and the kernel takes over a bound
/// port's TIME-WAIT whenever it holds the backend's timestamp, whatever
/// `tcp_tw_reuse` says: the small range is cycled many times over at full
/// speed, every connect meets a TIME-WAIT of the port before it, and none
/// fails or is retried.
#[test]
fn fin_close_on_a_default_host_reuses_its_time_waits_at_full_speed() {
    if !common::privileged("fin_close_on_a_default_host_reuses_its_time_waits_at_full_speed") {
        return;
    }
    for (net, tw_reuse) in [(91u8, "0"), (92, "2")] {
        fin_close_reuses_time_waits(Family::V4, net, tw_reuse);
    }
}

/// One run of the above to a backend of `family`, with `tcp_tw_reuse` set
/// to `tw_reuse` in lastack's namespace.
fn fin_close_reuses_time_waits(family: Family, net: u8, tw_reuse: &str) {
    let what = format!("fin to an {family:?} backend, tcp_tw_reuse={tw_reuse}");
    let (mut topo, _run, backend, _server) = cycle_the_range_to(
        family,
        &what,
        net,
        (Side::Lastack, TW_REUSE, tw_reuse),
        "fin",
    );
    assert_eq!(backend.is_ipv6(), family == Family::V6);
    let time_waits = topo.topo.lastack.time_wait_ports_to(backend).len() as u64;
    assert!(
        time_waits > RANGE / 2 && time_waits <= RANGE,
        "{what}: {time_waits} TIME-WAITs, one per port at most"
    );
    let stats = topo.stop();
    assert_eq!(
        stats.proxy.port_retries, 0,
        "{what}: a TIME-WAIT was not reused"
    );
    assert_eq!(stats.proxy.ports_exhausted, 0);
}

/// The same to an IPv6 backend (IPv4 clients): the kernel takes over a
/// bound port's TIME-WAIT for IPv6 sockets alike (its `tcp_tw_reuse`
/// setting is shared by both families).
#[test]
fn fin_close_to_an_ipv6_backend_reuses_its_time_waits_at_full_speed() {
    if !common::privileged("fin_close_to_an_ipv6_backend_reuses_its_time_waits_at_full_speed") {
        return;
    }
    fin_close_reuses_time_waits(Family::V6, 93, "0");
}

/// `backend_close = "fin"` where a TIME-WAIT cannot be reused: timestamps
/// off in lastack's namespace, or off on the backend (learnt from the
/// first connection to it). Each backend connection then holds its source
/// port for 60 s (and a little more: the kernel's timer is late by up to a
/// few seconds), so lastack rests each such port 66 s and spreads the
/// ready ones over that rest (256 ports / 66 s ≈ 4 a second here);
/// connections wait for a port, first come first served, rather than fail.
/// In two and a half minutes the range is used twice over with no failure,
/// no second without progress and no connect meeting a TIME-WAIT. Both
/// cases run at once, on two topologies.
#[test]
fn without_timestamps_time_waits_pace_connections_and_none_fails() {
    if !common::privileged("without_timestamps_time_waits_pace_connections_and_none_fails") {
        return;
    }
    let duration = Duration::from_secs(150);
    let cases = [
        (
            "timestamps off in lastack's namespace",
            101u8,
            Side::Lastack,
        ),
        ("timestamps off on the backend", 102, Side::Backends),
    ];
    let runs: Vec<(Lastack, Sustained, SocketAddr)> = std::thread::scope(|scope| {
        let handles: Vec<_> = cases
            .iter()
            .map(|&(_, net, side)| {
                scope.spawn(move || {
                    let sysctls = [(side, TIMESTAMPS, "0")];
                    let topo = lastack(net, 1, &sysctls, &sustained_pool("fin"));
                    let server = topo.backend(0, BACKEND_PORT, Behaviour::Echo);
                    let vip = topo.vip(PORT);
                    let run = topo.client(|| churn_for(vip, duration, 4, 64, 64));
                    drop(server);
                    let backend = topo.backend_addr(0, BACKEND_PORT);
                    (topo, run, backend)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for ((mut topo, run, backend), (what, _, _)) in runs.into_iter().zip(cases) {
        let proxy = common::total(&topo.stats()).proxy;
        eprintln!(
            "{what}: port waits {}, port retries {}, exhausted {}, socket errors {}",
            proxy.port_waits, proxy.port_retries, proxy.ports_exhausted, proxy.socket_errors
        );
        assert_sustained(what, &topo, &run);
        // Every TIME-WAIT toward the backend is on a port of the range.
        let ports = topo.topo.lastack.time_wait_ports_to(backend);
        assert!(
            !ports.is_empty() && ports.len() as u64 <= RANGE,
            "{what}: {}",
            ports.len()
        );
        assert!(ports
            .iter()
            .all(|&p| (FIRST_PORT..FIRST_PORT + RANGE as u16).contains(&p)));
        let stats = topo.stop();
        assert!(
            stats.proxy.port_waits > 0,
            "{what}: the pace never held a connect back"
        );
        assert_eq!(
            stats.proxy.port_retries, 0,
            "{what}: a connect met a TIME-WAIT"
        );
        assert_eq!(stats.proxy.ports_exhausted, 0);
        assert_eq!(stats.proxy.socket_errors, 0);
    }
}

/// `backend_close = "reset"`: once the client has finished and the
/// backend acknowledged every byte, lastack resets the backend connection
/// instead of closing it, so no TIME-WAIT is left and a port is ready
/// again at once, even without timestamps (where a TIME-WAIT could not be
/// reused): the small range is cycled many times over in a few seconds at
/// full speed.
#[test]
fn reset_close_leaves_no_time_wait_and_cycles_the_range_at_full_speed() {
    if !common::privileged("reset_close_leaves_no_time_wait_and_cycles_the_range_at_full_speed") {
        return;
    }
    for (net, timestamps) in [(93u8, "0"), (94, "1")] {
        let what = format!("reset, tcp_timestamps={timestamps}");
        let (mut topo, run, backend, _server) =
            cycle_the_range(&what, net, (Side::Lastack, TIMESTAMPS, timestamps), "reset");
        let stats = topo.stop();
        assert_eq!(
            topo.topo.lastack.time_wait_ports_to(backend).len(),
            0,
            "{what}: TIME-WAIT left toward the backend"
        );
        assert!(
            stats.proxy.backend_closed_with_reset >= run.completed,
            "{what}: {} resets for {} connections",
            stats.proxy.backend_closed_with_reset,
            run.completed
        );
        assert_eq!(stats.proxy.ports_exhausted, 0);
    }
}

/// With active checks disabled, a backend that refuses connections for
/// 2 s is taken out by live traffic (the other backend takes the
/// retries: no client fails), re-probed with a backoff, and gets
/// connections again within a few seconds of coming back.
#[test]
fn a_backend_refusing_for_two_seconds_comes_back_without_active_checks() {
    if !common::privileged("a_backend_refusing_for_two_seconds_comes_back_without_active_checks") {
        return;
    }
    let pool = "retries = 1\nconnect_timeout = \"1s\"\n[pools.health_check]\nenabled = false\n";
    let topo = lastack(95, 2, &[], pool);
    let _steady = topo.backend(0, BACKEND_PORT, Behaviour::Echo);
    let flaky = topo.backend(1, BACKEND_PORT, Behaviour::Echo);
    let vip = topo.vip(PORT);
    let board = topo.board();
    let clients = &topo.topo.clients;
    std::thread::scope(|scope| {
        let load =
            scope.spawn(|| clients.enter(|| churn_for(vip, Duration::from_secs(12), 4, 64, 64)));
        wait::until("traffic on both backends", Duration::from_secs(5), || {
            (flaky.accepted.load(Ordering::Relaxed) > 10)
                .then_some(())
                .ok_or("not yet")
        });
        // Refused: new SYNs to it get RST (connections it has go on).
        let rule = format!(
            "add table inet refuse {{ chain in {{ type filter hook input priority 0; \
             ip daddr {} tcp dport {BACKEND_PORT} tcp flags syn reject with tcp reset; }}; }}",
            topo.topo.backend_addrs[1]
        );
        topo.topo.backends().exec(&["nft", &rule]);
        let refused_at = Instant::now();
        wait::until(
            "marked down by live traffic",
            Duration::from_secs(5),
            || (!board.is_up(0, 1)).then_some(()).ok_or("up"),
        );
        eprintln!("down {:?} after it began refusing", refused_at.elapsed());
        // The outage itself: the backend refuses for 2 s.
        std::thread::sleep(Duration::from_secs(2).saturating_sub(refused_at.elapsed()));
        let before = flaky.accepted.load(Ordering::Relaxed);
        topo.topo
            .backends()
            .exec(&["nft", "delete table inet refuse"]);
        let back_at = Instant::now();
        wait::until("connections again", Duration::from_secs(8), || {
            (flaky.accepted.load(Ordering::Relaxed) > before)
                .then_some(())
                .ok_or("none yet")
        });
        let after = back_at.elapsed();
        eprintln!("connections again {after:?} after it came back");
        assert!(after < Duration::from_secs(5), "{after:?}");
        let run = load.join().unwrap();
        eprintln!("{} connections, {} failed", run.completed, run.failed);
        assert_eq!(run.failed, 0, "the other backend took every retry");
    });
    assert!(board.is_up(0, 1));
    assert!(board.backends(0)[1].went_up.load(Ordering::Relaxed) >= 1);
}

/// `lastack run` with its descriptor limit lowered under it: clients it
/// cannot open a backend socket for get RST, no backend is marked down
/// (health checks on, their own sockets failing too), and service resumes
/// once descriptors are back.
#[test]
fn out_of_descriptors_resets_clients_marks_no_backend_down_and_recovers() {
    if !common::privileged("out_of_descriptors_resets_clients_marks_no_backend_down_and_recovers") {
        return;
    }
    let topo = Topology::new(
        96,
        Shape {
            queues: 1,
            backends: 1,
            ..Default::default()
        },
    );
    let backend = SocketAddr::new(topo.backend_addrs[0], BACKEND_PORT);
    let _server = Server::start(topo.backends(), backend, Behaviour::Echo);
    let (dir, config) = common::run_config(
        &topo,
        1,
        backend,
        "[pools.health_check]\ninterval = \"200ms\"\ntimeout = \"100ms\"\nfall = 1\n",
        "",
    );
    let child = common::process::Guard::new(common::lastack_run(&topo.lastack, &config));
    let pid = child.id().to_string();
    let vip = SocketAddr::new(topo.vip, PORT);
    assert_eq!(
        topo.client(|| client::until_echoed(vip, b"ready")),
        b"ready"
    );
    let open_now = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    // lastack raised its soft limit to the hard one at start; lower the
    // soft one under it (raising a hard limit needs more than this sandbox
    // may grant).
    let started_with = soft_descriptor_limit(&pid);
    let limit = (open_now + 4).to_string();
    lastack_testkit::netns::run(&["prlimit", "--pid", &pid, &format!("--nofile={limit}:")]);

    // 16 clients at once, each held open: a few get a backend socket, the
    // rest a RST.
    let outcomes: Vec<Option<TcpStream>> = topo.client(|| {
        (0..16)
            .map(|_| {
                use std::io::{Read, Write};
                let mut stream = TcpStream::connect_timeout(&vip, Duration::from_secs(5)).ok()?;
                stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
                stream.write_all(b"x").ok()?;
                let mut byte = [0u8; 1];
                match stream.read(&mut byte) {
                    Ok(1) => Some(stream),
                    _ => None,
                }
            })
            .collect()
    });
    let served = outcomes.iter().filter(|s| s.is_some()).count();
    eprintln!("{served} of 16 served with the limit at {limit} ({open_now} open before)");
    assert!(served < 16, "the limit refused nothing");
    drop(outcomes);
    // Checks failing for want of descriptors must not count: give them a
    // few rounds at the limit.
    let round = Instant::now();
    while round.elapsed() < Duration::from_secs(1) {
        let _ = topo.client(|| client::exchange(vip, 1, 1, false));
    }
    lastack_testkit::netns::run(&[
        "prlimit",
        "--pid",
        &pid,
        &format!("--nofile={started_with}:"),
    ]);
    assert_eq!(
        topo.client(|| churn(vip, 200, 8, 64, 64)),
        0,
        "service resumed"
    );

    let lastack_ns = &topo.lastack;
    let metrics: Exposition = wait::until("metrics", Duration::from_secs(5), || {
        let out = lastack_ns.exec(&[common::LASTACK, "stats", "--json"]);
        serde_json::from_slice::<Exposition>(&out.stdout).map_err(|e| e.to_string())
    });
    let address = backend.to_string();
    assert_eq!(
        metrics.sum_where("lastack_backend_up", "backend", &address),
        1.0
    );
    assert_eq!(
        metrics.sum_where("lastack_backend_health_changes_total", "to", "down"),
        0.0,
        "a backend was marked down for lastack's own shortage"
    );
    assert!(metrics.sum("lastack_proxy_socket_errors_total") >= 1.0);
    let output = child.terminate();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit: {:?}\n{log}", output.status);
    // The warning is rate-limited: one a second at most.
    let warnings = log.lines().filter(|l| l.contains("backend socket")).count();
    assert!((1..=3).contains(&warnings), "{warnings} warnings:\n{log}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The soft `RLIMIT_NOFILE` of process `pid`.
fn soft_descriptor_limit(pid: &str) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a descriptor limit");
    line.split_whitespace()
        .nth(3)
        .expect("its soft value")
        .to_string()
}

/// Active checks run concurrently: of ten backends, three blackholed
/// (SYNs dropped) are all marked down within one interval plus one
/// timeout, the seven others stay up, and the checks leave no TIME-WAIT.
#[test]
fn active_checks_find_three_blackholed_backends_of_ten_within_an_interval() {
    if !common::privileged("active_checks_find_three_blackholed_backends_of_ten_within_an_interval")
    {
        return;
    }
    let interval = Duration::from_secs(1);
    let timeout = Duration::from_millis(500);
    let pool = "[pools.health_check]\ninterval = \"1s\"\ntimeout = \"500ms\"\nrise = 1\nfall = 1\n";
    let topo = lastack(97, 10, &[], pool);
    let servers: Vec<Server> = (0..10)
        .map(|i| topo.backend(i, BACKEND_PORT, Behaviour::Echo))
        .collect();
    let board = topo.board();
    wait::until(
        "two checks of every backend",
        Duration::from_secs(5),
        || {
            servers
                .iter()
                .all(|s| s.accepted.load(Ordering::Relaxed) >= 2)
                .then_some(())
                .ok_or("not yet")
        },
    );
    assert!((0..10).all(|i| board.is_up(0, i)));
    assert_eq!(
        topo.topo.lastack.kernel_time_wait(),
        0,
        "checks close with RST"
    );

    let dead = [2usize, 5, 7];
    let addresses: Vec<String> = dead
        .iter()
        .map(|&i| topo.topo.backend_addrs[i].to_string())
        .collect();
    let rule = format!(
        "add table inet bh {{ chain in {{ type filter hook input priority 0; \
         ip daddr {{ {} }} tcp dport {BACKEND_PORT} drop; }}; }}",
        addresses.join(", ")
    );
    topo.topo.backends().exec(&["nft", &rule]);
    let blackholed = Instant::now();
    wait::until("the three marked down", Duration::from_secs(5), || {
        dead.iter()
            .all(|&i| !board.is_up(0, i))
            .then_some(())
            .ok_or("not yet")
    });
    let took = blackholed.elapsed();
    eprintln!("three blackholed backends down after {took:?}");
    // The interval has ±10 % jitter; a little for scheduling on a busy
    // machine.
    let bound = interval.mul_f64(1.1) + timeout + Duration::from_millis(300);
    assert!(took <= bound, "{took:?} > {bound:?}");
    assert!((0..10)
        .filter(|i| !dead.contains(i))
        .all(|i| board.is_up(0, i)));
}
