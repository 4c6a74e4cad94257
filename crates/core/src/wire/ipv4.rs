//! IPv4 (RFC 791). The header checksum is verified on parse and written on
//! emit. Options are skipped by the header length, never interpreted; we
//! emit none. Fragments (MF set or a non-zero offset, RFC 791 §2.3) are
//! recognised and refused: the stack sets DF and clamps the MSS instead.

use core::fmt;
use std::net::Ipv4Addr;

use super::{checksum, read_u16, write_u16, Error, Result};

/// An IP protocol number (IANA "Assigned Internet Protocol Numbers").
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    pub const ICMP: Self = Self(1);
    pub const TCP: Self = Self(6);
    pub const UDP: Self = Self(17);
    pub const ICMPV6: Self = Self(58);
}

impl fmt::Debug for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::ICMP => f.write_str("ICMP"),
            Self::TCP => f.write_str("TCP"),
            Self::UDP => f.write_str("UDP"),
            Self::ICMPV6 => f.write_str("ICMPv6"),
            Self(other) => write!(f, "IpProtocol({other})"),
        }
    }
}

mod field {
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

/// Minimum header length: 5 words (RFC 791 §3.1, IHL ≥ 5).
pub const HEADER_LEN: usize = 20;
const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A view over an IPv4 packet.
///
/// Invariants after [`Ipv4Packet::new_checked`]: version is 4,
/// `20 <= header_len <= total_len <= buffer length`. The buffer may be longer
/// than `total_len` (Ethernet pads short frames to 60 bytes); [`payload`]
/// stops at `total_len`.
///
/// [`payload`]: Ipv4Packet::payload
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Checks version, header length and total length against the buffer.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if packet.version() != 4 || packet.header_len() < HEADER_LEN {
            return Err(Error::Malformed);
        }
        let total = usize::from(packet.total_len());
        if total < packet.header_len() {
            return Err(Error::Malformed);
        }
        if len < total {
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
        self.bytes()[field::VER_IHL] >> 4
    }
    /// Header length in bytes (IHL × 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.bytes()[field::VER_IHL] & 0x0f) * 4
    }
    /// DSCP and ECN: the former type-of-service byte (RFC 2474, RFC 3168).
    pub fn dscp_ecn(&self) -> u8 {
        self.bytes()[field::DSCP_ECN]
    }
    #[inline]
    pub fn total_len(&self) -> u16 {
        read_u16(self.bytes(), field::LENGTH)
    }
    pub fn ident(&self) -> u16 {
        read_u16(self.bytes(), field::IDENT)
    }
    pub fn dont_frag(&self) -> bool {
        read_u16(self.bytes(), field::FLAGS_FRAG) & FLAG_DF != 0
    }
    pub fn more_frags(&self) -> bool {
        read_u16(self.bytes(), field::FLAGS_FRAG) & FLAG_MF != 0
    }
    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (read_u16(self.bytes(), field::FLAGS_FRAG) & FRAG_OFFSET_MASK) * 8
    }
    /// True if this is any fragment of a larger datagram.
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }
    pub fn ttl(&self) -> u8 {
        self.bytes()[field::TTL]
    }
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.bytes()[field::PROTOCOL])
    }
    pub fn checksum(&self) -> u16 {
        read_u16(self.bytes(), field::CHECKSUM)
    }
    pub fn src_addr(&self) -> Ipv4Addr {
        let b = self.bytes();
        Ipv4Addr::new(
            b[field::SRC],
            b[field::SRC + 1],
            b[field::SRC + 2],
            b[field::SRC + 3],
        )
    }
    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = self.bytes();
        Ipv4Addr::new(
            b[field::DST],
            b[field::DST + 1],
            b[field::DST + 2],
            b[field::DST + 3],
        )
    }
    /// Option bytes (between the fixed header and the payload), unparsed.
    pub fn options(&self) -> &[u8] {
        &self.bytes()[HEADER_LEN..self.header_len()]
    }
    /// True if the header checksum verifies (the header sums to 0xffff).
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::data(&self.bytes()[..self.header_len()]) == 0xffff
    }
    /// The payload: from the end of the header to `total_len`.
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// The payload, writable, bounded by `total_len` like [`Ipv4Packet::payload`].
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[start..end]
    }

    /// Sets the DSCP/ECN byte (a router marking CE; the checksum is then
    /// stale until [`fill_checksum`](Self::fill_checksum)).
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    /// Marks an ECN-capable packet Congestion Experienced (RFC 3168 §5,
    /// what a router does instead of dropping it) and rewrites the header
    /// checksum; false, and nothing changed, for a Not-ECT one.
    pub fn mark_ce(&mut self) -> bool {
        let tos = self.buffer.as_ref()[field::DSCP_ECN];
        if super::Ecn::from_tos(tos) == super::Ecn::NotEct {
            return false;
        }
        self.set_dscp_ecn(tos | super::Ecn::Ce as u8);
        self.fill_checksum();
        true
    }

    /// Recomputes and writes the header checksum.
    pub fn fill_checksum(&mut self) {
        let len = self.header_len();
        let bytes = self.buffer.as_mut();
        write_u16(bytes, field::CHECKSUM, 0);
        let sum = !checksum::data(&bytes[..len]);
        write_u16(bytes, field::CHECKSUM, sum);
    }
}

