//! Every metric lastack exports, declared once ([`METRICS`]: name, kind,
//! help, labels, and how it is read from a [`Snapshot`]). [`collect`] turns
//! the declarations into an [`Exposition`], from which the admin endpoint
//! renders both views: Prometheus text (`/metrics`) and JSON
//! (`/metrics.json`, what `lastack stats`, the demo, the tests and the
//! benchmark read).
//!
//! Names follow the Prometheus conventions: `lastack_` prefix, `_total`
//! for counters, units in the name (`_bytes`, `_seconds`).
//!
//! Hand-written rather than `prometheus-client`: the samples are read from
//! per-shard snapshots when scraped (nothing is registered or updated on the
//! fast path), the JSON view must come from the same declarations, and the
//! text format is a few lines of [`Exposition::to_prometheus_text`].

use std::net::SocketAddr;

use lastack_tools::metrics::{Exposition, Family, Kind, Sample};

use std::sync::atomic::Ordering;

use super::RuntimeCounters;
use crate::link::xdp::SteerCounters;
use crate::shard::ShardStats;

/// What the exposition is built from.
pub struct Snapshot<'a> {
    pub shards: &'a [ShardStats],
    /// XDP program counters per interface.
    pub xdp: &'a [(String, SteerCounters)],
    pub pools: &'a [PoolView],
    pub uptime_seconds: f64,
    pub runtime: &'a RuntimeCounters,
    pub ready: bool,
    pub draining: bool,
}

/// One pool as the admin endpoint shows it.
#[derive(Debug, Clone)]
pub struct PoolView {
    pub name: String,
    pub backends: Vec<BackendView>,
}

#[derive(Debug, Clone)]
pub struct BackendView {
    pub address: SocketAddr,
    pub up: bool,
    pub accepts_new: bool,
    pub connect_failures: u64,
    /// Open now and opened so far, from every shard.
    pub connections: u32,
    pub opened: u64,
    /// Health changes so far: up → down, down → up.
    pub went_down: u64,
    pub went_up: u64,
}

/// How a metric's samples are read.
#[derive(Clone, Copy)]
pub enum Source {
    /// One sample per shard (label `shard`), from its snapshot.
    PerShard(fn(&ShardStats) -> u64),
    /// Anything else: the function pushes samples with the declared labels.
    Custom(fn(&Snapshot<'_>, &mut Samples<'_>)),
}

/// A metric's declaration.
#[derive(Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    /// Label names, in order (`["shard"]` for [`Source::PerShard`]).
    pub labels: &'static [&'static str],
    pub source: Source,
}

/// Where a [`Source::Custom`] function puts its samples.
pub struct Samples<'a> {
    labels: &'static [&'static str],
    out: &'a mut Vec<Sample>,
}

impl Samples<'_> {
    /// A sample with label values in the declared order.
    pub fn push(&mut self, values: &[&str], value: impl Into<f64>) {
        debug_assert_eq!(values.len(), self.labels.len(), "declared labels");
        self.out.push(Sample {
            labels: self
                .labels
                .iter()
                .zip(values)
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value: value.into(),
        });
    }
}

const SHARD: &[&str] = &["shard"];
const BACKEND: &[&str] = &["pool", "backend"];

const fn per_shard(
    name: &'static str,
    kind: Kind,
    help: &'static str,
    read: fn(&ShardStats) -> u64,
) -> Metric {
    Metric {
        name,
        kind,
        help,
        labels: SHARD,
        source: Source::PerShard(read),
    }
}

const fn counter(name: &'static str, help: &'static str, read: fn(&ShardStats) -> u64) -> Metric {
    per_shard(name, Kind::Counter, help, read)
}

const fn gauge(name: &'static str, help: &'static str, read: fn(&ShardStats) -> u64) -> Metric {
    per_shard(name, Kind::Gauge, help, read)
}

const fn custom(
    name: &'static str,
    kind: Kind,
    help: &'static str,
    labels: &'static [&'static str],
    read: fn(&Snapshot<'_>, &mut Samples<'_>),
) -> Metric {
    Metric {
        name,
        kind,
        help,
        labels,
        source: Source::Custom(read),
    }
}

