//! Identifiers, states and events shared by the engine's parts.

use core::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// One end of a connection: an IPv4 or IPv6 address and a port, in 20
/// bytes (a `SocketAddr` takes 32: an IPv6 one carries a flow label and a
/// scope the engine never uses). IPv4 is held IPv4-mapped (RFC 4291
/// §2.5.5.2) with the family kept apart, so an IPv6 peer whose address
/// happens to be mapped is never taken for an IPv4 one. Hashes as two
/// integers.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    addr: [u8; 16],
    port: u16,
    ipv6: bool,
}

impl Endpoint {
    pub fn new(ip: IpAddr, port: u16) -> Self {
        Self {
            addr: crate::wire::ip::to_ipv6(ip).octets(),
            port,
            ipv6: ip.is_ipv6(),
        }
    }

    /// The address: an IPv4 one is the last four bytes of its mapped form.
    pub fn ip(&self) -> IpAddr {
        if self.ipv6 {
            IpAddr::V6(Ipv6Addr::from(self.addr))
        } else {
            let [.., a, b, c, d] = self.addr;
            IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d))
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_ipv6(&self) -> bool {
        self.ipv6
    }

    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip(), self.port)
    }
}

impl core::hash::Hash for Endpoint {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(u128::from_ne_bytes(self.addr));
        state.write_u32(u32::from(self.port) | (u32::from(self.ipv6) << 16));
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Self {
        Self::new(addr.ip(), addr.port())
    }
}

impl From<std::net::SocketAddrV4> for Endpoint {
    fn from(addr: std::net::SocketAddrV4) -> Self {
        Self::new(IpAddr::V4(*addr.ip()), addr.port())
    }
}

impl From<std::net::SocketAddrV6> for Endpoint {
    fn from(addr: std::net::SocketAddrV6) -> Self {
        Self::new(IpAddr::V6(*addr.ip()), addr.port())
    }
}

/// Parsed as a `SocketAddr` (`"10.0.0.1:80"`, `"[2001:db8::1]:80"`).
impl core::str::FromStr for Endpoint {
    type Err = std::net::AddrParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<SocketAddr>().map(Self::from)
    }
}

impl From<Endpoint> for SocketAddr {
    fn from(end: Endpoint) -> Self {
        end.socket_addr()
    }
}

impl PartialEq<SocketAddr> for Endpoint {
    fn eq(&self, other: &SocketAddr) -> bool {
        *self == Endpoint::from(*other)
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.socket_addr(), f)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.socket_addr(), f)
    }
}

/// A connection's addresses, our side first. The demultiplexing key.
/// Both addresses are of one family (IPv4 or IPv6): the stack builds
/// tuples only from a received segment's header or a connect whose
/// addresses it checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FourTuple {
    pub local: Endpoint,
    pub remote: Endpoint,
}

impl FourTuple {
    pub fn new(local: SocketAddr, remote: SocketAddr) -> Self {
        Self {
            local: local.into(),
            remote: remote.into(),
        }
    }

    /// The flow a received segment belongs to, seen from our side.
    pub fn of_segment(ip: &crate::wire::IpRepr, tcp: &crate::wire::TcpRepr<'_>) -> Self {
        Self {
            local: Endpoint::new(ip.dst_addr(), tcp.dst_port),
            remote: Endpoint::new(ip.src_addr(), tcp.src_port),
        }
    }

    /// True for an IPv6 flow.
    pub fn is_ipv6(&self) -> bool {
        self.local.is_ipv6()
    }
}

/// Hashes 4-tuples for a stack's tables (open connections, TIME-WAIT)
/// with foldhash seeded from the stack's secret
/// ([`crate::tcp::isn::map_seed`]): fast, and the engine reads no OS
/// randomness. One hasher serves both tables, so a received segment's
/// tuple is hashed once for all its lookups ([`HashedTuple`]).
#[derive(Debug, Clone)]
pub struct TupleHasher(foldhash::fast::FixedState);

impl TupleHasher {
    pub fn new(seed: u64) -> Self {
        Self(foldhash::fast::FixedState::with_seed(seed))
    }

