"""The daemon's AppWebsocket listener (PROTOCOLS.md §5.3) and webtalk admin
socket (§4.1–4.3) as a client sees them: real sockets against the real
binary, every wait bounded."""

import hashlib
import json
import random
import re
import socket
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

GUID0 = "0" * 32


# ---- AppWebsocket ---------------------------------------------------------------------------


def digest(app, domain, sip, guid, dn, info, challenge, password):
    """§5.1: SHA-256 of app:domain:sip:guid:dn[:info]:challenge:password."""
    parts = [app, domain, sip, guid, dn, *([info] if info is not None else []), challenge, password]
    return hashlib.sha256(":".join(parts).encode()).hexdigest()


@pytest.fixture
def appws(start_daemon):
    return start_daemon("--appws", "127.0.0.1:0", "--appws-app", "myapp:secret", expect=("achex", "appws", "http"))


def challenge(ws, src=None):
    msg = {"mt": "AppChallenge", **({"src": src} if src else {})}
    ws.send(json.dumps(msg))
    r = json.loads(ws.recv(timeout=5))
    assert r["mt"] == "AppChallengeResult" and re.fullmatch(r"\d{16}", r["challenge"]), r
    assert r.get("src") == src
    return r["challenge"]


def login_frame(app, ch, password, info=None, src=None):
    m = {"mt": "AppLogin", "app": app, "domain": "", "sip": app, "guid": GUID0, "dn": "Admin"}
    info_text = None
    if info is not None:
        # JSON.stringify: compact, members in order, "/" and non-ASCII as they are.
        info_text = json.dumps(info, separators=(",", ":"), ensure_ascii=False)
        m["info"] = info
    m["digest"] = digest(app, "", app, GUID0, "Admin", info_text, ch, password)
    if src:
        m["src"] = src
    return json.dumps(m, ensure_ascii=False)


def test_appws_login_with_a_python_digest_appinfo_and_the_builtin_echo(appws):
    with connect(appws.url("appws"), open_timeout=5) as ws:
        ws.send('{"mt":"GetObject","src":"a1"}')
        assert ws.recv(timeout=5) == '{"mt":"GetObjectResult","error":"not logged in","src":"a1"}'
        ch = challenge(ws, "c1")
        ws.send(login_frame("myapp", ch, "secret", src="l1"))
        assert ws.recv(timeout=5) == '{"mt":"AppLoginResult","ok":true,"src":"l1"}'
        ws.send('{"mt":"AppInfo","src":"s1"}')
        assert ws.recv(timeout=5) == '{"mt":"AppInfoResult","app":"myapp","info":{"hidden":false,"apis":{}},"src":"s1"}'
        # The built-in echo: mt + "Result", member order, number text and src kept.
        ws.send('{"mt":"Hello","src":"x7","n":1E5,"t":"h\u00e9/","o":{"a":[1,null]}}')
        assert ws.recv(timeout=5) == '{"mt":"HelloResult","src":"x7","n":1E5,"t":"h\u00e9/","o":{"a":[1,null]}}'
        ws.send(b"\x00\xffbin")
        assert ws.recv(timeout=5) == b"\x00\xffbin"
        ws.send('{"mt":"KeepAlive"}')
        ws.send('{"mt":"Ping","src":"p"}')
        assert ws.recv(timeout=5) == '{"mt":"PingResult","src":"p"}'
    # With info (8 fields), from another connection.
    with connect(appws.url("appws"), open_timeout=5) as ws:
        ch = challenge(ws)
        ws.send(login_frame("myapp", ch, "secret", info={"cn": "Test Us\u00e9r", "url": "https://x/y"}))
        assert ws.recv(timeout=5) == '{"mt":"AppLoginResult","ok":true}'


