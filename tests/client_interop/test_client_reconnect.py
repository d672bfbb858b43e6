"""Auto-reconnect: the server goes away and comes back on the same port;
the client reports every attempt (RECONNECTING, then each attempt's ERROR)
and comes back by itself. Delays follow the configured backoff."""

from __future__ import annotations

import time

from client_harness import RESULT, Probe

INITIAL_MS, MAX_MS = 100, 800


def expected_delay(attempt: int) -> float:
    return min(INITIAL_MS * 2 ** (attempt - 1), MAX_MS)


def test_server_restart_same_port(probe_exe, processes, peer):
    p = peer()
    port = p.port
    probe = Probe(probe_exe, ["--timeout-ms", "2000", "--reconnect", str(INITIAL_MS), str(MAX_MS), "0", p.url("/echo")])
    processes.append(probe)
    probe.connected()
    assert probe.command("text before") == RESULT["OK"]
    probe.message()

    assert p.stop() == 0  # websockets closes its connections with 1001
    closed = probe.closed()
    assert (closed.status, closed.by_host) == (1001, False)
    # With the server down, attempts fail (refused) and are each reported.
    i, _ = probe.wait_line(r"RECONNECTING 3 \d+", timeout=10)
    assert probe.command("text while down") == RESULT["NOT_CONNECTED"]
    attempts = [(int(m.group(1)), int(m.group(2))) for m in probe.matching(r"RECONNECTING (\d+) (\d+)")]
    assert [a for a, _ in attempts] == [1, 2, 3]
    for a, delay in attempts:
        assert 0.8 * expected_delay(a) - 1 <= delay <= 1.2 * expected_delay(a) + 1, attempts
    refused = [m for m in probe.matching(r"ERROR (\d+) \d+ .*") if int(m.group(1)) == RESULT["CONNECTION_REFUSED"]]
    assert len(refused) >= 2

    p2 = peer(port=port)
    assert p2.port == port
    t0 = time.monotonic()
    probe.wait_line(r"CONNECTED \S+", timeout=10, start=i + 1)
    # The next attempt is due within the largest delay (+ jitter).
    assert time.monotonic() - t0 < (MAX_MS * 1.2 + 2000) / 1000
    assert probe.command("text after") == RESULT["OK"]
    _, msg = probe.message(start=i + 1)
    assert msg.preview == "after"
    p2.wait_line(r"message /echo text 5")

    # A host close stops reconnection: no RECONNECTING after it.
    n = len(probe.matching(r"RECONNECTING .*"))
    assert probe.command("close 1000 bye") == RESULT["OK"]
    closed = probe.closed(start=i + 1)
    assert (closed.status, closed.by_host) == (1000, True)
    time.sleep(MAX_MS * 1.5 / 1000)
    assert len(probe.matching(r"RECONNECTING .*")) == n
    probe.finish()


def test_gives_up_after_max_attempts(probe_exe, processes, peer):
    p = peer()
    probe = Probe(probe_exe, ["--reconnect", "50", "100", "2", p.url("/echo")])
    processes.append(probe)
    probe.connected()
    p.stop()
    probe.wait_line(r"RECONNECTING 2 \d+", timeout=10)
    # Attempt 2 fails too; the client says it has stopped, and there is no third.
    i, _ = probe.wait_line(r"GAVE_UP 2", timeout=10)
    assert len(probe.matching(r"ERROR .*")) == 2
    assert probe.lines[i - 1].startswith("ERROR "), probe.lines[i - 2 : i + 1]
    time.sleep(0.6)
    assert not probe.matching(r"RECONNECTING 3 .*")
    assert probe.command("text after") == RESULT["NOT_CONNECTED"]
    probe.finish()


def test_first_connect_failure_is_retried(probe_exe, processes, peer):
    # Reconnection also covers a server that is not up yet.
    from client_harness import free_port

    port = free_port()
    probe = Probe(probe_exe, ["--reconnect", "100", "300", "0", f"ws://127.0.0.1:{port}/echo"])
    processes.append(probe)
    probe.wait_line(r"RECONNECTING 2 \d+", timeout=10)
    peer(port=port)
    probe.connected(timeout=10)
    probe.finish()
