#!/usr/bin/env bash
# Memory per idle proxied connection: lastack next to HAProxy, one run.
# (After a warm-up of 3,000 connections opened and closed.)
#
#   namespace C (clients)  ──veth──  P (the proxy)  ──veth──  S (echo backend)
#   10.71.0.1                        10.71.0.2 = VIP           10.71.1.11:8080
#
# For each proxy: start it, let it settle, read its resident memory; open
# N connections through it, each carrying 64 B each way (an echo), and
# hold them idle; read its resident memory again (per connection: the
# growth over N), with lastack's own buffer-pool figures and the kernel's
# socket memory in P (the backend leg's sockets, reported apart: they are
# the kernel's, not the proxy's); then close every connection, wait until
# the proxy has none, and read what memory remains.
#
# lastack runs at N = $LASTACK_CONNECTIONS (default 15000: each needs a
# backend socket, and this machine allows 20,000 descriptors per process)
# and at HAProxy's N; HAProxy at N = $HAPROXY_CONNECTIONS (default 9000:
# it needs two descriptors per connection).
#
# Usage (root): benches/idle.sh
#   BASELINE=/path/to/an/older/lastack benches/idle.sh   adds that build
# Writes benches/results/<date>/idle.md (and idle.jsonl).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
LASTACK_CONNECTIONS=${LASTACK_CONNECTIONS:-15000}
HAPROXY_CONNECTIONS=${HAPROXY_CONNECTIONS:-9000}
PROXIES=${PROXIES:-"lastack haproxy"}
if [ -n "${BASELINE:-}" ]; then PROXIES="$PROXIES lastack-baseline"; fi

. "$here/benches/lib.sh"
bench_install idle
(cd "$here" && cargo build --release --quiet)
bin="$here/target/release/lastack"
bench_namespaces i

bench_topology 71 1
ip netns exec "$C" sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
ip netns exec "$S" "$bin" backend -l 10.71.1.11:8080 --mode echo & pids+=($!)

cat > "$work/lastack.toml" <<TOML
[[interfaces]]
name = "$VP"
queues = 1
umem_frames = 16384

[[listeners]]
name = "idle"
vip = "10.71.0.2"
port = 80
pool = "echo"
idle_timeout = "1h"
max_connections = 18000

[[pools]]
name = "echo"
[pools.health_check]
enabled = false
[[pools.backends]]
address = "10.71.1.11:8080"

[admin]
listen = "10.71.0.2:9190"
[logging]
level = "warn"
TOML
cat > "$work/haproxy.cfg" <<CFG
$(haproxy_head 9900 1h)
listen idle
    bind 10.71.0.2:80
    server echo 10.71.1.11:8080
CFG

# The client: opens N connections, an echo of 64 B on each, holds them
# until told (a line on stdin), then closes them all and exits.
cat > "$work/hold.py" <<'PY'
import socket, sys
n = int(sys.argv[1])
held = []
for i in range(n):
    s = socket.create_connection(("10.71.0.2", 80), timeout=10)
    s.sendall(b"x" * 64)
    got = 0
    while got < 64:
        chunk = s.recv(64 - got)
        if not chunk:
            sys.exit(f"connection {i}: closed early")
        got += len(chunk)
    held.append(s)
print("held", len(held), flush=True)
sys.stdin.readline()
for s in held:
    s.close()
print("closed", flush=True)
PY

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
# Kernel TCP memory in a namespace, KiB (sockstat counts pages).
tcp_mem_kib() { ip netns exec "$1" awk '/^TCP:/ {for (i = 1; i <= NF; i++) if ($i == "mem") print $(i+1) * 4}' /proc/net/sockstat; }
metric() { # name: summed, from lastack's JSON view
    ip netns exec "$C" "$bin" stats -a 10.71.0.2:9190 --json 2>/dev/null | python3 -c "
import json, sys
families = json.load(sys.stdin)['families']
print(int(sum(s['value'] for f in families if f['name'] == '$1' for s in f['samples'])))" 2>/dev/null || echo 0
}
established() { # connections the proxy's namespace holds toward the backend
    ip netns exec "$P" ss -Htn state established dst 10.71.1.11 | wc -l
}

