//! SYN cookies (RFC 4987 §3.6): when the SYN queue is full the listener
//! answers with an ISN that encodes the connection, keeps no state, and
//! rebuilds the connection from the final ACK.
//!
//! Cookie layout (32 bits): `t` (5 bits, a 64-second counter) | MSS index
//! (3 bits) | 24 bits of SipHash over the secret, the 4-tuple, `t` and the
//! client's ISN. A cookie is valid for the current and the two previous
//! counter values (64–192 s), and for the next one (another instance's
//! clock a little ahead, see `keys`).
//!
//! Window scale and SACK-permitted do not fit in the ISN; as Linux does, we
//! carry them in the low 6 bits of our TSval when the client sent
//! timestamps, and read them back from the TSecr of its ACK. Without
//! timestamps a cookie connection has no window scaling and no SACK:
//! deliberate, and what Linux does too.

use super::isn::{keyed_hash, Secret};
use super::seq::Seq;
use super::time::Instant;
use super::types::FourTuple;

/// MSS values a cookie can encode; the largest not above the peer's is used.
pub const MSS_TABLE: [u16; 8] = [536, 1200, 1300, 1380, 1400, 1440, 1460, 8960];

/// Seconds per cookie counter step.
const PERIOD_SECS: u64 = 64;
/// Counter steps a cookie stays valid (the current one and two before).
const MAX_AGE: u32 = 2;

/// How long a cookie stays valid at most.
pub const LIFETIME: std::time::Duration =
    std::time::Duration::from_secs(PERIOD_SECS * (MAX_AGE as u64 + 1));

/// Low bits of TSval that carry the options: 4 bits of window scale
/// (0xf = none), 1 bit of SACK-permitted, 1 bit of ECN (as Linux's
/// `cookie_init_timestamp`).
pub const TS_OPTION_BITS: u32 = 0x3f;
const TS_NO_WSCALE: u32 = 0xf;
const TS_SACK: u32 = 0x10;
const TS_ECN: u32 = 0x20;

fn counter(now: Instant) -> u32 {
    (now.micros() / 1_000_000 / PERIOD_SECS) as u32
}

fn hash24(secret: &Secret, tuple: &FourTuple, t: u32, client_isn: Seq) -> u32 {
    (keyed_hash(secret, tuple.local, tuple.remote, &[t, client_isn.0]) as u32) & 0x00ff_ffff
}

/// Index in [`MSS_TABLE`] for a peer that announced `mss` (536 if none).
pub fn mss_index(mss: Option<u16>) -> u8 {
    let mss = mss.unwrap_or(536);
    MSS_TABLE.iter().rposition(|&m| m <= mss).unwrap_or(0) as u8
}

/// The cookie ISN for a SYN from `tuple` whose sequence number is `client_isn`.
pub fn make(
    secret: &Secret,
    tuple: &FourTuple,
    client_isn: Seq,
    mss_index: u8,
    now: Instant,
) -> Seq {
    let t = counter(now) & 0x1f;
    Seq((t << 27) | (u32::from(mss_index & 7) << 24) | hash24(secret, tuple, t, client_isn))
}

/// Checks the cookie returned in an ACK (`ack - 1`) for a SYN whose
/// sequence number was `client_isn` (`seq - 1`); returns the MSS index.
pub fn check(
    secret: &Secret,
    tuple: &FourTuple,
    client_isn: Seq,
    cookie: Seq,
    now: Instant,
) -> Option<u8> {
    let t = cookie.0 >> 27;
    let current = counter(now);
    let age = (current & 0x1f).wrapping_sub(t) & 0x1f;
    // One step ahead is honoured too: in a cluster the instance that
    // minted the cookie may have crossed a step boundary a little before
    // this one (clocks agree to milliseconds, not exactly).
    if age > MAX_AGE && age != 0x1f {
        return None;
    }
    let hash = hash24(secret, tuple, t, client_isn);
    (cookie.0 & 0x00ff_ffff == hash).then_some(((cookie.0 >> 24) & 7) as u8)
}

