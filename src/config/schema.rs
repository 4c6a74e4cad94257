//! The configuration schema. The doc comments in this file are the manual:
//! `build.rs` turns them into `lastack check --explain` and `docs/config.md`.
//!
//! Conventions for the generator: the first line of a struct's doc names its
//! TOML table; a field's doc says what it does, its range and its default;
//! every struct and enum refuses unknown keys.

use std::net::{Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::values::{Duration, Ip, PortRange, Socket};

/// The whole file.
///
/// Only `[[listeners]]` and `[[pools]]` are required; every other table has
/// defaults suited to a small production deployment.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Network interfaces whose rx queues lastack serves, one shard per queue.
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// Virtual services: where clients connect, and where they are sent.
    pub listeners: Vec<Listener>,
    /// Backend pools that listeners forward to.
    pub pools: Vec<Pool>,
    /// The TCP stack's tunables, shared by all listeners.
    #[serde(default)]
    pub tcp: Tcp,
    /// The admin endpoint (metrics, health, control).
    #[serde(default)]
    pub admin: Admin,
    /// Graceful drain on SIGTERM.
    #[serde(default)]
    pub drain: Drain,
    /// Log output.
    #[serde(default)]
    pub logging: Logging,
    /// What instances behind the same VIPs share.
    #[serde(default)]
    pub cluster: Cluster,
}

/// `[[interfaces]]`: a NIC (or veth) that lastack attaches to.
///
/// The VIPs must be configured on the interface (`ip addr add VIP/32 dev
/// IFACE`) so that the kernel answers ARP for them; see `deploy/`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    /// Kernel interface name, e.g. `"eth0"` (1 to 15 bytes).
    pub name: String,
    /// Number of rx queues to serve, starting at queue 0; one shard (thread,
    /// AF_XDP socket, UMEM) per queue. 1 to 64. Default: 1.
    #[serde(default = "defaults::queues")]
    pub queues: u32,
    /// Cores to pin shard threads to, one per queue in order. Empty: no
    /// pinning. Default: `[]`.
    #[serde(default)]
    pub cores: Vec<u32>,
    /// How the XDP program is attached. Default: `"native"`.
    #[serde(default)]
    pub xdp_mode: XdpMode,
    /// How AF_XDP shares frames with the driver. Default: `"copy"`.
    #[serde(default)]
    pub bind_mode: BindMode,
    /// Frames in each shard's UMEM: a power of two from 64 to 1048576.
    /// Default: 8192.
    #[serde(default = "defaults::umem_frames")]
    pub umem_frames: u32,
    /// Size of one UMEM frame in bytes: 2048 or 4096. Default: 4096.
    #[serde(default = "defaults::frame_size")]
    pub frame_size: u32,
    /// After handling frames, a shard keeps polling its rings this long
    /// before it sleeps: lower latency and more connections/s under load
    /// (measured: +66 % sequential connections/s), at the cost of CPU
    /// while busy. `"0s"` always sleeps at once. At most `"10ms"`.
    /// Default: `"50us"`.
    #[serde(default = "defaults::busy_poll")]
    pub busy_poll: Duration,
}

/// How the XDP program is attached to the interface.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum XdpMode {
    /// In the driver: fast, and needed for AF_XDP to spread flows over
    /// several queues on veth. Refused if the driver lacks XDP support.
    #[default]
    Native,
    /// In the generic network stack: works on any interface, slower, and
    /// veth then delivers every flow on queue 0.
    Generic,
}

/// How an AF_XDP socket shares frames with the driver.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BindMode {
    /// The kernel copies each frame: works with every driver, veth included.
    #[default]
    Copy,
    /// The NIC writes into the UMEM directly: needs driver support.
    ZeroCopy,
}

