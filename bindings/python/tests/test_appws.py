"""wsbroker.AppWebsocketClient and AppService against real peers: each other, a `websockets`
server playing an app service with a fixed challenge, a silent one, a CONNECT proxy, TLS with a CA
made by openssl; the §5.2 crypto vectors."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import queue
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest
from websockets.asyncio.server import serve
from websockets.sync.client import connect

import wsbroker
from peers import ConnectProxy, SilentPeer, client_tls, fail_on_another_thread, server_tls
from wsbroker import (
    AppService,
    AppServiceConfig,
    AppwsClientEventType as CE,
    AppwsServiceEventType as SE,
    AppWebsocketClient,
    AppWebsocketClientConfig,
    Identity,
    Result,
    _callbacks,
)

T = 10.0
CHALLENGE = "0123456789abcdef"
KEY = "d58c77eae0c1c1f37a9f545e207643c926ad9ea4932016a83a4a01029de37760"


def test_crypto_vectors() -> None:
    assert wsbroker.appws_session_key(CHALLENGE, "pwd") == KEY
    assert wsbroker.appws_encrypt(KEY, "seed1", "hello") == "970a852834"
    assert wsbroker.appws_decrypt(KEY, "seed1", "970A852834") == b"hello"
    assert wsbroker.appws_hash(KEY, "seed1", "hello") == (
        "f677f09a186944407a62adc3b8b7dae0a421233bfc63b20a33b7cc9cde95d533"
    )
    # §5.1 vector 1 and the password-login example.
    assert wsbroker.appws_digest("pbxadminapi", "", "", "", "", None, CHALLENGE, "pwd") == (
        "a205299ed2ef2786c311e0be1b14db343f2cadd906a6ae7b564eee34bda5e9a1"
    )
    assert wsbroker.appws_digest("myapp", "", "myapp", "0" * 32, "Admin", None, CHALLENGE, "pwd") == (
        "54ef6250b93b761b5af73332fb9d149322b0aa2967151d2436e9f02cecafe03f"
    )
    with pytest.raises(wsbroker.WsbError) as e:
        wsbroker.appws_decrypt(KEY, "seed1", "abc")
    assert e.value.code == Result.INVALID_ARGUMENT
    with pytest.raises(wsbroker.WsbError):
        wsbroker.appws_hash(KEY, "se\0ed", "x")


def test_queue_mode_login_echo_and_crypto_against_app_service() -> None:
    cfg = AppServiceConfig(apps={"myapp": "pwd"}, echo=True)
    with AppService(cfg) as svc, AppWebsocketClient(f"ws://127.0.0.1:{svc.port}/", "myapp", "pwd") as c:
        c.wait_connected(T)
        assert c.connected
        assert c.send({"mt": "Ping", "src": "s1", "n": 1}) == Result.OK
        ev = c.poll(T)
        assert ev is not None and ev.type == CE.MESSAGE
        assert (ev.mt, ev.src) == ("PingResult", "s1")
        assert ev.message["n"] == 1
        # The session key is shared: what this client encrypts, the service's key decrypts.
        hexed = c.encrypt("seed", "héllo")
        assert len(hexed) == 2 * len("héllo".encode())
        assert c.decrypt("seed", hexed) == "héllo".encode()
        assert len(c.hash("seed", "x")) == 64
        with pytest.raises(wsbroker.WsbError) as e:
            c.send("not json")
        assert e.value.code == Result.INVALID_ARGUMENT
        # The service's LOGIN: the default identity of a password login.
        logins = [ev for ev in svc.events(timeout=0.5) if ev.type == SE.LOGIN]
        assert [(x.app, x.sip, x.dn) for x in logins] == [("myapp", "myapp", "Admin")]
        c.disconnect()
        kinds = [ev.type for ev in c.events(timeout=T)]
        assert kinds[-1] == CE.CLOSED
        assert not c.connected


def test_callback_mode_service_replies_and_sees_close() -> None:
    seen: "queue.Queue[wsbroker.AppServiceEvent]" = queue.Queue()

    def on_service(svc: AppService, ev: wsbroker.AppServiceEvent) -> None:
        seen.put(ev)
        if ev.type == SE.MESSAGE:
            svc.reply(ev.conn, ev.src, {"mt": ev.mt + "Result", "echo": ev.message})
        elif ev.type == SE.BINARY:
            svc.send(ev.conn, bytes(reversed(ev.data)))

    got: "queue.Queue[wsbroker.AppWebsocketClientEvent]" = queue.Queue()
    cfg = AppServiceConfig(apps={"app": "secret"})
    ident = Identity(domain="example.com", sip="alice", dn="Alice", info={"cn": "A/B"})
    with AppService(cfg, on_event=on_service) as svc:
        url = f"ws://127.0.0.1:{svc.port}/"
        client = AppWebsocketClient(url, "app", "secret", AppWebsocketClientConfig(identity=ident),
                                    on_event=lambda c, ev: got.put(ev))
        with client:
            client.wait_connected(T)
            login = seen.get(timeout=T)
            assert login.type == SE.LOGIN
            assert (login.domain, login.sip, login.dn, login.info) == ("example.com", "alice", "Alice", '{"cn":"A/B"}')
            client.send('{"mt":"Q","src":"x","v":[1,2]}')
            ev = got.get(timeout=T)
            while ev.type != CE.MESSAGE:
                ev = got.get(timeout=T)
            assert ev.message == {"mt": "QResult", "echo": {"mt": "Q", "src": "x", "v": [1, 2]}, "src": "x"}
            svc.close_connection(login.conn, 4000, "bye")
            while True:
                ev = got.get(timeout=T)
                if ev.type == CE.CLOSED:
                    break
            assert (ev.close_status, ev.text) == (4000, "bye")
            assert seen.get(timeout=T).type == SE.MESSAGE
            closed = seen.get(timeout=T)
            assert closed.type == SE.CLOSED and closed.conn == login.conn


def test_wrong_password_raises_login_failed() -> None:
    with AppService(AppServiceConfig(apps={"app": "right"})) as svc:
        with AppWebsocketClient(f"ws://127.0.0.1:{svc.port}/", "app", "wrong") as c:
            with pytest.raises(wsbroker.LoginFailed):
                c.wait_connected(T)


def test_connection_refused_is_a_connect_error() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with AppWebsocketClient(f"ws://127.0.0.1:{port}/", "app", "pw") as c:
        with pytest.raises(wsbroker.ConnectError) as e:
            c.wait_connected(T)
        assert e.value.code == Result.CONNECTION_REFUSED


def test_callback_exception_reaches_the_caller_and_userdata_is_released() -> None:
    before = _callbacks.registered_count()

    def boom(svc: AppService, ev: wsbroker.AppServiceEvent) -> None:
        raise RuntimeError("from the service callback")

    svc = AppService(AppServiceConfig(apps={"a": "p"}), on_event=boom)
    with AppWebsocketClient(f"ws://127.0.0.1:{svc.port}/", "a", "p") as c:
        c.wait_connected(T)
    with pytest.raises(RuntimeError, match="from the service callback"):
        svc.close()
    assert svc.closed
    assert _callbacks.registered_count() == before


class FakeService:
    """A `websockets` server playing an app service: fixed challenge, checks the digest, answers
    other messages with mt+"Result", records every message."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.received: List[Dict[str, object]] = []
        self.port = 0
        self._ready = threading.Event()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop: Optional["asyncio.Future[None]"] = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _handler(self, ws) -> None:  # type: ignore[no-untyped-def]
        async for frame in ws:
            msg = json.loads(frame)
            self.received.append(msg)
            mt = msg.get("mt")
            if mt == "AppChallenge":
                await ws.send(json.dumps({"mt": "AppChallengeResult", "challenge": CHALLENGE}))
            elif mt == "AppLogin":
                fields = [msg.get(k, "") for k in ("app", "domain", "sip", "guid", "dn")]
                pre = ":".join([*fields, CHALLENGE, self.password])
                ok = hashlib.sha256(pre.encode()).hexdigest() == msg.get("digest")
                await ws.send(json.dumps({"mt": "AppLoginResult", "ok": ok}))
            else:
                reply: Dict[str, object] = {"mt": f"{mt}Result"}
                if "src" in msg:
                    reply["src"] = msg["src"]
                await ws.send(json.dumps(reply))

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        async with serve(self._handler, "127.0.0.1", 0) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop

    def __enter__(self) -> "FakeService":
        self._thread.start()
        assert self._ready.wait(T), "the Python service did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(T)


