//! Source ports for backend connections, handed out least recently used
//! first.
//!
//! On the backend leg lastack is the client, and when the client closed
//! first lastack also closes first there, so the kernel keeps a TIME-WAIT
//! for each backend connection. Letting connect() choose the port makes the
//! kernel scan the ephemeral range for a 4-tuple without one
//! (`__inet_hash_connect`), preferring even ports: kernel proxies stall at
//! ≈14k connections/s to one backend address on this. Instead each shard
//! owns a disjoint share of a port range and binds every backend socket to
//! the port it released longest ago: with `P` ports at `R` connections/s a
//! port comes back after `P / R` seconds, which is longer than
//! `net.ipv4.tcp_tw_reuse_delay` (1 s) up to 60k connections/s per source
//! address and backend, so with `tcp_tw_reuse = 1` the kernel reuses the
//! TIME-WAIT in O(1) and never scans.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One shard's share of a port range. A port given back after a
/// connection that left a TIME-WAIT here (lastack's FIN went first) rests
/// for the quarantine (see [`super::host::HostTcp::port_quarantine`]):
/// before that the kernel would refuse the connect. Any other port (the
/// backend closed first, the connection was reset, or never connected) is
/// ready at once. Ready ports go first, least recently released first;
/// rested ones once none is ready (the older a TIME-WAIT, the safer its
/// reuse).
///
/// Ports that go into TIME-WAIT are also paced, as a token bucket in debt:
/// `P / (Q + 1 s)` tokens per second (`P` ports, quarantine `Q`), at most
/// one second's worth saved up; each port given back with a TIME-WAIT costs
/// one, and no port is handed out while the bucket is in debt. Without the
/// pace, churn would put every port to rest within a second or two and
/// then find none ready until the first came back `Q` later — a stall of
/// up to a minute, and the same again each minute; at this pace one comes
/// back before the queue runs dry, so connections slow down to what the
/// TIME-WAITs allow but never stop. Connections that leave no TIME-WAIT
/// cost nothing, so a backend that closes first is never slowed down.
#[derive(Debug, Clone)]
pub struct PortQueue {
    /// Ready: least recently released first.
    ready: VecDeque<u16>,
    /// Resting after a TIME-WAIT, with when each came back (in order).
    resting: VecDeque<(u16, Instant)>,
    /// Ports handed out and not yet given back.
    in_use: usize,
    quarantine: Duration,
    pace: Option<Pace>,
}

/// A token bucket that may go into debt: refilled at `per_second` up to
/// `burst`, spent by ports that come back with a TIME-WAIT.
#[derive(Debug, Clone, Copy)]
struct Pace {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Pace {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
    }
}

impl PortQueue {
    /// Ports `first..=last` whose offset from `first` is `shard` modulo
    /// `shards`, so shards never hand out the same port.
    pub fn new(first: u16, last: u16, shard: usize, shards: usize) -> Self {
        let shards = shards.max(1);
        let ready = (first..=last)
            .enumerate()
            .filter(|(i, _)| i % shards == shard % shards)
            .map(|(_, port)| port)
            .collect();
        Self {
            ready,
            resting: VecDeque::new(),
            in_use: 0,
            quarantine: Duration::ZERO,
            pace: None,
        }
    }

    /// How long a port rests after a TIME-WAIT (and so how fast such ports
    /// may be used: see the type's docs).
    pub fn with_quarantine(mut self, quarantine: Duration) -> Self {
        self.quarantine = quarantine;
        self.pace = (!quarantine.is_zero()).then(|| {
            let per_second =
                self.ready.len() as f64 / (quarantine + Duration::from_secs(1)).as_secs_f64();
            let burst = per_second.max(1.0);
            Pace {
                per_second,
                burst,
                tokens: burst,
                last: Instant::now(),
            }
        });
        self
    }

    /// A port to use now, if one is ready and the pace allows.
    pub fn take(&mut self) -> Option<u16> {
        let now = Instant::now();
        if let Some(pace) = self.pace.as_mut() {
            pace.refill(now);
            if pace.tokens < 1.0 && !self.resting.is_empty() {
                return None;
            }
        }
        let port = match self.ready.pop_front() {
            Some(port) => port,
            None => {
                let &(_, at) = self.resting.front()?;
                if now.duration_since(at) < self.quarantine {
                    return None;
                }
                self.resting.pop_front()?.0
            }
        };
        self.in_use += 1;
        Some(port)
    }

    /// Ports that left a TIME-WAIT handed out per second at most (`None`:
    /// no limit).
    pub fn pace(&self) -> Option<f64> {
        self.pace.map(|p| p.per_second)
    }

