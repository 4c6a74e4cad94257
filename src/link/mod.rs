//! Packet I/O: everything that touches the kernel's packet path.
//!
//! - [`xdp`]: the steering program (`bpf/steer.bpf.c`): load, attach with a
//!   bpf_link, listener map, counters, and `BPF_PROG_TEST_RUN`.
//! - [`xsk`]: AF_XDP sockets bound to rx queues.
//!
//! `unsafe` is allowed here (and in `upstream`) only, each block with a
//! `// Safety:` comment. (The test-only TUN and raw-packet helpers live in
//! the test kit.)

pub mod xdp;
pub mod xsk;
