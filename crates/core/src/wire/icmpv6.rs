//! ICMPv6 (RFC 4443), as far as path MTU discovery needs it: "Packet Too
//! Big" (type 2, code 0, §3.2), whose second word is the next hop's MTU
//! and which quotes as much of the datagram that did not fit as fits in
//! the minimum MTU — for TCP, the IPv6 header, then the ports and the
//! sequence number. Other messages (neighbour discovery among them, which
//! the kernel answers) are recognised as such and left alone.
//!
//! The checksum covers an IPv6 pseudo-header (RFC 4443 §2.3, RFC 8200
//! §8.1: next header 58) and the whole message; it is verified on parse.
//! As for ICMPv4, the quote is checked against a connection (RFC 5927
//! §4.1) before anything is believed.

use std::net::{Ipv6Addr, SocketAddr};

use super::icmpv4::QuotedTcp;
use super::{checksum, ipv6, read_u16, read_u32, write_u16, write_u32, Error, IpProtocol, Result};

/// Bytes before the message's data: type, code, checksum, and one word.
pub const HEADER_LEN: usize = 8;
/// Packet Too Big (RFC 4443 §3.2).
pub const PACKET_TOO_BIG: u8 = 2;
/// IPv6's minimum link MTU (RFC 8200 §5): a "packet too big" never lowers
/// the path MTU below it (RFC 8201 §4).
pub const MIN_MTU: u32 = 1280;

/// A view over an ICMPv6 message (the IPv6 payload).
///
/// Invariant after [`Icmpv6Packet::new_checked`]: the buffer holds at
/// least [`HEADER_LEN`] bytes.
#[derive(Debug, Clone)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Checks that the fixed header is there.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Self { buffer })
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn msg_type(&self) -> u8 {
        self.bytes()[0]
    }

    pub fn code(&self) -> u8 {
        self.bytes()[1]
    }

    /// The MTU of a "packet too big" (RFC 4443 §3.2): the second word.
    pub fn mtu(&self) -> u32 {
        read_u32(self.bytes(), 4)
    }

    /// What follows the fixed header: for errors, the quoted datagram.
    pub fn data(&self) -> &[u8] {
        &self.bytes()[HEADER_LEN..]
    }

    /// The checksum over the pseudo-header of `src` → `dst` (the IPv6
    /// header's addresses) and the message verifies.
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        message_sum(self.bytes(), src, dst) == 0xffff
    }
}

/// One's-complement sum of the pseudo-header and the message.
fn message_sum(message: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> u16 {
    let length = message.len() as u32;
    checksum::combine(&[
        checksum::pseudo_header(src.into(), dst.into(), IpProtocol::ICMPV6.0, length),
        checksum::data(message),
    ])
}

/// What an ICMPv6 message says, as far as the stack cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv6Repr {
    /// A TCP datagram did not fit the next hop (RFC 4443 §3.2).
    PacketTooBig { mtu: u32, quoted: QuotedTcp },
    /// Anything else: another type, or a quote of something other than
    /// TCP (or with extension headers, which are not walked).
    Other { msg_type: u8, code: u8 },
}

