#!/usr/bin/env bash
# Compares lastack with HAProxy (mode tcp) and nginx (stream) on connection
# churn, with `direct` (no proxy) as the upper bound. Same topology for all:
#
#   namespace C (load: lastack churn)  ──veth──  P (the proxy)  ──veth──  S (backends)
#   10.70.0.1                                    10.70.0.2 = VIP          10.70.1.11-14
#
# The proxy is pinned to CPU 0; the load generator and the backends
# (`lastack backend`) to CPU 1. Workloads, 64 B each way, at each
# concurrency in $FLOWS, to one backend address and to four:
#   A  client-first: the client reads the response and closes first
#   B  server-first: the backend closes first, the client reads until EOF
#   C  framed: the backend closes first, the client closes once it has the
#      whole response (HTTP/1.1 Connection: close with Content-Length)
#   K  kept alive: $KEPT connections to one backend address carry
#      request/response exchanges back to back for the whole run (like
#      neper's tcp_rr); requests/s, latency and CPU are per request
# plus a sustained run of A to one address ($SUSTAINED seconds) and a
# single-stream bulk run. For each: connections/s, p50/p99, errors, CPU-µs
# per connection of the proxy process and of the whole machine
# (/proc/stat), TIME-WAIT on the proxy's client leg and backend leg.
#
# Writes benches/results/<date>/{results.md,results.json}.
# Usage (root): benches/compare.sh            full run (several minutes)
#               QUICK=1 benches/compare.sh    A and C only, 128 flows, 5 s
#   BASELINE=/path/to/an/older/lastack benches/compare.sh
#     adds that build as proxy `lastack-baseline` (same config, same run),
#     to compare a change with what it changes side by side.
#   TW_REUSE=0 benches/compare.sh
#     the proxy's namespace without TIME-WAIT reuse (the default host case
#     for a non-loopback backend: 0, or the kernel's default 2); the
#     sustained run is labelled with it. Default 1.
#   TIMESTAMPS=0 benches/compare.sh
#     the proxy's namespace without TCP timestamps: no TIME-WAIT on the
#     backend leg can be reused then, bound port or not (the real wall);
#     the sustained run is labelled with it. Default 1.
#   BACKEND_CLOSE=reset benches/compare.sh
#     lastack's pools end backend connections with RST (`backend_close =
#     "reset"`), HAProxy's with `option nolinger`: no TIME-WAIT on the
#     backend leg for either. Default fin.
#   PORTS=20000-28191 benches/compare.sh
#     the backend leg's source ports, the same for every proxy: lastack's
#     pools' `source_ports` and the kernel's ip_local_port_range in the
#     proxy's namespace (which HAProxy's and nginx's connects draw from).
#     Default 1024-65535 (lastack's default range) for all; rows are
#     labelled when it is set.
#   BULK=0 benches/compare.sh     without the single-stream bulk run
#   SUSTAINED=60 SUSTAINED_FLOWS=32 benches/compare.sh
#     the sustained run's length (0: none) and concurrency (128)
#   RESULTS_DIR=dir benches/compare.sh   writes (and merges with) dir instead
#     of benches/results/<date>
#   kernel-leg (in the default PROXIES): no proxy, the floor of a proxy
#     whose backend leg is kernel TCP: the load
#     generator itself runs in the proxy's namespace on the proxy's CPU
#     (CPU 0) and connects straight to the backends, from the same port
#     range with the same sysctls, doing what a backend leg does per
#     connection (connect, 64 B each way, the close of the workload). Its
#     "proxy CPU" is the load generator's own CPU per connection, its
#     kernel (system) part in brackets: that part is the floor; the
#     client leg of a proxy comes on top.
#   e.g. the backend-leg benchmark (60 s without TIME-WAIT reuse):
#   PROXIES="lastack haproxy" WORKLOADS="" TW_REUSE=0 benches/compare.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
SECS=${SECS:-10}
FLOWS=${FLOWS:-"32 128"}
SUSTAINED=${SUSTAINED:-60}
SUSTAINED_FLOWS=${SUSTAINED_FLOWS:-128}
PROXIES=${PROXIES:-"direct kernel-leg lastack haproxy nginx"}
if [ -n "${BASELINE:-}" ]; then PROXIES="$PROXIES lastack-baseline"; fi
WORKLOADS=${WORKLOADS-"A B C K"}
KEPT=${KEPT:-50}
BULK=${BULK:-1}
TW_REUSE=${TW_REUSE:-1}
BACKEND_CLOSE=${BACKEND_CLOSE:-fin}
TIMESTAMPS=${TIMESTAMPS:-1}
sustained_label="A sustained"
[ "$TW_REUSE" != 1 ] && sustained_label="$sustained_label tw_reuse=$TW_REUSE"
[ "$TIMESTAMPS" != 1 ] && sustained_label="$sustained_label timestamps=$TIMESTAMPS"
[ "$BACKEND_CLOSE" != fin ] && sustained_label="$sustained_label close=$BACKEND_CLOSE"
PORTS_LABEL=""
[ -n "${PORTS:-}" ] && PORTS_LABEL=" ports=$PORTS"
PORTS=${PORTS:-1024-65535}
sustained_label="$sustained_label$PORTS_LABEL"
if [ -n "${QUICK:-}" ]; then SECS=5; FLOWS=128; SUSTAINED=0; WORKLOADS="A C K"; fi

