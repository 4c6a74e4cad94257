// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * lastack XDP steering program.
 *
 * Frames whose (destination IPv4 or IPv6 address, destination TCP port) is
 * a configured listener go to the AF_XDP socket bound to the receiving
 * queue, and so do ICMP "fragmentation needed" and ICMPv6 "packet too big"
 * messages whose quoted datagram came from a listener (source address and
 * TCP port): path MTU discovery for our flows (RFC 1191, RFC 8201), and IP
 * in IP whose inner TCP goes to a listener: a cluster peer forwarding a
 * segment of one of our flows (docs/cluster.md).
 * Everything else (ARP, neighbour discovery and other ICMPv6, other ICMP,
 * other ports and addresses, replies from backends) goes on to the kernel
 * with XDP_PASS. IPv6 extension headers are not walked: a packet that
 * carries one (Hop-by-Hop, Routing, Fragment, ...) before its upper layer
 * is counted and passed (RFC 8200 §4; the stack refuses fragments, and TCP
 * from real clients does not carry the others). Nothing is ever dropped
 * here: a malformed frame is counted and left to the kernel, which drops
 * it with its own counters. The parser walks a cursor and checks every
 * header against data_end before reading it.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "steer.h"

#ifndef MAX_QUEUES
#define MAX_QUEUES 64 /* rx queues (and so AF_XDP sockets) per interface */
#endif
#ifndef MAX_LISTENERS
#define MAX_LISTENERS 1024 /* (VIP, port) pairs */
#endif

#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8
#define IP_MF_ 0x2000
#define IP_OFFSET_ 0x1FFF
/* RFC 792 / RFC 1191 (linux/icmp.h pulls in libc headers BPF cannot use). */
#define ICMP_DEST_UNREACH_ 3
#define ICMP_FRAG_NEEDED_ 4

/* The fixed part of an ICMPv4 message (RFC 792). */
struct icmp_fixed {
	__u8 type;
	__u8 code;
	__u16 checksum;
	__u16 unused;
	__u16 next_hop_mtu; /* RFC 1191 §4 */
};

/* AF_XDP sockets, indexed by rx queue; filled by link::xsk. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

/* Listeners from the config: (VIP, port) -> unused byte; presence is the rule. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_LISTENERS);
	__type(key, struct listener_key);
	__type(value, __u8);
} listeners SEC(".maps");

/* IPv6 listeners from the config: (VIP, port) -> unused byte. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_LISTENERS);
	__type(key, struct listener6_key);
	__type(value, __u8);
} listeners6 SEC(".maps");

/* Frames per outcome (enum steer_outcome), per CPU; summed by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STEER_NR_OUTCOMES);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Counts one outcome and returns the XDP action to take with it. */
static __always_inline int account(__u32 outcome, int action)
{
	__u64 *count = bpf_map_lookup_elem(&counters, &outcome);

	if (count)
		*count += 1;
	return action;
}

/* Hands the frame to this queue's AF_XDP socket, counted as `outcome`
 * (or as no socket, when none is bound on the queue: the kernel gets it). */
static __always_inline int to_socket(struct xdp_md *ctx, __u32 outcome)
{
	int action = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);

	if (action == XDP_REDIRECT)
		return account(outcome, action);
	return account(STEER_NO_SOCKET, action);
}

/*
 * An ICMP message at `cursor`: a "fragmentation needed" (type 3, code 4)
 * whose quote starts with an IPv4 header from a listener's address and
 * eight bytes of TCP from its port goes to the AF_XDP socket, where the
 * stack checks the quoted sequence number (RFC 5927). The quote is
 * bounds-checked like the outer headers; anything short or odd is left to
 * the kernel.
 */
static __always_inline int steer_icmp(struct xdp_md *ctx, void *cursor, void *data_end)
{
	struct icmp_fixed *icmp = cursor;
	struct listener_key key = {};
	struct iphdr *quoted;
	__be16 *ports;

	if ((void *)(icmp + 1) > data_end)
		return account(STEER_MALFORMED, XDP_PASS);
	if (icmp->type != ICMP_DEST_UNREACH_ || icmp->code != ICMP_FRAG_NEEDED_)
		return account(STEER_PASSED, XDP_PASS);
	quoted = (void *)(icmp + 1);
	if ((void *)(quoted + 1) > data_end)
		return account(STEER_MALFORMED, XDP_PASS);
	if (quoted->version != 4 || quoted->ihl < 5)
		return account(STEER_MALFORMED, XDP_PASS);
	if (quoted->protocol != IPPROTO_TCP)
		return account(STEER_PASSED, XDP_PASS);
	ports = (void *)quoted + quoted->ihl * 4;
	/* Source and destination port, then the sequence number: 8 bytes. */
	if ((void *)ports + 8 > data_end)
		return account(STEER_MALFORMED, XDP_PASS);
	key.addr = quoted->saddr;
	key.port = ports[0];
	if (!bpf_map_lookup_elem(&listeners, &key))
		return account(STEER_PASSED, XDP_PASS);
	return to_socket(ctx, STEER_ICMP_REDIRECTED);
}

