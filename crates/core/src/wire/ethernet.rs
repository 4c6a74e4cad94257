//! Ethernet II frames (IEEE 802.3 §3.2.6) with at most one 802.1Q or 802.1ad
//! tag (IEEE 802.1Q §9.6). The frame check sequence is not part of what the
//! NIC hands us and is never read or written.

use core::fmt;

use super::{read_u16, write_u16, Error, Result};

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// ff:ff:ff:ff:ff:ff
    pub const BROADCAST: Self = Self([0xff; 6]);

    /// Reads an address from the first six bytes of `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut addr = [0u8; 6];
        addr.copy_from_slice(&bytes[..6]);
        Self(addr)
    }

    /// True for group (multicast and broadcast) addresses: the I/G bit.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An EtherType value (IEEE 802.3 §3.2.6, registry at IEEE RA).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct EtherType(pub u16);

impl EtherType {
    pub const IPV4: Self = Self(0x0800);
    pub const ARP: Self = Self(0x0806);
    pub const IPV6: Self = Self(0x86dd);
    /// Customer VLAN tag, IEEE 802.1Q.
    pub const VLAN: Self = Self(0x8100);
    /// Service VLAN tag, IEEE 802.1ad (QinQ outer tag).
    pub const QINQ: Self = Self(0x88a8);

    fn is_tag(self) -> bool {
        self == Self::VLAN || self == Self::QINQ
    }
}

/// An 802.1Q tag: its TPID and the tag control information.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct VlanTag {
    /// Tag protocol identifier: [`EtherType::VLAN`] or [`EtherType::QINQ`].
    pub tpid: EtherType,
    /// Priority code point (3 bits).
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN identifier (12 bits).
    pub vid: u16,
}

impl VlanTag {
    fn tci(&self) -> u16 {
        (u16::from(self.pcp & 0x7) << 13) | (u16::from(self.dei) << 12) | (self.vid & 0x0fff)
    }

    fn from_tci(tpid: EtherType, tci: u16) -> Self {
        Self {
            tpid,
            pcp: (tci >> 13) as u8,
            dei: tci & 0x1000 != 0,
            vid: tci & 0x0fff,
        }
    }
}

mod field {
    pub const DST: usize = 0;
    pub const SRC: usize = 6;
    pub const TYPE_OR_TPID: usize = 12;
    pub const TCI: usize = 14;
    pub const INNER_TYPE: usize = 16;
    pub const UNTAGGED_LEN: usize = 14;
    pub const TAGGED_LEN: usize = 18;
}

