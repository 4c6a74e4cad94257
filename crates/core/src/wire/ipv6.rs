//! IPv6 (RFC 8200 §3): the fixed 40-byte header. Extension headers are not
//! walked: a packet whose next header is not the upper-layer protocol the
//! caller expects is refused by [`frame`](super::frame) (a fragment header
//! as [`Error::Fragmented`], anything else as [`Error::Unsupported`]), as
//! the XDP program passes such packets to the kernel before they get here.
//! We emit no extension headers.

use std::net::Ipv6Addr;

use super::{read_u16, read_u32, write_u16, write_u32, Error, IpProtocol, Result};

mod field {
    pub const VER_TC_FLOW: usize = 0;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
}

/// The fixed header's length (RFC 8200 §3).
pub const HEADER_LEN: usize = 40;

/// RFC 8200 §4.5: the Fragment header's next-header value.
pub const NEXT_HEADER_FRAGMENT: IpProtocol = IpProtocol(44);

/// A view over an IPv6 packet.
///
/// Invariants after [`Ipv6Packet::new_checked`]: version is 6 and
/// `40 + payload_len <= buffer length`. The buffer may be longer (Ethernet
/// padding); [`payload`](Ipv6Packet::payload) stops at `payload_len`.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Checks the version and the payload length against the buffer. A
    /// zero payload length with a Hop-by-Hop jumbo option (RFC 2675) is
    /// not supported and reads as an empty payload.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if packet.version() != 6 {
            return Err(Error::Malformed);
        }
        if len < HEADER_LEN + usize::from(packet.payload_len()) {
            return Err(Error::Truncated);
        }
        Ok(packet)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn version(&self) -> u8 {
        self.bytes()[field::VER_TC_FLOW] >> 4
    }
    /// Traffic class: DSCP and ECN (RFC 2474, RFC 3168).
    pub fn traffic_class(&self) -> u8 {
        (read_u16(self.bytes(), field::VER_TC_FLOW) >> 4) as u8
    }
    /// The 20-bit flow label (RFC 6437).
    pub fn flow_label(&self) -> u32 {
        read_u32(self.bytes(), field::VER_TC_FLOW) & 0x000f_ffff
    }
    pub fn payload_len(&self) -> u16 {
        read_u16(self.bytes(), field::PAYLOAD_LEN)
    }
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.bytes()[field::NEXT_HEADER])
    }
    pub fn hop_limit(&self) -> u8 {
        self.bytes()[field::HOP_LIMIT]
    }
    pub fn src_addr(&self) -> Ipv6Addr {
        address(&self.bytes()[field::SRC..field::SRC + 16])
    }
    pub fn dst_addr(&self) -> Ipv6Addr {
        address(&self.bytes()[field::DST..field::DST + 16])
    }
    /// The payload: the `payload_len` bytes after the fixed header.
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Marks an ECN-capable packet Congestion Experienced (RFC 3168 §5);
    /// false, and nothing changed, for a Not-ECT one.
    pub fn mark_ce(&mut self) -> bool {
        let class = Ipv6Packet::new_unchecked(self.buffer.as_ref()).traffic_class();
        if super::Ecn::from_tos(class) == super::Ecn::NotEct {
            return false;
        }
        self.set_traffic_class(class | super::Ecn::Ce as u8);
        true
    }

    /// Sets the traffic class (a router marking CE).
    pub fn set_traffic_class(&mut self, value: u8) {
        let b = self.buffer.as_mut();
        let word = read_u32(b, field::VER_TC_FLOW);
        let word = (word & 0xf00f_ffff) | (u32::from(value) << 20);
        write_u32(b, field::VER_TC_FLOW, word);
    }
}

fn address(bytes: &[u8]) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(bytes);
    Ipv6Addr::from(octets)
}

/// The fields of an IPv6 header that the stack reads or chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    /// The next header: the upper-layer protocol when no extension header
    /// follows.
    pub next_header: IpProtocol,
    pub payload_len: u16,
    pub hop_limit: u8,
    pub traffic_class: u8,
    pub flow_label: u32,
}

