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
//! port comes back after `P / R` seconds, and the kernel takes over its
//! TIME-WAIT in O(1) (a bound port reuses a TIME-WAIT that holds the
//! peer's timestamp: see [`super::host`]) and never scans. Where the
//! TIME-WAIT cannot be reused, the port rests (see [`PortQueue`]).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
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
/// While ports rest, the ready ones are spread over the time until the
/// first resting one comes back: one every `(rest left) / (ready ports)`,
/// with up to 20 ms' worth saved up.
/// Handed out as fast as asked, churn would put every port to rest within
/// a second or two and then find none until the first came back a
/// quarantine later — a stall of up to a minute, and the same again every
/// minute. Spread, ports last until the first comes back, and then come
/// back at the pace they were taken: connections slow down to what the
/// TIME-WAITs allow (`P / Q` per second for `P` ports and quarantine `Q`)
/// and never stop. Connections that leave no TIME-WAIT put their port back
/// among the ready ones, so a backend that closes first is never slowed
/// down; with nothing resting there is no pace at all.
#[derive(Debug, Clone)]
pub struct PortQueue {
    /// Ready: least recently released first, with when each was given
    /// back after a TIME-WAIT (reusable then).
    ready: VecDeque<(u16, Option<Instant>)>,
    /// Resting after a TIME-WAIT, with when each came back (in order).
    resting: VecDeque<(u16, Instant)>,
    /// Ports handed out and not yet given back.
    in_use: usize,
    quarantine: Duration,
    /// Ready ports that may be handed out now under the spread, and when
    /// that was reckoned.
    credit: f64,
    earned_at: Instant,
}

/// How much of the spread may be saved up: a shard's loop does not come
/// back exactly when each port is due.
const SPREAD_SLACK: Duration = Duration::from_millis(20);

impl PortQueue {
    /// Ports `first..=last` whose offset from `first` is `shard` modulo
    /// `shards`, so shards never hand out the same port.
    pub fn new(first: u16, last: u16, shard: usize, shards: usize) -> Self {
        let shards = shards.max(1);
        let ready = (first..=last)
            .enumerate()
            .filter(|(i, _)| i % shards == shard % shards)
            .map(|(_, port)| (port, None))
            .collect();
        Self {
            ready,
            resting: VecDeque::new(),
            in_use: 0,
            quarantine: Duration::ZERO,
            credit: f64::INFINITY,
            earned_at: Instant::now(),
        }
    }

    /// How long a port rests after a TIME-WAIT.
    pub fn with_quarantine(mut self, quarantine: Duration) -> Self {
        self.quarantine = quarantine;
        self
    }

    /// A port to use now, if one is ready and the spread allows.
    pub fn take(&mut self) -> Option<u16> {
        let now = Instant::now();
        let port = if self.ready.is_empty() {
            let &(_, at) = self.resting.front()?;
            if now < at + self.quarantine {
                return None;
            }
            // The oldest resting port is back.
            self.resting.pop_front()?.0
        } else {
            self.earn(now);
            if self.credit < 1.0 {
                return None;
            }
            self.credit -= 1.0;
            self.ready.pop_front()?.0
        };
        self.in_use += 1;
        Some(port)
    }

    /// How long until [`PortQueue::take`] may give a port: zero if it may
    /// now, `None` if every port is in use (one comes back when a
    /// connection ends).
    pub fn next_take_in(&mut self) -> Option<Duration> {
        let now = Instant::now();
        if self.ready.is_empty() {
            let &(_, at) = self.resting.front()?;
            return Some((at + self.quarantine).saturating_duration_since(now));
        }
        self.earn(now);
        Some(match self.spacing(now) {
            Some(spacing) if self.credit < 1.0 => spacing.mul_f64(1.0 - self.credit),
            _ => Duration::ZERO,
        })
    }

    /// The time between two ready ports while others rest: the rest left
    /// to the first resting one, shared by the ready ones (`None`: no
    /// limit).
    fn spacing(&self, now: Instant) -> Option<Duration> {
        let &(_, at) = self.resting.front()?;
        let rest_left = (at + self.quarantine).saturating_duration_since(now);
        let spacing = rest_left / self.ready.len().max(1) as u32;
        (!spacing.is_zero()).then_some(spacing)
    }

