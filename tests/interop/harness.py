"""Process and raw-socket helpers for the interop tests.

The example servers are driven through their documented stdout contract:
`listening on 127.0.0.1:<port>` once ready, then one `open ...` / `close ...`
line per connection event. Everything here is bounded in time so a hung
server fails a test instead of hanging the run.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import select
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

LISTENING_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
OPEN_RE = re.compile(r"open (\d+) (\S+) (\S+)")
# The reason is the rest of the line and may be empty (with or without the
# separating space), so it is optional here.
CLOSE_RE = re.compile(r"close (\d+) (-?\d+) (host|peer)(?: (.*))?")

# Sanitizer runtimes print these when they find something; the ASan builds
# may keep running after a UBSan report, so the text is checked as well as
# the exit status.
SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
    "UndefinedBehaviorSanitizer",
)


def build_dir() -> Path:
    path = Path(os.environ.get("WSB_BUILD_DIR", "build"))
    return path if path.is_absolute() else REPO / path


def example_binary(name: str, prefer_asan: bool = True) -> Path:
    """The example to test: the ASan+UBSan build when present, else the plain one."""
    base = build_dir()
    if prefer_asan and (base / "asan" / name).is_file():
        return base / "asan" / name
    return base / name


@dataclass
class CloseLine:
    conn_id: int
    status: int
    initiator: str
    reason: str


def parse_close(line: str) -> CloseLine | None:
    m = CLOSE_RE.fullmatch(line)
    if m is None:
        return None
    return CloseLine(int(m.group(1)), int(m.group(2)), m.group(3), m.group(4) or "")


class ServerProcess:
    """One example server on an ephemeral loopback port."""

    def __init__(
        self,
        exe: Path,
        options: list[str] | None = None,
        wrapper: list[str] | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.exe = exe
        self.options = options or []
        self.wrapper = wrapper or []
        self.startup_timeout = startup_timeout
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._stderr = tempfile.TemporaryFile()
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.returncode: int | None = None

    def start(self) -> "ServerProcess":
        if not self.exe.is_file():
            raise AssertionError(
                f"{self.exe} does not exist: build the examples first (make)"
            )
        env = dict(os.environ)
        # Keep sanitizer reports in a form the markers above find, and make
        # leaks count: LeakSanitizer is on by default but say so explicitly.
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        argv = [*self.wrapper, str(self.exe), *self.options, "0"]
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        try:
            first = self.wait_line(LISTENING_RE, self.startup_timeout)
        except AssertionError:
            self.kill()
            raise
        # The contract says the readiness line is exactly this, nothing else.
        assert LISTENING_RE.fullmatch(self.lines[0]), self.lines[0]
        self.port = int(first.group(1))
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def url(self, path: str = "/") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def wait_line(self, regex: re.Pattern[str], timeout: float = 10.0, start: int = 0):
        """First line at index >= start that fully matches regex."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    m = regex.fullmatch(line)
                    if m:
                        return m
                remaining = deadline - time.monotonic()
                exited = self.proc is not None and self.proc.poll() is not None
                if remaining <= 0 or exited:
                    break
                self._cond.wait(min(remaining, 0.2))
        raise AssertionError(
            f"no stdout line matching {regex.pattern!r} within {timeout}s;"
            f" stdout so far: {self.lines[-20:]!r}; stderr tail: {self.stderr()[-2000:]!r}"
        )

    def wait_count(self, regex: re.Pattern[str], count: int, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [ln for ln in self.lines if regex.fullmatch(ln)]
                remaining = deadline - time.monotonic()
                if len(found) >= count or remaining <= 0:
                    return found
                self._cond.wait(min(remaining, 0.2))

    def open_lines(self) -> list[re.Match[str]]:
        with self._cond:
            return [m for m in (OPEN_RE.fullmatch(ln) for ln in self.lines) if m]

    def close_lines(self) -> list[CloseLine]:
        with self._cond:
            return [c for c in (parse_close(ln) for ln in self.lines) if c]

    def wait_close_line(self, conn_id: int, timeout: float = 10.0) -> CloseLine:
        deadline = time.monotonic() + timeout
        while True:
            for c in self.close_lines():
                if c.conn_id == conn_id:
                    return c
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"no close line for connection {conn_id}; stdout: {self.lines[-20:]!r}"
                )
            time.sleep(0.02)

    def open_id_for(self, local_port: int, timeout: float = 10.0) -> int:
        """The server's id for our connection, found by its remote address."""
        m = self.wait_line(
            re.compile(rf"open (\d+) 127\.0\.0\.1:{local_port} (\S+)"), timeout
        )
        return int(m.group(1))

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; a server that ignores it is killed and reported."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"{self.exe} did not exit within {timeout}s of SIGTERM")
        self.returncode = self.proc.returncode
        return self.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def check_clean_exit(self) -> None:
        rc = self.stop()
        err = self.stderr()
        markers = [m for m in SANITIZER_MARKERS if m in err]
        assert not markers, f"{self.exe}: sanitizer report on stderr:\n{err[-6000:]}"
        assert rc == 0, f"{self.exe} exited with {rc}; stderr:\n{err[-6000:]}"


