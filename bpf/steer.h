/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * Types shared by steer.bpf.c and the Rust loader (src/link/xdp.rs).
 * Every field is in network byte order where it mirrors a packet field.
 * Keep this file free of kernel-only headers: the loader's layout tests
 * mirror these definitions by hand.
 */
#ifndef LASTACK_STEER_H
#define LASTACK_STEER_H

/* Key of the `listeners` map: a virtual IPv4 address and TCP port we terminate. */
struct listener_key {
	__u32 addr; /* IPv4 address, network byte order */
	__u16 port; /* TCP port, network byte order */
	__u16 pad;  /* must be zero */
};

/* Key of the `listeners6` map: a virtual IPv6 address and TCP port. */
struct listener6_key {
	__u8 addr[16]; /* IPv6 address, network byte order */
	__u16 port;    /* TCP port, network byte order */
	__u16 pad;     /* must be zero */
};

/* Index into the per-CPU `counters` array: one slot per outcome. */
enum steer_outcome {
	STEER_REDIRECTED = 0, /* listener hit, handed to the AF_XDP socket */
	STEER_PASSED = 1,     /* not ours (ARP, ICMP, other port/IP): kernel */
	STEER_NO_SOCKET = 2,  /* listener hit but no AF_XDP socket on this queue: kernel */
	STEER_MALFORMED = 3,  /* truncated or invalid L2/L3/L4 header: kernel */
	STEER_FRAGMENT = 4,   /* IPv4 TCP fragment, IPv6 Fragment header: kernel (our stack refuses fragments) */
	STEER_ICMP_REDIRECTED = 5, /* ICMP fragmentation-needed or ICMPv6 packet-too-big quoting a listener's flow: AF_XDP socket */
	STEER_IPV6_EXTENSION = 6,  /* IPv6 with an extension header before any upper layer: kernel */
	STEER_TUNNELLED = 7,       /* IP in IP whose inner TCP goes to a listener (a cluster peer forwarding): AF_XDP socket */
	STEER_NR_OUTCOMES = 8,
};

#endif
