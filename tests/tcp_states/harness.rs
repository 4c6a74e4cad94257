//! The hand-played peer: template segments, `send!` / `recv!`.

use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use lastack::tcp::{
    ConnId, Event, IcmpOutcome, Instant, ListenerId, Route, Secret, Seq, Stack, Tag, TcpConfig,
};
use lastack::wire::tcp::Checksum;
use lastack::wire::{
    ip, Ecn, Icmpv4Packet, Icmpv4Repr, IpProtocol, IpRepr, Ipv4Packet, Ipv4Repr, TcpFlags,
    TcpOptions, TcpPacket, TcpRepr,
};

/// Feeds a segment from the peer: `send!(h, seq: .., ack: Some(..), flags: .., payload: b"..")`.
macro_rules! send {
    ($h:expr, $($field:ident: $value:expr),* $(,)?) => {
        $h.send(crate::harness::Seg { $($field: $value,)* ..crate::harness::SEG })
    };
}

/// Checks what the stack sends now, segment by segment; fields not named
/// are not checked except the payload (empty unless named).
macro_rules! recv {
    ($h:expr, [$({ $($field:ident: $value:expr),* $(,)? }),* $(,)?]) => {{
        let sent = $h.sent();
        let expected: Vec<crate::harness::Seg> = vec![$(crate::harness::Seg { $($field: $value,)* ..crate::harness::SEG }),*];
        assert_eq!(sent.len(), expected.len(), "segment count: sent {:#?}", sent);
        for (i, (got, want)) in sent.iter().zip(expected.iter()).enumerate() {
            assert_eq!(got.seq, want.seq, "segment {i} seq: {got:?}");
            assert_eq!(got.ack, want.ack, "segment {i} ack: {got:?}");
            assert_eq!(got.flags, want.flags, "segment {i} flags: {got:?}");
            assert_eq!(&got.payload[..], want.payload, "segment {i} payload");
        }
        sent
    }};
}

/// The stack sends nothing now.
macro_rules! recv_nothing {
    ($h:expr) => {{
        let sent = $h.sent();
        assert!(sent.is_empty(), "expected nothing, sent {sent:#?}");
    }};
}

/// The tag the tests give their connections (events must carry it back).
pub const TAG: Tag = Tag(7);

/// Our stack's address (the server in most tests).
pub const LOCAL: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(std::net::Ipv4Addr::new(10, 0, 0, 1), 80));
/// The hand-played peer.
pub const REMOTE: SocketAddr = SocketAddr::V4(SocketAddrV4::new(
    std::net::Ipv4Addr::new(10, 0, 0, 2),
    49500,
));

/// The stack's ISS in these tests, and the peer's.
pub const LOCAL_SEQ: u32 = 10_000;
pub const REMOTE_SEQ: u32 = 50_000;

/// A segment from the peer (`send!`) or an expected one (`recv!`).
#[derive(Debug, Clone, Copy)]
pub struct Seg {
    /// The peer's port (REMOTE's unless a test plays a second peer).
    pub src_port: u16,
    pub seq: u32,
    pub ack: Option<u32>,
    pub flags: TcpFlags,
    pub window: u16,
    pub payload: &'static [u8],
    pub options: TcpOptions,
    /// The IP header's ECN field.
    pub ecn: Ecn,
}

/// The template: fill in what matters, `..SEG`.
pub const SEG: Seg = Seg {
    src_port: REMOTE.port(),
    seq: 0,
    ack: None,
    flags: TcpFlags::empty(),
    window: 65535,
    payload: &[],
    options: TcpOptions {
        mss: None,
        window_scale: None,
        sack_permitted: false,
        timestamps: None,
        sack_blocks: lastack::wire::SackBlocks::EMPTY,
    },
    ecn: Ecn::NotEct,
};

/// The options of a peer's SYN in most tests: MSS 1460, as Linux sends
/// on Ethernet (without it, RFC 9293 §3.7.1 makes the MSS 536).
pub const MSS_1460: TcpOptions = TcpOptions {
    mss: Some(1460),
    ..SEG.options
};

/// A segment the stack sent, parsed back.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub seq: u32,
    pub ack: Option<u32>,
    pub flags: TcpFlags,
    pub window: u16,
    pub payload: Vec<u8>,
    pub options: TcpOptions,
    /// The IP header's ECN field.
    pub ecn: Ecn,
    /// The datagram as sent (what a router would quote).
    pub bytes: Vec<u8>,
}