/// A view over an Ethernet II frame, optionally carrying one VLAN tag.
///
/// Invariant after [`EthernetFrame::new_checked`]: the buffer holds the whole
/// header, tag included, so every accessor is in bounds.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking it (for buffers we fill ourselves).
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps untrusted bytes, checking that the header (and tag) fit.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let frame = Self::new_unchecked(buffer);
        let len = frame.buffer.as_ref().len();
        if len < field::UNTAGGED_LEN || len < frame.header_len() {
            return Err(Error::Truncated);
        }
        Ok(frame)
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn outer_type(&self) -> EtherType {
        EtherType(read_u16(self.buffer.as_ref(), field::TYPE_OR_TPID))
    }

    /// 14 bytes, or 18 with a VLAN tag.
    pub fn header_len(&self) -> usize {
        if self.outer_type().is_tag() {
            field::TAGGED_LEN
        } else {
            field::UNTAGGED_LEN
        }
    }

    pub fn dst_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::DST..])
    }

    pub fn src_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::SRC..])
    }

    /// The VLAN tag, if the frame carries one.
    pub fn vlan(&self) -> Option<VlanTag> {
        let tpid = self.outer_type();
        tpid.is_tag()
            .then(|| VlanTag::from_tci(tpid, read_u16(self.buffer.as_ref(), field::TCI)))
    }

    /// The EtherType of the payload (the inner one when tagged).
    pub fn ethertype(&self) -> EtherType {
        if self.outer_type().is_tag() {
            EtherType(read_u16(self.buffer.as_ref(), field::INNER_TYPE))
        } else {
            self.outer_type()
        }
    }

    /// Everything after the header (including any padding to 60 bytes).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::DST..field::DST + 6].copy_from_slice(&addr.0);
    }

    pub fn set_src_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::SRC..field::SRC + 6].copy_from_slice(&addr.0);
    }

    /// Writes the type fields: the tag (if any) and the payload EtherType.
    /// The header length changes with the tag, so set this before the payload.
    pub fn set_type(&mut self, vlan: Option<VlanTag>, ethertype: EtherType) {
        let bytes = self.buffer.as_mut();
        match vlan {
            Some(tag) => {
                write_u16(bytes, field::TYPE_OR_TPID, tag.tpid.0);
                write_u16(bytes, field::TCI, tag.tci());
                write_u16(bytes, field::INNER_TYPE, ethertype.0);
            }
            None => write_u16(bytes, field::TYPE_OR_TPID, ethertype.0),
        }
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

/// The fields of an Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    pub src_addr: EthernetAddress,
    pub dst_addr: EthernetAddress,
    pub vlan: Option<VlanTag>,
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Reads the header of a checked frame. A tag whose TPID is not 802.1Q or
    /// 802.1ad is not a tag, so this cannot fail after `new_checked`.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Self {
        Self {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            vlan: frame.vlan(),
            ethertype: frame.ethertype(),
        }
    }

    /// Header bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        if self.vlan.is_some() {
            field::TAGGED_LEN
        } else {
            field::UNTAGGED_LEN
        }
    }

    /// Writes the header into the front of `frame`, which holds at least
    /// [`buffer_len`](Self::buffer_len) bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        frame.set_type(self.vlan, self.ethertype);
    }

    /// The header of a reply: addresses swapped, the same tag.
    pub fn reply(&self, ethertype: EtherType) -> Self {
        Self {
            src_addr: self.dst_addr,
            dst_addr: self.src_addr,
            vlan: self.vlan,
            ethertype,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lastack_testkit::captured;

    #[test]
    fn parses_captured_untagged_frame() {
        let frame = EthernetFrame::new_checked(&captured::TCP_SYN[..]).unwrap();
        let repr = EthernetRepr::parse(&frame);
        assert_eq!(repr.dst_addr.to_string(), "3a:6e:89:e1:e5:53");
        assert_eq!(repr.src_addr.to_string(), "6e:53:05:47:09:12");
        assert_eq!(repr.ethertype, EtherType::IPV4);
        assert_eq!(repr.vlan, None);
        assert_eq!(frame.header_len(), 14);
        assert_eq!(frame.payload(), &captured::TCP_SYN[14..]);
    }

    #[test]
    fn parses_vlan_tag() {
        // The captured ARP request, re-tagged with VLAN 100, PCP 5, DEI 0.
        let mut tagged = captured::ARP_REQUEST[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0xa0, 0x64]);
        tagged.extend_from_slice(&captured::ARP_REQUEST[12..]);
        let frame = EthernetFrame::new_checked(&tagged[..]).unwrap();
        let repr = EthernetRepr::parse(&frame);
        let tag = VlanTag {
            tpid: EtherType::VLAN,
            pcp: 5,
            dei: false,
            vid: 100,
        };
        assert_eq!(repr.vlan, Some(tag));
        assert_eq!(repr.ethertype, EtherType::ARP);
        assert_eq!(frame.payload(), &captured::ARP_REQUEST[14..]);

        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
        assert_eq!(out, tagged[..18]);
    }

    #[test]
    fn truncation_at_every_length_is_refused() {
        for len in 0..14 {
            assert_eq!(
                EthernetFrame::new_checked(&captured::TCP_SYN[..len]).err(),
                Some(Error::Truncated),
                "len {len}"
            );
        }
        let tagged = [
            0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x81, 0x00, 0, 1, 0x08, 0x00,
        ];
        for len in 14..18 {
            assert_eq!(
                EthernetFrame::new_checked(&tagged[..len]).err(),
                Some(Error::Truncated)
            );
        }
        assert!(EthernetFrame::new_checked(&tagged[..]).is_ok());
    }

    #[test]
    fn emit_reproduces_captured_header() {
        let frame = EthernetFrame::new_checked(&captured::TCP_SYN[..]).unwrap();
        let repr = EthernetRepr::parse(&frame);
        let mut out = [0u8; 14];
        repr.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
        assert_eq!(out, captured::TCP_SYN[..14]);
    }
}