. "$here/benches/lib.sh"
bench_install compare
(cd "$here" && cargo build --release --quiet)
bin="$here/target/release/lastack"
bench_namespaces c

# (The topology is built afresh for each proxy: see topology_up.)

# Frontend ports on the VIP: 80 → 1 backend :8080, 81 → 4 × :8080,
# 82 → 1 × :8081, 83 → 4 × :8081, 90 → bulk (echo).
backends() { # port count
    local n
    for n in $(seq 11 $((10 + $2))); do echo "10.70.1.$n:$1"; done
}
cat > "$work/lastack.toml" <<TOML
$(lastack_interface "$VP" "${BUSY_POLL:-50us}")
$(for p in 80 81 82 83 84 85 90; do cat <<L
[[listeners]]
name = "l$p"
vip = "10.70.0.2"
port = $p
pool = "p$p"
close_grace = "2s"
close_policy = "$(case $p in 84|85) echo immediate ;; *) echo client-first ;; esac)"
max_connections = 100000
L
done)
$(for spec in "80 8080 1" "81 8080 4" "82 8081 1" "83 8081 4" "84 8081 1" "85 8081 4" "90 9000 1"; do set -- $spec
    keys="source_ports = \"$PORTS\""
    [ "$BACKEND_CLOSE" != fin ] && keys="$keys"$'\n'"backend_close = \"$BACKEND_CLOSE\""
    lastack_pool "p$1" "$keys" $(backends "$2" "$3")
done)
$(lastack_tail 10.70.0.2:9190)
TOML
# maxconn: within the 20,000 open files this machine allows (2 per
# connection).
cat > "$work/haproxy.cfg" <<CFG
$(haproxy_head 9000 30s)
$([ "$BACKEND_CLOSE" = reset ] && echo "    option nolinger")
$(for spec in "80 8080 1" "81 8080 4" "82 8081 1" "83 8081 4" "90 9000 1"; do set -- $spec; cat <<F
listen l$1
    bind 10.70.0.2:$1
    balance roundrobin
$(n=0; for b in $(backends "$2" "$3"); do n=$((n+1)); echo "    server s$n $b"; done)
F
done)
CFG
"$bin" check -c "$work/lastack.toml" >/dev/null
cat > "$work/nginx.conf" <<CFG
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx.err;
events { worker_connections 16000; }
stream {
$(for spec in "80 8080 1" "81 8080 4" "82 8081 1" "83 8081 4" "90 9000 1"; do set -- $spec; cat <<F
    upstream u$1 {
$(for b in $(backends "$2" "$3"); do echo "        server $b;"; done)
    }
    server { listen 10.70.0.2:$1; proxy_pass u$1; }
F
done)
}
CFG