/// The fields of an IPv4 header that the stack reads or chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: IpProtocol,
    /// Length of the payload (total length minus header).
    pub payload_len: u16,
    pub ttl: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub dscp_ecn: u8,
}

impl Ipv4Repr {
    /// The header lastack puts on every TCP segment it sends: TTL 64, DF
    /// set (we never fragment; RFC 6864 §4.1 lets such atomic datagrams
    /// carry ident 0), no DSCP, the ECN codepoint given.
    pub const fn tcp(
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
        payload_len: u16,
        ecn: super::Ecn,
    ) -> Self {
        Self {
            src_addr,
            dst_addr,
            protocol: IpProtocol::TCP,
            payload_len,
            ttl: 64,
            ident: 0,
            dont_frag: true,
            dscp_ecn: ecn as u8,
        }
    }

    /// The ECN codepoint (RFC 3168 §5).
    pub const fn ecn(&self) -> super::Ecn {
        super::Ecn::from_tos(self.dscp_ecn)
    }

    /// Reads a checked packet: verifies the header checksum and refuses
    /// fragments. Options are skipped by the header length.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Self> {
        if !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        if packet.is_fragment() {
            return Err(Error::Fragmented);
        }
        Ok(Self {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: packet.total_len() - packet.header_len() as u16,
            ttl: packet.ttl(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            dscp_ecn: packet.dscp_ecn(),
        })
    }

    /// Header bytes `emit` writes (we never emit options).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header with its checksum into the front of `buffer`.
    /// `payload_len + 20` must fit in 16 bits; [`Ipv4Repr::total_len`] checks it.
    pub fn emit(&self, buffer: &mut [u8]) {
        let b = &mut buffer[..HEADER_LEN];
        b[field::VER_IHL] = 0x45;
        b[field::DSCP_ECN] = self.dscp_ecn;
        write_u16(b, field::LENGTH, self.payload_len + HEADER_LEN as u16);
        write_u16(b, field::IDENT, self.ident);
        write_u16(
            b,
            field::FLAGS_FRAG,
            if self.dont_frag { FLAG_DF } else { 0 },
        );
        b[field::TTL] = self.ttl;
        b[field::PROTOCOL] = self.protocol.0;
        write_u16(b, field::CHECKSUM, 0);
        b[field::SRC..field::SRC + 4].copy_from_slice(&self.src_addr.octets());
        b[field::DST..field::DST + 4].copy_from_slice(&self.dst_addr.octets());
        let sum = !checksum::data(b);
        write_u16(b, field::CHECKSUM, sum);
    }

