"""The daemon as a process (PROTOCOLS.md §1): start-up lines, flags and
config file, status endpoints, graceful shutdown."""

import json
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.headers, r.read().decode()


# ---- process and flags ------------------------------------------------------------


def test_startup_lines_name_the_real_ports(daemon):
    assert len(daemon.lines) == 2
    assert re.fullmatch(r"achex listening on 127\.0\.0\.1:\d+", daemon.lines[0])
    assert re.fullmatch(r"http listening on 127\.0\.0\.1:\d+", daemon.lines[1])
    assert all(port != 0 for _, port in daemon.addrs.values())


def test_help_version_and_usage_errors(wsbroker_bin):
    out = subprocess.run([wsbroker_bin, "--help"], capture_output=True, timeout=10, text=True)
    assert out.returncode == 0
    for flag in [
        "--achex", "--wschat", "--webtalk", "--webtalk-admin", "--appws", "--http", "--webtalk-admin-secret",
        "--achex-service", "--achex-quiet", "--appws-app", "--log", "--config",
    ]:
        assert flag + " " in out.stdout, flag
    out = subprocess.run([wsbroker_bin, "--version"], capture_output=True, timeout=10, text=True)
    assert out.returncode == 0 and re.fullmatch(r"wsbroker \d+\.\d+\.\d+\n", out.stdout)
    for bad in (["--achex", "nowhere"], ["--frobnicate"], ["--log", "loud"], ["--config", "/nonexistent.toml"]):
        out = subprocess.run([wsbroker_bin, *bad], capture_output=True, timeout=10, text=True)
        assert out.returncode == 2 and out.stdout == "" and "wsbroker:" in out.stderr, bad


def test_busy_port_exits_1(wsbroker_bin):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    out = subprocess.run(
        [wsbroker_bin, "--achex", f"127.0.0.1:{port}", "--http", "off", "--wschat", "off", "--webtalk", "off",
         "--webtalk-admin", "off", "--appws", "off"],
        capture_output=True, timeout=20, text=True,
    )
    s.close()
    assert out.returncode == 1 and out.stdout == ""
    assert "ERROR achex: cannot listen on" in out.stderr


def test_config_file_and_flags_override_it(start_daemon, client, tmp_path):
    cfg = tmp_path / "wsbroker.toml"
    cfg.write_text(
        'achex = "127.0.0.1:1"\nhttp = "off"\nwschat = "off"\nwebtalk = "off"\nwebtalk-admin = "off"\n'
        'appws = "off"\nachex-service = ["svc:pw"]\nachex-quiet = true\nlog = "debug"\n'
    )
    # The file asks for port 1 (privileged); the flag wins. http stays off from the file.
    d = start_daemon("--config", str(cfg), "--achex", "127.0.0.1:0", base=False, expect=("achex",))
    time.sleep(0.2)
    assert d.lines == ["achex listening on %s:%d" % d.addrs["achex"]]
    a = client(d)
    assert a.call('{"serviceID":"svc","passwd":"pw"}') == '{"auth":"ok"}'
    a.send("not json")  # quiet: no error
    a.nothing(0.3)
    assert "DEBUG" in d.log()


def test_webtalk_off_alone_turns_its_admin_socket_off(start_daemon):
    # Only webtalk is turned off; webtalk-admin keeps its default address.
    d = start_daemon(
        "--achex", "127.0.0.1:0", "--http", "127.0.0.1:0", "--wschat", "off", "--appws", "off", "--webtalk", "off",
        base=False,
    )
    time.sleep(0.3)
    assert [ln.partition(" ")[0] for ln in d.lines] == ["achex", "http"]
    assert re.search(r"^\S+ INFO webtalk-admin is off because webtalk is off$", d.log(), re.M), d.log()
    assert d.terminate() == 0


def test_webtalk_admin_asked_for_without_webtalk_is_refused_before_anything_binds(wsbroker_bin):
    out = subprocess.run(
        [wsbroker_bin, "--achex", "127.0.0.1:0", "--http", "off", "--wschat", "off", "--appws", "off",
         "--webtalk", "off", "--webtalk-admin", "127.0.0.1:0"],
        capture_output=True, timeout=20, text=True,
    )
    assert out.returncode == 2 and out.stdout == "", out
    assert "webtalk-admin 127.0.0.1:0 needs the webtalk listener, which is off" in out.stderr


def _closed_with(ws, code):
    with pytest.raises(ConnectionClosed) as e:
        while True:
            ws.recv(timeout=5)
    assert e.value.rcvd is not None and e.value.rcvd.code == code, e.value


