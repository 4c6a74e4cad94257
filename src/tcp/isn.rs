//! Initial sequence numbers, RFC 6528 §3:
//! `ISN = M + F(localip, localport, remoteip, remoteport, secretkey)`,
//! where M is a 4 µs timer and F is SipHash-2-4 keyed by a 128-bit secret
//! the caller passes in (the engine has no RNG).
//!
//! The same keyed hash also gives each connection its timestamp offset
//! (RFC 7323 §7.1, so TSval does not leak the host's uptime) and keys the
//! SYN cookies.

use core::hash::Hasher;
use std::net::SocketAddrV4;

use siphasher::sip::SipHasher24;

use super::seq::Seq;
use super::time::Instant;

/// A 128-bit secret for SipHash.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Secret(pub [u8; 16]);

impl core::fmt::Debug for Secret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Keyed hash of a connection's 4-tuple and some extra words.
pub fn keyed_hash(
    secret: &Secret,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    extra: &[u32],
) -> u64 {
    let mut hasher = SipHasher24::new_with_key(&secret.0);
    hasher.write(&local.ip().octets());
    hasher.write(&remote.ip().octets());
    hasher.write_u16(local.port());
    hasher.write_u16(remote.port());
    for word in extra {
        hasher.write_u32(*word);
    }
    hasher.finish()
}

/// RFC 6528 §3: the ISN for a connection opened at `now`.
pub fn initial_sequence_number(
    secret: &Secret,
    now: Instant,
    local: SocketAddrV4,
    remote: SocketAddrV4,
) -> Seq {
    let m = (now.micros() / 4) as u32;
    let f = keyed_hash(secret, local, remote, &[]) as u32;
    Seq(m.wrapping_add(f))
}

/// The seed of the stack's hash maps, so that the buckets an attacker's
/// 4-tuples fall into depend on the secret.
pub fn map_seed(secret: &Secret) -> u64 {
    let mut hasher = SipHasher24::new_with_key(&secret.0);
    hasher.write(b"lastack 4-tuple map");
    hasher.finish()
}

/// A per-connection offset for TSval (RFC 7323 §7.1).
pub fn timestamp_offset(secret: &Secret, local: SocketAddrV4, remote: SocketAddrV4) -> u32 {
    (keyed_hash(secret, local, remote, &[0x7473]) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn same_tuple_later_gets_a_later_isn_by_the_clock() {
        let secret = Secret([7; 16]);
        let (l, r) = (addr("10.0.0.1:80"), addr("10.0.0.2:40000"));
        let a = initial_sequence_number(&secret, Instant::from_millis(1000), l, r);
        let b = initial_sequence_number(&secret, Instant::from_millis(1004), l, r);
        // 4 ms is 1000 ticks of the 4 µs clock.
        assert_eq!(b - a, 1000);
        assert_ne!(a, b);
    }

    #[test]
    fn other_tuples_and_secrets_are_unpredictable() {
        let secret = Secret([7; 16]);
        let now = Instant::from_millis(5);
        let base =
            initial_sequence_number(&secret, now, addr("10.0.0.1:80"), addr("10.0.0.2:40000"));
        let port =
            initial_sequence_number(&secret, now, addr("10.0.0.1:80"), addr("10.0.0.2:40001"));
        let key = initial_sequence_number(
            &Secret([8; 16]),
            now,
            addr("10.0.0.1:80"),
            addr("10.0.0.2:40000"),
        );
        // Neighbouring ports and another key land far apart, not a step apart.
        assert!(
            (port.diff(base)).unsigned_abs() > 1 << 16,
            "{base:?} {port:?}"
        );
        assert!(
            (key.diff(base)).unsigned_abs() > 1 << 16,
            "{base:?} {key:?}"
        );
    }
}
