//! `lastack churn` and `lastack backend` against each other over kernel
//! TCP, in a namespace of the test's own (so TIME-WAIT counts are exact).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use lastack_testkit::netns::{privileged, Netns};
use lastack_tools::churn::server::{self, Mode, ServerConfig};
use lastack_tools::churn::{self as churn, ChurnConfig, CloseOrder};

fn config(target: SocketAddr, close: CloseOrder, n: u64) -> ChurnConfig {
    ChurnConfig {
        targets: vec![target],
        concurrency: 16,
        threads: 2,
        duration: None,
        connections: Some(n),
        request: 100,
        response: 3000,
        close,
        requests_per_connection: 1,
        rate: None,
        sources: Vec::new(),
        timeout: Duration::from_secs(5),
        cancel: None,
    }
}

fn backend(addr: SocketAddr, close: CloseOrder) -> ServerConfig {
    ServerConfig {
        listen: vec![addr],
        mode: Mode::Respond,
        request: 100,
        response: 3000,
        close,
        threads: 1,
    }
}

/// Both close orders complete every transaction, and the TIME-WAITs land
/// on the side that closed first: the client's in client-first (counted
/// by churn), none of the client's in server-first.
#[test]
fn churn_counts_transactions_and_time_wait_in_both_close_orders() {
    if !privileged("churn_counts_transactions") {
        return;
    }
    let ns = Netns::new("lsch");
    // No TIME-WAIT reuse (Debian's default 2 reuses them on loopback), so
    // every one stays countable.
    ns.exec(&["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=0"]);
    ns.enter(|| {
        let a = SocketAddr::from((Ipv4Addr::LOCALHOST, 9601));
        let (stop, handle) = server::spawn(backend(a, CloseOrder::ClientFirst)).unwrap();
        let report = churn::run(&config(a, CloseOrder::ClientFirst, 2000), |_, _, _| {}).unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        handle.join().unwrap().unwrap();
        assert_eq!(report.transactions, 2000, "{report:#?}");
        assert_eq!(report.errors.total(), 0);
        assert!(report.connections_per_s > 0.0);
        // 2,000 connections' TCP (both ends, in this process) is kernel
        // time, a part of the whole.
        assert!(report.kernel_cpu_us_per_transaction > 0.0, "{report:#?}");
        assert!(report.kernel_cpu_us_per_transaction <= report.cpu_us_per_transaction);
        assert!(report.transaction.p50_us <= report.transaction.p99_us);
        assert!(report.transaction.p99_us <= report.transaction.max_us);
        // On loopback both ends are in this namespace: the client's 2,000.
        assert!(
            report.client_time_wait >= 2000,
            "{}",
            report.client_time_wait
        );

        let b = SocketAddr::from((Ipv4Addr::LOCALHOST, 9602));
        let (stop, handle) = server::spawn(backend(b, CloseOrder::ServerFirst)).unwrap();
        let before = churn::time_wait_sockets();
        let report = churn::run(&config(b, CloseOrder::ServerFirst, 1000), |_, _, _| {}).unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        handle.join().unwrap().unwrap();
        assert_eq!(report.transactions, 1000, "{report:#?}");
        assert_eq!(report.errors.total(), 0);
        // The server closed first: its side holds these (same namespace).
        assert!(report.client_time_wait >= before + 1000);
    });
}

/// Errors are counted by kind: nothing listening is "refused"; a server
/// that answers short is a "short read"; a duration-bound run stops.
#[test]
fn churn_sorts_errors_by_kind() {
    if !privileged("churn_sorts_errors_by_kind") {
        return;
    }
    let ns = Netns::new("lsce");
    ns.enter(|| {
        let nobody = SocketAddr::from((Ipv4Addr::LOCALHOST, 9603));
        let report =
            churn::run(&config(nobody, CloseOrder::ClientFirst, 50), |_, _, _| {}).unwrap();
        assert_eq!(report.transactions, 0);
        assert_eq!(report.errors.refused, 50, "{:?}", report.errors);

        // The server sends 3,000 bytes and closes, the client wants 5,000.
        let short = SocketAddr::from((Ipv4Addr::LOCALHOST, 9604));
        let (stop, handle) = server::spawn(backend(short, CloseOrder::ServerFirst)).unwrap();
        let mut want_more = config(short, CloseOrder::ServerFirst, 0);
        want_more.response = 5000;
        want_more.connections = None;
        want_more.duration = Some(Duration::from_millis(300));
        let report = churn::run(&want_more, |_, _, _| {}).unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        handle.join().unwrap().unwrap();
        assert_eq!(report.transactions, 0);
        assert!(report.errors.short_read > 10, "{:?}", report.errors);
        assert_eq!(report.errors.short_read, report.errors.total());
        assert!(report.elapsed_s < 3.0);
    });
}

