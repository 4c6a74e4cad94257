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

# Installs from apt what a script needs and this machine lacks: HAProxy,
# nginx with its stream module, and the commands named (each its package's
# name too, e.g. tcpdump).
bench_install() { # script-name [command...]
    local who=$1 need="" c
    shift
    command -v haproxy >/dev/null || need="$need haproxy"
    [ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need="$need libnginx-mod-stream"
    command -v nginx >/dev/null || need="$need nginx-light"
    for c in "$@"; do command -v "$c" >/dev/null || need="$need $c"; done
    if [ -n "$need" ]; then
        echo "$who: installing$need" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
    fi
}

# The head of a HAProxy config: one thread, mode tcp.
haproxy_head() { # maxconn client-and-server-timeout
    cat <<CFG
global
    nbthread 1
    maxconn $1
defaults
    mode tcp
    timeout connect 2s
    timeout client $2
    timeout server $2
CFG
}

# lastack's one interface: one queue, its shard on CPU 0, 16,384 frames.
lastack_interface() { # name [busy_poll]
    printf '[[interfaces]]\nname = "%s"\nqueues = 1\ncores = [0]\numem_frames = 16384\n' "$1"
    [ -n "${2:-}" ] && printf 'busy_poll = "%s"\n' "$2"
    return 0
}

# lastack's pool `name` without health checks: the pool's own keys
# (`keys`: TOML lines, may be empty), then the backends given.
lastack_pool() { # name keys backend...
    local name=$1 keys=$2 b
    shift 2
    printf '[[pools]]\nname = "%s"\n' "$name"
    [ -n "$keys" ] && printf '%s\n' "$keys"
    printf '[pools.health_check]\nenabled = false\n'
    for b in "$@"; do printf '[[pools.backends]]\naddress = "%s"\n' "$b"; done
}

# The end of a lastack config: deep handshake queues, the admin endpoint,
# warnings only.
lastack_tail() { # admin-address
    cat <<TOML
[tcp]
syn_backlog = 16384
accept_backlog = 16384
[admin]
listen = "$1"
[logging]
level = "warn"
TOML
}
