//! ICMP of either version, as the engine takes it: what a "too big"
//! message says about one of our TCP flows, whichever family carried it.

use super::icmpv4::{self, Icmpv4Packet, Icmpv4Repr, QuotedTcp};
use super::icmpv6::{Icmpv6Packet, Icmpv6Repr};
use super::{IpProtocol, IpRepr, Result};

/// An ICMPv4 or ICMPv6 message, parsed (and checksummed) by `wire`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IcmpRepr {
    V4(Icmpv4Repr),
    V6(Icmpv6Repr),
}

impl IcmpRepr {
    /// The ICMP message in `payload`, the upper layer of `ip`: `None` if
    /// `ip` does not carry ICMP of its own version (ICMPv4 over IPv4,
    /// ICMPv6 over IPv6); an error if the message is truncated or its
    /// checksum fails.
    pub fn parse(ip: &IpRepr, payload: &[u8]) -> Result<Option<Self>> {
        Ok(match (ip, ip.protocol()) {
            (IpRepr::Ipv4(_), IpProtocol::ICMP) => Some(Self::V4(Icmpv4Repr::parse(
                &Icmpv4Packet::new_checked(payload)?,
            )?)),
            (IpRepr::Ipv6(v6), IpProtocol::ICMPV6) => Some(Self::V6(Icmpv6Repr::parse(
                &Icmpv6Packet::new_checked(payload)?,
                v6.src_addr,
                v6.dst_addr,
            )?)),
            _ => None,
        })
    }

    /// For a "fragmentation needed" (RFC 1191) or a "packet too big"
    /// (RFC 8201) about a TCP datagram: the path MTU it implies and the
    /// quoted segment. `None` for anything else.
    pub fn too_big(&self) -> Option<(u16, QuotedTcp)> {
        match *self {
            Self::V4(Icmpv4Repr::FragmentationNeeded {
                next_hop_mtu,
                quoted,
            }) => Some((
                icmpv4::implied_mtu(next_hop_mtu, quoted.datagram_len),
                quoted,
            )),
            Self::V6(Icmpv6Repr::PacketTooBig { mtu, quoted }) => {
                Some((Icmpv6Repr::implied_mtu(mtu), quoted))
            }
            _ => None,
        }
    }
}

impl From<Icmpv4Repr> for IcmpRepr {
    fn from(icmp: Icmpv4Repr) -> Self {
        Self::V4(icmp)
    }
}

impl From<Icmpv6Repr> for IcmpRepr {
    fn from(icmp: Icmpv6Repr) -> Self {
        Self::V6(icmp)
    }
}