def test_appws_three_failures_close_4001_and_the_default_app_is_replaced(appws):
    fail = '{"mt":"AppLoginResult","ok":false,"error":"login failed"}'
    with connect(appws.url("appws"), open_timeout=5) as ws:
        ch = challenge(ws)
        # demo:demo is gone once an app is configured; a wrong password; a right
        # digest for an older challenge.
        ws.send(login_frame("demo", ch, "demo"))
        assert ws.recv(timeout=5) == fail
        ws.send(login_frame("myapp", ch, "wrong"))
        assert ws.recv(timeout=5) == fail
        challenge(ws)
        ws.send(login_frame("myapp", ch, "secret"))
        assert ws.recv(timeout=5) == fail
        with pytest.raises(ConnectionClosed) as e:
            ws.recv(timeout=5)
        assert e.value.rcvd is not None and (e.value.rcvd.code, e.value.rcvd.reason) == (4001, "login failed")
    # Two failures leave the connection open, and a right login still works.
    with connect(appws.url("appws"), open_timeout=5) as ws:
        ch = challenge(ws)
        for _ in range(2):
            ws.send(login_frame("myapp", ch, "nope"))
            assert ws.recv(timeout=5) == fail
        ws.send(login_frame("myapp", ch, "secret"))
        assert ws.recv(timeout=5) == '{"mt":"AppLoginResult","ok":true}'


# ---- webtalk admin ----------------------------------------------------------------------------


def frame(body: bytes) -> bytes:
    return b"%05d" % len(body) + body


