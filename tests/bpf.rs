//! The XDP steering program, run by the kernel: BPF_PROG_TEST_RUN on built
//! frames (each test names the action it expects), and the program attached
//! to a veth in a namespace with real kernel TCP traffic. Needs root.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, TcpStream};
use std::num::NonZeroU32;
use std::time::Duration;

use lastack::link::xdp::{SteerCounters, Steering, XdpAction, XdpMode};
use lastack::link::xsk::{BindMode, XskSocket};
use lastack_testkit::captured;

/// The captured SYN goes to 10.77.0.2:8080.
const VIP4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const VIP: IpAddr = IpAddr::V4(VIP4);
const PORT: u16 = 8080;
/// The captured IPv6 SYN goes to [fd77::2]:8080.
const VIP6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 2));

fn steering(test: &str) -> Option<Steering> {
    if !common::privileged(test) {
        return None;
    }
    let steering = Steering::load().expect("load the steering program");
    steering.add_listener(VIP, PORT).expect("add listener");
    steering
        .add_listener(VIP6, PORT)
        .expect("add IPv6 listener");
    Some(steering)
}

/// Counter deltas across `f`.
fn delta(steering: &Steering, f: impl FnOnce()) -> SteerCounters {
    let before = steering.counters().unwrap();
    f();
    let after = steering.counters().unwrap();
    SteerCounters {
        redirected: after.redirected - before.redirected,
        passed: after.passed - before.passed,
        no_socket: after.no_socket - before.no_socket,
        malformed: after.malformed - before.malformed,
        fragment: after.fragment - before.fragment,
        icmp_redirected: after.icmp_redirected - before.icmp_redirected,
        ipv6_extension: after.ipv6_extension - before.ipv6_extension,
        tunnelled: after.tunnelled - before.tunnelled,
    }
}

/// Runs each frame through the program, checks its action, and checks that
/// the counters moved by exactly `expected`.
fn assert_steered(steering: &Steering, runs: &[(&[u8], XdpAction)], expected: SteerCounters) {
    let counted = delta(steering, || {
        for (i, (frame, action)) in runs.iter().enumerate() {
            assert_eq!(steering.test_run(frame).unwrap(), *action, "frame {i}");
        }
    });
    assert_eq!(counted, expected);
}

/// Only `no_socket` moved, by `n`.
fn no_socket(n: u64) -> SteerCounters {
    SteerCounters {
        no_socket: n,
        ..Default::default()
    }
}

/// Only `passed` moved, by `n`.
fn passed(n: u64) -> SteerCounters {
    SteerCounters {
        passed: n,
        ..Default::default()
    }
}

/// Rewrites the IPv4 header checksum of an untagged frame after an edit.
fn fix_ip_checksum(frame: &mut [u8]) {
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    lastack::wire::Ipv4Packet::new_unchecked(&mut frame[14..14 + ihl]).fill_checksum();
}

/// The captured SYN with `options` (a multiple of 4 bytes) inserted as IPv4
/// options.
fn syn_with_ip_options(options: &[u8]) -> Vec<u8> {
    let syn = &captured::TCP_SYN;
    let mut frame = syn[..34].to_vec();
    frame.extend_from_slice(options);
    frame.extend_from_slice(&syn[34..]);
    frame[14] = 0x40 | ((20 + options.len()) / 4) as u8;
    let total = u16::from_be_bytes([frame[16], frame[17]]) + options.len() as u16;
    frame[16..18].copy_from_slice(&total.to_be_bytes());
    fix_ip_checksum(&mut frame);
    frame
}

#[test]
fn listener_hit_without_a_socket_is_passed_and_counted() {
    let Some(steering) = steering("listener_hit_without_a_socket") else {
        return;
    };
    assert_steered(
        &steering,
        &[(&captured::TCP_SYN, XdpAction::Pass)],
        no_socket(1),
    );
}