/* The upper-layer protocols an IPv6 packet may name directly (RFC 8200
 * §4: anything else we meet there is an extension header or unknown). */
#define IPPROTO_ICMPV6_ 58
#define IPPROTO_NONE_ 59
#define IPPROTO_FRAGMENT_ 44

/* ICMPv6 "packet too big" (RFC 4443 §3.2). */
#define ICMPV6_PACKET_TOO_BIG_ 2

/*
 * An ICMPv6 message at `cursor`: a "packet too big" whose quote starts
 * with an IPv6 header from a listener's address, carrying TCP from its
 * port, goes to the AF_XDP socket (path MTU discovery, RFC 8201; the
 * stack checks the quoted sequence number, RFC 5927). Everything else
 * (neighbour discovery above all) is the kernel's.
 */
static __always_inline int steer_icmpv6(struct xdp_md *ctx, void *cursor, void *data_end)
{
	struct icmp_fixed *icmp = cursor; /* same layout: type, code, checksum, one word */
	struct listener6_key key = {};
	struct ipv6hdr *quoted;
	__be16 *ports;

	if ((void *)(icmp + 1) > data_end)
		return account(STEER_MALFORMED, XDP_PASS);
	if (icmp->type != ICMPV6_PACKET_TOO_BIG_ || icmp->code != 0)
		return account(STEER_PASSED, XDP_PASS);
	quoted = (void *)(icmp + 1);
	if ((void *)(quoted + 1) > data_end)
		return account(STEER_MALFORMED, XDP_PASS);
	if (quoted->version != 6)
		return account(STEER_MALFORMED, XDP_PASS);
	if (quoted->nexthdr != IPPROTO_TCP)
		return account(STEER_PASSED, XDP_PASS);
	ports = (void *)(quoted + 1);
	/* Source and destination port, then the sequence number: 8 bytes. */
	if ((void *)ports + 8 > data_end)
		return account(STEER_MALFORMED, XDP_PASS);
	__builtin_memcpy(key.addr, &quoted->saddr, sizeof(key.addr));
	key.port = ports[0];
	if (!bpf_map_lookup_elem(&listeners6, &key))
		return account(STEER_PASSED, XDP_PASS);
	return to_socket(ctx, STEER_ICMP_REDIRECTED);
}

/*
 * TCP over the IPv4 header `ip` (its version and length checked): to the
 * AF_XDP socket, counted as `outcome`, if it goes to a listener. Fragments
 * never reach our stack; the kernel reassembles or drops them.
 */
static __always_inline int steer_tcp4(struct xdp_md *ctx, struct iphdr *ip, void *data_end,
				      __u32 outcome)
{
	struct listener_key key = {};
	struct tcphdr *tcp;

	if (ip->frag_off & bpf_htons(IP_MF_ | IP_OFFSET_))
		return account(STEER_FRAGMENT, XDP_PASS);
	tcp = (void *)ip + ip->ihl * 4; /* 20..60: options are skipped, not parsed */
	if ((void *)(tcp + 1) > data_end)
		return account(STEER_MALFORMED, XDP_PASS);
	key.addr = ip->daddr;
	key.port = tcp->dest;
	if (!bpf_map_lookup_elem(&listeners, &key))
		return account(STEER_PASSED, XDP_PASS);
	return to_socket(ctx, outcome);
}

/* TCP right after the IPv6 header `ip6` (checked): as steer_tcp4. */
static __always_inline int steer_tcp6(struct xdp_md *ctx, struct ipv6hdr *ip6, void *data_end,
				      __u32 outcome)
{
	struct listener6_key key = {};
	struct tcphdr *tcp = (void *)(ip6 + 1);

	if ((void *)(tcp + 1) > data_end)
		return account(STEER_MALFORMED, XDP_PASS);
	__builtin_memcpy(key.addr, &ip6->daddr, sizeof(key.addr));
	key.port = tcp->dest;
	if (!bpf_map_lookup_elem(&listeners6, &key))
		return account(STEER_PASSED, XDP_PASS);
	return to_socket(ctx, outcome);
}

/* IP in IP (RFC 2003, RFC 2473): the protocol numbers of an inner IPv4
 * and an inner IPv6 packet. */
#define IPPROTO_IPIP_ 4
#define IPPROTO_IPV6_INSIDE_ 41

