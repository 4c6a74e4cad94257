#!/usr/bin/env bash
# A CPU profile of a proxy under connection churn, as a flame graph:
#
#   C (clients: lastack churn) ──veth── P (the proxy, CPU 0) ──veth── S (backend)
#
# PROXY=lastack (default) or haproxy (mode tcp, one thread), in the same
# topology, so the two profiles can be read side by side.
# Workload A of benches/compare.sh (the client closes first, 64 B each way,
# one backend address, $FLOWS flows; WORKLOAD=K: $FLOWS kept-alive
# connections), the proxy pinned to CPU 0, the load and the backend to CPU
# 1. perf samples the proxy's threads for $SECS seconds (DWARF call stacks,
# so Rust frames unwind without frame pointers); inferno draws the SVG with
# the kernel's frames coloured apart from the proxy's own ("java" palette:
# kernel orange, user code green/blue), and the .md splits the samples: by
# object (kernel, the proxy, libc), by what the proxy was doing, and the
# share that is its peers' work: veth runs a frame's receive processing
# (the client's or the backend's kernel TCP, and the wake-up of the process
# waiting for it) on the sending CPU, inside the proxy's time.
# Writes benches/results/<date>/flamegraph-<proxy>-<workload>.{svg,md}.
# Usage (root): benches/flamegraph.sh   PROXY=lastack FLOWS=128 SECS=5 WORKLOAD=A
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
FLOWS=${FLOWS:-128}
SECS=${SECS:-5}
WORKLOAD=${WORKLOAD:-A}
PROXY=${PROXY:-lastack}
. "$here/benches/lib.sh"
command -v perf >/dev/null || bench_install flamegraph linux-perf
if ! command -v inferno-flamegraph >/dev/null; then
    echo "flamegraph: installing inferno (cargo install)" >&2
    cargo install --quiet --locked inferno
fi
export PATH="$HOME/.cargo/bin:$PATH"
(cd "$here" && cargo build --release --quiet)
bin="$here/target/release/lastack"
bench_namespaces g
bench_topology 74 1
ip netns exec "$C" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1
ip netns exec "$S" taskset -c 1 "$bin" backend -l 10.74.1.11:8080 --close client-first & pids+=($!)
cat > "$work/lastack.toml" <<TOML
$(lastack_interface "$VP")
[[listeners]]
name = "l80"
vip = "10.74.0.2"
port = 80
pool = "p80"
close_policy = "client-first"
max_connections = 100000
$(lastack_pool p80 "" 10.74.1.11:8080)
$(lastack_tail 10.74.0.2:9190)
TOML
cat > "$work/haproxy.cfg" <<CFG
$(haproxy_head 9000 30s)
listen l80
    bind 10.74.0.2:80
    server s1 10.74.1.11:8080
CFG
ip netns exec "$P" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1
case $PROXY in
    lastack)
        ip netns exec "$P" taskset -c 0 "$bin" run -c "$work/lastack.toml" & proxy=$!
        pids+=("$proxy")
        until ip netns exec "$C" "$bin" ctl -a 10.74.0.2:9190 ready >/dev/null 2>&1; do sleep 0.1; done ;;
    haproxy)
        bench_install flamegraph
        ip netns exec "$P" taskset -c 0 haproxy -db -f "$work/haproxy.cfg" & proxy=$!
        pids+=("$proxy")
        sleep 1 ;;
esac
kept=1
[ "$WORKLOAD" = K ] && kept=0
ip netns exec "$C" taskset -c 1 "$bin" churn 10.74.0.2:80 -c "$FLOWS" -t 1 -k "$kept" \
    -d "$((SECS + 3))s" --json > "$work/churn.json" &
load=$!
sleep 1.5
perf record -q --call-graph dwarf,16384 -F 499 -o "$work/perf.data" -p "$proxy" -- sleep "$SECS" >/dev/null 2>&1
wait "$load"

out="$here/benches/results/$(date -u +%Y-%m-%d)"
mkdir -p "$out"
name="flamegraph-$PROXY-$WORKLOAD"
perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf --all > "$work/folded"
perf report -i "$work/perf.data" --stdio --no-children --sort dso -g none 2>/dev/null \
    | awk '/%/ {print $1 "\t" $2}' > "$work/objects"
