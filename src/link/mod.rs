//! Packet I/O: everything that touches the kernel's packet path.
//!
//! - [`xdp`]: the steering program (`bpf/steer.bpf.c`): load, attach with a
//!   bpf_link, listener map, counters, and `BPF_PROG_TEST_RUN`.
//! - [`xsk`]: AF_XDP sockets bound to rx queues.
//! - [`tun`]: a TUN device, for testing the TCP engine against the kernel.
//! - [`raw`]: an `AF_PACKET` socket, for putting exact (hostile) frames on a link.
//!
//! `unsafe` is allowed here (and in `upstream`) only, each block with a
//! `// Safety:` comment.

pub mod raw;
pub mod tun;
pub mod xdp;
pub mod xsk;
