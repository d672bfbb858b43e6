"""Helpers for the client interop tests: the probe (a wsb_client driven over
stdin/stdout, see probe.c), the Python `websockets` peer (peer.py), test
certificates made with the openssl command, and a small CONNECT proxy.

Every wait here is bounded, so a hung client or server fails a test instead
of stalling the run.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
HEADER = REPO / "include" / "wsbroker.h"

SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
    "UndefinedBehaviorSanitizer",
)
PROXY_VARS = tuple(
    v for n in ("http_proxy", "https_proxy", "all_proxy", "no_proxy") for v in (n, n.upper())
)
SAN_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
    "UBSAN_OPTIONS": "print_stacktrace=1",
}


def _result_codes() -> dict[str, int]:
    # The names come from the header so a renumbering cannot go unnoticed.
    text = HEADER.read_text()
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"WSB_RESULT_([A-Z_0-9]+) = (\d+),", text)}


RESULT = _result_codes()
RESULT_NAME = {v: k for k, v in RESULT.items()}


def build_dir() -> Path:
    path = Path(os.environ.get("WSB_BUILD_DIR", "build"))
    return path if path.is_absolute() else REPO / path


def lib_dir() -> Path:
    path = Path(os.environ.get("WSB_LIBDIR", "target/release"))
    return path if path.is_absolute() else REPO / path


def compile_c(source: Path, out: Path, asan: bool) -> Path:
    """Compiles a test program against the library, with the Makefile's flags:
    statically under ASan+UBSan, or dynamically with an rpath."""
    lib = lib_dir()
    static = lib / "libwsbroker.a"
    shared = lib / "libwsbroker.so"
    needed = static if asan else shared
    if not needed.is_file():
        raise RuntimeError(f"{needed} is missing: run `make lib` first")
    deps = [source, HEADER, needed]
    if out.is_file() and all(out.stat().st_mtime >= d.stat().st_mtime for d in deps):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    cc = os.environ.get("CC", "gcc")
    cmd = [cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-g", f"-I{REPO / 'include'}", str(source), "-o", str(out)]
    if asan:
        cmd[1:1] = ["-O1", "-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
        cmd += [str(static), "-lpthread", "-ldl", "-lm"]
    else:
        cmd[1:1] = ["-O2"]
        cmd += [f"-L{lib}", "-lwsbroker", f"-Wl,-rpath,{lib}", "-lpthread", "-ldl", "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"compiling {source.name} failed:\n{' '.join(cmd)}\n{proc.stderr}")
    return out


def crc(data: bytes) -> str:
    return f"{zlib.crc32(data):08x}"


def gen_text(n: int) -> bytes:
    """What the probe's `gen-text N` sends."""
    unit = "abé✓d".encode()
    assert len(unit) == 8
    n -= n % 8
    return unit * (n // 8)


def gen_binary(n: int, seed: int) -> bytes:
    """What the probe's `gen-binary N SEED` sends."""
    return bytes(((i * 131 + seed + (i >> 8)) & 0xFF) for i in range(n))


class LineProcess:
    """A child process whose stdout lines are collected by a thread."""

    def __init__(
        self, cmd: list[str], env: dict[str, str] | None = None, stdin: bool = False, drop: tuple[str, ...] = ()
    ) -> None:
        self.cmd = cmd
        base = {k: v for k, v in os.environ.items() if k not in drop}
        self.lines: list[str] = []
        self._cv = threading.Condition()
        self.stderr_file = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.stderr_file,
            env={**base, **(env or {})},
        )
        self._eof = False
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cv:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cv.notify_all()
        with self._cv:
            self._eof = True
            self._cv.notify_all()

    def wait_line(self, regex: str, timeout: float = 10.0, start: int = 0) -> tuple[int, re.Match[str]]:
        """The first line from index `start` on that matches `regex` (fullmatch)."""
        pat = re.compile(regex)
        deadline = time.monotonic() + timeout
        with self._cv:
            i = start
            while True:
                while i < len(self.lines):
                    m = pat.fullmatch(self.lines[i])
                    if m:
                        return i, m
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    tail = "\n".join(self.lines[-30:])
                    why = "exited" if self._eof else f"timed out after {timeout} s"
                    raise AssertionError(
                        f"{Path(self.cmd[0]).name}: no line matching {regex!r} ({why}); last lines:\n{tail}\n"
                        f"stderr:\n{self.stderr()[-3000:]}"
                    )
                self._cv.wait(left)

    def matching(self, regex: str) -> list[re.Match[str]]:
        pat = re.compile(regex)
        with self._cv:
            return [m for m in (pat.fullmatch(line) for line in self.lines) if m]

    def stderr(self) -> str:
        self.stderr_file.seek(0)
        return self.stderr_file.read().decode("utf-8", "replace")

    def wait_exit(self, timeout: float = 15.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.cmd[0]} did not exit within {timeout} s; stderr:\n{self.stderr()[-3000:]}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def check_sanitizers(self) -> None:
        err = self.stderr()
        found = [m for m in SANITIZER_MARKERS if m in err]
        assert not found, f"{self.cmd[0]}: sanitizer report:\n{err[-6000:]}"


