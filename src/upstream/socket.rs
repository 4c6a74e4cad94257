//! Creating a backend socket: socket(2), options and bind(2) to a chosen
//! source address and port, before io_uring connects it. These are
//! per-connection system calls, never per packet. Any address family: the
//! socket takes the backend's.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage};

/// Receive buffer of a backend socket. Fixed (no autotuning) because it
/// bounds what one multishot receive can pull into the shard's provided
/// buffers after the client stopped keeping up, before its cancel lands.
/// 256 KiB is several bandwidth-delay products of a data-centre link.
pub const RECEIVE_BUFFER: usize = 256 * 1024;

/// Errors that say something about this host, not about the backend
/// (ports, descriptors, buffers, memory): they never count toward a
/// backend's health.
pub fn is_local_error(errno: i32) -> bool {
    matches!(
        errno,
        libc::EADDRNOTAVAIL
            | libc::EADDRINUSE
            | libc::EMFILE
            | libc::ENFILE
            | libc::ENOBUFS
            | libc::ENOMEM
    )
}

/// Sends the ACK the kernel holds on `fd`, if any, and leaves the
/// "pingpong" mode [`open`] set (`TCP_QUICKACK` on, tcp(7)).
pub fn ack_now(fd: RawFd) -> Result<(), Errno> {
    set_quick_ack(fd, true)
}

/// Sets `TCP_QUICKACK`, which nix does not name.
fn set_quick_ack(fd: RawFd, on: bool) -> Result<(), Errno> {
    let value = libc::c_int::from(on);
    // Safety: the option value is a live `c_int` whose size is passed with
    // it; a bad descriptor is an error return, nothing else.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    Errno::result(r).map(drop)
}

/// Why opening a backend socket failed.
#[derive(Debug)]
pub enum OpenError {
    /// The source address:port is taken by something that is not ours to
    /// share (e.g. a listening socket): retire the port.
    PortInUse,
    Other(io::Error),
}

impl From<Errno> for OpenError {
    fn from(e: Errno) -> Self {
        OpenError::Other(io::Error::from(e))
    }
}

/// A nonblocking TCP socket for `backend`'s family, bound to `source`
/// (address, port), ready to connect. Port 0 lets the kernel choose at
/// connect time (`IP_BIND_ADDRESS_NO_PORT`: the address is fixed now, the
/// port only once the 4-tuple is known); no source at all leaves both to
/// the route. `SO_REUSEADDR` lets a port whose previous connection is in
/// TIME-WAIT be bound again (connect then reuses the TIME-WAIT if
/// `tcp_tw_reuse` allows); `TCP_NODELAY` because lastack forwards what it
/// has as soon as it has it; a fixed receive buffer ([`RECEIVE_BUFFER`]).
///
/// `TCP_QUICKACK` is off before the connect: the kernel holds the
/// handshake's final ACK so that the first bytes lastack sends carry it
/// (HAProxy's `tcp-smart-connect`), and, in the same "pingpong" mode, lets
/// the ACK of a response ride on the next request or on our FIN — up to
/// two frames fewer per connection. When the connect completes with
/// nothing to send (the backend may speak first), the owner lets the held
/// ACK go at once ([`ack_now`]): Linux would hold it up to 200 ms
/// (`TCP_DELACK_MAX`), and the backend sees no connection until it leaves.
pub fn open(backend: SocketAddr, source: Option<(IpAddr, u16)>) -> Result<OwnedFd, OpenError> {
    let family = match backend {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let fd = socket::socket(family, SockType::Stream, flags, None)?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    socket::setsockopt(&fd, sockopt::TcpNoDelay, &true)?;
    socket::setsockopt(&fd, sockopt::RcvBuf, &RECEIVE_BUFFER)?;
    set_quick_ack(fd.as_raw_fd(), false)?;
    let Some((address, port)) = source else {
        return Ok(fd);
    };
    if port == 0 {
        socket::setsockopt(&fd, sockopt::IpBindAddressNoPort, &true)?;
    }
    let local = SockaddrStorage::from(SocketAddr::new(address, port));
    match socket::bind(fd.as_raw_fd(), &local) {
        Ok(()) => Ok(fd),
        Err(Errno::EADDRINUSE) => Err(OpenError::PortInUse),
        Err(e) => Err(e.into()),
    }
}