def test_password_login_to_websockets_service() -> None:
    with FakeService("pwd") as fake:
        with AppWebsocketClient(f"ws://127.0.0.1:{fake.port}/", "myapp", "pwd") as c:
            c.wait_connected(T)
            assert c.send_text('{"mt":"Hello","src":"7"}') == Result.OK
            ev = c.poll(T)
            assert ev is not None and (ev.mt, ev.src) == ("HelloResult", "7")
            # Both ends derive the same key from the challenge and password.
            assert c.encrypt("seed1", "hello") == "970a852834"
        assert fake.received[0] == {"mt": "AppChallenge"}
        login = fake.received[1]
        assert login["mt"] == "AppLogin" and login["sip"] == "myapp"
        assert login["digest"] == "54ef6250b93b761b5af73332fb9d149322b0aa2967151d2436e9f02cecafe03f"


def test_authenticator_mode_against_websockets_service() -> None:
    with FakeService("hostpw") as fake:
        with AppWebsocketClient(f"ws://127.0.0.1:{fake.port}/", "app") as c:
            ev = c.poll(T)
            assert ev is not None and ev.type == CE.CHALLENGE and ev.text == CHALLENGE
            ident = Identity(domain="d", sip="bob", guid="g", dn="Bob")
            dg = wsbroker.appws_digest("app", "d", "bob", "g", "Bob", None, ev.text, "hostpw")
            c.authenticate(ident, dg, wsbroker.appws_session_key(ev.text, "hostpw"))
            c.wait_connected(T)
            assert c.hash("seed1", "hello") == wsbroker.appws_hash(
                wsbroker.appws_session_key(CHALLENGE, "hostpw"), "seed1", "hello"
            )
        assert fake.received[1]["sip"] == "bob"


