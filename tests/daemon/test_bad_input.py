"""Hostile and broken input: the daemon answers per PROTOCOLS.md (§1, §2.5)
and keeps serving everyone else. Random data comes from a seeded generator so
a failure can be replayed."""

import json
import os
import random
import socket

import pytest
from websockets.exceptions import ConnectionClosed

INVALID = '{"error":"invalid message: expected a JSON object"}'
NO_KEY = '{"error":"no routing key in message"}'
BINARY = '{"error":"binary frames are not supported"}'


def bystander(client):
    """A logged-in client that must keep working whatever the others do."""
    w = client()
    w.login("witness")
    return w


def still_served(w, tag):
    assert w.call({"echo": tag}) == '{"echo":"%s","FROM":"witness","sID":%d}' % (tag, w.sid)


def test_non_json_and_non_object_json(client):
    w = bystander(client)
    a = client()
    for text in ["hello", "{", '{"a":}', "[1,2]", "3.14", "true", "null", '"str"', "{'a':1}", "\u00e9\u20ac"]:
        assert a.call(text) == INVALID, text
    # Nested deeper than 128 levels counts as invalid JSON.
    assert a.call("[" * 129 + "]" * 129) == INVALID
    assert a.call('{"a":' * 129 + "1" + "}" * 129) == INVALID
    assert a.call('{"a":' * 127 + "1" + "}" * 127) == NO_KEY
    still_served(w, "json")


def test_binary_frames(client):
    w = bystander(client)
    a = client()
    for data in [b"", b"\x00\xff", b'{"setID":"x"}', os.urandom(1000)]:
        assert a.call(data) == BINARY
    still_served(w, "binary")


def test_one_mebibyte_message_closes_1009(client):
    w = bystander(client)
    for kind in ("text", "binary"):
        a = client()
        a.send("x" * (1 << 20) if kind == "text" else b"\x01" * (1 << 20))
        with pytest.raises(ConnectionClosed) as e:
            a.recv()
        assert e.value.rcvd is not None and e.value.rcvd.code == 1009, kind
    still_served(w, "big")


def test_fragmented_message_over_the_limit_closes_1009(raw, client):
    w = bystander(client)
    r = raw()
    r.recv_text()
    chunk = b"x" * 30000
    r.send_frame(0x1, chunk, fin=False)
    r.send_frame(0x0, chunk, fin=False)
    r.send_frame(0x0, chunk, fin=True)
    assert r.close_code() == 1009
    still_served(w, "frag")


def test_fragmented_message_is_reassembled(raw, client):
    w = bystander(client)
    r = raw()
    r.recv_text()
    parts = [b'{"setID"', b':"fr\xc3', b'\xa9d"}']  # a UTF-8 sequence split across fragments
    r.send_frame(0x1, parts[0], fin=False)
    r.send_frame(0x0, parts[1], fin=False)
    r.send_frame(0x0, parts[2], fin=True)
    assert r.recv_text() == '{"auth":"ok"}'
    w.send({"to": "fréd", "x": 1})
    assert r.recv_text() == '{"to":"fréd","x":1,"FROM":"witness","sID":1}'


def test_invalid_utf8_text_closes_1007(raw, client):
    w = bystander(client)
    r = raw()
    r.recv_text()
    r.send_frame(0x1, b'{"setID":"\xff"}')
    assert r.close_code() == 1007
    still_served(w, "utf8")


def test_protocol_errors_close_1002(raw, client):
    w = bystander(client)
    for frame in [
        dict(opcode=0x1, payload=b"unmasked", mask=False),
        dict(opcode=0x3, payload=b"reserved opcode"),
        dict(opcode=0x0, payload=b"continuation without a start"),
        dict(opcode=0x9, payload=b"p" * 126),
    ]:
        r = raw()
        r.recv_text()
        r.send_frame(**frame)
        assert r.close_code() == 1002, frame
    still_served(w, "1002")


def test_ten_thousand_random_byte_strings(client):
    """10,000 random byte strings as binary frames, and 10,000 random strings
    as text frames (random bytes as text would be invalid UTF-8, which closes
    the connection, tested above). Each gets exactly its one error reply."""
    w = bystander(client)
    rng = random.Random(4)
    a = client()
    n = 10_000
    for i in range(n):
        a.send(rng.randbytes(rng.randrange(0, 200)))
    for i in range(n):
        assert a.recv(timeout=10) == BINARY, i
    # Text from an alphabet that cannot spell any Achex key, so every string
    # is either not a JSON object or an object without a routing key or a command.
    alphabet = list('{}[]":,.-+0123456789 \t\n\\truefalsn') + ["é", "€", "😀", "\u0000"]
    b = client()
    sent = []
    for i in range(n):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 64)))
        sent.append(s)
        b.send(s)
    for i in range(n):
        reply = b.recv(timeout=10)
        assert reply in (INVALID, NO_KEY), (sent[i], reply)
        try:
            is_obj = isinstance(json.loads(sent[i]), dict)
        except (ValueError, RecursionError):
            is_obj = False
        if reply == NO_KEY:
            assert is_obj, sent[i]
    still_served(w, "fuzz")


