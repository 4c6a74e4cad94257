//! lastack's life around the datapath, with real peers in namespaces:
//! reloads under load, refused reloads, graceful drain and fast stop
//! (through `lastack run` and real signals), the admin endpoint under a
//! silent client, and a shard that panics.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::backend::{Behaviour, Server};
use common::client::{self, LongLived};
use common::{wait, Lastack, Shape, Topology};
use lastack_tools::churn::{self, ChurnConfig, CloseOrder};
use lastack_tools::metrics::{self, Exposition};

const PORT: u16 = 80;
const BACKEND_PORT: u16 = 8080;

/// A proxy listener on `vip:80` to pool `p` with the given backends
/// (index into the topology's backend addresses, extra TOML lines).
fn body(addrs: &[std::net::IpAddr], backends: &[(usize, &str)], extra: &str) -> String {
    let list: String = backends
        .iter()
        .map(|&(i, more)| {
            format!(
                "[[pools.backends]]\naddress = \"{}\"\n{more}\n",
                SocketAddr::new(addrs[i], BACKEND_PORT)
            )
        })
        .collect();
    format!(
        "[[listeners]]\nname = \"l\"\nvip = \"{{vip}}\"\nport = {PORT}\npool = \"p\"\n\n\
         [[pools]]\nname = \"p\"\nconnect_timeout = \"1s\"\n[pools.health_check]\nenabled = false\n\
         {list}\n{extra}"
    )
}

