//! lastack's test kit, shared by the integration tests, the demo and the
//! benchmarks:
//! - [`netns`]: network namespaces, veth pairs and the standard test
//!   [`Topology`](netns::Topology) (clients, lastack, backends), always
//!   torn down;
//! - [`backend`]: test backends (kernel servers with a behaviour, nginx);
//! - [`client`]: kernel TCP clients (exchanges, byte-checked echo, churn);
//! - [`wait`]: waiting on conditions (counters, sockets), never on a
//!   guessed sleep;
//! - [`process`]: child processes in a namespace, ended by PID;
//! - [`pattern`]: the test byte stream (from the core crate, which the
//!   `source` service also uses);
//! - [`captured`]: frames captured from a real Linux exchange;
//! - [`sim`]: two TCP stacks on a virtual clock over a seeded lossy link
//!   (the simulation `Pair`);
//! - [`link`]: a TUN device and an `AF_PACKET` socket, for putting the
//!   engine and exact frames in front of the Linux kernel.
//!
//! `unsafe` is denied here except in [`link`] (each block with a
//! `// Safety:` comment).
#![deny(unsafe_code)]

pub mod back_to_back;
pub mod backend;
pub mod captured;
pub mod client;
#[allow(unsafe_code)]
pub mod link;
pub mod netns;
pub mod process;
pub mod sim;
pub mod wait;

pub use lastack_core::pattern;
