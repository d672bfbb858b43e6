#!/usr/bin/env python3
"""Collects bench/broker.sh's raw loadgen output into broker-latest.json and one markdown table.

Reads RUN_DIR/raw/<server>.<scenario>.json (one loadgen JSON line each),
<server>.<scenario>.exit (the server's exit status), <server>.<scenario>.cpu
(CPU seconds the server used during the scenario) and <server>.cmd.
"""

import argparse
import datetime
import json
import os
import platform
import sys

from report import fmt, load, read_text

SCENARIOS = ["fanout_rate", "fanout_sat", "direct_pingpong", "direct_window"]

# (scenario, metric key, row label, higher_is_better, decimals)
ROWS = [
    ("fanout_rate", "deliveries_per_sec", "fan-out @ {fan_rate} msg/s: deliveries/s", True, 0),
    ("fanout_rate", "p50_us", "fan-out @ {fan_rate} msg/s: p50 delivery µs", False, 0),
    ("fanout_rate", "p99_us", "fan-out @ {fan_rate} msg/s: p99 delivery µs", False, 0),
    ("fanout_sat", "deliveries_per_sec", "fan-out saturated: deliveries/s", True, 0),
    ("fanout_sat", "p50_us", "fan-out saturated: p50 delivery µs", False, 0),
    ("fanout_sat", "p99_us", "fan-out saturated: p99 delivery µs", False, 0),
    ("direct_pingpong", "msgs_per_sec", "direct ping-pong: msgs/s", True, 0),
    ("direct_pingpong", "p50_us", "direct ping-pong: p50 µs", False, 0),
    ("direct_pingpong", "p99_us", "direct ping-pong: p99 µs", False, 0),
    ("direct_window", "msgs_per_sec", "direct, {direct_window} in flight per pair: msgs/s", True, 0),
    ("direct_window", "p50_us", "direct, {direct_window} in flight per pair: p50 µs", False, 0),
    ("direct_window", "p99_us", "direct, {direct_window} in flight per pair: p99 µs", False, 0),
]

# The target: wsbroker's saturated fan-out at least this many times Node's.
TARGET_RATIO = 3.0


def transport_failures(res):
    f = res.get("failures") or {}
    return sum(int(f.get(k) or 0) for k in ("connect", "handshake", "timeout", "dropped"))


def achex_trouble(res):
    a = res.get("achex") or {}
    return sum(int(a.get(k) or 0) for k in ("login_failed", "not_ready", "error_replies", "unparsable"))


def ratio(a, b, decimals=2):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.{decimals}f}×"


