//! ARP for IPv4 over Ethernet (RFC 826). lastack itself leaves ARP to the
//! kernel (the XDP program passes it); this view lets tests and tools build
//! and read ARP frames, and lets the shard recognise one if it ever sees it.

use std::net::Ipv4Addr;

use super::{read_u16, write_u16, Error, EthernetAddress, Result};

/// ARP opcode (RFC 826; 1 = request, 2 = reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    Request,
    Reply,
    Other(u16),
}

impl From<u16> for ArpOperation {
    fn from(value: u16) -> Self {
        match value {
            1 => Self::Request,
            2 => Self::Reply,
            other => Self::Other(other),
        }
    }
}

impl From<ArpOperation> for u16 {
    fn from(op: ArpOperation) -> u16 {
        match op {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
            ArpOperation::Other(other) => other,
        }
    }
}

mod field {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    /// Fixed header, before the variable-length addresses.
    pub const FIXED_LEN: usize = 8;
}

const HTYPE_ETHERNET: u16 = 1;
const PTYPE_IPV4: u16 = 0x0800;
/// Ethernet/IPv4 ARP packet length: 8 + 2 * (6 + 4).
const ETHERNET_IPV4_LEN: usize = 28;

/// A view over an ARP packet (the Ethernet payload).
///
/// Invariant after [`ArpPacket::new_checked`]: the fixed header and the four
/// addresses, whose lengths it declares, are inside the buffer.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Checks that the fixed header and all the addresses fit.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        let bytes = packet.buffer.as_ref();
        if bytes.len() < field::FIXED_LEN {
            return Err(Error::Truncated);
        }
        let addresses = 2 * (usize::from(bytes[field::HLEN]) + usize::from(bytes[field::PLEN]));
        if bytes.len() < field::FIXED_LEN + addresses {
            return Err(Error::Truncated);
        }
        Ok(packet)
    }

    pub fn hardware_type(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::HTYPE)
    }
    pub fn protocol_type(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::PTYPE)
    }
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }
    pub fn operation(&self) -> ArpOperation {
        read_u16(self.buffer.as_ref(), field::OPER).into()
    }

    fn address(&self, index: usize) -> &[u8] {
        let (h, p) = (
            usize::from(self.hardware_len()),
            usize::from(self.protocol_len()),
        );
        let start = field::FIXED_LEN + (index / 2) * (h + p) + (index % 2) * h;
        let len = if index % 2 == 0 { h } else { p };
        &self.buffer.as_ref()[start..start + len]
    }

    /// Sender hardware address (`hardware_len` bytes).
    pub fn sender_hardware_addr(&self) -> &[u8] {
        self.address(0)
    }
    /// Sender protocol address (`protocol_len` bytes).
    pub fn sender_protocol_addr(&self) -> &[u8] {
        self.address(1)
    }
    /// Target hardware address.
    pub fn target_hardware_addr(&self) -> &[u8] {
        self.address(2)
    }
    /// Target protocol address.
    pub fn target_protocol_addr(&self) -> &[u8] {
        self.address(3)
    }
}

/// An ARP packet for IPv4 over Ethernet, the only kind we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    pub operation: ArpOperation,
    pub source_hardware_addr: EthernetAddress,
    pub source_protocol_addr: Ipv4Addr,
    pub target_hardware_addr: EthernetAddress,
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// Reads an Ethernet/IPv4 ARP packet; other hardware or protocol types are
    /// [`Error::Unsupported`].
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<Self> {
        if packet.hardware_type() != HTYPE_ETHERNET
            || packet.protocol_type() != PTYPE_IPV4
            || packet.hardware_len() != 6
            || packet.protocol_len() != 4
        {
            return Err(Error::Unsupported);
        }
        let ip = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
        Ok(Self {
            operation: packet.operation(),
            source_hardware_addr: EthernetAddress::from_bytes(packet.sender_hardware_addr()),
            source_protocol_addr: ip(packet.sender_protocol_addr()),
            target_hardware_addr: EthernetAddress::from_bytes(packet.target_hardware_addr()),
            target_protocol_addr: ip(packet.target_protocol_addr()),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        ETHERNET_IPV4_LEN
    }

    /// Writes the packet into the first [`buffer_len`](Self::buffer_len)
    /// bytes of `buffer`.
    pub fn emit(&self, buffer: &mut [u8]) {
        let b = &mut buffer[..ETHERNET_IPV4_LEN];
        write_u16(b, field::HTYPE, HTYPE_ETHERNET);
        write_u16(b, field::PTYPE, PTYPE_IPV4);
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
        write_u16(b, field::OPER, self.operation.into());
        b[8..14].copy_from_slice(&self.source_hardware_addr.0);
        b[14..18].copy_from_slice(&self.source_protocol_addr.octets());
        b[18..24].copy_from_slice(&self.target_hardware_addr.0);
        b[24..28].copy_from_slice(&self.target_protocol_addr.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lastack_testkit::captured;

    #[test]
    fn parses_captured_request_and_reply() {
        let request =
            ArpRepr::parse(&ArpPacket::new_checked(&captured::ARP_REQUEST[14..]).unwrap()).unwrap();
        assert_eq!(
            request,
            ArpRepr {
                operation: ArpOperation::Request,
                source_hardware_addr: EthernetAddress([0x6e, 0x53, 0x05, 0x47, 0x09, 0x12]),
                source_protocol_addr: Ipv4Addr::new(10, 77, 0, 1),
                target_hardware_addr: EthernetAddress([0; 6]),
                target_protocol_addr: Ipv4Addr::new(10, 77, 0, 2),
            }
        );
        let reply =
            ArpRepr::parse(&ArpPacket::new_checked(&captured::ARP_REPLY[14..]).unwrap()).unwrap();
        assert_eq!(reply.operation, ArpOperation::Reply);
        assert_eq!(reply.source_hardware_addr.to_string(), "3a:6e:89:e1:e5:53");

        let mut out = [0u8; 28];
        reply.emit(&mut out);
        assert_eq!(out, captured::ARP_REPLY[14..]);
    }

    #[test]
    fn truncation_at_every_length_is_refused() {
        let body = &captured::ARP_REQUEST[14..];
        for len in 0..body.len() {
            assert_eq!(
                ArpPacket::new_checked(&body[..len]).err(),
                Some(Error::Truncated)
            );
        }
    }

    #[test]
    fn declared_address_lengths_bound_the_accessors() {
        // hlen 255, plen 255 claims 1020 bytes of addresses: refused, never read.
        let mut bytes = captured::ARP_REQUEST[14..].to_vec();
        bytes[4] = 255;
        bytes[5] = 255;
        assert_eq!(
            ArpPacket::new_checked(&bytes[..]).err(),
            Some(Error::Truncated)
        );
        // A well-formed packet for another hardware type is unsupported.
        let mut other = captured::ARP_REQUEST[14..].to_vec();
        other[1] = 6; // IEEE 802
        let packet = ArpPacket::new_checked(&other[..]).unwrap();
        assert_eq!(ArpRepr::parse(&packet), Err(Error::Unsupported));
    }
}
