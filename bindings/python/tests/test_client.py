"""wsbroker.Client against real peers: a `websockets` server (ws:// and wss:// with a CA made by
openssl, see peers.py), a CONNECT proxy, and a closed port."""

from __future__ import annotations

import base64
import gc
import queue
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

import wsbroker
from peers import ConnectProxy, LoopServer, fail_on_another_thread, server_tls
from wsbroker import ClientConfig, ClientEventType, Reconnect, Result, _callbacks

T = 10.0  # seconds: every wait in these tests is bounded by it


class Peer(LoopServer):
    """A `websockets` server on its own event-loop thread.

    Each text message is a command or echoed: "/close CODE REASON" closes, "/burst N" sends N
    numbered messages at once, "/headers" answers with the request's X-Test header.
    """

    def __init__(self, tls: Optional[ssl.SSLContext] = None, port: int = 0) -> None:
        self.closes: "queue.Queue[Tuple[Optional[int], str]]" = queue.Queue()
        self.paths: "queue.Queue[str]" = queue.Queue()
        super().__init__(tls, port)

    def _options(self) -> Dict[str, Any]:
        return {"max_size": None, "subprotocols": ["chat.v2", "chat"], "select_subprotocol": self._select}

    @staticmethod
    def _select(conn: ServerConnection, offered: List[str]) -> Optional[str]:
        return next((p for p in ("chat.v2", "chat") if p in offered), None)

    async def _handler(self, ws: ServerConnection) -> None:
        self.paths.put(ws.request.path if ws.request else "")
        try:
            async for msg in ws:
                if isinstance(msg, str) and msg.startswith("/close "):
                    _, code, reason = msg.split(" ", 2)
                    await ws.close(int(code), reason)
                elif isinstance(msg, str) and msg.startswith("/burst "):
                    for i in range(int(msg.split()[1])):
                        await ws.send(f"m{i}")
                elif msg == "/headers":
                    await ws.send(ws.request.headers.get("X-Test", "") if ws.request else "")
                else:
                    await ws.send(msg)
        except ConnectionClosed:
            pass
        rcvd = ws.protocol.close_rcvd
        self.closes.put((rcvd.code if rcvd else None, rcvd.reason if rcvd else ""))


@pytest.fixture
def peer() -> Iterator[Peer]:
    p = Peer()
    yield p
    p.stop()


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Events:
    """A callback-mode handler that records every event."""

    def __init__(self) -> None:
        self.q: "queue.Queue[wsbroker.ClientEvent]" = queue.Queue()

    def __call__(self, client: wsbroker.Client, ev: wsbroker.ClientEvent) -> None:
        self.q.put(ev)

    def next(self, kind: ClientEventType, timeout: float = T) -> wsbroker.ClientEvent:
        """The next event of `kind` (others before it are dropped)."""
        end = time.monotonic() + timeout
        while True:
            ev = self.q.get(timeout=max(end - time.monotonic(), 0.001))
            if ev.type == kind:
                return ev


def next_of(client: wsbroker.Client, kind: ClientEventType, timeout: float = T) -> wsbroker.ClientEvent:
    """Queue mode: the next event of `kind`, failing on a timeout."""
    end = time.monotonic() + timeout
    while True:
        ev = client.poll(max(end - time.monotonic(), 0.0))
        assert ev is not None, f"no {kind.name} event within {timeout} s"
        if ev.type == kind:
            return ev


# -- plain ws:// ----------------------------------------------------------------------------------


def test_queue_mode_echo_text_binary_and_subprotocol(peer: Peer) -> None:
    cfg = ClientConfig(subprotocols=["chat"], headers={"X-Test": "hello header"}, ping_interval_ms=0)
    with wsbroker.Client(peer.url("/room?x=1"), cfg) as c:
        assert not c.connected
        with pytest.raises(wsbroker.WsbError) as e:
            c.send("too early")
        assert e.value.code == Result.NOT_CONNECTED
        assert c.wait_connected(T) == "chat"
        assert c.connected
        assert peer.paths.get(timeout=T) == "/room?x=1"
        assert c.send("héllo ✓") == Result.OK
        ev = next_of(c, ClientEventType.MESSAGE)
        assert ev.is_text and ev.message == "héllo ✓"
        assert c.send(b"\x00\x01\xff") == Result.OK
        ev = next_of(c, ClientEventType.MESSAGE)
        assert not ev.is_text and ev.message == b"\x00\x01\xff"
        assert c.send(bytearray(b"as text"), text=True) == Result.OK
        assert next_of(c, ClientEventType.MESSAGE).message == "as text"
        c.send("/headers")
        assert next_of(c, ClientEventType.MESSAGE).text == "hello header"
        assert c.ping("p1") == Result.OK
        assert next_of(c, ClientEventType.PONG).data == b"p1"
        with pytest.raises(wsbroker.WsbError) as e:
            c.ping(b"x" * 126)
        assert e.value.code == Result.TOO_BIG
        with pytest.raises(wsbroker.WsbError) as e:
            c.send(b"\xff\xfe", text=True)
        assert e.value.code == Result.INVALID_UTF8
        c.disconnect(1000, "done")
        closed = next_of(c, ClientEventType.CLOSED)
        assert closed.closed_by_host and closed.close_status == 1000
        # Nothing can follow the final CLOSED: events() ends at once instead of waiting.
        assert list(c.events()) == []
    assert peer.closes.get(timeout=T) == (1000, "done")