def number(res, key):
    v = res.get(key)
    return float(v) if isinstance(v, (int, float)) else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--out-json", required=True)
    ap.add_argument("--out-md", required=True)
    ap.add_argument("--servers", required=True)
    ap.add_argument("--quick", default="0")
    ap.add_argument("--secs", default="")
    ap.add_argument("--warmup", default="")
    ap.add_argument("--subs", default="")
    ap.add_argument("--pairs", default="")
    ap.add_argument("--size", default="")
    ap.add_argument("--fan-rate", default="")
    ap.add_argument("--fan-window", default="")
    ap.add_argument("--direct-window", default="")
    ap.add_argument("--loadavg", default="unknown")
    a = ap.parse_args()

    servers = [s for s in a.servers.split(",") if s]
    data = {
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": a.quick == "1",
        "host": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "loadavg_1m_at_start": a.loadavg,
            "loadavg_1m_at_end": os.getloadavg()[0],
        },
        "params": {
            "secs": a.secs,
            "warmup": a.warmup,
            "subs": a.subs,
            "pairs": a.pairs,
            "size": a.size,
            "fan_rate": a.fan_rate,
            "fan_window": a.fan_window,
            "direct_window": a.direct_window,
        },
        "servers": {},
    }
    notes = []
    for s in servers:
        entry = {"cmd": read_text(os.path.join(a.run_dir, "raw", f"{s}.cmd")), "scenarios": {}}
        for sc in SCENARIOS:
            res = load(a.run_dir, s, sc)
            res["server_exit"] = read_text(os.path.join(a.run_dir, "raw", f"{s}.{sc}.exit"))
            cpu = read_text(os.path.join(a.run_dir, "raw", f"{s}.{sc}.cpu"))
            try:
                res["server_cpu_secs"] = float(cpu) if cpu else None
            except ValueError:
                res["server_cpu_secs"] = None
            entry["scenarios"][sc] = res
            if "error" in res:
                notes.append(f"{s} / {sc}: {res['error']}")
                continue
            if transport_failures(res):
                fe = (res.get("failures") or {}).get("first_error")
                notes.append(f"{s} / {sc}: {transport_failures(res)} connection failures (first: {fe})")
            if achex_trouble(res):
                first = (res.get("achex") or {}).get("first")
                notes.append(f"{s} / {sc}: {achex_trouble(res)} Achex-level failures (first: {first})")
            if res.get("lost"):
                notes.append(f"{s} / {sc}: {res['lost']} messages never delivered")
            if res["server_exit"] not in (None, "0"):
                notes.append(f"{s} / {sc}: server exit status {res['server_exit']} (expected 0)")
            out = read_text(os.path.join(a.run_dir, "logs", f"{s}.{sc}.stdout"))
            if out and out.count("\n"):
                notes.append(f"{s} / {sc}: printed {out.count(chr(10))} lines after the listening line on stdout")
        data["servers"][s] = entry

    both = "wsbroker" in servers and "node" in servers
    if both:
        w = number(data["servers"]["wsbroker"]["scenarios"]["fanout_sat"], "deliveries_per_sec")
        n = number(data["servers"]["node"]["scenarios"]["fanout_sat"], "deliveries_per_sec")
        r = w / n if w is not None and n else None
        data["fanout_target"] = {"ratio": r, "target": TARGET_RATIO, "met": r is not None and r >= TARGET_RATIO}

    os.makedirs(os.path.dirname(a.out_json), exist_ok=True)
    with open(a.out_json, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")

    head = ["scenario"] + servers + (["wsbroker / node"] if both else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    labels = {"fan_rate": a.fan_rate, "direct_window": a.direct_window}
    for sc, key, label, higher, dec in ROWS:
        label = label.format(**labels) + (" ↑" if higher else " ↓")
        vals = {s: number(data["servers"][s]["scenarios"][sc], key) for s in servers}
        cells = [label] + [fmt(vals[s], dec) for s in servers]
        if both:
            cells.append(ratio(vals["wsbroker"], vals["node"]))
        lines.append("| " + " | ".join(cells) + " |")
    cpu_cells = ["server CPU s per scenario (fan-out rate / saturated / ping-pong / windowed)"]
    for s in servers:
        parts = [data["servers"][s]["scenarios"][sc].get("server_cpu_secs") for sc in SCENARIOS]
        cpu_cells.append(" / ".join("n/a" if p is None else f"{p:.1f}" for p in parts))
    if both:
        cpu_cells.append("")
    lines.append("| " + " | ".join(cpu_cells) + " |")

    mode = "quick" if a.quick == "1" else "full"
    footer = [
        "",
        f"{mode} run, {a.secs} s measured after {a.warmup} s warm-up per scenario; "
        f"{a.subs} subscribers of one group, {a.pairs} pairs, {a.size}-byte JSON messages; "
        f"the saturated fan-out keeps the publisher {a.fan_window} messages ahead of the average "
        f"subscriber. {os.cpu_count()} CPUs shared by the server, the load generator and anything "
        f"else running (1-min load average at start: {a.loadavg}, at end: {os.getloadavg()[0]:.2f}). "
        "↑ higher is better, ↓ lower is better; ratios are wsbroker's value divided by Node's. "
        "Latency is receive time minus the send time stamped in the message, both on the load "
        "generator's clock, so it includes the load generator's own time to read 1,000 sockets.",
    ]
    if both:
        t = data["fanout_target"]
        verdict = "met" if t["met"] else "NOT met"
        rtxt = "n/a" if t["ratio"] is None else f"{t['ratio']:.2f}×"
        footer.append("")
        footer.append(f"Target (issue 4): saturated fan-out deliveries/s ≥ {TARGET_RATIO:.0f}× Node: {rtxt}, {verdict}.")
    if notes:
        footer.append("")
        footer.append("Notes:")
        footer.extend(f"- {n}" for n in notes)
    md = "\n".join(lines) + "\n" + "\n".join(footer) + "\n"
    with open(a.out_md, "w", encoding="utf-8") as f:
        f.write(md)
    sys.stdout.write(md)


if __name__ == "__main__":
    main()