    /// `tuple`'s hash.
    #[inline]
    pub fn hash(&self, tuple: &FourTuple) -> u64 {
        core::hash::BuildHasher::hash_one(&self.0, tuple)
    }

    /// `tuple` with its hash, for the tables this hasher serves.
    #[inline]
    pub fn hashed(&self, tuple: FourTuple) -> HashedTuple {
        HashedTuple {
            hash: self.hash(&tuple),
            tuple,
        }
    }
}

/// A tuple with its hash under a [`TupleHasher`]: made only by
/// [`TupleHasher::hashed`], so a tuple never travels with another's hash.
#[derive(Debug, Clone, Copy)]
pub struct HashedTuple {
    tuple: FourTuple,
    hash: u64,
}

impl HashedTuple {
    pub fn tuple(&self) -> &FourTuple {
        &self.tuple
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }
}

/// A handle to a connection. The generation makes a handle to a slot that
/// has since been reused invalid instead of aliasing the new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}", self.index, self.generation)
    }
}

/// The application's own value for a connection, given at
/// [`accept`](crate::tcp::Stack::accept) or
/// [`connect`](crate::tcp::Stack::connect) and returned with every event
/// of that connection (quinn's handles, the other way round: the engine
/// keeps the caller's key, so the caller never looks one up). The shard
/// uses the index of what serves the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Tag(pub u64);

/// A handle to a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(pub(crate) u32);

impl ListenerId {
    /// Listeners are numbered from 0 in the order they were created: a
    /// dense index for the caller's own per-listener tables.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Opaque per-connection link information the caller attaches to incoming
/// segments and gets back with every segment sent for that connection (the
/// shard keeps the MAC addresses and VLAN of the frame there).
pub type Route = [u8; 16];

/// The connection states of RFC 9293 §3.3.2. LISTEN belongs to listeners
/// and TIME-WAIT to the compact TIME-WAIT table; both are here for display
/// and counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Closed,
    Listen,
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
}

impl State {
    /// Every state, for counters.
    pub const ALL: [State; 11] = [
        State::Closed,
        State::Listen,
        State::SynSent,
        State::SynReceived,
        State::Established,
        State::FinWait1,
        State::FinWait2,
        State::CloseWait,
        State::Closing,
        State::LastAck,
        State::TimeWait,
    ];

    /// RFC 9293 §3.3.2 name.
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "CLOSED",
            State::Listen => "LISTEN",
            State::SynSent => "SYN-SENT",
            State::SynReceived => "SYN-RECEIVED",
            State::Established => "ESTABLISHED",
            State::FinWait1 => "FIN-WAIT-1",
            State::FinWait2 => "FIN-WAIT-2",
            State::CloseWait => "CLOSE-WAIT",
            State::Closing => "CLOSING",
            State::LastAck => "LAST-ACK",
            State::TimeWait => "TIME-WAIT",
        }
    }

    /// Synchronized states: a SYN was sent and received (RFC 9293 §3.5).
    pub fn is_synchronized(self) -> bool {
        !matches!(
            self,
            State::Closed | State::Listen | State::SynSent | State::SynReceived
        )
    }

    /// States in which the peer may still send data.
    pub fn can_receive(self) -> bool {
        matches!(self, State::Established | State::FinWait1 | State::FinWait2)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a connection ended abnormally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetCause {
    /// The peer sent an acceptable RST.
    Peer,
    /// Retransmissions ran out (RFC 9293 §3.8.3, R2).
    Timeout,
    /// The application aborted.
    Aborted,
    /// An active open was refused (RST in SYN-SENT).
    Refused,
}

/// What happened, for the application. See [`crate::tcp::Stack`] for the
/// polling order. Connection events carry the connection's handle and the
/// [`Tag`] its owner gave it; a connection has no owner, and so gets no
/// events, until it is accepted (what happened meanwhile is reported at
/// `accept`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A connection completed the handshake and waits in the listener's
    /// accept queue.
    Acceptable(ListenerId),
    /// An active open completed.
    Connected(ConnId, Tag),
    /// New data can be read.
    Readable(ConnId, Tag),
    /// Send buffer space became free (at least half the buffer) after a
    /// send that filled it or was cut short.
    Writable(ConnId, Tag),
    /// The peer sent FIN: after the data already readable, no more comes.
    PeerClosed(ConnId, Tag),
    /// The connection finished cleanly (both FINs exchanged). Unread data
    /// can still be read; [`close`](crate::tcp::Stack::close) releases the
    /// handle. Not sent for a connection the application already closed.
    Closed(ConnId, Tag),
    /// The connection was reset: unread data is gone and the handle is
    /// invalid from now on. Not sent for a connection the application
    /// aborted or closed.
    Reset(ConnId, Tag, ResetCause),
}