/// The stack under test, its clock, and what it told the application.
pub struct Harness {
    pub stack: Stack,
    pub now: Instant,
    pub listener: Option<ListenerId>,
    pub events: Vec<Event>,
    buf: Vec<u8>,
}

/// Plain settings so templates stay simple: no window scaling, timestamps
/// or SACK unless a test turns them on; a 64 KiB receive buffer.
pub fn config() -> TcpConfig {
    TcpConfig {
        window_scaling: false,
        timestamps: false,
        sack: false,
        recv_buffer: 65535,
        send_buffer: 65536,
        ..TcpConfig::default()
    }
}

impl Harness {
    pub fn new(config: TcpConfig) -> Self {
        Self {
            stack: Stack::new(config, Secret([9; 16]), 1024),
            now: Instant::from_millis(10_000_000),
            listener: None,
            events: Vec::new(),
            buf: vec![0; 70_000],
        }
    }

    /// A listener on LOCAL.
    pub fn listening(config: TcpConfig) -> Self {
        let mut h = Self::new(config);
        h.listener = Some(h.stack.listen(LOCAL).unwrap());
        h
    }

    /// Feeds one segment from the peer.
    pub fn send(&mut self, seg: Seg) {
        let mut flags = seg.flags;
        if seg.ack.is_some() {
            flags |= TcpFlags::ACK;
        }
        let repr = TcpRepr {
            src_port: seg.src_port,
            dst_port: LOCAL.port(),
            seq_number: seg.seq,
            ack_number: seg.ack.unwrap_or(0),
            flags,
            window_len: seg.window,
            urgent_at: 0,
            options: seg.options,
            payload: seg.payload,
        };
        let ip = IpRepr::tcp(REMOTE.ip(), LOCAL.ip(), repr.buffer_len() as u16, seg.ecn);
        let mut bytes = vec![0u8; ip.buffer_len() + repr.buffer_len()];
        ip.emit(&mut bytes);
        repr.emit(&mut bytes[ip.buffer_len()..], REMOTE.ip(), LOCAL.ip());
        // Parse it back as the shard would, checksums verified.
        let (ip, segment) = ip::parse_packet(&bytes[..]).unwrap();
        let tcp_packet = TcpPacket::new_checked(segment).unwrap();
        let tcp =
            TcpRepr::parse(&tcp_packet, ip.src_addr(), ip.dst_addr(), Checksum::Verify).unwrap();
        self.stack
            .handle_segment(self.now, Route::default(), &ip, &tcp);
        self.drain_events();
    }

    pub fn drain_events(&mut self) {
        while let Some(event) = self.stack.poll_event() {
            self.events.push(event);
        }
    }

    /// A router on the path answers `datagram` (one the stack sent) with
    /// ICMP "fragmentation needed" and next-hop MTU `mtu`; the message
    /// crosses as bytes, checksums verified.
    pub fn icmp_too_big(&mut self, datagram: &[u8], mtu: u16) -> IcmpOutcome {
        let mut icmp = [0u8; 128];
        let len = Icmpv4Repr::emit_fragmentation_needed(datagram, mtu, &mut icmp);
        let router = std::net::Ipv4Addr::new(10, 0, 0, 254);
        let mut bytes = vec![0u8; 20 + len];
        let std::net::IpAddr::V4(local) = LOCAL.ip() else {
            unreachable!("ICMPv4 is for an IPv4 LOCAL")
        };
        let mut ip = Ipv4Repr::tcp(router, local, len as u16, Ecn::NotEct);
        ip.protocol = IpProtocol::ICMP;
        ip.emit(&mut bytes);
        bytes[20..].copy_from_slice(&icmp[..len]);
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        Ipv4Repr::parse(&packet).expect("IPv4 checksum");
        let icmp = Icmpv4Repr::parse(&Icmpv4Packet::new_checked(packet.payload()).unwrap())
            .expect("ICMP checksum");
        let outcome = self.stack.handle_icmp(self.now, &icmp.into());
        self.drain_events();
        outcome
    }