/// The first byte a connection to `vip` gets (an `Identify` backend's index).
fn ask(vip: SocketAddr) -> std::io::Result<u8> {
    let mut stream = TcpStream::connect_timeout(&vip, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut byte = [0u8];
    stream.read_exact(&mut byte)?;
    Ok(byte[0])
}

/// Ten reloads under continuous churn (64 flows) and 50 long-lived
/// streams: a backend added, removed, reweighted, drained, undrained and
/// added back. Nothing fails, nothing is reset, every stream is
/// byte-exact; an added backend gets new connections after its reload, a
/// removed or drained one gets none.
#[test]
fn reloads_under_churn_drop_nothing() {
    if !common::privileged("reloads_under_churn_drop_nothing") {
        return;
    }
    let topo = Topology::new(
        91,
        Shape {
            queues: 1,
            backends: 4,
            ..Default::default()
        },
    );
    let addrs = topo.backend_addrs.clone();
    let mut lastack = Lastack::start(topo, 1, &body(&addrs, &[(0, ""), (1, "")], ""));
    let servers: Vec<Server> = (0..4)
        .map(|i| lastack.backend(i, BACKEND_PORT, Behaviour::Echo))
        .collect();
    let accepted = |i: usize| servers[i].accepted.load(Ordering::Relaxed);
    let vip = lastack.vip(PORT);
    let cancel = Arc::new(AtomicBool::new(false));
    let churn_config = ChurnConfig {
        targets: vec![vip],
        concurrency: 64,
        threads: 1,
        duration: Some(Duration::from_secs(120)),
        connections: None,
        request: 64,
        response: 64,
        close: CloseOrder::ClientFirst,
        requests_per_connection: 1,
        rate: None,
        sources: Vec::new(),
        timeout: Duration::from_secs(5),
        cancel: Some(Arc::clone(&cancel)),
    };
    let clients = lastack.topo.clients.name.clone();
    let report = std::thread::scope(|scope| {
        let churn = scope.spawn(|| {
            lastack_testkit::netns::enter(&clients, || churn::run(&churn_config, |_, _, _| {}))
        });
        let streams: Vec<LongLived> = lastack.client(|| {
            (0..50)
                .map(|_| LongLived::start(vip, 1024, Duration::from_millis(20)).unwrap())
                .collect()
        });
        // Until churn reaches both backends.
        wait::until("churn under way", Duration::from_secs(5), || {
            (accepted(0) > 100 && accepted(1) > 100)
                .then_some(())
                .ok_or((accepted(0), accepted(1)))
        });
        let mut reload = |backends: &[(usize, &str)]| {
            lastack
                .reload(&body(&addrs, backends, ""))
                .expect("a valid reload");
            // Let connections that chose a backend just before land.
            std::thread::sleep(Duration::from_millis(100));
        };
        let gets_new = |i: usize| {
            let before = accepted(i);
            wait::until(
                &format!("backend {i} gets new connections"),
                Duration::from_secs(5),
                || (accepted(i) > before + 20).then_some(()).ok_or(accepted(i)),
            );
        };
        let still = |i: usize, since: u64| {
            assert_eq!(
                accepted(i),
                since,
                "backend {i} got a connection it should not"
            );
        };
        reload(&[(0, ""), (1, ""), (2, "")]); // 1: add b2
        gets_new(2);
        reload(&[(0, "weight = 3"), (1, ""), (2, "")]); // 2: reweight b0
        gets_new(0);
        reload(&[(0, "weight = 3"), (1, "drain = true"), (2, "")]); // 3: drain b1
        let b1 = accepted(1);
        gets_new(2);
        reload(&[(1, "drain = true"), (2, "")]); // 4: remove b0
        let b0 = accepted(0);
        gets_new(2);
        still(1, b1);
        reload(&[(1, "drain = true"), (2, ""), (3, "")]); // 5: add b3
        gets_new(3);
        reload(&[(1, "drain = true"), (2, "weight = 2"), (3, "")]); // 6: reweight b2
        gets_new(2);
        still(1, b1);
        still(0, b0);
        reload(&[(1, ""), (2, "weight = 2"), (3, "")]); // 7: undrain b1
        gets_new(1);
        reload(&[(1, ""), (2, "weight = 2")]); // 8: remove b3
        let b3 = accepted(3);
        gets_new(1);
        still(0, b0);
        reload(&[(0, ""), (1, ""), (2, "weight = 2")]); // 9: add b0 back
        gets_new(0);
        reload(&[(0, ""), (1, ""), (2, "drain = true")]); // 10: drain b2
        let b2 = accepted(2);
        gets_new(0);
        gets_new(1);
        still(3, b3);
        still(2, b2);
        cancel.store(true, Ordering::Relaxed);
        let mut echoed = 0;
        for (i, stream) in streams.into_iter().enumerate() {
            echoed += stream
                .finish()
                .unwrap_or_else(|e| panic!("stream {i}: {e}"));
        }
        assert!(echoed > 50 * 1024, "the streams moved data: {echoed}");
        churn.join().unwrap().unwrap()
    });
    assert_eq!(report.errors.total(), 0, "{:?}", report.errors);
    assert!(report.transactions > 1000, "{report:?}");
    let stats = lastack.stop();
    assert_eq!(stats.config_generation, 10);
    assert_eq!(stats.proxy.backend_resets + stats.proxy.client_resets, 0);
    assert_eq!(stats.proxy.no_backend + stats.proxy.connects_failed, 0);
    assert_eq!(stats.tcp.resets_sent, 0, "nobody was reset");
}

/// A reload adds an IPv6 listener beside the IPv4 one (IPv6 clients are
/// then proxied to the IPv4 backend) and a later one removes it (the
/// kernel answers that port again: refused); the IPv4 listener serves
/// throughout.
#[test]
fn a_reload_adds_and_removes_an_ipv6_listener() {
    if !common::privileged("a_reload_adds_and_removes_an_ipv6_listener") {
        return;
    }
    let topo = Topology::new(
        93,
        Shape {
            queues: 1,
            backends: 1,
            ..Default::default()
        },
    );
    let addrs = topo.backend_addrs.clone();
    let vip6 = SocketAddr::new(topo.vip_of(common::Family::V6), PORT);
    let mut lastack = Lastack::start(topo, 1, &body(&addrs, &[(0, "")], ""));
    let _server = lastack.backend(0, BACKEND_PORT, Behaviour::Identify(0));
    let vip4 = lastack.vip(PORT);
    let refused = |r: std::io::Result<u8>| matches!(r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused);
    assert_eq!(lastack.client(|| ask(vip4)).unwrap(), 0);
    assert!(
        refused(lastack.client(|| ask(vip6))),
        "no IPv6 listener yet"
    );
    let v6_listener = "[[listeners]]\nname = \"l6\"\nvip = \"{vip6}\"\nport = 80\npool = \"p\"\n";
    lastack
        .reload(&body(&addrs, &[(0, "")], v6_listener))
        .expect("a valid reload");
    for _ in 0..20 {
        assert_eq!(
            lastack.client(|| ask(vip6)).unwrap(),
            0,
            "IPv6 client, IPv4 backend"
        );
        assert_eq!(lastack.client(|| ask(vip4)).unwrap(), 0);
    }
    let stats = lastack.stats();
    let l6 = stats[0]
        .listeners
        .iter()
        .find(|l| l.name == "l6")
        .expect("l6");
    assert!(l6.addr.is_ipv6() && l6.listening);
    lastack
        .reload(&body(&addrs, &[(0, "")], ""))
        .expect("a valid reload");
    assert!(
        refused(lastack.client(|| ask(vip6))),
        "the listener is gone"
    );
    assert_eq!(lastack.client(|| ask(vip4)).unwrap(), 0);
    let stats = lastack.stop();
    assert_eq!(stats.proxy.sessions_opened, 1 + 20 * 2 + 1);
}

/// A reload that does not validate changes nothing and says where the
/// file is wrong; so does one that changes what needs a restart.
#[test]
fn a_refused_reload_changes_nothing() {
    if !common::privileged("a_refused_reload_changes_nothing") {
        return;
    }
    let topo = Topology::new(
        92,
        Shape {
            queues: 1,
            backends: 2,
            ..Default::default()
        },
    );
    let addrs = topo.backend_addrs.clone();
    let mut lastack = Lastack::start(topo, 1, &body(&addrs, &[(0, "")], ""));
    let _servers = [
        lastack.backend(0, BACKEND_PORT, Behaviour::Identify(0)),
        lastack.backend(1, BACKEND_PORT, Behaviour::Identify(1)),
    ];
    let vip = lastack.vip(PORT);
    assert_eq!(lastack.client(|| ask(vip)).unwrap(), 0);
    let dir = std::env::temp_dir().join(common::unique_name("lsrl"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lastack.toml");
    // Backend 1 instead of 0, but a listener port of 0.
    let bad = lastack
        .config_text(&body(&addrs, &[(1, "")], ""))
        .replace(&format!("port = {PORT}"), "port = 0");
    std::fs::write(&path, &bad).unwrap();
    let line = bad.lines().position(|l| l == "port = 0").unwrap() + 1;
    let err = lastack.reload_from(&path).unwrap_err();
    assert!(
        err.contains(&format!("{}:{line}:", path.display())) && err.contains("port"),
        "{err}"
    );
    // Backend 1, but two queues: needs a restart.
    let restart = lastack
        .config_text(&body(&addrs, &[(1, "")], ""))
        .replace("queues = 1", "queues = 2");
    std::fs::write(&path, restart).unwrap();
    let err = lastack.reload_from(&path).unwrap_err();
    assert!(err.contains("needs a restart"), "{err}");
    let admin = lastack.admin();
    assert_eq!(admin.counters.reloads_failed.load(Ordering::Relaxed), 2);
    assert_eq!(admin.counters.reloads_ok.load(Ordering::Relaxed), 0);
    for _ in 0..10 {
        assert_eq!(
            lastack.client(|| ask(vip)).unwrap(),
            0,
            "still the old config"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
    lastack.stop();
}

/// `lastack run` in a namespace, with its admin endpoint on loopback there.
struct Running {
    topo: Topology,
    child: Option<std::process::Child>,
    path: std::path::PathBuf,
    dir: std::path::PathBuf,
}

impl Running {
    const ADMIN: &'static str = "127.0.0.1:9190";

    fn start(topo: Topology, body: &str) -> Self {
        let dir = std::env::temp_dir().join(common::unique_name("lsrn"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lastack.toml");
        let mut running = Self {
            topo,
            child: None,
            path,
            dir,
        };
        running.write(body);
        running.child = Some(common::lastack_run(&running.topo.lastack, &running.path));
        // Up when it says it is ready.
        wait::until(
            "lastack run is ready",
            Duration::from_secs(10),
            || match running.lastack(&["ctl", "-a", Self::ADMIN, "ready"]) {
                (0, _, _) => Ok(()),
                (_, _, err) => Err(err),
            },
        );
        running
    }

    /// Writes the config file (admin on, logging at info).
    fn write(&self, body: &str) {
        let text = format!(
            "[[interfaces]]\nname = \"{}\"\nqueues = 1\numem_frames = 1024\n\n{}\n\n[logging]\nlevel = \"info\"\n",
            self.topo.lastack_if,
            body.replace("{vip}", &self.topo.vip.to_string())
        );
        std::fs::write(&self.path, text).unwrap();
    }

    /// Runs `lastack ARGS` in lastack's namespace: (exit code, stdout, stderr).
    fn lastack(&self, args: &[&str]) -> (i32, String, String) {
        let mut full = vec![
            "ip",
            "netns",
            "exec",
            &self.topo.lastack.name,
            common::LASTACK,
        ];
        full.extend_from_slice(args);
        let out = std::process::Command::new(full[0])
            .args(&full[1..])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    fn metrics(&self) -> Exposition {
        let admin: SocketAddr = Self::ADMIN.parse().unwrap();
        self.topo.lastack.enter(|| metrics::fetch(admin)).unwrap()
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = self.child.as_ref().unwrap().id() as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).unwrap();
    }

    /// Waits (bounded) for the process to exit: its status and stderr.
    fn exit(&mut self, within: Duration) -> (std::process::ExitStatus, String) {
        wait_exit(self.child.take().unwrap(), within)
    }
}

/// Waits (bounded) for `child` to exit: its status and stderr.
fn wait_exit(
    mut child: std::process::Child,
    within: Duration,
) -> (std::process::ExitStatus, String) {
    let status = wait::until("lastack exits", within, || match child.try_wait() {
        Ok(Some(status)) => Ok(status),
        _ => Err("running"),
    });
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    (status, log)
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            common::process::terminate_quietly(&mut child);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// SIGHUP reloads the file; `lastack reload -c FILE` asks the running
/// instance to, and refuses a bad file with its line; `lastack ctl` drains
/// and undrains a backend and reports readiness; SIGINT stops at once.
#[test]
fn lastack_run_reloads_on_sighup_and_on_request() {
    if !common::privileged("lastack_run_reloads_on_sighup_and_on_request") {
        return;
    }
    let topo = Topology::new(
        93,
        Shape {
            queues: 1,
            backends: 2,
            ..Default::default()
        },
    );
    let addrs = topo.backend_addrs.clone();
    let servers = [
        Server::start(
            topo.backends(),
            SocketAddr::new(addrs[0], BACKEND_PORT),
            Behaviour::Identify(0),
        ),
        Server::start(
            topo.backends(),
            SocketAddr::new(addrs[1], BACKEND_PORT),
            Behaviour::Identify(1),
        ),
    ];
    let mut run = Running::start(topo, &body(&addrs, &[(0, "")], ""));
    let vip = SocketAddr::new(run.topo.vip, PORT);
    let all = |run: &Running, n: usize| -> Vec<u8> {
        run.topo
            .client(|| (0..n).map(|_| ask(vip).unwrap()).collect())
    };
    assert!(all(&run, 5).iter().all(|&b| b == 0));

    run.write(&body(&addrs, &[(1, "")], ""));
    run.signal(nix::sys::signal::Signal::SIGHUP);
    wait::until("SIGHUP reloaded", Duration::from_secs(5), || {
        let answers = all(&run, 3);
        answers.iter().all(|&b| b == 1).then_some(()).ok_or(answers)
    });
    assert_eq!(
        run.metrics()
            .sum_where("lastack_config_reloads_total", "result", "ok"),
        1.0
    );

    // A bad file: `lastack reload` refuses it with its line, SIGHUP leaves
    // the running config in place.
    run.write(&body(&addrs, &[(0, "weight = 0")], ""));
    let (code, _, err) = run.lastack(&["reload", "-c", run.path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("{}:", run.path.display())) && err.contains("weight"),
        "{err}"
    );
    run.signal(nix::sys::signal::Signal::SIGHUP);
    wait::until("the bad reload counted", Duration::from_secs(5), || {
        let failed = run
            .metrics()
            .sum_where("lastack_config_reloads_total", "result", "error");
        (failed == 1.0).then_some(()).ok_or(failed)
    });
    assert!(
        all(&run, 5).iter().all(|&b| b == 1),
        "the running config stayed"
    );

    // Both backends; then backend 0 drained and undrained by request.
    run.write(&body(&addrs, &[(0, ""), (1, "")], ""));
    let (code, out, err) = run.lastack(&["reload", "-c", run.path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("reloaded"), "{out}");
    let answers = all(&run, 10);
    assert!(answers.contains(&0) && answers.contains(&1), "{answers:?}");
    let b0 = SocketAddr::new(addrs[0], BACKEND_PORT).to_string();
    let (code, _, err) = run.lastack(&["ctl", "-a", Running::ADMIN, "drain", "p", &b0]);
    assert_eq!(code, 0, "{err}");
    let before = servers[0].accepted.load(Ordering::Relaxed);
    assert!(
        all(&run, 10).iter().all(|&b| b == 1),
        "drained: nothing new on 0"
    );
    assert_eq!(servers[0].accepted.load(Ordering::Relaxed), before);
    let (code, _, _) = run.lastack(&["ctl", "-a", Running::ADMIN, "undrain", "p", &b0]);
    assert_eq!(code, 0);
    assert!(all(&run, 10).contains(&0), "undrained");
    let (code, out, _) = run.lastack(&["ctl", "-a", Running::ADMIN, "ready"]);
    assert_eq!((code, out.trim()), (0, "ready"));

    run.signal(nix::sys::signal::Signal::SIGINT);
    let (status, log) = run.exit(Duration::from_secs(5));
    assert!(status.success(), "{status:?}\n{log}");
}

/// `lastack run` with one listener in front of one echo backend, with the
/// given drain timeout and close grace; the backend lives as long as the
/// returned server.
fn one_echo_backend(net: u8, timeout: &str, close_grace: &str) -> (Running, SocketAddr, Server) {
    let topo = Topology::new(
        net,
        Shape {
            queues: 1,
            backends: 1,
            ..Default::default()
        },
    );
    let addrs = topo.backend_addrs.clone();
    let server = Server::start(
        topo.backends(),
        SocketAddr::new(addrs[0], BACKEND_PORT),
        Behaviour::Echo,
    );
    let drain = format!("[drain]\ntimeout = \"{timeout}\"\nclose_grace = \"{close_grace}\"\n");
    let run = Running::start(topo, &body(&addrs, &[(0, "")], &drain));
    let vip = SocketAddr::new(run.topo.vip, PORT);
    (run, vip, server)
}

/// SIGTERM during churn with long-lived streams: new connections are
/// refused within 100 ms, `/ready` turns 503, every established stream
/// completes byte-exact, and the process exits 0 well before the drain
/// timeout.
#[test]
fn sigterm_drains_gracefully() {
    if !common::privileged("sigterm_drains_gracefully") {
        return;
    }
    let (mut run, vip, _server) = one_echo_backend(94, "20s", "500ms");
    let streams: Vec<LongLived> = run.topo.client(|| {
        (0..20)
            .map(|_| LongLived::start(vip, 512, Duration::from_millis(5)).unwrap())
            .collect()
    });
    std::thread::sleep(Duration::from_millis(200)); // the streams at work
    let signalled = Instant::now();
    run.signal(nix::sys::signal::Signal::SIGTERM);
    // New connections refused (RST: connection refused) within 100 ms.
    let refused_after = run.topo.client(|| {
        wait::until("new connections refused", Duration::from_secs(2), || {
            match TcpStream::connect_timeout(&vip, Duration::from_millis(200)) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    Ok(signalled.elapsed())
                }
                other => Err(format!("{other:?}")),
            }
        })
    });
    eprintln!("new connections refused {refused_after:?} after SIGTERM");
    assert!(
        refused_after < Duration::from_millis(100),
        "refused after {refused_after:?}"
    );
    let (code, out, _) = run.lastack(&["ctl", "-a", Running::ADMIN, "ready"]);
    assert_ne!(code, 0, "ready while draining: {out}");
    // The established streams go on, then finish byte-exact.
    std::thread::sleep(Duration::from_millis(300));
    for (i, stream) in streams.into_iter().enumerate() {
        assert!(
            stream
                .finish()
                .unwrap_or_else(|e| panic!("stream {i}: {e}"))
                > 0
        );
    }
    let (status, log) = run.exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}\n{log}");
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "exited {:?} after SIGTERM, the timeout is 20 s",
        signalled.elapsed()
    );
    assert!(log.contains("drained"), "{log}");
}

/// A stream that never ends: the drain times out, what is left is closed
/// (and counted), and the process still exits 0.
#[test]
fn a_drain_that_times_out_closes_what_is_left() {
    if !common::privileged("a_drain_that_times_out_closes_what_is_left") {
        return;
    }
    let (mut run, vip, _server) = one_echo_backend(95, "1s", "300ms");
    let stream = run
        .topo
        .client(|| LongLived::start(vip, 256, Duration::from_millis(10)).unwrap());
    let signalled = Instant::now();
    run.signal(nix::sys::signal::Signal::SIGTERM);
    let (status, log) = run.exit(Duration::from_secs(5));
    let took = signalled.elapsed();
    assert!(status.success(), "{status:?}\n{log}");
    assert!(
        took >= Duration::from_secs(1),
        "exited after {took:?}, before the timeout"
    );
    assert!(
        log.contains("drain timed out") && log.contains("closed=1"),
        "{log}"
    );
    assert!(
        stream.finish().is_err(),
        "the never-ending stream was closed"
    );
}

/// The admin endpoint answers `/metrics` while other clients hold
/// connections open without sending anything.
#[test]
fn the_admin_endpoint_answers_past_silent_clients() {
    if !common::privileged("the_admin_endpoint_answers_past_silent_clients") {
        return;
    }
    let topo = Topology::new(96, Shape::default());
    let mut lastack = Lastack::start(
        topo,
        1,
        "[[listeners]]\nname = \"echo\"\nvip = \"{vip}\"\nport = 7\nservice = \"echo\"\n\n\
         [admin]\nlisten = \"127.0.0.1:9191\"\n",
    );
    let admin: SocketAddr = "127.0.0.1:9191".parse().unwrap();
    lastack.topo.lastack.enter(|| {
        let silent: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(admin).unwrap()).collect();
        let started = Instant::now();
        let text = metrics::get(admin, "/metrics").unwrap();
        assert!(text.contains("lastack_ready 1"), "{text}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(metrics::get(admin, "/live").unwrap().trim(), "live");
        drop(silent);
    });
    lastack.stop();
}

/// A shard that panics is noticed, restarted on its queue and counted;
/// service goes on.
#[test]
fn a_panicked_shard_is_restarted() {
    if !common::privileged("a_panicked_shard_is_restarted") {
        return;
    }
    let topo = Topology::new(97, Shape::default());
    let mut lastack = Lastack::start(
        topo,
        1,
        "[[listeners]]\nname = \"echo\"\nvip = \"{vip}\"\nport = 7\nservice = \"echo\"\n",
    );
    let vip = lastack.vip(7);
    assert_eq!(
        lastack.client(|| client::until_echoed(vip, b"before")),
        b"before"
    );
    lastack.inject_fault(0);
    let admin = lastack.admin();
    wait::until("the shard restarted", Duration::from_secs(5), || {
        lastack.supervise();
        let restarts = admin.counters.shard_restarts.load(Ordering::Relaxed);
        (restarts == 1).then_some(()).ok_or(restarts)
    });
    assert!(admin.ready.load(Ordering::Relaxed), "ready again");
    assert_eq!(
        lastack.client(|| client::until_echoed(vip, b"after")),
        b"after"
    );
    let mut stream = client::connect(vip, Duration::from_secs(5));
    let _ = stream.write_all(b"x");
    drop(stream);
    lastack.stop();
}

/// The capabilities `deploy/lastack.service` gives lastack as a non-root
/// user are enough: as `nobody` with only those, it attaches, serves
/// (echo through the datapath and a proxy listener through io_uring) and
/// drains on SIGTERM.
#[test]
fn lastack_runs_as_an_unprivileged_user_with_its_capabilities() {
    if !common::privileged("lastack_runs_as_an_unprivileged_user_with_its_capabilities") {
        return;
    }
    let topo = Topology::new(
        98,
        Shape {
            queues: 1,
            backends: 1,
            ..Default::default()
        },
    );
    let backend = SocketAddr::new(topo.backend_addrs[0], BACKEND_PORT);
    let _server = Server::start(topo.backends(), backend, Behaviour::Echo);
    let (dir, path) = common::run_config(&topo, 1, backend, "", "\n[drain]\ntimeout = \"2s\"\n");
    let caps = "-all,+bpf,+net_admin,+net_raw,+ipc_lock,+perfmon";
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", &topo.lastack.name, "setpriv"])
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(format!("--inh-caps={caps}"))
        .arg(format!("--ambient-caps={caps}"))
        .arg(format!("--bounding-set={caps}"))
        .args([common::LASTACK, "run", "-c"])
        .arg(&path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let vip = SocketAddr::new(topo.vip, 80);
    let echoed = topo.client(|| client::until_echoed(vip, b"as nobody"));
    assert_eq!(echoed, b"as nobody");
    let output = common::process::terminate(child);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}\n{log}", output.status);
    assert!(log.contains("drained"), "{log}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A full segment must fit the interface's MTU: with `tcp.mss` 1460 on an
/// interface of MTU 1400, `lastack run` refuses to start and says what to
/// change (issue 15: an MSS the path cannot carry was accepted before, and
/// its full segments were dropped on the way, silently).
#[test]
fn an_mss_beyond_the_interface_mtu_is_refused_at_start() {
    if !common::privileged("an_mss_beyond_the_interface_mtu_is_refused_at_start") {
        return;
    }
    let topo = Topology::new(
        97,
        Shape {
            queues: 1,
            backends: 1,
            ..Default::default()
        },
    );
    topo.lastack
        .exec(&["ip", "link", "set", "dev", &topo.lastack_if, "mtu", "1400"]);
    let backend = SocketAddr::new(topo.backend_addrs[0], BACKEND_PORT);
    let (dir, path) = common::run_config(&topo, 1, backend, "", "");
    let child = common::lastack_run(&topo.lastack, &path);
    let (status, log) = wait_exit(child, Duration::from_secs(20));
    assert!(!status.success(), "{status:?}\n{log}");
    assert!(
        log.contains("tcp.mss 1460 needs an MTU of at least 1500") && log.contains("has 1400"),
        "{log}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
