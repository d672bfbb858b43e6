"""Hostile and broken peers: the server must refuse them by the rules and stay up.

Frames the `websockets` client refuses to send (unmasked, invalid UTF-8) go
through raw sockets. After each abuse a well-behaved client must still be
served, and the fixture checks at shutdown that the (ASan) server exits 0
without a sanitizer report.
"""

from __future__ import annotations

import random
import re
import socket
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from harness import (
    CLOSE_RE,
    OPEN_RE,
    FrameReader,
    abort,
    encode_frame,
    new_key,
    raw_connect,
    raw_handshake,
    read_http_response,
    upgrade_request,
    wait_eof,
)

HTTP_ERROR_RE = re.compile(rb"HTTP/1\.1 4\d\d[^\r\n]*\r\n")


def assert_still_serving(srv) -> None:
    with connect(srv.url(), compression=None, open_timeout=10, close_timeout=10) as ws:
        ws.send("still alive?")
        assert ws.recv(timeout=10) == "still alive?"
        ws.send(b"\x00\x01")
        assert ws.recv(timeout=10) == b"\x00\x01"


# ------------------------------------------------------------ handshakes


def test_plain_http_request_gets_400(start_server):
    srv = start_server("--handshake-timeout", "2000")
    with raw_connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n")
        status, _headers, _rest = read_http_response(sock)
        assert status == 400
        wait_eof(sock, 5)
    assert srv.open_lines() == []
    assert_still_serving(srv)


@pytest.mark.parametrize("version", ["8", "12", "14", "abc"])
def test_wrong_version_gets_426(start_server, version):
    srv = start_server("--handshake-timeout", "2000")
    with raw_connect(srv.port) as sock:
        sock.sendall(upgrade_request(new_key(), version=version))
        status, headers, _rest = read_http_response(sock)
        assert status == 426
        assert headers.get("sec-websocket-version") == "13", headers
        wait_eof(sock, 5)
    assert srv.open_lines() == []
    assert_still_serving(srv)


def test_missing_version_is_refused(start_server):
    srv = start_server("--handshake-timeout", "2000")
    with raw_connect(srv.port) as sock:
        sock.sendall(upgrade_request(new_key(), version=None))
        status, _headers, _rest = read_http_response(sock)
        # RFC 6455 4.2.1 requires the header; without it this is either a bad
        # request or a version the server does not speak.
        assert status in (400, 426)
        wait_eof(sock, 5)
    assert srv.open_lines() == []


def test_missing_key_gets_400(start_server):
    srv = start_server("--handshake-timeout", "2000")
    with raw_connect(srv.port) as sock:
        request = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"
        sock.sendall(request)
        status, _headers, _rest = read_http_response(sock)
        assert status == 400
        wait_eof(sock, 5)
    assert srv.open_lines() == []
    assert_still_serving(srv)


GARBAGE = [
    pytest.param(random.Random(1).randbytes(16), id="random-16"),
    pytest.param(random.Random(2).randbytes(4096), id="random-4k"),
    pytest.param(random.Random(3).randbytes(65536), id="random-64k"),
    pytest.param(b"\r\n\r\n", id="empty-request"),
    pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32) + b"\r\n\r\n", id="tls-hello"),
    pytest.param(b"GET / HTTP/1.1\r\n" + b"X-Long: " + b"a" * 200_000 + b"\r\n\r\n", id="huge-header"),
    pytest.param(b"GET / HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(2000)) + b"\r\n", id="many-headers"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: \xff\xfe\r\nSec-WebSocket-Version: 13\r\n\r\n", id="binary-key"),
    pytest.param(b"\x00" * 1024, id="nul-bytes"),
]


@pytest.mark.parametrize("garbage", GARBAGE)
def test_garbage_handshake_is_refused(start_server, garbage):
    srv = start_server("--handshake-timeout", "2000")
    with raw_connect(srv.port) as sock:
        try:
            sock.sendall(garbage)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refusing before reading everything is fine
        # Refused with a 4xx or just dropped, but always within the timeout.
        data, _elapsed = wait_eof(sock, 6)
    if data:
        assert HTTP_ERROR_RE.match(data), f"unexpected answer to garbage: {data[:200]!r}"
        assert not data.startswith(b"HTTP/1.1 101")
    assert srv.open_lines() == []
    assert_still_serving(srv)


