#!/usr/bin/env bash
# Measures the AF_XDP datapath: `lastack run` (release build) in one
# namespace with a discard and an echo listener on one queue, kernel
# clients in another namespace on a veth pair. Prints bulk throughput and
# packets/s for the shard, connections/s for sequential and parallel
# echo clients, and (if perf works) where lastack's CPU goes.
# Usage (root): benches/datapath.sh [seconds]
set -euo pipefail
secs=${1:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
bin="$here/target/release/lastack"
[ -x "$bin" ] || (cd "$here" && cargo build --release --quiet)
id=$$
A=lsma$id; B=lsmb$id; VA=vma$id; VB=vmb$id
work=$(mktemp -d)
cleanup() {
    [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    ip netns del "$A" 2>/dev/null || true
    ip netns del "$B" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$A"; ip netns add "$B"
ip link add "$VA" netns "$A" type veth peer name "$VB" netns "$B"
ip -n "$A" addr add 10.60.0.1/24 dev "$VA"; ip -n "$B" addr add 10.60.0.2/24 dev "$VB"
ip -n "$A" link set "$VA" up; ip -n "$B" link set "$VB" up
ip -n "$A" link set lo up; ip -n "$B" link set lo up
ip netns exec "$A" ethtool -K "$VA" tx off tso off gso off >/dev/null
# The clients close first and keep TIME-WAIT (that is the point); let them
# reuse it for new connections, as a churn load generator must.
ip netns exec "$A" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1
cat > "$work/run.toml" <<TOML
[[interfaces]]
name = "$VB"
queues = 1
cores = [1]
umem_frames = 8192
[[listeners]]
name = "discard"
vip = "10.60.0.2"
port = 9
service = "discard"
[[listeners]]
name = "echo"
vip = "10.60.0.2"
port = 7
service = "echo"
[[pools]]
name = "unused"
[[pools.backends]]
address = "10.60.0.9:80"
[logging]
level = "warn"
TOML
ip netns exec "$B" "$bin" run -c "$work/run.toml" & pid=$!
sleep 1
cat > "$work/load.py" <<'PY'
import socket, sys, time, os, multiprocessing
mode, secs = sys.argv[1], float(sys.argv[2])
def bulk():
    s = socket.create_connection(("10.60.0.2", 9)); chunk = b"x" * 65536; sent = 0
    end = time.time() + secs
    while time.time() < end:
        s.sendall(chunk); sent += len(chunk)
    s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
    return sent
def churn(_=None):
    n = 0; end = time.time() + secs
    while time.time() < end:
        s = socket.create_connection(("10.60.0.2", 7)); s.sendall(b"p" * 64)
        got = 0
        while got < 64: got += len(s.recv(64 - got))
        s.close(); n += 1
    return n
if mode == "bulk":
    t = time.time(); sent = bulk(); dt = time.time() - t
    print(f"bulk to discard: {sent * 8 / dt / 1e9:.2f} Gbit/s, {sent / 1448 / dt / 1e3:.0f} k data segments/s into one shard")
elif mode == "churn":
    n = churn(); print(f"sequential echo connections: {n / secs:.0f} connections/s (one client process)")
else:
    procs = int(mode.split(":")[1])
    with multiprocessing.Pool(procs) as pool:
        n = sum(pool.map(churn, range(procs)))
    print(f"parallel echo connections: {n / secs:.0f} connections/s ({procs} client processes)")
PY
run_load() { ip netns exec "$A" python3 "$work/load.py" "$1" "$secs"; }
cpu_before=$(awk '{print $14+$15}' /proc/$pid/stat)
run_load bulk
cpu_after=$(awk '{print $14+$15}' /proc/$pid/stat)
echo "lastack CPU during bulk: $(( (cpu_after - cpu_before) * 100 / $(getconf CLK_TCK) / secs )) % of one core"
run_load churn
cpu_before=$(awk '{print $14+$15}' /proc/$pid/stat)
run_load parallel:4
cpu_after=$(awk '{print $14+$15}' /proc/$pid/stat)
echo "lastack CPU during parallel churn: $(( (cpu_after - cpu_before) * 100 / $(getconf CLK_TCK) / secs )) % of one core"
if command -v perf >/dev/null && perf record -q -o "$work/perf.data" -p "$pid" -- sleep 0.1 2>/dev/null; then
    (run_load parallel:4 >/dev/null) & load=$!
    perf record -q -g -o "$work/perf.data" -p "$pid" -- sleep "$secs" 2>/dev/null
    wait "$load"
    echo "where lastack's CPU goes during parallel churn (perf, self time):"
    perf report -i "$work/perf.data" --no-children --stdio 2>/dev/null | grep -E '^ +[0-9.]+%' | head -15
fi
