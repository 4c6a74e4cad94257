//! One load thread: `slots` flows at a time on nonblocking kernel sockets,
//! driven by an edge-triggered epoll (each socket registered once, for
//! input and output). A flow: connect, send the request, read the
//! response — `requests_per_connection` times on one connection (kept
//! alive), or until the run stops when that is 0 — then close, in the
//! configured close order.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

use super::histogram::Histogram;
use super::{ChurnConfig, CloseOrder, Errors};
use crate::net;

/// What one thread measured.
#[derive(Debug, Default)]
pub struct WorkerResult {
    pub connect: Histogram,
    /// Per request: from when it was due to its whole response.
    pub transaction: Histogram,
    /// Requests answered.
    pub completed: u64,
    /// Connections that carried all their requests and were closed.
    pub connections: u64,
    pub errors: Errors,
}

/// Counters the progress line reads while the run goes on.
#[derive(Debug, Default)]
pub struct Progress {
    pub completed: AtomicU64,
    pub errors: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Idle,
    Connecting,
    Sending,
    Receiving,
    /// Kept alive between requests, the next one not yet due (open loop).
    Waiting,
}

#[derive(Debug)]
struct Flow {
    /// The socket (closing it also takes it out of the epoll set).
    fd: Option<OwnedFd>,
    step: Step,
    /// When the flow was due (open loop) or started: latency counts from
    /// here, so a late start is not hidden (coordinated omission).
    due: Instant,
    sent: usize,
    received: usize,
    /// Requests answered on this connection.
    answered: u32,
}

enum Outcome {
    /// The socket would block: wait for its next event.
    Pending,
    /// The flow moved to its next step: try that at once.
    Next,
    Done,
    Failed(io::Error),
    ShortRead,
}

pub struct Worker<'a> {
    config: &'a ChurnConfig,
    epoll: Epoll,
    flows: Vec<Flow>,
    request: Vec<u8>,
    buffer: Vec<u8>,
    next_target: usize,
    next_source: usize,
    /// The run is stopping: no further request starts on a kept-alive
    /// connection.
    stopping: bool,
    result: WorkerResult,
}

impl<'a> Worker<'a> {
    pub fn new(config: &'a ChurnConfig, slots: usize, seed: usize) -> io::Result<Self> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(io::Error::from)?;
        let now = Instant::now();
        let idle = || Flow {
            fd: None,
            step: Step::Idle,
            due: now,
            sent: 0,
            received: 0,
            answered: 0,
        };
        Ok(Self {
            config,
            epoll,
            flows: (0..slots.max(1)).map(|_| idle()).collect(),
            request: (0..config.request).map(|i| (i % 251) as u8).collect(),
            buffer: vec![0; 64 * 1024],
            next_target: seed,
            next_source: seed,
            stopping: false,
            result: WorkerResult::default(),
        })
    }

