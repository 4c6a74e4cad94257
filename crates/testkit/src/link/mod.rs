//! Test-only packet I/O: a TUN device (the engine against the kernel's TCP
//! without XDP) and an `AF_PACKET` socket (exact, hostile frames on a link).

pub mod raw;
pub mod tun;