/// `[[listeners]]`: one virtual service, a VIP and port that clients connect to.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Unique name, used in logs and metrics labels: letters, digits, `-`, `_`.
    pub name: String,
    /// The virtual address clients connect to, IPv4 (`"10.0.0.10"`) or
    /// IPv6 (`"2001:db8::10"`). An IPv4 and an IPv6 listener can share a
    /// shard and a pool; a client of either family can reach a backend of
    /// either family.
    pub vip: Ip,
    /// The TCP port clients connect to, 1 to 65535.
    pub port: u16,
    /// Name of the `[[pools]]` entry connections are forwarded to. Required
    /// when `service = "proxy"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// What serves accepted connections. Default: `"proxy"`.
    #[serde(default)]
    pub service: Service,
    /// Who sends the first FIN. Default: `"client-first"`.
    #[serde(default)]
    pub close_policy: ClosePolicy,
    /// With `client-first`: how long lastack holds its FIN, once the backend
    /// is done and the client has all data, waiting for the client's FIN.
    /// Default: `"5s"`.
    #[serde(default = "defaults::close_grace")]
    pub close_grace: Duration,
    /// With `client-first`: what to do when `close_grace` runs out.
    /// Default: `"fin"`.
    #[serde(default)]
    pub grace_fallback: GraceFallback,
    /// Close a connection that moved no data in either direction for this
    /// long. Default: `"5m"`.
    #[serde(default = "defaults::idle_timeout")]
    pub idle_timeout: Duration,
    /// A half-closed connection — lastack sent its FIN to the client, the
    /// client has not sent its own — that moves no data for this long is
    /// reset (HAProxy's `timeout client-fin`; Linux gives an orphaned
    /// FIN-WAIT-2 `tcp_fin_timeout`, 60 s). Default: `"60s"`.
    #[serde(default = "defaults::fin_timeout")]
    pub fin_timeout: Duration,
    /// Most connections open at once on this listener, over every shard;
    /// connections beyond it are answered with RST. 1 to 10000000. Default: 100000.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: u32,
}

/// What serves a listener's accepted connections.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Service {
    /// Forward to a backend from `pool` (the product).
    #[default]
    Proxy,
    /// Echo every byte back (for tests and benchmarks).
    Echo,
    /// Read and drop everything (for tests and benchmarks).
    Discard,
    /// Send a stream of bytes until the client closes (for tests and benchmarks).
    Source,
}

/// Who closes first, and so who keeps TIME-WAIT.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ClosePolicy {
    /// Hold lastack's FIN until the client closes, so the client keeps
    /// TIME-WAIT and lastack passes CLOSE-WAIT -> LAST-ACK -> CLOSED.
    #[default]
    ClientFirst,
    /// Forward the backend's FIN at once, as HAProxy and nginx do.
    Immediate,
}

/// What `client-first` does when the client has not closed within `close_grace`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum GraceFallback {
    /// Send FIN; lastack keeps a compact TIME-WAIT entry.
    #[default]
    Fin,
    /// Send RST; nobody keeps TIME-WAIT, the client sees a reset.
    Reset,
}

