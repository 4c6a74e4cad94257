//! A raw `AF_PACKET` socket bound to one interface: whole Ethernet frames
//! out, exactly as given. For tools and tests that must put malformed or
//! hostile frames on a link (no kernel stack fixes them up).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// An `AF_PACKET`/`SOCK_RAW` socket bound to an interface.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens a raw socket on interface `ifindex` (in the calling thread's
    /// network namespace). Needs CAP_NET_RAW.
    pub fn bind(ifindex: u32) -> io::Result<Self> {
        let protocol = (libc::ETH_P_ALL as u16).to_be();
        // Safety: plain socket(2) call; the result is checked below.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(protocol),
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // Safety: socket(2) returned a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // Safety: `sockaddr_ll` is plain data; all zeroes is valid.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = protocol;
        addr.sll_ifindex = ifindex as i32;
        // Safety: `addr` is a valid `sockaddr_ll` of the size passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd })
    }

    /// Sends one Ethernet frame as is.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // Safety: `frame` is valid for reads of its length.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
