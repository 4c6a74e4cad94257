//! Arbitrary segments against a listening stack that also holds one
//! established connection. Each input is a sequence of steps: a structured
//! segment (sequence and acknowledgment numbers relative to the live
//! connection, so the fuzzer reaches the in-window paths; raw option bytes,
//! so the option parser sees anything), raw bytes through the wire parser,
//! an application command, ICMP "fragmentation needed" (ICMPv6 "packet too
//! big") about the connection (or a stranger), or time passing. The
//! connection negotiated ECN, so CE marks and ECN-Echo reach their paths.
//! The flows are IPv4 or IPv6 by the input's length. Nothing may panic, and
//! state must stay bounded.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use lastack_testkit::sim::{client_addr, client_addr6, deliver_bytes, server_addr, server_addr6, LinkConfig, Pair, Side};
use lastack_core::tcp::{AlgorithmKind, ConnId, EcnMode, Event, Route, TcpConfig};
use lastack_core::wire::{Ecn, Icmpv4Repr, Icmpv6Repr, IpProtocol, IpRepr, TcpPacket};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

/// The tag these connections carry in their events.
const TAG: lastack_core::tcp::Tag = lastack_core::tcp::Tag(1);

#[derive(Arbitrary, Debug)]
enum Step {
    /// A segment from the established peer (or, with `other_port`, from a
    /// stranger to the listener).
    Segment {
        other_port: Option<u16>,
        seq_offset: i32,
        ack_offset: i32,
        flags: u16,
        window: u16,
        options: Vec<u8>,
        payload: Vec<u8>,
        /// The IP header's DSCP/ECN byte (CE marks on an ECN connection).
        tos: u8,
    },
    /// An ACK from the established peer with SACK blocks placed relative
    /// to the server's SND.UNA (so they land in, around and beyond what is
    /// in flight: the scoreboard, D-SACK and the loss-detection paths).
    Sack {
        ack_offset: i16,
        window: u16,
        blocks: Vec<(i32, u16)>,
        payload_len: u8,
        /// ECN-Echo set (the connection negotiated ECN).
        ece: bool,
    },
    /// An ICMP "fragmentation needed" from a router quoting a segment of
    /// the established connection (sequence number relative to the
    /// server's SND.UNA), or, with `other_port`, of a flow that does not
    /// exist; the MTU as given (0, tiny, huge).
    Icmp {
        seq_offset: i32,
        mtu: u16,
        other_port: Option<u16>,
        datagram_len: u16,
    },
    /// Raw bytes as if off the wire.
    Raw(Vec<u8>),
    Send(Vec<u8>),
    Recv(u16),
    Shutdown,
    Close,
    Abort,
    Advance(u16),
}