/// Samples of every shard: `rows` gives each shard's (second label, value)
/// pairs.
fn each_shard(
    snap: &Snapshot<'_>,
    out: &mut Samples<'_>,
    rows: impl Fn(&ShardStats, &mut dyn FnMut(&str, u64)),
) {
    for s in snap.shards {
        let shard = s.queue.to_string();
        rows(s, &mut |label, value| {
            out.push(&[&shard, label], value as f64)
        });
    }
}

/// Samples of every backend of every pool.
fn each_backend(
    snap: &Snapshot<'_>,
    out: &mut Samples<'_>,
    value: impl Fn(usize, usize, &BackendView) -> f64,
) {
    for (p, pool) in snap.pools.iter().enumerate() {
        for (i, b) in pool.backends.iter().enumerate() {
            out.push(&[&pool.name, &b.address.to_string()], value(p, i, b));
        }
    }
}

/// Every metric, in exposition order.
pub const METRICS: &[Metric] = &[
    custom(
        "lastack_uptime_seconds",
        Kind::Gauge,
        "Seconds since lastack started.",
        &[],
        |snap, out| out.push(&[], (snap.uptime_seconds * 10.0).round() / 10.0),
    ),
    custom(
        "lastack_ready",
        Kind::Gauge,
        "1 while lastack takes new connections (GET /ready answers 200).",
        &[],
        |snap, out| out.push(&[], u8::from(snap.ready)),
    ),
    custom(
        "lastack_draining",
        Kind::Gauge,
        "1 while lastack drains (after SIGTERM).",
        &[],
        |snap, out| out.push(&[], u8::from(snap.draining)),
    ),
    custom(
        "lastack_config_reloads_total",
        Kind::Counter,
        "Config reloads, by result (an error leaves the running config in place).",
        &["result"],
        |snap, out| {
            let c = snap.runtime;
            out.push(&["ok"], c.reloads_ok.load(Ordering::Relaxed) as f64);
            out.push(&["error"], c.reloads_failed.load(Ordering::Relaxed) as f64);
        },
    ),
    custom(
        "lastack_shard_restarts_total",
        Kind::Counter,
        "Shards restarted after their thread panicked (their connections were lost).",
        &[],
        |snap, out| {
            out.push(
                &[],
                snap.runtime.shard_restarts.load(Ordering::Relaxed) as f64,
            )
        },
    ),
    counter(
        "lastack_drain_closed_total",
        "Connections closed because a drain ran out of time (FIN, then RST).",
        |s| s.closed_at_drain_timeout,
    ),
    custom(
        "lastack_xdp_packets_total",
        Kind::Counter,
        "Packets seen by the XDP steering program, by outcome.",
        &["interface", "outcome"],
        |snap, out| {
            for (interface, c) in snap.xdp {
                for (outcome, v) in [
                    ("redirected", c.redirected),
                    ("passed", c.passed),
                    ("no_socket", c.no_socket),
                    ("malformed", c.malformed),
                    ("fragment", c.fragment),
                    ("icmp_redirected", c.icmp_redirected),
                    ("ipv6_extension", c.ipv6_extension),
                    ("tunnelled", c.tunnelled),
                ] {
                    out.push(&[interface, outcome], v as f64);
                }
            }
        },
    ),
    // Link layer.
    counter(
        "lastack_rx_frames_total",
        "Frames taken from the AF_XDP rx ring.",
        |s| s.rx_frames,
    ),
    counter(
        "lastack_tx_frames_total",
        "Frames put on the AF_XDP tx ring.",
        |s| s.tx_frames,
    ),
    counter(
        "lastack_tx_ring_full_total",
        "Frames dropped because the tx ring was full.",
        |s| s.tx_ring_full,
    ),
    custom(
        "lastack_drops_total",
        Kind::Counter,
        "Frames or segments dropped, by reason.",
        &["shard", "reason"],
        |snap, out| {
            each_shard(snap, out, |s, push| {
                let (d, t) = (&s.drops, &s.tcp);
                for (reason, v) in [
                    ("truncated", d.truncated),
                    ("malformed", d.malformed),
                    ("bad_checksum", d.bad_checksum),
                    ("fragment", d.fragment),
                    ("unsupported", d.unsupported),
                    ("not_tcp", d.not_tcp),
                    ("tunnelled", d.tunnelled),
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
                    push(reason, v);
                }
            })
        },
    ),
    custom(
        "lastack_umem_frames",
        Kind::Gauge,
        "UMEM frames by place.",
        &["shard", "place"],
        |snap, out| {
            each_shard(snap, out, |s, push| {
                let f = &s.frames;
                push("free", f.free as u64);
                push("fill_ring", f.fill as u64);
                push("held", f.held as u64);
                push("tx_ring", f.tx as u64);
            })
        },
    ),
    // TCP.
    custom(
        "lastack_tcp_connections",
        Kind::Gauge,
        "Connections of lastack's TCP stack by state.",
        &["shard", "state"],
        |snap, out| {
            each_shard(snap, out, |s, push| {
                for &(state, n) in &s.states {
                    push(state, n as u64);
                }
            })
        },
    ),
    gauge(
        "lastack_tcp_time_wait_entries",
        "TIME-WAIT entries held by lastack's stack.",
        |s| s.time_wait as u64,
    ),
    gauge(
        "lastack_tcp_time_wait_bytes",
        "Memory of the TIME-WAIT table.",
        |s| s.time_wait_bytes as u64,
    ),
    gauge(
        "lastack_buffer_pool_bytes",
        "Connection buffer memory lent to connections now (chunks holding bytes in flight).",
        |s| s.buffer_lent_bytes as u64,
    ),
    gauge(
        "lastack_buffer_pool_peak_bytes",
        "The most connection buffer memory ever lent at once.",
        |s| s.buffer_peak_bytes as u64,
    ),
    gauge(
        "lastack_buffer_pool_held_bytes",
        "Connection buffer memory held: lent, and spare chunks kept for reuse.",
        |s| s.buffer_held_bytes as u64,
    ),
    counter(
        "lastack_buffer_pool_shortages_total",
        "Times the lent buffer memory reached [tcp] buffer_budget (windows shrink to one chunk meanwhile).",
        |s| s.buffer_shortages,
    ),
    counter(
        "lastack_icmp_relayed_total",
        "ICMP fragmentation-needed that reached a shard without the flow (RSS hashes the ICMP's own addresses), passed to the other shards.",
        |s| s.icmp_relayed,
    ),
    counter(
        "lastack_cluster_forwarded_total",
        "Segments of flows another cluster instance owns (an ECMP change moved them here), forwarded to it in IP in IP.",
        |s| s.forwarded,
    ),
    counter(
        "lastack_cluster_forward_failures_total",
        "Segments to forward that could not go (no such peer, no free frame, too big): dropped, the client retransmits.",
        |s| s.forward_failures,
    ),
    counter(
        "lastack_cluster_segments_relayed_total",
        "Segments forwarded here that reached a shard without their flow (RSS hashed the outer header), passed to the other shards.",
        |s| s.segments_relayed,
    ),
    counter(
        "lastack_cluster_segment_relay_taken_total",
        "Relayed forwarded segments taken by the shard that holds the flow.",
        |s| s.segment_relay_taken,
    ),
    counter(
        "lastack_cluster_forwarded_received_total",
        "Segments another cluster instance forwarded here.",
        |s| s.tcp.forwarded_segments_received,
    ),
    counter(
        "lastack_icmp_relay_taken_total",
        "Relayed ICMP fragmentation-needed taken by the shard that holds the flow.",
        |s| s.icmp_relay_taken,
    ),
    counter(
        "lastack_memory_give_backs_total",
        "Times a shard had the allocator return freed memory to the system (its slabs moved by 1024 slots or more; at most once a second).",
        |s| s.memory_give_backs,
    ),
    custom(
        "lastack_tcp_syn_queue_depth",
        Kind::Gauge,
        "Half-open connections per listener.",
        &["shard", "listener", "family"],
        |snap, out| {
            for s in snap.shards {
                for l in &s.listeners {
                    out.push(
                        &[&s.queue.to_string(), &l.addr.to_string(), family(&l.addr)],
                        l.syn_queue as f64,
                    );
                }
            }
        },
    ),
    custom(
        "lastack_tcp_accept_queue_depth",
        Kind::Gauge,
        "Established connections not yet taken, per listener.",
        &["shard", "listener", "family"],
        |snap, out| {
            for s in snap.shards {
                for l in &s.listeners {
                    out.push(
                        &[&s.queue.to_string(), &l.addr.to_string(), family(&l.addr)],
                        l.accept_queue as f64,
                    );
                }
            }
        },
    ),
    custom(
        "lastack_listener_connections",
        Kind::Gauge,
        "Connections a listener accepted that are still served (by family: sum over `family`).",
        &["shard", "listener", "family", "listening"],
        |snap, out| {
            for s in snap.shards {
                for l in &s.listeners {
                    let listening = if l.listening { "yes" } else { "no" };
                    out.push(
                        &[&s.queue.to_string(), &l.name, family(&l.addr), listening],
                        l.open,
                    );
                }
            }
        },
    ),
    custom(
        "lastack_listener_over_limit_resets_total",
        Kind::Counter,
        "Connections reset at the listener's max_connections (a limit over every shard).",
        &["shard", "listener", "family"],
        |snap, out| {
            for s in snap.shards {
                for l in &s.listeners {
                    out.push(
                        &[&s.queue.to_string(), &l.name, family(&l.addr)],
                        l.over_limit as f64,
                    );
                }
            }
        },
    ),
    counter(
        "lastack_tcp_segments_received_total",
        "TCP segments handed to the stack.",
        |s| s.tcp.segments_in,
    ),
    counter(
        "lastack_tcp_segments_sent_total",
        "TCP segments sent.",
        |s| s.tcp.segments_out,
    ),
    counter(
        "lastack_tcp_retransmitted_segments_total",
        "Segments retransmitted.",
        |s| s.tcp.retransmitted_segments,
    ),
    counter(
        "lastack_tcp_retransmitted_bytes_total",
        "Payload bytes retransmitted.",
        |s| s.tcp.retransmitted_bytes,
    ),
    counter(
        "lastack_tcp_fast_retransmits_total",
        "Fast recoveries entered (duplicate ACKs or SACK scoreboard).",
        |s| s.tcp.fast_retransmits,
    ),
    counter(
        "lastack_tcp_dsacks_received_total",
        "D-SACKs received: segments the peer got twice (a retransmission not needed).",
        |s| s.tcp.dsacks_received,
    ),
    counter(
        "lastack_tcp_loss_probes_total",
        "Tail-loss probes sent (RFC 8985).",
        |s| s.tcp.loss_probes,
    ),
    counter(
        "lastack_tcp_lost_retransmissions_total",
        "Rounds of fast-recovery retransmissions found lost in turn.",
        |s| s.tcp.lost_retransmissions,
    ),
    counter(
        "lastack_tcp_ecn_negotiated_total",
        "Connections that negotiated ECN (RFC 3168).",
        |s| s.tcp.ecn_negotiated,
    ),
    counter(
        "lastack_tcp_ce_received_total",
        "Segments received marked Congestion Experienced on ECN connections.",
        |s| s.tcp.ce_received,
    ),
    counter(
        "lastack_tcp_ecn_window_reductions_total",
        "Congestion windows cut for the peer's ECN echo (at most once per window).",
        |s| s.tcp.ecn_window_reductions,
    ),
    counter(
        "lastack_tcp_spurious_timeouts_total",
        "Retransmission timeouts found spurious by the timestamp echo (RFC 3522) and undone (RFC 4015).",
        |s| s.tcp.spurious_timeouts,
    ),
    counter(
        "lastack_tcp_icmp_too_big_received_total",
        "ICMP fragmentation-needed messages about a connection of the shard (XDP steers them by the quoted flow; other shards' are relayed).",
        |s| s.tcp.icmp_too_big_received,
    ),
    counter(
        "lastack_tcp_icmp_too_big_ignored_total",
        "Of those, ignored: the quoted sequence number not in flight (RFC 5927).",
        |s| s.tcp.icmp_too_big_ignored,
    ),
    counter(
        "lastack_tcp_pmtu_reductions_total",
        "Connections whose MSS a believed ICMP lowered (path MTU discovery, RFC 1191).",
        |s| s.tcp.pmtu_reductions,
    ),
    counter(
        "lastack_tcp_rto_expirations_total",
        "Retransmission timeouts.",
        |s| s.tcp.rto_expirations,
    ),
    counter("lastack_tcp_resets_sent_total", "RST segments sent.", |s| {
        s.tcp.resets_sent
    }),
    counter(
        "lastack_tcp_resets_received_total",
        "RST segments accepted.",
        |s| s.tcp.resets_received,
    ),
    counter(
        "lastack_tcp_syn_cookies_sent_total",
        "SYN-ACKs carrying a SYN cookie.",
        |s| s.tcp.syn_cookies_sent,
    ),
    counter(
        "lastack_tcp_syn_cookies_validated_total",
        "Connections rebuilt from a valid cookie.",
        |s| s.tcp.syn_cookies_validated,
    ),
    counter(
        "lastack_tcp_syn_cookies_invalid_total",
        "ACKs with an invalid cookie.",
        |s| s.tcp.syn_cookies_invalid,
    ),
    counter(
        "lastack_tcp_unknown_flow_resets_total",
        "ACKs for a flow this instance does not know, without a valid cookie (an ECMP change moved it here, or it is stale): reset at once.",
        |s| s.tcp.unknown_flow_resets,
    ),
    counter(
        "lastack_tcp_syn_queue_overflows_total",
        "SYNs beyond a full SYN queue.",
        |s| s.tcp.syn_queue_overflows,
    ),
    counter(
        "lastack_tcp_accept_queue_overflows_total",
        "Handshakes completed into a full accept queue.",
        |s| s.tcp.accept_queue_overflows,
    ),
    custom(
        "lastack_tcp_connections_opened_total",
        Kind::Counter,
        "Connections established, by address family.",
        &["shard", "family"],
        |snap, out| {
            for s in snap.shards {
                let (opened, ipv6) = (s.tcp.connections_opened, s.tcp.ipv6_connections_opened);
                let shard = s.queue.to_string();
                out.push(&[&shard, "ipv4"], (opened - ipv6) as f64);
                out.push(&[&shard, "ipv6"], ipv6 as f64);
            }
        },
    ),
    counter(
        "lastack_tcp_connections_closed_total",
        "Connections closed cleanly.",
        |s| s.tcp.connections_closed,
    ),
    counter(
        "lastack_tcp_connections_reset_total",
        "Connections reset.",
        |s| s.tcp.connections_reset,
    ),
    counter(
        "lastack_tcp_connection_timeouts_total",
        "Connections given up after retransmissions.",
        |s| s.tcp.connection_timeouts,
    ),
    counter(
        "lastack_tcp_challenge_acks_total",
        "Challenge ACKs (RFC 5961).",
        |s| s.tcp.challenge_acks,
    ),
    counter(
        "lastack_tcp_time_wait_reopened_total",
        "TIME-WAIT entries reused by a new SYN.",
        |s| s.tcp.time_wait_reopened,
    ),
    counter(
        "lastack_tcp_time_wait_overflows_total",
        "Connections that closed first with the TIME-WAIT table full (max_time_wait): freed without TIME-WAIT.",
        |s| s.tcp.time_wait_overflows,
    ),
    counter(
        "lastack_tcp_fin_wait_2_timeouts_total",
        "Closed connections freed in FIN-WAIT-2 after fin_wait_2_timeout: the peer never sent FIN.",
        |s| s.tcp.fin_wait_2_timeouts,
    ),
    counter(
        "lastack_tcp_time_wait_entered_total",
        "Connections that entered TIME-WAIT (lastack closed first).",
        |s| s.tcp.time_wait_entered,
    ),
    gauge(
        "lastack_shard_connections_served",
        "Connections the shard serves (echo, discard, source, proxy sessions).",
        |s| s.served as u64,
    ),
    gauge(
        "lastack_shard_deadlines",
        "Deadlines armed in the shard's timer wheel (idle, grace, backend waits).",
        |s| s.deadlines as u64,
    ),
    // Proxy.
    gauge("lastack_proxy_sessions", "Proxy sessions open.", |s| {
        s.proxy.sessions_active
    }),
    gauge(
        "lastack_proxy_backend_sockets",
        "Backend sockets open or closing (io_uring slots in use).",
        |s| s.proxy.backend_sockets,
    ),
    gauge(
        "lastack_proxy_backend_send_buffers",
        "Send buffers (16 KiB) lent to backend sockets now: uploads not sent yet.",
        |s| s.proxy.backend_send_buffers,
    ),
    gauge(
        "lastack_proxy_held_buffers",
        "Receive buffers held for clients without room.",
        |s| s.proxy.held_buffers,
    ),
    gauge(
        "lastack_proxy_posted_buffers",
        "Receive buffers posted to the kernel for backend data (grows with load).",
        |s| s.proxy.posted_buffers,
    ),
    gauge(
        "lastack_proxy_receive_buffer_bytes",
        "Receive buffer memory in use or not yet given back after a peak.",
        |s| s.proxy.receive_buffer_bytes,
    ),
    counter(
        "lastack_proxy_sessions_total",
        "Client connections handed to the proxy.",
        |s| s.proxy.sessions_opened,
    ),
    counter(
        "lastack_proxy_connect_failures_total",
        "Backend connects refused or failed.",
        |s| s.proxy.connects_failed,
    ),
    counter(
        "lastack_proxy_connect_timeouts_total",
        "Backend connects that timed out.",
        |s| s.proxy.connects_timed_out,
    ),
    counter(
        "lastack_proxy_retries_total",
        "Connects retried on another backend.",
        |s| s.proxy.retries,
    ),
    counter(
        "lastack_proxy_port_retries_total",
        "Connects retried on another source port (TIME-WAIT too young).",
        |s| s.proxy.port_retries,
    ),
    counter(
        "lastack_proxy_no_backend_resets_total",
        "Clients reset because no backend could take them.",
        |s| s.proxy.no_backend,
    ),
    counter(
        "lastack_proxy_over_limit_resets_total",
        "Clients reset at the listener's connection limit.",
        |s| s.proxy.over_limit,
    ),
    counter(
        "lastack_proxy_backend_resets_total",
        "Backend resets or errors passed to the client as RST.",
        |s| s.proxy.backend_resets,
    ),
    counter(
        "lastack_proxy_client_resets_total",
        "Client resets passed to the backend.",
        |s| s.proxy.client_resets,
    ),
    counter(
        "lastack_proxy_client_closed_first_total",
        "Sessions where the client closed first (lastack held no TIME-WAIT).",
        |s| s.proxy.client_closed_first,
    ),
    counter(
        "lastack_proxy_grace_expired_total",
        "client-first sessions whose grace period ended (fallback applied).",
        |s| s.proxy.grace_expired,
    ),
    counter(
        "lastack_proxy_idle_closed_total",
        "Sessions closed by the idle timeout.",
        |s| s.proxy.idle_closed,
    ),
    counter(
        "lastack_proxy_fin_timeouts_total",
        "Half-closed sessions (our FIN sent) whose client stayed quiet for fin_timeout: reset.",
        |s| s.proxy.fin_timeouts,
    ),
    counter(
        "lastack_proxy_to_backend_bytes_total",
        "Bytes sent to backends.",
        |s| s.proxy.bytes_to_backend,
    ),
    counter(
        "lastack_proxy_to_client_bytes_total",
        "Bytes queued to clients.",
        |s| s.proxy.bytes_to_client,
    ),
    counter(
        "lastack_proxy_socket_errors_total",
        "Errors opening backend sockets.",
        |s| s.proxy.socket_errors,
    ),
    counter(
        "lastack_proxy_ports_exhausted_total",
        "Clients reset: no source port of the shard's share came free within connect_timeout.",
        |s| s.proxy.ports_exhausted,
    ),
    counter(
        "lastack_proxy_port_waits_total",
        "Connects that waited for a source port (in use, resting after TIME-WAIT, or paced).",
        |s| s.proxy.port_waits,
    ),
    counter(
        "lastack_proxy_backend_closed_with_reset_total",
        "Backend connections ended with RST (backend_close = \"reset\") instead of FIN.",
        |s| s.proxy.backend_closed_with_reset,
    ),
    counter(
        "lastack_proxy_receive_buffer_shortage_total",
        "Backend receives that found no provided buffer.",
        |s| s.proxy.receive_buffer_shortage,
    ),
    // Backends.
    custom(
        "lastack_backend_up",
        Kind::Gauge,
        "1 if the backend passes its health checks.",
        BACKEND,
        |snap, out| each_backend(snap, out, |_, _, b| f64::from(u8::from(b.up))),
    ),
    custom(
        "lastack_backend_accepting",
        Kind::Gauge,
        "1 if the backend gets new connections (up and not draining).",
        BACKEND,
        |snap, out| each_backend(snap, out, |_, _, b| f64::from(u8::from(b.accepts_new))),
    ),
    custom(
        "lastack_backend_connections",
        Kind::Gauge,
        "Open connections to the backend, all shards.",
        BACKEND,
        |snap, out| each_backend(snap, out, |_, _, b| f64::from(b.connections)),
    ),
    custom(
        "lastack_backend_connections_total",
        Kind::Counter,
        "Connections sent to the backend, all shards.",
        BACKEND,
        |snap, out| each_backend(snap, out, |_, _, b| b.opened as f64),
    ),
    custom(
        "lastack_backend_health_changes_total",
        Kind::Counter,
        "Health changes of the backend, by the state it went to.",
        &["pool", "backend", "to"],
        |snap, out| {
            for pool in snap.pools {
                for b in &pool.backends {
                    let address = b.address.to_string();
                    out.push(&[&pool.name, &address, "down"], b.went_down as f64);
                    out.push(&[&pool.name, &address, "up"], b.went_up as f64);
                }
            }
        },
    ),
    custom(
        "lastack_backend_source_ports_free",
        Kind::Gauge,
        "Source ports not in use, all shards: ready now, or resting after a TIME-WAIT.",
        &["pool", "source", "state"],
        |snap, out| {
            let mut sums: std::collections::BTreeMap<(&str, String), (usize, usize)> =
                std::collections::BTreeMap::new();
            for shard in snap.shards {
                for p in &shard.source_ports {
                    let sum = sums.entry((&p.pool, p.address.to_string())).or_default();
                    sum.0 += p.ready;
                    sum.1 += p.resting;
                }
            }
            for ((pool, source), (ready, resting)) in &sums {
                out.push(&[pool, source, "ready"], *ready as f64);
                out.push(&[pool, source, "resting"], *resting as f64);
            }
        },
    ),
    custom(
        "lastack_backend_connect_failures_total",
        Kind::Counter,
        "Failed connects and health checks.",
        BACKEND,
        |snap, out| each_backend(snap, out, |_, _, b| b.connect_failures as f64),
    ),
];

