//! The PROXY protocol header (HAProxy's "proxy-protocol.txt", versions 1
//! and 2), sent first on a backend connection so the backend sees the
//! client's address. Written into the caller's buffer: no allocation. The
//! family is the client's (the client and the VIP it reached are always of
//! one family), whatever the backend's: an IPv4 client proxied to an IPv6
//! backend is announced as TCP4.
//!
//! - Version 1 (§2.1): one text line, `PROXY TCP4 <src> <dst> <sport>
//!   <dport>\r\n`, or `TCP6` with IPv6 addresses in their RFC 5952 text
//!   form; at most 107 bytes (an IPv6 line is at most 104).
//! - Version 2 (§2.2): a 16-byte binary header (12-byte signature, version
//!   and command, family and protocol, length), then the address block:
//!   for TCP over IPv4 (`\x11`) 12 bytes, source and destination address,
//!   source and destination port, network byte order (28 in all); for TCP
//!   over IPv6 (`\x21`) 36 bytes laid out the same (52 in all).
//! - `LOCAL` (v2 command 0x0, §2.2): for connections lastack opens on its
//!   own behalf (health checks); no addresses.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use crate::config::ProxyProtocol;
use crate::wire::ip::to_ipv6;

/// The v2 signature (§2.2).
pub const V2_SIGNATURE: [u8; 12] = [
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
];
/// Longest v1 line the spec allows (§2.1), and so the buffer callers need.
pub const MAX_LEN: usize = 107;
/// Length of a v2 header for TCP over IPv4.
pub const V2_TCP4_LEN: usize = 28;
/// Length of a v2 header for TCP over IPv6.
pub const V2_TCP6_LEN: usize = 52;

/// Version 2, command PROXY (high nibble version 2, low nibble command 1).
const V2_PROXY: u8 = 0x21;
/// Version 2, command LOCAL.
const V2_LOCAL: u8 = 0x20;
/// Address family AF_INET (high nibble 1), protocol STREAM (low nibble 1).
const V2_TCP4: u8 = 0x11;
/// Address family AF_INET6 (high nibble 2), protocol STREAM.
const V2_TCP6: u8 = 0x21;
/// AF_UNSPEC, UNSPEC: used with LOCAL.
const V2_UNSPEC: u8 = 0x00;

/// Writes the version-1 line for a TCP connection from `client` to `vip`
/// (`TCP4` or `TCP6` by the client's family); returns its length.
pub fn encode_v1(client: SocketAddr, vip: SocketAddr, out: &mut [u8; MAX_LEN]) -> usize {
    let family = if client.is_ipv6() { "TCP6" } else { "TCP4" };
    let mut cursor = &mut out[..];
    let room = cursor.len();
    write!(
        cursor,
        "PROXY {family} {} {} {} {}\r\n",
        client.ip(),
        vip.ip(),
        client.port(),
        vip.port()
    )
    .expect("a line is at most 104 bytes");
    room - cursor.len()
}

/// Writes the version-2 header for a TCP connection from `client` to
/// `vip`; returns its length (28 for IPv4, 52 for IPv6).
pub fn encode_v2(client: SocketAddr, vip: SocketAddr, out: &mut [u8; MAX_LEN]) -> usize {
    out[..12].copy_from_slice(&V2_SIGNATURE);
    out[12] = V2_PROXY;
    let addresses = match (client.ip(), vip.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            out[13] = V2_TCP4;
            out[16..20].copy_from_slice(&src.octets());
            out[20..24].copy_from_slice(&dst.octets());
            8
        }
        (src, dst) => {
            out[13] = V2_TCP6;
            // IPv4-mapped for an IPv4 one: only for a client and VIP of
            // different families, which a flow never has.
            out[16..32].copy_from_slice(&to_ipv6(src).octets());
            out[32..48].copy_from_slice(&to_ipv6(dst).octets());
            32
        }
    };
    let ports = 16 + addresses;
    out[ports..ports + 2].copy_from_slice(&client.port().to_be_bytes());
    out[ports + 2..ports + 4].copy_from_slice(&vip.port().to_be_bytes());
    out[14..16].copy_from_slice(&((addresses + 4) as u16).to_be_bytes());
    ports + 4
}

