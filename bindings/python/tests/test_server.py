"""The server through the Python binding, driven by a real WebSocket client (websockets)."""

from __future__ import annotations

import gc
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import List

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import wsbroker
from wsbroker import EventType, Result, Server, ServerConfig, WsbError
from wsbroker import _callbacks

from conftest import Recorder
from peers import fail_on_another_thread


def url(server: Server, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20, (1 << 20) + 7]


@pytest.mark.parametrize("size", SIZES)
def test_echo_binary_sizes(echo_server: Server, size: int) -> None:
    payload = bytes((i * 7 + 3) & 0xFF for i in range(size))
    with connect(url(echo_server), max_size=None, open_timeout=5) as ws:
        ws.send(payload)
        got = ws.recv(timeout=10)
    assert isinstance(got, bytes)
    assert got == payload


@pytest.mark.parametrize("text", ["", "hello", "héllo wörld ✓ 🚀", "x" * 70000])
def test_echo_text(echo_server: Server, recorder: Recorder, text: str) -> None:
    with connect(url(echo_server), max_size=None, open_timeout=5) as ws:
        ws.send(text)
        got = ws.recv(timeout=10)
    assert isinstance(got, str)
    assert got == text
    ev = recorder.next(EventType.MESSAGE)
    assert ev.is_text and ev.message == text


def test_open_event_fields(recorder: Recorder) -> None:
    cfg = ServerConfig(subprotocols=["chat.v2", "chat"], path="/ws")
    with Server(cfg, on_event=recorder) as server:
        with connect(url(server, "/ws?room=1"), subprotocols=["chat"], open_timeout=5) as ws:
            assert ws.subprotocol == "chat"
            ev = recorder.next(EventType.OPEN)
            assert ev.path == "/ws?room=1"
            assert ev.protocol == "chat"
            assert ev.remote_addr.startswith("127.0.0.1:")
            assert server.is_valid(ev.conn)
        closed = recorder.next(EventType.CLOSE)
        assert closed.conn == ev.conn
        assert not server.is_valid(ev.conn)


def test_client_close_code_and_reason(echo_server: Server, recorder: Recorder) -> None:
    with connect(url(echo_server), open_timeout=5) as ws:
        ws.close(code=4001, reason="bye now")
    ev = recorder.next(EventType.CLOSE)
    assert ev.close_status == 4001
    assert ev.text == "bye now"
    assert not ev.closed_by_host


def test_server_close_code_and_reason(echo_server: Server, recorder: Recorder) -> None:
    with connect(url(echo_server), open_timeout=5) as ws:
        ws.send("/close 4003 go away")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 4003
    assert info.value.rcvd.reason == "go away"
    ev = recorder.next(EventType.CLOSE)
    assert ev.closed_by_host
    assert ev.close_status == 4003


def test_bytes_like_and_str_sends(recorder: Recorder) -> None:
    recorder.echo = False
    with Server(on_event=recorder) as server:
        with connect(url(server), open_timeout=5) as ws:
            conn = recorder.next(EventType.OPEN).conn
            assert server.send(conn, "text ✓") == Result.OK
            assert server.send(conn, b"\x00\xff") == Result.OK
            assert server.send(conn, bytearray(b"ba")) == Result.OK
            assert server.send(conn, memoryview(b"xmvx")[1:3]) == Result.OK
            assert server.send(conn, b"as text", text=True) == Result.OK
            got = [ws.recv(timeout=5) for _ in range(5)]
            assert got == ["text ✓", b"\x00\xff", b"ba", b"mv", "as text"]
            assert server.ping(conn, "p1") == Result.OK
            assert recorder.next(EventType.PONG).data == b"p1"
            ws.ping(b"from client")
            assert recorder.next(EventType.PING).data == b"from client"


def test_queue_mode_echo() -> None:
    errors: List[BaseException] = []
    seen: List[wsbroker.Event] = []
    with Server() as server:
        port = server.port

        def client() -> None:
            try:
                with connect(f"ws://127.0.0.1:{port}/q?x=1", max_size=None, open_timeout=5) as ws:
                    for msg in ["one", b"\x01\x02", "three"]:
                        ws.send(msg)
                        assert ws.recv(timeout=5) == msg
                    ws.close(code=1000, reason="done")
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                errors.append(e)

        t = threading.Thread(target=client)
        t.start()
        for ev in server.events(timeout=5):
            seen.append(ev)
            if ev.type == EventType.MESSAGE:
                server.send(ev.conn, ev.message)
            if ev.type == EventType.CLOSE:
                break
        t.join(10)
    assert not errors, errors
    kinds = [e.type for e in seen]
    assert kinds == [EventType.OPEN, EventType.MESSAGE, EventType.MESSAGE, EventType.MESSAGE, EventType.CLOSE]
    assert seen[0].path == "/q?x=1"
    assert [e.message for e in seen[1:4]] == ["one", b"\x01\x02", "three"]
    assert seen[4].close_status == 1000 and seen[4].text == "done"