    /// Runs until `stop` (or the shared connection budget is spent), then
    /// lets flows in progress finish (up to the flow timeout).
    pub fn run(
        mut self,
        stop: &AtomicBool,
        budget: Option<&AtomicU64>,
        progress: &Progress,
        rate_per_thread: Option<f64>,
    ) -> WorkerResult {
        let mut events = vec![EpollEvent::empty(); self.flows.len().max(16)];
        let interval = rate_per_thread.map(|r| Duration::from_secs_f64(1.0 / r.max(1e-3)));
        let mut next_due = Instant::now();
        let mut stopping_since: Option<Instant> = None;
        let mut last_timeout_scan = Instant::now();
        let mut budget_spent = false;
        loop {
            let now = Instant::now();
            let stopped = stop.load(Ordering::Relaxed);
            if stopped && stopping_since.is_none() {
                stopping_since = Some(now);
                self.stopping = true;
                // Kept-alive connections between requests are done.
                for slot in 0..self.flows.len() {
                    if self.flows[slot].step == Step::Waiting {
                        self.finish_connection(slot);
                    }
                }
            }
            // Start flows in free slots, and due requests on kept-alive
            // connections.
            if !stopped {
                for slot in 0..self.flows.len() {
                    let step = self.flows[slot].step;
                    let free = step == Step::Idle && !budget_spent;
                    if !free && step != Step::Waiting {
                        continue;
                    }
                    let due = match interval {
                        Some(interval) => {
                            if next_due > now {
                                break;
                            }
                            let due = next_due;
                            next_due += interval;
                            due
                        }
                        None => now,
                    };
                    if step == Step::Waiting {
                        self.next_request(slot, due);
                        self.advance(slot, progress);
                        continue;
                    }
                    if let Some(budget) = budget {
                        if budget
                            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                                b.checked_sub(1)
                            })
                            .is_err()
                        {
                            // No connection starts any more; kept-alive
                            // ones carry on with their requests.
                            budget_spent = true;
                            break;
                        }
                    }
                    self.start(slot, due, progress);
                }
            }
            let active = self.flows.iter().filter(|f| f.step != Step::Idle).count();
            if (stopped || budget_spent) && active == 0 {
                break;
            }
            if let Some(since) = stopping_since {
                if now - since > self.config.timeout {
                    break;
                }
            }
            let wait_ms = match interval {
                Some(_) if !stopped => {
                    let until = next_due.saturating_duration_since(Instant::now());
                    until.as_millis().min(10) as u16
                }
                _ => 10,
            };
            let n = self.epoll.wait(&mut events, wait_ms).unwrap_or(0);
            for event in events.iter().take(n) {
                let slot = event.data() as usize;
                self.advance(slot, progress);
            }
            if last_timeout_scan.elapsed() >= Duration::from_millis(20) {
                last_timeout_scan = Instant::now();
                self.expire(progress);
            }
        }
        // Whatever is still open is abandoned (counted as a timeout).
        for slot in 0..self.flows.len() {
            if self.flows[slot].step != Step::Idle {
                self.fail(
                    slot,
                    io::Error::from_raw_os_error(libc::ETIMEDOUT),
                    progress,
                );
            }
        }
        self.result
    }

    fn start(&mut self, slot: usize, due: Instant, progress: &Progress) {
        let target = self.config.targets[self.next_target % self.config.targets.len()];
        self.next_target = self.next_target.wrapping_add(1);
        // The next source of the target's family (`run` checked that
        // there is one when sources are given).
        let sources = &self.config.sources;
        let mut source = None;
        for _ in 0..sources.len() {
            let s = sources[self.next_source % sources.len()];
            self.next_source = self.next_source.wrapping_add(1);
            if s.is_ipv6() == target.is_ipv6() {
                source = Some(s);
                break;
            }
        }
        self.flows[slot] = Flow {
            fd: None,
            step: Step::Connecting,
            due,
            sent: 0,
            received: 0,
            answered: 0,
        };
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLRDHUP;
        let event = EpollEvent::new(flags | EpollFlags::EPOLLET, slot as u64);
        let opened = net::connect(source, target).and_then(|fd| {
            self.epoll.add(&fd, event)?;
            Ok(fd)
        });
        match opened {
            Ok(fd) => self.flows[slot].fd = Some(fd),
            Err(e) => self.fail(slot, e, progress),
        }
    }

    /// Moves a flow as far as its socket allows.
    fn advance(&mut self, slot: usize, progress: &Progress) {
        loop {
            let outcome = match self.flows[slot].step {
                Step::Idle => return,
                Step::Connecting => self.on_connecting(slot),
                Step::Sending => self.on_sending(slot),
                Step::Receiving => self.on_receiving(slot),
                Step::Waiting => return,
            };
            match outcome {
                Outcome::Pending => return,
                Outcome::Next => continue,
                Outcome::Done => {
                    self.result.completed += 1;
                    let flow = &mut self.flows[slot];
                    self.result
                        .transaction
                        .record(flow.due.elapsed().as_micros() as u64);
                    progress.completed.fetch_add(1, Ordering::Relaxed);
                    flow.answered += 1;
                    // (`run` allows more than one only when the client
                    // closes first.)
                    let wanted = self.config.requests_per_connection;
                    let more = (wanted == 0 || flow.answered < wanted) && !self.stopping;
                    if !more {
                        self.finish_connection(slot);
                        return;
                    }
                    if self.config.rate.is_some() {
                        // The next request waits for its turn.
                        flow.step = Step::Waiting;
                        return;
                    }
                    self.next_request(slot, Instant::now());
                }
                Outcome::Failed(e) => {
                    self.fail(slot, e, progress);
                    return;
                }
                Outcome::ShortRead => {
                    self.result.errors.short_read += 1;
                    progress.errors.fetch_add(1, Ordering::Relaxed);
                    self.close(slot);
                    return;
                }
            }
        }
    }

    fn on_connecting(&mut self, slot: usize) -> Outcome {
        let flow = &mut self.flows[slot];
        let Some(fd) = &flow.fd else {
            return Outcome::Failed(io::Error::from_raw_os_error(libc::EBADF));
        };
        match net::connect_result(fd) {
            Ok(true) => {}
            Ok(false) => return Outcome::Pending,
            Err(e) => return Outcome::Failed(e),
        }
        self.result
            .connect
            .record(flow.due.elapsed().as_micros() as u64);
        flow.step = Step::Sending;
        Outcome::Next
    }

    fn on_sending(&mut self, slot: usize) -> Outcome {
        let flow = &mut self.flows[slot];
        let Some(fd) = &flow.fd else {
            return Outcome::Failed(io::Error::from_raw_os_error(libc::EBADF));
        };
        while flow.sent < self.request.len() {
            match net::send(fd, &self.request[flow.sent..]) {
                Ok(n) => flow.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // A large request to an echoing server: read while
                    // sending, or both ends block on full buffers.
                    while let Ok(n @ 1..) = net::recv(fd, &mut self.buffer) {
                        flow.received += n;
                    }
                    return Outcome::Pending;
                }
                Err(e) => return Outcome::Failed(e),
            }
        }
        flow.step = Step::Receiving;
        Outcome::Next
    }

    fn on_receiving(&mut self, slot: usize) -> Outcome {
        let flow = &mut self.flows[slot];
        let Some(fd) = &flow.fd else {
            return Outcome::Failed(io::Error::from_raw_os_error(libc::EBADF));
        };
        loop {
            let n = match net::recv(fd, &mut self.buffer) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Outcome::Pending,
                Err(e) => return Outcome::Failed(e),
            };
            if n == 0 {
                // The server's FIN.
                return if flow.received >= self.config.response {
                    Outcome::Done
                } else {
                    Outcome::ShortRead
                };
            }
            flow.received += n;
            if self.config.close == CloseOrder::ClientFirst && flow.received >= self.config.response
            {
                return Outcome::Done;
            }
        }
    }

    /// The next request on a kept-alive connection, due at `due`.
    fn next_request(&mut self, slot: usize, due: Instant) {
        let flow = &mut self.flows[slot];
        flow.step = Step::Sending;
        flow.due = due;
        flow.sent = 0;
        flow.received = 0;
    }

    /// A connection that carried its requests: closed (by the client
    /// first, or after the server's FIN) and counted.
    fn finish_connection(&mut self, slot: usize) {
        self.result.connections += 1;
        self.close(slot);
    }

    fn fail(&mut self, slot: usize, error: io::Error, progress: &Progress) {
        self.result.errors.count(&error);
        progress.errors.fetch_add(1, Ordering::Relaxed);
        self.close(slot);
    }

    /// Closes the flow's socket (which also takes it out of the epoll
    /// set) and frees the slot.
    fn close(&mut self, slot: usize) {
        let flow = &mut self.flows[slot];
        flow.fd = None;
        flow.step = Step::Idle;
    }

    /// Flows older than the timeout fail as timeouts.
    fn expire(&mut self, progress: &Progress) {
        for slot in 0..self.flows.len() {
            let flow = &self.flows[slot];
            let busy = flow.step != Step::Idle && flow.step != Step::Waiting;
            if busy && flow.due.elapsed() > self.config.timeout {
                self.fail(
                    slot,
                    io::Error::from_raw_os_error(libc::ETIMEDOUT),
                    progress,
                );
            }
        }
    }
}
