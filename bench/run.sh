#!/usr/bin/env bash
# Benchmark harness: wsbroker's C echo example against Node `ws` and Python
# `websockets`, each driven by bench/loadgen over loopback.
#
# usage: bench/run.sh [--quick] [--servers wsbroker,rust,node,python]
#
# wsbroker is the C echo example (through the C API); rust is the same echo
# written against the Rust API, to show what the C boundary costs. The echo
# scenario runs ECHO_ROUNDS times per server, the servers taking turns, and
# the report gives each server's median; the report ends with DESIGN.md §5's
# budgets and issue 2's targets, each met or missed.
#
# Progress goes to stderr; the markdown table goes to stdout and to
# bench/results/latest.md; raw JSON to bench/results/latest.json.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
RESULTS="$BENCH/results"
PY="$ROOT/.venv/bin/python"
QUICK=0
SERVERS="wsbroker,rust,node,python"

die() {
    echo "bench: $*" >&2
    exit 1
}
log() { echo "bench: $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --servers)
        [ $# -ge 2 ] || die "--servers needs a comma-separated list"
        SERVERS="$2"
        shift
        ;;
    -h | --help)
        sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument: $1 (try --help)" ;;
    esac
    shift
done

IFS=, read -r -a SERVER_LIST <<<"$SERVERS"
for s in "${SERVER_LIST[@]}"; do
    case "$s" in
    wsbroker | rust | node | python) ;;
    *) die "unknown server '$s' (known: wsbroker, rust, node, python)" ;;
    esac
done

# --- prerequisites: fail early and say how to fix ---------------------------
if [ ! -x "$PY" ] || ! "$PY" -c 'import websockets' 2>/dev/null; then
    die "Python venv with websockets missing at $ROOT/.venv; create it with:
  python3 -m venv $ROOT/.venv && $ROOT/.venv/bin/pip install websockets"
fi
command -v node >/dev/null || die "node not found on PATH"
if [ ! -f "$ROOT/node_modules/ws/package.json" ]; then
    die "Node 'ws' missing at $ROOT/node_modules; install it with:
  (cd $ROOT && npm install --no-save ws)"
fi
command -v cargo >/dev/null || die "cargo not found on PATH"
command -v timeout >/dev/null || die "coreutils 'timeout' not found on PATH"
for s in "${SERVER_LIST[@]}"; do
    if [ "$s" = wsbroker ] && [ ! -x "$ROOT/build/echo_server" ]; then
        die "$ROOT/build/echo_server not built (run 'make' first, or pass --servers node,python)"
    fi
    if [ "$s" = rust ]; then
        (cd "$ROOT" && cargo build --quiet --release --example echo) || die "cannot build the Rust echo example"
    fi
done

# --- scenario parameters -------------------------------------------------------
# The latency rate must be one every server sustains, or it measures queueing.
LAT_RATE=5000
if [ "$QUICK" = 1 ]; then
    SECS=2 WARMUP=0.5 IDLE_CONNS=2000 IDLE_TIMEOUT=30
else
    SECS=5 WARMUP=1 IDLE_CONNS=10000 IDLE_TIMEOUT=90
fi
# Echo is what the C-overhead budget compares, and 2 shared cores make one
# run of it noisy: it runs in rounds, the servers taking turns in each.
ECHO_ROUNDS=3
SCENARIOS=(idle latency large)

# --- build the load generator ---------------------------------------------------
TARGET_DIR="${CARGO_TARGET_DIR:-$BENCH/loadgen/target}"
log "building loadgen (release) into $TARGET_DIR"
CARGO_TARGET_DIR="$TARGET_DIR" CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" \
    cargo build --quiet --release --manifest-path "$BENCH/loadgen/Cargo.toml" ||
    die "loadgen build failed"
LG="$TARGET_DIR/release/loadgen"
[ -x "$LG" ] || die "loadgen binary not found at $LG"

RUN_DIR="$RESULTS/run"
rm -rf "$RUN_DIR"
mkdir -p "$RUN_DIR/logs" "$RUN_DIR/raw"

# --- server lifecycle -----------------------------------------------------------
SRV_PID=""
SRV_PORT=""

server_cmd() {
    case "$1" in
    wsbroker) echo "$ROOT/build/echo_server" ;;
    rust) echo "$ROOT/target/release/examples/echo" ;;
    node) echo "node $BENCH/peers/echo_ws.js" ;;
    python) echo "$PY $BENCH/peers/echo_websockets.py" ;;
    esac
}

# Starts a fresh server so each scenario sees a clean process (RSS, caches).
start_server() {
    local name="$1" tag="$2" out
    out="$RUN_DIR/logs/$name.$tag.stdout"
    case "$name" in
    wsbroker) "$ROOT/build/echo_server" --quiet 0 >"$out" 2>"$RUN_DIR/logs/$name.$tag.stderr" & ;;
    rust) "$ROOT/target/release/examples/echo" 0 >"$out" 2>"$RUN_DIR/logs/$name.$tag.stderr" & ;;
    node) node "$BENCH/peers/echo_ws.js" 0 >"$out" 2>"$RUN_DIR/logs/$name.$tag.stderr" & ;;
    python) "$PY" "$BENCH/peers/echo_websockets.py" 0 >"$out" 2>"$RUN_DIR/logs/$name.$tag.stderr" & ;;
    esac
    SRV_PID=$!
    SRV_PORT=""
    for _ in $(seq 1 100); do
        SRV_PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$out" | head -n 1)
        [ -n "$SRV_PORT" ] && return 0
        alive "$SRV_PID" || break
        sleep 0.1
    done
    log "$name did not print 'listening on 127.0.0.1:<port>' within 10 s; stderr:"
    tail -n 20 "$RUN_DIR/logs/$name.$tag.stderr" >&2 || true
    stop_server
    return 1
}

