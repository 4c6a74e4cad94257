//! Frames through the shard's parser (`wire::parse_frame`: Ethernet, IPv4 or
//! IPv6, IP in IP from a cluster peer) into a listening stack of a cluster
//! instance that forwards (its id and peers set). Each step builds a valid
//! segment from fields (so checksums pass and the engine is reached), may
//! wrap it in IP in IP of either family, may corrupt bytes, or is raw
//! bytes; it goes in as the shard hands it — directly, or as forwarded. A
//! `Forward` disposition must name a live peer other than this instance.
//! Nothing may panic, and state stays bounded.
#![no_main]

use lastack_core::tcp::{Disposition, HandshakeKeys, Instant, Route, Secret, Stack, TcpConfig};
use lastack_core::wire::{
    parse_frame, Ecn, Frame, IpRepr, TcpFlags, TcpOptions, TcpRepr, Timestamps,
};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

/// This instance is 3; peers 1 and 5.
const OWN: u8 = 3;
const PEERS: u16 = (1 << 1) | (1 << 5);

#[derive(Arbitrary, Debug)]
enum Step {
    Segment {
        v6: bool,
        /// Wrapped in IP in IP, with an IPv6 (true) or IPv4 outer header.
        tunnel: Option<bool>,
        src_port: u16,
        seq: u32,
        ack: u32,
        flags: u16,
        window: u16,
        /// Timestamps (TSval, TSecr: the TSecr names an owner).
        ts: Option<(u32, u32)>,
        payload: Vec<u8>,
        /// Bytes flipped after building: (offset, xor).
        corrupt: Vec<(u16, u8)>,
    },
    Raw(Vec<u8>),
    Wait(u16),
}

fn build(v6: bool, tcp: &TcpRepr<'_>) -> Vec<u8> {
    let (src, dst): (std::net::IpAddr, std::net::IpAddr) = if v6 {
        ("fd77::1".parse().unwrap(), "fd77::2".parse().unwrap())
    } else {
        ("10.77.0.1".parse().unwrap(), "10.77.0.2".parse().unwrap())
    };
    let ip = IpRepr::tcp(src, dst, tcp.buffer_len() as u16, Ecn::NotEct);
    let mut frame = vec![0u8; 14 + ip.buffer_len() + tcp.buffer_len()];
    frame[..12].copy_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
    frame[12..14].copy_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    ip.emit(&mut frame[14..]);
    tcp.emit(&mut frame[14 + ip.buffer_len()..], src, dst);
    frame
}

fuzz_target!(|steps: Vec<Step>| {
    let mut stack = Stack::new(TcpConfig::default(), Secret([7; 16]), 64);
    let mut now = Instant::from_millis(5_000);
    stack.set_handshake_keys(
        now,
        HandshakeKeys {
            current: Secret([8; 16]),
            accepted: vec![Secret([9; 16])],
            clock_offset: 1_700_000_000_000_000,
            owner: Some(OWN),
            peers: PEERS,
        },
    );
    stack.listen("10.77.0.2:8080".parse().unwrap()).unwrap();
    stack.listen("[fd77::2]:8080".parse().unwrap()).unwrap();
    let mut out = [0u8; 2048];
    for step in steps.into_iter().take(64) {
        let frame = match step {
            Step::Segment { v6, tunnel, src_port, seq, ack, flags, window, ts, payload, corrupt } => {
                let tcp = TcpRepr {
                    src_port,
                    dst_port: 8080,
                    seq_number: seq,
                    ack_number: ack,
                    flags: TcpFlags(flags & 0x1ff),
                    window_len: window,
                    urgent_at: 0,
                    options: TcpOptions {
                        mss: Some(1460),
                        timestamps: ts.map(|(tsval, tsecr)| Timestamps { tsval, tsecr }),
                        ..TcpOptions::default()
                    },
                    payload: &payload[..payload.len().min(1400)],
                };
                let mut frame = build(v6, &tcp);
                if let Some(outer_v6) = tunnel {
                    frame = lastack_testkit::captured::tunnelled(&frame, outer_v6);
                }
                for (at, xor) in corrupt.into_iter().take(4) {
                    let at = usize::from(at) % frame.len();
                    frame[at] ^= xor;
                }
                frame
            }
            Step::Raw(bytes) => bytes,
            Step::Wait(ms) => {
                now = now + std::time::Duration::from_millis(u64::from(ms));
                stack.handle_timeout(now);
                continue;
            }
        };
        match parse_frame(&frame) {
            Ok(Frame::Tcp { ip, tcp, .. }) => {
                if let Disposition::Forward { owner } =
                    stack.handle_segment(now, Route::default(), &ip, &tcp)
                {
                    assert!(owner != OWN && PEERS & (1 << owner) != 0, "owner {owner}");
                }
            }
            Ok(Frame::Tunnelled { ip, tcp, .. }) => {
                stack.handle_forwarded_segment(now, Route::default(), &ip, &tcp);
            }
            Ok(Frame::Icmp { icmp, .. }) => {
                stack.handle_icmp(now, &icmp);
            }
            Ok(_) | Err(_) => {}
        }
        while stack.poll_transmit(now, &mut out).is_some() {}
    }
    assert!(stack.connection_count() <= 64);
});
