//! Prometheus text exposition (format 0.0.4) of everything lastack counts:
//! per shard (label `shard`) and, for the XDP program, per interface.
//! Names follow the Prometheus conventions: `lastack_` prefix, `_total`
//! for counters, units in the name (`_bytes`).

use std::fmt::Write;
use std::net::SocketAddrV4;

use crate::link::xdp::SteerCounters;
use crate::proxy::ProxyStats;
use crate::shard::ShardStats;

/// What the exposition is built from.
pub struct Snapshot<'a> {
    pub shards: &'a [ShardStats],
    /// XDP program counters per interface.
    pub xdp: &'a [(String, SteerCounters)],
    /// Pools: name and backends (address, up, draining-or-down accepts, connect failures).
    pub pools: &'a [PoolView],
    pub uptime_seconds: f64,
}

/// One pool as the admin endpoint shows it.
#[derive(Debug, Clone)]
pub struct PoolView {
    pub name: String,
    pub backends: Vec<BackendView>,
}

#[derive(Debug, Clone)]
pub struct BackendView {
    pub address: SocketAddrV4,
    pub up: bool,
    pub accepts_new: bool,
    pub connect_failures: u64,
}

struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let escaped = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.text, "{k}=\"{escaped}\"");
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// One sample per shard.
    fn per_shard(
        &mut self,
        shards: &[ShardStats],
        name: &str,
        kind: &str,
        help: &str,
        value: impl Fn(&ShardStats) -> u64,
    ) {
        self.family(name, kind, help);
        for s in shards {
            let shard = s.queue.to_string();
            self.sample(name, &[("shard", &shard)], value(s));
        }
    }
}

/// Shard counters: (metric name, help, accessor).
type ShardField = (&'static str, &'static str, fn(&ShardStats) -> u64);

/// Proxy counters: (metric suffix, help, accessor).
type ProxyField = (&'static str, &'static str, fn(&ProxyStats) -> u64);

const PROXY_COUNTERS: &[ProxyField] = &[
    (
        "sessions_total",
        "Client connections handed to the proxy.",
        |p| p.sessions_opened,
    ),
    (
        "connect_failures_total",
        "Backend connects refused or failed.",
        |p| p.connects_failed,
    ),
    (
        "connect_timeouts_total",
        "Backend connects that timed out.",
        |p| p.connects_timed_out,
    ),
    (
        "retries_total",
        "Connects retried on another backend.",
        |p| p.retries,
    ),
    (
        "port_retries_total",
        "Connects retried on another source port (TIME-WAIT too young).",
        |p| p.port_retries,
    ),
    (
        "no_backend_resets_total",
        "Clients reset because no backend could take them.",
        |p| p.no_backend,
    ),
    (
        "over_limit_resets_total",
        "Clients reset at the listener's connection limit.",
        |p| p.over_limit,
    ),
    (
        "backend_resets_total",
        "Backend resets or errors passed to the client as RST.",
        |p| p.backend_resets,
    ),
    (
        "client_resets_total",
        "Client resets passed to the backend.",
        |p| p.client_resets,
    ),
    (
        "client_closed_first_total",
        "Sessions where the client closed first (lastack held no TIME-WAIT).",
        |p| p.client_closed_first,
    ),
    (
        "grace_expired_total",
        "client-first sessions whose grace period ended (fallback applied).",
        |p| p.grace_expired,
    ),
    (
        "idle_closed_total",
        "Sessions closed by the idle timeout.",
        |p| p.idle_closed,
    ),
    ("to_backend_bytes_total", "Bytes sent to backends.", |p| {
        p.bytes_to_backend
    }),
    ("to_client_bytes_total", "Bytes queued to clients.", |p| {
        p.bytes_to_client
    }),
    (
        "socket_errors_total",
        "Errors opening backend sockets.",
        |p| p.socket_errors,
    ),
    (
        "ports_exhausted_total",
        "Connects that found no free source port of the shard's share.",
        |p| p.ports_exhausted,
    ),
    (
        "receive_buffer_shortage_total",
        "Backend receives that found no provided buffer.",
        |p| p.receive_buffer_shortage,
    ),
];