class Probe(LineProcess):
    """The probe client (see probe.c for its line protocol)."""

    def __init__(self, exe: Path, args: list[str], env: dict[str, str] | None = None) -> None:
        # The proxy variables of the test run never leak in: a test that
        # wants them passes them in `env`.
        super().__init__([str(exe), *args], env={**SAN_ENV, **(env or {})}, stdin=True, drop=PROXY_VARS)
        self.started = time.monotonic()

    def cmd_line(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def command(self, line: str, timeout: float = 10.0) -> int:
        """Runs a command and returns its wsb_result."""
        verb = line.split(" ", 1)[0]
        start = len(self.lines)
        self.cmd_line(line)
        _, m = self.wait_line(rf"RESULT {re.escape(verb)} (\d+)", timeout, start)
        return int(m.group(1))

    def connected(self, timeout: float = 15.0) -> str:
        _, m = self.wait_line(r"CONNECTED (\S+)", timeout)
        return m.group(1)

    def message(self, timeout: float = 15.0, start: int = 0) -> tuple[int, "Message"]:
        i, m = self.wait_line(r"MESSAGE (text|binary) (\d+) ([0-9a-f]{8}) ?(.*)", timeout, start)
        return i, Message(m.group(1) == "text", int(m.group(2)), m.group(3), m.group(4))

    def closed(self, timeout: float = 15.0, start: int = 0) -> "Closed":
        _, m = self.wait_line(r"CLOSED (-?\d+) ([01]) (\d+) ?(.*)", timeout, start)
        return Closed(int(m.group(1)), m.group(2) == "1", int(m.group(3)), m.group(4))

    def error(self, timeout: float = 15.0, start: int = 0) -> "ConnectError":
        _, m = self.wait_line(r"ERROR (\d+) (\d+) ?(.*)", timeout, start)
        return ConnectError(RESULT_NAME.get(int(m.group(1)), m.group(1)), int(m.group(2)), m.group(3))

    def finish(self, timeout: float = 20.0) -> None:
        """Stops the probe (if still running) and checks it ended cleanly."""
        if self.proc.poll() is None:
            try:
                self.cmd_line("quit")
            except (BrokenPipeError, OSError):
                pass
        rc = self.wait_exit(timeout)
        self.check_sanitizers()
        assert rc == 0, f"probe exited {rc}; last lines:\n" + "\n".join(self.lines[-20:]) + "\n" + self.stderr()[-3000:]
        assert self.matching(r"END \S+ 0"), "probe did not report a clean wsb_client_free"


@dataclass
class Message:
    text: bool
    length: int
    crc: str
    preview: str


@dataclass
class Closed:
    status: int
    by_host: bool
    elapsed_ms: int
    reason: str


@dataclass
class ConnectError:
    code: str
    elapsed_ms: int
    message: str


class Peer(LineProcess):
    """peer.py: a Python websockets server on loopback."""

    def __init__(
        self, port: int = 0, cert: Path | None = None, key: Path | None = None, client_ca: Path | None = None
    ) -> None:
        cmd = [sys.executable, str(HERE / "peer.py"), "--port", str(port)]
        if cert:
            cmd += ["--cert", str(cert), "--key", str(key)]
        if client_ca:
            cmd += ["--client-ca", str(client_ca)]
        super().__init__(cmd)
        _, m = self.wait_line(r"listening on 127\.0\.0\.1:(\d+)", 30)
        self.port = int(m.group(1))

    def url(self, path: str = "/", scheme: str = "ws", host: str = "127.0.0.1") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(15)


# ---- certificates ---------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{proc.stderr}")


@dataclass
class Pki:
    dir: Path
    ca: Path  # the CA the client is told to trust
    good: tuple[Path, Path]  # localhost + 127.0.0.1, valid now
    wrong_name: tuple[Path, Path]  # only wrong.example
    expired: tuple[Path, Path]  # right names, expired in 2020
    untrusted: tuple[Path, Path]  # right names, from a CA the client does not know
    client: tuple[Path, Path]  # a client certificate (clientAuth) from the main CA
    not_yet_valid: tuple[Path, Path]  # right names, valid from `later` on
    later: str  # when not_yet_valid begins, as the client's messages write it


def make_pki(d: Path) -> Pki:
    """A CA, leaf certificates signed by it, and one from a second CA.
    `openssl ca` is used for the leaves because it takes explicit dates,
    which is how the expired certificate gets a validity in the past."""
    d.mkdir(parents=True, exist_ok=True)

    def ca(name: str) -> Path:
        cadir = d / name
        cadir.mkdir()
        (cadir / "index.txt").write_text("")
        (cadir / "serial").write_text("1000\n")
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", f"/CN=wsbroker test {name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=cadir,
        )  # fmt: skip
        (cadir / "ca.cnf").write_text(
            "[ca]\ndefault_ca = test\n"
            "[test]\n"
            f"dir = {cadir}\ndatabase = $dir/index.txt\nserial = $dir/serial\nnew_certs_dir = $dir\n"
            "certificate = $dir/ca.pem\nprivate_key = $dir/ca.key\ndefault_md = sha256\n"
            "policy = any\nunique_subject = no\ncopy_extensions = none\n"
            "[any]\ncommonName = supplied\n"
        )
        return cadir

    def leaf(cadir: Path, name: str, sans: str, start: str, end: str, usage: str = "serverAuth") -> tuple[Path, Path]:
        key, csr, pem = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem"
        _openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}",
            cwd=d,
        )  # fmt: skip
        ext = d / f"{name}.ext"
        ext.write_text(
            "[leaf]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
            f"extendedKeyUsage = {usage}\nsubjectAltName = {sans}\n"
        )
        _openssl(
            "ca", "-batch", "-notext", "-config", str(cadir / "ca.cnf"), "-in", str(csr), "-out", str(pem),
            "-startdate", start, "-enddate", end, "-extfile", str(ext), "-extensions", "leaf",
            cwd=d,
        )  # fmt: skip
        return pem, key

    start = time.strftime("%Y%m%d%H%M%SZ", time.gmtime(time.time() - 3600))
    end = time.strftime("%Y%m%d%H%M%SZ", time.gmtime(time.time() + 86400))
    later = time.gmtime(time.time() + 12 * 3600)
    main = ca("ca")
    other = ca("other-ca")
    right = "DNS:localhost,IP:127.0.0.1"
    return Pki(
        dir=d,
        ca=main / "ca.pem",
        good=leaf(main, "good", right, start, end),
        wrong_name=leaf(main, "wrong-name", "DNS:wrong.example", start, end),
        expired=leaf(main, "expired", right, "20200101000000Z", "20200201000000Z"),
        untrusted=leaf(other, "untrusted", right, start, end),
        client=leaf(main, "client", "DNS:client.example", start, end, usage="clientAuth"),
        not_yet_valid=leaf(main, "not-yet-valid", right, time.strftime("%Y%m%d%H%M%SZ", later), end),
        later=time.strftime("%Y-%m-%dT%H:%M:%SZ", later),
    )


