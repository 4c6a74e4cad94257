//! The engine's tunables, taken from `[tcp]` in the config file.

use std::time::Duration;

pub use super::congestion::AlgorithmKind;

/// What a connection's send buffer and receive window start at (or the
/// configured maximum, if smaller): Linux's initial receive window.
pub const INITIAL_BUFFER: usize = 64 * 1024;

/// When the listener answers with SYN cookies (RFC 4987 §3.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieMode {
    /// Only once the SYN queue is full.
    Auto,
    /// For every SYN: no half-open state at all.
    Always,
    /// Never: SYNs beyond the SYN queue are dropped.
    Never,
}

/// Explicit Congestion Notification (RFC 3168) for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EcnMode {
    /// Never: SYNs offer none, and an ECN-setup SYN is answered without.
    Off,
    /// When the peer's SYN asks for it (Linux's default, `tcp_ecn = 2`);
    /// our own SYNs do not ask.
    #[default]
    Accept,
    /// Also asked for on our own SYNs (active opens).
    On,
}

/// Engine parameters. `Default` matches the config file's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpConfig {
    pub syn_backlog: usize,
    pub accept_backlog: usize,
    pub syn_cookies: CookieMode,
    /// MSS we announce and the most we send over IPv4; over IPv6 20 bytes
    /// less ([`TcpConfig::mss_for`]).
    pub mss: u16,
    pub initial_rto: Duration,
    pub min_rto: Duration,
    pub max_rto: Duration,
    pub max_retransmissions: u8,
    pub synack_retries: u8,
    /// How long TIME-WAIT lasts (2 × MSL).
    pub time_wait: Duration,
    /// Most entries in the TIME-WAIT table; beyond it a connection that
    /// closed first is freed without TIME-WAIT (Linux's
    /// `tcp_max_tw_buckets`).
    pub max_time_wait: usize,
    /// How long a connection the application has closed waits in
    /// FIN-WAIT-2 for the peer's FIN (Linux's `tcp_fin_timeout`).
    pub fin_wait_2_timeout: Duration,
    pub delayed_ack: Duration,
    /// Most bytes a connection's send buffer grows to (it starts at
    /// [`INITIAL_BUFFER`] and follows the congestion window).
    pub send_buffer: usize,
    /// Most bytes a connection's receive window grows to (it starts at
    /// [`INITIAL_BUFFER`] and follows what the peer sends per round trip).
    pub recv_buffer: usize,
    /// Buffer bytes lent to a stack's connections above which windows stop
    /// growing and shrink to a chunk: backpressure, never drops.
    pub buffer_budget: usize,
    pub window_scaling: bool,
    pub timestamps: bool,
    pub sack: bool,
    pub keepalive: Option<Duration>,
    /// Challenge ACKs sent per second at most (RFC 5961 §7).
    pub challenge_ack_limit: u32,
    /// The congestion-control algorithm of new connections.
    pub congestion: AlgorithmKind,
    /// Segments in the initial congestion window (RFC 6928: 10).
    pub initial_window: u16,
    /// ECN negotiation (RFC 3168 §6.1.1).
    pub ecn: EcnMode,
}

/// The defaults of the config file's `[tcp]` table (the product's config
/// module converts a parsed table and checks that the two agree).
impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            syn_backlog: 4096,
            accept_backlog: 4096,
            syn_cookies: CookieMode::Auto,
            mss: 1460,
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(60),
            max_retransmissions: 12,
            synack_retries: 5,
            time_wait: Duration::from_secs(60),
            max_time_wait: 262_144,
            fin_wait_2_timeout: Duration::from_secs(60),
            delayed_ack: Duration::from_millis(40),
            send_buffer: 4 << 20,
            recv_buffer: 4 << 20,
            buffer_budget: 1 << 30,
            window_scaling: true,
            timestamps: true,
            sack: true,
            keepalive: None,
            challenge_ack_limit: 1000,
            congestion: AlgorithmKind::Cubic,
            initial_window: 10,
            ecn: EcnMode::Accept,
        }
    }
}

impl TcpConfig {
    /// The MSS for a flow to `remote`: [`mss`](Self::mss) over IPv4, 20
    /// bytes less over IPv6, whose fixed header is 40 bytes to IPv4's 20
    /// (1440 on a 1500-byte link, as Linux announces).
    pub fn mss_for(&self, remote: &crate::tcp::Endpoint) -> u16 {
        use crate::wire::ip::header_len;
        if remote.is_ipv6() {
            self.mss
                .saturating_sub((header_len(true) - header_len(false)) as u16)
        } else {
            self.mss
        }
    }

    /// The send buffer a connection starts with.
    pub fn initial_send_buffer(&self) -> usize {
        INITIAL_BUFFER.min(self.send_buffer)
    }

    /// The receive window a connection starts with.
    pub fn initial_recv_buffer(&self) -> usize {
        INITIAL_BUFFER.min(self.recv_buffer)
    }

    /// The window scale shift we offer: the smallest that lets the receive
    /// buffer be advertised whole (RFC 7323 §2.3, at most 14).
    pub fn window_shift(&self) -> u8 {
        if !self.window_scaling {
            return 0;
        }
        let mut shift = 0u8;
        while (65535usize << shift) < self.recv_buffer && shift < 14 {
            shift += 1;
        }
        shift
    }
}
