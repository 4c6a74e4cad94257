//! SYN cookies (RFC 4987 §3.6): a full SYN queue answers statelessly.

use crate::harness::*;
use lastack::tcp::{CookieMode, Event, State};
use lastack::wire::{TcpFlags, TcpOptions, Timestamps};

fn cookie_config(mode: CookieMode) -> lastack::tcp::TcpConfig {
    let mut cfg = config();
    cfg.syn_backlog = 1;
    cfg.syn_cookies = mode;
    cfg
}

/// Fills the SYN queue with one half-open connection from another port.
fn fill_syn_queue(h: &mut Harness) {
    send!(h, src_port: 1, seq: 1, flags: TcpFlags::SYN);
    h.sent();
}

#[test]
fn a_full_syn_queue_answers_with_a_cookie_and_keeps_no_state() {
    let mut h = Harness::listening(cookie_config(CookieMode::Auto));
    fill_syn_queue(&mut h);
    send!(h, seq: REMOTE_SEQ, flags: TcpFlags::SYN, options: MSS_1460);
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].ack, sent[0].flags),
        (Some(REMOTE_SEQ + 1), TcpFlags::SYN)
    );
    assert_eq!(sent[0].options.mss, Some(1460));
    assert_eq!(
        h.stack.connection_count(),
        1,
        "only the queued half-open one"
    );
    assert_eq!(h.stack.stats().syn_cookies_sent, 1);
}

#[test]
fn the_final_ack_rebuilds_the_connection() {
    let mut h = Harness::listening(cookie_config(CookieMode::Always));
    send!(h, seq: REMOTE_SEQ, flags: TcpFlags::SYN, options: MSS_1460);
    let cookie = h.sent()[0].seq;
    assert_eq!(h.stack.connection_count(), 0);
    send!(h, seq: REMOTE_SEQ + 1, ack: Some(cookie.wrapping_add(1)), payload: b"GET /");
    let listener = h.listener.unwrap();
    assert_eq!(h.take_events().first(), Some(&Event::Acceptable(listener)));
    let id = h.stack.accept(listener, TAG).unwrap();
    assert_eq!(h.stack.state(id), Some(State::Established));
    assert_eq!(h.stack.info(id).unwrap().mss, 1460, "MSS from the cookie");
    assert_eq!(h.app_recv(id, 100), b"GET /");
    assert_eq!(h.stack.stats().syn_cookies_validated, 1);
}

#[test]
fn a_forged_cookie_gets_rst() {
    let mut h = Harness::listening(cookie_config(CookieMode::Always));
    send!(h, seq: REMOTE_SEQ, flags: TcpFlags::SYN);
    let cookie = h.sent()[0].seq;
    send!(h, seq: REMOTE_SEQ + 1, ack: Some(cookie.wrapping_add(2)));
    recv!(h, [{ seq: cookie.wrapping_add(2), flags: TcpFlags::RST }]);
    assert_eq!(h.stack.stats().syn_cookies_invalid, 1);
    assert_eq!(h.stack.connection_count(), 0);
}

#[test]
fn window_scale_and_sack_survive_through_the_timestamp() {
    let mut cfg = cookie_config(CookieMode::Always);
    cfg.window_scaling = true;
    cfg.sack = true;
    cfg.timestamps = true;
    cfg.recv_buffer = 256 * 1024;
    let mut h = Harness::listening(cfg);
    let options = TcpOptions {
        mss: Some(1460),
        window_scale: Some(7),
        sack_permitted: true,
        timestamps: Some(Timestamps {
            tsval: 5555,
            tsecr: 0,
        }),
        ..SEG.options
    };
    send!(h, seq: REMOTE_SEQ, flags: TcpFlags::SYN, options: options);
    let syn_ack = h.sent();
    let ours = syn_ack[0].options;
    assert_eq!(ours.window_scale, Some(3), "256 KiB needs a shift of 3");
    assert!(ours.sack_permitted);
    let echo = TcpOptions {
        timestamps: Some(Timestamps {
            tsval: 5556,
            tsecr: ours.timestamps.unwrap().tsval,
        }),
        ..SEG.options
    };
    // Window field 100 with the peer's shift 7 is 12800 bytes.
    send!(h, seq: REMOTE_SEQ + 1, ack: Some(syn_ack[0].seq.wrapping_add(1)), window: 100, options: echo);
    let id = h.stack.accept(h.listener.unwrap(), TAG).unwrap();
    let info = h.stack.info(id).unwrap();
    assert_eq!(
        info.snd_wnd,
        100 << 7,
        "the peer's window scale came back from TSecr"
    );
}

#[test]
fn without_timestamps_a_cookie_offers_no_window_scale_or_sack() {
    let mut cfg = cookie_config(CookieMode::Always);
    cfg.window_scaling = true;
    cfg.sack = true;
    let mut h = Harness::listening(cfg);
    let options = TcpOptions {
        mss: Some(1460),
        window_scale: Some(7),
        sack_permitted: true,
        ..SEG.options
    };
    send!(h, seq: REMOTE_SEQ, flags: TcpFlags::SYN, options: options);
    let ours = h.sent()[0].options;
    assert_eq!((ours.window_scale, ours.sack_permitted), (None, false));
}

#[test]
fn cookies_never_drops_syns_beyond_the_queue() {
    let mut h = Harness::listening(cookie_config(CookieMode::Never));
    fill_syn_queue(&mut h);
    send!(h, seq: REMOTE_SEQ, flags: TcpFlags::SYN);
    recv_nothing!(h);
    assert_eq!(h.stack.stats().drop_syn_queue_full, 1);
}