#[test]
fn other_port_or_address_is_passed() {
    let Some(steering) = steering("other_port_or_address") else {
        return;
    };
    let mut other_port = captured::TCP_SYN.to_vec();
    other_port[36..38].copy_from_slice(&8081u16.to_be_bytes());
    let mut other_addr = captured::TCP_SYN.to_vec();
    other_addr[33] = 3; // 10.77.0.3
    fix_ip_checksum(&mut other_addr);
    // The reply direction (server port as source) is a backend reply: pass.
    let runs: [(&[u8], _); 3] = [
        (&other_port, XdpAction::Pass),
        (&other_addr, XdpAction::Pass),
        (&captured::TCP_SYN_ACK, XdpAction::Pass),
    ];
    assert_steered(&steering, &runs, passed(3));
}

#[test]
fn arp_and_icmp_are_passed() {
    let Some(steering) = steering("arp_and_icmp") else {
        return;
    };
    let mut icmp = captured::TCP_SYN.to_vec();
    icmp[23] = 1; // protocol ICMP, to the VIP
    fix_ip_checksum(&mut icmp);
    let runs: [(&[u8], _); 3] = [
        (&captured::ARP_REQUEST, XdpAction::Pass),
        (&captured::ARP_REPLY, XdpAction::Pass),
        (&icmp, XdpAction::Pass),
    ];
    assert_steered(&steering, &runs, passed(3));
}

/// An Ethernet frame from a router to the VIP carrying ICMP
/// "fragmentation needed" (MTU 1280) that quotes `datagram` (an IPv4
/// packet), as a Linux router builds it.
fn fragmentation_needed(datagram: &[u8]) -> Vec<u8> {
    let mut icmp = [0u8; 128];
    let len = lastack::wire::Icmpv4Repr::emit_fragmentation_needed(datagram, 1280, &mut icmp);
    let mut frame = captured::TCP_SYN[..14].to_vec();
    frame.resize(14 + 20 + len, 0);
    let mut ip = lastack::wire::Ipv4Repr::tcp(
        Ipv4Addr::new(10, 77, 0, 254),
        VIP4,
        len as u16,
        lastack::wire::Ecn::NotEct,
    );
    ip.protocol = lastack::wire::IpProtocol::ICMP;
    ip.emit(&mut frame[14..34]);
    frame[34..].copy_from_slice(&icmp[..len]);
    frame
}

/// A datagram the listener sent: the captured SYN-ACK (10.77.0.2:8080 to
/// the client), quoted by a router.
fn from_the_listener() -> Vec<u8> {
    captured::TCP_SYN_ACK[14..].to_vec()
}

#[test]
fn fragmentation_needed_about_a_listeners_flow_is_steered() {
    let Some(steering) = steering("fragmentation_needed_steered") else {
        return;
    };
    let quoted = from_the_listener();
    assert_eq!(&quoted[12..16], &VIP4.octets(), "from the VIP");
    // Steered (no socket bound in this test: counted as such, passed).
    let hit = fragmentation_needed(&quoted);
    assert_steered(&steering, &[(&hit, XdpAction::Pass)], no_socket(1));
    // Quoting another source port, another protocol, or another ICMP
    // message: the kernel's.
    let mut other_port = quoted.clone();
    other_port[20..22].copy_from_slice(&8081u16.to_be_bytes());
    let mut udp = quoted.clone();
    udp[9] = 17;
    let mut unreachable = fragmentation_needed(&quoted);
    unreachable[35] = 3; // port unreachable (checksum not checked here)
    let runs: [(&[u8], _); 3] = [
        (&fragmentation_needed(&other_port), XdpAction::Pass),
        (&fragmentation_needed(&udp), XdpAction::Pass),
        (&unreachable, XdpAction::Pass),
    ];
    assert_steered(&steering, &runs, passed(3));
}

#[test]
fn a_fragmentation_needed_cut_short_is_left_to_the_kernel_at_every_length() {
    let Some(steering) = steering("fragmentation_needed_truncated") else {
        return;
    };
    let hit = fragmentation_needed(&from_the_listener());
    // The outer IPv4 header ends at 34, the ICMP header at 42, the quoted
    // IPv4 header at 62, the quoted ports and sequence number at 70.
    assert!(hit.len() >= 70);
    let cut: Vec<(&[u8], XdpAction)> = (34..70).map(|len| (&hit[..len], XdpAction::Pass)).collect();
    let expected = SteerCounters {
        malformed: 36,
        ..Default::default()
    };
    assert_steered(&steering, &cut, expected);
    assert_steered(&steering, &[(&hit[..70], XdpAction::Pass)], no_socket(1));
}