/// Renders the exposition.
pub fn render(snap: &Snapshot<'_>) -> String {
    let mut out = Out {
        text: String::with_capacity(16 * 1024),
    };
    let shards = snap.shards;
    out.family(
        "lastack_uptime_seconds",
        "gauge",
        "Seconds since lastack started.",
    );
    out.sample(
        "lastack_uptime_seconds",
        &[],
        format!("{:.1}", snap.uptime_seconds),
    );

    // XDP program.
    out.family(
        "lastack_xdp_packets_total",
        "counter",
        "Packets seen by the XDP steering program, by outcome.",
    );
    for (interface, c) in snap.xdp {
        for (action, v) in [
            ("redirected", c.redirected),
            ("passed", c.passed),
            ("no_socket", c.no_socket),
            ("malformed", c.malformed),
            ("fragment", c.fragment),
        ] {
            out.sample(
                "lastack_xdp_packets_total",
                &[("interface", interface), ("outcome", action)],
                v,
            );
        }
    }

    // Link layer.
    out.per_shard(
        shards,
        "lastack_rx_frames_total",
        "counter",
        "Frames taken from the AF_XDP rx ring.",
        |s| s.rx_frames,
    );
    out.per_shard(
        shards,
        "lastack_tx_frames_total",
        "counter",
        "Frames put on the AF_XDP tx ring.",
        |s| s.tx_frames,
    );
    out.per_shard(
        shards,
        "lastack_tx_ring_full_total",
        "counter",
        "Frames dropped because the tx ring was full.",
        |s| s.tx_ring_full,
    );
    out.family(
        "lastack_drops_total",
        "counter",
        "Frames or segments dropped, by reason.",
    );
    for s in shards {
        let shard = s.queue.to_string();
        let d = &s.drops;
        let t = &s.tcp;
        for (reason, v) in [
            ("truncated", d.truncated),
            ("malformed", d.malformed),
            ("bad_checksum", d.bad_checksum),
            ("fragment", d.fragment),
            ("unsupported", d.unsupported),
            ("not_tcp", d.not_tcp),
            ("bad_flags", t.drop_bad_flags),
            ("out_of_window", t.drop_out_of_window),
            ("paws", t.drop_paws),
            ("bad_ack", t.drop_bad_ack),
            ("reassembly_full", t.drop_reassembly_full),
            ("no_listener", t.drop_no_listener),
            ("syn_queue_full", t.drop_syn_queue_full),
            ("control_queue_full", t.drop_control_queue_full),
            ("table_full", t.drop_table_full),
        ] {
            out.sample(
                "lastack_drops_total",
                &[("shard", &shard), ("reason", reason)],
                v,
            );
        }
    }
    out.family("lastack_umem_frames", "gauge", "UMEM frames by place.");
    for s in shards {
        let shard = s.queue.to_string();
        let f = &s.frames;
        for (place, v) in [
            ("free", f.free),
            ("fill_ring", f.fill),
            ("held", f.held),
            ("tx_ring", f.tx),
        ] {
            out.sample(
                "lastack_umem_frames",
                &[("shard", &shard), ("place", place)],
                v,
            );
        }
    }

    // TCP.
    out.family(
        "lastack_tcp_connections",
        "gauge",
        "Connections of lastack's TCP stack by state.",
    );
    for s in shards {
        let shard = s.queue.to_string();
        for (state, n) in &s.states {
            out.sample(
                "lastack_tcp_connections",
                &[("shard", &shard), ("state", state)],
                n,
            );
        }
    }
    out.per_shard(
        shards,
        "lastack_tcp_time_wait_entries",
        "gauge",
        "TIME-WAIT entries held by lastack's stack.",
        |s| s.time_wait as u64,
    );
    out.per_shard(
        shards,
        "lastack_tcp_time_wait_bytes",
        "gauge",
        "Memory of the TIME-WAIT table.",
        |s| s.time_wait_bytes as u64,
    );
    out.family(
        "lastack_tcp_syn_queue_depth",
        "gauge",
        "Half-open connections per listener.",
    );
    for s in shards {
        let shard = s.queue.to_string();
        for (addr, syn, _) in &s.queues {
            out.sample(
                "lastack_tcp_syn_queue_depth",
                &[("shard", &shard), ("listener", &addr.to_string())],
                syn,
            );
        }
    }
    out.family(
        "lastack_tcp_accept_queue_depth",
        "gauge",
        "Established connections not yet taken, per listener.",
    );
    for s in shards {
        let shard = s.queue.to_string();
        for (addr, _, accept) in &s.queues {
            out.sample(
                "lastack_tcp_accept_queue_depth",
                &[("shard", &shard), ("listener", &addr.to_string())],
                accept,
            );
        }
    }
    let tcp_counters: &[ShardField] = &[
        (
            "lastack_tcp_segments_received_total",
            "TCP segments handed to the stack.",
            |s| s.tcp.segments_in,
        ),
        (
            "lastack_tcp_segments_sent_total",
            "TCP segments sent.",
            |s| s.tcp.segments_out,
        ),
        (
            "lastack_tcp_retransmitted_segments_total",
            "Segments retransmitted.",
            |s| s.tcp.retransmitted_segments,
        ),
        (
            "lastack_tcp_fast_retransmits_total",
            "Fast retransmits.",
            |s| s.tcp.fast_retransmits,
        ),
        (
            "lastack_tcp_rto_expirations_total",
            "Retransmission timeouts.",
            |s| s.tcp.rto_expirations,
        ),
        ("lastack_tcp_resets_sent_total", "RST segments sent.", |s| {
            s.tcp.resets_sent
        }),
        (
            "lastack_tcp_resets_received_total",
            "RST segments accepted.",
            |s| s.tcp.resets_received,
        ),
        (
            "lastack_tcp_syn_cookies_sent_total",
            "SYN-ACKs carrying a SYN cookie.",
            |s| s.tcp.syn_cookies_sent,
        ),
        (
            "lastack_tcp_syn_cookies_validated_total",
            "Connections rebuilt from a valid cookie.",
            |s| s.tcp.syn_cookies_validated,
        ),
        (
            "lastack_tcp_syn_cookies_invalid_total",
            "ACKs with an invalid cookie.",
            |s| s.tcp.syn_cookies_invalid,
        ),
        (
            "lastack_tcp_syn_queue_overflows_total",
            "SYNs beyond a full SYN queue.",
            |s| s.tcp.syn_queue_overflows,
        ),
        (
            "lastack_tcp_accept_queue_overflows_total",
            "Handshakes completed into a full accept queue.",
            |s| s.tcp.accept_queue_overflows,
        ),
        (
            "lastack_tcp_connections_opened_total",
            "Connections established.",
            |s| s.tcp.connections_opened,
        ),
        (
            "lastack_tcp_connections_closed_total",
            "Connections closed cleanly.",
            |s| s.tcp.connections_closed,
        ),
        (
            "lastack_tcp_connections_reset_total",
            "Connections reset.",
            |s| s.tcp.connections_reset,
        ),
        (
            "lastack_tcp_connection_timeouts_total",
            "Connections given up after retransmissions.",
            |s| s.tcp.connection_timeouts,
        ),
        (
            "lastack_tcp_challenge_acks_total",
            "Challenge ACKs (RFC 5961).",
            |s| s.tcp.challenge_acks,
        ),
        (
            "lastack_tcp_time_wait_reopened_total",
            "TIME-WAIT entries reused by a new SYN.",
            |s| s.tcp.time_wait_reopened,
        ),
        (
            "lastack_tcp_time_wait_entered_total",
            "Connections that entered TIME-WAIT (lastack closed first).",
            |s| s.tcp.time_wait_entered,
        ),
    ];
    for (name, help, f) in tcp_counters {
        out.per_shard(shards, name, "counter", help, f);
    }

    // Proxy.
    out.per_shard(
        shards,
        "lastack_proxy_sessions",
        "gauge",
        "Proxy sessions open.",
        |s| s.proxy.sessions_active,
    );
    out.per_shard(
        shards,
        "lastack_proxy_held_buffers",
        "gauge",
        "Receive buffers held for clients without room.",
        |s| s.proxy.held_buffers,
    );
    for (suffix, help, f) in PROXY_COUNTERS {
        let name = format!("lastack_proxy_{suffix}");
        out.per_shard(shards, &name, "counter", help, |s| f(&s.proxy));
    }

    // Backends.
    out.family(
        "lastack_backend_up",
        "gauge",
        "1 if the backend passes its health checks.",
    );
    for pool in snap.pools {
        for b in &pool.backends {
            out.sample(
                "lastack_backend_up",
                &[("pool", &pool.name), ("backend", &b.address.to_string())],
                u8::from(b.up),
            );
        }
    }
    out.family(
        "lastack_backend_accepting",
        "gauge",
        "1 if the backend gets new connections (up and not draining).",
    );
    for pool in snap.pools {
        for b in &pool.backends {
            out.sample(
                "lastack_backend_accepting",
                &[("pool", &pool.name), ("backend", &b.address.to_string())],
                u8::from(b.accepts_new),
            );
        }
    }
    out.family(
        "lastack_backend_connections",
        "gauge",
        "Open connections to the backend, all shards.",
    );
    for (p, pool) in snap.pools.iter().enumerate() {
        for (i, b) in pool.backends.iter().enumerate() {
            let open: u64 = shards
                .iter()
                .filter_map(|s| s.backend_connections.get(p).and_then(|v| v.get(i)))
                .map(|&n| u64::from(n))
                .sum();
            out.sample(
                "lastack_backend_connections",
                &[("pool", &pool.name), ("backend", &b.address.to_string())],
                open,
            );
        }
    }
    out.family(
        "lastack_backend_connections_total",
        "counter",
        "Connections sent to the backend, all shards.",
    );
    for (p, pool) in snap.pools.iter().enumerate() {
        for (i, b) in pool.backends.iter().enumerate() {
            let total: u64 = shards
                .iter()
                .filter_map(|s| s.backend_opened.get(p).and_then(|v| v.get(i)))
                .sum();
            out.sample(
                "lastack_backend_connections_total",
                &[("pool", &pool.name), ("backend", &b.address.to_string())],
                total,
            );
        }
    }
    out.family(
        "lastack_backend_connect_failures_total",
        "counter",
        "Failed connects and health checks.",
    );
    for pool in snap.pools {
        for b in &pool.backends {
            out.sample(
                "lastack_backend_connect_failures_total",
                &[("pool", &pool.name), ("backend", &b.address.to_string())],
                b.connect_failures,
            );
        }
    }
    out.text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(queue: u32) -> ShardStats {
        let mut s = ShardStats {
            queue,
            rx_frames: 10 + u64::from(queue),
            time_wait: 3,
            ..Default::default()
        };
        s.states = vec![("ESTABLISHED", 2), ("LAST-ACK", 1)];
        s.proxy.sessions_opened = 7;
        s.backend_connections = vec![vec![1, 2]];
        s
    }

    #[test]
    fn the_exposition_is_well_formed_and_complete() {
        let shards = [shard(0), shard(1)];
        let pools = [PoolView {
            name: "web".into(),
            backends: vec![
                BackendView {
                    address: "10.0.0.1:80".parse().unwrap(),
                    up: true,
                    accepts_new: true,
                    connect_failures: 0,
                },
                BackendView {
                    address: "10.0.0.2:80".parse().unwrap(),
                    up: false,
                    accepts_new: false,
                    connect_failures: 4,
                },
            ],
        }];
        let xdp = [(
            "eth0".to_string(),
            SteerCounters {
                redirected: 5,
                ..Default::default()
            },
        )];
        let text = render(&Snapshot {
            shards: &shards,
            xdp: &xdp,
            pools: &pools,
            uptime_seconds: 1.5,
        });
        assert!(text.contains("lastack_rx_frames_total{shard=\"1\"} 11\n"));
        assert!(text.contains("lastack_tcp_connections{shard=\"0\",state=\"LAST-ACK\"} 1\n"));
        assert!(text
            .contains("lastack_xdp_packets_total{interface=\"eth0\",outcome=\"redirected\"} 5\n"));
        assert!(text.contains("lastack_backend_up{pool=\"web\",backend=\"10.0.0.2:80\"} 0\n"));
        // Open connections are summed over shards.
        assert!(
            text.contains("lastack_backend_connections{pool=\"web\",backend=\"10.0.0.2:80\"} 4\n")
        );
        assert!(text.contains("lastack_proxy_sessions_total{shard=\"0\"} 7\n"));
        // Every sample belongs to a family declared just before, and every
        // line parses as `name{labels} value`.
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split(' ');
                let name = parts.next().unwrap();
                assert!(matches!(parts.next(), Some("counter" | "gauge")), "{line}");
                assert!(declared.insert(name.to_string()), "{name} declared twice");
                if let Some(base) = name.strip_suffix("_total") {
                    assert!(!base.is_empty());
                }
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(declared.contains(name), "undeclared {name}");
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            assert!(name.starts_with("lastack_"));
        }
        // Counters end in _total.
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            if line.ends_with(" counter") {
                assert!(
                    line.split(' ').nth(2).unwrap().ends_with("_total"),
                    "{line}"
                );
            }
        }
    }
}
