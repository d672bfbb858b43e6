#!/usr/bin/env python3
"""Collects bench/run.sh's raw loadgen output into latest.json and one markdown table.

Reads RUN_DIR/raw/<server>.<tag>.json (one loadgen JSON line each),
<server>.<tag>.exit (the server's exit status) and <server>.cmd, where the tag
is the scenario, or echo.r<N> for the echo scenario's rounds: a server's echo
figure is the median of its rounds. Ends with DESIGN.md §5's budgets and issue
2's targets, each met or missed.
"""

import argparse
import datetime
import glob
import json
import os
import platform
import re
import statistics
import sys

SCENARIOS = ["echo", "latency", "idle", "large"]

# (scenario, metric key, row label, higher_is_better, decimals)
ROWS = [
    ("echo", "msgs_per_sec", "echo: msgs/s (100 conns, 20 B text, window 64; median of {rounds})", True, 0),
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


def echo_rounds(run_dir, server):
    """The echo rounds' tags, in round order."""
    paths = glob.glob(os.path.join(run_dir, "raw", f"{server}.echo.r*.json"))
    tags = [os.path.basename(p)[len(server) + 1 : -len(".json")] for p in paths]
    return sorted(tags, key=lambda t: int(re.sub(r"\D", "", t) or 0))


def median_run(runs):
    """The run whose msgs_per_sec is the median (the lower middle for an even
    count), or the first run when none has a figure."""
    rated = [r for r in runs if isinstance(r.get("msgs_per_sec"), (int, float))]
    if not rated:
        return dict(runs[0]) if runs else {"scenario": "echo", "error": "no rounds"}
    rated.sort(key=lambda r: r["msgs_per_sec"])
    pick = dict(rated[(len(rated) - 1) // 2])
    pick["rounds_msgs_per_sec"] = [r.get("msgs_per_sec") for r in runs]
    pick["rounds_median"] = statistics.median(r["msgs_per_sec"] for r in rated)
    pick["msgs_per_sec"] = pick["rounds_median"]
    return pick


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


def metric(data, server, scenario, key):
    if server not in data["servers"]:
        return None
    v = data["servers"][server]["scenarios"][scenario].get(key)
    return float(v) if isinstance(v, (int, float)) else None


def verdict(ok):
    if ok is None:
        return "not measured"
    return "met" if ok else "**missed**"


def budget_rows(data, servers):
    """(what, target, measured, verdict) for each budget this run can judge."""
    echo = {s: metric(data, s, "echo", "msgs_per_sec") for s in servers}
    ours = echo.get("wsbroker")
    rows = []

    def versus(what, target, other, factor):
        theirs = echo.get(other)
        if ours is None or theirs is None or theirs == 0:
            rows.append((what, target, "n/a", verdict(None)))
            return
        r = ours / theirs
        rows.append((what, target, f"{r:.2f}× ({fmt(ours, 0)} vs {fmt(theirs, 0)} msgs/s)", verdict(r >= factor)))

    versus("C API overhead (§5)", "C echo ≥ 0.90 × the same echo in Rust (medians)", "rust", 0.90)
    peers = [p for p in ("node", "python") if echo.get(p) is not None]
    if ours is not None and peers:
        best = max(peers, key=lambda p: echo[p])
        versus("echo vs the best peer (§5)", f"≥ 1 × the best peer ({best})", best, 1.0)
    else:
        rows.append(("echo vs the best peer (§5)", "≥ 1 × the best peer", "n/a", verdict(None)))
    versus("echo vs Node ws (issue 2)", "≥ 3 ×", "node", 3.0)
    versus("echo vs Python websockets (issue 2)", "≥ 10 ×", "python", 10.0)
    idle = metric(data, "wsbroker", "idle", "bytes_per_conn")
    rows.append(
        (
            "idle memory (§5, issue 2)",
            "≤ 4,096 B per idle connection",
            "n/a" if idle is None else f"{fmt(idle, 0)} B",
            verdict(None if idle is None else idle <= 4096),
        )
    )
    p50, p99 = (metric(data, "wsbroker", "latency", k) for k in ("p50_us", "p99_us"))
    rows.append(
        (
            "latency (§5)",
            "p50/p99 reported at a fixed load",
            "n/a" if p50 is None or p99 is None else f"p50 {fmt(p50, 0)} µs, p99 {fmt(p99, 0)} µs",
            "reported" if p50 is not None and p99 is not None else verdict(None),
        )
    )
    mb = metric(data, "wsbroker", "large", "echo_mb_per_sec")
    rows.append(
        (
            "large messages (§5)",
            "MB/s reported (1 MiB)",
            "n/a" if mb is None else f"{fmt(mb, 1)} MB/s",
            "reported" if mb is not None else verdict(None),
        )
    )
    rows.append(("broadcast to 1,000 (§5)", "deliveries/s reported", "bench/broker.sh", "elsewhere"))
    return rows


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
            tags = echo_rounds(a.run_dir, s) if sc == "echo" else [sc]
            runs = []
            for tag in tags:
                res = load(a.run_dir, s, tag)
                res["server_exit"] = read_text(os.path.join(a.run_dir, "raw", f"{s}.{tag}.exit"))
                runs.append(res)
                if "error" in res:
                    notes.append(f"{s} / {tag}: {res['error']}")
                elif failures(res):
                    fe = (res.get("failures") or {}).get("first_error")
                    notes.append(f"{s} / {tag}: {failures(res)} connection failures (first: {fe})")
                if res.get("bad_echo"):
                    notes.append(f"{s} / {tag}: {res['bad_echo']} echoes with wrong type or length")
                if sc == "latency" and res.get("lost"):
                    notes.append(f"{s} / latency: {res['lost']} messages never echoed")
                out = read_text(os.path.join(a.run_dir, "logs", f"{s}.{tag}.stdout"))
                if out:
                    extra_lines[tag] = out.count("\n")
                if res["server_exit"] not in (None, "0"):
                    notes.append(f"{s} / {tag}: server exit status {res['server_exit']} (expected 0)")
            entry["scenarios"][sc] = median_run(runs) if sc == "echo" else runs[0]
        # The contract is one stdout line; more costs the server writes under load.
        if any(extra_lines.values()):
            worst = max(extra_lines, key=extra_lines.get)
            notes.append(
                f"{s}: printed more than the `listening on` line on stdout "
                f"({extra_lines[worst]} extra lines in {worst})"
            )
        entry["extra_stdout_lines"] = extra_lines
        data["servers"][s] = entry

    rounds = {s: data["servers"][s]["scenarios"]["echo"].get("rounds_msgs_per_sec") or [] for s in servers}
    spread = [f"{s} " + " / ".join(fmt(v, 0) for v in r) for s, r in rounds.items() if len(r) > 1]
    if spread:
        notes.insert(0, "echo rounds (msgs/s, in run order): " + "; ".join(spread))
    budgets = budget_rows(data, servers)
    data["budgets"] = [dict(zip(("what", "target", "measured", "verdict"), b)) for b in budgets]

    os.makedirs(os.path.dirname(a.out_json), exist_ok=True)
    with open(a.out_json, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")

    others = [o for o in ("rust", "node", "python") if o in servers and "wsbroker" in servers]
    head = ["scenario"] + servers + [f"wsbroker / {o}" for o in others]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for sc, key, label, higher, dec in ROWS:
        n_rounds = max([len(r) for r in rounds.values()] + [1])
        label = label.format(rate=a.latency_rate, idle=a.idle_conns, rounds=n_rounds)
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
        "↑ higher is better, ↓ lower is better; ratios are wsbroker's value divided by the other's. wsbroker is the C echo example (C API); rust is the same echo on the Rust API, so wsbroker / rust shows what the C boundary costs. "
        "Echo ran in rounds, the servers taking turns; its figures are each server's median.",
    ]
    footer += ["", "Budgets (DESIGN.md §5) and issue 2's targets, from this run:", ""]
    footer += ["| budget | target | measured | verdict |", "|---|---|---|---|"]
    footer += [f"| {w} | {t} | {m} | {v} |" for w, t, m, v in budgets]
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
