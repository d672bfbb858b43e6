"""Run kosoku (an Autobahn-compatible suite) against the release echo_server.

Used two ways:
  * by test_conformance.py, which compares a fresh run with the committed
    expected-results.json;
  * as a script, to regenerate that file after the verdicts were checked by hand:

        .venv/bin/python tests/conformance/conformance.py --update
        .venv/bin/python tests/conformance/conformance.py --reports DIR   # just run, keep the reports

kosoku exits 1 whenever a case is not OK (UNIMPLEMENTED included), so its
exit code is ignored and the verdicts are read from the index.json it writes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXPECTED = Path(__file__).with_name("expected-results.json")
# Cases 1.*-10.*: the suite has no category 8, and compression (12.*, 13.*)
# is outside what the examples negotiate. kosoku rejects a pattern that
# matches nothing, so 8 is left out rather than passed.
CATEGORIES = ["1", "2", "3", "4", "5", "6", "7", "9", "10"]
BAD_BEHAVIORS = {"FAILED", "ERROR"}
BAD_CLOSE = {"FAILED", "FAILED BY CLIENT", "UNCLEAN", "WRONG CODE"}
KOSOKU_TIMEOUT = float(os.environ.get("WSB_KOSOKU_TIMEOUT", "1500"))


def build_dir() -> Path:
    path = Path(os.environ.get("WSB_BUILD_DIR", "build"))
    return path if path.is_absolute() else REPO / path


def kosoku_command() -> list[str]:
    # Prefer the console script installed beside this interpreter (the venv).
    beside = Path(sys.executable).with_name("kosoku")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("kosoku")
    if found is None:
        raise RuntimeError("kosoku is not installed: run scripts/setup-test-env.sh")
    return [found]


def case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(p) for p in case_id.split("."))


class EchoServer:
    """The release echo_server on an ephemeral port, stopped with SIGTERM."""

    def __init__(self, exe: Path) -> None:
        if not exe.is_file():
            raise RuntimeError(f"{exe} does not exist: build the examples first (make)")
        self.exe = exe
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [str(exe), "0"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr
        )
        self.port = self._wait_ready()
        # Keep draining stdout (one line per connection) so the pipe never fills.
        threading.Thread(target=self._drain, daemon=True).start()

    def _wait_ready(self) -> int:
        assert self.proc.stdout is not None
        ready: list[int] = []

        def read_first() -> None:
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline().decode("utf-8", "replace").strip()
            m = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)", line)
            if m:
                ready.append(int(m.group(1)))

        reader = threading.Thread(target=read_first, daemon=True)
        reader.start()
        reader.join(30)
        if not ready:
            self.proc.kill()
            raise RuntimeError(f"{self.exe} did not print its listening line within 30 s")
        return ready[0]

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for _ in self.proc.stdout:
            pass

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                return -999, "did not exit within 20 s of SIGTERM"
        self.stderr.seek(0)
        return self.proc.returncode, self.stderr.read().decode("utf-8", "replace")


def run(outdir: Path, exe: Path | None = None) -> tuple[dict[str, dict], int, str]:
    """Run cases 1.*-10.*; return ({case: index entry}, server exit code, server stderr)."""
    server = EchoServer(exe or build_dir() / "echo_server")
    try:
        cmd = [*kosoku_command(), f"127.0.0.1:{server.port}", "-o", str(outdir)]
        for cat in CATEGORIES:
            cmd += ["-i", f"{cat}.*"]
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=KOSOKU_TIMEOUT
        )
        (outdir / "kosoku.log").write_bytes(proc.stdout + b"\n--- stderr ---\n" + proc.stderr)
    finally:
        rc, err = server.stop()
    index_file = outdir / "index.json"
    if not index_file.is_file():
        raise RuntimeError(
            f"kosoku wrote no index.json (exit {proc.returncode}):\n"
            + proc.stderr.decode("utf-8", "replace")[-4000:]
        )
    index = json.loads(index_file.read_text())
    if len(index) != 1:
        raise RuntimeError(f"expected one agent in {index_file}, found {list(index)}")
    cases = next(iter(index.values()))
    return cases, rc, err


def verdicts(cases: dict[str, dict]) -> dict[str, dict[str, str]]:
    return {
        cid: {"behavior": cases[cid]["behavior"], "behaviorClose": cases[cid]["behaviorClose"]}
        for cid in sorted(cases, key=case_key)
    }


def load_expected() -> dict[str, dict[str, str]]:
    return json.loads(EXPECTED.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update", action="store_true", help="rewrite expected-results.json from this run")
    parser.add_argument("--reports", type=Path, help="keep kosoku's reports in this directory")
    args = parser.parse_args()
    outdir = args.reports or Path(tempfile.mkdtemp(prefix="wsb-kosoku-"))
    outdir.mkdir(parents=True, exist_ok=True)
    cases, rc, err = run(outdir)
    got = verdicts(cases)
    counts: dict[str, int] = {}
    for v in got.values():
        key = f"{v['behavior']}/{v['behaviorClose']}"
        counts[key] = counts.get(key, 0) + 1
    print(f"{len(got)} cases; reports in {outdir}")
    for key, n in sorted(counts.items()):
        print(f"  {n:4d} {key}")
    for cid, v in got.items():
        if v["behavior"] != "OK" or v["behaviorClose"] != "OK":
            print(f"  {cid}: {v['behavior']} / {v['behaviorClose']}")
    print(f"server exit status {rc}")
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
