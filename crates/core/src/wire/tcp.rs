//! The TCP header (RFC 9293 §3.1) and its checksum over the IPv4
//! pseudo-header.

use core::fmt;
use std::net::IpAddr;

use super::tcp_options::{TcpOptionIter, TcpOptions, MAX_OPTIONS_LEN};
use super::{checksum, read_u16, read_u32, write_u16, write_u32, Error, IpProtocol, Result};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const OFFSET_FLAGS: usize = 12;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
}

/// Header length without options (data offset 5).
pub const HEADER_LEN: usize = 20;

/// The control bits (RFC 9293 §3.1, RFC 3168 §23.2 for CWR/ECE, RFC 3540
/// for the historic NS bit), as the low 9 bits of the offset/flags word.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u16);

impl TcpFlags {
    pub const FIN: Self = Self(0x001);
    pub const SYN: Self = Self(0x002);
    pub const RST: Self = Self(0x004);
    pub const PSH: Self = Self(0x008);
    pub const ACK: Self = Self(0x010);
    pub const URG: Self = Self(0x020);
    pub const ECE: Self = Self(0x040);
    pub const CWR: Self = Self(0x080);
    pub const NS: Self = Self(0x100);
    const MASK: u16 = 0x1ff;

    pub const fn empty() -> Self {
        Self(0)
    }
    /// True if every bit of `other` is set here.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
    /// True if any bit of `other` is set here.
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }
    pub fn fin(self) -> bool {
        self.contains(Self::FIN)
    }
    pub fn syn(self) -> bool {
        self.contains(Self::SYN)
    }
    pub fn rst(self) -> bool {
        self.contains(Self::RST)
    }
    pub fn psh(self) -> bool {
        self.contains(Self::PSH)
    }
    pub fn ack(self) -> bool {
        self.contains(Self::ACK)
    }
    pub fn urg(self) -> bool {
        self.contains(Self::URG)
    }
    /// ECN-Echo (RFC 3168 §6.1).
    pub fn ece(self) -> bool {
        self.contains(Self::ECE)
    }
    /// Congestion Window Reduced (RFC 3168 §6.1).
    pub fn cwr(self) -> bool {
        self.contains(Self::CWR)
    }
}

impl core::ops::BitOr for TcpFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl core::ops::BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(TcpFlags, char); 9] = [
            (TcpFlags::SYN, 'S'),
            (TcpFlags::FIN, 'F'),
            (TcpFlags::RST, 'R'),
            (TcpFlags::PSH, 'P'),
            (TcpFlags::ACK, '.'),
            (TcpFlags::URG, 'U'),
            (TcpFlags::ECE, 'E'),
            (TcpFlags::CWR, 'W'),
            (TcpFlags::NS, 'N'),
        ];
        f.write_str("[")?;
        for (flag, name) in NAMES {
            if self.contains(flag) {
                write!(f, "{name}")?;
            }
        }
        f.write_str("]")
    }
}