topology_up() {
    bench_topology 70 4
    # direct: the clients reach the backends through P's kernel.
    ip -n "$C" route add 10.70.1.0/24 via 10.70.0.2
    ip -n "$S" route add 10.70.0.0/24 via 10.70.1.1
    ip netns exec "$P" sysctl -qw net.ipv4.ip_forward=1
    # Clients: a wide port range and TIME-WAIT reuse (a load generator must not
    # be the one that runs out of ports). The proxy's namespace: the kernel
    # proxies' backend leg draws its ports from ip_local_port_range, set to
    # the range lastack's pools get ($PORTS), with tcp_tw_reuse=1 unless
    # TW_REUSE says otherwise.
    ip netns exec "$C" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1
    ip netns exec "$P" sysctl -qw net.ipv4.ip_local_port_range="${PORTS%-*} ${PORTS#*-}" \
        net.ipv4.tcp_tw_reuse="$TW_REUSE" net.ipv4.tcp_timestamps="$TIMESTAMPS"

    # Backends: :8080 closes after the client (A), :8081 closes first (B, C).
    ip netns exec "$S" taskset -c 1 "$bin" backend -l 10.70.1.11:8080 -l 10.70.1.12:8080 \
        -l 10.70.1.13:8080 -l 10.70.1.14:8080 --close client-first & pids+=($!)
    ip netns exec "$S" taskset -c 1 "$bin" backend -l 10.70.1.11:8081 -l 10.70.1.12:8081 \
        -l 10.70.1.13:8081 -l 10.70.1.14:8081 --close server-first & pids+=($!)
    # Bulk: a discard-like sink is the echo mode read by a reader below.
    ip netns exec "$S" taskset -c 1 "$bin" backend -l 10.70.1.11:9000 --mode echo & pids+=($!)
    sleep 0.5
}
topology_down() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
    ip netns del "$C" 2>/dev/null || true
    ip netns del "$P" 2>/dev/null || true
    ip netns del "$S" 2>/dev/null || true
    sleep 0.5
}

proxy_pid=""
start_proxy() {
    case $1 in
        direct|kernel-leg) proxy_pid="" ;;
        lastack) ip netns exec "$P" taskset -c 0 "$bin" run -c "$work/lastack.toml" & proxy_pid=$! ;;
        lastack-baseline) ip netns exec "$P" taskset -c 0 "$BASELINE" run -c "$work/lastack.toml" & proxy_pid=$! ;;
        haproxy) ip netns exec "$P" taskset -c 0 haproxy -db -f "$work/haproxy.cfg" & proxy_pid=$! ;;
        nginx) ip netns exec "$P" taskset -c 0 nginx -p "$work" -c "$work/nginx.conf" 2>>"$work/nginx.err" & proxy_pid=$! ;;
    esac
    [ -n "$proxy_pid" ] && pids+=("$proxy_pid")
    sleep 1.5
    if [ -n "$proxy_pid" ] && ! kill -0 "$proxy_pid" 2>/dev/null; then
        echo "compare: $1 did not start" >&2
        cat "$work/nginx.err" 2>/dev/null >&2 || true
        exit 1
    fi
}
stop_proxy() {
    if [ -n "$proxy_pid" ]; then
        kill "$proxy_pid" 2>/dev/null || true
        wait "$proxy_pid" 2>/dev/null || true
    fi
    proxy_pid=""
    sleep 0.5
}
# CPU ticks (user+system) of a process and its threads/children.
proc_ticks() {
    [ -z "$1" ] && { echo 0; return; }
    local total=0 t
    for t in $(pgrep -P "$1" 2>/dev/null) "$1"; do
        [ -r "/proc/$t/stat" ] && total=$((total + $(awk '{print $14 + $15}' "/proc/$t/stat")))
    done
    echo "$total"
}
sys_ticks() { awk '/^cpu /{print $2+$3+$4+$6+$7+$8}' /proc/stat; }
hz=$(getconf CLK_TCK)

