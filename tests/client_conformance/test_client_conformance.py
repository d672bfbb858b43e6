"""kosoku fuzzingserver cases 1.*-10.* against wsbroker's client, one test
per case.

The suite runs once per module; each case's verdict must be neither FAILED
nor ERROR and must equal the one recorded in expected-results.json
(regenerate with `tests/client_conformance/kosoku_client.py --update` after
checking the cases by hand), except that OK and NON-STRICT count as equal
(see conformance.TIMING_EQUIVALENT). Set WSB_CONFORMANCE_REPORTS=DIR to keep the
reports.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest

import kosoku_client as conformance

EXPECTED = conformance.load_expected() if conformance.EXPECTED.is_file() else {}

pytestmark = pytest.mark.timeout(conformance.RUN_TIMEOUT + 120)


@pytest.fixture(scope="module")
def kosoku_run():
    keep = os.environ.get("WSB_CONFORMANCE_REPORTS")
    if keep:
        outdir = Path(keep)
        outdir.mkdir(parents=True, exist_ok=True)
        yield outdir, *conformance.run(outdir)
        return
    with tempfile.TemporaryDirectory(prefix="wsb-kosoku-client-") as tmp:
        yield Path(tmp), *conformance.run(Path(tmp))


def test_expected_file_is_present():
    assert EXPECTED, f"{conformance.EXPECTED} is missing or empty"
    assert all(c.split(".")[0] in conformance.CATEGORIES for c in EXPECTED)


def test_ran_exactly_the_expected_cases(kosoku_run):
    _outdir, cases, _rc, _out, _err = kosoku_run
    assert sorted(cases, key=conformance.case_key) == sorted(EXPECTED, key=conformance.case_key)


def test_client_ran_every_case_and_exited_cleanly(kosoku_run):
    _outdir, cases, rc, out, err = kosoku_run
    assert rc == 0, f"autobahn_client exited with {rc}:\n{err[-4000:]}"
    assert not conformance.sanitizer_report(err), err[-6000:]
    m = re.search(r"^cases (\d+)$", out, re.M)
    assert m and int(m.group(1)) == len(cases), out[:200]
    # Every case connected (no connection errors, no case abandoned at the limit).
    assert not re.search(r"^case \d+ (error|-4000)", out, re.M), out
    assert re.search(r"^reports ", out, re.M)


@pytest.mark.parametrize("case_id", sorted(EXPECTED, key=conformance.case_key))
def test_case(kosoku_run, case_id):
    outdir, cases, _rc, _out, _err = kosoku_run
    assert case_id in cases, f"kosoku did not report case {case_id}"
    entry = cases[case_id]
    got = {"behavior": entry["behavior"], "behaviorClose": entry["behaviorClose"]}
    detail = f"(report: {outdir / entry.get('reportfile', '?')})"
    assert got["behavior"] not in conformance.BAD_BEHAVIORS, f"{case_id}: {got} {detail}"
    assert got["behaviorClose"] not in conformance.BAD_CLOSE, f"{case_id}: {got} {detail}"
    want = EXPECTED[case_id]
    assert got["behaviorClose"] == want["behaviorClose"], f"{case_id}: got {got}, expected {want} {detail}"
    if {got["behavior"], want["behavior"]} <= conformance.TIMING_EQUIVALENT:
        return
    assert got == want, f"{case_id}: got {got}, expected {want} {detail}"