/// `[[pools]]`: a named set of backends and how to choose among them.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// Unique name that listeners refer to: letters, digits, `-`, `_`.
    pub name: String,
    /// How a backend is chosen for each connection. Default: `"round-robin"`.
    #[serde(default)]
    pub balance: Balance,
    /// Timeout of one connect() to a backend. Default: `"2s"`.
    #[serde(default = "defaults::connect_timeout")]
    pub connect_timeout: Duration,
    /// Other backends tried after a refused or timed-out connect, before the
    /// client gets a RST. 0 to 16. Default: 2.
    #[serde(default = "defaults::retries")]
    pub retries: u32,
    /// Source addresses for backend connections, used in turn so that churn
    /// does not exhaust one address's ephemeral ports. They must be
    /// configured on the host. IPv4 or IPv6: a backend connection uses the
    /// addresses of its backend's family, so a pool with backends of a
    /// family needs at least one source address of that family, or none at
    /// all. Empty: the kernel chooses. Default: `[]`.
    #[serde(default)]
    pub source_addresses: Vec<Ip>,
    /// Source ports lastack binds backend sockets to, least recently used
    /// first, split between shards; keep local services out of it. At
    /// least 64 ports per shard. Default: `"1024-65535"`.
    #[serde(default = "defaults::source_ports")]
    pub source_ports: PortRange,
    /// How lastack ends a backend connection it closes first (the client
    /// closed first). `"fin"`: a clean close; the kernel then holds the
    /// connection in TIME-WAIT for 60 s. On lastack's own (bound) ports the
    /// kernel reuses such a TIME-WAIT at once when both sides use TCP
    /// timestamps (the default), whatever `net.ipv4.tcp_tw_reuse` says;
    /// without timestamps (lastack's host, or a backend: learnt from the
    /// first connection) a port must rest 66 s, and lastack paces new
    /// backend connections to that (about 1,000/s per source address and
    /// backend) instead of failing them. `"reset"`: once the client has
    /// closed and the backend acknowledged every byte, close with RST (as
    /// HAProxy's `option nolinger`): no TIME-WAIT and no limit, but the
    /// backend sees a reset instead of an end, and a client that
    /// half-closes and still reads loses whatever the backend sends after
    /// its FIN. When the backend closes first, lastack always closes
    /// cleanly. Default: `"fin"`.
    #[serde(default)]
    pub backend_close: BackendClose,
    /// Panic mode (Envoy's idea): when fewer than this percentage of the
    /// pool's backends are healthy, balance over all of them rather than
    /// refuse clients. 0 turns it off; 100 always balances over all.
    /// Default: 50.
    #[serde(default = "defaults::panic_threshold")]
    pub panic_threshold: u32,
    /// PROXY protocol header sent to backends first. Default: `"none"`.
    #[serde(default)]
    pub proxy_protocol: ProxyProtocol,
    /// Most connections open at once to one backend; 0 means no limit.
    /// Default: 0.
    #[serde(default)]
    pub max_connections_per_backend: u32,
    /// Active health checks.
    #[serde(default)]
    pub health_check: HealthCheck,
    /// The backends: at least one.
    pub backends: Vec<Backend>,
}

/// How lastack ends a backend connection it closes first.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BackendClose {
    /// A clean close (FIN); the kernel keeps TIME-WAIT.
    #[default]
    Fin,
    /// RST once the backend acknowledged everything: no TIME-WAIT.
    Reset,
}

/// How a pool chooses a backend.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    /// Smooth weighted round robin.
    #[default]
    RoundRobin,
    /// The healthy backend with the fewest open connections per weight.
    LeastConnections,
    /// Consistent hashing on the client address (Maglev): a client keeps
    /// its backend, and removing a backend moves only that backend's
    /// clients.
    Maglev,
}

/// PROXY protocol version sent to backends.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyProtocol {
    /// No header.
    #[default]
    None,
    /// The text header, `PROXY TCP4 ...\r\n`.
    V1,
    /// The binary header.
    V2,
}

/// `[pools.health_check]`: active TCP connect checks of every backend.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// Whether checks run; without them every backend counts as healthy
    /// until a connect to it fails. Default: true.
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// Time between two checks of one backend. Default: `"2s"`.
    #[serde(default = "defaults::health_interval")]
    pub interval: Duration,
    /// A check that has not connected by then has failed. Default: `"1s"`.
    #[serde(default = "defaults::health_timeout")]
    pub timeout: Duration,
    /// Consecutive successes that bring a backend back. 1 to 100. Default: 2.
    #[serde(default = "defaults::rise")]
    pub rise: u32,
    /// Consecutive failures that take a backend out. 1 to 100. Default: 3.
    #[serde(default = "defaults::fall")]
    pub fall: u32,
    /// Bytes a check sends once connected (TOML escapes such as `\r\n`
    /// work), e.g. `"GET /health HTTP/1.0\r\n\r\n"`. Empty: a connect is
    /// the check. Default: `""`.
    #[serde(default)]
    pub send: String,
    /// What the answer must start with, e.g. `"HTTP/1.1 200"`. Empty: any
    /// answer (or none, if nothing is sent). Default: `""`.
    #[serde(default)]
    pub expect: String,
}

