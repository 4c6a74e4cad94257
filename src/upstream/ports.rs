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

/// One shard's share of a port range, as a queue: taken from the front,
/// given back at the end with the time it came back. A port is handed out
/// again only once its quarantine has passed (see
/// [`super::host::HostTcp::port_quarantine`]): before that the kernel would
/// refuse the connect.
///
/// With a quarantine, ports are also paced: at most `P / (Q + 1 s)` per
/// second with a burst of one second's worth, for `P` ports and quarantine
/// `Q`. Handing them out faster would empty the queue and then leave it
/// with nothing ready until the first port comes back `Q` later — a stall
/// of up to `Q`; at this pace one comes back before the queue runs dry, so
/// connections slow down to what the TIME-WAITs allow but never stop.
#[derive(Debug, Clone)]
pub struct PortQueue {
    free: VecDeque<(u16, Option<Instant>)>,
    /// Ports handed out and not yet given back.
    in_use: usize,
    quarantine: Duration,
    pace: Option<Pace>,
}

/// A token bucket: ports per second, and a burst.
#[derive(Debug, Clone, Copy)]
struct Pace {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Pace {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl PortQueue {
    /// Ports `first..=last` whose offset from `first` is `shard` modulo
    /// `shards`, so shards never hand out the same port.
    pub fn new(first: u16, last: u16, shard: usize, shards: usize) -> Self {
        let shards = shards.max(1);
        let free = (first..=last)
            .enumerate()
            .filter(|(i, _)| i % shards == shard % shards)
            .map(|(_, port)| (port, None))
            .collect();
        Self {
            free,
            in_use: 0,
            quarantine: Duration::ZERO,
            pace: None,
        }
    }

    /// How long a port rests after it comes back (and so how fast ports
    /// are handed out: see the type's docs).
    pub fn with_quarantine(mut self, quarantine: Duration) -> Self {
        self.quarantine = quarantine;
        self.pace = (!quarantine.is_zero()).then(|| {
            let per_second =
                self.free.len() as f64 / (quarantine + Duration::from_secs(1)).as_secs_f64();
            Pace {
                per_second,
                burst: per_second.max(1.0),
                tokens: per_second.max(1.0),
                last: Instant::now(),
            }
        });
        self
    }

    /// The least recently released port, if its quarantine has passed and
    /// the pace allows one now.
    pub fn take(&mut self) -> Option<u16> {
        let &(port, released) = self.free.front()?;
        if released.is_some_and(|at| at.elapsed() < self.quarantine) {
            return None;
        }
        if let Some(pace) = self.pace.as_mut() {
            if !pace.take() {
                return None;
            }
        }
        self.free.pop_front();
        self.in_use += 1;
        Some(port)
    }

    /// Ports handed out per second at most (`None`: no limit).
    pub fn pace(&self) -> Option<f64> {
        self.pace.map(|p| p.per_second)
    }

    /// When the next port comes out of quarantine (`None`: one is ready,
    /// or none is free at all).
    pub fn next_ready(&self) -> Option<Instant> {
        let (_, released) = self.free.front()?;
        released
            .map(|at| at + self.quarantine)
            .filter(|at| *at > Instant::now())
    }

    /// Gives `port` back; it is handed out again after all the others.
    pub fn give_back(&mut self, port: u16) {
        self.in_use -= 1;
        self.free.push_back((port, Some(Instant::now())));
    }

    /// Removes a port for good (e.g. a local service listens on it); it
    /// was taken.
    pub fn retire(&mut self, _port: u16) {
        self.in_use -= 1;
    }

    /// Ports not in use (some may still rest in quarantine).
    pub fn available(&self) -> usize {
        self.free.len()
    }

    pub fn in_use(&self) -> usize {
        self.in_use
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_get_disjoint_shares_covering_the_range() {
        let shares: Vec<PortQueue> = (0..3).map(|s| PortQueue::new(1000, 1099, s, 3)).collect();
        let mut all: Vec<u16> = shares
            .iter()
            .flat_map(|q| q.free.iter().map(|f| f.0))
            .collect();
        all.sort_unstable();
        assert_eq!(all, (1000..=1099).collect::<Vec<_>>());
        assert_eq!(shares[0].available(), 34);
        assert_eq!(shares[2].available(), 33);
    }

    #[test]
    fn the_least_recently_released_port_comes_first() {
        let mut q = PortQueue::new(1, 4, 0, 1);
        let a = q.take().unwrap();
        let b = q.take().unwrap();
        q.give_back(b);
        q.give_back(a);
        // 3 and 4 were never used; then b (released before a), then a.
        let order: Vec<u16> = std::iter::from_fn(|| q.take()).collect();
        assert_eq!(order, vec![3, 4, b, a]);
        assert_eq!(q.in_use(), 4);
        assert_eq!(q.take(), None, "exhausted");
    }

    #[test]
    fn a_port_rests_for_its_quarantine() {
        let mut q = PortQueue::new(1, 2, 0, 1).with_quarantine(Duration::from_millis(50));
        q.pace = None;
        let p = q.take().unwrap();
        q.give_back(p);
        let other = q.take().unwrap();
        assert_eq!(q.take(), None, "the other one still rests");
        let ready = q.next_ready().expect("a time it is ready");
        std::thread::sleep(ready.saturating_duration_since(Instant::now()));
        assert_eq!(q.take(), Some(p));
        assert_ne!(p, other);
    }

    /// With a quarantine, ports come at the pace that never lets the queue
    /// run dry: P / (Q + 1 s) per second after a one-second burst.
    #[test]
    fn ports_are_paced_to_what_the_quarantine_gives_back() {
        let mut q = PortQueue::new(1000, 1609, 0, 1).with_quarantine(Duration::from_secs(60));
        assert_eq!(q.pace(), Some(10.0), "610 ports / 61 s");
        let burst = std::iter::from_fn(|| q.take()).count();
        assert_eq!(burst, 10, "one second's worth at once");
        let started = Instant::now();
        let mut more = 0;
        while started.elapsed() < Duration::from_millis(300) {
            more += usize::from(q.take().is_some());
        }
        assert!((2..=4).contains(&more), "about 3 in 0.3 s, got {more}");
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