/*
 * The inner packet of an IP-in-IP frame at `cursor` (IPv6 if `inner_v6`):
 * a cluster peer forwarding a segment of a flow this instance owns. TCP to
 * a listener goes to the AF_XDP socket whole (the stack unwraps it, and
 * never forwards it again); anything else is the kernel's. One level only.
 */
static __always_inline int steer_tunnelled(struct xdp_md *ctx, void *cursor, void *data_end,
					   int inner_v6)
{
	if (inner_v6) {
		struct ipv6hdr *ip6 = cursor;

		if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
			return account(STEER_MALFORMED, XDP_PASS);
		if (ip6->nexthdr != IPPROTO_TCP)
			return account(STEER_PASSED, XDP_PASS);
		return steer_tcp6(ctx, ip6, data_end, STEER_TUNNELLED);
	} else {
		struct iphdr *ip = cursor;

		if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5)
			return account(STEER_MALFORMED, XDP_PASS);
		if (ip->protocol != IPPROTO_TCP)
			return account(STEER_PASSED, XDP_PASS);
		return steer_tcp4(ctx, ip, data_end, STEER_TUNNELLED);
	}
}

/*
 * An IPv6 packet at `cursor`: TCP to a listener goes to the AF_XDP socket,
 * and so does a "packet too big" about a listener's flow; a Fragment
 * header is counted as a fragment, any other extension header as such,
 * and both are passed; other ICMPv6 (NDP), UDP and the rest pass.
 */
static __always_inline int steer_ipv6(struct xdp_md *ctx, void *cursor, void *data_end)
{
	struct ipv6hdr *ip6 = cursor;

	if ((void *)(ip6 + 1) > data_end)
		return account(STEER_MALFORMED, XDP_PASS);
	if (ip6->version != 6)
		return account(STEER_MALFORMED, XDP_PASS);
	switch (ip6->nexthdr) {
	case IPPROTO_TCP:
		break;
	case IPPROTO_FRAGMENT_:
		return account(STEER_FRAGMENT, XDP_PASS);
	case IPPROTO_ICMPV6_:
		return steer_icmpv6(ctx, ip6 + 1, data_end);
	case IPPROTO_IPIP_:
		return steer_tunnelled(ctx, ip6 + 1, data_end, 0);
	case IPPROTO_IPV6_INSIDE_:
		return steer_tunnelled(ctx, ip6 + 1, data_end, 1);
	case IPPROTO_UDP:
	case IPPROTO_NONE_:
		return account(STEER_PASSED, XDP_PASS);
	default:
		return account(STEER_IPV6_EXTENSION, XDP_PASS);
	}
	return steer_tcp6(ctx, ip6, data_end, STEER_REDIRECTED);
}

SEC("xdp")
int steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	void *cursor = data;
	struct ethhdr *eth = cursor;
	struct iphdr *ip;
	__u16 proto;

	if ((void *)(eth + 1) > data_end)
		return account(STEER_MALFORMED, XDP_PASS);
	cursor = eth + 1;
	proto = eth->h_proto;

	/* One 802.1Q / 802.1ad tag: TCI (2 bytes) then the inner EtherType. */
	if (proto == bpf_htons(ETH_P_8021Q_) || proto == bpf_htons(ETH_P_8021AD_)) {
		__be16 *tag = cursor;

		if ((void *)(tag + 2) > data_end)
			return account(STEER_MALFORMED, XDP_PASS);
		proto = tag[1];
		cursor = tag + 2;
	}
	if (proto == bpf_htons(ETH_P_IPV6))
		return steer_ipv6(ctx, cursor, data_end);
	if (proto != bpf_htons(ETH_P_IP))
		return account(STEER_PASSED, XDP_PASS);

	ip = cursor;
	if ((void *)(ip + 1) > data_end)
		return account(STEER_MALFORMED, XDP_PASS);
	if (ip->version != 4 || ip->ihl < 5)
		return account(STEER_MALFORMED, XDP_PASS);
	if (ip->protocol == IPPROTO_ICMP)
		return steer_icmp(ctx, cursor + ip->ihl * 4, data_end);
	if (ip->protocol == IPPROTO_IPIP_ || ip->protocol == IPPROTO_IPV6_INSIDE_) {
		if (ip->frag_off & bpf_htons(IP_MF_ | IP_OFFSET_))
			return account(STEER_FRAGMENT, XDP_PASS);
		return steer_tunnelled(ctx, cursor + ip->ihl * 4, data_end,
				       ip->protocol == IPPROTO_IPV6_INSIDE_);
	}
	if (ip->protocol != IPPROTO_TCP)
		return account(STEER_PASSED, XDP_PASS);
	return steer_tcp4(ctx, ip, data_end, STEER_REDIRECTED);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