def test_queue_mode_timeout_interrupt_and_close_end_iteration() -> None:
    with Server() as server:
        t0 = time.monotonic()
        assert list(server.events(timeout=0.2)) == []
        assert 0.15 <= time.monotonic() - t0 < 3
        assert server.poll(timeout=0) is None

        threading.Timer(0.2, server.interrupt).start()
        t0 = time.monotonic()
        assert list(server.events()) == []
        assert time.monotonic() - t0 < 3

    other = Server()
    closer = threading.Timer(0.2, other.close)
    closer.start()
    t0 = time.monotonic()
    assert list(other.events()) == []
    assert time.monotonic() - t0 < 5
    closer.join(5)
    assert other.closed


def test_callback_exception_reaches_caller() -> None:
    class Boom(Exception):
        pass

    def handler(server: Server, ev: wsbroker.Event) -> None:
        if ev.type == EventType.MESSAGE:
            if ev.text == "boom":
                raise Boom("raised in the callback")
            server.send(ev.conn, ev.data, text=ev.is_text)

    with Server(on_event=handler) as server:
        with connect(url(server), open_timeout=5) as ws:
            ws.send("boom")
            ws.send("still alive")
            # The server keeps serving after a callback failure.
            assert ws.recv(timeout=5) == "still alive"
        with pytest.raises(Boom, match="raised in the callback"):
            server.stats()
        # Raised once, then cleared.
        server.stats()


def test_callback_exception_raised_by_close() -> None:
    opened = threading.Event()

    def handler(server: Server, ev: wsbroker.Event) -> None:
        if ev.type == EventType.OPEN:
            opened.set()
            raise KeyError("from open")

    server = Server(on_event=handler)
    with connect(url(server), open_timeout=5) as ws:
        ws.close()
    assert opened.wait(5)
    with pytest.raises(KeyError, match="from open"):
        server.close()
    assert server.closed


def test_several_callback_exceptions_first_raised_rest_noted() -> None:
    def handler(server: Server, ev: wsbroker.Event) -> None:
        if ev.type == EventType.MESSAGE:
            raise ValueError(ev.text)

    server = Server(on_event=handler)
    with connect(url(server), open_timeout=5) as ws:
        for i in range(3):
            ws.send(f"m{i}")
        ws.close()
    time.sleep(0.3)
    with pytest.raises(ValueError, match="m0") as info:
        server.close()
    notes = getattr(info.value, "__notes__", None)
    if notes is not None:  # Python 3.11+
        assert any("m2" in n for n in notes)


def test_userdata_released_exactly_when_server_freed() -> None:
    gc.collect()
    before = _callbacks.registered_count()
    server = Server(on_event=lambda s, e: None)
    assert _callbacks.registered_count() == before + 1
    server.close()
    assert _callbacks.registered_count() == before
    server.close()  # idempotent


def test_failed_creation_releases_userdata() -> None:
    gc.collect()
    before = _callbacks.registered_count()
    with Server() as first:
        cfg = ServerConfig(bind=f"127.0.0.1:{first.port}")
        with pytest.raises(WsbError) as info:
            Server(cfg, on_event=lambda s, e: None)
    assert info.value.code == Result.ADDR_IN_USE
    assert info.value.detail
    assert _callbacks.registered_count() == before


def test_unclosed_server_is_freed_by_gc() -> None:
    gc.collect()
    before = _callbacks.registered_count()
    server = Server(on_event=lambda s, e: None)
    port = server.port
    with pytest.warns(ResourceWarning):
        del server
        gc.collect()
    assert _callbacks.registered_count() == before
    # The port is free again: the server really was stopped.
    with Server(ServerConfig(bind=f"127.0.0.1:{port}")):
        pass


