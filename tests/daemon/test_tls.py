"""--tls-cert / --tls-key: every WebSocket listener serves wss:// (a CA and a
certificate made with openssl for the test), the start-up lines stay as they
are, the webtalk admin socket and the status server stay plain, and files
that cannot serve are usage errors naming the file."""

import json
import re
import socket
import ssl
import subprocess
import time
import urllib.request

import pytest
from websockets.sync.client import connect

WS_LISTENERS = ("achex", "wschat", "webtalk", "appws")


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, and a certificate for localhost/127.0.0.1 it signed (with its key)."""
    d = tmp_path_factory.mktemp("tls")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=wsbroker daemon test CA", cwd=d)  # fmt: skip
    openssl("req", "-new", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=localhost", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "srv.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)  # fmt: skip
    # A second key, which does not belong to srv.pem.
    openssl("genpkey", "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", "other.key", cwd=d)
    return d


def test_every_websocket_listener_serves_wss(start_daemon, pki):
    names = ("achex", "wschat", "webtalk", "webtalk-admin", "appws", "http")  # the start-up order
    args = [a for n in names for a in (f"--{n}", "127.0.0.1:0")]
    d = start_daemon(*args, "--tls-cert", str(pki / "srv.pem"), "--tls-key", str(pki / "srv.key"),
                     base=False, expect=names)  # fmt: skip
    # The start-up lines are exactly those without TLS.
    time.sleep(0.2)
    assert [line.split(" ")[0] for line in d.lines] == list(names)
    for line in d.lines:
        assert re.fullmatch(r"[a-z-]+ listening on 127\.0\.0\.1:\d+", line), line

    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    for name in WS_LISTENERS:
        host, port = d.addrs[name]
        with connect(f"wss://localhost:{port}/", ssl=ctx, open_timeout=5, close_timeout=2) as ws:
            if name == "achex":
                assert "SID" in json.loads(ws.recv(timeout=5))
            if name == "appws":
                ws.send('{"mt":"AppChallenge"}')
                assert json.loads(ws.recv(timeout=5))["mt"] == "AppChallengeResult"
        # Plain ws:// does not get through a TLS listener.
        with pytest.raises(Exception):
            with connect(f"ws://{host}:{port}/", open_timeout=3):
                pass

    # The status server and the webtalk admin socket stay plain.
    with urllib.request.urlopen(d.http("/stats"), timeout=5) as r:
        stats = json.loads(r.read())
    assert {entry["name"] for entry in stats["listeners"]} >= set(WS_LISTENERS)
    achex = next(e for e in stats["listeners"] if e["name"] == "achex")
    assert achex["connections_total"] >= 1
    with socket.create_connection(d.addrs["webtalk-admin"], timeout=5) as s:
        s.sendall(b"00000")
        s.settimeout(5)
        assert s.recv(4096) == b"00012[ok] goodbye"
    assert d.terminate() == 0


@pytest.mark.parametrize(
    "cert, key, words",
    [
        ("missing.pem", "srv.key", "missing.pem"),
        ("srv.key", "srv.key", "no certificate found in"),
        ("srv.pem", "srv.pem", "no private key found in"),
        ("srv.pem", "other.key", "does not belong to the certificate"),
        ("srv.pem", None, "tls-key"),
    ],
)
def test_bad_tls_files_are_usage_errors(wsbroker_bin, pki, cert, key, words):
    args = ["--achex", "127.0.0.1:0", "--http", "off", "--tls-cert", str(pki / cert)]
    if key:
        args += ["--tls-key", str(pki / key)]
    out = subprocess.run([wsbroker_bin, *args], capture_output=True, timeout=20, text=True)
    assert out.returncode == 2 and out.stdout == "", out
    assert words in out.stderr, out.stderr


def test_help_lists_the_tls_flags(wsbroker_bin):
    out = subprocess.run([wsbroker_bin, "--help"], capture_output=True, timeout=10, text=True)
    assert out.returncode == 0
    assert "--tls-cert FILE" in out.stdout and "--tls-key FILE" in out.stdout
