//! One-call parse of a received frame down to what the shard needs.

use super::{
    ip, ArpPacket, ArpRepr, Error, EtherType, EthernetFrame, EthernetRepr, IcmpRepr, IpProtocol,
    IpRepr, Result, TcpPacket, TcpRepr,
};
use crate::wire::tcp::Checksum;

/// A received frame, parsed as far as the stack cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A TCP segment over IPv4 or IPv6 whose checksums verified.
    Tcp {
        ethernet: EthernetRepr,
        ip: IpRepr,
        tcp: TcpRepr<'a>,
    },
    /// An ICMPv4 or ICMPv6 message whose checksums verified (XDP steers
    /// only "fragmentation needed" and "packet too big" about our own
    /// flows here).
    Icmp {
        ethernet: EthernetRepr,
        ip: IpRepr,
        icmp: IcmpRepr,
    },
    /// A TCP segment inside an IP-in-IP packet (`wire::tunnel`): one
    /// instance of a cluster forwarding a segment to the one that owns
    /// its flow. `outer` is the tunnel's header; `ip` and `tcp` the
    /// segment's, checksums verified.
    Tunnelled {
        ethernet: EthernetRepr,
        outer: IpRepr,
        ip: IpRepr,
        tcp: TcpRepr<'a>,
    },
    /// An Ethernet/IPv4 ARP packet.
    Arp {
        ethernet: EthernetRepr,
        arp: ArpRepr,
    },
    /// Valid, but none of the above (UDP, ICMPv6, ...).
    Other { ethernet: EthernetRepr },
}

/// Parses an Ethernet frame from untrusted bytes: every length is checked,
/// every checksum is verified, fragments are refused. An IPv6 packet
/// carrying an extension header is refused too (a Fragment header as
/// [`Error::Fragmented`], any other as [`Error::Unsupported`]): the XDP
/// program passes those to the kernel. Never panics.
pub fn parse_frame(bytes: &[u8]) -> Result<Frame<'_>> {
    let frame = EthernetFrame::new_checked(bytes)?;
    let ethernet = EthernetRepr::parse(&frame);
    let payload = &bytes[frame.header_len()..];
    match ethernet.ethertype {
        EtherType::IPV4 | EtherType::IPV6 => {
            let (ip, segment) = ip::parse_packet(payload)?;
            if (ethernet.ethertype == EtherType::IPV6) != matches!(ip, IpRepr::Ipv6(_)) {
                return Err(Error::Malformed);
            }
            if super::tunnel::is_tunnel(ip.protocol()) {
                // One level: the inner packet must carry TCP itself.
                let outer = ip;
                let (ip, segment) = ip::parse_packet(segment)?;
                let inner_v6 = matches!(ip, IpRepr::Ipv6(_));
                if inner_v6 != (outer.protocol() == super::tunnel::IPV6_INSIDE)
                    || ip.protocol() != IpProtocol::TCP
                {
                    return Err(Error::Malformed);
                }
                let tcp = tcp_in(&ip, segment)?;
                return Ok(Frame::Tunnelled {
                    ethernet,
                    outer,
                    ip,
                    tcp,
                });
            }
            if ip.protocol() != IpProtocol::TCP {
                return match IcmpRepr::parse(&ip, segment)? {
                    Some(icmp) => Ok(Frame::Icmp { ethernet, ip, icmp }),
                    None => Ok(Frame::Other { ethernet }),
                };
            }
            let tcp = tcp_in(&ip, segment)?;
            Ok(Frame::Tcp { ethernet, ip, tcp })
        }
        EtherType::ARP => {
            let arp = ArpRepr::parse(&ArpPacket::new_checked(payload)?)?;
            Ok(Frame::Arp { ethernet, arp })
        }
        _ => Ok(Frame::Other { ethernet }),
    }
}