/// Reads every declared metric from `snap`.
pub fn collect(snap: &Snapshot<'_>) -> Exposition {
    let families = METRICS
        .iter()
        .map(|metric| {
            let mut samples = Vec::new();
            match metric.source {
                Source::PerShard(read) => {
                    for s in snap.shards {
                        samples.push(Sample {
                            labels: vec![("shard".to_string(), s.queue.to_string())],
                            value: read(s) as f64,
                        });
                    }
                }
                Source::Custom(read) => read(
                    snap,
                    &mut Samples {
                        labels: metric.labels,
                        out: &mut samples,
                    },
                ),
            }
            Family {
                name: metric.name.to_string(),
                kind: metric.kind,
                help: metric.help.to_string(),
                samples,
            }
        })
        .collect();
    Exposition { families }
}

/// The `family` label of a listener: `ipv4` or `ipv6`.
fn family(addr: &std::net::SocketAddr) -> &'static str {
    if addr.is_ipv6() {
        "ipv6"
    } else {
        "ipv4"
    }
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
        s.source_ports = vec![crate::proxy::SourcePorts {
            pool: "web".into(),
            address: "0.0.0.0".parse().unwrap(),
            ready: 100,
            resting: 20,
        }];
        s
    }

    fn exposition() -> Exposition {
        let shards = [shard(0), shard(1)];
        let pools = [PoolView {
            name: "web".into(),
            backends: vec![
                BackendView {
                    address: "10.0.0.1:80".parse().unwrap(),
                    up: true,
                    accepts_new: true,
                    connect_failures: 0,
                    connections: 1,
                    opened: 10,
                    went_down: 0,
                    went_up: 0,
                },
                BackendView {
                    address: "10.0.0.2:80".parse().unwrap(),
                    up: false,
                    accepts_new: false,
                    connect_failures: 4,
                    connections: 2,
                    opened: 20,
                    went_down: 3,
                    went_up: 2,
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
        collect(&Snapshot {
            shards: &shards,
            xdp: &xdp,
            pools: &pools,
            uptime_seconds: 1.5,
            runtime: &RuntimeCounters::default(),
            ready: true,
            draining: false,
        })
    }

    /// The declarations follow the naming conventions, each name once.
    #[test]
    fn declarations_follow_the_conventions() {
        let mut names = std::collections::HashSet::new();
        for metric in METRICS {
            assert!(names.insert(metric.name), "{} declared twice", metric.name);
            assert!(metric.name.starts_with("lastack_"), "{}", metric.name);
            assert_eq!(
                metric.kind == Kind::Counter,
                metric.name.ends_with("_total"),
                "{}: counters, and only counters, end in _total",
                metric.name
            );
            assert!(metric.help.ends_with('.'), "{}", metric.name);
        }
    }

    /// The text view parses with an independent Prometheus parser, every
    /// sample under its declared family and kind, and agrees with the JSON
    /// view sample for sample.
    #[test]
    fn the_text_view_parses_and_agrees_with_the_json_view() {
        let exposition = exposition();
        let text = exposition.to_prometheus_text();
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("a valid exposition");
        let json: Exposition =
            serde_json::from_str(&serde_json::to_string(&exposition).unwrap()).unwrap();
        let mut parsed = 0;
        for family in &json.families {
            for sample in &family.samples {
                let found = scrape
                    .samples
                    .iter()
                    .find(|s| {
                        s.metric == family.name
                            && sample
                                .labels
                                .iter()
                                .all(|(k, v)| s.labels.get(k) == Some(v.as_str()))
                    })
                    .unwrap_or_else(|| panic!("{} {:?} not in the text", family.name, sample));
                let value = match found.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => v,
                    ref other => panic!("{}: {other:?}", family.name),
                };
                assert_eq!(value, sample.value, "{}", family.name);
                let kind = match found.value {
                    prometheus_parse::Value::Counter(_) => Kind::Counter,
                    _ => Kind::Gauge,
                };
                assert_eq!(kind, family.kind, "{}", family.name);
                parsed += 1;
            }
        }
        assert_eq!(parsed, scrape.samples.len(), "nothing else in the text");
        assert!(parsed > METRICS.len());
    }

    #[test]
    fn samples_are_read_from_the_snapshots() {
        let e = exposition();
        assert_eq!(e.sum_where("lastack_rx_frames_total", "shard", "1"), 11.0);
        assert_eq!(
            e.sum_where("lastack_tcp_connections", "state", "LAST-ACK"),
            2.0
        );
        assert_eq!(
            e.sum_where("lastack_xdp_packets_total", "outcome", "redirected"),
            5.0
        );
        assert_eq!(
            e.sum_where("lastack_backend_up", "backend", "10.0.0.2:80"),
            0.0
        );
        // Backend counts are the process's (not summed over shards);
        // source ports are each shard's share (summed).
        assert_eq!(
            e.sum_where("lastack_backend_connections", "backend", "10.0.0.2:80"),
            2.0
        );
        assert_eq!(
            e.sum_where("lastack_backend_health_changes_total", "to", "down"),
            3.0
        );
        assert_eq!(
            e.sum_where("lastack_backend_source_ports_free", "state", "ready"),
            200.0
        );
        assert_eq!(e.sum("lastack_proxy_sessions_total"), 14.0);
    }
}