def test_errors_map_to_results(echo_server: Server, recorder: Recorder) -> None:
    with pytest.raises(WsbError) as info:
        echo_server.send(987654321, b"x")
    assert info.value.code == Result.NOT_FOUND
    assert "987654321" in info.value.detail
    with pytest.raises(WsbError) as info:
        echo_server.poll(0)
    assert info.value.code == Result.INVALID_STATE
    with pytest.raises(WsbError) as info:
        Server(ServerConfig(bind="not an address"))
    assert info.value.code == Result.INVALID_ARGUMENT
    with pytest.raises(WsbError) as info:
        Server(ServerConfig(threads=0))
    assert info.value.code == Result.INVALID_ARGUMENT
    with connect(url(echo_server), open_timeout=5):
        conn = recorder.next(EventType.OPEN).conn
        with pytest.raises(WsbError) as info:
            echo_server.send(conn, b"\xff\xfe", text=True)
        assert info.value.code == Result.INVALID_UTF8
        with pytest.raises(WsbError) as info:
            echo_server.ping(conn, b"x" * 126)
        assert info.value.code == Result.TOO_BIG
        echo_server.close_connection(conn, 1000, "")
        assert not echo_server.is_valid(conn)
        with pytest.raises(WsbError) as info:
            echo_server.send(conn, "late")
        # CLOSED while the handshake runs; NOT_FOUND once the client has already answered it.
        assert info.value.code in (Result.CLOSED, Result.NOT_FOUND)


def test_last_error_is_the_servers_whichever_thread_failed(echo_server: Server) -> None:
    assert echo_server.last_error() == ""
    e = fail_on_another_thread(lambda: echo_server.send(424242001, b"x"))
    assert e.code == Result.NOT_FOUND and "424242001" in e.detail
    # The failure was another thread's: the server's last error is it, this thread's is not.
    assert echo_server.last_error() == e.detail
    assert wsbroker.last_error() != e.detail


def test_close_from_own_callback_is_refused() -> None:
    results: List[BaseException] = []

    def handler(server: Server, ev: wsbroker.Event) -> None:
        if ev.type == EventType.OPEN:
            try:
                server.close()
            except WsbError as e:
                results.append(e)

    with Server(on_event=handler) as server:
        with connect(url(server), open_timeout=5) as ws:
            ws.send("x")
        deadline = time.monotonic() + 5
        while not results and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not server.closed
    assert len(results) == 1
    assert isinstance(results[0], WsbError) and results[0].code == Result.REENTRANT


def test_backpressure_is_a_return_value_and_drain_follows(recorder: Recorder) -> None:
    recorder.echo = False
    cfg = ServerConfig(outbound_limits=(1024, 64 << 20))
    with Server(cfg, on_event=recorder) as server:
        with connect(url(server), max_size=None, open_timeout=5) as ws:
            conn = recorder.next(EventType.OPEN).conn
            big = b"b" * (256 * 1024)
            results = [server.send(conn, big) for _ in range(8)]
            assert Result.BACKPRESSURE in results
            assert all(r in (Result.OK, Result.BACKPRESSURE) for r in results)
            for _ in range(8):
                assert ws.recv(timeout=10) == big
            recorder.next(EventType.DRAIN)


def test_stats_count_traffic(echo_server: Server) -> None:
    with connect(url(echo_server), open_timeout=5) as ws:
        ws.send("abc")
        assert ws.recv(timeout=5) == "abc"
    st = echo_server.stats()
    assert st.connections_total == 1
    assert st.messages_in >= 1 and st.bytes_in >= 3
    assert st.messages_out >= 1


def test_many_threads_send_concurrently(recorder: Recorder) -> None:
    recorder.echo = False
    with Server(ServerConfig(threads=2), on_event=recorder) as server:
        with connect(url(server), open_timeout=5) as ws:
            conn = recorder.next(EventType.OPEN).conn

            def burst(tag: int) -> None:
                for i in range(50):
                    server.send(conn, f"{tag}:{i}")

            threads = [threading.Thread(target=burst, args=(t,)) for t in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            got = [ws.recv(timeout=5) for _ in range(200)]
    for tag in range(4):
        mine = [g for g in got if g.startswith(f"{tag}:")]
        assert mine == [f"{tag}:{i}" for i in range(50)]


def self_signed(d: Path) -> "tuple[Path, Path]":
    """A certificate for localhost and its key, made by openssl."""
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def test_tls_serves_wss_and_bad_files_raise(tmp_path: Path, recorder: Recorder) -> None:
    cert, key = self_signed(tmp_path)
    ctx = ssl.create_default_context(cafile=str(cert))
    with Server(ServerConfig(tls=(cert, key)), on_event=recorder) as server:
        with connect(f"wss://localhost:{server.port}/", ssl=ctx, open_timeout=5) as ws:
            ws.send("over tls")
            assert ws.recv(timeout=5) == "over tls"
        assert recorder.next(EventType.OPEN).path == "/"
    with pytest.raises(WsbError) as info:
        Server(ServerConfig(tls=(tmp_path / "missing.pem", key)))
    assert info.value.code == Result.INVALID_ARGUMENT
    assert "missing.pem" in info.value.detail
    with pytest.raises(WsbError) as info:
        Server(ServerConfig(tls=(key, key)))
    assert "no certificate" in info.value.detail
