//! The engine's parameters from `[tcp]`: the core crate knows nothing of
//! the config file, so the conversion lives here.

use lastack_core::tcp::{AlgorithmKind, CookieMode, EcnMode, TcpConfig};

use super::schema::{Congestion, Ecn, SynCookies, Tcp};

impl From<&Tcp> for TcpConfig {
    fn from(tcp: &Tcp) -> Self {
        Self {
            syn_backlog: tcp.syn_backlog as usize,
            accept_backlog: tcp.accept_backlog as usize,
            syn_cookies: match tcp.syn_cookies {
                SynCookies::Auto => CookieMode::Auto,
                SynCookies::Always => CookieMode::Always,
                SynCookies::Never => CookieMode::Never,
            },
            mss: tcp.mss,
            initial_rto: *tcp.initial_rto,
            min_rto: *tcp.min_rto,
            max_rto: *tcp.max_rto,
            max_retransmissions: tcp.max_retransmissions.min(255) as u8,
            synack_retries: tcp.synack_retries.min(255) as u8,
            time_wait: *tcp.time_wait,
            max_time_wait: tcp.max_time_wait as usize,
            fin_wait_2_timeout: *tcp.fin_wait_2_timeout,
            delayed_ack: *tcp.delayed_ack,
            send_buffer: tcp.send_buffer as usize,
            recv_buffer: tcp.recv_buffer as usize,
            buffer_budget: tcp.buffer_budget as usize,
            window_scaling: tcp.window_scaling,
            timestamps: tcp.timestamps,
            sack: tcp.sack,
            keepalive: tcp.keepalive.map(|d| *d),
            challenge_ack_limit: TcpConfig::default().challenge_ack_limit,
            congestion: match tcp.congestion {
                Congestion::Cubic => AlgorithmKind::Cubic,
                Congestion::Newreno => AlgorithmKind::NewReno,
                Congestion::Bbr => AlgorithmKind::Bbr,
            },
            initial_window: tcp.initial_window,
            ecn: match tcp.ecn {
                Ecn::Off => EcnMode::Off,
                Ecn::Accept => EcnMode::Accept,
                Ecn::On => EcnMode::On,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine's own defaults are the config file's.
    #[test]
    fn engine_defaults_match_the_config_defaults() {
        assert_eq!(TcpConfig::from(&Tcp::default()), TcpConfig::default());
    }
}
