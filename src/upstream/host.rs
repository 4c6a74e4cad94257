//! What the host's kernel settings allow on the backend leg, read once at
//! start (in lastack's network namespace) and reported.
//!
//! On the backend leg lastack is the client; when the client closed first,
//! lastack closes first there too, and a clean close leaves the kernel
//! holding that connection in TIME-WAIT for 60 s (`TCP_TIMEWAIT_LEN`).
//! Whether a new connection from the same source address and port to the
//! same backend may take it over depends on how the port was chosen
//! (`tcp_twsk_unique` in `net/ipv4/tcp_ipv4.c`):
//! - a port the kernel chooses at connect() (what HAProxy and nginx do):
//!   only with `net.ipv4.tcp_tw_reuse = 1` (the default `2` means toward
//!   loopback only), after `tcp_tw_reuse_delay`;
//! - a port bound before connect() (what lastack does): whenever the
//!   TIME-WAIT holds the peer's TCP timestamp, whatever `tcp_tw_reuse`
//!   says — so whenever both lastack's host and the backend use timestamps
//!   (`net.ipv4.tcp_timestamps`, on by default everywhere).
//!
//! Measured on this kernel (6.18) with a bound port, a client that closes
//! first and an immediate reconnect: `tcp_tw_reuse` 0 and 2 both reuse;
//! `tcp_timestamps = 0` fails with `EADDRNOTAVAIL`. So lastack reuses its
//! ports in least-recently-used order and meets no wall on a default host;
//! without timestamps (on its side, or a backend's — learnt from its first
//! `EADDRNOTAVAIL`) a port must rest until the TIME-WAIT is gone: one
//! source address then has ~64k ports per minute toward one backend,
//! about a thousand connections per second, and lastack paces its ports to
//! that rather than fail connections (see [`super::ports::PortQueue`]),
//! unless `backend_close = "reset"` avoids the TIME-WAITs (see
//! [`crate::config::BackendClose`]).

use std::time::Duration;

use crate::config::BackendClose;

/// How long the kernel keeps a TIME-WAIT (`TCP_TIMEWAIT_LEN`).
pub const TIME_WAIT: Duration = Duration::from_secs(60);

/// How long a port rests after a TIME-WAIT the kernel will not reuse:
/// [`TIME_WAIT`] and the lateness of its timer. The kernel's timer wheel
/// rounds a 60 s timeout up to its level's granularity, 512 or 4096
/// jiffies: up to 5.12 s late at `HZ=100`, 2.05 s at 250, 4.1 s at 1000.
pub const TIME_WAIT_REST: Duration = Duration::from_secs(66);

/// The settings that decide the backend leg's ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostTcp {
    /// `net.ipv4.tcp_tw_reuse`: 0 off, 1 on, 2 loopback only (reported:
    /// it does not apply to lastack's bound ports).
    pub tw_reuse: u8,
    /// `net.ipv4.tcp_timestamps` is on: TIME-WAITs on bound ports can be
    /// reused (if the backend uses timestamps too).
    pub timestamps: bool,
}

impl Default for HostTcp {
    /// The kernel's defaults.
    fn default() -> Self {
        Self {
            tw_reuse: 2,
            timestamps: true,
        }
    }
}

/// The first number in a sysfs or procfs file (`/proc/sys/...`,
/// `/sys/class/net/IF/mtu`), if it reads.
pub fn read_number(path: impl AsRef<std::path::Path>) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn read(name: &str) -> Option<u64> {
    read_number(format!("/proc/sys/net/ipv4/{name}"))
}

impl HostTcp {
    /// The calling thread's network namespace's settings (defaults for
    /// what cannot be read).
    pub fn read() -> Self {
        let default = Self::default();
        Self {
            tw_reuse: read("tcp_tw_reuse").map_or(default.tw_reuse, |v| v as u8),
            timestamps: read("tcp_timestamps").map_or(default.timestamps, |v| v != 0),
        }
    }

    /// True if connect() on one of lastack's bound ports may take over
    /// that port's TIME-WAIT toward a backend that uses timestamps.
    pub fn reuses_time_wait(&self) -> bool {
        self.timestamps
    }

    /// How long after lastack closed a backend connection first its source
    /// port must rest before it can connect to that backend again (a pool
    /// learns a longer one if a backend turns out to refuse the reuse).
    pub fn port_quarantine(&self, close: BackendClose) -> Duration {
        match close {
            BackendClose::Fin if !self.reuses_time_wait() => TIME_WAIT_REST,
            _ => Duration::ZERO,
        }
    }

    /// One line for the log.
    pub fn describe(&self) -> String {
        let reuse = if self.reuses_time_wait() {
            "reused on lastack's own ports toward backends that use timestamps (tcp_tw_reuse \
             applies only to kernel-chosen ports); a backend without them makes its pool rest \
             ports 66 s and pace connections"
        } else {
            "not reused (no timestamps): pools with backend_close = \"fin\" rest each port 66 s \
             and pace connections to about 1,000/s per source address and backend (turn \
             net.ipv4.tcp_timestamps on, add source_addresses, or use backend_close = \"reset\")"
        };
        format!(
            "tcp_timestamps={} tcp_tw_reuse={}: backend-leg TIME-WAITs {reuse}",
            u8::from(self.timestamps),
            self.tw_reuse,
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

/// Asks the allocator (mimalloc, lastack's global allocator) to give the
/// calling thread's freed memory back to the system now rather than on
/// some later allocation: a shard calls it when load has dropped (at most
/// once a second), so memory goes back after a peak even when the shard
/// then stays idle. Harmless where mimalloc is not the allocator (tests):
/// its heaps are then empty.
pub fn give_back_freed_memory() {
    // Safety: `mi_collect` takes no pointers and only walks the calling
    // thread's own heap; it is safe to call at any time from any thread.
    unsafe { libmimalloc_sys::mi_collect(true) }
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
    fn a_quarantine_follows_timestamps_and_the_close() {
        let default = HostTcp::default();
        assert!(
            default.reuses_time_wait(),
            "bound ports: tcp_tw_reuse does not matter"
        );
        assert_eq!(default.port_quarantine(BackendClose::Fin), Duration::ZERO);
        assert_eq!(default.port_quarantine(BackendClose::Reset), Duration::ZERO);
        let no_timestamps = HostTcp {
            timestamps: false,
            ..default
        };
        assert_eq!(
            no_timestamps.port_quarantine(BackendClose::Fin),
            TIME_WAIT_REST
        );
        assert_eq!(
            no_timestamps.port_quarantine(BackendClose::Reset),
            Duration::ZERO
        );
    }
}