#[allow(clippy::too_many_arguments)]
fn emit(from: SocketAddr, to: SocketAddr, seq: u32, ack: u32, flags: u16, window: u16, options: &[u8], payload: &[u8], tos: u8) -> Vec<u8> {
    // Options padded to a multiple of 4, at most 40 bytes.
    let mut opts = options[..options.len().min(40)].to_vec();
    while opts.len() % 4 != 0 {
        opts.push(0);
    }
    let header = 20 + opts.len();
    let payload = &payload[..payload.len().min(1400)];
    let mut ip = IpRepr::tcp(from.ip(), to.ip(), (header + payload.len()) as u16, Ecn::NotEct);
    match &mut ip {
        IpRepr::Ipv4(v4) => v4.dscp_ecn = tos,
        IpRepr::Ipv6(v6) => v6.traffic_class = tos,
    }
    let ip_len = ip.buffer_len();
    let mut bytes = vec![0u8; ip_len + header + payload.len()];
    ip.emit(&mut bytes);
    let tcp = &mut bytes[ip_len..];
    tcp[0..2].copy_from_slice(&from.port().to_be_bytes());
    tcp[2..4].copy_from_slice(&to.port().to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    let offset_flags = ((header as u16 / 4) << 12) | (flags & 0x1ff);
    tcp[12..14].copy_from_slice(&offset_flags.to_be_bytes());
    tcp[14..16].copy_from_slice(&window.to_be_bytes());
    tcp[20..header].copy_from_slice(&opts);
    tcp[header..].copy_from_slice(payload);
    TcpPacket::new_unchecked(&mut bytes[ip_len..]).fill_checksum(from.ip(), to.ip());
    bytes
}

fuzz_target!(|steps: Vec<Step>| {
    // ECN on both sides: the established connection negotiates it. The
    // congestion control follows from the input's length (the corpus keeps
    // its format), so each algorithm's model meets every kind of ACK.
    let congestion = [AlgorithmKind::Cubic, AlgorithmKind::NewReno, AlgorithmKind::Bbr][steps.len() % 3];
    let config = TcpConfig { syn_backlog: 8, accept_backlog: 8, ecn: EcnMode::On, congestion, ..TcpConfig::default() };
    let mut pair = Pair::new(config.clone(), config, LinkConfig::default(), 1);
    let ipv6 = (steps.len() / 3) % 2 == 1;
    let (server_addr, client_addr) = if ipv6 {
        (server_addr6 as fn(u16) -> SocketAddr, client_addr6 as fn(u16) -> SocketAddr)
    } else {
        (server_addr as fn(u16) -> SocketAddr, client_addr as fn(u16) -> SocketAddr)
    };
    let listener = pair.b.listen(server_addr(80)).unwrap();
    let now = pair.now;
    let client = pair.a.connect(now, client_addr(40000), server_addr(80), Route::default(), TAG).unwrap();
    pair.settle(|_, _, _, _| {});
    let server: ConnId = pair.b.accept(listener, TAG).expect("handshake in memory");
    assert!(pair.b.info(server).is_some_and(|info| info.ecn), "ECN negotiated");
    let mut buf = vec![0u8; 70_000];
    for step in steps.into_iter().take(64) {
        let now = pair.now;
        match step {
            Step::Segment { other_port, seq_offset, ack_offset, flags, window, options, payload, tos } => {
                let (from, seq, ack) = match (other_port, pair.b.info(server)) {
                    (None, Some(info)) => (
                        client_addr(40000),
                        info.rcv_nxt.wrapping_add(seq_offset as u32),
                        info.snd_una.wrapping_add(ack_offset as u32),
                    ),
                    (port, _) => (
                        SocketAddr::new(
                            if ipv6 { IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 9)) } else { IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)) },
                            port.unwrap_or(1),
                        ),
                        seq_offset as u32,
                        ack_offset as u32,
                    ),
                };
                let bytes = emit(from, server_addr(80), seq, ack, flags, window, &options, &payload, tos);
                deliver_bytes(&mut pair.b, now, &bytes);
            }
            Step::Sack { ack_offset, window, blocks, payload_len, ece } => {
                let Some(info) = pair.b.info(server) else { continue };
                let mut options = vec![1u8, 1, 5, 2];
                for &(left, len) in blocks.iter().take(4) {
                    let left = info.snd_una.wrapping_add(left as u32);
                    options.extend_from_slice(&left.to_be_bytes());
                    options.extend_from_slice(&left.wrapping_add(u32::from(len)).to_be_bytes());
                    options[3] += 8;
                }
                let ack = info.snd_una.wrapping_add(ack_offset as u32);
                let payload = vec![0x5a; usize::from(payload_len)];
                let flags = if ece { 0x50 } else { 0x10 };
                let bytes = emit(client_addr(40000), server_addr(80), info.rcv_nxt, ack, flags, window, &options, &payload, 0);
                deliver_bytes(&mut pair.b, now, &bytes);
            }
            Step::Icmp { seq_offset, mtu, other_port, datagram_len } => {
                let Some(info) = pair.b.info(server) else { continue };
                let seq = info.snd_una.wrapping_add(seq_offset as u32);
                let to = SocketAddr::new(client_addr(40000).ip(), other_port.unwrap_or(40000));
                let mut quoted = emit(server_addr(80), to, seq, info.rcv_nxt, 0x10, 0, &[], &[], 0);
                let mut icmp = [0u8; 128];
                let (router, len) = match server_addr(80).ip() {
                    IpAddr::V4(_) => {
                        quoted[2..4].copy_from_slice(&datagram_len.to_be_bytes());
                        let len = Icmpv4Repr::emit_fragmentation_needed(&quoted, mtu, &mut icmp);
                        (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 254)), len)
                    }
                    IpAddr::V6(us) => {
                        quoted[4..6].copy_from_slice(&datagram_len.to_be_bytes());
                        let router = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0xfe);
                        let len = Icmpv6Repr::emit_packet_too_big(&quoted, u32::from(mtu), router, us, &mut icmp);
                        (IpAddr::V6(router), len)
                    }
                };
                let mut ip = IpRepr::tcp(router, server_addr(80).ip(), len as u16, Ecn::NotEct);
                match &mut ip {
                    IpRepr::Ipv4(v4) => v4.protocol = IpProtocol::ICMP,
                    IpRepr::Ipv6(v6) => v6.next_header = IpProtocol::ICMPV6,
                }
                let mut bytes = vec![0u8; ip.buffer_len() + len];
                ip.emit(&mut bytes);
                bytes[ip.buffer_len()..].copy_from_slice(&icmp[..len]);
                deliver_bytes(&mut pair.b, now, &bytes);
            }
            Step::Raw(bytes) => {
                deliver_bytes(&mut pair.b, now, &bytes);
            }
            Step::Send(data) => {
                let _ = pair.b.send(now, server, &data);
            }
            Step::Recv(n) => {
                let n = usize::from(n).min(buf.len());
                let _ = pair.b.recv(now, server, &mut buf[..n]);
            }
            Step::Shutdown => {
                let _ = pair.b.shutdown(now, server);
            }
            Step::Close => {
                let _ = pair.b.close(now, server);
            }
            Step::Abort => {
                let _ = pair.b.abort(now, server);
            }
            Step::Advance(ms) => {
                pair.now = pair.now + Duration::from_millis(u64::from(ms));
                let now = pair.now;
                pair.b.handle_timeout(now);
            }
        }
        // Drain the server's output and events; the client sees nothing
        // (it is played by the fuzzer).
        while let Some(t) = pair.b.poll_transmit(now, &mut buf) {
            assert!(t.len >= 40 && t.len <= buf.len());
        }
        while let Some(event) = pair.b.poll_event() {
            if let Event::Acceptable(l) = event {
                while pair.b.accept(l, TAG).is_some() {}
            }
        }
        let _ = pair.b.poll_timeout();
        assert!(pair.b.connection_count() <= 64, "bounded state");
    }
    let _ = (client, Side::A);
});
