//! One-call parse of a received frame down to what the shard needs.

use super::{
    ArpPacket, ArpRepr, EtherType, EthernetFrame, EthernetRepr, Icmpv4Packet, Icmpv4Repr,
    IpProtocol, Ipv4Packet, Ipv4Repr, Result, TcpPacket, TcpRepr,
};
use crate::wire::tcp::Checksum;

/// A received frame, parsed as far as the stack cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// An IPv4 TCP segment whose IP and TCP checksums verified.
    Tcp {
        ethernet: EthernetRepr,
        ip: Ipv4Repr,
        tcp: TcpRepr<'a>,
    },
    /// An ICMPv4 message whose checksums verified (XDP steers only
    /// "fragmentation needed" about our own flows here).
    Icmp {
        ethernet: EthernetRepr,
        ip: Ipv4Repr,
        icmp: Icmpv4Repr,
    },
    /// An Ethernet/IPv4 ARP packet.
    Arp {
        ethernet: EthernetRepr,
        arp: ArpRepr,
    },
    /// Valid, but none of the above (IPv6, UDP, ...).
    Other { ethernet: EthernetRepr },
}

/// Parses an Ethernet frame from untrusted bytes: every length is checked,
/// both checksums are verified, fragments are refused. Never panics.
pub fn parse_frame(bytes: &[u8]) -> Result<Frame<'_>> {
    let frame = EthernetFrame::new_checked(bytes)?;
    let ethernet = EthernetRepr::parse(&frame);
    let payload = &bytes[frame.header_len()..];
    match ethernet.ethertype {
        EtherType::IPV4 => {
            let packet = Ipv4Packet::new_checked(payload)?;
            let ip = Ipv4Repr::parse(&packet)?;
            let segment = &payload[packet.header_len()..usize::from(packet.total_len())];
            if ip.protocol == IpProtocol::ICMP {
                let icmp = Icmpv4Repr::parse(&Icmpv4Packet::new_checked(segment)?)?;
                return Ok(Frame::Icmp { ethernet, ip, icmp });
            }
            if ip.protocol != IpProtocol::TCP {
                return Ok(Frame::Other { ethernet });
            }
            let tcp_packet = TcpPacket::new_checked(segment)?;
            let tcp = TcpRepr::parse(&tcp_packet, ip.src_addr, ip.dst_addr, Checksum::Verify)?;
            Ok(Frame::Tcp { ethernet, ip, tcp })
        }
        EtherType::ARP => {
            let arp = ArpRepr::parse(&ArpPacket::new_checked(payload)?)?;
            Ok(Frame::Arp { ethernet, arp })
        }
        _ => Ok(Frame::Other { ethernet }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Error;
    use super::*;
    use lastack_testkit::captured;

    #[test]
    fn parses_each_captured_frame() {
        assert!(matches!(
            parse_frame(&captured::ARP_REQUEST),
            Ok(Frame::Arp { .. })
        ));
        let Ok(Frame::Tcp { tcp, ip, .. }) = parse_frame(&captured::TCP_DATA) else {
            panic!("not TCP")
        };
        assert_eq!(tcp.payload, b"ping");
        assert_eq!(
            ip.payload_len,
            32 + 4,
            "TCP header with timestamps, then 'ping'"
        );
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        for frame in [
            &captured::TCP_SYN[..],
            &captured::TCP_DATA[..],
            &captured::ARP_REPLY[..],
        ] {
            for len in 0..frame.len() {
                let result = parse_frame(&frame[..len]);
                assert!(
                    matches!(result, Err(Error::Truncated) | Err(Error::Checksum)),
                    "len {len}: {result:?}"
                );
            }
        }
    }

    #[test]
    fn bad_tcp_checksum_is_refused() {
        let mut frame = captured::TCP_DATA.to_vec();
        *frame.last_mut().unwrap() ^= 0xff;
        assert_eq!(parse_frame(&frame), Err(Error::Checksum));
    }
}
