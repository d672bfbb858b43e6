"""The client against a Python `websockets` server: ws and wss (a CA made
for the test), 4 MiB text and binary messages, pings, extra headers,
closes from either side, and the C example client."""

from __future__ import annotations

import re
import subprocess
import time
from urllib.parse import quote

import pytest

from client_harness import RESULT, Probe, crc, free_port, gen_binary, gen_text

BIG = 4 << 20


def tls_args(pki) -> list[str]:
    return ["--ca", str(pki.ca), "--no-system-roots"]


@pytest.fixture(params=["ws", "wss-localhost", "wss-ip"])
def endpoint(request, peer, pki):
    """(url maker, extra probe options) for a fresh peer."""
    if request.param == "ws":
        p = peer()
        return (lambda path: p.url(path)), [], p
    p = peer(cert=pki.good[0], key=pki.good[1])
    host = "localhost" if request.param == "wss-localhost" else "127.0.0.1"
    return (lambda path: p.url(path, scheme="wss", host=host)), tls_args(pki), p


def test_big_messages_echo(probe_exe, processes, endpoint):
    url, opts, p = endpoint
    probe = Probe(probe_exe, [*opts, url("/echo")])
    processes.append(probe)
    assert probe.connected() == "-"
    text, binary = gen_text(BIG), gen_binary(BIG, 7)
    assert len(text) == BIG
    # Above the 1 MiB soft limit a send is still queued, with BACKPRESSURE,
    # and a DRAIN event follows once the buffer has gone down.
    assert probe.command(f"gen-text {BIG}") == RESULT["BACKPRESSURE"]
    assert probe.command(f"gen-binary {BIG} 7") == RESULT["BACKPRESSURE"]
    i, first = probe.message(timeout=60)
    _, second = probe.message(timeout=60, start=i + 1)
    assert (first.text, first.length, first.crc) == (True, BIG, crc(text))
    assert (second.text, second.length, second.crc) == (False, BIG, crc(binary))
    # The server saw them intact too (types and sizes).
    p.wait_line(rf"message /echo text {len(text.decode())}")
    p.wait_line(rf"message /echo binary {BIG}")
    probe.wait_line("DRAIN")
    assert probe.command("close 1000 done") == RESULT["OK"]
    closed = probe.closed()
    assert (closed.status, closed.by_host) == (1000, True)
    probe.finish()


def test_server_initiated_close_code_and_reason(probe_exe, processes, endpoint):
    url, opts, _ = endpoint
    reason = "server says bye ✓"
    probe = Probe(probe_exe, [*opts, url(f"/close?code=4001&reason={quote(reason)}")])
    processes.append(probe)
    probe.connected()
    assert probe.command("text hello") == RESULT["OK"]
    _, msg = probe.message()
    assert (msg.text, msg.preview) == (True, "hello")
    closed = probe.closed()
    assert (closed.status, closed.by_host, closed.reason) == (4001, False, reason)
    probe.finish()


def test_ping_pong_and_headers(probe_exe, processes, peer):
    p = peer()
    probe = Probe(probe_exe, ["--header", "X-Wsb-Test", "value 1", p.url("/echo?q=1")])
    processes.append(probe)
    probe.connected()
    p.wait_line(r"open /echo\?q=1 X-Wsb-Test=value 1")
    assert probe.command("ping are-you-there") == RESULT["OK"]
    probe.wait_line(r"PONG 13 are-you-there")
    assert probe.command("ping " + "x" * 126) == RESULT["TOO_BIG"]
    assert probe.command("text still fine") == RESULT["OK"]
    probe.message()
    probe.cmd_line("close 4000 client done")
    closed = probe.closed()
    assert (closed.status, closed.by_host, closed.reason) == (4000, True, "client done")
    probe.finish()


def test_subprotocol_is_negotiated(probe_exe, processes, peer):
    p = peer()
    probe = Probe(probe_exe, ["--protocol", "other", "--protocol", "wsb.v1", p.url("/echo")])
    processes.append(probe)
    assert probe.connected() == "wsb.v1"
    probe.finish()


