//! Several instances behind one VIP (ECMP): a handshake whose SYN reached
//! one instance and whose final ACK reaches another completes there when
//! both share the cluster's keys and clock (`tcp::keys`); a key rotation
//! staged across them breaks no handshake.

use std::time::Duration;

use crate::harness::*;
use lastack::tcp::{CookieMode, HandshakeKeys, Instant, Secret, Stack, State};
use lastack::wire::{TcpFlags, TcpOptions, Timestamps};

/// Unix time of the test, in µs.
const UNIX_MICROS: u64 = 1_764_000_000_000_000;

const K1: Secret = Secret([0x11; 16]);
const K2: Secret = Secret([0x22; 16]);

/// An instance: its own shard secret, its own clock (`local_now`, when it
/// started differs), the cluster keys on the shared Unix clock.
fn instance(own: u8, local_now: Instant, current: Secret, accepted: &[Secret]) -> Harness {
    let mut cfg = config();
    cfg.syn_cookies = CookieMode::Always;
    cfg.timestamps = true;
    cfg.window_scaling = true;
    cfg.sack = true;
    cfg.recv_buffer = 256 * 1024;
    let mut h = Harness::new(cfg.clone());
    h.stack = Stack::new(cfg, Secret([own; 16]), 1024);
    h.now = local_now;
    set_keys(&mut h, current, accepted);
    h.listener = Some(h.stack.listen(LOCAL).unwrap());
    h
}

fn set_keys(h: &mut Harness, current: Secret, accepted: &[Secret]) {
    let keys = HandshakeKeys {
        current,
        accepted: accepted.to_vec(),
        clock_offset: UNIX_MICROS - h.now.micros(),
        owner: None,
        peers: 0,
    };
    h.stack.set_handshake_keys(h.now, keys);
}

/// Instance A started long ago, B recently: B's own clock is far behind
/// A's, so without the shared clock its TSvals would run backwards.
fn pair(a_keys: (Secret, &[Secret]), b_keys: (Secret, &[Secret])) -> (Harness, Harness) {
    let a = instance(1, Instant::from_millis(90_000_000), a_keys.0, a_keys.1);
    let b = instance(2, Instant::from_millis(2_000), b_keys.0, b_keys.1);
    (a, b)
}

const CLIENT_TS: u32 = 777_000;
const PORT: u16 = REMOTE.port();

/// The client's SYN from `port` to `a`: the cookie SYN-ACK's (seq, TSval).
fn syn(a: &mut Harness, port: u16) -> (u32, u32) {
    let options = TcpOptions {
        mss: Some(1460),
        window_scale: Some(7),
        sack_permitted: true,
        timestamps: Some(Timestamps {
            tsval: CLIENT_TS,
            tsecr: 0,
        }),
        ..SEG.options
    };
    let minted = a.stack.stats().syn_cookies_sent;
    send!(a, src_port: port, seq: REMOTE_SEQ, flags: TcpFlags::SYN, options: options);
    let syn_ack = a.sent();
    assert_eq!(syn_ack.len(), 1);
    assert_eq!(a.stack.stats().syn_cookies_sent, minted + 1);
    (syn_ack[0].seq, syn_ack[0].options.timestamps.unwrap().tsval)
}

/// The client's final ACK from `port`, with a request, to `b`.
fn final_ack(b: &mut Harness, port: u16, cookie: u32, their_tsval: u32) {
    let options = TcpOptions {
        timestamps: Some(Timestamps {
            tsval: CLIENT_TS + 1,
            tsecr: their_tsval,
        }),
        ..SEG.options
    };
    send!(b, src_port: port, seq: REMOTE_SEQ + 1, ack: Some(cookie.wrapping_add(1)), window: 100, options: options, payload: b"GET /");
}

#[test]
fn a_handshake_begun_on_one_instance_completes_on_another() {
    let (mut a, mut b) = pair((K1, &[]), (K1, &[]));
    let (cookie, syn_ack_ts) = syn(&mut a, PORT);
    b.advance(Duration::from_millis(3));
    final_ack(&mut b, PORT, cookie, syn_ack_ts);
    let id = b
        .stack
        .accept(b.listener.unwrap(), TAG)
        .expect("rebuilt on B");
    assert_eq!(b.stack.state(id), Some(State::Established));
    assert_eq!(b.app_recv(id, 100), b"GET /");
    let info = b.stack.info(id).unwrap();
    assert_eq!(info.snd_wnd, 100 << 7, "window scale from A's TSval");
    // B's answer carries a TSval at or after A's SYN-ACK's: the client's
    // PAWS check (RFC 7323 §5) keeps it.
    b.app_send(id, b"200 OK");
    let reply = b.sent();
    let tsval = reply[0].options.timestamps.unwrap().tsval;
    let ahead = tsval.wrapping_sub(syn_ack_ts) as i32;
    assert!(
        (0..1000).contains(&ahead),
        "B's TSval {tsval} against the SYN-ACK's {syn_ack_ts}: {ahead} ms apart"
    );
    assert_eq!(b.stack.stats().syn_cookies_validated, 1);
}

#[test]
fn without_the_shared_key_the_other_instance_resets_at_once_and_counts_it() {
    let (mut a, mut b) = pair((K1, &[]), (K2, &[]));
    let (cookie, syn_ack_ts) = syn(&mut a, PORT);
    final_ack(&mut b, PORT, cookie, syn_ack_ts);
    recv!(b, [{ seq: cookie.wrapping_add(1), flags: TcpFlags::RST }]);
    assert_eq!(b.stack.stats().unknown_flow_resets, 1);
    assert_eq!(b.stack.connection_count(), 0);
}

#[test]
fn a_staged_rotation_breaks_no_handshake() {
    // Step 1: K2 is honoured everywhere, K1 still mints.
    let (mut a, mut b) = pair((K1, &[K2]), (K1, &[K2]));
    let (old_cookie, old_ts) = syn(&mut a, 40_001);
    // Step 2: A already mints with K2, B not yet; B honours K2.
    set_keys(&mut a, K2, &[K1]);
    let (new_cookie, new_ts) = syn(&mut a, 40_002);
    final_ack(&mut b, 40_002, new_cookie, new_ts);
    assert!(
        b.stack.accept(b.listener.unwrap(), TAG).is_some(),
        "a K2 cookie on B before B switched"
    );
    // Step 3: K1 dropped everywhere; the K1 cookie minted before step 2
    // is still honoured for one cookie lifetime.
    set_keys(&mut b, K2, &[]);
    b.advance(Duration::from_secs(100));
    final_ack(&mut b, 40_001, old_cookie, old_ts);
    assert_eq!(
        b.stack.stats().syn_cookies_validated,
        2,
        "the K1 cookie, 100 s after K1 was dropped"
    );
    assert_eq!(b.stack.stats().unknown_flow_resets, 0);
}

#[test]
fn a_dropped_key_stops_being_honoured_after_one_cookie_lifetime() {
    let (mut a, mut b) = pair((K1, &[]), (K1, &[]));
    set_keys(&mut b, K2, &[]);
    let (cookie, ts) = syn(&mut a, PORT);
    b.advance(lastack::tcp::cookie::LIFETIME);
    final_ack(&mut b, PORT, cookie, ts);
    assert_eq!(b.stack.stats().unknown_flow_resets, 1);
}