/// Writes a version-2 LOCAL header (no addresses); returns its length (16).
pub fn encode_v2_local(out: &mut [u8; MAX_LEN]) -> usize {
    out[..12].copy_from_slice(&V2_SIGNATURE);
    out[12] = V2_LOCAL;
    out[13] = V2_UNSPEC;
    out[14..16].copy_from_slice(&0u16.to_be_bytes());
    16
}

/// The header a pool's setting calls for; 0 bytes for `none`.
pub fn encode(
    version: ProxyProtocol,
    client: SocketAddr,
    vip: SocketAddr,
    out: &mut [u8; MAX_LEN],
) -> usize {
    match version {
        ProxyProtocol::None => 0,
        ProxyProtocol::V1 => encode_v1(client, vip, out),
        ProxyProtocol::V2 => encode_v2(client, vip, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A v2 header written by HAProxy, as seen on the wire by its backend
    /// (172.19.0.1:42578 -> 172.19.0.3:80).
    const HAPROXY_V2: [u8; 28] = [
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00,
        0x0c, 0xac, 0x13, 0x00, 0x01, 0xac, 0x13, 0x00, 0x03, 0xa6, 0x52, 0x00, 0x50,
    ];

    /// A v1 line written by nginx's stream module, as seen by its backend.
    const NGINX_V1: &[u8] = b"PROXY TCP4 172.19.0.1 172.19.0.3 42272 80\r\n";

    #[test]
    fn v2_matches_haproxy_byte_for_byte() {
        let mut out = [0u8; MAX_LEN];
        let n = encode_v2(addr("172.19.0.1:42578"), addr("172.19.0.3:80"), &mut out);
        assert_eq!(&out[..n], &HAPROXY_V2);
    }

    #[test]
    fn v1_matches_nginx_byte_for_byte() {
        let mut out = [0u8; MAX_LEN];
        let n = encode_v1(addr("172.19.0.1:42272"), addr("172.19.0.3:80"), &mut out);
        assert_eq!(&out[..n], NGINX_V1);
    }

    /// A v2 header for TCP over IPv6 written by HAProxy 2.6
    /// (`send-proxy-v2`), as its backend received it
    /// ([fd77::1]:42578 -> [fd77::2]:8000).
    const HAPROXY_V2_TCP6: [u8; 52] = [
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x21, 0x00,
        0x24, 0xfd, 0x77, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x01, 0xfd, 0x77, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x02, 0xa6, 0x52, 0x1f, 0x40,
    ];

    /// The v1 line HAProxy 2.6 writes (`send-proxy`) for an IPv6 client.
    const HAPROXY_V1_TCP6: &[u8] = b"PROXY TCP6 fd77::1 fd77::2 42272 8001\r\n";

    #[test]
    fn ipv6_headers_match_haproxy_byte_for_byte() {
        let mut out = [0u8; MAX_LEN];
        let n = encode_v2(addr("[fd77::1]:42578"), addr("[fd77::2]:8000"), &mut out);
        assert_eq!(&out[..n], &HAPROXY_V2_TCP6);
        let n = encode_v1(addr("[fd77::1]:42272"), addr("[fd77::2]:8001"), &mut out);
        assert_eq!(&out[..n], HAPROXY_V1_TCP6);
    }

    /// The spec's own IPv6 example (§2.1), "PROXY TCP6" with the
    /// addresses in text form; and the longest IPv6 line (104 bytes).
    #[test]
    fn v1_over_ipv6_follows_the_spec() {
        let mut out = [0u8; MAX_LEN];
        let n = encode_v1(
            addr("[2001:db8::1]:56324"),
            addr("[2001:db8::10]:443"),
            &mut out,
        );
        assert_eq!(
            &out[..n],
            b"PROXY TCP6 2001:db8::1 2001:db8::10 56324 443\r\n"
        );
        let widest = "[1111:2222:3333:4444:5555:6666:7777:8888]:65535";
        let n = encode_v1(addr(widest), addr(widest), &mut out);
        assert_eq!(n, 104);
    }

    #[test]
    fn the_longest_v1_line_fits_the_spec_limit() {
        let mut out = [0u8; MAX_LEN];
        let n = encode_v1(
            addr("255.255.255.255:65535"),
            addr("255.255.255.255:65535"),
            &mut out,
        );
        assert_eq!(
            &out[..n],
            b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"
        );
        assert!(n <= MAX_LEN);
    }

    #[test]
    fn local_has_no_addresses_and_none_writes_nothing() {
        let mut out = [0u8; MAX_LEN];
        assert_eq!(encode_v2_local(&mut out), 16);
        assert_eq!(&out[12..16], &[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(
            encode(
                ProxyProtocol::None,
                addr("1.2.3.4:5"),
                addr("6.7.8.9:10"),
                &mut out
            ),
            0
        );
    }

    proptest! {
        /// v1 reads back as the spec's space-separated fields; v2's
        /// address block decodes to the same endpoints.
        #[test]
        fn both_versions_carry_the_endpoints(src in any::<([u8; 4], u16)>(), dst in any::<([u8; 4], u16)>()) {
            let client = SocketAddr::new(src.0.into(), src.1);
            let vip = SocketAddr::new(dst.0.into(), dst.1);
            let mut out = [0u8; MAX_LEN];
            let n = encode_v1(client, vip, &mut out);
            let line = std::str::from_utf8(&out[..n]).unwrap();
            prop_assert!(line.ends_with("\r\n"));
            let fields: Vec<&str> = line.trim_end().split(' ').collect();
            prop_assert_eq!(&fields[..2], &["PROXY", "TCP4"]);
            prop_assert_eq!(fields[2].parse::<std::net::Ipv4Addr>().unwrap(), client.ip());
            prop_assert_eq!(fields[3].parse::<std::net::Ipv4Addr>().unwrap(), vip.ip());
            prop_assert_eq!(fields[4].parse::<u16>().unwrap(), client.port());
            prop_assert_eq!(fields[5].parse::<u16>().unwrap(), vip.port());
            let n = encode_v2(client, vip, &mut out);
            prop_assert_eq!(n, 28);
            prop_assert_eq!(u16::from_be_bytes([out[14], out[15]]), 12);
            prop_assert_eq!(&out[16..20], &src.0);
            prop_assert_eq!(u16::from_be_bytes([out[26], out[27]]), vip.port());
        }

        /// The same over IPv6: `TCP6` with addresses that parse back, and
        /// the 36-byte AF_INET6 block.
        #[test]
        fn both_versions_carry_ipv6_endpoints(src in any::<([u8; 16], u16)>(), dst in any::<([u8; 16], u16)>()) {
            let client = SocketAddr::new(std::net::Ipv6Addr::from(src.0).into(), src.1);
            let vip = SocketAddr::new(std::net::Ipv6Addr::from(dst.0).into(), dst.1);
            let mut out = [0u8; MAX_LEN];
            let n = encode_v1(client, vip, &mut out);
            prop_assert!(n <= 104);
            let line = std::str::from_utf8(&out[..n]).unwrap();
            let fields: Vec<&str> = line.trim_end().split(' ').collect();
            prop_assert_eq!(&fields[..2], &["PROXY", "TCP6"]);
            prop_assert_eq!(fields[2].parse::<std::net::Ipv6Addr>().unwrap(), client.ip());
            prop_assert_eq!(fields[3].parse::<std::net::Ipv6Addr>().unwrap(), vip.ip());
            prop_assert_eq!(fields[4].parse::<u16>().unwrap(), client.port());
            prop_assert_eq!(fields[5].parse::<u16>().unwrap(), vip.port());
            let n = encode_v2(client, vip, &mut out);
            prop_assert_eq!(n, V2_TCP6_LEN);
            prop_assert_eq!(out[13], 0x21);
            prop_assert_eq!(u16::from_be_bytes([out[14], out[15]]), 36);
            prop_assert_eq!(&out[16..32], &src.0);
            prop_assert_eq!(&out[32..48], &dst.0);
            prop_assert_eq!(u16::from_be_bytes([out[48], out[49]]), client.port());
            prop_assert_eq!(u16::from_be_bytes([out[50], out[51]]), vip.port());
        }
    }
}
