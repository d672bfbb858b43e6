"""Connection failures: each gives its own result code (the ERROR event's
`error`) and a message saying what failed, and none waits past the connect
timeout. Elapsed times are measured by the probe from wsb_client_new."""

from __future__ import annotations

import base64
import hashlib
import socket
import time

import pytest

from client_harness import RESULT, Probe, TcpServer, free_port, read_request

TIMEOUT_MS = 3000
# How long past the timeout a timed-out attempt may take to be reported
# (the engine's timer granularity plus a loaded, sanitized machine).
SLACK_MS = 1000


def fail_once(probe_exe, processes, url: str, *opts: str):
    """Runs one attempt that must fail; returns the ERROR line and checks the
    probe ended cleanly and nothing waited past the timeout."""
    t0 = time.monotonic()
    probe = Probe(probe_exe, ["--timeout-ms", str(TIMEOUT_MS), *opts, url])
    processes.append(probe)
    err = probe.error(timeout=TIMEOUT_MS / 1000 + 10)
    wall_ms = (time.monotonic() - t0) * 1000
    probe.finish()
    assert not probe.matching(r"CONNECTED .*"), "a failed attempt must not report CONNECTED"
    assert err.elapsed_ms <= TIMEOUT_MS + SLACK_MS, err
    assert wall_ms <= TIMEOUT_MS + SLACK_MS + 2000, f"probe took {wall_ms:.0f} ms in all"
    return err


def quick(err, code: str, *words: str) -> None:
    """A failure that must be reported at once, not at the timeout."""
    assert err.code == code, err
    assert err.elapsed_ms < TIMEOUT_MS / 2, err
    for w in words:
        assert w.lower() in err.message.lower(), (w, err)


def test_unresolvable_host(probe_exe, processes):
    # A label over DNS's 63-byte limit: the resolver rejects it locally,
    # so the test sends nothing off the machine.
    host = "a" * 64 + ".invalid"
    err = fail_once(probe_exe, processes, f"ws://{host}/")
    quick(err, "RESOLVE_FAILED", host)


def test_unreachable_host(probe_exe, processes):
    # The kernel refuses TCP to a multicast address (ENETUNREACH) without
    # sending anything.
    err = fail_once(probe_exe, processes, "ws://224.0.0.1:80/")
    quick(err, "UNREACHABLE", "224.0.0.1")


def test_refused_port(probe_exe, processes):
    port = free_port()
    err = fail_once(probe_exe, processes, f"ws://127.0.0.1:{port}/")
    quick(err, "CONNECTION_REFUSED", str(port))


def certificate_words(pki, which: str) -> list[str]:
    """What the message must say: the certificate's subject and issuer (and
    validity where it is the point), then the reason in words."""
    ca = "issued by CN=wsbroker test ca, valid "
    return {
        "wrong_name": [
            'the server certificate for "localhost" (subject CN=wrong-name, ' + ca,
            ') is not valid for the name "localhost": it is for wrong.example',
        ],
        "untrusted": [
            'the server certificate for "localhost" (subject CN=untrusted, issued by CN=wsbroker test other-ca, valid ',
            f") is signed by an unknown issuer (not in the CA file {pki.ca})",
        ],
        "expired": [
            'the server certificate for "localhost" (subject CN=expired, ' + ca,
            "valid 2020-01-01T00:00:00Z to 2020-02-01T00:00:00Z) expired on 2020-02-01T00:00:00Z (the time here is ",
        ],
        "not_yet_valid": [
            'the server certificate for "localhost" (subject CN=not-yet-valid, ' + ca + pki.later,
            f") is not valid before {pki.later} (the time here is ",
        ],
    }[which]


BAD_CERTIFICATES = ["wrong_name", "untrusted", "expired", "not_yet_valid"]


@pytest.mark.parametrize("which", BAD_CERTIFICATES)
def test_bad_certificates(probe_exe, processes, peer, pki, which):
    cert, key = getattr(pki, which)
    p = peer(cert=cert, key=key)
    err = fail_once(
        probe_exe, processes, p.url("/", scheme="wss", host="localhost"), "--ca", str(pki.ca), "--no-system-roots"
    )
    quick(err, "CERTIFICATE_INVALID", *certificate_words(pki, which))


def test_certificate_messages_differ(probe_exe, processes, peer, pki):
    messages = set()
    for which in BAD_CERTIFICATES:
        cert, key = getattr(pki, which)
        p = peer(cert=cert, key=key)
        err = fail_once(
            probe_exe, processes, p.url("/", scheme="wss", host="localhost"), "--ca", str(pki.ca), "--no-system-roots"
        )
        messages.add(err.message)
    assert len(messages) == len(BAD_CERTIFICATES), messages


def test_insecure_accepts_a_bad_certificate(probe_exe, processes, peer, pki):
    cert, key = pki.expired
    p = peer(cert=cert, key=key)
    probe = Probe(probe_exe, ["--insecure", "--no-system-roots", p.url("/echo", scheme="wss", host="localhost")])
    processes.append(probe)
    probe.connected()
    probe.finish()


