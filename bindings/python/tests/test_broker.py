"""wsbroker.Broker with real `websockets` clients: an in-process Achex service, events, auth, the
webtalk operations reaching a browser, message limits and wss:// listeners."""

from __future__ import annotations

import contextlib
import json
import queue
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import wsbroker
from peers import client_tls, fail_on_another_thread
from wsbroker import Broker, BrokerConfig, BrokerEventType as BE, Listener, Result, Target, _callbacks

T = 10.0


@contextlib.contextmanager
def achex(port: int) -> Iterator[Any]:
    """A `websockets` Achex client, past the server's {"SID":n} greeting."""
    with connect(f"ws://127.0.0.1:{port}/") as ws:
        assert "SID" in json.loads(ws.recv(timeout=T))
        yield ws


def call(ws: Any, msg: Any) -> Any:
    ws.send(json.dumps(msg))
    return json.loads(ws.recv(timeout=T))


def test_in_process_achex_service_answers_a_websockets_client() -> None:
    events: "queue.Queue[wsbroker.BrokerEvent]" = queue.Queue()

    def on_event(broker: Broker, ev: wsbroker.BrokerEvent) -> None:
        events.put(ev)
        if ev.type == BE.SERVICE_MESSAGE and ev.sid != ev.service:
            broker.send_to_session(ev.service, ev.sid, {"got": ev.message})

    before = _callbacks.registered_count()
    with Broker(on_event=on_event) as broker:
        port = broker.port(Listener.ACHEX)
        assert port != 0 and broker.port(Listener.WSCHAT) == 0
        svc = broker.register_service("svc")
        with pytest.raises(wsbroker.WsbError) as e:
            broker.register_service("svc")
        assert e.value.code == Result.INVALID_STATE
        broker.set_events(True)
        with achex(port) as alice:
            assert call(alice, {"setID": "alice", "passwd": "a"}) == {"auth": "ok"}
            login = events.get(timeout=T)
            assert (login.type, login.name, login.is_service) == (BE.LOGIN, "alice", False)
            reply = call(alice, {"to": "svc", "x": 1})
            assert reply["got"]["x"] == 1 and reply["FROM"] == "svc" and reply["sID"] == svc
            msg = events.get(timeout=T)
            assert msg.type == BE.SERVICE_MESSAGE and msg.service == svc and msg.name == "alice"
            # Service to name and group; the group needs alice as a member.
            broker.send(svc, Target.NAME, "alice", '{"hi":1}')
            assert json.loads(alice.recv(timeout=T))["hi"] == 1
            alice.send(json.dumps({"cmd": "register_broadcast", "bid": "room"}))
            assert call(alice, {"echo": True})["echo"] is True  # the registration is done
            broker.send(svc, Target.GROUP, "room", {"all": True})
            assert json.loads(alice.recv(timeout=T)) == {"all": True, "FROM": "svc", "sID": svc}
            # Hubs: the service joins, alice's toH reaches it, JOIN events for both.
            broker.join(svc, "T1", hub=True)
            assert call(alice, {"joinHub": "T1"}) == {"joinHub": "OK"}
            assert call(alice, {"toH": "T1", "m": 2})["got"]["m"] == 2
            kinds = []
            while len(kinds) < 3:
                ev = events.get(timeout=T)
                kinds.append((ev.type, ev.sid, ev.place, ev.is_hub))
            assert kinds == [(BE.JOIN, 2, "room", False), (BE.JOIN, svc, "T1", True), (BE.JOIN, 2, "T1", True)]
            broker.leave(svc, "T1", hub=True)
            assert json.loads(alice.recv(timeout=T)) == {"leftHub": "T1", "user": "svc", "sID": svc}
            with pytest.raises(wsbroker.WsbError) as e:
                broker.send(svc, Target.NAME, "nobody", "{}")
            assert e.value.code == Result.NOT_FOUND
            with pytest.raises(wsbroker.WsbError) as e:
                broker.send(svc, Target.NAME, "alice", "[1]")
            assert e.value.code == Result.INVALID_ARGUMENT
            st = broker.stats()
            assert st.sessions == 1 and st.users >= 2 and st.messages_in >= 2
        logout = events.get(timeout=T)
        while logout.type != BE.LOGOUT:
            logout = events.get(timeout=T)
        assert logout.name == "alice"
        broker.unregister_service(svc)
    assert _callbacks.registered_count() == before


def test_credentials_and_auth_callback() -> None:
    with Broker(BrokerConfig(credentials={"bob": "pw"})) as broker:
        with achex(broker.port()) as ws:
            assert call(ws, {"setID": "eve", "passwd": "x"})["auth"] == "failed"
            assert call(ws, {"setID": "bob", "passwd": "pw"}) == {"auth": "ok"}

    asked: List[str] = []

    def only_bob(name: str, password: str) -> Any:
        asked.append(name)
        if name == "boom":
            raise ValueError("auth blew up")
        return True if name == "bob" else "only bob"

    before = _callbacks.registered_count()
    broker = Broker(BrokerConfig(auth=only_bob))
    with achex(broker.port()) as ws:
        assert call(ws, {"setID": "eve", "passwd": "x"}) == {"auth": "failed", "error": "only bob"}
        assert call(ws, {"auth": "bob", "passwd": "pw"})["auth"] == "OK"
        assert call(ws, {"setID": "boom"})["auth"] == "failed"
    assert asked == ["eve", "bob", "boom"]
    with pytest.raises(ValueError, match="auth blew up"):
        broker.close()
    assert _callbacks.registered_count() == before


