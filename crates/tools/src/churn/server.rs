//! `lastack backend`: the built-in backend server for the demo and the
//! benchmarks: kernel sockets, one edge-triggered epoll loop per thread,
//! each thread with its own `SO_REUSEPORT` listener on every address.
//!
//! - `echo`: echoes everything; closes after the client's FIN.
//! - `respond`: reads `request` bytes, writes `response` bytes, then closes
//!   at once (`server-first`), or (`client-first`) answers each further
//!   request on the connection the same way (kept-alive connections) until
//!   the client's FIN.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

use super::CloseOrder;
use crate::net;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Echo,
    Respond,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    pub mode: Mode,
    pub request: usize,
    pub response: usize,
    pub close: CloseOrder,
    pub threads: usize,
}

/// Connections accepted, all threads.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub accepted: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Reading,
    Writing,
}

struct Conn {
    /// Closing it also takes it out of the epoll set.
    fd: OwnedFd,
    step: Step,
    read: usize,
    written: usize,
    /// Echo: bytes read and not yet written back (the thread's read buffer
    /// is shared, so what a write leaves behind is copied here).
    backlog: Vec<u8>,
}

const LISTENER_TOKEN: u64 = 1 << 63;

/// Binds one listener per address for each of `threads` threads.
fn bind_all(config: &ServerConfig) -> io::Result<Vec<Vec<OwnedFd>>> {
    (0..config.threads.max(1))
        .map(|_| config.listen.iter().map(|&a| net::listen(a)).collect())
        .collect()
}

/// Serves until `stop`; returns when every thread has stopped.
pub fn serve(config: &ServerConfig, stop: &AtomicBool, stats: &ServerStats) -> io::Result<()> {
    // Bind every listener before any thread starts, so errors surface here.
    let per_thread = bind_all(config)?;
    serve_on(config, per_thread, stop, stats)
}

fn serve_on(
    config: &ServerConfig,
    per_thread: Vec<Vec<OwnedFd>>,
    stop: &AtomicBool,
    stats: &ServerStats,
) -> io::Result<()> {
    std::thread::scope(|scope| {
        let threads: Vec<_> = per_thread
            .into_iter()
            .map(|fds| scope.spawn(move || serve_thread(config, &fds, stop, stats)))
            .collect();
        threads
            .into_iter()
            .try_for_each(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })
}

fn serve_thread(
    config: &ServerConfig,
    listeners: &[OwnedFd],
    stop: &AtomicBool,
    stats: &ServerStats,
) -> io::Result<()> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    for (i, fd) in listeners.iter().enumerate() {
        epoll.add(
            fd,
            EpollEvent::new(EpollFlags::EPOLLIN, LISTENER_TOKEN | i as u64),
        )?;
    }
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let response: Vec<u8> = (0..config.response).map(|i| (i % 253) as u8).collect();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut events = vec![EpollEvent::empty(); 256];
    let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLRDHUP;
    while !stop.load(Ordering::Relaxed) {
        let n = epoll.wait(&mut events, 50u16).unwrap_or(0);
        for event in events.iter().take(n) {
            let token = event.data();
            if token & LISTENER_TOKEN != 0 {
                let listener = &listeners[(token & !LISTENER_TOKEN) as usize];
                while let Ok(Some(fd)) = net::accept(listener) {
                    stats.accepted.fetch_add(1, Ordering::Relaxed);
                    let slot = free.pop().unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    epoll.add(
                        &fd,
                        EpollEvent::new(flags | EpollFlags::EPOLLET, slot as u64),
                    )?;
                    let conn = conns[slot].insert(Conn {
                        fd,
                        step: Step::Reading,
                        read: 0,
                        written: 0,
                        backlog: Vec::new(),
                    });
                    if !drive(config, conn, &response, &mut buffer) {
                        conns[slot] = None;
                        free.push(slot);
                    }
                }
                continue;
            }
            let slot = token as usize;
            let Some(conn) = conns.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            if !drive(config, conn, &response, &mut buffer) {
                conns[slot] = None;
                free.push(slot);
            }
        }
    }
    Ok(())
}

/// For `drive`: a call that would block keeps the connection (its next
/// event brings it back); any other error ends it.
fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// Moves a connection as far as its socket allows; false when it is done
/// (to be closed).
fn drive(config: &ServerConfig, conn: &mut Conn, response: &[u8], buffer: &mut [u8]) -> bool {
    loop {
        match conn.step {
            Step::Reading => {
                let want = match config.mode {
                    Mode::Echo => buffer.len(),
                    Mode::Respond => (config.request - conn.read).max(1).min(buffer.len()),
                };
                let n = match net::recv(&conn.fd, &mut buffer[..want]) {
                    Ok(n) => n,
                    Err(e) => return would_block(&e),
                };
                if n == 0 {
                    // The client's FIN.
                    return false;
                }
                conn.read += n;
                match config.mode {
                    Mode::Echo => {
                        conn.backlog.clear();
                        conn.backlog.extend_from_slice(&buffer[..n]);
                        conn.written = 0;
                        conn.step = Step::Writing;
                    }
                    Mode::Respond if conn.read >= config.request => {
                        conn.written = 0;
                        conn.step = Step::Writing;
                    }
                    Mode::Respond => {}
                }
            }
            Step::Writing => {
                let data = match config.mode {
                    Mode::Echo => &conn.backlog[..],
                    Mode::Respond => response,
                };
                while conn.written < data.len() {
                    match net::send(&conn.fd, &data[conn.written..]) {
                        Ok(n) => conn.written += n,
                        Err(e) => return would_block(&e),
                    }
                }
                match config.mode {
                    Mode::Echo => conn.step = Step::Reading,
                    Mode::Respond => match config.close {
                        CloseOrder::ServerFirst => return false,
                        // The next request, or the client's FIN.
                        CloseOrder::ClientFirst => {
                            conn.read = 0;
                            conn.step = Step::Reading;
                        }
                    },
                }
            }
        }
    }
}

/// Runs a server on a thread until the returned flag is set (for tests):
/// its listeners are bound before this returns, so connections made
/// afterwards are accepted.
pub fn spawn(
    config: ServerConfig,
) -> io::Result<(
    std::sync::Arc<AtomicBool>,
    std::thread::JoinHandle<io::Result<()>>,
)> {
    let per_thread = bind_all(&config)?;
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle =
        std::thread::spawn(move || serve_on(&config, per_thread, &flag, &ServerStats::default()));
    Ok((stop, handle))
}
