//! One load thread: `slots` flows at a time on nonblocking kernel sockets,
//! driven by an edge-triggered epoll (each socket registered once, for
//! input and output). A flow: connect, send the request, read the
//! response, close — in the configured close order.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::histogram::Histogram;
use super::{ChurnConfig, CloseOrder, Errors};
use crate::upstream::socket::{self, sockaddr};

/// What one thread measured.
#[derive(Debug, Default)]
pub struct WorkerResult {
    pub connect: Histogram,
    pub transaction: Histogram,
    pub completed: u64,
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
}

#[derive(Debug, Clone, Copy)]
struct Flow {
    fd: RawFd,
    step: Step,
    /// When the flow was due (open loop) or started: latency counts from
    /// here, so a late start is not hidden (coordinated omission).
    due: Instant,
    sent: usize,
    received: usize,
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
    epoll: RawFd,
    flows: Vec<Flow>,
    request: Vec<u8>,
    buffer: Vec<u8>,
    next_target: usize,
    next_source: usize,
    result: WorkerResult,
}

fn errno() -> io::Error {
    io::Error::last_os_error()
}

impl<'a> Worker<'a> {
    pub fn new(config: &'a ChurnConfig, slots: usize, seed: usize) -> io::Result<Self> {
        // Safety: epoll_create1 with a valid flag; checked below.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return Err(errno());
        }
        let now = Instant::now();
        let idle = Flow {
            fd: -1,
            step: Step::Idle,
            due: now,
            sent: 0,
            received: 0,
        };
        Ok(Self {
            config,
            epoll,
            flows: vec![idle; slots.max(1)],
            request: (0..config.request).map(|i| (i % 251) as u8).collect(),
            buffer: vec![0; 64 * 1024],
            next_target: seed,
            next_source: seed,
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
        let mut events: Vec<libc::epoll_event> =
            vec![libc::epoll_event { events: 0, u64: 0 }; self.flows.len().max(16)];
        let interval = rate_per_thread.map(|r| Duration::from_secs_f64(1.0 / r.max(1e-3)));
        let mut next_due = Instant::now();
        let mut stopping_since: Option<Instant> = None;
        let mut last_timeout_scan = Instant::now();
        loop {
            let now = Instant::now();
            let stopped = stop.load(Ordering::Relaxed);
            if stopped && stopping_since.is_none() {
                stopping_since = Some(now);
            }
            // Start flows in free slots.
            if !stopped {
                for slot in 0..self.flows.len() {
                    if self.flows[slot].step != Step::Idle {
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
                    if let Some(budget) = budget {
                        if budget
                            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                                b.checked_sub(1)
                            })
                            .is_err()
                        {
                            stop.store(true, Ordering::Relaxed);
                            break;
                        }
                    }
                    self.start(slot, due, progress);
                }
            }
            let active = self.flows.iter().filter(|f| f.step != Step::Idle).count();
            if stopped && active == 0 {
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
                    until.as_millis().min(10) as i32
                }
                _ => 10,
            };
            // Safety: `events` has room for its length; the epoll fd is ours.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll,
                    events.as_mut_ptr(),
                    events.len() as i32,
                    wait_ms,
                )
            };
            for event in events.iter().take(n.max(0) as usize) {
                let slot = event.u64 as usize;
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
        // Safety: our epoll fd, closed once.
        unsafe { libc::close(self.epoll) };
        self.result
    }

    fn start(&mut self, slot: usize, due: Instant, progress: &Progress) {
        let target = self.config.targets[self.next_target % self.config.targets.len()];
        self.next_target = self.next_target.wrapping_add(1);
        let source = if self.config.sources.is_empty() {
            None
        } else {
            let s = self.config.sources[self.next_source % self.config.sources.len()];
            self.next_source = self.next_source.wrapping_add(1);
            Some(s)
        };
        self.flows[slot] = Flow {
            fd: -1,
            step: Step::Connecting,
            due,
            sent: 0,
            received: 0,
        };
        match open(source, target) {
            Ok(fd) => {
                self.flows[slot].fd = fd;
                let mut event = libc::epoll_event {
                    events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET)
                        as u32,
                    u64: slot as u64,
                };
                // Safety: valid epoll and socket fds and a live event.
                let rc =
                    unsafe { libc::epoll_ctl(self.epoll, libc::EPOLL_CTL_ADD, fd, &mut event) };
                if rc < 0 {
                    self.fail(slot, errno(), progress);
                }
            }
            Err(e) => {
                self.flows[slot].fd = -1;
                self.fail(slot, e, progress);
            }
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
            };
            match outcome {
                Outcome::Pending => return,
                Outcome::Next => continue,
                Outcome::Done => {
                    self.result.completed += 1;
                    let elapsed = self.flows[slot].due.elapsed();
                    self.result.transaction.record(elapsed.as_micros() as u64);
                    progress.completed.fetch_add(1, Ordering::Relaxed);
                    self.close(slot);
                    return;
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
        let fd = self.flows[slot].fd;
        let mut error: i32 = 0;
        let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
        // Safety: SO_ERROR into a live i32 with its length.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut error as *mut i32).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            return Outcome::Failed(errno());
        }
        if error != 0 {
            return Outcome::Failed(io::Error::from_raw_os_error(error));
        }
        // Connected only if the peer address is known (an edge for a
        // connect still in progress would have neither).
        let mut addr: libc::sockaddr_in = sockaddr(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        let mut addr_len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // Safety: getpeername into a live sockaddr_in with its length.
        let rc = unsafe {
            libc::getpeername(
                fd,
                (&mut addr as *mut libc::sockaddr_in).cast(),
                &mut addr_len,
            )
        };
        if rc < 0 {
            let e = errno();
            return if e.raw_os_error() == Some(libc::ENOTCONN) {
                Outcome::Pending
            } else {
                Outcome::Failed(e)
            };
        }
        let flow = &mut self.flows[slot];
        self.result
            .connect
            .record(flow.due.elapsed().as_micros() as u64);
        flow.step = Step::Sending;
        Outcome::Next
    }

    fn on_sending(&mut self, slot: usize) -> Outcome {
        let flow = &mut self.flows[slot];
        while flow.sent < self.request.len() {
            let rest = &self.request[flow.sent..];
            // Safety: send(2) from a live slice.
            let n = unsafe {
                libc::send(
                    flow.fd,
                    rest.as_ptr().cast(),
                    rest.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if n < 0 {
                let e = errno();
                if e.kind() != io::ErrorKind::WouldBlock {
                    return Outcome::Failed(e);
                }
                // A large request to an echoing server: read while sending,
                // or both ends block on full buffers.
                loop {
                    // Safety: recv(2) into our buffer.
                    let r = unsafe {
                        libc::recv(
                            flow.fd,
                            self.buffer.as_mut_ptr().cast(),
                            self.buffer.len(),
                            0,
                        )
                    };
                    if r <= 0 {
                        break;
                    }
                    flow.received += r as usize;
                }
                return Outcome::Pending;
            }
            flow.sent += n as usize;
        }
        flow.step = Step::Receiving;
        Outcome::Next
    }

    fn on_receiving(&mut self, slot: usize) -> Outcome {
        let flow = &mut self.flows[slot];
        loop {
            // Safety: recv(2) into our buffer.
            let n = unsafe {
                libc::recv(
                    flow.fd,
                    self.buffer.as_mut_ptr().cast(),
                    self.buffer.len(),
                    0,
                )
            };
            if n < 0 {
                let e = errno();
                return if e.kind() == io::ErrorKind::WouldBlock {
                    Outcome::Pending
                } else {
                    Outcome::Failed(e)
                };
            }
            if n == 0 {
                // The server's FIN.
                return if flow.received >= self.config.response {
                    Outcome::Done
                } else {
                    Outcome::ShortRead
                };
            }
            flow.received += n as usize;
            if self.config.close == CloseOrder::ClientFirst && flow.received >= self.config.response
            {
                return Outcome::Done;
            }
        }
    }

    fn fail(&mut self, slot: usize, error: io::Error, progress: &Progress) {
        self.result.errors.count(&error);
        progress.errors.fetch_add(1, Ordering::Relaxed);
        self.close(slot);
    }

    fn close(&mut self, slot: usize) {
        let flow = &mut self.flows[slot];
        if flow.fd >= 0 {
            // Safety: our socket, closed once (epoll forgets it).
            unsafe { libc::close(flow.fd) };
        }
        flow.fd = -1;
        flow.step = Step::Idle;
    }

    /// Flows older than the timeout fail as timeouts.
    fn expire(&mut self, progress: &Progress) {
        for slot in 0..self.flows.len() {
            let flow = self.flows[slot];
            if flow.step != Step::Idle && flow.due.elapsed() > self.config.timeout {
                self.fail(
                    slot,
                    io::Error::from_raw_os_error(libc::ETIMEDOUT),
                    progress,
                );
            }
        }
    }
}

fn open(source: Option<Ipv4Addr>, target: SocketAddrV4) -> io::Result<RawFd> {
    let fd = socket::tcp_socket()?;
    let setup = || -> io::Result<()> {
        socket::set_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
        if let Some(source) = source {
            socket::set_int(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1)?;
            socket::bind(fd, SocketAddrV4::new(source, 0))?;
        }
        let addr = sockaddr(target);
        // Safety: connect(2) with a live sockaddr_in.
        let rc = unsafe {
            libc::connect(
                fd,
                (&addr as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        };
        if rc < 0 {
            let e = errno();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
        }
        Ok(())
    };
    setup().inspect_err(|_| socket::close_now(fd))?;
    Ok(fd)
}
