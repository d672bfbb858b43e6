"""HTTP proxies (CONNECT): configured explicitly, and from the environment
(`http_proxy`, `https_proxy`, `no_proxy`). Loopback targets bypass
environment proxies by design, so the environment cases use a host name
from /etc/hosts that resolves to loopback without being spelled as such,
plus a made-up name only the proxy knows (the client must not resolve it
itself)."""

from __future__ import annotations

import base64
import socket
from pathlib import Path

import pytest

from client_harness import RESULT, ConnectProxy, Probe, free_port

PROXIED_NAME = "wsb-proxied.invalid"


def loopback_alias() -> str | None:
    """A name other than localhost that resolves to a 127.x address."""
    names = [socket.gethostname()]
    try:
        for line in Path("/etc/hosts").read_text().splitlines():
            parts = line.split("#", 1)[0].split()
            if len(parts) >= 2 and parts[0].startswith("127."):
                names += parts[1:]
    except OSError:
        pass
    for n in names:
        if n == "localhost" or "localhost" in n or not n:
            continue
        try:
            if socket.gethostbyname(n).startswith("127."):
                return n
        except OSError:
            continue
    return None


ALIAS = loopback_alias()
needs_alias = pytest.mark.skipif(ALIAS is None, reason="no non-localhost name resolves to loopback here")


@pytest.fixture
def proxy():
    made: list[ConnectProxy] = []

    def make(**kw) -> ConnectProxy:
        p = ConnectProxy(**kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def echo_once(probe: Probe) -> None:
    probe.connected()
    assert probe.command("text through") == RESULT["OK"]
    _, msg = probe.message()
    assert msg.preview == "through"


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_explicit_proxy(probe_exe, processes, peer, proxy, pki, scheme):
    p = peer(cert=pki.good[0], key=pki.good[1]) if scheme == "wss" else peer()
    px = proxy()
    opts = ["--ca", str(pki.ca), "--no-system-roots"] if scheme == "wss" else []
    probe = Probe(probe_exe, ["--proxy", px.url(), *opts, p.url("/echo", scheme=scheme, host="localhost")])
    processes.append(probe)
    echo_once(probe)
    probe.finish()
    assert px.requests == [f"CONNECT localhost:{p.port} HTTP/1.1"]
    assert "proxy-authorization" not in px.headers[0]


def test_proxy_credentials(probe_exe, processes, peer, proxy):
    p = peer()
    px = proxy()
    probe = Probe(probe_exe, ["--proxy", px.url("user:pa55@"), p.url("/echo")])
    processes.append(probe)
    echo_once(probe)
    probe.finish()
    assert px.headers[0]["proxy-authorization"] == "Basic " + base64.b64encode(b"user:pa55").decode()


def test_proxy_refuses(probe_exe, processes, peer, proxy):
    p = peer()
    px = proxy(refuse=403)
    probe = Probe(probe_exe, ["--timeout-ms", "3000", "--proxy", px.url(), p.url("/echo")])
    processes.append(probe)
    err = probe.error()
    probe.finish()
    assert err.code == "PROXY_FAILED", err
    assert "403" in err.message and err.elapsed_ms < 1500, err


def test_proxy_not_listening(probe_exe, processes):
    port = free_port()
    probe = Probe(probe_exe, ["--timeout-ms", "3000", "--proxy", f"http://127.0.0.1:{port}", "ws://127.0.0.1:1/"])
    processes.append(probe)
    err = probe.error()
    probe.finish()
    assert err.code in ("CONNECTION_REFUSED", "PROXY_FAILED"), err
    assert str(port) in err.message, err


def test_unsupported_proxy_scheme(probe_exe, processes):
    # Configured explicitly, it is refused by the setter.
    probe = Probe(probe_exe, ["--proxy", "socks5://127.0.0.1:1080", "ws://127.0.0.1:1/"])
    processes.append(probe)
    assert probe.wait_exit() == 2
    assert "invalid argument" in probe.stderr() and "socks5" in probe.stderr()


def test_unsupported_env_proxy_scheme(probe_exe, processes):
    # From the environment, it can only fail the attempt.
    probe = Probe(probe_exe, [f"ws://{PROXIED_NAME}:1/"], env={"http_proxy": "socks5://127.0.0.1:1080"})
    processes.append(probe)
    err = probe.error()
    probe.finish()
    assert err.code == "PROXY_FAILED" and "socks5" in err.message, err


@pytest.mark.parametrize("scheme", ["http://", ""])
def test_env_proxy_tunnels_a_name_only_the_proxy_knows(probe_exe, processes, peer, proxy, scheme):
    # Without a scheme the value means http://, as with curl.
    p = peer()
    px = proxy(route=lambda h, port: ("127.0.0.1", p.port) if h == PROXIED_NAME else None)
    env = {"http_proxy": scheme + px.url().removeprefix("http://")}
    probe = Probe(probe_exe, [f"ws://{PROXIED_NAME}:{p.port}/echo"], env=env)
    processes.append(probe)
    echo_once(probe)
    probe.finish()
    assert px.requests == [f"CONNECT {PROXIED_NAME}:{p.port} HTTP/1.1"]


def test_env_proxy_is_not_used_for_loopback(probe_exe, processes, peer, proxy):
    p = peer()
    px = proxy()
    env = {"http_proxy": px.url(), "https_proxy": px.url(), "all_proxy": px.url()}
    for host in ("127.0.0.1", "localhost"):
        probe = Probe(probe_exe, [p.url("/echo", host=host)], env=env)
        processes.append(probe)
        echo_once(probe)
        probe.finish()
    assert px.requests == []


@needs_alias
def test_env_proxy_and_no_proxy(probe_exe, processes, peer, proxy):
    p = peer()
    px = proxy(route=lambda h, port: ("127.0.0.1", port) if h == ALIAS else None)
    url = p.url("/echo", host=ALIAS)

    def run(env: dict[str, str], *opts: str) -> None:
        probe = Probe(probe_exe, [*opts, url], env=env)
        processes.append(probe)
        echo_once(probe)
        probe.finish()

    run({"http_proxy": px.url()})
    assert px.requests == [f"CONNECT {ALIAS}:{p.port} HTTP/1.1"]
    # no_proxy / NO_PROXY name the host (exactly, or "*"): straight to the server.
    for env in (
        {"http_proxy": px.url(), "no_proxy": f"example.org, {ALIAS}"},
        {"HTTP_PROXY": px.url(), "NO_PROXY": ALIAS},
        {"http_proxy": px.url(), "no_proxy": "*"},
        # https_proxy is for wss:// only.
        {"https_proxy": px.url()},
    ):
        run(env)
    # An explicit "" disables the environment's proxy too.
    run({"http_proxy": px.url()}, "--proxy", "")
    assert len(px.requests) == 1
    assert len(p.matching(r"open /echo.*")) == 6


@needs_alias
def test_env_https_proxy_for_wss(probe_exe, processes, peer, proxy, pki):
    p = peer(cert=pki.good[0], key=pki.good[1])
    px = proxy(route=lambda h, port: ("127.0.0.1", port) if h == ALIAS else None)
    # The certificate names localhost, not the alias: insecure for this one.
    probe = Probe(
        probe_exe, ["--insecure", p.url("/echo", scheme="wss", host=ALIAS)], env={"https_proxy": px.url(), "http_proxy": "http://127.0.0.1:9"}
    )
    processes.append(probe)
    echo_once(probe)
    probe.finish()
    assert px.requests == [f"CONNECT {ALIAS}:{p.port} HTTP/1.1"]