class Admin:
    """One admin TCP connection."""

    def __init__(self, addr):
        self.sock = socket.create_connection(addr, timeout=10)
        self.buf = b""

    def send(self, data: bytes):
        self.sock.sendall(data)

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"closed with {self.buf!r} buffered")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def reply(self) -> bytes:
        """The next reply body (its header checked)."""
        head = self._read(5)
        assert head.isdigit(), head
        return self._read(int(head))

    def call(self, body: bytes) -> bytes:
        self.send(frame(body))
        return self.reply()

    def closed(self) -> bool:
        """True once the daemon has closed the connection (nothing more to read)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


@pytest.fixture
def webtalk(start_daemon):
    def start(*extra):
        return start_daemon(
            "--webtalk", "127.0.0.1:0", "--webtalk-admin", "127.0.0.1:0", *extra,
            expect=("achex", "webtalk", "webtalk-admin", "http"),
        )

    return start


def still_serving(d):
    """A new user logs in from a browser and receives a whisper."""
    a = Admin(d.addrs["webtalk-admin"])
    ok = a.call(b"[newuser]")
    assert re.fullmatch(rb"\[ok\] \d+!\d{20}", ok), ok
    cred = ok[5:].decode()
    with connect(d.url("webtalk", "/webtalk"), open_timeout=5) as ws:
        ws.send(cred)
        # No reply to a login: a whisper proves it is bound.
        deadline = time.monotonic() + 5
        uid = cred.split("!")[0].encode()
        while True:
            assert a.call(b"[whisper] " + uid + b"!still here") == b"[ok] message sent"
            try:
                assert ws.recv(timeout=0.5) == "still here"
                break
            except TimeoutError:
                assert time.monotonic() < deadline
    a.close()


@pytest.mark.parametrize(
    "sent, reply",
    [
        (b"abcde", b"[error] Invalid Frame Size: abcde"),
        (b"-0001[x]", b"[error] Invalid Frame Size: -0001"),
        (b"+0012", b"[error] Invalid Frame Size: +0012"),
        (b"00005hello", b"[error] Invalid Frame: [ brace not found"),
        (b"00005[abcd", b"[error] Invalid Frame: ] brace not found"),
        (b"00000", b"[ok] goodbye"),
    ],
)
def test_admin_framing_errors_reply_then_close(webtalk, sent, reply):
    d = webtalk()
    a = Admin(d.addrs["webtalk-admin"])
    a.send(frame(b"[newchannel]") + sent + frame(b"[newchannel]"))
    assert a.reply() == b"[ok] 2"
    assert a.reply() == reply
    # Nothing after the framing error is answered: the connection closes.
    assert a.closed()
    still_serving(d)


def test_admin_headers_split_across_reads_and_99999_then_close(webtalk):
    d = webtalk()
    a = Admin(d.addrs["webtalk-admin"])
    for piece in (b"000", b"15[st", b"ore] k", b"ey!h\xc3\xa9"):
        a.send(piece)
        time.sleep(0.05)
    assert a.reply() == b"[ok] stored key"
    assert a.call(b"[retrieve] key") == "[ok] hé".encode()
    # The largest body there is: 99999 bytes.
    big = b"[store] big!" + b"v" * (99999 - len(b"[store] big!"))
    assert a.call(big) == b"[ok] stored big"
    a.close()
    # A back end announcing 99999 bytes that sends a few and closes: no reply, no harm.
    b = Admin(d.addrs["webtalk-admin"])
    b.send(b"99999[whisper] 1!partial")
    b.close()
    time.sleep(0.2)
    still_serving(d)


def test_admin_secret(webtalk):
    d = webtalk("--webtalk-admin-secret", "s3cret")
    addr = d.addrs["webtalk-admin"]
    for first in (b"[newuser]", b"[auth] wrong", b"[auth] s3cret "):
        a = Admin(addr)
        a.send(frame(first) + frame(b"[newuser]"))
        assert a.reply() == b"[error] Not authenticated"
        assert a.closed()
    # Framing errors and goodbye keep their replies before authentication.
    a = Admin(addr)
    a.send(b"abcde")
    assert a.reply() == b"[error] Invalid Frame Size: abcde" and a.closed()
    a = Admin(addr)
    a.send(b"00000")
    assert a.reply() == b"[ok] goodbye" and a.closed()
    a = Admin(addr)
    assert a.call(b"[auth] s3cret") == b"[ok] authenticated"
    assert a.call(b"[newchannel]") == b"[ok] 2"
    # A later [auth] is checked again: the right secret is acknowledged...
    assert a.call(b"[auth] s3cret") == b"[ok] authenticated"
    assert a.call(b"[newchannel]") == b"[ok] 3"
    # ...and a wrong one ends the connection like a wrong first frame (docs/daemon.md).
    a.send(frame(b"[auth] wrong") + frame(b"[newchannel]"))
    assert a.reply() == b"[error] Not authenticated"
    assert a.closed()


KNOWN = [b"newuser", b"killuser", b"whisper", b"newchannel", b"killchannel", b"shout", b"join", b"leave", b"store",
         b"clear", b"retrieve", b"auth"]


def test_ten_thousand_random_admin_frames(webtalk):
    d = webtalk()
    rng = random.Random(20240611)
    a = Admin(d.addrs["webtalk-admin"])
    alphabet = b"0123456789!![]] abc\xc3\xa9\x00\xff"
    sent = 0
    while sent < 10_000:
        batch = []
        for _ in range(250):
            if rng.random() < 0.7:
                cmd = rng.choice(KNOWN)
            else:
                cmd = bytes(rng.choice(alphabet.replace(b"]", b"")) for _ in range(rng.randrange(0, 8)))
            data = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 24)))
            sep = bytes([rng.choice(b" !x")]) if data or rng.random() < 0.5 else b""
            batch.append((cmd, b"[" + cmd + b"]" + sep + data))
        a.send(b"".join(frame(body) for _, body in batch))
        for cmd, body in batch:
            r = a.reply()
            if cmd in KNOWN:
                assert r.startswith(b"[ok] ") or r.startswith(b"[error] "), (body, r)
                assert not r.startswith(b"[error] Invalid command"), (body, r)
            else:
                assert r == b"[error] Invalid command: " + cmd, (body, r)
        sent += len(batch)
    # Random bytes, unframed, on fresh connections: a reply is a framing error
    # or well-formed, and the connection may close; the daemon carries on.
    for _ in range(50):
        b = Admin(d.addrs["webtalk-admin"])
        b.send(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))))
        b.sock.shutdown(socket.SHUT_WR)
        try:
            while True:
                r = b.reply()
                assert r.startswith(b"[ok] ") or r.startswith(b"[error] "), r
        except EOFError:
            pass
        b.close()
    assert a.call(b"[newchannel]").startswith(b"[ok] ")
    still_serving(d)
