//! How a reply finds its way back without a neighbour table: the MAC
//! addresses and VLAN tag of the frame that arrived, swapped, stored in the
//! engine's opaque per-connection [`Route`].

use crate::tcp::{Instant, Route, Stack};
use crate::wire::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr, VlanTag};

/// The Ethernet header of a reply to `arrived`, packed into a `Route`:
/// destination MAC (6), source MAC (6), VLAN TCI (2), tag kind (1).
pub fn route_for_reply(arrived: &EthernetRepr) -> Route {
    let mut route = [0u8; 16];
    route[..6].copy_from_slice(&arrived.src_addr.0);
    route[6..12].copy_from_slice(&arrived.dst_addr.0);
    if let Some(tag) = arrived.vlan {
        let tci = (u16::from(tag.pcp) << 13) | (u16::from(tag.dei) << 12) | tag.vid;
        route[12..14].copy_from_slice(&tci.to_be_bytes());
        route[14] = if tag.tpid == EtherType::QINQ { 2 } else { 1 };
    }
    route
}

/// The Ethernet header a `Route` describes, for a payload of `ethertype`
/// (the flow's IP version).
pub fn ethernet_for(route: &Route, ethertype: EtherType) -> EthernetRepr {
    let tci = u16::from_be_bytes([route[12], route[13]]);
    let vlan = match route[14] {
        0 => None,
        kind => Some(VlanTag {
            tpid: if kind == 2 {
                EtherType::QINQ
            } else {
                EtherType::VLAN
            },
            pcp: (tci >> 13) as u8,
            dei: tci & 0x1000 != 0,
            vid: tci & 0x0fff,
        }),
    };
    EthernetRepr {
        dst_addr: EthernetAddress::from_bytes(&route[..6]),
        src_addr: EthernetAddress::from_bytes(&route[6..12]),
        vlan,
        ethertype,
    }
}

/// An untagged Ethernet header's length: where the engine writes each
/// outgoing IP packet in its frame.
const UNTAGGED: usize = 14;

/// Bytes a tagged Ethernet header has beyond an untagged one (a `Route`
/// keeps one tag: 802.1Q, or QinQ's outer one).
const MAX_TAG_LEN: usize = 4;

/// The engine's next segment as a whole Ethernet frame in `frame`; its
/// length, or `None` when the engine has nothing to send.
///
/// The packet goes where an untagged Ethernet header ends, so the common
/// frame is written once, in place; a VLAN-tagged one moves the packet up
/// by the tag, into room kept free at the end.
pub fn write_next_frame(stack: &mut Stack, now: Instant, frame: &mut [u8]) -> Option<usize> {
    let room = frame.len() - MAX_TAG_LEN;
    let t = stack.poll_transmit(now, &mut frame[UNTAGGED..room])?;
    let eth = header_len(&t.route);
    if eth != UNTAGGED {
        frame.copy_within(UNTAGGED..UNTAGGED + t.len, eth);
    }
    let written = write_ethernet(&t.route, t.tuple.is_ipv6(), frame);
    debug_assert_eq!(written, eth);
    Some(eth + t.len)
}

/// The length of the Ethernet header a `Route` describes: 14, or 18 with
/// its VLAN tag (as [`write_ethernet`] writes it).
fn header_len(route: &Route) -> usize {
    if route[14] == 0 {
        UNTAGGED
    } else {
        UNTAGGED + MAX_TAG_LEN
    }
}

/// Writes the Ethernet header for `route` and an IPv6 (`ipv6`) or IPv4
/// payload at the front of `frame`; returns its length (where the IP
/// packet starts).
pub fn write_ethernet(route: &Route, ipv6: bool, frame: &mut [u8]) -> usize {
    let ethertype = if ipv6 {
        EtherType::IPV6
    } else {
        EtherType::IPV4
    };
    let repr = ethernet_for(route, ethertype);
    repr.emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
    repr.buffer_len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lastack_testkit::captured;

    /// The engine's SYN-ACK to a captured SYN, as a whole frame: to the
    /// sender, with the tag the SYN came with (if any), and a packet that
    /// parses with valid checksums wherever the tag put it.
    fn syn_ack_frame_to(syn: &[u8]) -> (EthernetRepr, Vec<u8>) {
        use crate::tcp::{Secret, TcpConfig};
        use crate::wire::{parse_frame, Frame};
        let Ok(Frame::Tcp { ethernet, ip, tcp }) = parse_frame(syn) else {
            panic!("a SYN");
        };
        let mut stack = Stack::new(TcpConfig::default(), Secret([3; 16]), 16);
        stack
            .listen(std::net::SocketAddr::new(ip.dst_addr(), tcp.dst_port))
            .unwrap();
        stack.handle_segment(Instant::ZERO, route_for_reply(&ethernet), &ip, &tcp);
        let mut frame = vec![0u8; 2048];
        let len = write_next_frame(&mut stack, Instant::ZERO, &mut frame).expect("a SYN-ACK");
        frame.truncate(len);
        assert_eq!(
            write_next_frame(&mut stack, Instant::ZERO, &mut [0u8; 2048]),
            None
        );
        (ethernet, frame)
    }

    #[test]
    fn a_reply_frame_is_written_in_place_or_moved_up_for_a_tag() {
        use crate::wire::{parse_frame, Frame};
        let mut tagged = captured::TCP_SYN[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0xa0, 0x2a]);
        tagged.extend_from_slice(&captured::TCP_SYN[12..]);
        for syn in [&captured::TCP_SYN[..], &tagged[..]] {
            let (arrived, frame) = syn_ack_frame_to(syn);
            let Ok(Frame::Tcp { ethernet, ip, tcp }) = parse_frame(&frame) else {
                panic!("a valid reply frame: {frame:02x?}");
            };
            assert_eq!(ethernet, arrived.reply(EtherType::IPV4));
            assert_eq!(
                frame.len(),
                header_len(&route_for_reply(&arrived)) + 20 + tcp.header_len()
            );
            assert!(tcp
                .flags
                .contains(crate::wire::TcpFlags::SYN | crate::wire::TcpFlags::ACK));
            assert_eq!(ip.dst_addr(), std::net::IpAddr::from([10, 77, 0, 1]));
        }
    }

    #[test]
    fn a_reply_swaps_the_addresses_and_keeps_the_tag() {
        let mut tagged = captured::TCP_SYN[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0xa0, 0x2a]);
        tagged.extend_from_slice(&captured::TCP_SYN[12..]);
        let arrived = EthernetRepr::parse(&EthernetFrame::new_checked(&tagged[..]).unwrap());
        let reply = ethernet_for(&route_for_reply(&arrived), EtherType::IPV4);
        assert_eq!(reply, arrived.reply(EtherType::IPV4));
        let mut out = [0u8; 18];
        assert_eq!(
            write_ethernet(&route_for_reply(&arrived), false, &mut out),
            18
        );
        assert_eq!(header_len(&route_for_reply(&arrived)), 18);
        let untagged = EthernetRepr::parse(&EthernetFrame::new_checked(captured::TCP_SYN).unwrap());
        assert_eq!(header_len(&route_for_reply(&untagged)), 14);
        assert_eq!(&out[..6], &tagged[6..12], "to the sender");
        assert_eq!(&out[12..16], &tagged[12..16], "same tag");
    }
}
