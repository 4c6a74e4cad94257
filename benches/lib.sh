# Shared by the benchmark scripts (sourced): names unique to this run for
# three namespaces — C (clients), P (the proxy), S (backends) — and the two
# veth pairs between them (VC–VP, VQ–VS), a work directory, the PIDs to
# stop, and the cleanup of all of it on exit.

bench_namespaces() { # one-letter prefix of this script's names
    id=$$
    C=ls${1}c$id; P=ls${1}p$id; S=ls${1}s$id
    VC=v${1}c$id; VP=v${1}p$id; VQ=v${1}q$id; VS=v${1}s$id
    work=$(mktemp -d)
    pids=()
    trap bench_cleanup EXIT INT TERM
}

bench_cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    for ns in "$C" "$P" "$S"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$work"
}

bench_topology() { # net backends: C 10.<net>.0.1 ── P 10.<net>.0.2 / 10.<net>.1.1 ── S 10.<net>.1.11…
    local net=$1 n=$2 i
    for ns in "$C" "$P" "$S"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
    ip link add "$VC" netns "$C" type veth peer name "$VP" netns "$P"
    ip link add "$VQ" netns "$P" type veth peer name "$VS" netns "$S"
    ip -n "$C" addr add "10.$net.0.1/24" dev "$VC"
    ip -n "$P" addr add "10.$net.0.2/24" dev "$VP"
    ip -n "$P" addr add "10.$net.1.1/24" dev "$VQ"
    for i in $(seq 11 $((10 + n))); do ip -n "$S" addr add "10.$net.1.$i/24" dev "$VS"; done
    for l in "$C:$VC" "$P:$VP" "$P:$VQ" "$S:$VS"; do ip -n "${l%%:*}" link set "${l##*:}" up; done
    # The client side's offloads off: segments as a real NIC would send them.
    ip netns exec "$C" ethtool -K "$VC" tx off tso off gso off >/dev/null
}