def silent(conn: socket.socket) -> None:
    """Accepts and never answers (reads so the client's request is taken)."""
    conn.settimeout(30)
    while conn.recv(4096):
        pass


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_server_never_completes_the_handshake(probe_exe, processes, pki, scheme):
    srv = TcpServer(silent)
    try:
        opts = ["--ca", str(pki.ca), "--no-system-roots"] if scheme == "wss" else []
        err = fail_once(probe_exe, processes, f"{scheme}://localhost:{srv.port}/", *opts)
    finally:
        srv.close()
    assert err.code == "CONNECT_TIMEOUT", err
    assert TIMEOUT_MS * 0.95 <= err.elapsed_ms <= TIMEOUT_MS + SLACK_MS, err
    assert srv.accepted == 1


def garbage(conn: socket.socket) -> None:
    read_request(conn)
    conn.sendall(b"\x00\xff\x13garbage\r\nnot http at all\r\n\r\n")
    silent(conn)  # keep the connection open: the client must not wait for the timeout


def garbage_at_once(conn: socket.socket) -> None:
    # Not after reading a request: a TLS ClientHello has no blank line to wait for.
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    silent(conn)


def http_404(conn: socket.socket) -> None:
    read_request(conn)
    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    silent(conn)


def bad_accept(conn: socket.socket) -> None:
    read_request(conn)
    wrong = base64.b64encode(hashlib.sha1(b"not the key").digest()).decode()
    conn.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + f"Sec-WebSocket-Accept: {wrong}\r\n\r\n".encode()
    )
    silent(conn)


@pytest.mark.parametrize(
    "behave,words",
    [(garbage, []), (http_404, ["404"]), (bad_accept, ["accept"])],
    ids=["garbage", "http-404", "bad-accept"],
)
def test_server_sends_garbage(probe_exe, processes, behave, words):
    srv = TcpServer(behave)
    try:
        err = fail_once(probe_exe, processes, f"ws://127.0.0.1:{srv.port}/")
    finally:
        srv.close()
    quick(err, "HANDSHAKE_FAILED", *words)


def test_tls_to_a_plain_server(probe_exe, processes, pki):
    srv = TcpServer(garbage_at_once)
    try:
        err = fail_once(probe_exe, processes, f"wss://localhost:{srv.port}/", "--ca", str(pki.ca), "--no-system-roots")
    finally:
        srv.close()
    quick(err, "TLS_FAILED")
    assert srv.accepted == 1


def test_each_failure_has_its_own_code():
    # The cases above cover these; the codes themselves must be distinct.
    names = [
        "RESOLVE_FAILED",
        "UNREACHABLE",
        "CONNECTION_REFUSED",
        "CERTIFICATE_INVALID",
        "TLS_FAILED",
        "CONNECT_TIMEOUT",
        "HANDSHAKE_FAILED",
        "PROXY_FAILED",
    ]
    assert len({RESULT[n] for n in names}) == len(names)


def test_client_certificate_when_the_server_requires_one(probe_exe, processes, peer, pki):
    """Mutual TLS: with its certificate the client gets in; without, the
    server's refusal is a TLS failure with the reason in the message."""
    p = peer(cert=pki.good[0], key=pki.good[1], client_ca=pki.ca)
    url = p.url("/echo", scheme="wss", host="localhost")
    ca = ["--ca", str(pki.ca), "--no-system-roots"]
    probe = Probe(probe_exe, [*ca, "--client-cert", str(pki.client[0]), str(pki.client[1]), url])
    processes.append(probe)
    assert probe.connected() == "-"
    assert probe.command("text mutual") == RESULT["OK"]
    _, m = probe.message()
    assert m.text and m.length == len("mutual")
    probe.finish()

    without = Probe(probe_exe, [*ca, url])
    processes.append(without)
    err = without.error()
    assert err.code == "TLS_FAILED", err
    assert "certificate" in err.message.lower(), err


def test_a_refused_client_certificate_is_named(probe_exe, processes, peer, pki):
    """The server does not trust the client certificate's issuer: the
    failure stays TLS_FAILED and names the certificate. (This peer closes
    without an alert, so the client can only say the server may have refused
    it; an alert's reason is checked against our own server in tests/client.rs.)"""
    p = peer(cert=pki.good[0], key=pki.good[1], client_ca=pki.ca)
    url = p.url("/echo", scheme="wss", host="localhost")
    probe = Probe(
        probe_exe,
        ["--ca", str(pki.ca), "--no-system-roots", "--client-cert", str(pki.untrusted[0]), str(pki.untrusted[1]), url],
    )
    processes.append(probe)
    err = probe.error()
    assert err.code == "TLS_FAILED", err
    assert (
        "refused the client certificate (subject CN=untrusted, issued by CN=wsbroker test other-ca, valid "
        in err.message
    ), err