    /// Adds what the time since the last call earned: one port per
    /// spacing, saved up to [`SPREAD_SLACK`]'s worth (at least one), so a
    /// shard that comes back a little late takes the ports it was owed.
    fn earn(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.earned_at);
        self.earned_at = now;
        self.credit = match self.spacing(now) {
            Some(spacing) => {
                let most = (SPREAD_SLACK.as_secs_f64() / spacing.as_secs_f64()).max(1.0);
                (self.credit + elapsed.as_secs_f64() / spacing.as_secs_f64()).min(most)
            }
            None => f64::INFINITY,
        };
    }

    /// Gives `port` back; `time_wait`: its last connection left a
    /// TIME-WAIT here, so it rests first.
    pub fn give_back(&mut self, port: u16, time_wait: bool) {
        self.in_use -= 1;
        let now = Instant::now();
        match (time_wait, self.quarantine.is_zero()) {
            (true, false) => self.resting.push_back((port, now)),
            (true, true) => self.ready.push_back((port, Some(now))),
            (false, _) => self.ready.push_back((port, None)),
        }
    }

    /// True if ports rest after a TIME-WAIT (not reused).
    pub fn rests(&self) -> bool {
        !self.quarantine.is_zero()
    }

    /// The kernel turned out not to reuse these TIME-WAITs (a backend
    /// without timestamps): from now on a port rests `quarantine` after
    /// one, and the ready ports given back after a TIME-WAIT less than
    /// `quarantine` ago rest for what is left of it. True if that changed
    /// anything.
    pub fn learn_no_reuse(&mut self, quarantine: Duration) -> bool {
        if self.quarantine >= quarantine {
            return false;
        }
        self.quarantine = quarantine;
        let now = Instant::now();
        let (young, ready): (VecDeque<_>, VecDeque<_>) = self
            .ready
            .drain(..)
            .partition(|&(_, at)| at.is_some_and(|at| now.duration_since(at) < quarantine));
        self.ready = ready;
        // Both in the order they were given back.
        let mut resting: Vec<(u16, Instant)> = self.resting.drain(..).collect();
        resting.extend(young.into_iter().filter_map(|(port, at)| Some((port, at?))));
        resting.sort_by_key(|&(_, at)| at);
        self.resting = resting.into();
        true
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

/// Keys of waiting connections whose turn has come, for the shard to wake
/// (one list per shard, shared by its pools).
pub type Woken = Rc<RefCell<Vec<u64>>>;

/// The connections waiting for a source port of one pool, first come first
/// served: only the first may take a port, so each waits about its place
/// in line divided by the pace, never an unlucky draw.
#[derive(Debug)]
pub struct PortLine {
    queue: VecDeque<u64>,
    woken: Woken,
}

pub type Line = Rc<RefCell<PortLine>>;

impl PortLine {
    pub fn new(woken: &Woken) -> Line {
        Rc::new(RefCell::new(Self {
            queue: VecDeque::new(),
            woken: Rc::clone(woken),
        }))
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }
}

/// A connection's place in a [`PortLine`]; it leaves the line when
/// dropped (it got its port, gave up, or its client went away), and the
/// next one is woken if it was first.
#[derive(Debug)]
pub struct WaitTicket {
    line: Line,
    key: u64,
}

impl WaitTicket {
    /// Joins the end of `line` as connection `key`.
    pub fn join(line: &Line, key: u64) -> Self {
        line.borrow_mut().queue.push_back(key);
        Self {
            line: Rc::clone(line),
            key,
        }
    }

    pub fn is_first(&self) -> bool {
        self.line.borrow().queue.front() == Some(&self.key)
    }
}

impl Drop for WaitTicket {
    fn drop(&mut self) {
        let mut line = self.line.borrow_mut();
        if line.queue.front() == Some(&self.key) {
            line.queue.pop_front();
            if let Some(&next) = line.queue.front() {
                line.woken.borrow_mut().push(next);
            }
        } else if let Some(at) = line.queue.iter().position(|&k| k == self.key) {
            line.queue.remove(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(q: &PortQueue) -> Vec<u16> {
        q.ready.iter().map(|&(port, _)| port).collect()
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
        let (a, b) = (q.take().unwrap(), q.take().unwrap());
        let released = Instant::now();
        q.give_back(a, true);
        q.give_back(b, false);
        assert_eq!(q.free(), (2, 1));
        let mut order = Vec::new();
        while order.len() < 3 {
            if let Some(port) = q.take() {
                order.push((port, released.elapsed()));
            }
        }
        assert_eq!(order[0].0, 3, "never used");
        assert_eq!(order[1].0, b, "no TIME-WAIT: ready (spread over a's rest)");
        assert_eq!(order[2].0, a);
        assert!(order[2].1 >= Duration::from_millis(50), "a rested");
        assert_eq!(q.free(), (0, 0));
    }

    /// While ports rest, the ready ones are spread over the rest left:
    /// 610 ports resting 60 s come one every ≈ 98 ms.
    #[test]
    fn ready_ports_are_spread_while_others_rest() {
        let mut q = PortQueue::new(1000, 1609, 0, 1).with_quarantine(Duration::from_secs(60));
        let cycle = |q: &mut PortQueue| q.take().map(|port| q.give_back(port, true)).is_some();
        let started = Instant::now();
        let mut taken = 0;
        while started.elapsed() < Duration::from_millis(350) {
            taken += usize::from(cycle(&mut q));
        }
        assert!((3..=6).contains(&taken), "about 5 in 0.35 s, got {taken}");
        assert_eq!(q.free(), (610 - taken, taken));
        let next = q.next_take_in().expect("a port will be ready");
        assert!(next <= Duration::from_millis(99), "{next:?}");
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

    #[test]
    fn a_line_is_first_come_first_served_and_wakes_the_next() {
        let woken: Woken = Rc::default();
        let line = PortLine::new(&woken);
        let (a, b, c) = (
            WaitTicket::join(&line, 1),
            WaitTicket::join(&line, 2),
            WaitTicket::join(&line, 3),
        );
        assert!(a.is_first() && !b.is_first());
        drop(b);
        assert!(
            woken.borrow().is_empty(),
            "leaving from the middle wakes no one"
        );
        drop(a);
        assert_eq!(*woken.borrow(), [3]);
        assert!(c.is_first());
        drop(c);
        assert!(line.borrow().is_empty());
    }

    #[test]
    fn a_pool_that_learns_no_reuse_rests_its_recent_time_waits() {
        let mut q = PortQueue::new(1, 4, 0, 1);
        let (a, b, c) = (q.take().unwrap(), q.take().unwrap(), q.take().unwrap());
        q.give_back(a, true);
        q.give_back(b, false);
        q.give_back(c, true);
        assert_eq!(q.free(), (4, 0), "reused: all ready");
        assert!(q.learn_no_reuse(Duration::from_secs(60)));
        assert!(!q.learn_no_reuse(Duration::from_secs(60)), "once");
        assert_eq!(q.free(), (2, 2), "a and c rest, b and 4 are ready");
        assert_eq!(q.take(), Some(4));
        assert_eq!(q.take(), None, "b comes once the spread allows");
        assert!(q.next_take_in().unwrap() > Duration::from_secs(20));
    }
}
