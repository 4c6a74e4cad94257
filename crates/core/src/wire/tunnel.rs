//! IP in IP (RFC 2003 for an IPv4 outer header, RFC 2473 for IPv6): how
//! one instance of a cluster hands a client's segment to the instance that
//! owns its connection (docs/cluster.md). The outer header names the inner
//! packet's version: protocol 4 for IPv4 inside, 41 for IPv6 inside, in
//! either outer family.

use std::net::IpAddr;

use super::{IpProtocol, IpRepr, Ipv4Repr, Ipv6Repr};

/// IPv4 inside (RFC 2003 §3.1).
pub const IPV4_INSIDE: IpProtocol = IpProtocol(4);
/// IPv6 inside (RFC 2473 §4; RFC 4213 §3.5 over IPv4).
pub const IPV6_INSIDE: IpProtocol = IpProtocol(41);

/// Whether `protocol` names an encapsulated IP packet.
pub const fn is_tunnel(protocol: IpProtocol) -> bool {
    protocol.0 == IPV4_INSIDE.0 || protocol.0 == IPV6_INSIDE.0
}

/// The outer header from `src` to `dst` (one family) around an inner packet
/// of `inner_len` bytes of version 6 (`inner_v6`) or 4: TTL / hop limit 64,
/// DF set (a tunnel that needs fragments is misconfigured: the MSS leaves
/// room, see docs/cluster.md). `None` if the families differ.
pub fn outer_header(src: IpAddr, dst: IpAddr, inner_v6: bool, inner_len: u16) -> Option<IpRepr> {
    let protocol = if inner_v6 { IPV6_INSIDE } else { IPV4_INSIDE };
    match (src, dst) {
        (IpAddr::V4(src_addr), IpAddr::V4(dst_addr)) => Some(IpRepr::Ipv4(Ipv4Repr {
            src_addr,
            dst_addr,
            protocol,
            payload_len: inner_len,
            ttl: 64,
            ident: 0,
            dont_frag: true,
            dscp_ecn: 0,
        })),
        (IpAddr::V6(src_addr), IpAddr::V6(dst_addr)) => Some(IpRepr::Ipv6(Ipv6Repr {
            src_addr,
            dst_addr,
            next_header: protocol,
            payload_len: inner_len,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
        })),
        _ => None,
    }
}