/// `[[pools.backends]]`: one backend server.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    /// Address and port, e.g. `"10.0.1.10:8080"`, or `"[2001:db8::21]:8443"`
    /// for IPv6.
    pub address: Socket,
    /// Share of connections relative to the pool's other backends, 1 to 1000.
    /// Default: 1.
    #[serde(default = "defaults::weight")]
    pub weight: u32,
    /// Draining: connections already open finish, new ones go to the
    /// other backends (take a backend out for maintenance). Default: false.
    #[serde(default)]
    pub drain: bool,
}

/// `[tcp]`: the TCP stack, shared by all listeners.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tcp {
    /// Half-open connections (SYN-RECEIVED) each listener keeps per shard;
    /// beyond it SYN cookies answer (if enabled) or SYNs are dropped.
    /// 16 to 1048576. Default: 4096.
    #[serde(default = "defaults::backlog")]
    pub syn_backlog: u32,
    /// Established connections waiting to be taken by the proxy, per
    /// listener and shard; beyond it the final ACK is dropped (the client
    /// retransmits). 16 to 1048576. Default: 4096.
    #[serde(default = "defaults::backlog")]
    pub accept_backlog: u32,
    /// When to answer SYNs with SYN cookies (RFC 4987 §3.6). Default: `"auto"`.
    #[serde(default)]
    pub syn_cookies: SynCookies,
    /// MSS we announce and the most we send. 536 to 8960, and at most each
    /// interface's `frame_size` − 98 (its headers); `lastack run` refuses
    /// to start when a segment would exceed an interface's MTU (MSS + 40).
    /// Default: 1460.
    #[serde(default = "defaults::mss")]
    pub mss: u16,
    /// Retransmission timeout before any RTT sample (RFC 6298 §2.1).
    /// Default: `"1s"`.
    #[serde(default = "defaults::initial_rto")]
    pub initial_rto: Duration,
    /// Lower bound of the retransmission timeout (RFC 6298 §2.4 says 1 s;
    /// Linux uses 200 ms). Default: `"200ms"`.
    #[serde(default = "defaults::min_rto")]
    pub min_rto: Duration,
    /// Upper bound of the retransmission timeout after backoff. Default: `"60s"`.
    #[serde(default = "defaults::max_rto")]
    pub max_rto: Duration,
    /// Retransmissions of one segment before the connection is reset.
    /// 1 to 30. Default: 12.
    #[serde(default = "defaults::max_retransmissions")]
    pub max_retransmissions: u32,
    /// SYN-ACK retransmissions before a half-open connection is dropped.
    /// 0 to 10. Default: 5.
    #[serde(default = "defaults::synack_retries")]
    pub synack_retries: u32,
    /// How long a connection that closed first stays in TIME-WAIT (2 × MSL,
    /// RFC 9293 §3.4.2). 1 s to 240 s. Default: `"60s"`.
    #[serde(default = "defaults::time_wait")]
    pub time_wait: Duration,
    /// Most TIME-WAIT entries a shard keeps (Linux's `tcp_max_tw_buckets`);
    /// a connection closing first beyond it is freed at once, without
    /// TIME-WAIT, and counted. 0 to 16777216. Default: 262144.
    #[serde(default = "defaults::max_time_wait")]
    pub max_time_wait: u32,
    /// How long a connection lastack has closed waits in FIN-WAIT-2 for the
    /// peer's FIN before it is freed (Linux's `tcp_fin_timeout`). 1 s to
    /// 600 s. Default: `"60s"`.
    #[serde(default = "defaults::fin_wait_2_timeout")]
    pub fin_wait_2_timeout: Duration,
    /// Most delay before a delayed ACK (RFC 9293 §3.8.6.3: under 0.5 s).
    /// Default: `"40ms"`.
    #[serde(default = "defaults::delayed_ack")]
    pub delayed_ack: Duration,
    /// Most bytes a connection's send buffer grows to, 4096 to 67108864. It
    /// starts at 64 KiB and follows the congestion window (twice it); memory
    /// is taken only for bytes not yet acknowledged. Default: 4194304.
    #[serde(default = "defaults::buffer")]
    pub send_buffer: u32,
    /// Most bytes a connection's receive window grows to (the window scale
    /// is chosen for it), 4096 to 67108864. It starts at 64 KiB and grows
    /// with what the peer sends per round trip; memory is taken only for
    /// bytes not yet read. Default: 4194304.
    #[serde(default = "defaults::buffer")]
    pub recv_buffer: u32,
    /// Connection buffer memory per shard, in bytes, above which windows
    /// stop growing and shrink to 16 KiB: backpressure, nothing dropped.
    /// 1 MiB to 1 TiB (1048576 to 1099511627776). Default: 1073741824.
    #[serde(default = "defaults::buffer_budget")]
    pub buffer_budget: u64,
    /// Window scaling (RFC 7323 §2). Default: true.
    #[serde(default = "defaults::yes")]
    pub window_scaling: bool,
    /// Timestamps and PAWS (RFC 7323 §3, §5). Default: true.
    #[serde(default = "defaults::yes")]
    pub timestamps: bool,
    /// Selective acknowledgments (RFC 2018): SACK blocks and D-SACKs (RFC
    /// 2883) sent, and loss recovery from the peer's (RFC 6675 with RACK-TLP's
    /// tail-loss probes, RFC 8985). Default: true.
    #[serde(default = "defaults::yes")]
    pub sack: bool,
    /// Idle time before keepalive probes start; absent: no keepalive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive: Option<Duration>,
    /// Congestion control of new connections: `"cubic"` (RFC 9438, as
    /// Linux) or `"newreno"` (RFC 5681, RFC 6582), both loss-based and
    /// leaving their first slow start with HyStart++ (RFC 9406); or
    /// `"bbr"` (BBR v1, as Linux's `bbr`): window and pacing rate from a
    /// model of the path's bandwidth and delay, which random loss does not
    /// shrink — for clients on lossy long paths. Default: `"cubic"`.
    #[serde(default)]
    pub congestion: Congestion,
    /// Segments in the initial congestion window (RFC 6928), 1 to 64.
    /// Default: 10.
    #[serde(default = "defaults::initial_window")]
    pub initial_window: u16,
    /// Explicit Congestion Notification (RFC 3168): `"accept"` answers a
    /// client's ECN-setup SYN with ECN (as Linux's default), marks data ECT
    /// and treats the peer's congestion echoes as a loss without losing
    /// anything; `"on"` also asks for it on connections lastack opens;
    /// `"off"` never. Default: `"accept"`.
    #[serde(default)]
    pub ecn: Ecn,
}