#[test]
fn ipv4_options_are_skipped_to_find_the_port() {
    let Some(steering) = steering("ipv4_options") else {
        return;
    };
    // Options whose bytes read as ports 0 -> 8080 if the header length were
    // ignored; the real destination port is 9999: not a listener.
    let mut decoy = syn_with_ip_options(&[0x00, 0x00, 0x1f, 0x90]);
    decoy[40..42].copy_from_slice(&9999u16.to_be_bytes()); // TCP starts at 14 + 24
                                                           // Options that do not look like the port; the real port is 8080: a hit.
    let hit = syn_with_ip_options(&[0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00]);
    // One at a time: a parser that ignored IHL would swap the two outcomes.
    assert_steered(&steering, &[(&decoy, XdpAction::Pass)], passed(1));
    assert_steered(&steering, &[(&hit, XdpAction::Pass)], no_socket(1));
}

#[test]
fn vlan_tagged_listener_hit_is_recognised() {
    let Some(steering) = steering("vlan_tagged") else {
        return;
    };
    let mut tagged = captured::TCP_SYN[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x2a]); // VLAN 42
    tagged.extend_from_slice(&captured::TCP_SYN[12..]);
    assert_steered(&steering, &[(&tagged, XdpAction::Pass)], no_socket(1));
}

#[test]
fn fragments_go_to_the_kernel() {
    let Some(steering) = steering("fragments") else {
        return;
    };
    let mut first = captured::TCP_SYN.to_vec();
    first[20..22].copy_from_slice(&0x2000u16.to_be_bytes()); // MF
    fix_ip_checksum(&mut first);
    let expected = SteerCounters {
        fragment: 1,
        ..Default::default()
    };
    assert_steered(&steering, &[(&first, XdpAction::Pass)], expected);
}

#[test]
fn truncated_frames_get_a_defined_action_at_every_length() {
    let Some(steering) = steering("truncated_frames") else {
        return;
    };
    let syn = &captured::TCP_SYN;
    // The kernel itself refuses test input shorter than an Ethernet header.
    for len in 0..14 {
        if let Ok(action) = steering.test_run(&syn[..len]) {
            assert_eq!(action, XdpAction::Pass, "len {len}");
        }
    }
    // 14..54: the IPv4 or TCP header is cut short.
    let cut: Vec<(&[u8], XdpAction)> = (14..54).map(|len| (&syn[..len], XdpAction::Pass)).collect();
    let expected = SteerCounters {
        malformed: 40,
        ..Default::default()
    };
    assert_steered(&steering, &cut, expected);
    // A bad IHL (below 5) is malformed even with enough bytes; from 54 bytes
    // on the listener is recognised (the TCP options cut off).
    let mut bad_ihl = syn.to_vec();
    bad_ihl[14] = 0x44;
    let runs: [(&[u8], _); 2] = [(&bad_ihl, XdpAction::Pass), (&syn[..54], XdpAction::Pass)];
    let expected = SteerCounters {
        malformed: 1,
        no_socket: 1,
        ..Default::default()
    };
    assert_steered(&steering, &runs, expected);
}

// ---- IPv6 ----

/// The IPv6 listener is recognised (no socket bound here), the IPv4 one
/// with the same port is a separate entry, and other addresses, ports,
/// NDP and MLD are passed.
#[test]
fn ipv6_listener_hit_is_recognised_and_the_rest_passed() {
    let Some(steering) = steering("ipv6_listener_hit") else {
        return;
    };
    let mut other_port = captured::TCP6_SYN.to_vec();
    other_port[56..58].copy_from_slice(&8081u16.to_be_bytes());
    let mut other_addr = captured::TCP6_SYN.to_vec();
    other_addr[53] = 3; // fd77::3
    let mut tagged = captured::TCP6_SYN[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x2a]); // 802.1Q, VLAN 42
    tagged.extend_from_slice(&captured::TCP6_SYN[12..]);
    let runs: [(&[u8], _); 4] = [
        (&captured::TCP6_SYN, XdpAction::Pass),
        (&captured::TCP6_DATA, XdpAction::Pass),
        (&captured::TCP6_FIN, XdpAction::Pass),
        (&tagged, XdpAction::Pass),
    ];
    assert_steered(&steering, &runs, no_socket(4));
    let runs: [(&[u8], _); 3] = [
        (&other_port, XdpAction::Pass),
        (&other_addr, XdpAction::Pass),
        (&captured::NDP_NEIGHBOR_SOLICIT, XdpAction::Pass),
    ];
    assert_steered(&steering, &runs, passed(3));
}

