//! ICMPv4 (RFC 792), as far as path MTU discovery needs it: Destination
//! Unreachable with code 4, "fragmentation needed and DF set", whose
//! second word carries the next-hop MTU (RFC 1191 §4), and which quotes
//! the IP header of the datagram that did not fit and at least its first
//! eight bytes of data (RFC 792) — for TCP, the ports and the sequence
//! number. Other messages are recognised as such and left alone.
//!
//! The checksum covers the whole message (RFC 792) and is verified on
//! parse. The quoted header is not checksummed again: routers may quote
//! a header they have changed (TTL), and what is used of it is checked
//! against a connection (RFC 5927 §4.1) before anything is believed.

use std::net::{Ipv4Addr, SocketAddr};

use super::{checksum, read_u16, read_u32, write_u16, Error, IpProtocol, Result};

/// Bytes before the message's data: type, code, checksum, and one word.
pub const HEADER_LEN: usize = 8;
/// Destination Unreachable (RFC 792).
pub const DEST_UNREACHABLE: u8 = 3;
/// Its code for "fragmentation needed and DF set" (RFC 792, RFC 1191).
pub const FRAGMENTATION_NEEDED: u8 = 4;

/// A view over an ICMPv4 message (the IPv4 payload).
///
/// Invariant after [`Icmpv4Packet::new_checked`]: the buffer holds at
/// least [`HEADER_LEN`] bytes.
#[derive(Debug, Clone)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
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

    /// The next-hop MTU of a "fragmentation needed" (RFC 1191 §4): the low
    /// half of the second word; 0 from routers older than RFC 1191.
    pub fn next_hop_mtu(&self) -> u16 {
        read_u16(self.bytes(), 6)
    }

    /// What follows the fixed header: for errors, the quoted datagram.
    pub fn data(&self) -> &[u8] {
        &self.bytes()[HEADER_LEN..]
    }

    /// The one's-complement sum over the whole message is zero.
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.bytes()) == 0xffff
    }
}

/// The TCP segment a "fragmentation needed" (or an ICMPv6 "packet too
/// big") was about, from the quote:
/// its addresses as it was sent (`src` is the sender, us), its sequence
/// number, and the length of the datagram that did not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuotedTcp {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    /// The quoted datagram's total length (for RFC 1191 §5's plateaus
    /// when the router gave no MTU).
    pub datagram_len: u16,
}

/// What an ICMPv4 message says, as far as the stack cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4Repr {
    /// A TCP datagram did not fit the next hop (RFC 1191 §4).
    FragmentationNeeded {
        /// The next hop's MTU; 0 when the router did not say.
        next_hop_mtu: u16,
        quoted: QuotedTcp,
    },
    /// Anything else: another type or code, or a quote of something
    /// other than TCP.
    Other { msg_type: u8, code: u8 },
}

impl Icmpv4Repr {
    /// Reads a checked message: verifies the checksum and, for a
    /// "fragmentation needed", that the quote holds an IPv4 header and the
    /// eight bytes of TCP that carry the ports and the sequence number.
    pub fn parse<T: AsRef<[u8]>>(packet: &Icmpv4Packet<T>) -> Result<Self> {
        if !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        let (msg_type, code) = (packet.msg_type(), packet.code());
        if (msg_type, code) != (DEST_UNREACHABLE, FRAGMENTATION_NEEDED) {
            return Ok(Self::Other { msg_type, code });
        }
        let quote = packet.data();
        if quote.len() < super::ipv4::HEADER_LEN {
            return Err(Error::Truncated);
        }
        let header_len = usize::from(quote[0] & 0x0f) * 4;
        if quote[0] >> 4 != 4 || header_len < super::ipv4::HEADER_LEN {
            return Err(Error::Malformed);
        }
        if IpProtocol(quote[9]) != IpProtocol::TCP {
            return Ok(Self::Other { msg_type, code });
        }
        let Some(tcp) = quote.get(header_len..header_len + 8) else {
            return Err(Error::Truncated);
        };
        let address =
            |at: usize| Ipv4Addr::new(quote[at], quote[at + 1], quote[at + 2], quote[at + 3]);
        Ok(Self::FragmentationNeeded {
            next_hop_mtu: packet.next_hop_mtu(),
            quoted: QuotedTcp {
                src: SocketAddr::new(address(12).into(), read_u16(tcp, 0)),
                dst: SocketAddr::new(address(16).into(), read_u16(tcp, 2)),
                seq: read_u32(tcp, 4),
                datagram_len: read_u16(quote, 2),
            },
        })
    }