def test_half_sent_handshake_times_out(start_server):
    srv = start_server("--handshake-timeout", "500")
    partial = upgrade_request(new_key())[:40]
    with raw_connect(srv.port) as silent, raw_connect(srv.port) as half:
        half.sendall(partial)
        _data, elapsed_half = wait_eof(half, 5)
        _data, elapsed_silent = wait_eof(silent, 5)
    # Closed by the timer, not at once and not much later.
    assert 0.3 <= elapsed_half <= 3.0, elapsed_half
    assert elapsed_silent <= 3.0, elapsed_silent
    assert srv.open_lines() == []
    assert_still_serving(srv)


def test_slow_but_complete_handshake_within_timeout(start_server):
    srv = start_server("--handshake-timeout", "2000")
    key = new_key()
    request = upgrade_request(key)
    with raw_connect(srv.port) as sock:
        # Dribble the request in pieces well inside the timeout.
        for i in range(0, len(request), 20):
            sock.sendall(request[i : i + 20])
            time.sleep(0.02)
        status, _headers, _rest = read_http_response(sock)
        assert status == 101
        sock.sendall(encode_frame(0x8, (1000).to_bytes(2, "big")))
        frames = FrameReader(sock, _rest).read_until_eof(10)
    assert frames and frames[0].close_code() == 1000


# ------------------------------------------------------------ frames


@pytest.mark.parametrize("kind", ["binary", "text", "fragmented"])
def test_oversized_message_gets_1009(start_server, kind):
    srv = start_server("--max-message", "1024")
    with connect(srv.url(), compression=None, open_timeout=10, close_timeout=10) as ws:
        conn_id = srv.open_id_for(ws.local_address[1])
        # Exactly at the limit is still fine.
        ws.send(b"a" * 1024)
        assert ws.recv(timeout=10) == b"a" * 1024
        with pytest.raises(ConnectionClosed) as info:
            if kind == "binary":
                ws.send(b"b" * 2000)
            elif kind == "text":
                ws.send("t" * 2000)
            else:
                # No single fragment is over the limit; the message is.
                ws.send([b"c" * 700, b"d" * 700, b"e" * 600])
            ws.recv(timeout=10)
    assert info.value.rcvd is not None, f"no close frame: {info.value!r}"
    assert info.value.rcvd.code == 1009
    # `host` in the close line means the application called close; a
    # connection the engine fails reports only the code it sent.
    assert srv.wait_close_line(conn_id).status == 1009
    assert_still_serving(srv)


def fail_with_frames(srv, frames: list[bytes], expected_code: int) -> None:
    sock, rest = raw_handshake(srv.port)
    with sock:
        conn_id = int(srv.wait_line(OPEN_RE).group(1))
        for f in frames:
            sock.sendall(f)
        got = FrameReader(sock, rest).read_until_eof(10)
    # Nothing is echoed: the server closes with the code and drops the link.
    assert [f.opcode for f in got] == [0x8], got
    assert got[0].close_code() == expected_code, got
    assert not got[0].masked
    assert srv.wait_close_line(conn_id).status == expected_code


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\xff\xfe", id="ff-fe"),
        pytest.param(b"abc\xc3", id="truncated"),
        pytest.param(b"\xed\xa0\x80", id="surrogate"),
        pytest.param(b"\xc0\xaf", id="overlong"),
        pytest.param(b"\xf4\x90\x80\x80", id="above-10ffff"),
    ],
)
def test_invalid_utf8_text_gets_1007(start_server, payload):
    srv = start_server()
    fail_with_frames(srv, [encode_frame(0x1, payload)], 1007)
    assert_still_serving(srv)


def test_invalid_utf8_across_fragments_gets_1007(start_server):
    srv = start_server()
    frames = [encode_frame(0x1, "héllo".encode(), fin=False), encode_frame(0x0, b"\x80\x80", fin=True)]
    fail_with_frames(srv, frames, 1007)


