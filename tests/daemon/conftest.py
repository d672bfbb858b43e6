"""Fixtures for the daemon tests: the real `wsbroker` binary on ephemeral
loopback ports, a websockets client, and a raw WebSocket client for what a
well-behaved library will not send.

The binary is `$WSBROKER_BIN` if set, else whatever `cargo build --bin
wsbroker` produces (honouring CARGO_TARGET_DIR). Every wait is bounded.
"""

import base64
import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
from websockets.sync.client import connect

REPO = Path(__file__).resolve().parents[2]
OTHER_LISTENERS_OFF = ["--wschat", "off", "--webtalk", "off", "--webtalk-admin", "off", "--appws", "off"]


def _build_binary():
    env_bin = os.environ.get("WSBROKER_BIN")
    if env_bin:
        return env_bin
    out = subprocess.run(
        ["cargo", "build", "--bin", "wsbroker", "--message-format=json-render-diagnostics"],
        cwd=REPO,
        check=True,
        stdout=subprocess.PIPE,
        timeout=1800,
    ).stdout
    for line in out.decode().splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") and msg["target"]["name"] == "wsbroker":
            return msg["executable"]
    raise RuntimeError("cargo did not report the wsbroker executable")


@pytest.fixture(scope="session")
def wsbroker_bin():
    return _build_binary()


class Daemon:
    """One wsbroker process; `addrs` maps listener name to (host, port)."""

    def __init__(self, binary, args, expect=("achex", "http"), tmpdir=None):
        self.stderr_path = Path(tmpdir or "/tmp") / f"wsbroker-{os.getpid()}-{time.monotonic_ns()}.log"
        self.stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([binary, *args], stdout=subprocess.PIPE, stderr=self.stderr)
        self.addrs = {}
        self.lines = []
        deadline = time.monotonic() + 15
        # Start-up lines arrive in a fixed order; a reader thread keeps the
        # wait bounded even if the process prints nothing.
        got = threading.Event()

        def reader():
            for raw in self.proc.stdout:
                line = raw.decode().rstrip("\n")
                self.lines.append(line)
                name, _, addr = line.partition(" listening on ")
                if addr:
                    host, _, port = addr.rpartition(":")
                    self.addrs[name] = (host.strip("[]"), int(port))
                if all(n in self.addrs for n in expect):
                    got.set()
            got.set()

        threading.Thread(target=reader, daemon=True).start()
        got.wait(max(0.0, deadline - time.monotonic()))
        if not all(n in self.addrs for n in expect):
            self.kill()
            raise RuntimeError(f"daemon did not start: stdout={self.lines} stderr={self.log()}")

    def url(self, name="achex", path="/"):
        host, port = self.addrs[name]
        return f"ws://{host}:{port}{path}"

    def http(self, path="/"):
        host, port = self.addrs["http"]
        return f"http://{host}:{port}{path}"

    def log(self):
        if not self.stderr.closed:
            self.stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def terminate(self, sig=signal.SIGTERM, timeout=15):
        """Sends `sig` and returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.kill()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.stderr.close()


@pytest.fixture
def start_daemon(wsbroker_bin, tmp_path):
    """Factory: start_daemon(*extra_args) -> Daemon (stopped after the test)."""
    started = []

    def start(*extra, base=True, expect=("achex", "http")):
        args = ["--achex", "127.0.0.1:0", "--http", "127.0.0.1:0", *OTHER_LISTENERS_OFF] if base else []
        d = Daemon(wsbroker_bin, [*args, *extra], expect=expect, tmpdir=tmp_path)
        started.append(d)
        return d

    yield start
    for d in started:
        d.kill()


@pytest.fixture
def daemon(start_daemon):
    return start_daemon()


class Client:
    """A websockets client with JSON helpers; `sid` is the SID it was given."""

    def __init__(self, url):
        self.url = url
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(connect(url, open_timeout=5, close_timeout=2, max_size=None))
        self.sid = json.loads(self.ws.recv(timeout=5))["SID"]

    def send(self, msg):
        self.ws.send(msg if isinstance(msg, (str, bytes)) else json.dumps(msg, separators=(",", ":")))

    def recv(self, timeout=5):
        return self.ws.recv(timeout=timeout)

    def recv_json(self, timeout=5):
        return json.loads(self.recv(timeout))

    def nothing(self, wait=0.3):
        """Asserts that nothing arrives for `wait` seconds."""
        try:
            got = self.ws.recv(timeout=wait)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected message {got!r}")

    def call(self, msg, timeout=5):
        self.send(msg)
        return self.recv(timeout)

    def sync(self):
        """Returns once everything this client sent before has been handled
        (replies come in request order). Needed before another connection
        relies on it: connections are not ordered among themselves."""
        assert self.call({"serverstat": True}).startswith('{"serverstat":')

    def login(self, name, passwd=None):
        m = {"setID": name}
        if passwd is not None:
            m["passwd"] = passwd
        assert self.call(m) == '{"auth":"ok"}'
        return self

    def close(self):
        self._stack.close()


@pytest.fixture
def client(request):
    """Factory: client(daemon=None, path="/") -> a new connected Client of a
    daemon's achex listener (by default the `daemon` fixture's)."""
    made = []

    def make(d=None, path="/"):
        c = Client((d or request.getfixturevalue("daemon")).url(path=path))
        made.append(c)
        return c

    yield make
    for c in made:
        try:
            c.close()
        except Exception:
            pass


class RawWS:
    """A minimal RFC 6455 client that does exactly what it is told: no
    automatic pongs, arbitrary frames, abrupt disconnects."""

    def __init__(self, addr, path="/", timeout=5):
        self.sock = socket.create_connection(addr, timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {addr[0]}:{addr[1]}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during handshake")
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.decode(errors="replace"))

    def send_frame(self, opcode, payload=b"", fin=True, mask=True, declared_len=None):
        n = len(payload) if declared_len is None else declared_len
        head = bytes([(0x80 if fin else 0) | opcode])
        m = 0x80 if mask else 0
        if n < 126:
            head += bytes([m | n])
        elif n < 65536:
            head += bytes([m | 126]) + struct.pack("!H", n)
        else:
            head += bytes([m | 127]) + struct.pack("!Q", n)
        if mask:
            key = os.urandom(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            head += key
        self.sock.sendall(head + payload)

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self):
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._read(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._read(8))
        return bool(b0 & 0x80), b0 & 0x0F, self._read(n)

    def recv_text(self, pings=None):
        """The next text message; pings are collected (not answered)."""
        while True:
            _, op, data = self.recv_frame()
            if op == 0x9:
                if pings is not None:
                    pings.append(data)
                continue
            if op == 0x8:
                raise ConnectionError(f"close {data[:2].hex()}")
            return data.decode()

    def close_code(self):
        """Reads until a close frame; returns its code (None without one)."""
        while True:
            try:
                _, op, data = self.recv_frame()
            except (ConnectionError, OSError):
                return None
            if op == 0x8:
                return struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


@pytest.fixture
def raw(request):
    """Factory: raw(daemon=None) -> a RawWS connected to the achex listener."""
    made = []

    def make(d=None):
        r = RawWS((d or request.getfixturevalue("daemon")).addrs["achex"])
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()
