//! The engine's tunables, taken from `[tcp]` in the config file.

use std::time::Duration;

use crate::config;

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

/// Engine parameters. `Default` matches the config file's defaults.
#[derive(Debug, Clone)]
pub struct TcpConfig {
    pub syn_backlog: usize,
    pub accept_backlog: usize,
    pub syn_cookies: CookieMode,
    /// MSS we announce and the most we send.
    pub mss: u16,
    pub initial_rto: Duration,
    pub min_rto: Duration,
    pub max_rto: Duration,
    pub max_retransmissions: u8,
    pub synack_retries: u8,
    /// How long TIME-WAIT lasts (2 × MSL); also the FIN-WAIT-2 timeout of a
    /// connection the application has closed.
    pub time_wait: Duration,
    pub delayed_ack: Duration,
    pub send_buffer: usize,
    pub recv_buffer: usize,
    pub window_scaling: bool,
    pub timestamps: bool,
    pub sack: bool,
    pub keepalive: Option<Duration>,
    /// Challenge ACKs sent per second at most (RFC 5961 §7).
    pub challenge_ack_limit: u32,
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self::from(&config::Tcp::default())
    }
}

impl From<&config::Tcp> for TcpConfig {
    fn from(tcp: &config::Tcp) -> Self {
        Self {
            syn_backlog: tcp.syn_backlog as usize,
            accept_backlog: tcp.accept_backlog as usize,
            syn_cookies: match tcp.syn_cookies {
                config::SynCookies::Auto => CookieMode::Auto,
                config::SynCookies::Always => CookieMode::Always,
                config::SynCookies::Never => CookieMode::Never,
            },
            mss: tcp.mss,
            initial_rto: *tcp.initial_rto,
            min_rto: *tcp.min_rto,
            max_rto: *tcp.max_rto,
            max_retransmissions: tcp.max_retransmissions.min(255) as u8,
            synack_retries: tcp.synack_retries.min(255) as u8,
            time_wait: *tcp.time_wait,
            delayed_ack: *tcp.delayed_ack,
            send_buffer: tcp.send_buffer as usize,
            recv_buffer: tcp.recv_buffer as usize,
            window_scaling: tcp.window_scaling,
            timestamps: tcp.timestamps,
            sack: tcp.sack,
            keepalive: tcp.keepalive.map(|d| *d),
            challenge_ack_limit: 1000,
        }
    }
}

impl TcpConfig {
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