inferno-flamegraph --colors java --title "$PROXY, workload $WORKLOAD ($FLOWS flows): kernel orange, user code green/blue" \
    < "$work/folded" > "$out/$name.svg"
python3 - "$work/folded" "$work/churn.json" "$out/$name.md" "$WORKLOAD" "$FLOWS" "$PROXY" "$work/objects" <<'PY'
import json, sys
folded, churn, md, workload, flows, proxy, objects = sys.argv[1:]
total = 0
peers = 0
by_activity = {}
# What the shard was doing, by the first frame (from the root) that names it.
activities = [
    ('xsk_sendmsg', 'AF_XDP transmit (copy mode; veth runs the receiver\'s stack here)'),
    ('io_connect', 'io_uring: connect (the backend\'s SYN handling runs here)'),
    ('io_send', 'io_uring: send (the backend\'s receive runs here)'),
    ('__sys_shutdown', 'shutdown(2) toward the backend (its FIN handling runs here)'),
    ('io_cqring_wait', 'io_uring: waiting (idle)'),
    ('__io_run_local_work', 'io_uring: completion task work'),
    ('__sys_socket', 'socket(2), bind(2), setsockopt(2): backend socket setup'),
    ('__sys_bind', 'socket(2), bind(2), setsockopt(2): backend socket setup'),
    ('__sys_setsockopt', 'socket(2), bind(2), setsockopt(2): backend socket setup'),
    ('io_submit_sqes', 'io_uring: other submissions (close, cancel, receive)'),
    # HAProxy's system calls (epoll and plain sockets).
    ('__sys_accept4', 'accept4(2)'),
    ('__sys_connect', 'connect(2) (the backend\'s SYN handling runs here)'),
    ('__sys_sendto', 'send(2) (the receiver\'s stack runs here)'),
    ('__sys_recvfrom', 'recv(2)'),
    ('__x64_sys_close', 'close(2) (a FIN: the receiver\'s stack runs here)'),
    ('do_epoll_wait', 'epoll_wait(2) (waiting)'),
    ('do_epoll_ctl', 'epoll_ctl(2)'),
]
for line in open(folded):
    stack, _, count = line.rstrip().rpartition(' ')
    n = int(count)
    total += n
    frames = stack.split(';')
    leaf = frames[-1]
    if any(f.startswith('__netif_receive_skb') for f in frames):
        peers += n
    obj = 'kernel' if leaf.endswith('_[k]') else 'user'
    what = next((label for key, label in activities if any(f.startswith(key) for f in frames)), None)
    if what is None:
        what = 'other kernel work' if obj == 'kernel' else f'{proxy}\'s own code (and libc)'
    by_activity[what] = by_activity.get(what, 0) + n
r = json.load(open(churn))
with open(md, 'w') as f:
    f.write(f"# Where {proxy}'s CPU goes: workload {workload}, {flows} flows\n\n")
    f.write(f"perf at 499 Hz on the proxy's threads (DWARF stacks), while the load ran "
            f"{r['connections_per_s']:.0f} connections/s, {r['requests_per_s']:.0f} requests/s, "
            f"p99 {r['transaction']['p99_us']/1000:.2f} ms, {sum(r['errors'].values())} errors. "
            f"Flame graph: [{proxy} {workload}](flamegraph-{proxy}-{workload}.svg).\n\n"
            f"**Its peers' work inside its time** (frames below `__netif_receive_skb`: veth runs "
            f"the receiving kernel's TCP for each frame the proxy sends, and the wake-up of the "
            f"process waiting for it, on the sending CPU): **{100 * peers / total:.1f} %**.\n\n")
    f.write("| by object (perf report --sort dso) | share |\n|---|---|\n")
    for line in open(objects):
        share, _, dso = line.strip().partition('\t')
        f.write(f"| {dso} | {share.replace('%', ' %')} |\n")
    f.write("\n| by activity (frames below it included) | share |\n|---|---|\n")
    for k, v in sorted(by_activity.items(), key=lambda kv: -kv[1]):
        f.write(f"| {k} | {100 * v / total:.1f} % |\n")
print(open(md).read())
PY
echo "written: $out/$name.svg"
