//! How a reply finds its way back without a neighbour table: the MAC
//! addresses and VLAN tag of the frame that arrived, swapped, stored in the
//! engine's opaque per-connection [`Route`].

use crate::tcp::Route;
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
        assert_eq!(&out[..6], &tagged[6..12], "to the sender");
        assert_eq!(&out[12..16], &tagged[12..16], "same tag");
    }
}
