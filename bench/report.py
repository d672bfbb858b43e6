#!/usr/bin/env python3
"""Collects bench/run.sh's raw loadgen output into latest.json and one markdown table.

Reads RUN_DIR/raw/<server>.<scenario>.json (one loadgen JSON line each),
<server>.<scenario>.exit (the server's exit status) and <server>.cmd.
"""

import argparse
import datetime
import json
import os
import platform
import sys

SCENARIOS = ["echo", "latency", "idle", "large"]

# (scenario, metric key, row label, higher_is_better, decimals)
ROWS = [
    ("echo", "msgs_per_sec", "echo: msgs/s (100 conns, 20 B text, window 64)", True, 0),
    ("latency", "p50_us", "latency: p50 µs (@{rate} msg/s, 100 conns)", False, 0),
    ("latency", "p99_us", "latency: p99 µs", False, 0),
    ("latency", "max_us", "latency: max µs", False, 0),
    ("latency", "achieved_rate", "latency: achieved msgs/s (offered {rate})", True, 0),
    ("idle", "bytes_per_conn", "idle: server RSS bytes/conn ({idle} conns)", False, 0),
    ("idle", "handshakes_per_sec", "idle: handshakes/s while connecting", True, 0),
    ("large", "echo_mb_per_sec", "large: MB/s echoed (1 MiB binary, one direction)", True, 1),
]


def load(run_dir, server, scenario):
    path = os.path.join(run_dir, "raw", f"{server}.{scenario}.json")
    try:
        with open(path, encoding="utf-8") as f:
            lines = [ln for ln in f.read().splitlines() if ln.strip()]
    except OSError as e:
        return {"scenario": scenario, "error": f"no result: {e}"}
    if not lines:
        return {"scenario": scenario, "error": "empty result"}
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError as e:
        return {"scenario": scenario, "error": f"unparsable result: {e}"}


def read_text(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return None


def failures(res):
    f = res.get("failures") or {}
    return sum(int(f.get(k) or 0) for k in ("connect", "handshake", "timeout", "dropped"))


def fmt(v, decimals):
    if v is None:
        return "n/a"
    if decimals == 0:
        return f"{v:,.0f}"
    return f"{v:,.{decimals}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}×"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--out-json", required=True)
    ap.add_argument("--out-md", required=True)
    ap.add_argument("--servers", required=True)
    ap.add_argument("--quick", default="0")
    ap.add_argument("--secs", default="")
    ap.add_argument("--warmup", default="")
    ap.add_argument("--idle-conns", default="")
    ap.add_argument("--latency-rate", default="")
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
            "idle_conns": a.idle_conns,
            "latency_rate": a.latency_rate,
        },
        "servers": {},
    }
    notes = []
    for s in servers:
        entry = {"cmd": read_text(os.path.join(a.run_dir, "raw", f"{s}.cmd")), "scenarios": {}}
        extra_lines = {}
        for sc in SCENARIOS:
            res = load(a.run_dir, s, sc)
            res["server_exit"] = read_text(os.path.join(a.run_dir, "raw", f"{s}.{sc}.exit"))
            entry["scenarios"][sc] = res
            if "error" in res:
                notes.append(f"{s} / {sc}: {res['error']}")
            elif failures(res):
                fe = (res.get("failures") or {}).get("first_error")
                notes.append(f"{s} / {sc}: {failures(res)} connection failures (first: {fe})")
            if res.get("bad_echo"):
                notes.append(f"{s} / {sc}: {res['bad_echo']} echoes with wrong type or length")
            if sc == "latency" and res.get("lost"):
                notes.append(f"{s} / latency: {res['lost']} messages never echoed")
            out = read_text(os.path.join(a.run_dir, "logs", f"{s}.{sc}.stdout"))
            if out:
                extra_lines[sc] = out.count("\n")
            if res["server_exit"] not in (None, "0"):
                notes.append(f"{s} / {sc}: server exit status {res['server_exit']} (expected 0)")
        # The contract is one stdout line; more costs the server writes under load.
        if any(extra_lines.values()):
            worst = max(extra_lines, key=extra_lines.get)
            notes.append(
                f"{s}: printed more than the `listening on` line on stdout "
                f"({extra_lines[worst]} extra lines in {worst})"
            )
        entry["extra_stdout_lines"] = extra_lines
        data["servers"][s] = entry

    os.makedirs(os.path.dirname(a.out_json), exist_ok=True)
    with open(a.out_json, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")

    others = [o for o in ("rust", "node", "python") if o in servers and "wsbroker" in servers]
    head = ["scenario"] + servers + [f"wsbroker / {o}" for o in others]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for sc, key, label, higher, dec in ROWS:
        label = label.format(rate=a.latency_rate, idle=a.idle_conns)
        label += " ↑" if higher else " ↓"
        vals = {}
        for s in servers:
            res = data["servers"][s]["scenarios"][sc]
            v = res.get(key)
            vals[s] = float(v) if isinstance(v, (int, float)) else None
        cells = [label] + [fmt(vals[s], dec) for s in servers]
        cells += [ratio(vals["wsbroker"], vals[o]) for o in others]
        lines.append("| " + " | ".join(cells) + " |")
    mode = "quick" if a.quick == "1" else "full"
    table = "\n".join(lines)
    footer = [
        "",
        f"{mode} run, {a.secs} s measured after {a.warmup} s warm-up per scenario; "
        f"{os.cpu_count()} CPUs shared by server and load generator "
        f"(1-min load average at start: {a.loadavg}). "
        "↑ higher is better, ↓ lower is better; ratios are wsbroker's value divided by the other's. wsbroker is the C echo example (C API); rust is the same echo on the Rust API, so wsbroker / rust shows what the C boundary costs.",
    ]
    if notes:
        footer.append("")
        footer.append("Notes:")
        footer.extend(f"- {n}" for n in notes)
    md = table + "\n" + "\n".join(footer) + "\n"
    with open(a.out_md, "w", encoding="utf-8") as f:
        f.write(md)
    sys.stdout.write(md)


if __name__ == "__main__":
    main()
