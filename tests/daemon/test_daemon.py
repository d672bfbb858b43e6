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