impl Icmpv6Repr {
    /// Reads a checked message that came from `src` to `dst`: verifies the
    /// checksum and, for a "packet too big", that the quote holds an IPv6
    /// header and the eight bytes of TCP that carry the ports and the
    /// sequence number.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &Icmpv6Packet<T>,
        src: Ipv6Addr,
        dst: Ipv6Addr,
    ) -> Result<Self> {
        if !packet.verify_checksum(src, dst) {
            return Err(Error::Checksum);
        }
        let (msg_type, code) = (packet.msg_type(), packet.code());
        if (msg_type, code) != (PACKET_TOO_BIG, 0) {
            return Ok(Self::Other { msg_type, code });
        }
        let quote = packet.data();
        let quoted_ip = ipv6::Ipv6Packet::new_unchecked(quote);
        if quote.len() < ipv6::HEADER_LEN {
            return Err(Error::Truncated);
        }
        if quoted_ip.version() != 6 {
            return Err(Error::Malformed);
        }
        if quoted_ip.next_header() != IpProtocol::TCP {
            return Ok(Self::Other { msg_type, code });
        }
        let Some(tcp) = quote.get(ipv6::HEADER_LEN..ipv6::HEADER_LEN + 8) else {
            return Err(Error::Truncated);
        };
        let datagram_len = quoted_ip
            .payload_len()
            .saturating_add(ipv6::HEADER_LEN as u16);
        Ok(Self::PacketTooBig {
            mtu: packet.mtu(),
            quoted: QuotedTcp {
                src: SocketAddr::new(quoted_ip.src_addr().into(), read_u16(tcp, 0)),
                dst: SocketAddr::new(quoted_ip.dst_addr().into(), read_u16(tcp, 2)),
                seq: read_u32(tcp, 4),
                datagram_len,
            },
        })
    }

    /// The path MTU a "packet too big" implies: its MTU, never below
    /// IPv6's minimum (RFC 8201 §4) nor above 65535.
    pub fn implied_mtu(mtu: u32) -> u16 {
        mtu.clamp(MIN_MTU, u32::from(u16::MAX)) as u16
    }

    /// Writes a "packet too big" from `src` to `dst` (the router and the
    /// datagram's sender) for `datagram` (an IPv6 packet) with `mtu` into
    /// `buffer`, quoting the datagram's header and first eight bytes of
    /// data; returns the message length. For tests and tools: lastack
    /// itself sends no ICMPv6.
    pub fn emit_packet_too_big(
        datagram: &[u8],
        mtu: u32,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        buffer: &mut [u8],
    ) -> usize {
        let quoted = datagram.len().min(ipv6::HEADER_LEN + 8);
        let len = HEADER_LEN + quoted;
        let b = &mut buffer[..len];
        b[0] = PACKET_TOO_BIG;
        b[1] = 0;
        write_u16(b, 2, 0);
        write_u32(b, 4, mtu);
        b[HEADER_LEN..].copy_from_slice(&datagram[..quoted]);
        let sum = !message_sum(b, src, dst);
        write_u16(b, 2, sum);
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lastack_testkit::captured;

    const ROUTER: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 0xfe);
    const US: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1);

    #[test]
    fn a_packet_too_big_round_trips() {
        let datagram = &captured::TCP6_DATA[14..];
        let mut buf = [0u8; 128];
        let len = Icmpv6Repr::emit_packet_too_big(datagram, 1280, ROUTER, US, &mut buf);
        assert_eq!(len, 8 + 48, "the header and eight bytes of TCP quoted");
        let packet = Icmpv6Packet::new_checked(&buf[..len]).unwrap();
        assert_eq!(
            Icmpv6Repr::parse(&packet, ROUTER, US),
            Ok(Icmpv6Repr::PacketTooBig {
                mtu: 1280,
                quoted: QuotedTcp {
                    src: "[fd77::1]:34464".parse().unwrap(),
                    dst: "[fd77::2]:8080".parse().unwrap(),
                    seq: 710512499,
                    datagram_len: 40 + 36,
                },
            })
        );
        assert!(
            !packet.verify_checksum(ROUTER, ROUTER),
            "the pseudo-header covers the addresses"
        );
    }

    #[test]
    fn every_truncation_and_a_bad_checksum_are_errors() {
        let mut buf = [0u8; 128];
        let len =
            Icmpv6Repr::emit_packet_too_big(&captured::TCP6_DATA[14..], 1280, ROUTER, US, &mut buf);
        for cut in 0..len {
            let result = Icmpv6Packet::new_checked(&buf[..cut])
                .and_then(|p| Icmpv6Repr::parse(&p, ROUTER, US));
            assert!(result.is_err(), "{cut} bytes: {result:?}");
        }
        buf[20] ^= 1;
        let packet = Icmpv6Packet::new_checked(&buf[..len]).unwrap();
        assert_eq!(Icmpv6Repr::parse(&packet, ROUTER, US), Err(Error::Checksum));
    }

    /// Linux's own neighbour solicitation verifies and reads as "other".
    #[test]
    fn neighbour_discovery_is_recognised_not_interpreted() {
        let frame = &captured::NDP_NEIGHBOR_SOLICIT;
        let ip = ipv6::Ipv6Packet::new_checked(&frame[14..]).unwrap();
        let packet = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(
            Icmpv6Repr::parse(&packet, ip.src_addr(), ip.dst_addr()),
            Ok(Icmpv6Repr::Other {
                msg_type: 135,
                code: 0
            })
        );
    }

    #[test]
    fn the_mtu_is_never_below_ipv6s_minimum() {
        assert_eq!(Icmpv6Repr::implied_mtu(1400), 1400);
        assert_eq!(Icmpv6Repr::implied_mtu(576), 1280, "RFC 8201 §4");
        assert_eq!(Icmpv6Repr::implied_mtu(1 << 20), 65535);
    }
}
