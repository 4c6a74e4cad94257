//! Nonblocking kernel TCP sockets for the load generator and the backend
//! server, through `nix`'s safe wrappers (this crate forbids `unsafe`).
//! Any address family: a socket takes the family of the address it is
//! opened for.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    self, sockopt, AddressFamily, Backlog, MsgFlags, SockFlag, SockType, SockaddrStorage,
};

fn io_error(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

fn family(addr: &SocketAddr) -> AddressFamily {
    match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// A new nonblocking, close-on-exec TCP socket for `addr`'s family.
fn tcp_socket(addr: &SocketAddr) -> io::Result<OwnedFd> {
    socket::socket(
        family(addr),
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io_error)
}

/// Starts a connect to `target` (Nagle off), from `source` if given (its
/// port chosen at connect time, `IP_BIND_ADDRESS_NO_PORT`, so a source
/// address's ports are shared by every destination). Completion shows as
/// writability; see [`connect_result`].
pub fn connect(source: Option<IpAddr>, target: SocketAddr) -> io::Result<OwnedFd> {
    let fd = tcp_socket(&target)?;
    socket::setsockopt(&fd, sockopt::TcpNoDelay, &true).map_err(io_error)?;
    if let Some(source) = source {
        socket::setsockopt(&fd, sockopt::IpBindAddressNoPort, &true).map_err(io_error)?;
        let local = SockaddrStorage::from(SocketAddr::new(source, 0));
        socket::bind(fd.as_raw_fd(), &local).map_err(io_error)?;
    }
    match socket::connect(fd.as_raw_fd(), &SockaddrStorage::from(target)) {
        Ok(()) | Err(Errno::EINPROGRESS) => Ok(fd),
        Err(e) => Err(io_error(e)),
    }
}

/// Where a nonblocking connect stands: `Ok(true)` connected, `Ok(false)`
/// still in progress, `Err` failed (refused, unreachable, ...).
pub fn connect_result(fd: impl AsFd) -> io::Result<bool> {
    let error = socket::getsockopt(&fd, sockopt::SocketError).map_err(io_error)?;
    if error != 0 {
        return Err(io::Error::from_raw_os_error(error));
    }
    // Connected only if the peer address is known (an edge for a connect
    // still in progress has neither an error nor a peer).
    match socket::getpeername::<SockaddrStorage>(fd.as_fd().as_raw_fd()) {
        Ok(_) => Ok(true),
        Err(Errno::ENOTCONN) => Ok(false),
        Err(e) => Err(io_error(e)),
    }
}

/// A nonblocking listener on `addr` with `SO_REUSEADDR` and
/// `SO_REUSEPORT` (each server thread binds its own).
pub fn listen(addr: SocketAddr) -> io::Result<OwnedFd> {
    let fd = tcp_socket(&addr)?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(io_error)?;
    socket::setsockopt(&fd, sockopt::ReusePort, &true).map_err(io_error)?;
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(io_error)?;
    let backlog = Backlog::new(4096).map_err(io_error)?;
    socket::listen(&fd, backlog).map_err(io_error)?;
    Ok(fd)
}

/// The next pending connection of `listener` (nonblocking), or `None`.
pub fn accept(listener: impl AsFd) -> io::Result<Option<OwnedFd>> {
    match socket::accept4(listener, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::EAGAIN) => Ok(None),
        Err(e) => Err(io_error(e)),
    }
}

/// send(2) without SIGPIPE; `WouldBlock` when the socket buffer is full.
pub fn send(fd: impl AsFd, bytes: &[u8]) -> io::Result<usize> {
    socket::send(fd.as_fd().as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL).map_err(io_error)
}

/// recv(2); 0 is the peer's FIN, `WouldBlock` when nothing is there.
pub fn recv(fd: impl AsFd, buffer: &mut [u8]) -> io::Result<usize> {
    socket::recv(fd.as_fd().as_raw_fd(), buffer, MsgFlags::empty()).map_err(io_error)
}
