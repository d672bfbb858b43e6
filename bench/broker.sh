#!/usr/bin/env bash
# Broker benchmark: the wsbroker daemon's Achex listener against a Node `ws`
# broadcast server written the usual way (bench/peers/achex_ws.js), each
# driven by bench/loadgen's fanout and direct scenarios over loopback.
#
# usage: bench/broker.sh [--quick] [--servers wsbroker,node]
#
# The daemon is $WSBROKER_BIN if set, else target/release/wsbroker of this
# repository (cargo build --release --bin wsbroker).
#
# Progress goes to stderr; the markdown table goes to stdout and to
# bench/results/broker-latest.md; raw JSON to bench/results/broker-latest.json.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
RESULTS="$BENCH/results"
QUICK=0
SERVERS="wsbroker,node"

die() {
    echo "broker-bench: $*" >&2
    exit 1
}
log() { echo "broker-bench: $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --servers)
        [ $# -ge 2 ] || die "--servers needs a comma-separated list"
        SERVERS="$2"
        shift
        ;;
    -h | --help)
        sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument: $1 (try --help)" ;;
    esac
    shift
done

IFS=, read -r -a SERVER_LIST <<<"$SERVERS"
for s in "${SERVER_LIST[@]}"; do
    case "$s" in
    wsbroker | node) ;;
    *) die "unknown server '$s' (known: wsbroker, node)" ;;
    esac
done

# --- prerequisites: fail early and say how to fix ---------------------------
WSB="${WSBROKER_BIN:-$ROOT/target/release/wsbroker}"
for s in "${SERVER_LIST[@]}"; do
    if [ "$s" = wsbroker ] && [ ! -x "$WSB" ]; then
        die "wsbroker daemon not found at $WSB; build it with
  (cd $ROOT && cargo build --release --bin wsbroker)
or point WSBROKER_BIN at one (or pass --servers node)"
    fi
done
command -v node >/dev/null || die "node not found on PATH"
if [ ! -f "$ROOT/node_modules/ws/package.json" ]; then
    die "Node 'ws' missing at $ROOT/node_modules; install it with:
  (cd $ROOT && npm install --no-save ws)"
fi
command -v cargo >/dev/null || die "cargo not found on PATH"
command -v timeout >/dev/null || die "coreutils 'timeout' not found on PATH"
# The report needs only the standard library; prefer the project's venv.
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY=$(command -v python3) || die "python3 not found on PATH"

# --- scenario parameters -------------------------------------------------------
# FAN_RATE is an offered load both servers sustain (Node's ws saturates near
# 100k deliveries/s on this machine), so the rate run measures delivery
# latency, not queueing. The saturated run keeps the publisher FAN_WINDOW
# messages ahead of the average subscriber.
SUBS=1000 PAIRS=500 SIZE=64 FAN_RATE=30 FAN_WINDOW=16 DIRECT_WINDOW=8
if [ "$QUICK" = 1 ]; then
    SECS=2 WARMUP=0.5
else
    SECS=5 WARMUP=1
fi
SCENARIOS=(fanout_rate fanout_sat direct_pingpong direct_window)

# --- build the load generator ---------------------------------------------------
TARGET_DIR="${CARGO_TARGET_DIR:-$BENCH/loadgen/target}"
log "building loadgen (release) into $TARGET_DIR"
CARGO_TARGET_DIR="$TARGET_DIR" CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" \
    cargo build --quiet --release --manifest-path "$BENCH/loadgen/Cargo.toml" ||
    die "loadgen build failed"
LG="$TARGET_DIR/release/loadgen"
[ -x "$LG" ] || die "loadgen binary not found at $LG"

RUN_DIR="$RESULTS/broker-run"
rm -rf "$RUN_DIR"
mkdir -p "$RUN_DIR/logs" "$RUN_DIR/raw"

# --- server lifecycle -----------------------------------------------------------
SRV_PID=""
SRV_PORT=""

server_cmd() {
    case "$1" in
    wsbroker) echo "$WSB --achex 127.0.0.1:0 --http off --wschat off --webtalk off --webtalk-admin off --appws off" ;;
    node) echo "node $BENCH/peers/achex_ws.js 0" ;;
    esac
}