def test_manual_flow_control(probe_exe, processes, peer):
    # In manual mode the next message waits for wsb_client_message_complete.
    p = peer()
    probe = Probe(probe_exe, ["--manual", p.url("/echo")])
    processes.append(probe)
    probe.connected()
    for word in ("one", "two", "three"):
        assert probe.command(f"text {word}") == RESULT["OK"]
    p.wait_line(r"message /echo text 5")  # all three reached the server and were echoed
    i, first = probe.message()
    assert first.preview == "one"
    time.sleep(0.5)
    assert len(probe.matching(r"MESSAGE .*")) == 1
    assert probe.command("complete") == RESULT["OK"]
    i, second = probe.message(start=i + 1)
    assert second.preview == "two"
    time.sleep(0.3)
    assert len(probe.matching(r"MESSAGE .*")) == 2
    assert probe.command("complete") == RESULT["OK"]
    _, third = probe.message(start=i + 1)
    assert third.preview == "three"
    probe.finish()


def test_send_results_and_order(probe_exe, processes, peer):
    p = peer()
    probe = Probe(probe_exe, ["--send-results", p.url("/echo")])
    processes.append(probe)
    probe.connected()
    for n in range(50):
        assert probe.command(f"text m{n}") == RESULT["OK"]
    start = 0
    for n in range(50):
        start, msg = probe.message(start=start)
        assert msg.preview == f"m{n}"
        start += 1
    assert len(probe.matching("SENT")) == 50
    probe.finish()


def test_send_before_connected_is_refused(probe_exe, processes):
    # A server that accepts TCP but never answers keeps the client connecting.
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        probe = Probe(probe_exe, ["--timeout-ms", "3000", f"ws://127.0.0.1:{s.getsockname()[1]}/"])
        processes.append(probe)
        assert probe.command("text too early") == RESULT["NOT_CONNECTED"]
        probe.finish()
    finally:
        s.close()


# ---- the C example (examples-c/client.c) ----


def run_example(exe, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    from client_harness import SAN_ENV, SANITIZER_MARKERS
    import os

    proc = subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **SAN_ENV}
    )
    found = [m for m in SANITIZER_MARKERS if m in proc.stderr]
    assert not found, proc.stderr
    return proc


def test_example_client_echo(example_client, peer):
    p = peer()
    proc = run_example(example_client, p.url("/echo"), "hello", "wörld ✓", "")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello\nwörld ✓\n\n"


def test_example_client_wss_needs_trust(example_client, peer, pki):
    # The example trusts the system roots only, so the test CA is unknown to it.
    p = peer(cert=pki.good[0], key=pki.good[1])
    proc = run_example(example_client, p.url("/echo", scheme="wss", host="localhost"), "x")
    assert proc.returncode == 1
    assert "certificate" in proc.stderr.lower()


def test_example_client_server_close(example_client, peer):
    p = peer()
    proc = run_example(example_client, p.url("/close?code=4002&reason=go+away"), "one", "two")
    assert proc.returncode == 1
    assert proc.stdout == "one\n"
    assert "4002 go away" in proc.stderr


def test_example_client_refused(example_client):
    proc = run_example(example_client, f"ws://127.0.0.1:{free_port()}/", "x")
    assert proc.returncode == 1
    assert "connection refused" in proc.stderr


def test_example_client_bad_url(example_client):
    proc = run_example(example_client, "http://127.0.0.1/", "x")
    assert proc.returncode == 2
    assert "ws://" in proc.stderr


def test_sni_names_the_host_and_never_an_ip(probe_exe, processes, peer, pki):
    p = peer(cert=pki.good[0], key=pki.good[1])
    for host, sni in (("localhost", "localhost"), ("127.0.0.1", "-")):
        start = len(p.lines)
        probe = Probe(probe_exe, [*tls_args(pki), p.url("/echo", scheme="wss", host=host)])
        processes.append(probe)
        probe.connected()
        # RFC 6066: a host name is sent as the server name, an IP address is not.
        p.wait_line(rf"sni {re.escape(sni)}", start=start)
        probe.finish()
    assert [m.group(1) for m in p.matching(r"sni (\S+)")] == ["localhost", "-"]