def test_max_message_applies_to_every_websocket_listener(start_daemon):
    from websockets.sync.client import connect

    d = start_daemon(
        "--max-message", "1000", "--wschat", "127.0.0.1:0", "--webtalk", "127.0.0.1:0", "--appws", "127.0.0.1:0",
        expect=("achex", "wschat", "webtalk", "appws", "http"),
    )

    def sized(prefix, n, suffix='"}'):
        m = prefix + "x" * (n - len(prefix) - len(suffix)) + suffix
        assert len(m.encode()) == n
        return m

    # Each listener handles a message of exactly 1000 bytes, and closes with 1009 on 1001.
    for n in (1000, 1001):
        with connect(d.url("achex"), open_timeout=5, max_size=None) as ws:
            ws.recv(timeout=5)
            ws.send('{"setID":"a"}')
            assert ws.recv(timeout=5) == '{"auth":"ok"}'
            ws.send(sized('{"echo":1,"p":"', n))
            if n == 1000:
                assert ws.recv(timeout=5).startswith('{"echo":1,"p":"xx')
            else:
                _closed_with(ws, 1009)
        with connect(d.url("wschat"), open_timeout=5, max_size=None) as ws:
            ws.recv(timeout=5)
            ws.send(sized('{"command":"nope","p":"', n))
            if n == 1000:
                assert json.loads(ws.recv(timeout=5))["code"] == 10
            else:
                _closed_with(ws, 1009)
        with connect(d.url("appws"), open_timeout=5, max_size=None) as ws:
            ws.send(sized('{"mt":"AppChallenge","p":"', n))
            if n == 1000:
                assert json.loads(ws.recv(timeout=5))["mt"] == "AppChallengeResult"
            else:
                _closed_with(ws, 1009)
        with connect(d.url("webtalk"), open_timeout=5, max_size=None) as ws:
            # Read by the dialect (a failed login) below the limit, refused by size above it.
            ws.send(sized("1!", n, ""))
            _closed_with(ws, 4001 if n == 1000 else 1009)


def test_achex_users_put_the_listener_in_table_mode(start_daemon, client, tmp_path):
    d = start_daemon("--achex-user", "alice:pw:1", "--achex-user", "bob:")
    a = client(d)
    failed = '{"auth":"failed","error":"invalid credentials"}'
    assert a.call({"setID": "alice", "passwd": "pw"}) == failed
    assert a.call({"setID": "mallory", "passwd": "pw:1"}) == failed
    assert a.call({"auth": "alice"}) == failed
    assert a.call({"setID": "alice", "passwd": "pw:1"}) == '{"auth":"ok"}'
    b = client(d)
    # Table mode: a second session of the same name logs in with the password too.
    assert b.call({"auth": "alice", "passwd": "pw:1"}) == '{"auth":"OK","SID":%d}' % b.sid
    assert b.call({"setID": "bob"}) == '{"auth":"ok"}'
    # The same from the TOML file.
    cfg = tmp_path / "users.toml"
    cfg.write_text('achex-user = ["carol:c"]\n')
    d2 = start_daemon("--config", str(cfg))
    c = client(d2)
    assert c.call({"setID": "alice", "passwd": "pw:1"}) == failed
    assert c.call({"setID": "carol", "passwd": "c"}) == '{"auth":"ok"}'


# ---- logging -------------------------------------------------------------------------------


def _some_traffic(d):
    from conftest import Client

    c = Client(d.url())
    c.login("x")
    assert c.call({"echo": 1}).startswith('{"echo":1')
    c.close()


def test_log_levels_filter_stderr(start_daemon):
    d = start_daemon()
    _some_traffic(d)
    assert d.terminate() == 0
    assert " INFO " in d.log()  # the default shows info lines (start-up, shutdown)

    d = start_daemon("--log", "off")
    _some_traffic(d)
    assert d.terminate() == 0
    assert d.log() == ""

    d = start_daemon("--log", "error")
    _some_traffic(d)
    assert d.terminate() == 0
    assert d.log() == ""


def test_log_error_shows_errors_only(wsbroker_bin):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    busy = s.getsockname()[1]
    base = ["--http", "off", "--wschat", "off", "--webtalk", "off", "--appws", "off", "--achex", f"127.0.0.1:{busy}"]
    try:
        out = subprocess.run([wsbroker_bin, *base, "--log", "error"], capture_output=True, timeout=20, text=True)
        assert out.returncode == 1
        lines = out.stderr.splitlines()
        assert lines and all(" ERROR " in ln for ln in lines), lines
        assert not any(" INFO " in ln or " DEBUG " in ln or " WARN " in ln for ln in lines)
        out = subprocess.run([wsbroker_bin, *base, "--log", "off"], capture_output=True, timeout=20, text=True)
        assert out.returncode == 1 and out.stderr == ""
    finally:
        s.close()


# ---- status endpoints ---------------------------------------------------------------------