# ---------------------------------------------------------------- payloads

TEXT_PATTERN = "wsbroker ✓ é ü € 😀 ascii-and-more ".encode("utf-8")


def text_payload(size: int) -> str:
    """Valid UTF-8 of exactly `size` bytes, with 2-, 3- and 4-byte characters."""
    raw = (TEXT_PATTERN * (size // len(TEXT_PATTERN) + 1))[:size]
    # Truncation may split a character: drop the fragment and pad with ASCII.
    text = raw.decode("utf-8", "ignore")
    text += "x" * (size - len(text.encode("utf-8")))
    assert len(text.encode("utf-8")) == size
    return text


def binary_payload(size: int, seed: int = 6455) -> bytes:
    import random

    return random.Random(seed + size).randbytes(size)


# ---------------------------------------------------------------- raw sockets


def raw_connect(port: int, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def upgrade_request(key: str, path: str = "/", version: str | None = "13", extra: str = "") -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
    ]
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def read_http_response(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Status, lower-cased headers, and any bytes after the header block."""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError(f"connection closed before a full HTTP response: {buf!r}")
        buf += chunk
        if len(buf) > 65536:
            raise AssertionError("HTTP response header block too large")
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    m = re.fullmatch(r"HTTP/1\.1 (\d{3})(?: .*)?", lines[0])
    assert m, f"bad status line {lines[0]!r}"
    headers: dict[str, str] = {}
    for ln in lines[1:]:
        name, _, value = ln.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(m.group(1)), headers, rest


def raw_handshake(port: int, path: str = "/") -> tuple[socket.socket, bytes]:
    """A raw socket past a verified 101 response, plus any bytes read beyond it."""
    sock = raw_connect(port)
    key = new_key()
    sock.sendall(upgrade_request(key, path))
    status, headers, rest = read_http_response(sock)
    assert status == 101, f"expected 101, got {status} {headers}"
    assert headers.get("upgrade", "").lower() == "websocket", headers
    assert "upgrade" in headers.get("connection", "").lower(), headers
    assert headers.get("sec-websocket-accept") == accept_for(key), headers
    return sock, rest


def encode_frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True, rsv: int = 0) -> bytes:
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    mask_bit = 0x80 if mask else 0
    if n < 126:
        header = struct.pack("!BB", first, mask_bit | n)
    elif n < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, n)
    if not mask:
        return header + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return header + key + masked


@dataclass
class Frame:
    fin: bool
    opcode: int
    payload: bytes
    masked: bool

    def close_code(self) -> int | None:
        if self.opcode != 0x8 or len(self.payload) < 2:
            return None
        return struct.unpack("!H", self.payload[:2])[0]


class FrameReader:
    """Reads server frames from a raw socket; None at EOF or connection reset."""

    def __init__(self, sock: socket.socket, initial: bytes = b"") -> None:
        self.sock = sock
        self.buf = initial

    def _need(self, n: int, deadline: float) -> bool:
        while len(self.buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("timed out waiting for a frame")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return False
            if not chunk:
                return False
            self.buf += chunk
        return True

    def read(self, timeout: float = 10.0) -> Frame | None:
        deadline = time.monotonic() + timeout
        if not self._need(2, deadline):
            return None
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            if not self._need(4, deadline):
                return None
            n = struct.unpack("!H", self.buf[2:4])[0]
            pos = 4
        elif n == 127:
            if not self._need(10, deadline):
                return None
            n = struct.unpack("!Q", self.buf[2:10])[0]
            pos = 10
        masked = bool(b1 & 0x80)
        if masked:
            pos += 4
        if not self._need(pos + n, deadline):
            return None
        payload = self.buf[pos : pos + n]
        if masked:
            key = self.buf[pos - 4 : pos]
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        self.buf = self.buf[pos + n :]
        return Frame(bool(b0 & 0x80), b0 & 0x0F, payload, masked)

    def read_until_eof(self, timeout: float = 10.0) -> list[Frame]:
        deadline = time.monotonic() + timeout
        frames = []
        while True:
            frame = self.read(max(0.01, deadline - time.monotonic()))
            if frame is None:
                return frames
            frames.append(frame)


def wait_eof(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Read until the peer closes; return what was read and how long it took."""
    start = time.monotonic()
    deadline = start + timeout
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"server kept the connection open for {timeout}s; read {data[:200]!r}")
        ready, _, _ = select.select([sock], [], [], remaining)
        if not ready:
            continue
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data, time.monotonic() - start
        if not chunk:
            return data, time.monotonic() - start
        data += chunk


def abort(sock: socket.socket) -> None:
    """Close with RST instead of FIN, like a crashed or unplugged peer."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
