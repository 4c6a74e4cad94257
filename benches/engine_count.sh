#!/usr/bin/env bash
# The TCP engine's instructions and L1 data-cache misses per connection
# lifecycle, IPv4 and IPv6, counted by callgrind over benches/engine_count.rs
# (deterministic: compare builds with it on a noisy machine; time them with
# `cargo bench --bench tcp`).
#
# Usage: benches/engine_count.sh
#   COUNT=20000 benches/engine_count.sh       lifecycles counted (10000)
#   BASELINE=<git rev> benches/engine_count.sh
#     counts that revision too (built in a worktree under target/), side by
#     side; it must have benches/engine_count.rs.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
COUNT=${COUNT:-10000}
command -v valgrind >/dev/null || { echo "engine_count: valgrind is not installed (make bench-engine-count installs it)" >&2; exit 1; }
work=$(mktemp -d)
cleanup() {
    [ -n "${BASELINE:-}" ] && git -C "$here" worktree remove --force "$work/baseline" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

build() { # source-dir target-dir: prints the bench executable
    (cd "$1" && CARGO_TARGET_DIR=$2 cargo bench --bench engine_count --no-run --message-format=json 2>/dev/null) |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "engine_count" and m.get("executable"):
        print(m["executable"])'
}

count() { # label executable family: one table row
    valgrind --tool=callgrind --cache-sim=yes --toggle-collect='engine_count::measured' \
        --callgrind-out-file="$work/callgrind.out" "$2" "$3" "$COUNT" >/dev/null 2>"$work/valgrind.log"
    python3 - "$1" "$3" "$COUNT" "$work/valgrind.log" <<'PY'
import sys
label, family, count, log = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
lines = open(log).read().splitlines()
events = next(l.split(':', 1)[1].split() for l in lines if 'Events    :' in l)
values = next(l.split(':', 1)[1].split() for l in lines if 'Collected :' in l)
got = dict(zip(events, (int(v) for v in values)))
d1 = got['D1mr'] + got['D1mw']
print(f"| {label} | IPv{family} | {got['Ir'] / count:,.0f} | {d1 / count:.2f} | {got['I1mr'] / count:.1f} |")
PY
}

echo "| build | family | instructions / lifecycle | L1d misses / lifecycle | L1i misses / lifecycle |"
echo "|---|---|---|---|---|"
current=$(build "$here" "$here/target")
for family in 4 6; do count "$(git -C "$here" rev-parse --short HEAD)$(git -C "$here" diff --quiet || echo +changes)" "$current" "$family"; done
if [ -n "${BASELINE:-}" ]; then
    git -C "$here" worktree add -q --detach "$work/baseline" "$BASELINE"
    [ -e "$work/baseline/benches/engine_count.rs" ] || { echo "engine_count: $BASELINE has no benches/engine_count.rs" >&2; exit 1; }
    baseline=$(build "$work/baseline" "$here/target/baseline")
    for family in 4 6; do count "$BASELINE" "$baseline" "$family"; done
fi