/// TSval for a cookie SYN-ACK: our clock with the low bits replaced by the
/// options, kept at or below the clock so it never runs ahead.
pub fn encode_ts(tsval: u32, window_scale: Option<u8>, sack: bool, ecn: bool) -> u32 {
    let mut bits = window_scale.map_or(TS_NO_WSCALE, |s| u32::from(s.min(14)));
    if sack {
        bits |= TS_SACK;
    }
    if ecn {
        bits |= TS_ECN;
    }
    (tsval.wrapping_sub(TS_OPTION_BITS + 1) & !TS_OPTION_BITS) | bits
}

/// The options encoded in an echoed TSecr: (window scale, SACK-permitted,
/// ECN).
pub fn decode_ts(tsecr: u32) -> (Option<u8>, bool, bool) {
    let ws = tsecr & 0xf;
    (
        (ws != TS_NO_WSCALE).then_some(ws as u8),
        tsecr & TS_SACK != 0,
        tsecr & TS_ECN != 0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple() -> FourTuple {
        FourTuple {
            local: "10.0.0.1:80".parse().unwrap(),
            remote: "10.0.0.2:40000".parse().unwrap(),
        }
    }

    #[test]
    fn a_cookie_validates_for_its_syn_only() {
        let secret = Secret([3; 16]);
        let now = Instant::from_millis(1_000_000);
        let cookie = make(&secret, &tuple(), Seq(1000), 6, now);
        assert_eq!(check(&secret, &tuple(), Seq(1000), cookie, now), Some(6));
        assert_eq!(
            check(&secret, &tuple(), Seq(1001), cookie, now),
            None,
            "another SYN"
        );
        let other = FourTuple {
            remote: "10.0.0.2:40001".parse().unwrap(),
            ..tuple()
        };
        assert_eq!(
            check(&secret, &other, Seq(1000), cookie, now),
            None,
            "another port"
        );
        assert_eq!(
            check(&Secret([4; 16]), &tuple(), Seq(1000), cookie, now),
            None,
            "another key"
        );
        assert_eq!(
            check(&secret, &tuple(), Seq(1000), Seq(cookie.0 ^ 1), now),
            None,
            "forged"
        );
    }

    #[test]
    fn cookies_expire() {
        let secret = Secret([3; 16]);
        let minted = Instant::from_millis(64_000 * 100);
        let cookie = make(&secret, &tuple(), Seq(5), 0, minted);
        let later = |s: u64| Instant::from_millis(64_000 * 100 + s * 1000);
        assert!(check(&secret, &tuple(), Seq(5), cookie, later(127)).is_some());
        assert!(check(&secret, &tuple(), Seq(5), cookie, later(192)).is_none());
    }

    #[test]
    fn a_cookie_from_a_clock_one_step_ahead_is_honoured_two_are_not() {
        let secret = Secret([3; 16]);
        let at = |s: u64| Instant::from_millis(64_000 * 100 + s * 1000);
        // Minted just after a step boundary, checked just before it.
        let cookie = make(&secret, &tuple(), Seq(5), 0, at(64));
        assert!(check(&secret, &tuple(), Seq(5), cookie, at(63)).is_some());
        let far = make(&secret, &tuple(), Seq(5), 0, at(128));
        assert!(check(&secret, &tuple(), Seq(5), far, at(63)).is_none());
    }

    #[test]
    fn mss_index_picks_the_largest_not_above() {
        assert_eq!(MSS_TABLE[mss_index(Some(1460)) as usize], 1460);
        assert_eq!(MSS_TABLE[mss_index(Some(1450)) as usize], 1440);
        assert_eq!(MSS_TABLE[mss_index(Some(100)) as usize], 536);
        assert_eq!(MSS_TABLE[mss_index(None) as usize], 536);
    }

    #[test]
    fn options_survive_the_timestamp() {
        for (ws, sack, ecn) in [
            (Some(7), true, true),
            (None, false, false),
            (Some(0), false, true),
            (Some(14), true, false),
        ] {
            let ts = encode_ts(123_456_789, ws, sack, ecn);
            assert!(ts <= 123_456_789);
            assert_eq!(decode_ts(ts), (ws, sack, ecn));
        }
    }
}