    /// Gives `port` back; `time_wait`: its last connection left a
    /// TIME-WAIT here, so it rests first.
    pub fn give_back(&mut self, port: u16, time_wait: bool) {
        self.in_use -= 1;
        if time_wait && !self.quarantine.is_zero() {
            let now = Instant::now();
            if let Some(pace) = self.pace.as_mut() {
                pace.refill(now);
                pace.tokens -= 1.0;
            }
            self.resting.push_back((port, now));
        } else {
            self.ready.push_back(port);
        }
    }

    /// Removes a port for good (e.g. a local service listens on it); it
    /// was taken.
    pub fn retire(&mut self, _port: u16) {
        self.in_use -= 1;
    }

    /// Ports not in use: (ready now, resting after a TIME-WAIT).
    pub fn free(&self) -> (usize, usize) {
        let now = Instant::now();
        let rested = self
            .resting
            .partition_point(|&(_, at)| now.duration_since(at) >= self.quarantine);
        (self.ready.len() + rested, self.resting.len() - rested)
    }

    pub fn in_use(&self) -> usize {
        self.in_use
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(q: &PortQueue) -> Vec<u16> {
        q.ready.iter().copied().collect()
    }

    #[test]
    fn shards_get_disjoint_shares_covering_the_range() {
        let shares: Vec<PortQueue> = (0..3).map(|s| PortQueue::new(1000, 1099, s, 3)).collect();
        let mut all: Vec<u16> = shares.iter().flat_map(ports).collect();
        all.sort_unstable();
        assert_eq!(all, (1000..=1099).collect::<Vec<_>>());
        assert_eq!(shares[0].free(), (34, 0));
        assert_eq!(shares[2].free(), (33, 0));
    }

    #[test]
    fn the_least_recently_released_port_comes_first() {
        let mut q = PortQueue::new(1, 4, 0, 1);
        let a = q.take().unwrap();
        let b = q.take().unwrap();
        q.give_back(b, false);
        q.give_back(a, false);
        // 3 and 4 were never used; then b (released before a), then a.
        let order: Vec<u16> = std::iter::from_fn(|| q.take()).collect();
        assert_eq!(order, vec![3, 4, b, a]);
        assert_eq!(q.in_use(), 4);
        assert_eq!(q.take(), None, "exhausted");
    }

    #[test]
    fn a_port_rests_after_a_time_wait_only() {
        let mut q = PortQueue::new(1, 3, 0, 1).with_quarantine(Duration::from_millis(50));
        q.pace = None;
        let (a, b) = (q.take().unwrap(), q.take().unwrap());
        q.give_back(a, true);
        q.give_back(b, false);
        assert_eq!(q.free(), (2, 1));
        assert_eq!(q.take(), Some(3), "never used");
        assert_eq!(q.take(), Some(b), "no TIME-WAIT: ready at once");
        assert_eq!(q.take(), None, "a still rests");
        assert_eq!(q.free(), (0, 1));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(q.take(), Some(a));
    }

    /// Ports that leave a TIME-WAIT come at the pace that never lets the
    /// queue run dry: P / (Q + 1 s) per second after a one-second burst.
    #[test]
    fn time_waits_are_paced_to_what_the_quarantine_gives_back() {
        let mut q = PortQueue::new(1000, 1609, 0, 1).with_quarantine(Duration::from_secs(60));
        assert_eq!(q.pace(), Some(10.0), "610 ports / 61 s");
        let cycle = |q: &mut PortQueue| q.take().map(|port| q.give_back(port, true)).is_some();
        let burst = std::iter::from_fn(|| cycle(&mut q).then_some(())).count();
        assert_eq!(burst, 10, "one second's worth at once");
        let started = Instant::now();
        let mut more = 0;
        while started.elapsed() < Duration::from_millis(300) {
            more += usize::from(cycle(&mut q));
        }
        assert!((2..=4).contains(&more), "about 3 in 0.3 s, got {more}");
    }

    #[test]
    fn connections_without_time_wait_are_not_paced() {
        let mut q = PortQueue::new(1000, 1609, 0, 1).with_quarantine(Duration::from_secs(60));
        for _ in 0..10_000 {
            let port = q.take().expect("never paced");
            q.give_back(port, false);
        }
    }

    #[test]
    fn a_retired_port_never_comes_back() {
        let mut q = PortQueue::new(10, 11, 0, 1);
        let p = q.take().unwrap();
        q.retire(p);
        assert_eq!(q.take(), Some(11));
        assert_eq!(q.take(), None);
        assert_eq!(q.in_use(), 1);
    }
}