/// The TCP segment `ip` carries, its checksum verified.
fn tcp_in<'a>(ip: &IpRepr, segment: &'a [u8]) -> Result<TcpRepr<'a>> {
    let packet = TcpPacket::new_checked(segment)?;
    TcpRepr::parse(&packet, ip.src_addr(), ip.dst_addr(), Checksum::Verify)
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
            ip.payload_len(),
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
            &captured::TCP6_SYN[..],
            &captured::TCP6_DATA[..],
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
    fn parses_captured_ipv6_frames() {
        let Ok(Frame::Tcp { tcp, ip, .. }) = parse_frame(&captured::TCP6_DATA) else {
            panic!("not TCP")
        };
        assert_eq!(tcp.payload, b"ping");
        assert_eq!(
            ip.src_addr(),
            "fd77::1".parse::<std::net::IpAddr>().unwrap()
        );
        assert!(matches!(
            parse_frame(&captured::NDP_NEIGHBOR_SOLICIT),
            Ok(Frame::Icmp {
                icmp: IcmpRepr::V6(crate::wire::Icmpv6Repr::Other { msg_type: 135, .. }),
                ..
            })
        ));
        assert_eq!(
            parse_frame(&captured::MLD_REPORT_HOP_BY_HOP),
            Err(Error::Unsupported),
            "a hop-by-hop header is not walked"
        );
    }

    /// Hostile IPv6 frames: each is refused with its own error (one drop
    /// counter each in the shard), never a panic.
    #[test]
    fn hostile_ipv6_frames_are_refused() {
        let mut bad_checksum = captured::TCP6_DATA.to_vec();
        *bad_checksum.last_mut().unwrap() ^= 0xff;
        assert_eq!(parse_frame(&bad_checksum), Err(Error::Checksum));

        let mut fragment = captured::TCP6_SYN.to_vec();
        fragment[14 + 6] = 44;
        assert_eq!(parse_frame(&fragment), Err(Error::Fragmented));

        let mut unknown = captured::TCP6_SYN.to_vec();
        unknown[14 + 6] = 253; // RFC 3692 experimental
        assert_eq!(parse_frame(&unknown), Err(Error::Unsupported));

        let mut long_payload = captured::TCP6_SYN.to_vec();
        long_payload[14 + 5] += 1; // claims one byte more than the frame has
        assert_eq!(parse_frame(&long_payload), Err(Error::Truncated));

        let mut short_payload = captured::TCP6_SYN.to_vec();
        short_payload[14 + 5] = 19; // shorter than a TCP header
        assert_eq!(parse_frame(&short_payload), Err(Error::Truncated));
    }

    #[test]
    fn a_tunnelled_segment_is_unwrapped_in_every_family_pair() {
        for inner in [&captured::TCP_DATA[..], &captured::TCP6_DATA[..]] {
            for outer_v6 in [false, true] {
                let frame = captured::tunnelled(inner, outer_v6);
                let Ok(Frame::Tunnelled { tcp, ip, outer, .. }) = parse_frame(&frame) else {
                    panic!("not tunnelled: {:?}", parse_frame(&frame))
                };
                assert_eq!(tcp.payload, b"ping");
                assert_eq!(matches!(outer, IpRepr::Ipv6(_)), outer_v6);
                assert_eq!(matches!(ip, IpRepr::Ipv6(_)), inner[12] == 0x86);
                for len in 0..frame.len() {
                    assert!(parse_frame(&frame[..len]).is_err(), "len {len}");
                }
            }
        }
        // The outer header naming the wrong inner version is refused.
        let mut wrong = captured::tunnelled(&captured::TCP_DATA, false);
        wrong[14 + 9] = 41;
        let sum_at = 14 + 10;
        wrong[sum_at..sum_at + 2].copy_from_slice(&[0, 0]);
        let sum = !crate::wire::checksum::data(&wrong[14..34]);
        wrong[sum_at..sum_at + 2].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(parse_frame(&wrong), Err(Error::Malformed));
    }

    #[test]
    fn bad_tcp_checksum_is_refused() {
        let mut frame = captured::TCP_DATA.to_vec();
        *frame.last_mut().unwrap() ^= 0xff;
        assert_eq!(parse_frame(&frame), Err(Error::Checksum));
    }
}