# ---- misbehaving servers and a proxy --------------------------------------------------


class TcpServer:
    """A loopback TCP server running `behave(sock)` per connection on a thread."""

    def __init__(self, behave) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.conns: list[socket.socket] = []
        self._stop = False
        self._behave = behave
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop:
            r, _, _ = select.select([self.sock], [], [], 0.1)
            if not r:
                continue
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._behave(conn)
        except OSError:
            pass

    def close(self) -> None:
        self._stop = True
        time.sleep(0.15)
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        self.sock.close()


def read_request(conn: socket.socket, timeout: float = 10.0) -> bytes:
    """Reads an HTTP request head (bounded in size and time)."""
    conn.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf and len(buf) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf


class ConnectProxy(TcpServer):
    """An HTTP CONNECT proxy. `route(host, port)` gives the real address to
    dial (None: answer 502) and every request line is recorded. With
    `refuse` set, answers that status instead of connecting."""

    def __init__(self, route=None, refuse: int | None = None) -> None:
        self.requests: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.route = route or (lambda h, p: (h, p) if h in ("127.0.0.1", "localhost") else None)
        self.refuse = refuse
        super().__init__(self._handle)

    def url(self, userinfo: str = "") -> str:
        return f"http://{userinfo}127.0.0.1:{self.port}"

    def _handle(self, conn: socket.socket) -> None:
        head = read_request(conn)
        lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        self.requests.append(lines[0])
        self.headers.append({k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])})
        parts = lines[0].split(" ")
        if self.refuse:
            conn.sendall(f"HTTP/1.1 {self.refuse} Refused by test\r\nContent-Length: 0\r\n\r\n".encode())
            conn.close()
            return
        if len(parts) != 3 or parts[0] != "CONNECT":
            conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            conn.close()
            return
        host, _, port = parts[1].rpartition(":")
        dest = self.route(host.strip("[]"), int(port))
        if dest is None:
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            conn.close()
            return
        upstream = socket.create_connection(dest, timeout=10)
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        conn.settimeout(None)
        upstream.settimeout(None)
        pipe = threading.Thread(target=_pump, args=(upstream, conn), daemon=True)
        pipe.start()
        _pump(conn, upstream)
        pipe.join(30)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def free_port() -> int:
    """A loopback port with nothing listening on it (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