# -- login timeout, upgrade headers, TLS, client certificates, proxy ------------------------------


def test_login_timeout_against_a_service_that_never_answers() -> None:
    with SilentPeer() as peer:
        cfg = AppWebsocketClientConfig(login_timeout_ms=300, headers={"X-App-Test": "yes", "Cookie": "a=b"})
        start = time.monotonic()
        with AppWebsocketClient(peer.url(), "myapp", "pw", cfg) as c:
            with pytest.raises(wsbroker.LoginFailed) as e:
                c.wait_connected(T)
            waited = time.monotonic() - start
            # Well within the 10 s default: the setting took effect.
            assert 0.25 <= waited < 5.0, waited
            assert e.value.detail == "login timed out: no AppChallengeResult within 300 ms"
            kinds = [ev.type for ev in c.events(timeout=T)]
            assert kinds[-1] == CE.CLOSED
        assert json.loads(peer.messages.get(timeout=T)) == {"mt": "AppChallenge"}
        headers = peer.headers.get(timeout=T)
        assert (headers["x-app-test"], headers["cookie"]) == ("yes", "a=b")
    with pytest.raises(wsbroker.WsbError) as bad:
        AppWebsocketClient("ws://127.0.0.1:1/", "a", "p", AppWebsocketClientConfig(login_timeout_ms=0))
    assert bad.value.code == Result.INVALID_ARGUMENT
    with pytest.raises(wsbroker.WsbError) as bad:
        AppWebsocketClient("ws://127.0.0.1:1/", "a", "p", AppWebsocketClientConfig(headers=[("Bad Name", "x")]))
    assert bad.value.code == Result.INVALID_ARGUMENT