# A fresh server per scenario, so no scenario inherits another's sessions.
start_server() {
    local name="$1" tag="$2" out
    out="$RUN_DIR/logs/$name.$tag.stdout"
    case "$name" in
    wsbroker)
        "$WSB" --achex 127.0.0.1:0 --http off --wschat off --webtalk off --webtalk-admin off --appws off \
            >"$out" 2>"$RUN_DIR/logs/$name.$tag.stderr" &
        ;;
    node) node "$BENCH/peers/achex_ws.js" 0 >"$out" 2>"$RUN_DIR/logs/$name.$tag.stderr" & ;;
    esac
    SRV_PID=$!
    SRV_PORT=""
    for _ in $(seq 1 100); do
        # wsbroker names its listener ("achex listening on ..."); the peer does not.
        SRV_PORT=$(sed -n -E 's/^(achex )?listening on 127\.0\.0\.1:([0-9]+)$/\2/p' "$out" | head -n 1)
        [ -n "$SRV_PORT" ] && return 0
        alive "$SRV_PID" || break
        sleep 0.1
    done
    log "$name did not print its listening line within 10 s; stderr:"
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

# Total CPU seconds (user + system) the process has used so far.
cpu_secs() {
    awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo ""
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

run_scenario() {
    local name="$1" sc="$2" url="ws://127.0.0.1:$SRV_PORT" limit=90
    local -a args
    case "$sc" in
    fanout_rate) args=(fanout --subs "$SUBS" --size "$SIZE" --rate "$FAN_RATE") ;;
    fanout_sat) args=(fanout --subs "$SUBS" --size "$SIZE" --rate 0 --window "$FAN_WINDOW") ;;
    direct_pingpong) args=(direct --pairs "$PAIRS" --size "$SIZE" --window 1) ;;
    direct_window) args=(direct --pairs "$PAIRS" --size "$SIZE" --window "$DIRECT_WINDOW") ;;
    esac
    args+=(--url "$url" --secs "$SECS" --warmup "$WARMUP" --timeout 30)
    local raw="$RUN_DIR/raw/$name.$sc.json" rc=0 cpu0 cpu1
    cpu0=$(cpu_secs "$SRV_PID")
    # The outer timeout is a guard rail only; loadgen bounds itself.
    timeout --kill-after=5 "$limit" "$LG" "${args[@]}" >"$raw" 2>"$RUN_DIR/logs/$name.$sc.loadgen" || rc=$?
    cpu1=$(cpu_secs "$SRV_PID")
    sed 's/^/    /' "$RUN_DIR/logs/$name.$sc.loadgen" | tail -n 3 >&2
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        echo "{\"scenario\":\"$sc\",\"error\":\"loadgen timed out after ${limit}s\"}" >"$raw"
    elif [ ! -s "$raw" ]; then
        echo "{\"scenario\":\"$sc\",\"error\":\"loadgen exited $rc without a result\"}" >"$raw"
    fi
    # CPU the server burnt over the whole scenario (connect and log-in included).
    if [ -n "$cpu0" ] && [ -n "$cpu1" ]; then
        awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {printf "%.2f\n", b - a}' >"$RUN_DIR/raw/$name.$sc.cpu"
    fi
    # A server that died under load is a result too.
    alive "$SRV_PID" || DIED=1
}

START=$(date +%s)
# Recorded so a noisy machine (others building) shows up next to the numbers.
LOAD_START=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo unknown)
for name in "${SERVER_LIST[@]}"; do
    server_cmd "$name" >"$RUN_DIR/raw/$name.cmd"
    for sc in "${SCENARIOS[@]}"; do
        log "$name: $sc"
        if ! start_server "$name" "$sc"; then
            echo "{\"scenario\":\"$sc\",\"error\":\"server did not start\"}" >"$RUN_DIR/raw/$name.$sc.json"
            continue
        fi
        DIED=0
        run_scenario "$name" "$sc"
        stop_server
        if [ "$DIED" = 1 ]; then
            STOP_STATUS="died during the scenario, status $STOP_STATUS"
        fi
        echo "$STOP_STATUS" >"$RUN_DIR/raw/$name.$sc.exit"
        [ "$STOP_STATUS" = 0 ] || log "$name exited with '$STOP_STATUS' after $sc (expected 0)"
    done
done
log "all scenarios done in $(($(date +%s) - START)) s"

"$PY" "$BENCH/broker_report.py" --run-dir "$RUN_DIR" --out-json "$RESULTS/broker-latest.json" \
    --out-md "$RESULTS/broker-latest.md" --servers "$SERVERS" --quick "$QUICK" \
    --secs "$SECS" --warmup "$WARMUP" --subs "$SUBS" --pairs "$PAIRS" --size "$SIZE" \
    --fan-rate "$FAN_RATE" --fan-window "$FAN_WINDOW" --direct-window "$DIRECT_WINDOW" \
    --loadavg "$LOAD_START"
log "raw results: $RESULTS/broker-latest.json"
