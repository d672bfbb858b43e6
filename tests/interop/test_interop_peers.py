"""Real third-party peers (Python `websockets`, Node `ws`) against the examples.

Sizes straddle the frame-length encodings: 125 is the largest 7-bit length,
126 the first 16-bit one, 65535 the largest 16-bit one, 65536 the first
64-bit one; 0 and 4 MiB are the extremes.
"""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from harness import (
    OPEN_RE,
    FrameReader,
    ServerProcess,
    binary_payload,
    encode_frame,
    example_binary,
    raw_handshake,
    text_payload,
)

SIZES = [0, 125, 126, 65535, 65536, 4 * 1024 * 1024]
KINDS = ["text", "binary"]


def payload(kind: str, size: int) -> str | bytes:
    return text_payload(size) if kind == "text" else binary_payload(size)


def py_connect(srv, path="/"):
    # websockets caps incoming messages at 1 MiB by default; the echoes go to 4 MiB.
    return connect(srv.url(path), max_size=None, compression=None, open_timeout=10, close_timeout=10)


def run_node(node_client, *args: str, timeout: float = 60.0) -> dict:
    proc = subprocess.run(
        [*node_client, *args], capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    out = proc.stdout.decode("utf-8", "replace").strip().splitlines()
    assert out, f"node client printed nothing; rc={proc.returncode} stderr={proc.stderr[-2000:]!r}"
    result = json.loads(out[-1])
    assert proc.returncode == 0, f"node client failed: {result} stderr={proc.stderr[-2000:]!r}"
    return result


# ------------------------------------------------------------------ echo


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", KINDS)
def test_python_echo(start_server, kind, size):
    srv = start_server()
    sent = payload(kind, size)
    with py_connect(srv, "/echo/py") as ws:
        conn_id = srv.open_id_for(ws.local_address[1])
        ws.send(sent)
        got = ws.recv(timeout=30)
        assert type(got) is type(sent), f"sent {kind}, got {type(got).__name__}"
        assert len(got) == len(sent)
        assert got == sent
        ws.close(1000)
    assert ws.protocol.close_rcvd is not None, "server did not answer the close frame"
    assert ws.protocol.close_rcvd.code == 1000
    line = srv.wait_close_line(conn_id)
    assert (line.status, line.initiator, line.reason) == (1000, "peer", "")


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", KINDS)
def test_node_echo(start_server, node_client, tmp_path, kind, size):
    srv = start_server()
    sent = payload(kind, size)
    sent_bytes = sent.encode("utf-8") if isinstance(sent, str) else sent
    infile, outfile = tmp_path / "in.bin", tmp_path / "out.bin"
    infile.write_bytes(sent_bytes)
    result = run_node(node_client, "echo", srv.url("/echo/node"), kind, str(infile), str(outfile))
    assert result["opened"]
    assert result["messages"] == [{"binary": kind == "binary", "length": size}]
    assert outfile.read_bytes() == sent_bytes
    assert result["closeCode"] == 1000
    opened = srv.open_lines()
    assert len(opened) == 1 and opened[0].group(3) == "/echo/node"
    line = srv.wait_close_line(int(opened[0].group(1)))
    assert (line.status, line.initiator) == (1000, "peer")


def test_open_line_reports_peer_and_path(start_server):
    srv = start_server()
    with py_connect(srv, "/some/path?q=1") as ws:
        m = srv.wait_line(OPEN_RE)
        assert m.group(2) == f"127.0.0.1:{ws.local_address[1]}"
        assert m.group(3) == "/some/path?q=1"


def test_many_messages_one_connection_keep_order(start_server):
    srv = start_server()
    with py_connect(srv) as ws:
        for i in range(200):
            ws.send(f"message {i}" if i % 2 else f"message {i}".encode())
        for i in range(200):
            expected = f"message {i}" if i % 2 else f"message {i}".encode()
            assert ws.recv(timeout=10) == expected


# ------------------------------------------------------------------ close

CLIENT_CLOSES = [(1000, ""), (1001, "going away"), (4001, "client bye"), (3000, "raison ✓ ünïcødé")]


@pytest.mark.parametrize("code,reason", CLIENT_CLOSES)
def test_python_client_close(start_server, code, reason):
    srv = start_server()
    with py_connect(srv) as ws:
        conn_id = srv.open_id_for(ws.local_address[1])
        ws.close(code, reason)
    rcvd = ws.protocol.close_rcvd
    assert rcvd is not None, "server did not answer the close frame"
    # RFC 6455 5.5.1: the answer typically echoes the code.
    assert rcvd.code in (code, 1000), rcvd
    line = srv.wait_close_line(conn_id)
    assert (line.status, line.initiator, line.reason) == (code, "peer", reason)


def test_close_frame_without_code(start_server):
    srv = start_server()
    sock, rest = raw_handshake(srv.port)
    with sock:
        conn_id = int(srv.wait_line(OPEN_RE).group(1))
        sock.sendall(encode_frame(0x8, b""))
        frames = FrameReader(sock, rest).read_until_eof(10)
    assert frames and frames[0].opcode == 0x8, frames
    assert not frames[0].masked, "server frames must not be masked"
    # An empty close may be answered empty or with 1000.
    assert frames[0].close_code() in (None, 1000)
    line = srv.wait_close_line(conn_id)
    assert (line.status, line.initiator) == (0, "peer")


SERVER_CLOSES = [(4000, "bye"), (4999, "see you later ✓"), (1000, "done")]


@pytest.mark.parametrize("code,reason", SERVER_CLOSES)
def test_python_server_close(start_server, code, reason):
    srv = start_server()
    with py_connect(srv) as ws:
        conn_id = srv.open_id_for(ws.local_address[1])
        ws.send(f"/close {code} {reason}")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
    rcvd = info.value.rcvd
    assert rcvd is not None, f"no close frame from the server: {info.value!r}"
    assert (rcvd.code, rcvd.reason) == (code, reason)
    # The server initiated, so our answer must have completed the handshake.
    assert info.value.sent is not None
    line = srv.wait_close_line(conn_id)
    assert (line.status, line.initiator, line.reason) == (code, "host", reason)


def test_node_client_close(start_server, node_client):
    srv = start_server()
    result = run_node(node_client, "close", srv.url(), "4001", "node says bye")
    assert result["opened"]
    assert result["closeCode"] in (4001, 1000)
    opened = srv.open_lines()
    assert len(opened) == 1
    line = srv.wait_close_line(int(opened[0].group(1)))
    assert (line.status, line.initiator, line.reason) == (4001, "peer", "node says bye")


def test_node_server_close(start_server, node_client):
    srv = start_server()
    result = run_node(node_client, "command", srv.url(), "/close 4000 bye")
    assert result["opened"]
    assert result["messages"] == []
    assert (result["closeCode"], result["closeReason"]) == (4000, "bye")
    opened = srv.open_lines()
    assert len(opened) == 1
    line = srv.wait_close_line(int(opened[0].group(1)))
    assert (line.status, line.initiator, line.reason) == (4000, "host", "bye")


def test_poll_example_writes_from_two_threads_at_once():
    """echo_poll echoes from its polling thread while its second thread sends
    a burst on the same connection: every message arrives whole, each thread's
    in its own order."""
    srv = ServerProcess(example_binary("echo_poll"), [])
    srv.start()
    try:
        with py_connect(srv) as ws:
            ws.send("/burst 2000")
            echoes = [f"echo {i}" for i in range(300)]
            for e in echoes:
                ws.send(e)
            got = [ws.recv(timeout=30) for _ in range(2000 + len(echoes))]
        bursts = [m for m in got if m.startswith("burst ")]
        assert bursts == [f"burst {i}/2000" for i in range(1, 2001)]
        assert [m for m in got if not m.startswith("burst ")] == echoes
        srv.check_clean_exit()
    finally:
        srv.kill()


def test_ping_answered_with_pong(start_server):
    srv = start_server()
    sock, rest = raw_handshake(srv.port)
    with sock:
        reader = FrameReader(sock, rest)
        sock.sendall(encode_frame(0x9, b"are you there"))
        frame = reader.read(10)
        assert frame is not None and frame.opcode == 0xA, frame
        assert frame.payload == b"are you there"
        sock.sendall(encode_frame(0x8, (1000).to_bytes(2, "big")))
        frames = reader.read_until_eof(10)
    assert frames and frames[0].close_code() == 1000


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_shutdown_closes_sessions_with_1001(start_server, signame):
    srv = start_server()
    with py_connect(srv) as ws:
        srv.open_id_for(ws.local_address[1])
        ws.send("before shutdown")
        assert ws.recv(timeout=10) == "before shutdown"
        srv.proc.send_signal(getattr(signal, signame))
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=15)
    # PROTOCOLS.md: shutdown sends close 1001 to every session, then exits 0
    # (the exit status is checked by the fixture).
    assert info.value.rcvd is not None, f"no close frame before the drop: {info.value!r}"
    assert info.value.rcvd.code == 1001