/// RFC 8200 §4: a Fragment header is counted as a fragment, any other
/// extension header before TCP (Hop-by-Hop, Routing, Destination Options,
/// an unknown one) as such; all go to the kernel.
#[test]
fn ipv6_extension_headers_and_fragments_go_to_the_kernel() {
    let Some(steering) = steering("ipv6_extension_headers") else {
        return;
    };
    let with_next = |next: u8| {
        let mut frame = captured::TCP6_SYN.to_vec();
        frame[20] = next;
        frame
    };
    let fragment = with_next(44);
    let (hop_by_hop, routing, destination, unknown) =
        (with_next(0), with_next(43), with_next(60), with_next(253));
    let runs: [(&[u8], _); 6] = [
        (&fragment, XdpAction::Pass),
        (&hop_by_hop, XdpAction::Pass),
        (&routing, XdpAction::Pass),
        (&destination, XdpAction::Pass),
        (&unknown, XdpAction::Pass),
        (&captured::MLD_REPORT_HOP_BY_HOP, XdpAction::Pass),
    ];
    let expected = SteerCounters {
        fragment: 1,
        ipv6_extension: 5,
        ..Default::default()
    };
    assert_steered(&steering, &runs, expected);
}

/// An Ethernet frame from a router to the IPv6 VIP carrying ICMPv6
/// "packet too big" (MTU 1280) that quotes `datagram` (an IPv6 packet).
fn packet_too_big(datagram: &[u8]) -> Vec<u8> {
    let router = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 0xfe);
    let IpAddr::V6(vip) = VIP6 else {
        unreachable!()
    };
    let mut icmp = [0u8; 128];
    let len =
        lastack::wire::Icmpv6Repr::emit_packet_too_big(datagram, 1280, router, vip, &mut icmp);
    let mut frame = captured::TCP6_SYN[..14].to_vec();
    frame.resize(14 + 40 + len, 0);
    let mut ip = lastack::wire::Ipv6Repr::tcp(router, vip, len as u16, lastack::wire::Ecn::NotEct);
    ip.next_header = lastack::wire::IpProtocol::ICMPV6;
    ip.emit(&mut frame[14..54]);
    frame[54..].copy_from_slice(&icmp[..len]);
    frame
}

/// A datagram the IPv6 listener sent: the captured SYN turned round
/// ([fd77::2]:8080 to the client), as a router quotes it.
fn from_the_ipv6_listener() -> Vec<u8> {
    let mut datagram = captured::TCP6_SYN[14..].to_vec();
    let (src, dst) = (datagram[8..24].to_vec(), datagram[24..40].to_vec());
    datagram[8..24].copy_from_slice(&dst);
    datagram[24..40].copy_from_slice(&src);
    let (sport, dport) = (datagram[40..42].to_vec(), datagram[42..44].to_vec());
    datagram[40..42].copy_from_slice(&dport);
    datagram[42..44].copy_from_slice(&sport);
    datagram
}

/// RFC 8201: a "packet too big" about an IPv6 listener's flow is steered
/// (no socket here: counted as such); one about another port, a quote of
/// UDP, and neighbour discovery are the kernel's; cut short at any length
/// it is left to the kernel too.
#[test]
fn packet_too_big_about_an_ipv6_listeners_flow_is_steered() {
    let Some(steering) = steering("packet_too_big_steered") else {
        return;
    };
    let quoted = from_the_ipv6_listener();
    let hit = packet_too_big(&quoted);
    assert_steered(&steering, &[(&hit, XdpAction::Pass)], no_socket(1));
    let mut other_port = quoted.clone();
    other_port[40..42].copy_from_slice(&8081u16.to_be_bytes());
    let mut udp = quoted.clone();
    udp[6] = 17;
    let runs: [(&[u8], _); 3] = [
        (&packet_too_big(&other_port), XdpAction::Pass),
        (&packet_too_big(&udp), XdpAction::Pass),
        (&captured::NDP_NEIGHBOR_SOLICIT, XdpAction::Pass),
    ];
    assert_steered(&steering, &runs, passed(3));
    // 54..110: the ICMPv6 header, the quoted IPv6 header or its eight
    // bytes of TCP cut short.
    let cut: Vec<(&[u8], XdpAction)> = (54..hit.len())
        .map(|len| (&hit[..len], XdpAction::Pass))
        .collect();
    let expected = SteerCounters {
        malformed: (hit.len() - 54) as u64,
        ..Default::default()
    };
    assert_steered(&steering, &cut, expected);
}