/// A view over a TCP segment (header, options, payload).
///
/// Invariant after [`TcpPacket::new_checked`]: `20 <= header_len <= buffer
/// length`, so the fixed fields, the options and the payload are in bounds.
/// The buffer must end where the segment ends (the IPv4 payload, already cut
/// at the IP total length).
#[derive(Debug, Clone)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Checks that the fixed header fits and the data offset is within
    /// `[20, buffer length]`.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let header_len = packet.header_len();
        if header_len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if header_len > len {
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

    pub fn src_port(&self) -> u16 {
        read_u16(self.bytes(), field::SRC_PORT)
    }
    pub fn dst_port(&self) -> u16 {
        read_u16(self.bytes(), field::DST_PORT)
    }
    pub fn seq_number(&self) -> u32 {
        read_u32(self.bytes(), field::SEQ)
    }
    pub fn ack_number(&self) -> u32 {
        read_u32(self.bytes(), field::ACK)
    }
    /// Data offset × 4: header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.bytes()[field::OFFSET_FLAGS] >> 4) * 4
    }
    /// The three reserved bits (RFC 9293 §3.1: must be zero, ignored on receipt).
    pub fn reserved(&self) -> u8 {
        (self.bytes()[field::OFFSET_FLAGS] >> 1) & 0x7
    }
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(read_u16(self.bytes(), field::OFFSET_FLAGS) & TcpFlags::MASK)
    }
    /// The window field as sent, before any window scaling.
    pub fn window_len(&self) -> u16 {
        read_u16(self.bytes(), field::WINDOW)
    }
    pub fn checksum(&self) -> u16 {
        read_u16(self.bytes(), field::CHECKSUM)
    }
    pub fn urgent_at(&self) -> u16 {
        read_u16(self.bytes(), field::URGENT)
    }
    /// Option bytes, unparsed.
    pub fn options(&self) -> &[u8] {
        &self.bytes()[HEADER_LEN..self.header_len()]
    }
    /// The options one by one.
    pub fn option_iter(&self) -> TcpOptionIter<'_> {
        TcpOptionIter::new(self.options())
    }
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[self.header_len()..]
    }
    /// Sequence space the segment occupies: payload plus one for SYN and FIN
    /// (RFC 9293 §3.4).
    pub fn segment_len(&self) -> usize {
        self.payload().len() + usize::from(self.flags().syn()) + usize::from(self.flags().fin())
    }

    /// True if the checksum over the pseudo-header and the segment verifies.
    /// `src` and `dst` are the IP header's addresses, of either family.
    #[inline]
    pub fn verify_checksum(&self, src: impl Into<IpAddr>, dst: impl Into<IpAddr>) -> bool {
        segment_checksum_sum(self.bytes(), src.into(), dst.into()) == 0xffff
    }
}

/// One's-complement sum of pseudo-header and segment (checksum field included).
#[inline]
fn segment_checksum_sum(segment: &[u8], src: IpAddr, dst: IpAddr) -> u16 {
    let len = segment.len() as u32;
    checksum::combine(&[
        checksum::pseudo_header(src, dst, IpProtocol::TCP.0, len),
        checksum::data(segment),
    ])
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Computes and writes the checksum over the pseudo-header and the whole
    /// buffer, which must be exactly the segment.
    pub fn fill_checksum(&mut self, src: impl Into<IpAddr>, dst: impl Into<IpAddr>) {
        let bytes = self.buffer.as_mut();
        write_u16(bytes, field::CHECKSUM, 0);
        let sum = !segment_checksum_sum(bytes, src.into(), dst.into());
        write_u16(bytes, field::CHECKSUM, sum);
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

/// A TCP segment's header fields, options and payload.
///
/// All sequence numbers are raw 32-bit values; the engine wraps them in its
/// modular sequence type. `ack_number` is carried whether or not ACK is set,
/// so that parse → emit reproduces a segment exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRepr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq_number: u32,
    pub ack_number: u32,
    pub flags: TcpFlags,
    pub window_len: u16,
    pub urgent_at: u16,
    pub options: TcpOptions,
    pub payload: &'a [u8],
}

/// Whether [`TcpRepr::parse`] verifies the checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// Verify: the default for anything off the wire.
    Verify,
    /// Skip: for segments our own code built and already trusts.
    Trust,
}