impl Ipv6Repr {
    /// The header lastack puts on every TCP segment it sends: hop limit
    /// 64, no DSCP, the ECN codepoint given, flow label 0 (RFC 6437 §2
    /// allows it; the flow is already told apart by its four-tuple).
    pub const fn tcp(
        src_addr: Ipv6Addr,
        dst_addr: Ipv6Addr,
        payload_len: u16,
        ecn: super::Ecn,
    ) -> Self {
        Self {
            src_addr,
            dst_addr,
            next_header: IpProtocol::TCP,
            payload_len,
            hop_limit: 64,
            traffic_class: ecn as u8,
            flow_label: 0,
        }
    }

    /// The ECN codepoint (RFC 3168 §5).
    pub const fn ecn(&self) -> super::Ecn {
        super::Ecn::from_tos(self.traffic_class)
    }

    /// Reads a checked packet. IPv6 has no header checksum (RFC 8200 §3);
    /// the upper layer's pseudo-header covers the addresses.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Self> {
        Ok(Self {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: packet.payload_len(),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    /// Header bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 40-byte header into the front of `buffer`.
    pub fn emit(&self, buffer: &mut [u8]) {
        let b = &mut buffer[..HEADER_LEN];
        let word =
            (6u32 << 28) | (u32::from(self.traffic_class) << 20) | (self.flow_label & 0xf_ffff);
        write_u32(b, field::VER_TC_FLOW, word);
        write_u16(b, field::PAYLOAD_LEN, self.payload_len);
        b[field::NEXT_HEADER] = self.next_header.0;
        b[field::HOP_LIMIT] = self.hop_limit;
        b[field::SRC..field::SRC + 16].copy_from_slice(&self.src_addr.octets());
        b[field::DST..field::DST + 16].copy_from_slice(&self.dst_addr.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lastack_testkit::captured;
    use proptest::prelude::*;

    fn syn_ip() -> &'static [u8] {
        &captured::TCP6_SYN[14..]
    }

    #[test]
    fn parses_the_captured_syn_and_emits_it_back() {
        let packet = Ipv6Packet::new_checked(syn_ip()).unwrap();
        let repr = Ipv6Repr::parse(&packet).unwrap();
        assert_eq!(
            repr,
            Ipv6Repr {
                src_addr: "fd77::1".parse().unwrap(),
                dst_addr: "fd77::2".parse().unwrap(),
                next_header: IpProtocol::TCP,
                payload_len: 40,
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0x12f6f,
            }
        );
        assert_eq!(packet.payload(), &syn_ip()[40..]);
        let mut out = [0u8; 40];
        repr.emit(&mut out);
        assert_eq!(out, syn_ip()[..40], "byte for byte");
    }

    #[test]
    fn truncation_at_every_length_is_refused() {
        for len in 0..syn_ip().len() {
            assert_eq!(
                Ipv6Packet::new_checked(&syn_ip()[..len]).err(),
                Some(Error::Truncated),
                "len {len}"
            );
        }
    }

    #[test]
    fn another_version_is_malformed() {
        let mut bytes = syn_ip().to_vec();
        bytes[0] = 0x45;
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..]).err(),
            Some(Error::Malformed)
        );
    }

    #[test]
    fn a_ce_mark_keeps_the_flow_label() {
        let mut bytes = syn_ip().to_vec();
        Ipv6Packet::new_unchecked(&mut bytes[..]).set_traffic_class(0b11);
        let packet = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.traffic_class(), 0b11);
        assert_eq!(packet.flow_label(), 0x12f6f);
        assert_eq!(
            Ipv6Repr::parse(&packet).unwrap().ecn(),
            super::super::Ecn::Ce
        );
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(
            src in any::<[u8; 16]>(),
            dst in any::<[u8; 16]>(),
            next in any::<u8>(),
            payload_len in 0u16..1500,
            hop_limit in any::<u8>(),
            traffic_class in any::<u8>(),
            flow_label in 0u32..0x10_0000,
        ) {
            let repr = Ipv6Repr {
                src_addr: Ipv6Addr::from(src),
                dst_addr: Ipv6Addr::from(dst),
                next_header: IpProtocol(next),
                payload_len,
                hop_limit,
                traffic_class,
                flow_label,
            };
            let mut bytes = vec![0u8; HEADER_LEN + usize::from(payload_len)];
            repr.emit(&mut bytes);
            let packet = Ipv6Packet::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(Ipv6Repr::parse(&packet).unwrap(), repr);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            if let Ok(packet) = Ipv6Packet::new_checked(&bytes[..]) {
                let _ = Ipv6Repr::parse(&packet);
                let _ = packet.payload();
            }
        }
    }
}