    /// Everything the stack wants to send now.
    pub fn sent(&mut self) -> Vec<Sent> {
        let mut out = Vec::new();
        while let Some(t) = self.stack.poll_transmit(self.now, &mut self.buf) {
            let bytes = &self.buf[..t.len];
            let (ip, segment) = ip::parse_packet(bytes).expect("valid IP, checksum included");
            assert_eq!((ip.src_addr(), ip.dst_addr()), (LOCAL.ip(), REMOTE.ip()));
            if let IpRepr::Ipv4(v4) = ip {
                assert!(v4.dont_frag);
            }
            let tcp_packet = TcpPacket::new_checked(segment).unwrap();
            let tcp = TcpRepr::parse(&tcp_packet, ip.src_addr(), ip.dst_addr(), Checksum::Verify)
                .expect("TCP checksum");
            assert_eq!(tcp.src_port, LOCAL.port());
            out.push(Sent {
                seq: tcp.seq_number,
                ack: tcp.flags.ack().then_some(tcp.ack_number),
                flags: TcpFlags(tcp.flags.0 & !TcpFlags::ACK.0),
                window: tcp.window_len,
                payload: tcp.payload.to_vec(),
                options: tcp.options,
                ecn: ip.ecn(),
                bytes: bytes.to_vec(),
            });
        }
        self.drain_events();
        out
    }

    /// Moves the clock and runs the timers due.
    pub fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
        self.stack.handle_timeout(self.now);
        self.drain_events();
    }

    /// Runs timers until the stack's next deadline, if any before `limit`.
    pub fn advance_to_next_timer(&mut self, limit: Duration) -> bool {
        match self.stack.poll_timeout() {
            Some(at) if at <= self.now + limit => {
                self.now = self.now.max(at);
                self.stack.handle_timeout(self.now);
                self.drain_events();
                true
            }
            _ => false,
        }
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        self.drain_events();
        std::mem::take(&mut self.events)
    }

    /// Passive open up to ESTABLISHED: the connection, accepted.
    pub fn established(config: TcpConfig) -> (Self, ConnId) {
        let mut h = Self::listening(config);
        h.stack.set_next_iss(Seq(LOCAL_SEQ));
        send!(h, seq: REMOTE_SEQ, flags: TcpFlags::SYN, options: MSS_1460);
        recv!(h, [{ seq: LOCAL_SEQ, ack: Some(REMOTE_SEQ + 1), flags: TcpFlags::SYN }]);
        send!(h, seq: REMOTE_SEQ + 1, ack: Some(LOCAL_SEQ + 1));
        recv_nothing!(h);
        let id = h.stack.accept(h.listener.unwrap(), TAG).expect("accepted");
        h.take_events();
        (h, id)
    }

    /// Passive open with SACK permitted on both sides (the peer's SYN
    /// carries `syn_options` besides), up to ESTABLISHED and accepted.
    pub fn sack_established(mut config: TcpConfig, syn_options: TcpOptions) -> (Self, ConnId) {
        config.sack = true;
        let mut h = Self::listening(config);
        h.stack.set_next_iss(Seq(LOCAL_SEQ));
        let options = TcpOptions {
            sack_permitted: true,
            ..syn_options
        };
        send!(h, seq: REMOTE_SEQ, flags: TcpFlags::SYN, options: options);
        assert!(h.sent()[0].options.sack_permitted, "SACK accepted");
        send!(h, seq: REMOTE_SEQ + 1, ack: Some(LOCAL_SEQ + 1));
        let id = h.stack.accept(h.listener.unwrap(), TAG).expect("accepted");
        h.take_events();
        (h, id)
    }

    /// Active open up to ESTABLISHED: our stack (LOCAL) connects to the
    /// hand-played peer (REMOTE).
    pub fn connected(config: TcpConfig) -> (Self, ConnId) {
        let mut h = Self::new(config);
        h.stack.set_next_iss(Seq(LOCAL_SEQ));
        let id = h
            .stack
            .connect(h.now, LOCAL, REMOTE, Route::default(), TAG)
            .unwrap();
        recv!(h, [{ seq: LOCAL_SEQ, flags: TcpFlags::SYN }]);
        send!(h, seq: REMOTE_SEQ, ack: Some(LOCAL_SEQ + 1), flags: TcpFlags::SYN, options: MSS_1460);
        recv!(h, [{ seq: LOCAL_SEQ + 1, ack: Some(REMOTE_SEQ + 1) }]);
        assert_eq!(h.take_events(), [Event::Connected(id, TAG)]);
        (h, id)
    }

    /// The application sends `data` on `id`.
    pub fn app_send(&mut self, id: ConnId, data: &[u8]) -> usize {
        let n = self.stack.send(self.now, id, data).unwrap();
        self.drain_events();
        n
    }

    /// The application reads up to `max` bytes.
    pub fn app_recv(&mut self, id: ConnId, max: usize) -> Vec<u8> {
        let mut out = vec![0u8; max];
        let n = self.stack.recv(self.now, id, &mut out).unwrap();
        out.truncate(n);
        self.drain_events();
        out
    }
}