impl<'a> TcpRepr<'a> {
    /// Reads a checked segment: verifies the checksum (unless told to trust
    /// it) and the options.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &TcpPacket<&'a T>,
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
        checksum: Checksum,
    ) -> Result<Self> {
        if checksum == Checksum::Verify && !packet.verify_checksum(src, dst) {
            return Err(Error::Checksum);
        }
        let buffer: &'a T = packet.buffer;
        let bytes: &'a [u8] = buffer.as_ref();
        let header_len = packet.header_len();
        Ok(Self {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
            urgent_at: packet.urgent_at(),
            options: TcpOptions::parse(&bytes[HEADER_LEN..header_len])?,
            payload: &bytes[header_len..],
        })
    }

    /// Header length `emit` writes: 20 plus the padded options (≤ 60).
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options.buffer_len()
    }

    /// Bytes `emit` writes: header, options and payload.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Sequence space the segment occupies (RFC 9293 §3.4).
    pub fn segment_len(&self) -> usize {
        self.payload.len() + usize::from(self.flags.syn()) + usize::from(self.flags.fin())
    }

    /// Writes the segment into the first [`buffer_len`](Self::buffer_len)
    /// bytes of `buffer` (payload copied) and fills the checksum. Returns the
    /// number of bytes written.
    pub fn emit(&self, buffer: &mut [u8], src: impl Into<IpAddr>, dst: impl Into<IpAddr>) -> usize {
        let header_len = self.emit_header(buffer);
        let total = header_len + self.payload.len();
        buffer[header_len..total].copy_from_slice(self.payload);
        TcpPacket::new_unchecked(&mut buffer[..total]).fill_checksum(src, dst);
        total
    }

    /// Writes only the header and options (the data offset counts them;
    /// `self.payload` is ignored and the checksum left for
    /// [`TcpPacket::fill_checksum`] once the payload is in place). For
    /// callers that copy the payload themselves, e.g. from a ring buffer.
    /// Returns the header length.
    pub fn emit_header(&self, buffer: &mut [u8]) -> usize {
        let header_len = self.header_len();
        debug_assert!(header_len - HEADER_LEN <= MAX_OPTIONS_LEN);
        let b = &mut buffer[..header_len];
        write_u16(b, field::SRC_PORT, self.src_port);
        write_u16(b, field::DST_PORT, self.dst_port);
        write_u32(b, field::SEQ, self.seq_number);
        write_u32(b, field::ACK, self.ack_number);
        let offset_flags = ((header_len as u16 / 4) << 12) | (self.flags.0 & TcpFlags::MASK);
        write_u16(b, field::OFFSET_FLAGS, offset_flags);
        write_u16(b, field::WINDOW, self.window_len);
        write_u16(b, field::CHECKSUM, 0);
        write_u16(b, field::URGENT, self.urgent_at);
        self.options.emit(&mut b[HEADER_LEN..header_len]);
        header_len
    }
}

#[cfg(test)]
mod tests {
    use super::super::tcp_options::{SackBlocks, Timestamps};
    use super::*;
    use lastack_testkit::captured;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

    /// The TCP segment inside a captured frame (after 14 + 20 bytes).
    fn segment(frame: &[u8]) -> &[u8] {
        &frame[34..]
    }