# True while the process runs; a crashed child stays a zombie until waited
# for, and kill -0 alone would still report it alive.
alive() {
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# SIGTERM, then SIGKILL after 5 s. Sets STOP_STATUS to the exit status or "killed".
STOP_STATUS=""
stop_server() {
    STOP_STATUS=""
    [ -n "$SRV_PID" ] || return 0
    local pid="$SRV_PID"
    SRV_PID=""
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        STOP_STATUS=killed
        return 0
    fi
    STOP_STATUS=0
    wait "$pid" 2>/dev/null || STOP_STATUS=$?
}
trap 'stop_server || true' EXIT
trap 'exit 130' INT TERM

# run_scenario NAME SCENARIO [TAG]: the result goes to raw/NAME.TAG.json
# (TAG defaults to the scenario).
run_scenario() {
    local name="$1" sc="$2" tag="${3:-$2}" url="ws://127.0.0.1:$SRV_PORT" limit
    local -a args
    case "$sc" in
    echo)
        args=(echo --url "$url" --conns 100 --size 20 --window 64 --secs "$SECS" --warmup "$WARMUP")
        limit=60
        ;;
    latency)
        args=(latency --url "$url" --rate "$LAT_RATE" --conns 100 --size 32 --secs "$SECS" --warmup "$WARMUP")
        limit=60
        ;;
    idle)
        args=(idle --url "$url" --pid "$SRV_PID" --conns "$IDLE_CONNS" --batch 100 --hold 2 --timeout "$IDLE_TIMEOUT")
        limit=$((IDLE_TIMEOUT + 40))
        ;;
    large)
        args=(large --url "$url" --size 1048576 --conns 1 --window 1 --secs "$SECS" --warmup "$WARMUP")
        limit=60
        ;;
    esac
    local raw="$RUN_DIR/raw/$name.$tag.json" rc=0
    # The outer timeout is a guard rail only; loadgen bounds itself.
    timeout --kill-after=5 "$limit" "$LG" "${args[@]}" >"$raw" 2>"$RUN_DIR/logs/$name.$tag.loadgen" || rc=$?
    sed 's/^/    /' "$RUN_DIR/logs/$name.$tag.loadgen" | tail -n 3 >&2
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        echo "{\"scenario\":\"$sc\",\"error\":\"loadgen timed out after ${limit}s\"}" >"$raw"
    elif [ ! -s "$raw" ]; then
        echo "{\"scenario\":\"$sc\",\"error\":\"loadgen exited $rc without a result\"}" >"$raw"
    fi
    # A server that died under load is a result too.
    alive "$SRV_PID" || DIED=1
}

# One scenario on a fresh server: results in raw/NAME.TAG.json and .exit.
measure() {
    local name="$1" sc="$2" tag="$3"
    if ! start_server "$name" "$tag"; then
        echo "{\"scenario\":\"$sc\",\"error\":\"server did not start\"}" >"$RUN_DIR/raw/$name.$tag.json"
        return 0
    fi
    DIED=0
    run_scenario "$name" "$sc" "$tag"
    stop_server
    if [ "$DIED" = 1 ]; then
        STOP_STATUS="died during the scenario, status $STOP_STATUS"
    fi
    echo "$STOP_STATUS" >"$RUN_DIR/raw/$name.$tag.exit"
    [ "$STOP_STATUS" = 0 ] || log "$name exited with '$STOP_STATUS' after $tag (expected 0)"
}

START=$(date +%s)
# Recorded so a noisy machine (others building) shows up next to the numbers.
LOAD_START=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo unknown)
for name in "${SERVER_LIST[@]}"; do
    server_cmd "$name" >"$RUN_DIR/raw/$name.cmd"
done
# Each round runs every server once, so a change in the machine's load
# (others building) falls on all of them alike.
for round in $(seq 1 "$ECHO_ROUNDS"); do
    for name in "${SERVER_LIST[@]}"; do
        log "$name: echo, round $round of $ECHO_ROUNDS"
        measure "$name" echo "echo.r$round"
    done
done
for name in "${SERVER_LIST[@]}"; do
    for sc in "${SCENARIOS[@]}"; do
        log "$name: $sc"
        measure "$name" "$sc" "$sc"
    done
done
log "all scenarios done in $(($(date +%s) - START)) s"

"$PY" "$BENCH/report.py" --run-dir "$RUN_DIR" --out-json "$RESULTS/latest.json" \
    --out-md "$RESULTS/latest.md" --servers "$SERVERS" --quick "$QUICK" \
    --secs "$SECS" --warmup "$WARMUP" --idle-conns "$IDLE_CONNS" --latency-rate "$LAT_RATE" \
    --loadavg "$LOAD_START"
log "raw results: $RESULTS/latest.json"
