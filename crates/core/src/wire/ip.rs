//! Either IP version, for code that serves both: the engine's input and
//! output, and the frame parser. A flow's family is fixed by its addresses;
//! the header built for a reply is the one for that family.

use std::net::{IpAddr, Ipv6Addr};

use super::{ipv6, Ecn, Error, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, Result};

/// An IPv4 or IPv6 header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpRepr {
    Ipv4(Ipv4Repr),
    Ipv6(Ipv6Repr),
}

impl IpRepr {
    /// The header for a TCP segment of `payload_len` bytes from `src` to
    /// `dst` ([`Ipv4Repr::tcp`] or [`Ipv6Repr::tcp`]). Mixed families never
    /// make a flow; given one anyway, the IPv4 address is written
    /// IPv4-mapped (RFC 4291 §2.5.5.2) rather than panicking.
    pub fn tcp(src: IpAddr, dst: IpAddr, payload_len: u16, ecn: Ecn) -> Self {
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                Self::Ipv4(Ipv4Repr::tcp(src, dst, payload_len, ecn))
            }
            (src, dst) => Self::Ipv6(Ipv6Repr::tcp(to_ipv6(src), to_ipv6(dst), payload_len, ecn)),
        }
    }

    #[inline]
    pub fn src_addr(&self) -> IpAddr {
        match self {
            Self::Ipv4(ip) => IpAddr::V4(ip.src_addr),
            Self::Ipv6(ip) => IpAddr::V6(ip.src_addr),
        }
    }

    #[inline]
    pub fn dst_addr(&self) -> IpAddr {
        match self {
            Self::Ipv4(ip) => IpAddr::V4(ip.dst_addr),
            Self::Ipv6(ip) => IpAddr::V6(ip.dst_addr),
        }
    }

    /// The upper-layer protocol (IPv6: the next header).
    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        match self {
            Self::Ipv4(ip) => ip.protocol,
            Self::Ipv6(ip) => ip.next_header,
        }
    }

    /// The ECN codepoint (RFC 3168 §5).
    #[inline]
    pub fn ecn(&self) -> Ecn {
        match self {
            Self::Ipv4(ip) => ip.ecn(),
            Self::Ipv6(ip) => ip.ecn(),
        }
    }

    /// Bytes after the header.
    pub fn payload_len(&self) -> u16 {
        match self {
            Self::Ipv4(ip) => ip.payload_len,
            Self::Ipv6(ip) => ip.payload_len,
        }
    }

    /// Header bytes `emit` writes: 20 or 40.
    pub fn buffer_len(&self) -> usize {
        match self {
            Self::Ipv4(ip) => ip.buffer_len(),
            Self::Ipv6(ip) => ip.buffer_len(),
        }
    }

    /// Writes the header into the front of `buffer`.
    pub fn emit(&self, buffer: &mut [u8]) {
        match self {
            Self::Ipv4(ip) => ip.emit(buffer),
            Self::Ipv6(ip) => ip.emit(buffer),
        }
    }
}

/// Parses an IP packet of either version (by its first nibble) from
/// untrusted bytes: the header and its upper-layer payload (without any
/// link-layer padding). IPv4: the header checksum verified, fragments
/// refused. IPv6: extension headers are not walked; a Fragment header is
/// refused as [`Error::Fragmented`], any other extension header as
/// [`Error::Unsupported`] (ICMPv6, UDP, TCP and IP in IP pass). Never
/// panics.
#[inline]
pub fn parse_packet(bytes: &[u8]) -> Result<(IpRepr, &[u8])> {
    match bytes.first().map(|b| b >> 4) {
        None => Err(Error::Truncated),
        Some(4) => {
            let packet = Ipv4Packet::new_checked(bytes)?;
            let ip = Ipv4Repr::parse(&packet)?;
            let payload = &bytes[packet.header_len()..usize::from(packet.total_len())];
            Ok((IpRepr::Ipv4(ip), payload))
        }
        Some(6) => {
            let packet = Ipv6Packet::new_checked(bytes)?;
            let ip = Ipv6Repr::parse(&packet)?;
            match ip.next_header {
                IpProtocol::TCP | IpProtocol::ICMPV6 | IpProtocol::UDP => {}
                p if super::tunnel::is_tunnel(p) => {}
                ipv6::NEXT_HEADER_FRAGMENT => return Err(Error::Fragmented),
                _ => return Err(Error::Unsupported),
            }
            let end = ipv6::HEADER_LEN + usize::from(ip.payload_len);
            Ok((IpRepr::Ipv6(ip), &bytes[ipv6::HEADER_LEN..end]))
        }
        Some(_) if bytes.len() < super::ipv4::HEADER_LEN => Err(Error::Truncated),
        Some(_) => Err(Error::Malformed),
    }
}

/// The length of the IP packet at the front of `bytes` (either version)
/// as its header says, if the bytes hold that much (link padding after it
/// is not counted). For a packet `parse_packet` accepted.
pub fn total_len(bytes: &[u8]) -> Option<usize> {
    let len = match bytes.first()? >> 4 {
        4 => usize::from(u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?])),
        6 => ipv6::HEADER_LEN + usize::from(u16::from_be_bytes([*bytes.get(4)?, *bytes.get(5)?])),
        _ => return None,
    };
    (len <= bytes.len()).then_some(len)
}

/// Marks the IP packet in `bytes` (either version) Congestion Experienced,
/// as a router would, if it is ECN-capable (RFC 3168 §5). False if it is
/// not, or is not an IP packet.
pub fn mark_ce(bytes: &mut [u8]) -> bool {
    match bytes.first().map(|b| b >> 4) {
        Some(4) if bytes.len() >= super::ipv4::HEADER_LEN => {
            Ipv4Packet::new_unchecked(bytes).mark_ce()
        }
        Some(6) if bytes.len() >= ipv6::HEADER_LEN => Ipv6Packet::new_unchecked(bytes).mark_ce(),
        _ => false,
    }
}

/// The header length we emit for a flow of either family (no options, no
/// extension headers): 40 over IPv6, 20 over IPv4.
pub const fn header_len(ipv6: bool) -> usize {
    if ipv6 {
        super::ipv6::HEADER_LEN
    } else {
        super::ipv4::HEADER_LEN
    }
}

/// `addr` as an IPv6 address: itself, or IPv4-mapped (RFC 4291
/// §2.5.5.2) for an IPv4 one.
pub fn to_ipv6(addr: IpAddr) -> Ipv6Addr {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

impl From<Ipv4Repr> for IpRepr {
    fn from(ip: Ipv4Repr) -> Self {
        Self::Ipv4(ip)
    }
}

impl From<Ipv6Repr> for IpRepr {
    fn from(ip: Ipv6Repr) -> Self {
        Self::Ipv6(ip)
    }
}
