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