impl Event {
    /// The connection the event is about (`None` for `Acceptable`).
    pub fn conn(&self) -> Option<(ConnId, Tag)> {
        match *self {
            Event::Acceptable(_) => None,
            Event::Connected(id, tag)
            | Event::Readable(id, tag)
            | Event::Writable(id, tag)
            | Event::PeerClosed(id, tag)
            | Event::Closed(id, tag)
            | Event::Reset(id, tag, _) => Some((id, tag)),
        }
    }
}

/// Application command errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("no such connection (closed, or a stale handle)")]
    InvalidConnection,
    #[error("the connection's send side is shut down")]
    SendClosed,
    #[error("the connection is not connected yet")]
    NotConnected,
    #[error("too many connections")]
    TooManyConnections,
    #[error("that 4-tuple is in use")]
    AddressInUse,
    #[error("no such listener")]
    InvalidListener,
    #[error("the local and remote addresses are of different families")]
    FamilyMismatch,
}

/// A snapshot of one connection, for diagnostics and `lastack stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    pub state: State,
    pub tuple: FourTuple,
    pub snd_una: u32,
    pub snd_nxt: u32,
    pub snd_max: u32,
    /// Peer's window, bytes.
    pub snd_wnd: u32,
    pub cwnd: usize,
    pub ssthresh: usize,
    pub in_recovery: bool,
    pub rcv_nxt: u32,
    /// Window we can offer, bytes.
    pub rcv_wnd: usize,
    pub rto_micros: u64,
    pub srtt_micros: Option<u64>,
    pub retries: u8,
    /// Bytes queued or in flight, not yet acknowledged.
    pub unacknowledged: usize,
    pub readable: usize,
    /// Out-of-order ranges held.
    pub ooo_ranges: usize,
    pub mss: usize,
    /// ECN negotiated (RFC 3168 §6.1.1).
    pub ecn: bool,
    /// Bytes per second the sender paces at (BBR); `None`: not paced.
    pub pacing_rate: Option<u64>,
    /// BBR's model of the path, when the connection runs BBR.
    pub bbr: Option<BbrInfo>,
}

/// BBR's state for one connection (what `ss -i` shows as `bbr:(…)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BbrInfo {
    pub mode: crate::tcp::congestion::BbrMode,
    /// The bottleneck bandwidth estimate, bytes per second.
    pub bandwidth: u64,
    pub min_rtt_micros: Option<u64>,
    /// The current pacing gain, in hundredths.
    pub pacing_gain_percent: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An endpoint is 20 bytes and gives back the address it was made
    /// from; an IPv6 address that happens to be IPv4-mapped stays IPv6.
    #[test]
    fn an_endpoint_is_compact_and_keeps_its_family() {
        assert_eq!(core::mem::size_of::<Endpoint>(), 20);
        assert_eq!(core::mem::size_of::<FourTuple>(), 40);
        for text in ["10.0.0.1:80", "[2001:db8::1]:443", "[::ffff:10.0.0.1]:80"] {
            let addr: SocketAddr = text.parse().unwrap();
            let end = Endpoint::from(addr);
            assert_eq!(end.socket_addr(), addr, "{text}");
            assert_eq!(end.is_ipv6(), addr.is_ipv6(), "{text}");
            assert_eq!(end.to_string(), addr.to_string());
        }
        let v4: Endpoint = "10.0.0.1:80".parse().unwrap();
        let mapped: Endpoint = "[::ffff:10.0.0.1]:80".parse().unwrap();
        assert_ne!(v4, mapped, "the family tells them apart");
    }
}
