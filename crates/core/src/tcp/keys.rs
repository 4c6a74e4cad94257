//! What a handshake is made from: the keys and the clock behind a
//! connection's ISN (RFC 6528 §3), its timestamp offset (RFC 7323 §7.1) and
//! its SYN cookie (RFC 4987 §3.6).
//!
//! Several instances behind one VIP (ECMP) must agree on all three, or a
//! handshake whose final ACK reaches another instance than its SYN is
//! reset, and a connection rebuilt from a cookie elsewhere sends TSvals
//! the client's PAWS check (RFC 7323 §5) drops. So the caller hands in a
//! shared key and a shared clock: a clock offset that turns the shard's
//! `now` into Unix time. The engine still reads no clock.
//!
//! Rotation: [`HandshakeKeys::current`] mints, [`HandshakeKeys::accepted`]
//! are honoured in cookies too; a key dropped from either is still honoured
//! for one cookie lifetime ([`cookie::LIFETIME`]), so cookies minted just
//! before a change stay good. Across a cluster, a new key is first added to
//! `accepted` everywhere, then made `current` (see `docs/cluster.md`).

use super::cookie;
use super::isn::{Secret, TupleKeys};
use super::time::Instant;

/// Keys and clock of new handshakes (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeKeys {
    /// Mints cookies, ISNs and timestamp offsets.
    pub current: Secret,
    /// Also honoured in cookies (a rotation in progress).
    pub accepted: Vec<Secret>,
    /// Microseconds added to the caller's `now` to read the handshake
    /// clock (cookie counter, ISN timer, TSval): Unix time in a shard.
    pub clock_offset: u64,
    /// This instance's id in the cluster (below [`MAX_INSTANCES`]), carried
    /// in the low bits of every TSval so that another instance that gets a
    /// segment of one of our flows can forward it here; `None`: no
    /// forwarding.
    pub owner: Option<u8>,
    /// The ids (bit `1 << id`) of the other instances segments may be
    /// forwarded to.
    pub peers: u16,
}

/// Most instances a cluster that forwards may have: ids take the low
/// [`OWNER_BITS`] bits of TSval.
pub const MAX_INSTANCES: u8 = 16;
/// TSval bits that carry the owner's id: the clock's granularity becomes
/// 16 ms (RFC 7323 §5.4 allows 1 ms to 1 s per tick), and stays monotonic.
pub const OWNER_BITS: u32 = 4;
const OWNER_MASK: u32 = (1 << OWNER_BITS) - 1;

/// `raw` with the owner's id in its low bits (unchanged without one).
pub fn tag_tsval(raw: u32, owner: Option<u8>) -> u32 {
    match owner {
        Some(id) => (raw & !OWNER_MASK) | (u32::from(id) & OWNER_MASK),
        None => raw,
    }
}

/// The owner named by an echoed TSval.
pub fn owner_of(tsecr: u32) -> u8 {
    (tsecr & OWNER_MASK) as u8
}

impl HandshakeKeys {
    /// One key and the caller's own clock (a single instance, tests).
    pub fn solo(secret: Secret) -> Self {
        Self {
            current: secret,
            accepted: Vec::new(),
            clock_offset: 0,
            owner: None,
            peers: 0,
        }
    }

    /// The handshake clock at `now`.
    pub fn clock(&self, now: Instant) -> Instant {
        Instant(now.0.wrapping_add(self.clock_offset))
    }

    /// A connection's timestamp offset (RFC 7323 §7.1) from its tuple's
    /// keys: the per-connection offset plus the handshake clock's, so its
    /// TSval reads the handshake clock.
    pub fn ts_offset(&self, tuple: TupleKeys) -> u32 {
        tuple
            .ts_offset
            .wrapping_add((self.clock_offset / 1000) as u32)
    }

    fn contains(&self, secret: &Secret) -> bool {
        self.current == *secret || self.accepted.contains(secret)
    }
}

/// The live keys plus the ones recently dropped, still honoured in cookies.
#[derive(Debug, Clone)]
pub struct KeyRing {
    keys: HandshakeKeys,
    /// Dropped keys and when they stop being honoured.
    retired: Vec<(Secret, Instant)>,
}

impl KeyRing {
    pub fn new(keys: HandshakeKeys) -> Self {
        Self {
            keys,
            retired: Vec::new(),
        }
    }

    pub fn keys(&self) -> &HandshakeKeys {
        &self.keys
    }

    /// Replaces the keys at `now`; any key dropped is honoured in cookies
    /// for [`cookie::LIFETIME`] more.
    pub fn replace(&mut self, now: Instant, keys: HandshakeKeys) {
        let until = now + cookie::LIFETIME;
        self.retired
            .retain(|(secret, expires)| *expires > now && !keys.contains(secret));
        let old = std::iter::once(self.keys.current).chain(self.keys.accepted.iter().copied());
        for secret in old.collect::<Vec<_>>() {
            if !keys.contains(&secret) && !self.retired.iter().any(|(s, _)| *s == secret) {
                self.retired.push((secret, until));
            }
        }
        self.keys = keys;
    }

    /// Every key a cookie may carry at `now`: the current one first.
    pub fn honoured(&self, now: Instant) -> impl Iterator<Item = &Secret> {
        std::iter::once(&self.keys.current)
            .chain(self.keys.accepted.iter())
            .chain(
                self.retired
                    .iter()
                    .filter(move |(_, until)| *until > now)
                    .map(|(secret, _)| secret),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn keys(current: u8, accepted: &[u8]) -> HandshakeKeys {
        HandshakeKeys {
            current: Secret([current; 16]),
            accepted: accepted.iter().map(|&k| Secret([k; 16])).collect(),
            clock_offset: 0,
            owner: None,
            peers: 0,
        }
    }

    fn honoured(ring: &KeyRing, now: Instant) -> Vec<u8> {
        ring.honoured(now).map(|s| s.0[0]).collect()
    }

    #[test]
    fn a_tagged_tsval_names_its_owner_and_never_runs_backwards() {
        let mut last = 0;
        for raw in 1000..1100u32 {
            let tagged = tag_tsval(raw, Some(11));
            assert_eq!(owner_of(tagged), 11);
            assert!(tagged >= last, "{raw}: {tagged} after {last}");
            assert!(raw.abs_diff(tagged) < 16);
            last = tagged;
        }
        assert_eq!(tag_tsval(1234, None), 1234);
    }

    #[test]
    fn a_dropped_key_is_honoured_for_one_cookie_lifetime() {
        let mut ring = KeyRing::new(keys(1, &[]));
        let start = Instant::from_millis(5_000);
        ring.replace(start, keys(2, &[]));
        assert_eq!(honoured(&ring, start), [2, 1]);
        let almost = start + (cookie::LIFETIME - Duration::from_millis(1));
        assert_eq!(honoured(&ring, almost), [2, 1]);
        assert_eq!(honoured(&ring, start + cookie::LIFETIME), [2]);
    }

    #[test]
    fn a_key_brought_back_is_live_again_and_not_retired_twice() {
        let mut ring = KeyRing::new(keys(1, &[2]));
        let now = Instant::from_millis(1_000);
        // Staged rotation: 2 becomes current, 1 stays accepted.
        ring.replace(now, keys(2, &[1]));
        assert_eq!(honoured(&ring, now), [2, 1]);
        // 1 dropped: retired; then brought back: live, not listed twice.
        ring.replace(now, keys(2, &[]));
        ring.replace(now, keys(2, &[1]));
        assert_eq!(honoured(&ring, now), [2, 1]);
        assert_eq!(honoured(&ring, now + cookie::LIFETIME), [2, 1]);
    }
}