/// ECN negotiation.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Ecn {
    /// Never.
    Off,
    /// When the peer's SYN asks for it.
    #[default]
    Accept,
    /// Also asked for on lastack's own SYNs.
    On,
}

/// A congestion-control algorithm.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Congestion {
    /// RFC 9438.
    #[default]
    Cubic,
    /// RFC 5681 congestion avoidance, RFC 6582 recovery.
    Newreno,
    /// BBR v1, paced.
    Bbr,
}

/// When the listener answers with SYN cookies.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SynCookies {
    /// Only when the SYN queue is full.
    #[default]
    Auto,
    /// For every SYN (no half-open state at all).
    Always,
    /// Never: SYNs beyond the backlog are dropped.
    Never,
}

/// `[admin]`: the admin endpoint: metrics (`GET /metrics`,
/// `GET /metrics.json`), health (`GET /live`, `GET /ready`) and control
/// (`POST /reload`, `POST /backends/drain`, `POST /backends/undrain`).
/// Changing this table needs a restart.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Address to listen on (kernel TCP, not the VIP). Anything but
    /// loopback exposes the control endpoints to that network: say so with
    /// `control = false`, or firewall it. Default: `"127.0.0.1:9190"`.
    #[serde(default = "defaults::admin_listen")]
    pub listen: Socket,
    /// Whether the endpoint runs. Default: true.
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// Whether the control endpoints (`POST`) answer; without them the
    /// endpoint only reads. Default: true.
    #[serde(default = "defaults::yes")]
    pub control: bool,
}