#[test]
fn truncated_ipv6_frames_get_a_defined_action_at_every_length() {
    let Some(steering) = steering("truncated_ipv6_frames") else {
        return;
    };
    let syn = &captured::TCP6_SYN;
    // 14..74: the IPv6 or TCP header is cut short.
    let cut: Vec<(&[u8], XdpAction)> = (14..74).map(|len| (&syn[..len], XdpAction::Pass)).collect();
    let expected = SteerCounters {
        malformed: 60,
        ..Default::default()
    };
    assert_steered(&steering, &cut, expected);
    // Version 4 in an IPv6 EtherType is malformed; from 74 bytes on the
    // listener is recognised (the TCP options cut off).
    let mut bad_version = syn.to_vec();
    bad_version[14] = 0x45;
    let runs: [(&[u8], _); 2] = [
        (&bad_version, XdpAction::Pass),
        (&syn[..74], XdpAction::Pass),
    ];
    let expected = SteerCounters {
        malformed: 1,
        no_socket: 1,
        ..Default::default()
    };
    assert_steered(&steering, &runs, expected);
}

#[test]
fn removing_an_ipv6_listener_keeps_the_ipv4_one() {
    let Some(steering) = steering("removing_an_ipv6_listener") else {
        return;
    };
    steering.remove_listener(VIP6, PORT).unwrap();
    assert_steered(
        &steering,
        &[(&captured::TCP6_SYN, XdpAction::Pass)],
        passed(1),
    );
    assert_steered(
        &steering,
        &[(&captured::TCP_SYN, XdpAction::Pass)],
        no_socket(1),
    );
}

#[test]
fn removing_a_listener_stops_steering_it() {
    let Some(steering) = steering("removing_a_listener") else {
        return;
    };
    steering.remove_listener(VIP, PORT).unwrap();
    assert_steered(
        &steering,
        &[(&captured::TCP_SYN, XdpAction::Pass)],
        passed(1),
    );
}

#[test]
fn listener_hit_with_a_bound_af_xdp_socket_redirects() {
    if !common::privileged("listener_hit_redirects") {
        return;
    }
    let pair = common::Topology::new(77, common::Shape::default());
    let steering = Steering::load().unwrap();
    steering.add_listener(VIP, PORT).unwrap();
    let b_if = pair.lastack_if.clone();
    let (hit, other, icmp) = pair.lastack.enter(|| {
        let socket = XskSocket::bind(&b_if, 0, NonZeroU32::new(64).unwrap(), BindMode::Copy)
            .expect("bind AF_XDP socket");
        steering.register_socket(0, socket.fd()).unwrap();
        let hit = steering.test_run(&captured::TCP_SYN).unwrap();
        let other = steering.test_run(&captured::TCP_SYN_ACK).unwrap();
        let icmp = steering
            .test_run(&fragmentation_needed(&from_the_listener()))
            .unwrap();
        steering.unregister_socket(0).unwrap();
        (hit, other, icmp)
    });
    assert_eq!(hit, XdpAction::Redirect);
    assert_eq!(other, XdpAction::Pass);
    assert_eq!(
        icmp,
        XdpAction::Redirect,
        "path MTU news for a flow of ours"
    );
    let counters = steering.counters().unwrap();
    assert_eq!((counters.redirected, counters.passed), (1, 1));
    assert_eq!(counters.icmp_redirected, 1);
    assert_eq!(
        steering.test_run(&captured::TCP_SYN).unwrap(),
        XdpAction::Pass,
        "slot emptied"
    );
}