target() { # proxy workload backends
    local port
    case "$2:$3" in
        A:1|C:1|B:1|K:1) port=80 ;; A:4|C:4|B:4) port=81 ;;
    esac
    case $2 in B|C) port=$((port + 2)) ;; esac
    # lastack serves B (clients that read until EOF) from an `immediate`
    # listener: under client-first they would wait close_grace for its FIN.
    case "$1:$2" in lastack*:B) port=$((port + 2)) ;; esac
    if [ "$1" = direct ] || [ "$1" = kernel-leg ]; then
        if [ "$3" = 1 ]; then backends $((port >= 82 ? 8081 : 8080)) 1
        else backends $((port >= 82 ? 8081 : 8080)) 4; fi
    else
        echo "10.70.0.2:$port"
    fi
}
time_wait() { # namespace local-address-prefix
    ip netns exec "$1" ss -Htan state time-wait 2>/dev/null | awk -v p="$2" '$3 ~ "^"p {n++} END {print n+0}'
}
lastack_metric() { # name: summed over its label sets, from the JSON view
    ip netns exec "$C" "$bin" stats -a 10.70.0.2:9190 --json 2>/dev/null | python3 -c "
import json, sys
try:
    families = json.load(sys.stdin)['families']
except ValueError:
    print(0); sys.exit()
print(sum(s['value'] for f in families if f['name'] == '$1' for s in f['samples']))" \
        || echo 0
}

results="$work/results.jsonl"
: > "$results"
run_one() { # proxy workload flows backends seconds [label]
    local proxy=$1 w=$2 flows=$3 nb=$4 secs=$5 label=${6:-$2$PORTS_LABEL} close churn_close targets kept=1
    case $w in A|C) churn_close=client-first ;; B) churn_close=server-first ;; K) churn_close=client-first; kept=0 ;; esac
    targets=$(target "$proxy" "$w" "$nb" | tr '\n' ' ')
    local p0 s0 p1 s1 out tw_client tw_backend
    local lastack_tw0=0
    [ "$proxy" = lastack ] && lastack_tw0=$(lastack_metric lastack_tcp_time_wait_entries)
    [ "$proxy" = lastack-baseline ] && lastack_tw0=0
    p0=$(proc_ticks "$proxy_pid"); s0=$(sys_ticks)
    local perf_pid=""
    if [ -n "${PROFILE:-}" ] && [ -n "$proxy_pid" ] && [ ! -e "$work/profile-$proxy.data" ]; then
        perf record -q -g -o "$work/profile-$proxy.data" -p "$proxy_pid" -- sleep "$secs" \
            >/dev/null 2>&1 & perf_pid=$!
    fi
    # kernel-leg: the load generator is the backend leg, on the proxy's CPU.
    local load_ns=$C load_cpu=1
    [ "$proxy" = kernel-leg ] && { load_ns=$P; load_cpu=0; }
    out=$(ip netns exec "$load_ns" taskset -c "$load_cpu" "$bin" churn $targets -c "$flows" -t 1 -d "${secs}s" \
        --close "$churn_close" -k "$kept" --json)
    if [ -n "$perf_pid" ]; then
        wait "$perf_pid" || true
        perf report -i "$work/profile-$proxy.data" --stdio --no-children --percent-limit 0.7 \
            -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -60 > "$work/profile-$proxy.txt" || true
    fi
    p1=$(proc_ticks "$proxy_pid"); s1=$(sys_ticks)
    local tw_bytes=0
    if [ "$proxy" = lastack ]; then
        tw_client=$(lastack_metric lastack_tcp_time_wait_entries)
        tw_bytes=$(lastack_metric lastack_tcp_time_wait_bytes)
    elif [ "$proxy" = lastack-baseline ]; then
        # An older build may not serve the JSON view: not measured.
        tw_client=-1
    else
        tw_client=$(time_wait "$P" "10.70.0.2:")
    fi
    tw_backend=$(time_wait "$P" "10.70.1.1:")
    echo "$out" | python3 -c "