def test_webtalk_operations_reach_a_browser() -> None:
    cfg = BrokerConfig(listeners={Listener.ACHEX: "off", Listener.WEBTALK: "127.0.0.1:0"})
    with Broker(cfg) as broker:
        assert broker.port(Listener.ACHEX) == 0
        with pytest.raises(wsbroker.WsbError):
            broker.register_service("x")  # Achex is off
        user, salt = broker.webtalk_create_user()
        assert user == 1 and len(salt) == 20
        with pytest.raises(wsbroker.WsbError) as e:
            broker.webtalk_whisper(99, "x")
        assert e.value.code == Result.NOT_FOUND
        with pytest.raises(wsbroker.WsbError) as e:
            broker.webtalk_kill_channel(1)
        assert e.value.code == Result.INVALID_ARGUMENT
        broker.webtalk_whisper(user, "one")  # queued while offline
        chan = broker.webtalk_create_channel()
        assert chan == 2
        broker.webtalk_join(chan, user)
        broker.webtalk_shout(chan, "two")
        with connect(f"ws://127.0.0.1:{broker.port(Listener.WEBTALK)}/webtalk") as ws:
            ws.send(f"{user}!{salt}")
            assert ws.recv(timeout=T) == "one"
            assert ws.recv(timeout=T) == "two"
            broker.webtalk_shout(chan, b"\xff\x00")  # not UTF-8: binary
            assert ws.recv(timeout=T) == b"\xff\x00"
            broker.webtalk_leave(chan, user)
            broker.webtalk_shout(chan, "not for you")
            broker.webtalk_whisper(user, "three")
            assert ws.recv(timeout=T) == "three"
            broker.webtalk_store("k", "v1")
            assert broker.webtalk_retrieve("k") == b"v1"
            broker.webtalk_store("big", b"x" * 1000)
            assert broker.webtalk_retrieve("big") == b"x" * 1000
            broker.webtalk_clear("k")
            assert broker.webtalk_retrieve("k") is None
            broker.webtalk_kill_user(user)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=T)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4003


def test_bad_listener_and_admin_without_webtalk() -> None:
    with pytest.raises(wsbroker.WsbError) as e:
        Broker(BrokerConfig(listeners={Listener.WEBTALK_ADMIN: "127.0.0.1:0"}))
    assert e.value.code == Result.INVALID_ARGUMENT
    with pytest.raises(wsbroker.WsbError):
        Broker(BrokerConfig(listeners={Listener.ACHEX: "not an address"}))


def test_appws_listener_serves_the_appwebsocket_client() -> None:
    cfg = BrokerConfig(listeners={Listener.APPWS: "127.0.0.1:0"}, appws_apps={"myapp": "pw"})
    with Broker(cfg) as broker:
        url = f"ws://127.0.0.1:{broker.port(Listener.APPWS)}/"
        with wsbroker.AppWebsocketClient(url, "myapp", "pw") as c:
            c.wait_connected(T)
            c.send({"mt": "Echo", "src": "1"})
            ev = c.poll(T)
            assert ev is not None and (ev.mt, ev.src) == ("EchoResult", "1")


def test_max_message_size_per_listener_closes_with_1009() -> None:
    with Broker(BrokerConfig(max_message_size={Listener.ACHEX: 1000})) as broker:
        with achex(broker.port(Listener.ACHEX)) as ws:
            # Just under the limit is served as usual...
            login = {"setID": "alice", "passwd": "a", "pad": ""}
            login["pad"] = "x" * (1000 - len(json.dumps(login)))
            assert len(json.dumps(login)) == 1000
            assert call(ws, login) == {"auth": "ok"}
            # ...one byte over it (far below the 64 KiB default) ends the connection with 1009.
            ws.send(json.dumps({"to": "alice", "pad": "y" * 1000}))
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=T)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    for listener, size in ((Listener.ACHEX, 0), (Listener.WEBTALK_ADMIN, 1000)):
        with pytest.raises(wsbroker.WsbError) as e:
            Broker(BrokerConfig(max_message_size={listener: size}))
        assert e.value.code == Result.INVALID_ARGUMENT, listener


def test_listener_tls_serves_wss(pki: Dict[str, Path], tmp_path: Path) -> None:
    with Broker(BrokerConfig(tls={Listener.ACHEX: (pki["cert"], pki["key"])})) as broker:
        port = broker.port(Listener.ACHEX)
        with connect(f"wss://localhost:{port}/", ssl=client_tls(pki), open_timeout=T) as ws:
            assert "SID" in json.loads(ws.recv(timeout=T))
            assert call(ws, {"setID": "alice", "passwd": "a"}) == {"auth": "ok"}
        # The listener speaks TLS only: a plain ws:// client does not get through.
        with pytest.raises(Exception):
            with connect(f"ws://127.0.0.1:{port}/", open_timeout=T):
                pass
    with pytest.raises(wsbroker.WsbError) as e:
        Broker(BrokerConfig(tls={Listener.ACHEX: (tmp_path / "missing.pem", pki["key"])}))
    assert e.value.code == Result.INVALID_ARGUMENT and "missing.pem" in e.value.detail
    with pytest.raises(wsbroker.WsbError) as e:
        Broker(BrokerConfig(tls={Listener.WEBTALK_ADMIN: (pki["cert"], pki["key"])}))
    assert e.value.code == Result.INVALID_ARGUMENT


def test_last_error_is_the_brokers_whichever_thread_failed() -> None:
    with Broker() as broker:
        assert broker.last_error() == ""
        e = fail_on_another_thread(lambda: broker.webtalk_kill_user(7))
        assert e.code == Result.INVALID_STATE and "webtalk" in e.detail
        assert broker.last_error() == e.detail
        assert wsbroker.last_error() != e.detail