/// `[drain]`: what SIGTERM does. Listeners close at once (the readiness
/// endpoint answers 503 first); established connections finish with the
/// usual close policy for up to `timeout`; what is left then gets FIN, and
/// RST `close_grace` later; then lastack detaches and exits 0. A second
/// SIGTERM, or SIGINT, stops at once (RST to everything).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Drain {
    /// How long established connections may take to finish. 1 s to 1 h.
    /// Default: `"30s"`.
    #[serde(default = "defaults::drain_timeout")]
    pub timeout: Duration,
    /// What new connection attempts get while draining: `"reset"` (RST,
    /// the client fails at once) or `"drop"` (no answer: the client retries
    /// its SYN, maybe towards another instance once the VIP is withdrawn).
    /// Default: `"reset"`.
    #[serde(default)]
    pub new_connections: DrainRefusal,
    /// After `timeout`: how long connections that got FIN have before RST.
    /// 0 to 60 s. Default: `"1s"`.
    #[serde(default = "defaults::drain_close_grace")]
    pub close_grace: Duration,
}

/// What new connection attempts get while draining.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DrainRefusal {
    /// RST.
    #[default]
    Reset,
    /// No answer.
    Drop,
}

/// `[cluster]`: what several instances behind the same VIPs share.
///
/// A router spreads flows over the instances with ECMP (see
/// `docs/cluster.md`). With a key file, every instance makes its SYN cookies, ISNs and TCP
/// timestamp offsets from the same keys and from Unix time (keep clocks
/// synchronised, NTP), so a handshake whose final ACK reaches another
/// instance than its SYN completes there (with `tcp.syn_cookies`), and the
/// connection's timestamps go on where the first left off. Without one,
/// each shard draws its own random key: right for a single instance.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// File of the cluster's keys: one per line, 32 hex digits (128 bits,
    /// e.g. from `openssl rand -hex 16`); blank lines and `#` comments are
    /// skipped. The first key mints; the others (at most 3) are still
    /// honoured in cookies, for a rotation: add the new key second on every
    /// instance and reload, then move it first everywhere and reload, then
    /// drop the old one (a key dropped is honoured 192 s more). Re-read on
    /// every reload; a file that does not parse refuses the reload. Keep it
    /// readable by lastack only: whoever has the key can forge cookies.
    /// Empty: no cluster key. Default: `""`.
    #[serde(default)]
    pub key_file: String,
    /// This instance's id in the cluster, 0 to 15, unique: carried in the
    /// low 4 bits of its TCP timestamps so that another instance that gets
    /// a segment of one of its connections (after an ECMP change) forwards
    /// it here instead of resetting it. Required with `peers`.
    #[serde(default)]
    pub instance: Option<u8>,
    /// This instance's own address, which the others forward to and which
    /// it forwards from (on the host, not the VIP). Required with `peers`.
    #[serde(default)]
    pub address: Option<Ip>,
    /// The other instances segments may be forwarded to (IP in IP, RFC
    /// 2003 / 2473). Empty: no forwarding; a segment of an unknown flow is
    /// reset at once. Forwarded segments need 20 (IPv4) or 40 (IPv6) bytes
    /// more than the MTU's room for `tcp.mss`: `lastack run` refuses an
    /// MSS that leaves none. Default: `[]`.
    #[serde(default)]
    pub peers: Vec<Peer>,
}

