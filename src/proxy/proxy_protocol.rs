//! The PROXY protocol header (HAProxy's "proxy-protocol.txt", versions 1
//! and 2), sent first on a backend connection so the backend sees the
//! client's address. Written into the caller's buffer: no allocation.
//!
//! - Version 1 (§2.1): one text line, `PROXY TCP4 <src> <dst> <sport>
//!   <dport>\r\n`, at most 107 bytes.
//! - Version 2 (§2.2): a 16-byte binary header (12-byte signature, version
//!   and command, family and protocol, length), then for TCP over IPv4 the
//!   12-byte address block: source and destination address, source and
//!   destination port, network byte order. 28 bytes.
//! - `LOCAL` (v2 command 0x0, §2.2): for connections lastack opens on its
//!   own behalf (health checks); no addresses.

use std::io::Write;
use std::net::SocketAddrV4;

use crate::config::ProxyProtocol;

/// The v2 signature (§2.2).
pub const V2_SIGNATURE: [u8; 12] = [
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
];
/// Longest v1 line the spec allows (§2.1), and so the buffer callers need.
pub const MAX_LEN: usize = 107;
/// Length of a v2 header for TCP over IPv4.
pub const V2_TCP4_LEN: usize = 28;

/// Version 2, command PROXY (high nibble version 2, low nibble command 1).
const V2_PROXY: u8 = 0x21;
/// Version 2, command LOCAL.
const V2_LOCAL: u8 = 0x20;
/// Address family AF_INET (high nibble 1), protocol STREAM (low nibble 1).
const V2_TCP4: u8 = 0x11;
/// AF_UNSPEC, UNSPEC: used with LOCAL.
const V2_UNSPEC: u8 = 0x00;

/// Writes the version-1 line for a TCP connection from `client` to `vip`;
/// returns its length.
pub fn encode_v1(client: SocketAddrV4, vip: SocketAddrV4, out: &mut [u8; MAX_LEN]) -> usize {
    let mut cursor = &mut out[..];
    let room = cursor.len();
    write!(
        cursor,
        "PROXY TCP4 {} {} {} {}\r\n",
        client.ip(),
        vip.ip(),
        client.port(),
        vip.port()
    )
    .expect("an IPv4 line is at most 56 bytes");
    room - cursor.len()
}

/// Writes the version-2 header for a TCP connection from `client` to
/// `vip`; returns its length (28).
pub fn encode_v2(client: SocketAddrV4, vip: SocketAddrV4, out: &mut [u8; MAX_LEN]) -> usize {
    out[..12].copy_from_slice(&V2_SIGNATURE);
    out[12] = V2_PROXY;
    out[13] = V2_TCP4;
    out[14..16].copy_from_slice(&12u16.to_be_bytes());
    out[16..20].copy_from_slice(&client.ip().octets());
    out[20..24].copy_from_slice(&vip.ip().octets());
    out[24..26].copy_from_slice(&client.port().to_be_bytes());
    out[26..28].copy_from_slice(&vip.port().to_be_bytes());
    V2_TCP4_LEN
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
    client: SocketAddrV4,
    vip: SocketAddrV4,
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

    fn addr(s: &str) -> SocketAddrV4 {
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
            let client = SocketAddrV4::new(src.0.into(), src.1);
            let vip = SocketAddrV4::new(dst.0.into(), dst.1);
            let mut out = [0u8; MAX_LEN];
            let n = encode_v1(client, vip, &mut out);
            let line = std::str::from_utf8(&out[..n]).unwrap();
            prop_assert!(line.ends_with("\r\n"));
            let fields: Vec<&str> = line.trim_end().split(' ').collect();
            prop_assert_eq!(&fields[..2], &["PROXY", "TCP4"]);
            prop_assert_eq!(fields[2].parse::<std::net::Ipv4Addr>().unwrap(), *client.ip());
            prop_assert_eq!(fields[3].parse::<std::net::Ipv4Addr>().unwrap(), *vip.ip());
            prop_assert_eq!(fields[4].parse::<u16>().unwrap(), client.port());
            prop_assert_eq!(fields[5].parse::<u16>().unwrap(), vip.port());
            let n = encode_v2(client, vip, &mut out);
            prop_assert_eq!(n, 28);
            prop_assert_eq!(u16::from_be_bytes([out[14], out[15]]), 12);
            prop_assert_eq!(&out[16..20], &client.ip().octets());
            prop_assert_eq!(u16::from_be_bytes([out[26], out[27]]), vip.port());
        }
    }
}