/// Attached to a veth with a bpf_link: kernel traffic still flows (XDP_PASS),
/// a SYN to a listener with no socket reaches the kernel (which refuses it),
/// a SYN to a listener with a socket vanishes into the AF_XDP ring, and the
/// program leaves the interface when `Steering` drops.
#[test]
fn attached_program_steers_real_kernel_traffic() {
    if !common::privileged("attached_program") {
        return;
    }
    let pair = common::Topology::new(78, common::Shape::default());
    let (b_addr, b_if) = (pair.vip, pair.lastack_if.clone());
    let ifindex = pair.lastack.ifindex(&b_if);
    let mut steering = Steering::load().unwrap();
    let (kernel_port, steered_port) = (5555u16, 7777u16);
    steering.add_listener(b_addr, steered_port).unwrap();
    pair.lastack
        .enter(|| steering.attach(ifindex, XdpMode::Native))
        .expect("attach in native mode");
    let shown = pair.lastack.exec(&["ip", "link", "show", "dev", &b_if]);
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("xdp"),
        "program attached"
    );

    let server = pair
        .lastack
        .enter(|| TcpListener::bind((b_addr, kernel_port)).unwrap());
    let connect = |port: u16| {
        pair.clients.enter(|| {
            TcpStream::connect_timeout(
                &std::net::SocketAddr::new(b_addr, port),
                Duration::from_millis(500),
            )
            .map(drop)
            .map_err(|e| e.kind())
        })
    };
    // Kernel traffic (ARP, the handshake, other ports) is passed through.
    assert_eq!(connect(kernel_port), Ok(()));
    drop(server);
    let after_kernel = steering.counters().unwrap();
    assert!(after_kernel.passed >= 3, "{after_kernel:?}");
    assert_eq!(after_kernel.redirected, 0);

    // No AF_XDP socket yet: the SYN goes to the kernel, which has no listener.
    assert_eq!(
        connect(steered_port),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    assert!(steering.counters().unwrap().no_socket >= 1);

    // With a socket on queue 0 the SYN goes to the ring; the kernel never
    // sees it, so no RST comes back and the connect times out.
    let socket = pair
        .lastack
        .enter(|| XskSocket::bind(&b_if, 0, NonZeroU32::new(64).unwrap(), BindMode::Copy).unwrap());
    steering.register_socket(0, socket.fd()).unwrap();
    assert_eq!(connect(steered_port), Err(std::io::ErrorKind::TimedOut));
    assert!(steering.counters().unwrap().redirected >= 1);

    drop(socket);
    drop(steering);
    let shown = pair.lastack.exec(&["ip", "link", "show", "dev", &b_if]);
    assert!(
        !String::from_utf8_lossy(&shown.stdout).contains("xdp"),
        "bpf_link gone with Steering"
    );
}

/// IP in IP from a cluster peer: inner TCP to a listener goes to the
/// AF_XDP socket (here: none bound, so counted as such), in every family
/// pair; to another port, or a fragment, to the kernel.
#[test]
fn tunnelled_segments_to_a_listener_are_steered() {
    let Some(steering) = steering("tunnelled_segments") else {
        return;
    };
    let hits: Vec<Vec<u8>> = [&captured::TCP_SYN[..], &captured::TCP6_SYN[..]]
        .iter()
        .flat_map(|inner| [false, true].map(|outer_v6| captured::tunnelled(inner, outer_v6)))
        .collect();
    let runs: Vec<(&[u8], XdpAction)> = hits.iter().map(|f| (&f[..], XdpAction::Pass)).collect();
    assert_steered(&steering, &runs, no_socket(4));

    let mut other_port = captured::TCP_SYN.to_vec();
    other_port[36..38].copy_from_slice(&8081u16.to_be_bytes());
    let other_port = captured::tunnelled(&other_port, false);
    let mut fragment = captured::tunnelled(&captured::TCP_SYN, false);
    fragment[14 + 6] |= 0x20; // more fragments
    fix_ip_checksum(&mut fragment);
    assert_steered(
        &steering,
        &[(&other_port, XdpAction::Pass), (&fragment, XdpAction::Pass)],
        SteerCounters {
            passed: 1,
            fragment: 1,
            ..Default::default()
        },
    );
}