def test_random_bytes_on_raw_connections(daemon, client, raw):
    """Garbage where a handshake or frames belong: each connection fails on
    its own, the daemon keeps serving."""
    w = bystander(client)
    rng = random.Random(7)
    for i in range(200):
        s = socket.create_connection(daemon.addrs["achex"], timeout=5)
        s.sendall(rng.randbytes(rng.randrange(1, 2000)) + b"\r\n\r\n")
        s.settimeout(5)
        try:
            s.recv(4096)
        except OSError:
            pass
        s.close()
    for i in range(200):
        r = raw()
        r.sock.sendall(rng.randbytes(rng.randrange(1, 300)))
        r.close()
    still_served(w, "raw")
    assert json.loads(w.call({"serverstat": 1}))["serverstat"]["sessions"] == 1


def test_plain_http_and_wrong_version(daemon):
    for req, status in [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 400"),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
            b"HTTP/1.1 426",
        ),
    ]:
        s = socket.create_connection(daemon.addrs["achex"], timeout=5)
        s.sendall(req)
        got = s.recv(4096)
        s.close()
        assert got.startswith(status), got
        if status.endswith(b"426"):
            assert b"sec-websocket-version: 13" in got.lower()


@pytest.mark.parametrize(
    "name", ["名前😀", "é/ü \"quoted\" \\ back", "x" * 1000, "\u202e\u0000nul", "😀" * 1000]
)
def test_unicode_and_long_names(client, name):
    a, b = client(), client()
    assert a.call({"setID": name, "passwd": "p"}) == '{"auth":"ok"}'
    b.login("b")
    b.send({"to": name, "m": 1})
    got = a.recv()
    assert json.loads(got) == {"to": name, "m": 1, "FROM": "b", "sID": b.sid}
    # Non-ASCII and '/' are sent unescaped.
    if not any(ch in name for ch in '"\\\u0000'):
        assert name in got
    a.send({"to": "b"})
    assert json.loads(b.recv())["FROM"] == name
    a.send({"to": name + "?"})
    assert json.loads(a.recv()) == {"error": "no such user: " + name + "?"}


def test_disconnect_mid_message(daemon, raw, client):
    """Clients vanish halfway through a frame header, a payload, and a
    fragmented message; their sessions are cleaned up, others unaffected."""
    w = bystander(client)
    assert w.call({"joinHub": "H"}) == '{"joinHub":"OK"}'
    cases = [
        lambda r: r.sock.sendall(b"\x81"),  # half a header
        lambda r: r.sock.sendall(b"\x81\xfe\x03\xe8" + os.urandom(4) + b"x" * 10),  # 1000 announced, 10 sent
        lambda r: r.send_frame(0x1, b'{"to":"wit', fin=False),  # first fragment only
    ]
    for i, cut in enumerate(cases):
        r = raw()
        r.recv_text()
        r.send_frame(0x1, json.dumps({"setID": f"gone{i}"}).encode())
        assert r.recv_text() == '{"auth":"ok"}'
        r.send_frame(0x1, b'{"joinHub":"H"}')
        assert r.recv_text() == '{"joinHub":"OK"}'
        cut(r)
        r.sock.shutdown(socket.SHUT_RDWR)
        r.close()
        assert w.recv() == '{"leftHub":"H","user":"gone%d","sID":%d}' % (i, w.sid + 1 + i), i
    stat = json.loads(w.call({"serverstat": 1}))["serverstat"]
    assert (stat["sessions"], stat["users"], stat["hubs"]) == (1, 1, 1)
    still_served(w, "mid")


def test_many_clients_at_once(client):
    """200 connections interleaving sends; each gets its own replies in order."""
    w = bystander(client)
    cs = [client() for _ in range(200)]
    for i, c in enumerate(cs):
        c.send({"setID": f"u{i}"})
    for c in cs:
        assert c.recv() == '{"auth":"ok"}'
    for k in range(5):
        for i, c in enumerate(cs):
            c.send({"to": f"u{(i + 1) % 200}", "k": k})
    for k in range(5):
        for i, c in enumerate(cs):
            src = (i - 1) % 200
            assert json.loads(c.recv()) == {"to": f"u{i}", "k": k, "FROM": f"u{src}", "sID": cs[src].sid}
    still_served(w, "many")
