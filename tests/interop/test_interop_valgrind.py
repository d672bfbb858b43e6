"""A short session with each plain (non-ASan) echo example under valgrind memcheck.

valgrind slows the server down by an order of magnitude, so this keeps to a
handful of messages: each size once as text and as binary, client and
server initiated closes, then SIGTERM. echo_poll also sends a short burst
from its second thread while its polling thread echoes.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from harness import CLOSE_RE, ServerProcess, binary_payload, example_binary, text_payload

SIZES = [0, 125, 126, 65535, 65536, 4 * 1024 * 1024]
VALGRIND = [
    "valgrind",
    "--error-exitcode=99",
    "--leak-check=full",
    "--errors-for-leak-kinds=definite",
    "--show-leak-kinds=definite",
    "--track-fds=no",
    "--quiet",
    f"--suppressions={Path(__file__).with_name('valgrind.supp')}",
]
# memcheck's own wording for the error kinds it reports.
MEMCHECK_MARKERS = (
    "Invalid read",
    "Invalid write",
    "Invalid free",
    "Mismatched free",
    "uninitialised",
    "Syscall param",
    "Source and destination overlap",
    "are definitely lost",
)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("example", ["echo_server", "echo_poll"])
def test_example_under_valgrind(example):
    if shutil.which("valgrind") is None:
        pytest.fail("valgrind is not installed (scripts/setup-test-env.sh installs it)")
    srv = ServerProcess(example_binary(example, prefer_asan=False), [], wrapper=VALGRIND, startup_timeout=120)
    srv.start()
    try:
        with connect(srv.url("/valgrind"), max_size=None, compression=None, open_timeout=60, close_timeout=60) as ws:
            for size in SIZES:
                text = text_payload(size)
                ws.send(text)
                assert ws.recv(timeout=120) == text
                data = binary_payload(size)
                ws.send(data)
                assert ws.recv(timeout=120) == data
            if example == "echo_poll":
                ws.send("/burst 20")
                ws.send("both threads")
                got = [ws.recv(timeout=120) for _ in range(21)]
                assert [m for m in got if m.startswith("burst ")] == [f"burst {i}/20" for i in range(1, 21)]
                assert "both threads" in got
            ws.close(4001, "valgrind bye")
        assert ws.protocol.close_rcvd is not None
        with connect(srv.url(), compression=None, open_timeout=60, close_timeout=60) as ws:
            ws.send("/close 4000 bye")
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=60)
        assert info.value.rcvd is not None and info.value.rcvd.code == 4000
        closes = srv.wait_count(CLOSE_RE, 2, 60)
        assert len(closes) == 2, srv.lines
        rc = srv.stop(timeout=120)
    finally:
        srv.kill()
    err = srv.stderr()
    assert rc == 0, f"exit {rc} under valgrind (99 = memcheck errors):\n{err[-8000:]}"
    found = [m for m in MEMCHECK_MARKERS if m in err]
    assert not found, f"memcheck reported {found}:\n{err[-8000:]}"
    assert not re.search(r"definitely lost: [1-9]", err), err[-8000:]
