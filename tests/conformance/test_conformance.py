"""kosoku cases 1.*-10.* against the release echo_server, one test per case.

The suite runs once per session; each case's verdict must be neither
FAILED nor ERROR and must equal the one recorded in expected-results.json
(regenerate with `tests/conformance/conformance.py --update` after checking
the cases by hand). Set WSB_CONFORMANCE_REPORTS=DIR to keep the reports.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

import conformance

EXPECTED = conformance.load_expected() if conformance.EXPECTED.is_file() else {}

pytestmark = pytest.mark.timeout(conformance.KOSOKU_TIMEOUT + 120)


@pytest.fixture(scope="module")
def kosoku_run():
    keep = os.environ.get("WSB_CONFORMANCE_REPORTS")
    if keep:
        outdir = Path(keep)
        outdir.mkdir(parents=True, exist_ok=True)
        cases, rc, err = conformance.run(outdir)
        yield outdir, cases, rc, err
        return
    with tempfile.TemporaryDirectory(prefix="wsb-kosoku-") as tmp:
        cases, rc, err = conformance.run(Path(tmp))
        yield Path(tmp), cases, rc, err


def test_expected_file_is_present():
    assert EXPECTED, f"{conformance.EXPECTED} is missing or empty"
    assert all(c.split(".")[0] in conformance.CATEGORIES for c in EXPECTED)


def test_ran_exactly_the_expected_cases(kosoku_run):
    _outdir, cases, _rc, _err = kosoku_run
    assert sorted(cases, key=conformance.case_key) == sorted(EXPECTED, key=conformance.case_key)


def test_server_exits_cleanly_after_the_run(kosoku_run):
    _outdir, _cases, rc, err = kosoku_run
    assert rc == 0, f"echo_server exited with {rc} after the kosoku run:\n{err[-4000:]}"


@pytest.mark.parametrize("case_id", sorted(EXPECTED, key=conformance.case_key))
def test_case(kosoku_run, case_id):
    outdir, cases, _rc, _err = kosoku_run
    assert case_id in cases, f"kosoku did not report case {case_id}"
    entry = cases[case_id]
    got = {"behavior": entry["behavior"], "behaviorClose": entry["behaviorClose"]}
    detail = f"(report: {outdir / entry.get('reportfile', '?')})"
    assert got["behavior"] not in conformance.BAD_BEHAVIORS, f"{case_id}: {got} {detail}"
    assert got["behaviorClose"] not in conformance.BAD_CLOSE, f"{case_id}: {got} {detail}"
    assert got == EXPECTED[case_id], f"{case_id}: got {got}, expected {EXPECTED[case_id]} {detail}"
