//! Initial sequence numbers, RFC 6528 §3:
//! `ISN = M + F(localip, localport, remoteip, remoteport, secretkey)`,
//! where M is a 4 µs timer and F is SipHash-2-4 keyed by a 128-bit secret
//! the caller passes in (the engine has no RNG).
//!
//! The same keyed hash also gives each connection its timestamp offset
//! (RFC 7323 §7.1, so TSval does not leak the host's uptime): one SipHash
//! per connection yields both ([`tuple_keys`]). It also keys the SYN
//! cookies.

use core::hash::Hasher;
use std::net::IpAddr;

use super::types::Endpoint;

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
pub fn keyed_hash(secret: &Secret, local: Endpoint, remote: Endpoint, extra: &[u32]) -> u64 {
    let mut hasher = SipHasher24::new_with_key(&secret.0);
    write_ip(&mut hasher, local.ip());
    write_ip(&mut hasher, remote.ip());
    hasher.write_u16(local.port());
    hasher.write_u16(remote.port());
    for word in extra {
        hasher.write_u32(*word);
    }
    hasher.finish()
}

/// Feeds an address's octets (4 or 16: the two families never collide, as
/// a flow's addresses are of one family and the lengths differ).
fn write_ip(hasher: &mut SipHasher24, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => hasher.write(&v4.octets()),
        IpAddr::V6(v6) => hasher.write(&v6.octets()),
    }
}

/// The two per-connection secrets of a 4-tuple, from one SipHash: the low
/// half is RFC 6528's F, the high half the timestamp offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TupleKeys {
    pub isn_offset: u32,
    pub ts_offset: u32,
}

/// Derives [`TupleKeys`] for a connection.
pub fn tuple_keys(secret: &Secret, local: Endpoint, remote: Endpoint) -> TupleKeys {
    let hash = keyed_hash(secret, local, remote, &[]);
    TupleKeys {
        isn_offset: hash as u32,
        ts_offset: (hash >> 32) as u32,
    }
}

/// RFC 6528 §3: the ISN for a connection opened at `now`.
pub fn initial_sequence_number(keys: TupleKeys, now: Instant) -> Seq {
    let m = (now.micros() / 4) as u32;
    Seq(m.wrapping_add(keys.isn_offset))
}

/// The seed of the stack's hash maps, so that the buckets an attacker's
/// 4-tuples fall into depend on the secret.
pub fn map_seed(secret: &Secret) -> u64 {
    let mut hasher = SipHasher24::new_with_key(&secret.0);
    hasher.write(b"lastack 4-tuple map");
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Endpoint {
        s.parse::<std::net::SocketAddr>().unwrap().into()
    }

    #[test]
    fn same_tuple_later_gets_a_later_isn_by_the_clock() {
        let secret = Secret([7; 16]);
        let (l, r) = (addr("10.0.0.1:80"), addr("10.0.0.2:40000"));
        let keys = tuple_keys(&secret, l, r);
        let a = initial_sequence_number(keys, Instant::from_millis(1000));
        let b = initial_sequence_number(keys, Instant::from_millis(1004));
        // 4 ms is 1000 ticks of the 4 µs clock.
        assert_eq!(b - a, 1000);
        assert_ne!(a, b);
    }

    #[test]
    fn other_tuples_and_secrets_are_unpredictable() {
        let secret = Secret([7; 16]);
        let now = Instant::from_millis(5);
        let isn = |secret: &Secret, remote: &str| {
            initial_sequence_number(tuple_keys(secret, addr("10.0.0.1:80"), addr(remote)), now)
        };
        let base = isn(&secret, "10.0.0.2:40000");
        let port = isn(&secret, "10.0.0.2:40001");
        let key = isn(&Secret([8; 16]), "10.0.0.2:40000");
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