/// `[[cluster.peers]]`: another instance of the cluster.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// Its `[cluster] instance` id, 0 to 15.
    pub id: u8,
    /// Its `[cluster] address`, of the same family as this instance's.
    pub address: Ip,
}

/// `[logging]`: where logs go and how much.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    /// A `RUST_LOG`-style filter, e.g. `"info"` or `"lastack::tcp=debug,info"`.
    /// The `RUST_LOG` environment variable overrides it. Default: `"info"`.
    #[serde(default = "defaults::log_level")]
    pub level: String,
    /// Line format. Default: `"text"`.
    #[serde(default)]
    pub format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for Tcp {
    fn default() -> Self {
        toml::from_str("").expect("every [tcp] field has a default")
    }
}

impl Default for Admin {
    fn default() -> Self {
        toml::from_str("").expect("every [admin] field has a default")
    }
}

impl Default for Drain {
    fn default() -> Self {
        toml::from_str("").expect("every [drain] field has a default")
    }
}

impl Default for Cluster {
    fn default() -> Self {
        toml::from_str("").expect("every [cluster] field has a default")
    }
}

impl Default for Logging {
    fn default() -> Self {
        toml::from_str("").expect("every [logging] field has a default")
    }
}

impl Default for HealthCheck {
    fn default() -> Self {
        toml::from_str("").expect("every [health_check] field has a default")
    }
}

/// Default values, named so that the schema reads as a table.
mod defaults {
    use super::*;

    pub fn yes() -> bool {
        true
    }
    pub fn queues() -> u32 {
        1
    }
    pub fn umem_frames() -> u32 {
        8192
    }
    pub fn frame_size() -> u32 {
        4096
    }
    pub fn busy_poll() -> Duration {
        Duration(std::time::Duration::from_micros(50))
    }
    pub fn close_grace() -> Duration {
        Duration::from_secs(5)
    }
    pub fn idle_timeout() -> Duration {
        Duration::from_secs(300)
    }
    pub fn fin_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn max_connections() -> u32 {
        100_000
    }
    pub fn source_ports() -> PortRange {
        PortRange {
            first: 1024,
            last: 65535,
        }
    }
    pub fn panic_threshold() -> u32 {
        50
    }
    pub fn connect_timeout() -> Duration {
        Duration::from_secs(2)
    }
    pub fn retries() -> u32 {
        2
    }
    pub fn health_interval() -> Duration {
        Duration::from_secs(2)
    }
    pub fn health_timeout() -> Duration {
        Duration::from_secs(1)
    }
    pub fn rise() -> u32 {
        2
    }
    pub fn fall() -> u32 {
        3
    }
    pub fn weight() -> u32 {
        1
    }
    pub fn backlog() -> u32 {
        4096
    }
    pub fn mss() -> u16 {
        1460
    }
    pub fn initial_rto() -> Duration {
        Duration::from_secs(1)
    }
    pub fn min_rto() -> Duration {
        Duration::from_millis(200)
    }
    pub fn max_rto() -> Duration {
        Duration::from_secs(60)
    }
    pub fn max_retransmissions() -> u32 {
        12
    }
    pub fn synack_retries() -> u32 {
        5
    }
    pub fn initial_window() -> u16 {
        10
    }
    pub fn time_wait() -> Duration {
        Duration::from_secs(60)
    }
    pub fn max_time_wait() -> u32 {
        262_144
    }
    pub fn fin_wait_2_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn delayed_ack() -> Duration {
        Duration::from_millis(40)
    }
    pub fn buffer() -> u32 {
        4 << 20
    }
    pub fn buffer_budget() -> u64 {
        1 << 30
    }
    pub fn drain_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn drain_close_grace() -> Duration {
        Duration::from_secs(1)
    }
    pub fn admin_listen() -> Socket {
        Socket(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 9190))
    }
    pub fn log_level() -> String {
        "info".into()
    }
}