import json, sys
r = json.load(sys.stdin)
n = max(r['transactions'], 1)
# kernel-leg: the load generator's CPU is the figure (no proxy process).
proxy_cpu = r['cpu_us_per_transaction'] if '$proxy' == 'kernel-leg' else ($p1 - $p0) * 1e6 / $hz / n
print(json.dumps({'proxy': '$proxy', 'workload': '$label', 'flows': $flows, 'backends': $nb,
  'seconds': r['elapsed_s'], 'conn_per_s': round(r['connections_per_s']),
  'req_per_s': round(r['requests_per_s']),
  'p50_ms': r['transaction']['p50_us'] / 1000, 'p99_ms': r['transaction']['p99_us'] / 1000,
  'errors': sum(r['errors'].values()), 'proxy_cpu_us_per_conn': round(proxy_cpu, 1),
  'system_cpu_us_per_conn': round(($s1 - $s0) * 1e6 / $hz / n, 1),
  'tw_client_leg': $tw_client, 'tw_backend_leg': $tw_backend, 'lastack_tw_table_bytes': $tw_bytes,
  'load_cpu_cores': round(r['cpu_cores'], 2),
  **({'proxy_kernel_cpu_us_per_conn': round(r['kernel_cpu_us_per_transaction'], 1)} if '$proxy' == 'kernel-leg' else {})}))" | tee -a "$results"
}

# Fresh namespaces and a fresh proxy per workload: TIME-WAITs left in the
# kernel (or in lastack) by one workload must neither stand in the next
# one's way nor be counted as its own.
for proxy in $PROXIES; do
    for w in $WORKLOADS; do
        topology_up
        start_proxy "$proxy"
        if [ "$w" = K ]; then
            run_one "$proxy" K "$KEPT" 1 "$SECS"
        else
            for nb in 1 4; do
                for flows in $FLOWS; do
                    run_one "$proxy" "$w" "$flows" "$nb" "$SECS"
                    sleep 1
                done
            done
        fi
        stop_proxy
        topology_down
    done
    [ "$BULK" = 1 ] || [ "$SUSTAINED" -gt 0 ] || continue
    topology_up
    start_proxy "$proxy"
    # One stream, 100 MiB each way through the proxy (echo backend).
    if [ "$BULK" = 1 ] && [ "$proxy" != kernel-leg ]; then
        bulk=$(ip netns exec "$C" taskset -c 1 "$bin" churn "$(if [ "$proxy" = direct ]; then echo 10.70.1.11:9000; else echo 10.70.0.2:90; fi)" \
            -c 1 -t 1 -n 1 --request 104857600 --response 104857600 --timeout 60s --json)
        echo "$bulk" | python3 -c "
import json, sys
r = json.load(sys.stdin)
print(json.dumps({'proxy': '$proxy', 'bulk_gbit_per_s_each_way': round(100 * 1048576 * 8 / r['elapsed_s'] / 1e9, 2), 'errors': sum(r['errors'].values())}))" | tee -a "$work/bulk.jsonl"
    fi
    if [ "$SUSTAINED" -gt 0 ]; then
        run_one "$proxy" A "$SUSTAINED_FLOWS" 1 "$SUSTAINED" "$sustained_label"
    fi
    stop_proxy
    topology_down
done

date=$(date -u +%Y-%m-%d)
out=${RESULTS_DIR:-"$here/benches/results/$date"}
mkdir -p "$out"
# Merge with an earlier run of the same day: rows of (proxy, workload,
# flows, backends) or bulk runs this run did not repeat are kept.
python3 - "$results" "$out/results.jsonl" "$work/bulk.jsonl" "$out/bulk.jsonl" <<'PY'
import json, sys, os
def load(p):
    return [json.loads(l) for l in open(p) if l.strip()] if os.path.exists(p) else []