results="$work/idle.jsonl"
: > "$results"
run() { # proxy connections
    local proxy=$1 n=$2 pid
    case $proxy in
        lastack) ip netns exec "$P" "$bin" run -c "$work/lastack.toml" & pid=$! ;;
        lastack-baseline) ip netns exec "$P" "$BASELINE" run -c "$work/lastack.toml" & pid=$! ;;
        haproxy) ip netns exec "$P" haproxy -db -f "$work/haproxy.cfg" & pid=$! ;;
    esac
    pids+=("$pid")
    sleep 2
    local rss_start
    rss_start=$(rss_kib "$pid")
    # Warm-up: 3,000 connections opened, used and closed, so the baseline
    # includes what any traffic touches once (packet frames, receive
    # buffers, the allocator's arenas), not only what each connection
    # holds.
    echo | ip netns exec "$C" python3 "$work/hold.py" 3000 > /dev/null
    local waited=0
    while [ "$(established)" -gt 0 ] && [ $waited -lt 300 ]; do sleep 0.1; waited=$((waited + 1)); done
    sleep 2
    local rss0 tcp0 rss1 tcp1 rss2 pool_peak=0 pool_now=0
    rss0=$(rss_kib "$pid"); tcp0=$(tcp_mem_kib "$P")
    coproc HOLD { ip netns exec "$C" python3 "$work/hold.py" "$n"; }
    local line
    read -r line <&"${HOLD[0]}"
    [ "$line" = "held $n" ] || { echo "idle: $proxy: $line" >&2; exit 1; }
    sleep 2
    rss1=$(rss_kib "$pid"); tcp1=$(tcp_mem_kib "$P")
    case $proxy in lastack*) pool_now=$(metric lastack_buffer_pool_bytes) ;; esac
    echo >&"${HOLD[1]}"
    read -r line <&"${HOLD[0]}"
    wait "$HOLD_PID" 2>/dev/null || true
    waited=0
    while [ "$(established)" -gt 0 ] && [ $waited -lt 300 ]; do sleep 0.1; waited=$((waited + 1)); done
    sleep 12 # the allocator's decay (if any) gets its chance
    rss2=$(rss_kib "$pid")
    if [ -n "${SMAPS:-}" ]; then # where the memory sits after close
        awk '/^[0-9a-f]+-[0-9a-f]+ / {name = $6 ? $6 : "[anon " $1 "]"} /^Rss:/ {print $2, name}' \
            "/proc/$pid/smaps" | sort -rn | head -12 > "$work/smaps-$proxy-$n.txt"
        cp "$work/smaps-$proxy-$n.txt" /tmp/ 2>/dev/null || true
    fi
    local give_backs=0
    case $proxy in lastack*) pool_peak=$(metric lastack_buffer_pool_peak_bytes)
        give_backs=$(metric lastack_memory_give_backs_total) ;; esac
    echo "idle: $proxy $n: memory given back $give_backs times" >&2
    kill "$pid"; wait "$pid" 2>/dev/null || true
    python3 - "$proxy" "$n" "$rss0" "$rss1" "$rss2" "$tcp0" "$tcp1" "$pool_now" "$pool_peak" "$rss_start" >> "$results" <<'PY'
import json, sys
proxy, n, rss0, rss1, rss2, tcp0, tcp1, pool_now, pool_peak, rss_start = sys.argv[1], *map(int, sys.argv[2:])
grown = rss1 - rss0
print(json.dumps({
    "proxy": proxy, "connections": n,
    "rss_start_kib": rss_start,
    "kib_per_connection_from_start": round((rss1 - rss_start) / n, 2),
    "rss_before_kib": rss0, "rss_held_kib": rss1, "rss_after_close_kib": rss2,
    "kib_per_connection": round(grown / n, 2),
    "returned_percent": round(100 * (rss1 - rss2) / grown, 1) if grown > 0 else 100.0,
    "kernel_tcp_kib_per_connection": round((tcp1 - tcp0) / n, 2),
    "pool_held_kib": pool_now // 1024, "pool_peak_kib": pool_peak // 1024,
}))
PY
    tail -1 "$results" >&2
}

for proxy in $PROXIES; do
    case $proxy in
        haproxy) run haproxy "$HAPROXY_CONNECTIONS" ;;
        *) run "$proxy" "$LASTACK_CONNECTIONS"; run "$proxy" "$HAPROXY_CONNECTIONS" ;;
    esac
done

out="$here/benches/results/$(date +%F)"
mkdir -p "$out"
cp "$results" "$out/idle.jsonl"
python3 - "$results" > "$out/idle.md" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("# Memory per idle proxied connection: lastack vs HAProxy\n")
print("After a warm-up (3,000 connections opened, used and closed), each connection carried 64 B each way")
print("(echo), then stayed idle. Resident memory of the proxy process")
print("(VmRSS) before, while holding, and 12 s after every connection closed; the kernel's TCP memory in the")
print("proxy's namespace (its backend sockets) apart.\n")
print("KiB/connection is the growth from the warmed-up baseline over the connections held; 'from start' counts")
print("the warm-up's one-time growth too (frames, receive buffers, arenas), as a new user measuring from")
print("start would. 'Returned' is the share of the growth given back 12 s after every connection closed.\n")
print("| proxy | connections | KiB/connection (proxy) | from start | returned after close | kernel TCP KiB/connection | RSS start / warm / held / after, MiB | buffer pool held / peak, KiB |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['proxy']} | {r['connections']} | {r['kib_per_connection']} | {r['kib_per_connection_from_start']} | {r['returned_percent']} % | "
          f"{r['kernel_tcp_kib_per_connection']} | {r['rss_start_kib']//1024} / {r['rss_before_kib']//1024} / {r['rss_held_kib']//1024} / "
          f"{r['rss_after_close_kib']//1024} | {r['pool_held_kib']} / {r['pool_peak_kib']} |")
PY
cat "$out/idle.md"