/// Open loop: at a fixed rate, about rate × duration connections start.
#[test]
fn churn_open_loop_holds_its_rate() {
    if !privileged("churn_open_loop_holds_its_rate") {
        return;
    }
    let ns = Netns::new("lsco");
    ns.enter(|| {
        let a = SocketAddr::from((Ipv4Addr::LOCALHOST, 9605));
        let (stop, handle) = server::spawn(backend(a, CloseOrder::ClientFirst)).unwrap();
        let mut open = config(a, CloseOrder::ClientFirst, 0);
        open.connections = None;
        open.duration = Some(Duration::from_secs(1));
        open.rate = Some(2000.0);
        let report = churn::run(&open, |_, _, _| {}).unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        handle.join().unwrap().unwrap();
        assert_eq!(report.errors.total(), 0);
        // 2,000/s for 1 s: not a closed loop's tens of thousands.
        assert!(
            (1500..=2300).contains(&report.transactions),
            "{} transactions",
            report.transactions
        );
    });
}

/// Over IPv6: churn and backend on `::1` (IPv4 and IPv6 targets together,
/// used in turn), each connection bound to a source of its target's
/// family; a source list without a family a target needs is refused.
#[test]
fn churn_and_backend_speak_ipv6_beside_ipv4() {
    if !privileged("churn_and_backend_speak_ipv6") {
        return;
    }
    let ns = Netns::new("lsc6");
    ns.exec(&["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=0"]);
    ns.enter(|| {
        let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 9606));
        let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, 9606));
        let mut listen = backend(v6, CloseOrder::ClientFirst);
        listen.listen.push(v4);
        let (stop, handle) = server::spawn(listen).unwrap();
        let mut both = config(v6, CloseOrder::ClientFirst, 1000);
        both.targets.push(v4);
        both.sources = vec![
            Ipv4Addr::LOCALHOST.into(),
            std::net::Ipv6Addr::LOCALHOST.into(),
        ];
        let before = churn::time_wait_sockets();
        let report = churn::run(&both, |_, _, _| {}).unwrap();
        assert_eq!(report.transactions, 1000, "{report:#?}");
        assert_eq!(report.errors.total(), 0);
        assert!(
            report.client_time_wait >= before + 1000,
            "IPv6 TIME-WAITs are counted too: {}",
            report.client_time_wait
        );

        let mut only_v4_sources = config(v6, CloseOrder::ClientFirst, 10);
        only_v4_sources.sources = vec![Ipv4Addr::LOCALHOST.into()];
        let refused = churn::run(&only_v4_sources, |_, _, _| {}).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::InvalidInput);
        assert!(refused.to_string().contains("IPv6"), "{refused}");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        handle.join().unwrap().unwrap();
    });
}

/// Kept-alive connections: 100 connections carry 50 request/response
/// exchanges each (the backend answers every request on a connection),
/// so 5,000 exchanges leave exactly 100 TIME-WAITs on the client; an open
/// loop paces requests on connections kept until the run ends; keeping
/// connections alive with the server closing first is refused.
#[test]
fn churn_keeps_connections_alive_for_many_requests() {
    if !privileged("churn_keeps_connections_alive") {
        return;
    }
    let ns = Netns::new("lsck");
    ns.exec(&["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=0"]);
    ns.enter(|| {
        let a = SocketAddr::from((Ipv4Addr::LOCALHOST, 9607));
        let (stop, handle) = server::spawn(backend(a, CloseOrder::ClientFirst)).unwrap();
        let mut kept = config(a, CloseOrder::ClientFirst, 100);
        kept.requests_per_connection = 50;
        let before = churn::time_wait_sockets();
        let report = churn::run(&kept, |_, _, _| {}).unwrap();
        assert_eq!(report.errors.total(), 0, "{report:#?}");
        assert_eq!(report.transactions, 5000, "{report:#?}");
        assert_eq!(report.connections, 100);
        assert!(report.requests_per_s > 40.0 * report.connections_per_s);
        assert_eq!(churn::time_wait_sockets() - before, 100);

        // Open loop, connections kept until the end: 1,000 requests/s for
        // 1 s on at most 16 connections.
        let mut paced = config(a, CloseOrder::ClientFirst, 0);
        paced.connections = None;
        paced.duration = Some(Duration::from_secs(1));
        paced.rate = Some(1000.0);
        paced.requests_per_connection = 0;
        let report = churn::run(&paced, |_, _, _| {}).unwrap();
        assert_eq!(report.errors.total(), 0, "{report:#?}");
        assert!(
            (750..=1150).contains(&report.transactions),
            "{} requests",
            report.transactions
        );
        assert!(report.connections <= 16, "{report:#?}");
        assert!(report.text().contains("requests:"), "{}", report.text());

        let mut server_first = config(a, CloseOrder::ServerFirst, 10);
        server_first.requests_per_connection = 2;
        let refused = churn::run(&server_first, |_, _, _| {}).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::InvalidInput);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        handle.join().unwrap().unwrap();
    });
}