def test_callback_mode_echo_4_mib(peer: Peer) -> None:
    rec = Events()
    big = bytes(range(256)) * (4 * 1024 * 1024 // 256)
    with wsbroker.Client(peer.url(), on_event=rec) as c:
        assert c.wait_connected(T) == ""
        assert rec.next(ClientEventType.CONNECTED).protocol == ""
        assert c.send(big) in (Result.OK, Result.BACKPRESSURE)
        ev = rec.next(ClientEventType.MESSAGE)
        assert not ev.is_text and ev.data == big
        text = "ü" * (2 * 1024 * 1024)  # 4 MiB of UTF-8
        c.send(text)
        assert rec.next(ClientEventType.MESSAGE).text == text


def test_server_close_code_and_reason(peer: Peer) -> None:
    with wsbroker.Client(peer.url()) as c:
        c.wait_connected(T)
        c.send("/close 4001 bye now")
        evs = list(c.events(timeout=T))
        assert [e.type for e in evs] == [ClientEventType.CLOSED]
        assert evs[0].close_status == 4001 and evs[0].text == "bye now" and not evs[0].closed_by_host
        assert not c.connected
        with pytest.raises(wsbroker.WsbError) as e:
            c.send("late")
        assert e.value.code == Result.NOT_CONNECTED
        with pytest.raises(wsbroker.WsbError) as e:
            c.disconnect()
        assert e.value.code == Result.NOT_CONNECTED


def test_client_close_code_reaches_the_server(peer: Peer) -> None:
    rec = Events()
    with wsbroker.Client(peer.url(), on_event=rec) as c:
        c.wait_connected(T)
        c.disconnect(4002, "client says bye")
        ev = rec.next(ClientEventType.CLOSED)
        assert ev.closed_by_host and ev.close_status == 4002
        with pytest.raises(wsbroker.WsbError) as e:
            c.wait_connected(T)
        assert e.value.code == Result.NOT_CONNECTED
    assert peer.closes.get(timeout=T) == (4002, "client says bye")


def test_events_end_after_disconnect_even_with_reconnection_on(peer: Peer) -> None:
    # disconnect() stops reconnection, so its CLOSED is the last event: events() must end there
    # rather than wait for a timeout.
    cfg = ClientConfig(reconnect=Reconnect(initial_ms=50, max_ms=100))
    with wsbroker.Client(peer.url(), cfg) as c:
        c.wait_connected(T)
        c.disconnect(4003, "done")
        start = time.monotonic()
        evs = list(c.events(timeout=T))
        assert time.monotonic() - start < T / 2
        assert evs[-1].type == ClientEventType.CLOSED and evs[-1].closed_by_host
        assert ClientEventType.RECONNECTING not in [e.type for e in evs]
    assert peer.closes.get(timeout=T) == (4003, "done")


def test_free_closes_with_1000(peer: Peer) -> None:
    c = wsbroker.Client(peer.url())
    c.wait_connected(T)
    c.close()
    c.close()  # idempotent
    assert peer.closes.get(timeout=T)[0] == 1000
    with pytest.raises(wsbroker.WsbError) as e:
        c.send("x")
    assert e.value.code == Result.SHUT_DOWN


def test_manual_flow_control_queue_mode(peer: Peer) -> None:
    with wsbroker.Client(peer.url(), ClientConfig(manual_complete=True)) as c:
        c.wait_connected(T)
        c.send("/burst 3")
        assert next_of(c, ClientEventType.MESSAGE).text == "m0"
        # The next message is held (the socket is not even read) until message_complete().
        assert c.poll(0.4) is None
        c.message_complete()
        assert next_of(c, ClientEventType.MESSAGE).text == "m1"
        assert c.poll(0.3) is None
        c.message_complete()
        assert next_of(c, ClientEventType.MESSAGE).text == "m2"


def test_manual_flow_control_callback_mode(peer: Peer) -> None:
    rec = Events()
    with wsbroker.Client(peer.url(), ClientConfig(manual_complete=True), on_event=rec) as c:
        c.wait_connected(T)
        c.send("/burst 2")
        assert rec.next(ClientEventType.MESSAGE).text == "m0"
        with pytest.raises(queue.Empty):
            rec.next(ClientEventType.MESSAGE, timeout=0.4)
        c.message_complete()  # from another thread than the callback's
        assert rec.next(ClientEventType.MESSAGE).text == "m1"


def test_automatic_flow_control_delivers_everything(peer: Peer) -> None:
    with wsbroker.Client(peer.url()) as c:
        c.wait_connected(T)
        c.send("/burst 50")
        got = [next_of(c, ClientEventType.MESSAGE).text for _ in range(50)]
        assert got == [f"m{i}" for i in range(50)]


def test_send_results(peer: Peer) -> None:
    with wsbroker.Client(peer.url(), ClientConfig(send_results=True)) as c:
        c.wait_connected(T)
        for i in range(3):
            c.send(f"s{i}")
        kinds = [e.type for e in c.events(timeout=1.0)]
        assert kinds.count(ClientEventType.SENT) == 3
        assert kinds.count(ClientEventType.MESSAGE) == 3


def test_refused_port_gives_connection_refused() -> None:
    url = f"ws://127.0.0.1:{closed_port()}/"
    with wsbroker.Client(url) as c:
        evs = list(c.events(timeout=T))
        assert [e.type for e in evs] == [ClientEventType.ERROR]
        assert evs[0].error == Result.CONNECTION_REFUSED
        assert evs[0].text
        err = evs[0].exception
        assert isinstance(err, wsbroker.ConnectError) and err.code == Result.CONNECTION_REFUSED
    with wsbroker.Client(url) as c:
        with pytest.raises(wsbroker.ConnectError) as e:
            c.wait_connected(T)
        assert e.value.code == Result.CONNECTION_REFUSED
    rec = Events()
    with wsbroker.Client(url, on_event=rec) as c:
        with pytest.raises(wsbroker.ConnectError) as e:
            c.wait_connected(T)
        assert e.value.code == Result.CONNECTION_REFUSED
        assert rec.next(ClientEventType.ERROR).error == Result.CONNECTION_REFUSED


def test_gave_up_is_final_for_wait_connected() -> None:
    url = f"ws://127.0.0.1:{closed_port()}/"
    cfg = ClientConfig(reconnect=Reconnect(initial_ms=50, max_ms=100, max_attempts=1))
    # Queue mode: once events() has consumed GAVE_UP, nothing can come, so waiting must not block.
    with wsbroker.Client(url, cfg) as c:
        assert [e.type for e in c.events(timeout=T)][-1] == ClientEventType.GAVE_UP
        start = time.monotonic()
        with pytest.raises(wsbroker.WsbError) as e:
            c.wait_connected(T)
        assert time.monotonic() - start < 1.0
        assert e.value.code == Result.NOT_CONNECTED and "gave up after 1 attempts" in e.value.detail
    # Callback mode: the same, after the handler has seen GAVE_UP.
    rec = Events()
    with wsbroker.Client(url, cfg, on_event=rec) as c:
        assert rec.next(ClientEventType.GAVE_UP).attempt == 1
        start = time.monotonic()
        with pytest.raises(wsbroker.WsbError) as e:
            c.wait_connected(T)
        assert time.monotonic() - start < 1.0
        assert e.value.code == Result.NOT_CONNECTED and "gave up" in e.value.detail


def test_last_error_is_the_clients_whichever_thread_failed(peer: Peer) -> None:
    with wsbroker.Client(peer.url()) as c:
        assert c.last_error() == ""
        c.wait_connected(T)
        e = fail_on_another_thread(lambda: c.ping(b"x" * 200))
        assert e.code == Result.TOO_BIG and e.detail
        # The failure was another thread's: this thread's last error is not it, the client's is.
        assert wsbroker.last_error() != e.detail
        assert c.last_error() == e.detail
    with pytest.raises(wsbroker.WsbError) as closed:
        c.last_error()
    assert closed.value.code == Result.SHUT_DOWN


def test_reconnect_reports_attempts_then_connects() -> None:
    port = closed_port()
    cfg = ClientConfig(reconnect=Reconnect(initial_ms=50, max_ms=100, max_attempts=2))
    with wsbroker.Client(f"ws://127.0.0.1:{port}/", cfg) as c:
        start = time.monotonic()
        kinds = [(e.type, e.attempt) for e in c.events(timeout=2.0)]
        assert time.monotonic() - start < 1.5
    assert kinds == [
        (ClientEventType.ERROR, 0),
        (ClientEventType.RECONNECTING, 1),
        (ClientEventType.ERROR, 0),
        (ClientEventType.RECONNECTING, 2),
        (ClientEventType.ERROR, 0),
        (ClientEventType.GAVE_UP, 2),
    ]
    # GAVE_UP is final: events() ended on it, well before its 2 s idle timeout.
    # With a server appearing later, a reconnection succeeds; when it goes away, a new attempt starts.
    cfg = ClientConfig(reconnect=Reconnect(initial_ms=100, max_ms=200))
    with wsbroker.Client(f"ws://127.0.0.1:{port}/", cfg) as c:
        assert next_of(c, ClientEventType.RECONNECTING).attempt == 1
        late = Peer(port=port)
        try:
            next_of(c, ClientEventType.CONNECTED)
            c.send("again")
            assert next_of(c, ClientEventType.MESSAGE).text == "again"
        finally:
            late.stop()
        assert next_of(c, ClientEventType.CLOSED).close_status == 1001  # "going away"
        assert next_of(c, ClientEventType.RECONNECTING).attempt == 1
        with pytest.raises(wsbroker.WsbError) as e:
            c.disconnect()  # not connected, but it still stops the reconnection
        assert e.value.code == Result.NOT_CONNECTED
        assert [ev.type for ev in c.events(timeout=0.6)] == []


def test_interrupt_and_timeout_end_events(peer: Peer) -> None:
    with wsbroker.Client(peer.url()) as c:
        c.wait_connected(T)
        start = time.monotonic()
        assert list(c.events(timeout=0.2)) == []
        assert time.monotonic() - start >= 0.15
        threading.Timer(0.2, c.interrupt).start()
        start = time.monotonic()
        assert list(c.events()) == []
        assert time.monotonic() - start < 5
        assert c.wait_connected(0.1) == ""  # already connected: at once
    other = wsbroker.Client(peer.url())
    closer = threading.Timer(0.2, other.close)
    closer.start()
    start = time.monotonic()
    list(other.events())
    assert time.monotonic() - start < 5
    closer.join(T)
    assert other.closed


def test_callback_exception_reaches_the_caller(peer: Peer) -> None:
    class Boom(Exception):
        pass

    def on_event(c: wsbroker.Client, ev: wsbroker.ClientEvent) -> None:
        if ev.type == ClientEventType.MESSAGE:
            if ev.text == "boom":
                raise Boom("raised in on_event")
            c.send("reply:" + ev.text)  # calling back into the client from its callback

    c = wsbroker.Client(peer.url(), on_event=on_event)
    try:
        c.wait_connected(T)
        c.send("boom")
        end = time.monotonic() + T
        with pytest.raises(Boom, match="raised in on_event"):
            while time.monotonic() < end:
                c.connected  # any call re-raises it
                time.sleep(0.01)
        assert c.connected  # raised once, then cleared; the client keeps running
        c.send("boom")
        time.sleep(0.3)
    finally:
        with pytest.raises(Boom):
            c.close()
    assert c.closed


def test_close_from_callback_is_refused(peer: Peer) -> None:
    seen: "queue.Queue[BaseException]" = queue.Queue()

    def on_event(c: wsbroker.Client, ev: wsbroker.ClientEvent) -> None:
        if ev.type == ClientEventType.CONNECTED:
            try:
                c.close()
            except wsbroker.WsbError as e:
                seen.put(e)

    with wsbroker.Client(peer.url(), on_event=on_event) as c:
        e = seen.get(timeout=T)
        assert isinstance(e, wsbroker.WsbError) and e.code == Result.REENTRANT
        assert c.connected


def test_userdata_released_and_bad_arguments(peer: Peer, tmp_path: Path) -> None:
    gc.collect()
    before = _callbacks.registered_count()
    c = wsbroker.Client(peer.url(), on_event=lambda c, e: None)
    assert _callbacks.registered_count() == before + 1
    c.close()
    assert _callbacks.registered_count() == before
    for url in ("http://127.0.0.1/", "ws://", "not a url"):
        with pytest.raises(wsbroker.WsbError) as e:
            wsbroker.Client(url, on_event=lambda c, e: None)
        assert e.value.code == Result.INVALID_ARGUMENT, url
    assert _callbacks.registered_count() == before  # released when creation failed
    with pytest.raises(wsbroker.WsbError) as e:
        wsbroker.Client(f"wss://127.0.0.1:{peer.port}/", ClientConfig(ca_file=tmp_path / "missing.pem"))
    assert e.value.code == Result.INVALID_ARGUMENT and e.value.detail
    with pytest.raises(wsbroker.WsbError) as e:
        wsbroker.Client(peer.url(), ClientConfig(headers=[("Bad Name", "x")]))
    assert e.value.code == Result.INVALID_ARGUMENT
    with pytest.raises(wsbroker.WsbError) as e:
        wsbroker.Client(peer.url(), ClientConfig(connect_timeout_ms=0))
    assert e.value.code == Result.INVALID_ARGUMENT
    with wsbroker.Client(peer.url(), on_event=lambda c, e: None) as cb:
        with pytest.raises(wsbroker.WsbError) as e:
            cb.poll(0)
        assert e.value.code == Result.INVALID_STATE


def test_unclosed_client_warns_and_is_freed(peer: Peer) -> None:
    c = wsbroker.Client(peer.url())
    c.wait_connected(T)
    with pytest.warns(ResourceWarning):
        del c
        gc.collect()
    assert peer.closes.get(timeout=T)[0] == 1000


# -- proxy ----------------------------------------------------------------------------------------


def test_http_connect_proxy_with_credentials(peer: Peer) -> None:
    proxy = ConnectProxy()
    try:
        cfg = ClientConfig(proxy=f"http://user:secret@127.0.0.1:{proxy.port}")
        with wsbroker.Client(peer.url("/via-proxy"), cfg) as c:
            c.wait_connected(T)
            c.send("through the tunnel")
            assert next_of(c, ClientEventType.MESSAGE).text == "through the tunnel"
        line, auth = proxy.requests.get(timeout=T)
        assert line == f"CONNECT 127.0.0.1:{peer.port} HTTP/1.1"
        assert auth == "Basic " + base64.b64encode(b"user:secret").decode()
        assert peer.paths.get(timeout=T) == "/via-proxy"
    finally:
        proxy.close()


def test_proxy_refusing_gives_proxy_failed(peer: Peer) -> None:
    cfg = ClientConfig(proxy=f"http://127.0.0.1:{closed_port()}")
    with wsbroker.Client(peer.url(), cfg) as c:
        with pytest.raises(wsbroker.ConnectError) as e:
            c.wait_connected(T)
        assert e.value.code in (Result.PROXY_FAILED, Result.CONNECTION_REFUSED)


# -- wss:// with a CA generated here --------------------------------------------------------------


@pytest.fixture
def tls_peer(pki: Dict[str, Path]) -> Iterator[Peer]:
    p = Peer(tls=server_tls(pki))
    yield p
    p.stop()


def test_wss_with_ca_file(tls_peer: Peer, pki: Dict[str, Path]) -> None:
    rec = Events()
    cfg = ClientConfig(ca_file=pki["ca"], subprotocols=["chat.v2"])
    with wsbroker.Client(tls_peer.url("/secure"), cfg, on_event=rec) as c:
        assert c.wait_connected(T) == "chat.v2"
        payload = bytes(range(256)) * 4096  # 1 MiB through TLS
        c.send(payload)
        assert rec.next(ClientEventType.MESSAGE).data == payload
        c.disconnect(1000, "tls done")
        assert rec.next(ClientEventType.CLOSED).close_status == 1000
    assert tls_peer.closes.get(timeout=T) == (1000, "tls done")


def test_wss_untrusted_certificate_is_refused(tls_peer: Peer) -> None:
    with wsbroker.Client(tls_peer.url(), ClientConfig(system_roots=True)) as c:
        with pytest.raises(wsbroker.ConnectError) as e:
            c.wait_connected(T)
        assert e.value.code == Result.CERTIFICATE_INVALID
        assert e.value.detail


def test_wss_insecure_accepts_any_certificate(tls_peer: Peer) -> None:
    with wsbroker.Client(tls_peer.url(), ClientConfig(insecure=True)) as c:
        c.wait_connected(T)
        c.send("unchecked")
        assert next_of(c, ClientEventType.MESSAGE).text == "unchecked"


def test_wss_to_a_plain_server_fails(peer: Peer, pki: Dict[str, Path]) -> None:
    with wsbroker.Client(f"wss://127.0.0.1:{peer.port}/", ClientConfig(ca_file=pki["ca"])) as c:
        with pytest.raises(wsbroker.ConnectError) as e:
            c.wait_connected(T)
        assert e.value.code in (Result.TLS_FAILED, Result.HANDSHAKE_FAILED)