def test_invalid_utf8_close_reason_gets_1007(start_server):
    srv = start_server()
    fail_with_frames(srv, [encode_frame(0x8, (1000).to_bytes(2, "big") + b"\xff")], 1007)


def test_unmasked_client_frame_gets_1002(start_server):
    srv = start_server()
    fail_with_frames(srv, [encode_frame(0x1, b"hello", mask=False)], 1002)
    assert_still_serving(srv)


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(encode_frame(0x3, b"x"), id="reserved-opcode"),
        pytest.param(encode_frame(0x1, b"x", rsv=4), id="rsv1-without-extension"),
        pytest.param(encode_frame(0x0, b"x"), id="orphan-continuation"),
        pytest.param(encode_frame(0x9, b"p" * 126), id="ping-too-long"),
        pytest.param(encode_frame(0x9, b"p", fin=False), id="fragmented-ping"),
        pytest.param(encode_frame(0x8, b"\x03"), id="close-one-byte"),
        pytest.param(encode_frame(0x8, (999).to_bytes(2, "big")), id="close-code-999"),
        pytest.param(encode_frame(0x8, (1005).to_bytes(2, "big")), id="close-code-1005"),
    ],
)
def test_protocol_violation_gets_1002(start_server, frame):
    srv = start_server()
    fail_with_frames(srv, [frame], 1002)


@pytest.mark.parametrize("how", ["reset", "fin"])
def test_partial_frame_then_abrupt_drop_reports_minus_one(start_server, how):
    srv = start_server()
    # A race between the buffered bytes and the drop, so try it a few times.
    ids = []
    for _ in range(20):
        sock, _rest = raw_handshake(srv.port)
        ids.append(srv.open_id_for(sock.getsockname()[1]))
        # Half a frame header, then the drop arrives right behind it.
        sock.sendall(b"\x82\xfe")
        if how == "reset":
            abort(sock)
        else:
            sock.close()
    closes = srv.wait_count(CLOSE_RE, len(ids), 10)
    reported = {c.conn_id: c.status for c in srv.close_lines()}
    missing = [i for i in ids if i not in reported]
    assert not missing, f"{len(missing)} of {len(ids)} dropped connections never reported closed"
    assert set(reported.values()) == {-1}, reported
    assert len(closes) == len(ids)
    assert_still_serving(srv)


# ------------------------------------------------------------ churn

CHURN_TOTAL = 1000
CHURN_BATCH = 50


@pytest.mark.timeout(300)
def test_thousand_abrupt_connections(start_server):
    srv = start_server()
    rng = random.Random(1000)
    request = upgrade_request(new_key())
    upgraded = 0
    for batch_start in range(0, CHURN_TOTAL, CHURN_BATCH):
        socks: list[tuple[socket.socket, bool]] = []
        for i in range(batch_start, batch_start + CHURN_BATCH):
            mid_handshake = i % 2 == 0
            if mid_handshake:
                sock = raw_connect(srv.port)
                # Anything from nothing up to all but the final CRLF.
                sock.sendall(request[: rng.randrange(0, len(request) - 2)])
            else:
                sock, _rest = raw_handshake(srv.port)
                upgraded += 1
                if i % 4 == 1:
                    # Some leave a frame half-sent as well.
                    sock.sendall(encode_frame(0x2, b"z" * 300)[:100])
            socks.append((sock, mid_handshake))
        for n, (sock, _mid) in enumerate(socks):
            # Mix resets and plain FINs; neither carries a close frame.
            if n % 3 == 0:
                sock.close()
            else:
                abort(sock)
    assert upgraded == CHURN_TOTAL // 2
    assert srv.alive(), "server died during the churn"
    assert_still_serving(srv)
    # Every upgraded connection is reported opened and then dropped (-1).
    opens = srv.wait_count(OPEN_RE, upgraded + 1, 60)
    closes = srv.wait_count(CLOSE_RE, upgraded + 1, 60)
    assert len(opens) == upgraded + 1
    assert len(closes) == upgraded + 1
    statuses = [c.status for c in srv.close_lines()]
    assert statuses.count(-1) == upgraded, {s: statuses.count(s) for s in set(statuses)}
