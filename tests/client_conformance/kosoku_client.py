"""Run kosoku in fuzzingserver mode (the Autobahn|Testsuite client cases)
against wsbroker's client: autobahn_client.c, an echo client on
wsb_client_* in queue mode.

Used two ways:
  * by test_client_conformance.py, which compares a fresh run with the
    committed expected-results.json;
  * as a script, to regenerate that file after the verdicts were checked by hand:

        .venv/bin/python tests/client_conformance/kosoku_client.py --update
        .venv/bin/python tests/client_conformance/kosoku_client.py --reports DIR

kosoku exits 1 whenever a case is not OK, so its exit code is ignored and
the verdicts are read from the index.json it writes. The client is built
without sanitizers (like the server's conformance run, for speed) unless
WSB_CONFORMANCE_ASAN=1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "client_interop"))

from client_harness import SAN_ENV, SANITIZER_MARKERS, build_dir, compile_c  # noqa: E402

EXPECTED = HERE / "expected-results.json"
AGENT = "wsbroker"
# Cases 1.*-10.*; the suite has no category 8 (and kosoku rejects a pattern
# that matches nothing); compression (12.*, 13.*) is not negotiated.
CATEGORIES = ["1", "2", "3", "4", "5", "6", "7", "9", "10"]
BAD_BEHAVIORS = {"FAILED", "ERROR"}
BAD_CLOSE = {"FAILED", "FAILED BY CLIENT", "UNCLEAN", "WRONG CODE"}
# In cases such as 3.2-3.4, 4.*.3-5, 5.15 and 6.4.3-4, whether the client
# echoes the valid frames before it fails on the bad one (OK) or fails first
# (NON-STRICT) depends on whether they arrive in one read: TCP timing, not
# the client. Both pass; the comparison with the expected file accepts
# either for the behaviour (the close verdict must match exactly).
TIMING_EQUIVALENT = {"OK", "NON-STRICT"}
RUN_TIMEOUT = float(os.environ.get("WSB_KOSOKU_TIMEOUT", "900"))


def case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(p) for p in case_id.split("."))


def kosoku_command() -> list[str]:
    beside = Path(sys.executable).with_name("kosoku")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("kosoku")
    if found is None:
        raise RuntimeError("kosoku is not installed: run scripts/setup-test-env.sh")
    return [found]


def client_exe() -> Path:
    asan = os.environ.get("WSB_CONFORMANCE_ASAN") == "1"
    name = "autobahn_client-asan" if asan else "autobahn_client"
    return compile_c(HERE / "autobahn_client.c", build_dir() / "client_conformance" / name, asan=asan)


def run(outdir: Path) -> tuple[dict[str, dict], int, str, str]:
    """Runs cases 1.*-10.*; returns ({case: index entry}, client exit status,
    client stdout, client stderr)."""
    exe = client_exe()
    cmd = [*kosoku_command(), "-m", "fuzzingserver", "127.0.0.1:0", "-o", str(outdir)]
    for cat in CATEGORIES:
        cmd += ["-i", f"{cat}.*"]
    deadline = time.monotonic() + RUN_TIMEOUT
    log = open(outdir / "kosoku.log", "wb")
    ks = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.PIPE)
    port: list[int] = []
    ready = threading.Event()

    def read_stderr() -> None:
        assert ks.stderr is not None
        for raw in ks.stderr:
            log.write(raw)
            m = re.search(rb"listening on ws://127\.0\.0\.1:(\d+)", raw)
            if m and not port:
                port.append(int(m.group(1)))
                ready.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("kosoku did not say where it listens within 60 s")
        client = subprocess.run(
            [str(exe), f"ws://127.0.0.1:{port[0]}", AGENT],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=max(deadline - time.monotonic(), 1),
            env={**os.environ, **SAN_ENV},
        )
        ks.wait(max(deadline - time.monotonic(), 1))
    finally:
        if ks.poll() is None:
            ks.kill()
            ks.wait(10)
        reader.join(10)
        log.close()
    (outdir / "client.log").write_text(client.stdout + "\n--- stderr ---\n" + client.stderr)
    index_file = outdir / "index.json"
    if not index_file.is_file():
        raise RuntimeError(f"kosoku wrote no index.json; see {outdir / 'kosoku.log'}")
    index = json.loads(index_file.read_text())
    if list(index) != [AGENT]:
        raise RuntimeError(f"expected the one agent {AGENT!r} in {index_file}, found {list(index)}")
    return index[AGENT], client.returncode, client.stdout, client.stderr


def verdicts(cases: dict[str, dict]) -> dict[str, dict[str, str]]:
    return {
        cid: {"behavior": cases[cid]["behavior"], "behaviorClose": cases[cid]["behaviorClose"]}
        for cid in sorted(cases, key=case_key)
    }


def sanitizer_report(stderr: str) -> list[str]:
    return [m for m in SANITIZER_MARKERS if m in stderr]


def load_expected() -> dict[str, dict[str, str]]:
    return json.loads(EXPECTED.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update", action="store_true", help="rewrite expected-results.json from this run")
    parser.add_argument("--reports", type=Path, help="keep kosoku's reports in this directory")
    args = parser.parse_args()
    outdir = args.reports or Path(tempfile.mkdtemp(prefix="wsb-kosoku-client-"))
    outdir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    cases, rc, _out, err = run(outdir)
    got = verdicts(cases)
    counts: dict[str, int] = {}
    for v in got.values():
        key = f"{v['behavior']}/{v['behaviorClose']}"
        counts[key] = counts.get(key, 0) + 1
    print(f"{len(got)} cases in {time.monotonic() - t0:.0f} s; reports in {outdir}")
    for key, n in sorted(counts.items()):
        print(f"  {n:4d} {key}")
    for cid, v in got.items():
        if v["behavior"] != "OK" or v["behaviorClose"] != "OK":
            print(f"  {cid}: {v['behavior']} / {v['behaviorClose']}")
    print(f"client exit status {rc}{'; sanitizer report!' if sanitizer_report(err) else ''}")
    if args.update:
        bad = [c for c, v in got.items() if v["behavior"] in BAD_BEHAVIORS or v["behaviorClose"] in BAD_CLOSE]
        if bad:
            print(f"refusing to record failing cases as expected: {bad}", file=sys.stderr)
            return 1
        EXPECTED.write_text(json.dumps(got, indent=1) + "\n")
        print(f"wrote {EXPECTED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
