//! Zero-copy packet views and their high-level representations.
//!
//! Every protocol follows the same shape (after smoltcp's `wire`):
//! - a view `XxxPacket<T: AsRef<[u8]>>` over a buffer. [`new_checked`] validates
//!   untrusted bytes once; after it succeeds no accessor panics.
//!   `new_unchecked` is for buffers we are about to fill ourselves.
//! - a `XxxRepr` with `parse` (view → repr, semantic checks such as checksums),
//!   `buffer_len` (bytes `emit` needs) and `emit` (repr → bytes).
//!
//! Nothing here allocates or performs I/O; the layer only reads and writes
//! bytes, so it can run on the fast path for every frame.
//!
//! [`new_checked`]: TcpPacket::new_checked

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod frame;
pub mod icmp;
pub mod icmpv4;
pub mod icmpv6;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod tcp_options;
pub mod tunnel;

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use ethernet::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr, VlanTag};
pub use frame::{parse_frame, Frame};
pub use icmp::IcmpRepr;
pub use icmpv4::{Icmpv4Packet, Icmpv4Repr, QuotedTcp};
pub use icmpv6::{Icmpv6Packet, Icmpv6Repr};
pub use ip::IpRepr;
pub use ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6Packet, Ipv6Repr};
pub use tcp::{TcpFlags, TcpPacket, TcpRepr};
pub use tcp_options::{SackBlocks, TcpOption, TcpOptionIter, TcpOptions, Timestamps};

/// Why bytes were refused. Each variant maps to one drop counter in the shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Error {
    /// The buffer ends before the header (or the length a header claims) does.
    #[error("truncated packet")]
    Truncated,
    /// A field holds a value the protocol does not allow (bad version, header
    /// length below the minimum, option length that does not fit, ...).
    #[error("malformed packet")]
    Malformed,
    /// The checksum does not verify.
    #[error("bad checksum")]
    Checksum,
    /// An IPv4 fragment, or an IPv6 packet with a Fragment header: our
    /// stack refuses fragments (DF is always set on what it sends, and the
    /// MSS is clamped so that peers never need to fragment).
    #[error("IP fragment")]
    Fragmented,
    /// Well formed but not something we handle (ARP for another hardware
    /// type, an IPv6 extension header other than Fragment, ...).
    #[error("unsupported packet")]
    Unsupported,
}

/// The ECN field of an IP header (RFC 3168 §5): the low two bits of
/// IPv4's former type-of-service byte and of IPv6's traffic class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Ecn {
    /// Not-ECT: the sender does not do ECN; routers drop instead of marking.
    #[default]
    NotEct = 0b00,
    /// ECT(1) (RFC 3168; L4S uses it, RFC 9331).
    Ect1 = 0b01,
    /// ECT(0): what an RFC 3168 sender sets on data.
    Ect0 = 0b10,
    /// Congestion Experienced: a router marked it instead of dropping it.
    Ce = 0b11,
}

impl Ecn {
    /// The codepoint in the low two bits of `tos` (IPv4's DSCP/ECN byte,
    /// IPv6's traffic class).
    pub const fn from_tos(tos: u8) -> Self {
        match tos & 0b11 {
            0b00 => Self::NotEct,
            0b01 => Self::Ect1,
            0b10 => Self::Ect0,
            _ => Self::Ce,
        }
    }
}

/// Result of a wire-level parse.
pub type Result<T> = core::result::Result<T, Error>;

/// Reads a big-endian `u16` at `at`. Callers have checked the bounds.
#[inline(always)]
pub(crate) fn read_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

/// Reads a big-endian `u32` at `at`. Callers have checked the bounds.
#[inline(always)]
pub(crate) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Writes a big-endian `u16` at `at`.
#[inline(always)]
pub(crate) fn write_u16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// Writes a big-endian `u32` at `at`.
#[inline(always)]
pub(crate) fn write_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_be_bytes());
}