def test_app_service_over_tls_and_the_clients_trust_settings(pki: Dict[str, Path], tmp_path: Path) -> None:
    cfg = AppServiceConfig(apps={"myapp": "pw"}, echo=True, tls=(pki["cert"], pki["key"]))
    with AppService(cfg) as svc:
        url = f"wss://localhost:{svc.port}/"
        # Only the CA file is trusted, not the system roots.
        trusted = AppWebsocketClientConfig(ca_file=pki["ca"], system_roots=False)
        with AppWebsocketClient(url, "myapp", "pw", trusted) as c:
            c.wait_connected(T)
            c.send({"mt": "Ping", "src": "tls"})
            ev = c.poll(T)
            assert ev is not None and (ev.mt, ev.src) == ("PingResult", "tls")
        # The system roots alone do not know the test CA.
        with AppWebsocketClient(url, "myapp", "pw") as c:
            with pytest.raises(wsbroker.ConnectError) as e:
                c.wait_connected(T)
            assert e.value.code == Result.CERTIFICATE_INVALID
        # A plain `websockets` client over wss with the same CA reaches the service too.
        with connect(url, ssl=client_tls(pki), open_timeout=T) as ws:
            ws.send('{"mt":"AppChallenge"}')
            assert json.loads(ws.recv(timeout=T))["mt"] == "AppChallengeResult"
    # No root at all for a wss:// URL is refused at creation.
    with pytest.raises(wsbroker.WsbError) as e:
        AppWebsocketClient("wss://localhost:1/", "a", "p", AppWebsocketClientConfig(system_roots=False))
    assert e.value.code == Result.INVALID_ARGUMENT
    with pytest.raises(wsbroker.WsbError) as e:
        AppService(AppServiceConfig(tls=(tmp_path / "missing.pem", pki["key"])))
    assert e.value.code == Result.INVALID_ARGUMENT and "missing.pem" in e.value.detail


def test_client_certificate_for_a_service_that_requires_one(pki: Dict[str, Path]) -> None:
    with SilentPeer(tls=server_tls(pki, require_client_cert=True)) as peer:
        base = dict(ca_file=pki["ca"], login_timeout_ms=300)
        # Without a certificate the TLS handshake fails: the connection never opens.
        with AppWebsocketClient(peer.url(host="localhost"), "a", "p", AppWebsocketClientConfig(**base)) as c:
            with pytest.raises(wsbroker.ConnectError):
                c.wait_connected(T)
        # With one, the peer sees it; the login then times out, the peer being silent.
        cert = AppWebsocketClientConfig(client_cert=(pki["client_cert"], pki["client_key"]), **base)
        with AppWebsocketClient(peer.url(host="localhost"), "a", "p", cert) as c:
            with pytest.raises(wsbroker.LoginFailed):
                c.wait_connected(T)
        assert peer.client_cns.get(timeout=T) == "wsbroker test client"
        assert peer.client_cns.empty()


def test_appws_client_through_an_http_connect_proxy() -> None:
    proxy = ConnectProxy()
    try:
        with AppService(AppServiceConfig(apps={"myapp": "pw"}, echo=True)) as svc:
            cfg = AppWebsocketClientConfig(proxy=f"http://user:secret@127.0.0.1:{proxy.port}")
            with AppWebsocketClient(f"ws://127.0.0.1:{svc.port}/", "myapp", "pw", cfg) as c:
                c.wait_connected(T)
                c.send({"mt": "Via"})
                ev = c.poll(T)
                assert ev is not None and ev.mt == "ViaResult"
            line, auth = proxy.requests.get(timeout=T)
            assert line == f"CONNECT 127.0.0.1:{svc.port} HTTP/1.1"
            assert auth == "Basic " + base64.b64encode(b"user:secret").decode()
    finally:
        proxy.close()
    with pytest.raises(wsbroker.WsbError) as e:
        AppWebsocketClient("ws://127.0.0.1:1/", "a", "p", AppWebsocketClientConfig(proxy="socks5://127.0.0.1:1"))
    assert e.value.code == Result.INVALID_ARGUMENT


def test_last_error_of_client_and_service_whichever_thread_failed() -> None:
    with AppService(AppServiceConfig(apps={"myapp": "pw"}, echo=True)) as svc:
        with AppWebsocketClient(f"ws://127.0.0.1:{svc.port}/", "myapp", "pw") as c:
            c.wait_connected(T)
            assert (c.last_error(), svc.last_error()) == ("", "")
            on_client = fail_on_another_thread(lambda: c.decrypt("seed", "not hex"))
            on_service = fail_on_another_thread(lambda: svc.close_connection(424242002))
            assert (on_client.code, on_service.code) == (Result.INVALID_ARGUMENT, Result.NOT_FOUND)
            assert c.last_error() == on_client.detail != ""
            assert svc.last_error() == on_service.detail and "424242002" in on_service.detail
            assert wsbroker.last_error() not in (on_client.detail, on_service.detail)
