"""webtalk the way its users worked: a back end creates users and channels
over the admin socket while browsers (headless Chromium) log in with
ID!SALT and receive whispers and shouts; the WSChat and AppWebsocket
listeners of the same daemon answer a browser too."""

import json
import re
import socket
import time

import pytest

from test_chromium import CDP, chromium, wait_got  # noqa: F401  (fixture)


def admin(sock, body: bytes) -> bytes:
    """One admin exchange: 5-digit byte length, body; returns the reply body."""
    sock.sendall(b"%05d" % len(body) + body)
    head = b""
    while len(head) < 5:
        chunk = sock.recv(5 - len(head))
        assert chunk, "admin socket closed"
        head += chunk
    n = int(head)
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "admin socket closed"
        data += chunk
    return data


@pytest.fixture
def full_daemon(start_daemon):
    return start_daemon(
        "--achex", "off", "--http", "off",
        "--wschat", "127.0.0.1:0", "--webtalk", "127.0.0.1:0", "--webtalk-admin", "127.0.0.1:0",
        "--appws", "127.0.0.1:0",
        base=False, expect=("wschat", "webtalk", "webtalk-admin", "appws"),
    )


def open_page(cdp, url, first=None):
    s = cdp.page()
    js = f"window.__got = []; window.ws = new WebSocket({json.dumps(url)});"
    js += "ws.onmessage = function(e){ window.__got.push(e.data); };"
    js += "ws.onclose = function(e){ window.__closed = e.code; };"
    if first is not None:
        js += f"ws.onopen = function(){{ ws.send({json.dumps(first)}); }};"
    cdp.evaluate(s, js)
    cdp.wait_for(s, "ws.readyState === 1")
    return s


def test_backend_drives_browsers_over_the_admin_socket(full_daemon, chromium):
    d = full_daemon
    cdp = chromium(1)  # no host mapping needed here
    host, aport = d.addrs["webtalk-admin"]
    with socket.create_connection((host, aport), timeout=10) as a:
        creds = []
        for _ in range(2):
            r = admin(a, b"[newuser]")
            m = re.fullmatch(rb"\[ok\] (\d+)!(\d{20})", r)
            assert m, r
            creds.append(m.group(0)[5:].decode())
        assert admin(a, b"[newchannel]") == b"[ok] 2"
        for c in creds:
            assert admin(a, b"[join] 2!" + c.split("!")[0].encode()) == b"[ok] user joined"

        url = d.url("webtalk", "/webtalk")
        pages = [open_page(cdp, url, first=c) for c in creds]
        # A whisper to each, then a shout to both; non-ASCII as UTF-8 bytes.
        time.sleep(0.3)
        for i, c in enumerate(creds):
            uid = c.split("!")[0].encode()
            assert admin(a, b"[whisper] " + uid + ("!héllo %d" % i).encode()) == b"[ok] message sent"
        assert admin(a, b'[shout] 2!{"t":"hi"}') == b"[ok] message sent"
        for i, s in enumerate(pages):
            assert wait_got(cdp, s, 2) == [f"héllo {i}", '{"t":"hi"}']

        # A third browser with a wrong salt is refused; the first stays.
        bad = cdp.page()
        uid0 = creds[0].split("!")[0]
        cdp.evaluate(bad, f"window.ws = new WebSocket({json.dumps(url)});"
                          "ws.onclose = function(e){ window.__closed = e.code; };"
                          f"ws.onopen = function(){{ ws.send('{uid0}!00000000000000000000'); }};")
        assert cdp.wait_for(bad, "window.__closed") == 4001
        assert admin(a, b"[whisper] " + uid0.encode() + b"!still here") == b"[ok] message sent"
        assert wait_got(cdp, pages[0], 3)[-1] == "still here"

        # killuser closes that browser with 4003.
        assert admin(a, b"[killuser] " + uid0.encode()) == b"[ok] user killed"
        assert cdp.wait_for(pages[0], "window.__closed") == 4003


def test_wschat_and_appws_answer_a_browser(full_daemon, chromium):
    d = full_daemon
    cdp = chromium(1)
    s = open_page(cdp, d.url("wschat", "/wschat"))
    assert json.loads(wait_got(cdp, s, 1)[0])["type"] == "init"
    cdp.evaluate(s, """ws.send('{"command":"identify","name":"alice"}')""")
    assert json.loads(wait_got(cdp, s, 2)[1]) == {
        "type": "outcome", "success": True, "message": "Identified successfully!", "code": 300,
    }
    a = open_page(cdp, d.url("appws"), first='{"mt":"AppChallenge"}')
    reply = json.loads(wait_got(cdp, a, 1)[0])
    assert reply["mt"] == "AppChallengeResult" and re.fullmatch(r"\d{16}", reply["challenge"])
