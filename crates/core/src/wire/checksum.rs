//! The Internet checksum: RFC 1071 (computation), RFC 1624 (incremental
//! update) and the TCP pseudo-headers of RFC 9293 §3.1 (IPv4) and
//! RFC 8200 §8.1 (IPv6).
//!
//! The sum is accumulated in a `u64` over 32-bit big-endian words, which is
//! the same one's-complement sum as RFC 1071's 16-bit loop (the end-around
//! carry is associative, RFC 1071 §2(B)) at a quarter of the additions; it
//! cannot overflow for any buffer shorter than 2^32 words.

use std::net::IpAddr;

/// One's-complement sum of `data` as 16-bit big-endian words, folded to 16
/// bits but not complemented. An odd trailing byte is padded with zero
/// (RFC 1071 §4.1).
#[inline]
pub fn data(data: &[u8]) -> u16 {
    fold(accumulate(0, data))
}

/// Adds `data` to a running 64-bit accumulator (see the module docs).
#[inline]
pub fn accumulate(mut acc: u64, data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        acc += u64::from(u32::from_be_bytes([word[0], word[1], word[2], word[3]]));
    }
    let rest = words.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc + u64::from(u32::from_be_bytes(tail))
}

/// Folds a 64-bit accumulator to 16 bits with end-around carry.
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// One's-complement sum of already-folded partial sums.
#[inline]
pub fn combine(parts: &[u16]) -> u16 {
    fold(parts.iter().map(|&p| u64::from(p)).sum())
}

/// Partial sum of the pseudo-header used by TCP: for IPv4 (RFC 9293
/// §3.1) source, destination, zero, protocol, 16-bit TCP length; for IPv6
/// (RFC 8200 §8.1) source, destination, 32-bit upper-layer length, zeros,
/// next header. Both are the addresses' words plus the length plus the
/// protocol, so one sum serves both (the families of `src` and `dst`
/// match for any real flow).
#[inline]
pub fn pseudo_header(src: IpAddr, dst: IpAddr, protocol: u8, length: u32) -> u16 {
    let acc = address_sum(src) + address_sum(dst) + u64::from(protocol) + u64::from(length);
    fold(acc)
}

/// The sum of an address's 32-bit words.
#[inline]
fn address_sum(addr: IpAddr) -> u64 {
    match addr {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            (0..4).map(|i| u64::from((bits >> (32 * i)) as u32)).sum()
        }
    }
}

/// RFC 1624 eqn. 3: the new checksum after one 16-bit field changes from
/// `old` to `new`, without summing the packet again:
/// `HC' = ~(~HC + ~m + m')`.
#[inline]
pub fn update(checksum: u16, old: u16, new: u16) -> u16 {
    !combine(&[!checksum, !old, new])
}

/// Like [`update`] for a 32-bit field (an address or sequence number).
#[inline]
pub fn update_u32(checksum: u16, old: u32, new: u32) -> u16 {
    !combine(&[
        !checksum,
        !(old >> 16) as u16,
        !(old as u16),
        (new >> 16) as u16,
        new as u16,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 1071 §4.1's C reference, transcribed: 16-bit words, 32-bit sum,
    /// folded at the end.
    fn rfc1071_reference(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        let mut i = 0;
        while i + 1 < data.len() {
            sum += u32::from(u16::from_be_bytes([data[i], data[i + 1]]));
            i += 2;
        }
        if i < data.len() {
            sum += u32::from(data[i]) << 8;
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// One's complement has two zeros (0x0000 and 0xffff): equal as numbers.
    fn same_checksum(a: u16, b: u16) -> bool {
        a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0)
    }

    #[test]
    fn rfc1071_numerical_example() {
        // RFC 1071 §3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(data(&bytes), 0xddf2);
        assert_eq!(rfc1071_reference(&bytes), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(data(&[0xab]), 0xab00);
        assert_eq!(data(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(data(&[]), 0);
    }

    #[test]
    fn ipv4_header_of_a_captured_syn_verifies() {
        // IPv4 header of wire::captured::TCP_SYN: its checksum field is 0x1778.
        let header = &lastack_testkit::captured::TCP_SYN[14..34];
        assert_eq!(data(header), 0xffff, "a correct header sums to all ones");
        let mut zeroed = header.to_vec();
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(!data(&zeroed), 0x1778);
    }

    #[test]
    fn rfc1624_example_update() {
        // RFC 1624 §4: header checksum 0xdd2f, a field changes 0x5555 -> 0x3285,
        // the new checksum is 0x0000 (never -0 = 0xffff for the header, eqn. 3).
        assert_eq!(update(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    proptest! {
        #[test]
        fn matches_rfc1071_reference(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            prop_assert_eq!(!data(&bytes), rfc1071_reference(&bytes));
        }

        #[test]
        fn incremental_update_matches_full_recompute(
            mut bytes in proptest::collection::vec(any::<u8>(), 8..200),
            word in any::<prop::sample::Index>(),
            new in any::<u16>(),
        ) {
            if bytes.len() % 2 == 1 { bytes.pop(); }
            let at = word.index(bytes.len() / 2) * 2;
            let before = !data(&bytes);
            let old = u16::from_be_bytes([bytes[at], bytes[at + 1]]);
            bytes[at..at + 2].copy_from_slice(&new.to_be_bytes());
            let after = !data(&bytes);
            prop_assert!(same_checksum(update(before, old, new), after));
        }

        #[test]
        fn incremental_u32_update_matches_full_recompute(
            mut bytes in proptest::collection::vec(any::<u8>(), 8..200),
            word in any::<prop::sample::Index>(),
            new in any::<u32>(),
        ) {
            if bytes.len() % 2 == 1 { bytes.pop(); }
            let at = word.index(bytes.len() / 2 - 1) * 2;
            let before = !data(&bytes);
            let old = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
            bytes[at..at + 4].copy_from_slice(&new.to_be_bytes());
            let after = !data(&bytes);
            prop_assert!(same_checksum(update_u32(before, old, new), after));
        }
    }
}
