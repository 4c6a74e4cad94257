//! Creating a backend socket: socket(2), options and bind(2) to a chosen
//! source address and port, before io_uring connects it. These are
//! per-connection system calls, never per packet.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::RawFd;

/// `struct sockaddr_in` for `addr`.
pub fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// setsockopt(2) with an `int` value.
pub fn set_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // Safety: `value` is a live i32 and the length says so; `fd` is ours.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receive buffer of a backend socket. Fixed (no autotuning) because it
/// bounds what one multishot receive can pull into the shard's provided
/// buffers after the client stopped keeping up, before its cancel lands.
/// 256 KiB is several bandwidth-delay products of a data-centre link.
pub const RECEIVE_BUFFER: i32 = 256 * 1024;

/// A new nonblocking, close-on-exec IPv4 TCP socket.
pub fn tcp_socket() -> io::Result<RawFd> {
    // Safety: socket(2) with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// bind(2) to `addr`.
pub fn bind(fd: RawFd, addr: SocketAddrV4) -> io::Result<()> {
    let sa = sockaddr(addr);
    // Safety: `sa` is a live sockaddr_in and the length says so.
    let rc = unsafe {
        libc::bind(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Why opening a backend socket failed.
#[derive(Debug)]
pub enum OpenError {
    /// The source address:port is taken by something that is not ours to
    /// share (e.g. a listening socket): retire the port.
    PortInUse,
    Other(io::Error),
}

/// A TCP socket bound to `source` (address, port) ready to connect.
/// `port` 0 lets the kernel choose at connect time
/// (`IP_BIND_ADDRESS_NO_PORT`: the address is fixed now, the port only
/// once the 4-tuple is known). `SO_REUSEADDR` lets a port whose previous
/// connection is in TIME-WAIT be bound again (connect then reuses the
/// TIME-WAIT if `tcp_tw_reuse` allows); `TCP_NODELAY` because lastack
/// forwards what it has as soon as it has it; a fixed receive buffer
/// ([`RECEIVE_BUFFER`]).
pub fn open(source: Ipv4Addr, port: u16) -> Result<RawFd, OpenError> {
    let fd = tcp_socket().map_err(OpenError::Other)?;
    let setup = || -> Result<(), OpenError> {
        set_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1).map_err(OpenError::Other)?;
        set_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1).map_err(OpenError::Other)?;
        set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, RECEIVE_BUFFER).map_err(OpenError::Other)?;
        if source.is_unspecified() && port == 0 {
            return Ok(());
        }
        if port == 0 {
            set_int(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1)
                .map_err(OpenError::Other)?;
        }
        bind(fd, SocketAddrV4::new(source, port)).map_err(|e| {
            if e.raw_os_error() == Some(libc::EADDRINUSE) {
                OpenError::PortInUse
            } else {
                OpenError::Other(e)
            }
        })
    };
    match setup() {
        Ok(()) => Ok(fd),
        Err(e) => {
            close_now(fd);
            Err(e)
        }
    }
}

/// Makes close(2) of `fd` send RST and skip TIME-WAIT (used when the
/// client reset: the backend should see an abort, not a clean end).
pub fn set_linger_zero(fd: RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // Safety: `linger` is live and the length says so; failure only means
    // a normal close follows.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// shutdown(fd, SHUT_WR): our FIN toward the backend. Synchronous on
/// purpose: io_uring runs `IORING_OP_SHUTDOWN` on an io-wq worker thread
/// (a thread hop and two context switches per connection, measured at 8 %
/// of a shard's CPU under churn), while the system call never blocks.
/// Failure (the peer already reset) shows up on the next receive.
pub fn shutdown_write(fd: RawFd) {
    // Safety: `fd` is a socket the caller owns.
    unsafe { libc::shutdown(fd, libc::SHUT_WR) };
}

/// Closes `fd` synchronously (for sockets never handed to io_uring).
pub fn close_now(fd: RawFd) {
    // Safety: the caller owns `fd` and forgets it after this.
    unsafe { libc::close(fd) };
}