    const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1);
    const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 2);

    /// RFC 8200 §8.1: Linux's IPv6 SYN verifies over the IPv6
    /// pseudo-header, and emit reproduces it byte for byte (checksum
    /// included); the same segment does not verify for another address.
    #[test]
    fn the_ipv6_pseudo_header_checksum_matches_linux() {
        for frame in [
            &captured::TCP6_SYN[..],
            &captured::TCP6_DATA[..],
            &captured::TCP6_FIN[..],
        ] {
            let bytes = &frame[54..];
            let packet = TcpPacket::new_checked(bytes).unwrap();
            let repr = TcpRepr::parse(&packet, CLIENT6, SERVER6, Checksum::Verify).unwrap();
            let mut out = vec![0u8; repr.buffer_len()];
            repr.emit(&mut out, CLIENT6, SERVER6);
            assert_eq!(out, bytes);
            let other = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 3);
            assert!(!packet.verify_checksum(other, SERVER6));
        }
        let packet = TcpPacket::new_checked(&captured::TCP6_SYN[54..]).unwrap();
        let repr = TcpRepr::parse(&packet, CLIENT6, SERVER6, Checksum::Verify).unwrap();
        assert_eq!((repr.src_port, repr.dst_port), (34464, 8080));
        assert_eq!(repr.options.mss, Some(1440), "1500 - 40 - 20");
        let packet = TcpPacket::new_checked(&captured::TCP6_DATA[54..]).unwrap();
        let repr = TcpRepr::parse(&packet, CLIENT6, SERVER6, Checksum::Verify).unwrap();
        assert_eq!(repr.payload, b"ping");
    }

    #[test]
    fn parses_captured_syn() {
        let packet = TcpPacket::new_checked(segment(&captured::TCP_SYN)).unwrap();
        let repr = TcpRepr::parse(&packet, CLIENT, SERVER, Checksum::Verify).unwrap();
        assert_eq!(repr.src_port, 49962);
        assert_eq!(repr.dst_port, 8080);
        assert_eq!(repr.seq_number, 181515277);
        assert_eq!(repr.flags, TcpFlags::SYN);
        assert_eq!(repr.window_len, 64240);
        assert_eq!(repr.options.mss, Some(1460));
        assert!(repr.options.sack_permitted);
        assert_eq!(repr.options.window_scale, Some(10));
        assert_eq!(
            repr.options.timestamps,
            Some(Timestamps {
                tsval: 2375281374,
                tsecr: 0
            })
        );
        assert_eq!(repr.segment_len(), 1);
        assert_eq!(packet.checksum(), 0x1e64);
    }

    #[test]
    fn parses_captured_syn_ack_data_and_fin() {
        let syn_ack = TcpPacket::new_checked(segment(&captured::TCP_SYN_ACK)).unwrap();
        let repr = TcpRepr::parse(&syn_ack, SERVER, CLIENT, Checksum::Verify).unwrap();
        assert_eq!(repr.flags, TcpFlags::SYN | TcpFlags::ACK);
        assert_eq!((repr.seq_number, repr.ack_number), (4111874015, 181515278));

        let data = TcpPacket::new_checked(segment(&captured::TCP_DATA)).unwrap();
        let repr = TcpRepr::parse(&data, CLIENT, SERVER, Checksum::Verify).unwrap();
        assert_eq!(repr.flags, TcpFlags::PSH | TcpFlags::ACK);
        assert_eq!(repr.payload, b"ping");
        assert_eq!(repr.options.timestamps.unwrap().tsecr, 2497421128);
        assert_eq!(repr.options.mss, None);

        let fin = TcpPacket::new_checked(segment(&captured::TCP_FIN)).unwrap();
        let repr = TcpRepr::parse(&fin, CLIENT, SERVER, Checksum::Verify).unwrap();
        assert_eq!(repr.flags, TcpFlags::FIN | TcpFlags::ACK);
        assert_eq!(repr.segment_len(), 1);
    }

    #[test]
    fn emit_reproduces_captured_segments_byte_for_byte() {
        for (frame, src, dst) in [
            (&captured::TCP_SYN[..], CLIENT, SERVER),
            (&captured::TCP_SYN_ACK[..], SERVER, CLIENT),
            (&captured::TCP_DATA[..], CLIENT, SERVER),
            (&captured::TCP_FIN[..], CLIENT, SERVER),
        ] {
            let packet = TcpPacket::new_checked(segment(frame)).unwrap();
            let repr = TcpRepr::parse(&packet, src, dst, Checksum::Verify).unwrap();
            let mut out = vec![0u8; repr.buffer_len()];
            assert_eq!(repr.emit(&mut out, src, dst), out.len());
            assert_eq!(out, segment(frame), "checksum and layout match Linux");
        }
    }

    #[test]
    fn any_flipped_bit_fails_the_checksum() {
        let seg = segment(&captured::TCP_DATA);
        for byte in 0..seg.len() {
            let mut bytes = seg.to_vec();
            bytes[byte] ^= 0x10;
            let packet = TcpPacket::new_unchecked(&bytes[..]);
            assert!(
                !packet.verify_checksum(CLIENT, SERVER),
                "flip in byte {byte}"
            );
        }
        // The pseudo-header counts too: the same bytes from another address fail.
        let packet = TcpPacket::new_checked(seg).unwrap();
        assert!(!packet.verify_checksum(Ipv4Addr::new(10, 77, 0, 3), SERVER));
        assert_eq!(
            TcpRepr::parse(
                &packet,
                Ipv4Addr::new(10, 77, 0, 3),
                SERVER,
                Checksum::Verify
            ),
            Err(Error::Checksum)
        );
    }

    #[test]
    fn truncation_at_every_length_is_refused() {
        let seg = segment(&captured::TCP_SYN);
        for len in 0..40 {
            assert_eq!(
                TcpPacket::new_checked(&seg[..len]).err(),
                Some(Error::Truncated),
                "len {len}"
            );
        }
        assert!(TcpPacket::new_checked(seg).is_ok());
    }

    #[test]
    fn data_offset_below_five_is_malformed() {
        let mut bytes = segment(&captured::TCP_DATA).to_vec();
        bytes[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&bytes[..]).err(),
            Some(Error::Malformed)
        );
    }

    #[test]
    fn malformed_option_fails_parse_not_view() {
        // Replace the data segment's NOP NOP TS with an MSS option of length 3.
        let mut bytes = segment(&captured::TCP_DATA).to_vec();
        bytes[20..24].copy_from_slice(&[2, 3, 0, 1]);
        let mut packet = TcpPacket::new_unchecked(&mut bytes[..]);
        packet.fill_checksum(CLIENT, SERVER);
        let packet = TcpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            TcpRepr::parse(&packet, CLIENT, SERVER, Checksum::Verify),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn flags_debug_reads_like_tcpdump() {
        assert_eq!(format!("{:?}", TcpFlags::SYN | TcpFlags::ACK), "[S.]");
        assert_eq!(
            format!("{:?}", TcpFlags::FIN | TcpFlags::PSH | TcpFlags::ACK),
            "[FP.]"
        );
    }

    prop_compose! {
        fn arb_options()(
            mss in proptest::option::of(any::<u16>()),
            window_scale in proptest::option::of(0u8..15),
            sack_permitted in any::<bool>(),
            ts in proptest::option::of(any::<(u32, u32)>()),
            blocks in proptest::collection::vec(any::<(u32, u32)>(), 0..=4),
        ) -> TcpOptions {
            let mut sack_blocks = SackBlocks::default();
            for (l, r) in blocks { sack_blocks.push(l, r); }
            TcpOptions {
                mss, window_scale, sack_permitted, sack_blocks,
                timestamps: ts.map(|(tsval, tsecr)| Timestamps { tsval, tsecr }),
            }
        }
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(
            ports in any::<(u16, u16)>(),
            seq in any::<u32>(),
            ack in any::<u32>(),
            flags in 0u16..0x200,
            window in any::<u16>(),
            urgent in any::<u16>(),
            options in arb_options(),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            addrs in any::<([u8; 4], [u8; 4])>(),
        ) {
            let (src, dst) = (Ipv4Addr::from(addrs.0), Ipv4Addr::from(addrs.1));
            let repr = TcpRepr {
                src_port: ports.0, dst_port: ports.1, seq_number: seq, ack_number: ack,
                flags: TcpFlags(flags), window_len: window, urgent_at: urgent,
                options, payload: &payload,
            };
            let mut out = vec![0u8; repr.buffer_len()];
            let written = repr.emit(&mut out, src, dst);
            prop_assert_eq!(written, out.len());
            let packet = TcpPacket::new_checked(&out[..]).unwrap();
            let parsed = TcpRepr::parse(&packet, src, dst, Checksum::Verify).unwrap();
            prop_assert_eq!(parsed, TcpRepr { options: options.as_emitted(), ..repr });
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            if let Ok(packet) = TcpPacket::new_checked(&bytes[..]) {
                let _ = (packet.options(), packet.payload(), packet.flags(), packet.segment_len());
                let _ = packet.option_iter().count();
                let _ = TcpRepr::parse(&packet, Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, Checksum::Trust);
            }
        }
    }
}