new, old = load(sys.argv[1]), load(sys.argv[2])
key = lambda r: (r['proxy'], r['workload'], r['flows'], r['backends'])
done = {key(r) for r in new}
merged = [r for r in old if key(r) not in done] + new
order = {p: i for i, p in enumerate(['direct', 'kernel-leg', 'lastack', 'lastack-baseline', 'haproxy', 'nginx'])}
merged.sort(key=lambda r: (order.get(r['proxy'], 9), r['workload'], r['backends'], r['flows']))
open(sys.argv[1], 'w').write(''.join(json.dumps(r) + '\n' for r in merged))
nb, ob = load(sys.argv[3]), load(sys.argv[4])
seen = {b['proxy'] for b in nb}
bulk = sorted([b for b in ob if b['proxy'] not in seen] + nb, key=lambda b: order.get(b['proxy'], 9))
open(sys.argv[3], 'w').write(''.join(json.dumps(b) + '\n' for b in bulk))
PY
cp "$results" "$out/results.jsonl"
cp "$work/bulk.jsonl" "$out/bulk.jsonl" 2>/dev/null || true
cp "$work"/profile-*.txt "$work"/profile-*.data "$out/" 2>/dev/null || true
python3 - "$results" "$out/results.md" "$work/bulk.jsonl" <<'PY'
import json, sys, platform, os
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), '?')
with open(sys.argv[2], 'w') as f:
    f.write(f"# Connection churn: lastack vs HAProxy vs nginx\n\n")
    f.write(f"Machine: {os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}. "
            "Proxy pinned to CPU 0; load generator and backends on CPU 1. 64 B each way.\n\n")
    f.write("A: client closes first. B: server closes first, client reads until EOF. "
            "C: server closes first, client closes once it has the response. "
            "K: kept-alive connections carrying request/response exchanges back to back "
            "(its rate, latency and CPU are per request). lastack runs "
            "A and C on `client-first` listeners and B on `immediate` ones (a client that "
            "reads until EOF would wait close_grace under client-first). Every proxy's backend leg "
            "draws from the same source ports (lastack's `source_ports`, the kernel's "
            "ip_local_port_range in the proxy's namespace): 1024-65535 unless a row says `ports=`; "
            "tcp_tw_reuse=1 unless a row says otherwise "
            "(`A sustained tw_reuse=0`: the kernel reuses no TIME-WAIT on ports it chooses; "
            "`timestamps=0`: no TCP timestamps, no TIME-WAIT reuse at all; "
            "`close=reset`: lastack's `backend_close = \"reset\"`, HAProxy's `option nolinger`). "
            "`kernel-leg` is no proxy: the load generator runs in the proxy's namespace on CPU 0 and "
            "connects straight to the backends, doing per connection what a kernel-TCP backend leg "
            "does; its CPU figure is the load generator's own, with its kernel (system) part in brackets: the "
            "kernel part is the floor of any proxy whose backend leg is kernel TCP before its client leg is counted.\n\n")
    f.write("| proxy | workload | flows | backends | seconds | conn/s | req/s | p50 ms | p99 ms | errors | proxy CPU-µs/conn (K: /req) | system CPU-µs/conn (K: /req) | TIME-WAIT client leg | TIME-WAIT backend leg |\n")
    f.write("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    def kernel_part(r):
        k = r.get('proxy_kernel_cpu_us_per_conn')
        return f" (kernel {k})" if k is not None else ""
    for r in rows:
        f.write(f"| {r['proxy']} | {r['workload']} | {r['flows']} | {r['backends']} | {r['seconds']:.0f} | "
                f"{r['conn_per_s']} | {r.get('req_per_s', r['conn_per_s'])} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | "
                f"{r['proxy_cpu_us_per_conn']}{kernel_part(r)} | {r['system_cpu_us_per_conn']} | {r['tw_client_leg']} | {r['tw_backend_leg']} |\n")
    try:
        bulk = [json.loads(l) for l in open(sys.argv[3]) if l.strip()]
    except OSError:
        bulk = []
    if bulk:
        f.write("\nSingle stream, 100 MiB each way (echo backend):\n\n| proxy | Gbit/s each way | errors |\n|---|---|---|\n")
        for b in bulk:
            f.write(f"| {b['proxy']} | {b['bulk_gbit_per_s_each_way']} | {b['errors']} |\n")
print(open(sys.argv[2]).read())
PY
(cd "$here" && cargo run --release --quiet --example plot -- "$out/results.jsonl" "$out") \
    && printf '\n![connections/s](conn_per_s.png)\n\n![p99](p99.png)\n' >> "$out/results.md"
echo "written: $out/results.md"
rm -f "$out"/profile-*.data