    /// Writes a "fragmentation needed" for `datagram` (an IPv4 packet) with
    /// `next_hop_mtu` into `buffer`, quoting the datagram's header and
    /// first eight bytes of data as a router does (RFC 792); returns the
    /// message length. For tests and tools: lastack itself sends no ICMP.
    pub fn emit_fragmentation_needed(
        datagram: &[u8],
        next_hop_mtu: u16,
        buffer: &mut [u8],
    ) -> usize {
        let header_len = usize::from(datagram[0] & 0x0f) * 4;
        let quoted = datagram.len().min(header_len + 8);
        let len = HEADER_LEN + quoted;
        let b = &mut buffer[..len];
        b[0] = DEST_UNREACHABLE;
        b[1] = FRAGMENTATION_NEEDED;
        write_u16(b, 2, 0);
        write_u16(b, 4, 0);
        write_u16(b, 6, next_hop_mtu);
        b[HEADER_LEN..].copy_from_slice(&datagram[..quoted]);
        let sum = !checksum::data(b);
        write_u16(b, 2, sum);
        len
    }
}

/// RFC 1191 §7's table of common MTUs, largest first: when a router gives
/// no MTU, the next plateau below the datagram that did not fit.
const PLATEAUS: [u16; 10] = [32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68];

/// The path MTU a "fragmentation needed" implies: the router's next-hop
/// MTU, or (RFC 1191 §5) the plateau below the quoted datagram's length
/// when it gave none.
pub fn implied_mtu(next_hop_mtu: u16, datagram_len: u16) -> u16 {
    if next_hop_mtu != 0 {
        return next_hop_mtu;
    }
    PLATEAUS
        .into_iter()
        .find(|&plateau| plateau < datagram_len)
        .unwrap_or(68)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 + TCP header of 1500 bytes from 10.0.0.1:80 to
    /// 10.0.0.2:40000, sequence number 0x01020304.
    fn datagram() -> Vec<u8> {
        let mut d = vec![0u8; 40];
        d[0] = 0x45;
        write_u16(&mut d, 2, 1500);
        d[9] = 6;
        d[12..16].copy_from_slice(&[10, 0, 0, 1]);
        d[16..20].copy_from_slice(&[10, 0, 0, 2]);
        write_u16(&mut d, 20, 80);
        write_u16(&mut d, 22, 40000);
        d[24..28].copy_from_slice(&[1, 2, 3, 4]);
        d
    }

    #[test]
    fn a_fragmentation_needed_round_trips() {
        let mut buf = [0u8; 64];
        let len = Icmpv4Repr::emit_fragmentation_needed(&datagram(), 1400, &mut buf);
        assert_eq!(len, 8 + 28, "the header and eight bytes of TCP quoted");
        let packet = Icmpv4Packet::new_checked(&buf[..len]).unwrap();
        assert_eq!(
            Icmpv4Repr::parse(&packet),
            Ok(Icmpv4Repr::FragmentationNeeded {
                next_hop_mtu: 1400,
                quoted: QuotedTcp {
                    src: "10.0.0.1:80".parse().unwrap(),
                    dst: "10.0.0.2:40000".parse().unwrap(),
                    seq: 0x0102_0304,
                    datagram_len: 1500,
                },
            })
        );
    }

    #[test]
    fn every_truncation_and_a_bad_checksum_are_errors() {
        let mut buf = [0u8; 64];
        let len = Icmpv4Repr::emit_fragmentation_needed(&datagram(), 1400, &mut buf);
        for cut in 0..len {
            let result = Icmpv4Packet::new_checked(&buf[..cut]).and_then(|p| Icmpv4Repr::parse(&p));
            assert!(result.is_err(), "{cut} bytes: {result:?}");
        }
        buf[10] ^= 1;
        let packet = Icmpv4Packet::new_checked(&buf[..len]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&packet), Err(Error::Checksum));
    }

    #[test]
    fn other_messages_are_recognised_not_interpreted() {
        // An echo request (type 8).
        let mut echo = [8u8, 0, 0, 0, 0, 1, 0, 1];
        let sum = !checksum::data(&echo);
        write_u16(&mut echo, 2, sum);
        let packet = Icmpv4Packet::new_checked(&echo[..]).unwrap();
        assert_eq!(
            Icmpv4Repr::parse(&packet),
            Ok(Icmpv4Repr::Other {
                msg_type: 8,
                code: 0
            })
        );
        // A quote of UDP.
        let mut udp = datagram();
        udp[9] = 17;
        let mut buf = [0u8; 64];
        let len = Icmpv4Repr::emit_fragmentation_needed(&udp, 1400, &mut buf);
        let packet = Icmpv4Packet::new_checked(&buf[..len]).unwrap();
        assert!(matches!(
            Icmpv4Repr::parse(&packet),
            Ok(Icmpv4Repr::Other { .. })
        ));
    }

    #[test]
    fn without_a_next_hop_mtu_the_plateau_below_is_used() {
        assert_eq!(implied_mtu(1400, 1500), 1400);
        assert_eq!(implied_mtu(0, 1500), 1492, "RFC 1191 §7: IEEE 802.3");
        assert_eq!(implied_mtu(0, 1492), 1006, "strictly below");
        assert_eq!(implied_mtu(0, 60), 68);
    }
}
