#!/usr/bin/env bash
# The broker's per-message cost in instructions, counted by callgrind on the
# ignored test listeners::route_cost (Achex messages through the dialect and
# the listener's action path, no sockets). Counts repeat from run to run, so
# they compare builds where timings on a busy machine would not.
#
# usage: bench/route_cost.sh [KIND...]   (default: to bc toH to-nested)
#
# Each kind runs twice, with a few and with many messages; the difference
# divided by the extra messages is the cost of one message, set-up excluded.
# "bc" goes to 1,000 subscribers, "toH" to 10, "to" and "to-nested" to one.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
command -v valgrind >/dev/null || {
    echo "route-cost: valgrind not found on PATH" >&2
    exit 1
}
KINDS=("$@")
[ ${#KINDS[@]} -gt 0 ] || KINDS=(to bc toH to-nested)

# The release test binary of the library (the path cargo prints).
BUILD_LOG=$(cargo test --release --lib --no-run 2>&1) || {
    echo "$BUILD_LOG" | tail -n 30 >&2
    echo "route-cost: could not build the library's test binary" >&2
    exit 1
}
BIN=$(echo "$BUILD_LOG" | sed -n -E 's/.*Executable unittests src\/lib\.rs \((.*)\)$/\1/p' | tail -n 1)
[ -n "$BIN" ] && [ -x "$BIN" ] || {
    echo "route-cost: cargo did not name the library's test binary" >&2
    exit 1
}

# Instructions the harness runs with WSB_ROUTE_COUNT=$2 messages of kind $1.
instructions() {
    local out
    out=$(mktemp)
    WSB_ROUTE_KIND="$1" WSB_ROUTE_COUNT="$2" valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        "$BIN" --ignored --exact listeners::route_cost::route_cost --test-threads 1 -q >/dev/null 2>"$out" || {
        cat "$out" >&2
        rm -f "$out"
        return 1
    }
    sed -n -E 's/.*Collected : ([0-9]+).*/\1/p' "$out"
    rm -f "$out"
}

printf '| kind | recipients | instructions/message | per delivery |\n|---|---|---|---|\n'
for kind in "${KINDS[@]}"; do
    case "$kind" in
    bc) few=20 many=220 fan=1000 ;;
    toH) few=200 many=2200 fan=10 ;;
    *) few=1000 many=11000 fan=1 ;;
    esac
    a=$(instructions "$kind" "$few")
    b=$(instructions "$kind" "$many")
    awk -v a="$a" -v b="$b" -v n=$((many - few)) -v k="$kind" -v f="$fan" \
        'BEGIN { per = (b - a) / n; printf "| %s | %d | %.0f | %.0f |\n", k, f, per, per / f }'
done