    /// Total length (header + payload), or `None` if it overflows 16 bits.
    pub fn total_len(&self) -> Option<u16> {
        self.payload_len.checked_add(HEADER_LEN as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lastack_testkit::captured;
    use proptest::prelude::*;

    fn syn_ip() -> &'static [u8] {
        &captured::TCP_SYN[14..]
    }

    #[test]
    fn parses_captured_syn() {
        let packet = Ipv4Packet::new_checked(syn_ip()).unwrap();
        let repr = Ipv4Repr::parse(&packet).unwrap();
        assert_eq!(
            repr,
            Ipv4Repr {
                src_addr: Ipv4Addr::new(10, 77, 0, 1),
                dst_addr: Ipv4Addr::new(10, 77, 0, 2),
                protocol: IpProtocol::TCP,
                payload_len: 40,
                ttl: 64,
                ident: 0x0ea8,
                dont_frag: true,
                dscp_ecn: 0,
            }
        );
        assert_eq!(packet.payload(), &syn_ip()[20..]);
        let mut out = [0u8; 20];
        repr.emit(&mut out);
        assert_eq!(
            out,
            syn_ip()[..20],
            "emit reproduces the captured header byte for byte"
        );
    }

    #[test]
    fn bad_header_checksum_is_refused() {
        let mut bytes = syn_ip().to_vec();
        bytes[11] ^= 0x01;
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&packet), Err(Error::Checksum));
    }

    #[test]
    fn truncation_at_every_length_is_refused() {
        for len in 0..syn_ip().len() {
            assert_eq!(
                Ipv4Packet::new_checked(&syn_ip()[..len]).err(),
                Some(Error::Truncated),
                "len {len}"
            );
        }
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        // The captured SYN (60 IP bytes) followed by 6 bytes of link-layer padding.
        let mut bytes = syn_ip().to_vec();
        bytes.extend_from_slice(&[0xee; 6]);
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.payload().len(), 40);
    }

    /// A header with `options` (a multiple of 4 bytes), a checksum and `payload`.
    fn with_options(options: &[u8], payload: &[u8]) -> Vec<u8> {
        let header_len = 20 + options.len();
        let mut bytes = syn_ip()[..20].to_vec();
        bytes[0] = 0x40 | (header_len / 4) as u8;
        let total = (header_len + payload.len()) as u16;
        bytes[2..4].copy_from_slice(&total.to_be_bytes());
        bytes.extend_from_slice(options);
        bytes.extend_from_slice(payload);
        let mut packet = Ipv4Packet::new_unchecked(&mut bytes[..]);
        packet.fill_checksum();
        bytes
    }

    #[test]
    fn options_are_skipped_by_header_length() {
        // Router alert (RFC 2113): type 148, length 4, value 0.
        let bytes = with_options(&[148, 4, 0, 0], b"tcp segment");
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.header_len(), 24);
        assert_eq!(packet.options(), &[148, 4, 0, 0]);
        let repr = Ipv4Repr::parse(&packet).unwrap();
        assert_eq!(repr.payload_len, 11);
        assert_eq!(packet.payload(), b"tcp segment");
    }

    #[test]
    fn malformed_headers_are_refused() {
        let mut v6 = syn_ip().to_vec();
        v6[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&v6[..]).err(),
            Some(Error::Malformed)
        );
        let mut short_ihl = syn_ip().to_vec();
        short_ihl[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&short_ihl[..]).err(),
            Some(Error::Malformed)
        );
        let mut total_below_header = syn_ip().to_vec();
        total_below_header[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&total_below_header[..]).err(),
            Some(Error::Malformed)
        );
        // IHL 15 (60 bytes) in a 40-byte packet whose total length says 40.
        let mut ihl_past_total = syn_ip()[..40].to_vec();
        ihl_past_total[0] = 0x4f;
        ihl_past_total[2..4].copy_from_slice(&40u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&ihl_past_total[..]).err(),
            Some(Error::Malformed)
        );
    }

    #[test]
    fn fragments_are_recognised_and_refused() {
        for flags_frag in [
            0x2000u16, /* MF, first fragment */
            0x00b9,    /* last, offset 1480 */
        ] {
            let mut bytes = syn_ip().to_vec();
            bytes[6..8].copy_from_slice(&flags_frag.to_be_bytes());
            let mut packet = Ipv4Packet::new_unchecked(&mut bytes[..]);
            packet.fill_checksum();
            let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
            assert!(packet.is_fragment());
            assert_eq!(Ipv4Repr::parse(&packet), Err(Error::Fragmented));
        }
    }

    fn arb_repr() -> impl Strategy<Value = Ipv4Repr> {
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<u8>(),
            0u16..1500,
            any::<u8>(),
            any::<u16>(),
            any::<bool>(),
            any::<u8>(),
        )
            .prop_map(|(s, d, p, len, ttl, ident, df, tos)| Ipv4Repr {
                src_addr: s.into(),
                dst_addr: d.into(),
                protocol: IpProtocol(p),
                payload_len: len,
                ttl,
                ident,
                dont_frag: df,
                dscp_ecn: tos,
            })
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(repr in arb_repr()) {
            let mut bytes = vec![0u8; repr.buffer_len() + usize::from(repr.payload_len)];
            repr.emit(&mut bytes);
            let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(Ipv4Repr::parse(&packet).unwrap(), repr);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(packet) = Ipv4Packet::new_checked(&bytes[..]) {
                let _ = (packet.options(), packet.payload(), packet.is_fragment(), packet.src_addr());
                let _ = Ipv4Repr::parse(&packet);
            }
        }
    }
}
