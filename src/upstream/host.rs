//! What the host's kernel settings allow on the backend leg, read once at
//! start (in lastack's network namespace) and reported.
//!
//! On the backend leg lastack is the client; when the client closed first,
//! lastack closes first there too, and a clean close leaves the kernel
//! holding that connection in TIME-WAIT for 60 s (`TCP_TIMEWAIT_LEN`).
//! Until then a new connection from the same source address and port to the
//! same backend fails (`EADDRNOTAVAIL`) unless the kernel may reuse the
//! TIME-WAIT: `net.ipv4.tcp_tw_reuse = 1` with timestamps on (the default
//! `2` reuses only toward loopback), after `tcp_tw_reuse_delay` (1 s).
//! Without reuse, one source address has ~64k ports for 60 s toward one
//! backend: about a thousand connections per second, sustained — the wall
//! a default host puts in front of any proxy that closes first. lastack
//! paces its ports to it rather than fail connections (see
//! [`super::ports::PortQueue`]), or avoids it with `backend_close =
//! "reset"` (see [`crate::config::BackendClose`]).

use std::time::Duration;

use crate::config::BackendClose;

/// How long the kernel keeps a TIME-WAIT (`TCP_TIMEWAIT_LEN`).
pub const TIME_WAIT: Duration = Duration::from_secs(60);

/// How long a port rests after a TIME-WAIT the kernel will not reuse:
/// [`TIME_WAIT`] and the lateness of its timer. The kernel's timer wheel
/// rounds a 60 s timeout up to its level's granularity, 512 or 4096
/// jiffies: up to 5.12 s late at `HZ=100`, 2.05 s at 250, 4.1 s at 1000
/// (measured here: ports reused after exactly 60 s met `EADDRNOTAVAIL`).
pub const TIME_WAIT_REST: Duration = Duration::from_secs(66);

/// The settings that decide the backend leg's ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostTcp {
    /// `net.ipv4.tcp_tw_reuse`: 0 off, 1 on, 2 loopback only.
    pub tw_reuse: u8,
    /// `net.ipv4.tcp_tw_reuse_delay` (kernel ≥ 6.13), else 1 s.
    pub tw_reuse_delay: Duration,
    /// `net.ipv4.tcp_timestamps` is on (reuse needs them).
    pub timestamps: bool,
}

impl Default for HostTcp {
    /// The kernel's defaults.
    fn default() -> Self {
        Self {
            tw_reuse: 2,
            tw_reuse_delay: Duration::from_secs(1),
            timestamps: true,
        }
    }
}

fn read(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl HostTcp {
    /// The calling thread's network namespace's settings (defaults for
    /// what cannot be read).
    pub fn read() -> Self {
        let default = Self::default();
        Self {
            tw_reuse: read("tcp_tw_reuse").map_or(default.tw_reuse, |v| v as u8),
            tw_reuse_delay: read("tcp_tw_reuse_delay")
                .map_or(default.tw_reuse_delay, Duration::from_millis),
            timestamps: read("tcp_timestamps").map_or(default.timestamps, |v| v != 0),
        }
    }

    /// True if the kernel reuses a TIME-WAIT for a new outgoing connection
    /// to a (non-loopback) backend.
    pub fn reuses_time_wait(&self) -> bool {
        self.tw_reuse == 1 && self.timestamps
    }

    /// How long after lastack closed a backend connection its source port
    /// must rest before it can connect to that backend again.
    pub fn port_quarantine(&self, close: BackendClose) -> Duration {
        match close {
            BackendClose::Reset => Duration::ZERO,
            BackendClose::Fin if self.reuses_time_wait() => self.tw_reuse_delay,
            BackendClose::Fin => TIME_WAIT_REST,
        }
    }

    /// One line for the log.
    pub fn describe(&self) -> String {
        let reuse = if self.reuses_time_wait() {
            format!("reused after {:?}", self.tw_reuse_delay)
        } else {
            "not reused: pools with backend_close = \"fin\" are paced to about 1,000 new backend \
             connections/s per source address and backend (ports / 66 s) (set net.ipv4.tcp_tw_reuse=1, add source_addresses, \
             or use backend_close = \"reset\")"
                .into()
        };
        format!(
            "tcp_tw_reuse={} tcp_timestamps={}: backend-leg TIME-WAITs {reuse}",
            self.tw_reuse,
            u8::from(self.timestamps)
        )
    }
}

/// The process's descriptor limit (`RLIMIT_NOFILE`) after
/// [`raise_descriptor_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorLimit {
    pub soft: u64,
    pub hard: u64,
}

/// Raises the soft descriptor limit to the hard one: every proxied
/// connection holds a backend socket, and the usual soft default (1024)
/// would cap a proxy at about a thousand connections.
pub fn raise_descriptor_limit() -> std::io::Result<DescriptorLimit> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    Ok(DescriptorLimit { soft, hard })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarantine_follows_reuse_and_the_close() {
        let default = HostTcp::default();
        assert!(!default.reuses_time_wait(), "2 reuses toward loopback only");
        assert_eq!(default.port_quarantine(BackendClose::Fin), TIME_WAIT_REST);
        assert_eq!(default.port_quarantine(BackendClose::Reset), Duration::ZERO);
        let reuse = HostTcp {
            tw_reuse: 1,
            ..default
        };
        assert_eq!(
            reuse.port_quarantine(BackendClose::Fin),
            Duration::from_secs(1)
        );
        let no_timestamps = HostTcp {
            timestamps: false,
            ..reuse
        };
        assert_eq!(
            no_timestamps.port_quarantine(BackendClose::Fin),
            TIME_WAIT_REST
        );
    }
}
