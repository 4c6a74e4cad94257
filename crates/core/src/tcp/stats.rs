//! Per-stack counters. Plain integers: a stack belongs to one shard, and
//! the shard sums them with the others when metrics are read.

/// What the engine counted. Every dropped segment lands in one `drop_*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub segments_in: u64,
    pub segments_out: u64,
    pub retransmitted_segments: u64,
    /// Payload bytes sent again.
    pub retransmitted_bytes: u64,
    /// Fast recoveries entered (RFC 6582 / RFC 6675).
    pub fast_retransmits: u64,
    /// ACKs whose first SACK block reported a segment received twice
    /// (RFC 2883 D-SACK): a retransmission that was not needed.
    pub dsacks_received: u64,
    /// Tail-loss probes sent (RFC 8985 §7).
    pub loss_probes: u64,
    /// Rounds of fast-recovery retransmissions found lost in turn.
    pub lost_retransmissions: u64,
    pub rto_expirations: u64,
    /// Retransmission timeouts found spurious by the peer's timestamp echo
    /// (RFC 3522) and undone (RFC 4015).
    pub spurious_timeouts: u64,
    /// ICMP "fragmentation needed" / "packet too big" messages about a
    /// connection of this stack.
    pub icmp_too_big_received: u64,
    /// Of those: quoting a sequence number not in flight (stale or
    /// forged, RFC 5927 §4.1): ignored.
    pub icmp_too_big_ignored: u64,
    /// Connections whose MSS a believed "too big" lowered.
    pub pmtu_reductions: u64,
    /// Connections that negotiated ECN (RFC 3168 §6.1.1).
    pub ecn_negotiated: u64,
    /// Segments that arrived marked Congestion Experienced.
    pub ce_received: u64,
    /// Congestion windows cut for the peer's ECN echo (once per window).
    pub ecn_window_reductions: u64,
    pub resets_sent: u64,
    pub resets_received: u64,
    pub challenge_acks: u64,
    pub challenge_acks_suppressed: u64,
    pub syn_cookies_sent: u64,
    pub syn_cookies_validated: u64,
    pub syn_cookies_invalid: u64,
    /// ACKs to a listener for a flow the stack does not know and no valid
    /// cookie (a flow an ECMP change moved here, or a stale one): reset.
    pub unknown_flow_resets: u64,
    /// Segments of such flows whose client's TSecr names another live
    /// instance of the cluster: handed back to be forwarded there.
    pub unknown_flow_forwarded: u64,
    /// Segments another instance forwarded here.
    pub forwarded_segments_received: u64,
    pub syn_queue_overflows: u64,
    pub accept_queue_overflows: u64,
    pub connections_opened: u64,
    /// Of `connections_opened`, those over IPv6 (see [`Stats::opened`]).
    pub ipv6_connections_opened: u64,
    pub connections_closed: u64,
    /// Connections that entered TIME-WAIT (we closed first).
    pub time_wait_entered: u64,
    pub connections_reset: u64,
    pub connection_timeouts: u64,
    pub out_of_order_segments: u64,
    pub zero_window_probes: u64,
    pub keepalive_probes: u64,
    pub time_wait_reopened: u64,
    /// Connections that closed first and found the TIME-WAIT table full:
    /// freed at once, without TIME-WAIT.
    pub time_wait_overflows: u64,
    /// Closed connections freed in FIN-WAIT-2: the peer never sent FIN.
    pub fin_wait_2_timeouts: u64,
    /// A SYN with FIN or RST, or a segment with none of SYN/ACK/RST.
    pub drop_bad_flags: u64,
    /// Outside the receive window (RFC 9293 §3.10.7.4 first check).
    pub drop_out_of_window: u64,
    /// PAWS: an old timestamp (RFC 7323 §5).
    pub drop_paws: u64,
    /// An ACK for data never sent, or too old (RFC 5961 §5.2).
    pub drop_bad_ack: u64,
    /// Out-of-order data beyond what the reassembly can track.
    pub drop_reassembly_full: u64,
    /// A segment to a port with no listener (answered with RST).
    pub drop_no_listener: u64,
    /// Connection attempts to a closed listener (draining or removed),
    /// refused with RST or dropped as it was told.
    pub refused_closed_listener: u64,
    /// SYNs dropped because the SYN queue is full and cookies are off.
    pub drop_syn_queue_full: u64,
    /// Stateless replies dropped because their queue was full.
    pub drop_control_queue_full: u64,
    /// Connections refused because the connection table is full.
    pub drop_table_full: u64,
}

impl Stats {
    /// A connection was established (over IPv6 if `ipv6`).
    pub fn opened(&mut self, ipv6: bool) {
        self.connections_opened += 1;
        self.ipv6_connections_opened += u64::from(ipv6);
    }
}