def test_stats_match_the_broker(start_daemon, client):
    d = start_daemon("--achex-service", "svc:p")
    a, b, b2, s, anon = (client(d) for _ in range(5))
    a.login("alice")
    b.login("bob")
    b2.login("bob")
    assert s.call('{"serviceID":"svc","passwd":"p"}') == '{"auth":"ok"}'
    a.send({"cmd": "register_broadcast", "bid": "room42"})
    b.send({"cmd": "register_broadcast", "bid": "room42"})
    b.sync()
    assert a.call({"joinHub": "T1"}) == '{"joinHub":"OK"}'
    stat = json.loads(anon.call({"serverstat": 1}))["serverstat"]
    status, headers, body = get(d.http("/stats"))
    assert status == 200 and headers["Content-Type"] == "application/json"
    st = json.loads(body)
    assert st["http"] == "%s:%d" % d.addrs["http"]
    (l,) = st["listeners"]
    assert l["name"] == "achex" and l["address"] == "%s:%d" % d.addrs["achex"]
    for k in ("sessions", "users", "groups", "hubs"):
        assert l[k] == stat[k], k
    assert (l["sessions"], l["users"], l["groups"], l["hubs"]) == (5, 3, 1, 1)
    assert l["connections_open"] == 5 and l["connections_total"] == 5
    assert l["names"] == [
        {"name": "alice", "role": "user", "sessions": 1},
        {"name": "bob", "role": "user", "sessions": 2},
        {"name": "svc", "role": "service", "sessions": 1},
    ]
    assert l["group_list"] == [{"name": "room42", "members": 2}]
    assert l["hub_list"] == [{"name": "T1", "members": 1}]
    assert l["messages_in"] >= 8 and l["messages_out"] >= 10


def test_rates_follow_traffic(daemon, client):
    a = client()
    a.login("a")
    deadline = time.monotonic() + 6
    seen = 0.0
    while time.monotonic() < deadline and seen == 0.0:
        for i in range(50):
            a.send({"echo": i})
        for i in range(50):
            a.recv()
        seen = json.loads(get(daemon.http("/stats"))[2])["listeners"][0]["rates"]["messages_in_per_s"]
        time.sleep(0.2)
    assert seen > 0
    # Quiet again: the rate falls back to 0 within a couple of samples.
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline and seen > 0:
        time.sleep(0.5)
        seen = json.loads(get(daemon.http("/stats"))[2])["listeners"][0]["rates"]["messages_in_per_s"]
    assert seen == 0


def test_metrics_prometheus_text(daemon, client):
    a = client()
    a.login("alice")
    assert a.call({"joinHub": "h"}) == '{"joinHub":"OK"}'
    status, headers, body = get(daemon.http("/metrics"))
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    lines = body.splitlines()
    families = {}
    for ln in lines:
        m = re.fullmatch(r"# (HELP|TYPE) (\w+) (.+)", ln)
        if m:
            families.setdefault(m.group(2), {})[m.group(1)] = m.group(3)
            continue
        m = re.fullmatch(r'(\w+)(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? (-?\d+(\.\d+)?)', ln)
        assert m, ln
        assert m.group(1) in families, f"sample before its HELP/TYPE: {ln}"
    for name, f in families.items():
        assert set(f) == {"HELP", "TYPE"} and f["TYPE"] in ("gauge", "counter"), name
        if f["TYPE"] == "counter":
            assert name.endswith("_total"), name
    assert 'wsbroker_connections_open{listener="achex"} 1' in lines
    assert 'wsbroker_users{listener="achex"} 1' in lines
    assert 'wsbroker_hubs{listener="achex"} 1' in lines
    assert any(ln.startswith('wsbroker_messages_received_total{listener="achex"} ') for ln in lines)


def test_http_errors(daemon):
    for path in ("/nope", "/stats/x", "/../etc/passwd"):
        with pytest.raises(urllib.error.HTTPError) as e:
            get(daemon.http(path))
        assert e.value.code == 404
    req = urllib.request.Request(daemon.http("/stats"), method="POST", data=b"x")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 405
    s = socket.create_connection(daemon.addrs["http"], timeout=5)
    s.sendall(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 431")
    s.close()
    # A client that connects and says nothing does not block the others.
    idle = socket.create_connection(daemon.addrs["http"], timeout=5)
    assert get(daemon.http("/stats"))[0] == 200
    idle.close()
    status, headers, body = get(daemon.http("/"))
    assert status == 200 and headers["Content-Type"].startswith("text/html") and "fetch(\"/stats\"" in body


# ---- shutdown -----------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_closes_every_client_with_1001_and_exits_0(daemon, client, raw, sig):
    a, b, c = client(), client(), client()
    a.login("a")
    assert b.call({"joinHub": "h"}) == '{"error":"not authenticated"}'
    c.login("c")
    assert c.call({"joinHub": "h"}) == '{"joinHub":"OK"}'
    r = raw()
    r.recv_text()
    t0 = time.monotonic()
    assert daemon.terminate(sig) == 0
    assert time.monotonic() - t0 < 10
    for x in (a, b, c):
        with pytest.raises(ConnectionClosed) as e:
            while True:
                x.recv(timeout=5)
        assert e.value.rcvd is not None and e.value.rcvd.code == 1001
    # The raw client never answered the close frame; it still got 1001.
    assert r.close_code() == 1001
    assert "closing every client with 1001" in daemon.log()
