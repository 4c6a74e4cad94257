#!/usr/bin/env bash
# Counts the frames a proxy puts on each leg, per connection (churn) and
# per request (kept-alive connections), for lastack and HAProxy (and nginx
# with PROXIES=...), from packet captures on the kernel side of each veth:
#
#   C (clients: lastack churn) ──VC─VP── P (the proxy) ──VQ─VS── S (backend)
#
# Workloads, 64 B each way, one flow at a time (so nothing is merged by
# concurrency), each after a warm-up:
#   A  the client closes first ($CONNS connections)
#   C  the backend closes first, the client once it has the response
#   K  one kept-alive connection carrying $REQUESTS exchanges
# For each leg: frames per connection (K: per request), split into SYN,
# data, pure ACK, FIN, RST (a FIN carrying data counts as FIN).
# Writes benches/results/<date>/frames.md.
# Usage (root): benches/frames.sh
#   PROXIES="lastack haproxy nginx" CONNS=500 REQUESTS=5000 benches/frames.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
PROXIES=${PROXIES:-"lastack haproxy"}
CONNS=${CONNS:-500}
REQUESTS=${REQUESTS:-5000}
. "$here/benches/lib.sh"
bench_install frames tcpdump
(cd "$here" && cargo build --release --quiet)
bin="$here/target/release/lastack"
bench_namespaces f

# Port 80 → :8080 (the backend closes after the client: A, K);
# port 82 → :8081 (the backend closes first: C).
cat > "$work/lastack.toml" <<TOML
$(lastack_interface "$VP")
$(for spec in "80 8080" "82 8081"; do set -- $spec; cat <<L
[[listeners]]
name = "l$1"
vip = "10.71.0.2"
port = $1
pool = "p$1"
close_policy = "client-first"
$(lastack_pool "p$1" "" "10.71.1.11:$2")
L
done)
$(lastack_tail 10.71.0.2:9190)
TOML
"$bin" check -c "$work/lastack.toml" >/dev/null
cat > "$work/haproxy.cfg" <<CFG
$(haproxy_head 9000 30s)
listen l80
    bind 10.71.0.2:80
    server s1 10.71.1.11:8080
listen l82
    bind 10.71.0.2:82
    server s1 10.71.1.11:8081
CFG
cat > "$work/nginx.conf" <<CFG
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx.err;
events { worker_connections 1024; }
stream {
    server { listen 10.71.0.2:80; proxy_pass 10.71.1.11:8080; }
    server { listen 10.71.0.2:82; proxy_pass 10.71.1.11:8081; }
}
CFG

# Classifies a capture's TCP frames: "syn data ack fin rst".
classify() { # pcap
    tcpdump -nn -r "$1" tcp 2>/dev/null | awk '
        { flags = ""; len = 0
          for (i = 1; i <= NF; i++) {
              if ($i == "Flags") flags = $(i + 1)
              if ($i == "length") len = $(i + 1) + 0
          } }
        flags ~ /S/ { syn++; next }
        flags ~ /R/ { rst++; next }
        flags ~ /F/ { fin++; next }
        len > 0 { data++; next }
        { ack++ }
        END { printf "%d %d %d %d %d\n", syn, data, ack, fin, rst }'
}

rows="$work/rows"
: > "$rows"
for proxy in $PROXIES; do
    bench_topology 71 1
    ip netns exec "$C" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1
    ip netns exec "$S" "$bin" backend -l 10.71.1.11:8080 --close client-first & pids+=($!)
    ip netns exec "$S" "$bin" backend -l 10.71.1.11:8081 --close server-first & pids+=($!)
    case $proxy in
        lastack) ip netns exec "$P" "$bin" run -c "$work/lastack.toml" & pids+=($!)
            until ip netns exec "$C" "$bin" ctl -a 10.71.0.2:9190 ready >/dev/null 2>&1; do sleep 0.1; done ;;
        haproxy) ip netns exec "$P" haproxy -db -f "$work/haproxy.cfg" & pids+=($!); sleep 1 ;;
        nginx) ip netns exec "$P" nginx -p "$work" -c "$work/nginx.conf" 2>>"$work/nginx.err" & pids+=($!); sleep 1 ;;
    esac
    for w in A C K; do
        case $w in
            A) port=80; args=(-n "$CONNS" --close client-first); per=$CONNS ;;
            C) port=82; args=(-n "$CONNS" --close client-first); per=$CONNS ;;
            K) port=80; args=(-n 1 -k "$REQUESTS" --close client-first); per=$REQUESTS ;;
        esac
        # Warm-up (neighbour entries, the proxy's first connections).
        ip netns exec "$C" "$bin" churn "10.71.0.2:$port" -c 1 -t 1 -n 20 --close client-first >/dev/null
        ip netns exec "$C" tcpdump -q -i "$VC" -w "$work/c.pcap" -s 96 tcp 2>/dev/null & dc=$!
        ip netns exec "$S" tcpdump -q -i "$VS" -w "$work/s.pcap" -s 96 tcp 2>/dev/null & ds=$!
        sleep 1
        out=$(ip netns exec "$C" "$bin" churn "10.71.0.2:$port" -c 1 -t 1 "${args[@]}" --json)
        # Let the last close finish (FINs, client-first grace), then stop.
        sleep 1.5
        kill -INT "$dc" "$ds"; wait "$dc" "$ds" 2>/dev/null || true
        errors=$(echo "$out" | python3 -c 'import json,sys; print(sum(json.load(sys.stdin)["errors"].values()))')
        for leg in client:c backend:s; do
            set -- $(classify "$work/${leg#*:}.pcap")
            echo "$proxy $w ${leg%%:*} $per $errors $*" >> "$rows"
        done
    done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
    for ns in "$C" "$P" "$S"; do ip netns del "$ns"; done
    sleep 0.5
done

out="$here/benches/results/$(date -u +%Y-%m-%d)"
mkdir -p "$out"
python3 - "$rows" "$out/frames.md" "$CONNS" "$REQUESTS" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
with open(sys.argv[2], 'w') as f:
    f.write("# Frames per connection (A, C) and per request (K), each leg\n\n")
    f.write(f"Captured on the kernel side of each veth; one flow at a time, 64 B each way; "
            f"A and C: {sys.argv[3]} connections, K: one kept-alive connection with {sys.argv[4]} "
            "requests. A: the client closes first; C: the backend closes first, the client once "
            "it has the response; K: kept alive. A FIN carrying data counts as FIN.\n\n")
    f.write("| proxy | workload | leg | frames | SYN | data | pure ACK | FIN | RST | errors |\n")
    f.write("|---|---|---|---|---|---|---|---|---|---|\n")
    for proxy, w, leg, per, errors, *counts in rows:
        per = int(per)
        syn, data, ack, fin, rst = (int(c) / per for c in counts)
        total = syn + data + ack + fin + rst
        f.write(f"| {proxy} | {w} | {leg} | {total:.2f} | {syn:.2f} | {data:.2f} | {ack:.2f} | "
                f"{fin:.2f} | {rst:.2f} | {errors} |\n")
print(open(sys.argv[2]).read())
PY
echo "written: $out/frames.md"
