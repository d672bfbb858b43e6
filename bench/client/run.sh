#!/usr/bin/env bash
# Client benchmark: messages/s of one wsbroker client (pipelined echo:
# 64 messages of 20 bytes in flight) to wsbroker's echo_server and to the
# Python `websockets` echo peer, in the same run, in queue and callback mode.
#
# usage: bench/client/run.sh [--quick]
#
# Progress goes to stderr; the markdown table to stdout and
# bench/results/client.md; raw JSON lines to bench/results/client.json.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH="$ROOT/bench"
RESULTS="$BENCH/results"
RUN_DIR="$RESULTS/client-run"
PY="$ROOT/.venv/bin/python"
LIBDIR="${WSB_LIBDIR:-$ROOT/target/release}"
SECS=5 WARMUP=1
CC="${CC:-cc}"

die() {
    echo "bench/client: $*" >&2
    exit 1
}
log() { echo "bench/client: $*" >&2; }

case "${1:-}" in
--quick) SECS=2 WARMUP=0.5 ;;
"") ;;
-h | --help)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
*) die "unknown argument: $1 (try --help)" ;;
esac

[ -x "$ROOT/build/echo_server" ] || die "$ROOT/build/echo_server not built (run 'make' first)"
[ -f "$LIBDIR/libwsbroker.so" ] || die "$LIBDIR/libwsbroker.so not built (run 'make lib' first)"
"$PY" -c 'import websockets' 2>/dev/null || die "Python venv with websockets missing at $ROOT/.venv"
command -v timeout >/dev/null || die "coreutils 'timeout' not found on PATH"

rm -rf "$RUN_DIR"
mkdir -p "$RUN_DIR"
BIN="$RUN_DIR/client_bench"
"$CC" -std=c11 -Wall -Wextra -Werror -O2 -g -I"$ROOT/include" "$BENCH/client/client_bench.c" -o "$BIN" \
    -L"$LIBDIR" -lwsbroker -Wl,-rpath,"$LIBDIR" -lpthread -ldl -lm || die "building client_bench failed"

SRV_PID=""
alive() {
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}
start_server() {
    local name="$1" out="$RUN_DIR/$1.stdout"
    case "$name" in
    wsbroker) "$ROOT/build/echo_server" 0 >"$out" 2>"$RUN_DIR/$name.stderr" & ;;
    python) "$PY" "$BENCH/peers/echo_websockets.py" 0 >"$out" 2>"$RUN_DIR/$name.stderr" & ;;
    esac
    SRV_PID=$!
    for _ in $(seq 1 100); do
        SRV_PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$out" | head -n 1)
        [ -n "$SRV_PORT" ] && return 0
        alive "$SRV_PID" || break
        sleep 0.1
    done
    log "$name did not start; stderr:"
    tail -n 20 "$RUN_DIR/$name.stderr" >&2 || true
    return 1
}
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

LOAD=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo unknown)
: >"$RUN_DIR/results.jsonl"
for server in wsbroker python; do
    for mode in queue callback; do
        log "client ($mode) -> $server"
        if ! start_server "$server"; then
            echo "{\"scenario\":\"client_echo\",\"server\":\"$server\",\"mode\":\"$mode\",\"error\":\"server did not start\"}" >>"$RUN_DIR/results.jsonl"
            continue
        fi
        line=$(timeout --kill-after=5 $((SECS + 40)) "$BIN" "ws://127.0.0.1:$SRV_PORT/" --mode "$mode" \
            --secs "$SECS" --warmup "$WARMUP" 2>>"$RUN_DIR/client.stderr") || true
        [ -n "$line" ] || line="{\"scenario\":\"client_echo\",\"mode\":\"$mode\",\"error\":\"client_bench gave no result\"}"
        stop_server
        # Tag the line with the server and its exit status (0 expected).
        echo "{\"server\":\"$server\",\"server_exit\":\"$STOP_STATUS\",${line#\{}" >>"$RUN_DIR/results.jsonl"
        [ "$STOP_STATUS" = 0 ] || log "$server exited with '$STOP_STATUS' (expected 0)"
    done
done

mkdir -p "$RESULTS"
cp "$RUN_DIR/results.jsonl" "$RESULTS/client.json"
"$PY" - "$RUN_DIR/results.jsonl" "$LOAD" "$SECS" "$WARMUP" <<'PYEOF' | tee "$RESULTS/client.md"
import json, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
load, secs, warm = sys.argv[2:5]
rate = {(r["server"], r["mode"]): r.get("msgs_per_sec") for r in rows}
print("### Client: one wsbroker client, pipelined echo (64 x 20-byte text in flight)\n")
print(f"{secs} s after {warm} s warm-up; load average at start {load}.\n")
print("| server | client mode | messages/s | vs python | notes |")
print("|---|---|---:|---:|---|")
for r in rows:
    v = r.get("msgs_per_sec")
    py = rate.get(("python", r["mode"]))
    ratio = f"{v / py:.1f}x" if v and py else ""
    notes = r.get("error", "")
    if r.get("server_exit") not in ("0", 0):
        notes += f" server exit {r.get('server_exit')}"
    if r.get("wrong") or r.get("send_failed"):
        notes += f" wrong={r.get('wrong')} send_failed={r.get('send_failed')}"
    print(f"| {r['server']} | {r['mode']} | {v:,.0f} | {ratio} | {notes.strip()} |" if v is not None else
          f"| {r['server']} | {r['mode']} | — | | {notes.strip()} |")
PYEOF
log "raw results: $RESULTS/client.json"
