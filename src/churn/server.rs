//! `lastack backend`: the built-in backend server for the demo and the
//! benchmarks: kernel sockets, one edge-triggered epoll loop per thread,
//! each thread with its own `SO_REUSEPORT` listener on every address.
//!
//! - `echo`: echoes everything; closes after the client's FIN.
//! - `respond`: reads `request` bytes, writes `response` bytes, then closes
//!   at once (`server-first`) or after the client's FIN (`client-first`).

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::CloseOrder;
use crate::upstream::socket;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Echo,
    Respond,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddrV4>,
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
    Free,
    Reading,
    Writing,
    /// Response written; waiting for the client's FIN.
    Draining,
}

struct Conn {
    fd: RawFd,
    step: Step,
    read: usize,
    written: usize,
    /// Echo: bytes read and not yet written back (the thread's read buffer
    /// is shared, so what a write leaves behind is copied here).
    backlog: Vec<u8>,
}

const LISTENER_TOKEN: u64 = 1 << 63;

fn errno() -> io::Error {
    io::Error::last_os_error()
}

fn listener(addr: SocketAddrV4) -> io::Result<RawFd> {
    let fd = socket::tcp_socket()?;
    let setup = || -> io::Result<()> {
        socket::set_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        socket::set_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
        socket::bind(fd, addr)?;
        // Safety: listen(2) on our socket.
        if unsafe { libc::listen(fd, 4096) } < 0 {
            return Err(errno());
        }
        Ok(())
    };
    setup().inspect_err(|_| socket::close_now(fd))?;
    Ok(fd)
}

/// Serves until `stop`; returns when every thread has stopped.
pub fn serve(config: &ServerConfig, stop: &AtomicBool, stats: &ServerStats) -> io::Result<()> {
    let threads = config.threads.max(1);
    // Bind every listener before any thread starts, so errors surface here.
    let mut per_thread = Vec::new();
    for _ in 0..threads {
        let fds = config
            .listen
            .iter()
            .map(|&a| listener(a))
            .collect::<io::Result<Vec<_>>>()?;
        per_thread.push(fds);
    }
    std::thread::scope(|scope| {
        for fds in per_thread {
            scope.spawn(move || serve_thread(config, &fds, stop, stats));
        }
    });
    Ok(())
}

fn serve_thread(
    config: &ServerConfig,
    listeners: &[RawFd],
    stop: &AtomicBool,
    stats: &ServerStats,
) {
    // Safety: epoll_create1; checked.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(epoll >= 0, "epoll_create1: {}", errno());
    for (i, &fd) in listeners.iter().enumerate() {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: LISTENER_TOKEN | i as u64,
        };
        // Safety: valid fds and a live event.
        unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) };
    }
    let mut conns: Vec<Conn> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let response: Vec<u8> = (0..config.response).map(|i| (i % 253) as u8).collect();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    while !stop.load(Ordering::Relaxed) {
        // Safety: `events` has room for its length.
        let n = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, 50) };
        for event in events.iter().take(n.max(0) as usize) {
            let token = event.u64;
            if token & LISTENER_TOKEN != 0 {
                let lfd = listeners[(token & !LISTENER_TOKEN) as usize];
                loop {
                    // Safety: accept4 on our listener.
                    let fd = unsafe {
                        libc::accept4(
                            lfd,
                            std::ptr::null_mut(),
                            std::ptr::null_mut(),
                            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                        )
                    };
                    if fd < 0 {
                        break;
                    }
                    stats.accepted.fetch_add(1, Ordering::Relaxed);
                    let slot = free.pop().unwrap_or_else(|| {
                        conns.push(Conn {
                            fd: -1,
                            step: Step::Free,
                            read: 0,
                            written: 0,
                            backlog: Vec::new(),
                        });
                        conns.len() - 1
                    });
                    let conn = &mut conns[slot];
                    conn.fd = fd;
                    conn.step = Step::Reading;
                    conn.read = 0;
                    conn.written = 0;
                    conn.backlog.clear();
                    let mut ev = libc::epoll_event {
                        events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET)
                            as u32,
                        u64: slot as u64,
                    };
                    // Safety: valid fds and a live event.
                    unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut ev) };
                    if !drive(config, &mut conns[slot], &response, &mut buffer) {
                        close(&mut conns[slot]);
                        free.push(slot);
                    }
                }
                continue;
            }
            let slot = token as usize;
            if conns[slot].step == Step::Free {
                continue;
            }
            if !drive(config, &mut conns[slot], &response, &mut buffer) {
                close(&mut conns[slot]);
                free.push(slot);
            }
        }
    }
    for conn in conns.iter_mut().filter(|c| c.step != Step::Free) {
        close(conn);
    }
    // Safety: our fds.
    unsafe {
        for &fd in listeners {
            libc::close(fd);
        }
        libc::close(epoll);
    }
}

fn close(conn: &mut Conn) {
    conn.backlog.clear();
    // Safety: our socket, closed once.
    unsafe { libc::close(conn.fd) };
    conn.fd = -1;
    conn.step = Step::Free;
}

/// Moves a connection as far as its socket allows; false when it is done
/// (to be closed).
fn drive(config: &ServerConfig, conn: &mut Conn, response: &[u8], buffer: &mut [u8]) -> bool {
    loop {
        match conn.step {
            Step::Free => return false,
            Step::Reading => {
                let want = match config.mode {
                    Mode::Echo => buffer.len(),
                    Mode::Respond => (config.request - conn.read).max(1).min(buffer.len()),
                };
                // Safety: recv into our buffer.
                let n = unsafe { libc::recv(conn.fd, buffer.as_mut_ptr().cast(), want, 0) };
                if n < 0 {
                    return errno().kind() == io::ErrorKind::WouldBlock;
                }
                if n == 0 {
                    // The client's FIN.
                    return false;
                }
                conn.read += n as usize;
                match config.mode {
                    Mode::Echo => {
                        conn.backlog.clear();
                        conn.backlog.extend_from_slice(&buffer[..n as usize]);
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
                    let rest = &data[conn.written..];
                    // Safety: send from a live slice.
                    let n = unsafe {
                        libc::send(
                            conn.fd,
                            rest.as_ptr().cast(),
                            rest.len(),
                            libc::MSG_NOSIGNAL,
                        )
                    };
                    if n < 0 {
                        return errno().kind() == io::ErrorKind::WouldBlock;
                    }
                    conn.written += n as usize;
                }
                match config.mode {
                    Mode::Echo => conn.step = Step::Reading,
                    Mode::Respond => match config.close {
                        CloseOrder::ServerFirst => return false,
                        CloseOrder::ClientFirst => conn.step = Step::Draining,
                    },
                }
            }
            Step::Draining => {
                // Safety: recv into our buffer.
                let n = unsafe { libc::recv(conn.fd, buffer.as_mut_ptr().cast(), buffer.len(), 0) };
                if n < 0 {
                    return errno().kind() == io::ErrorKind::WouldBlock;
                }
                if n == 0 {
                    return false;
                }
            }
        }
    }
}

/// Runs a server on a thread until the returned flag is set; for tests.
pub fn spawn(
    config: ServerConfig,
) -> (
    std::sync::Arc<AtomicBool>,
    std::thread::JoinHandle<io::Result<()>>,
) {
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::spawn(move || serve(&config, &flag, &ServerStats::default()));
    std::thread::sleep(Duration::from_millis(20));
    (stop, handle)
}
