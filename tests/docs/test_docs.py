"""Runs the C, C++, Python and C# examples of README.md and docs/*.md against real peers.

Every ```c, ```cpp, ```python and ```csharp block must be preceded by a marker line saying what
it is (an unmarked block fails, so a new example cannot go untested):

    <!-- doc-test: self [expect="TEXT"] -->   a program that runs to completion: exit status 0
                                              (and TEXT in its output)
    <!-- doc-test: self-tls [expect="TEXT"] -->  the same, with ca.pem, and server.pem/server.key
                                              (for localhost, signed by that CA) in the working dir
    <!-- doc-test: server PORT -->            a server on 127.0.0.1:PORT: a websockets client
                                              gets a text and a binary message echoed, then the
                                              program is stopped with SIGINT
    <!-- doc-test: client PORT -->            a client of ws://127.0.0.1:PORT: a websockets echo
                                              server (subprotocol "chat" when asked) must receive
                                              a message, and the program must exit with 0
    <!-- doc-test: client-tls PORT -->        the same over wss://localhost:PORT, with ca.pem (the
                                              CA of the server's certificate) in the working dir
    <!-- doc-test: fragment -->               not a whole program: skipped

PORT is replaced in the code by a free port. C and C++ programs link the shared library of
WSB_LIBDIR (default target/release); C++ finds <wsbroker/wsbroker.hpp> as when installed; C#
programs compile with MCS against WSB_CSHARP_DIR/Wsbroker.dll and run under MONO; Python
programs import bindings/python with WSBROKER_LIB set.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import websockets

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LANGS = {"c": ".c", "cpp": ".cpp", "python": ".py", "csharp": ".cs"}
MARKER = re.compile(r'<!--\s*doc-test:\s*(self-tls|self|server|client|client-tls|fragment)(?:\s+(\d+))?(?:\s+expect="([^"]*)")?\s*-->')
TIMEOUT = 30  # seconds for one program to finish, or to start listening

LIBDIR = (REPO / os.environ.get("WSB_LIBDIR", "target/release")).resolve()
CSHARP_DIR = (REPO / os.environ.get("WSB_CSHARP_DIR", "build/csharp")).resolve()
CC = os.environ.get("CC", "cc")
CXX = os.environ.get("CXX", "g++")
MCS = os.environ.get("MCS", "mcs")
MONO = os.environ.get("MONO", "mono")


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence
    lang: str
    code: str
    mode: Optional[str]  # None when the marker is missing
    port: Optional[int]
    expect: Optional[str]

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}:{self.lang}"


def blocks() -> List[Block]:
    found = []
    for path in DOCS:
        lines = path.read_text().split("\n")
        i = 0
        while i < len(lines):
            m = re.fullmatch(r"(\s*)```(\w*)\s*", lines[i])
            if not m:
                i += 1
                continue
            indent, lang, start = m.group(1), m.group(2), i
            i += 1
            body = []
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
                i += 1
            i += 1
            if lang not in LANGS:
                continue
            marker = MARKER.fullmatch(lines[start - 1].strip()) if start > 0 else None
            found.append(
                Block(
                    path, start + 1, lang, "\n".join(body) + "\n",
                    marker.group(1) if marker else None,
                    int(marker.group(2)) if marker and marker.group(2) else None,
                    marker.group(3) if marker else None,
                )
            )  # fmt: skip
    return found


BLOCKS = blocks()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd: List[str], **kw) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stdout}{r.stderr}"


def build(block: Block, code: str, out: Path) -> List[str]:
    """Writes and compiles the block; returns the command that runs it."""
    out.mkdir(parents=True, exist_ok=True)
    src = out / f"example{LANGS[block.lang]}"
    src.write_text(code)
    exe = out / "example"
    rpath = f"-Wl,-rpath,{LIBDIR}"
    if block.lang == "c":
        run([CC, "-std=c11", "-Wall", "-Wextra", "-Werror", "-I", str(REPO / "include"), str(src), "-o", str(exe),
             "-L", str(LIBDIR), "-lwsbroker", rpath])  # fmt: skip
        return [str(exe)]
    if block.lang == "cpp":
        # <wsbroker/wsbroker.hpp> as installed, "wsbroker.hpp" as in the tree.
        inc = out / "include"
        inc.mkdir(exist_ok=True)
        link = inc / "wsbroker"
        if not link.exists():
            link.symlink_to(REPO / "bindings" / "cpp")
        run([CXX, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-I", str(REPO / "include"), "-I", str(inc),
             "-I", str(REPO / "bindings" / "cpp"), str(src), "-o", str(exe), "-L", str(LIBDIR), "-lwsbroker", rpath])  # fmt: skip
        return [str(exe)]
    if block.lang == "csharp":
        exe = out / "example.exe"
        run([MCS, "-langversion:7", "-warnaserror", f"-r:{CSHARP_DIR / 'Wsbroker.dll'}", f"-out:{exe}", str(src)])
        return [MONO, "--debug", str(exe)]
    return [sys.executable, str(src)]


def environment() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WSBROKER_", "MAKE", "MFLAGS"))}
    env["WSBROKER_LIB"] = str(LIBDIR / "libwsbroker.so")
    env["PYTHONPATH"] = str(REPO / "bindings" / "python")
    env["PYTHONUNBUFFERED"] = "1"  # output printed before a failure is kept
    env["MONO_PATH"] = str(CSHARP_DIR)
    env["LD_LIBRARY_PATH"] = str(LIBDIR)
    for k in [k for k in env if k.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")]:
        del env[k]
    return env


def make_ca(d: Path) -> ssl.SSLContext:
    """ca.pem in `d`, and a server context with a certificate for localhost signed by it."""

    def openssl(*args: str) -> None:
        run(["openssl", *args], cwd=d)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=doc-test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")  # fmt: skip
    openssl("req", "-new", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (d / "server.ext").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n"
    )
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "server.ext")  # fmt: skip
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "server.pem", d / "server.key")
    return ctx


async def finish(proc: asyncio.subprocess.Process, limit: float) -> str:
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), limit)
    except asyncio.TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        raise AssertionError(f"still running after {limit} s; output:\n{out.decode(errors='replace')}")
    return out.decode(errors="replace")


async def start(cmd: List[str], cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *cmd, cwd=cwd, env=environment(), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def as_self(block: Block, cmd: List[str], cwd: Path) -> None:
    proc = await start(cmd, cwd)
    out = await finish(proc, TIMEOUT)
    assert proc.returncode == 0, f"exit status {proc.returncode}; output:\n{out}"
    if block.expect is not None:
        assert block.expect in out, f"{block.expect!r} not in the output:\n{out}"


async def as_server(block: Block, cmd: List[str], cwd: Path, port: int) -> None:
    proc = await start(cmd, cwd)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while True:
            try:
                ws = await websockets.connect(f"ws://127.0.0.1:{port}/", open_timeout=5, close_timeout=2)
                break
            except OSError:
                assert proc.returncode is None, f"the server exited ({proc.returncode}) before listening"
                assert loop.time() < deadline, f"nothing listening on {port} after {TIMEOUT} s"
                await asyncio.sleep(0.1)
        async with ws:
            for message in ("hello", b"\x00\x01\xff"):
                await ws.send(message)
                assert await asyncio.wait_for(ws.recv(), 10) == message
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
    out = await finish(proc, 10)
    # Stopped by the signal: a clean exit, or death by SIGINT for programs that do not catch it.
    assert proc.returncode in (0, -signal.SIGINT), f"exit status {proc.returncode}; output:\n{out}"


async def as_client(block: Block, cmd: List[str], cwd: Path, port: int, tls: Optional[ssl.SSLContext]) -> None:
    received: List[object] = []

    async def echo(ws) -> None:
        async for message in ws:
            received.append(message)
            await ws.send(message)

    def chat_if_offered(connection, offered):
        return "chat" if "chat" in offered else None

    host = "localhost" if tls else "127.0.0.1"
    async with websockets.serve(echo, host, port, select_subprotocol=chat_if_offered, ssl=tls):
        proc = await start(cmd, cwd)
        out = await finish(proc, TIMEOUT)
    assert proc.returncode == 0, f"exit status {proc.returncode}; output:\n{out}"
    assert received, f"the peer received nothing; output:\n{out}"
    if block.expect is not None:
        assert block.expect in out, f"{block.expect!r} not in the output:\n{out}"


@pytest.fixture(scope="session")
def compiled(tmp_path_factory) -> Dict[str, object]:
    """Compiles every C, C++ and C# example up front, two at a time (C++ compiles are slow)."""
    root = tmp_path_factory.mktemp("docs")
    jobs = {}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for n, block in enumerate(BLOCKS):
            if block.mode in (None, "fragment"):
                continue
            port = free_port() if block.port else None
            code = block.code.replace(str(block.port), str(port)) if block.port else block.code
            jobs[block.id] = (pool.submit(build, block, code, root / f"b{n}"), root / f"b{n}", port)
        return {k: (f.result, d, p) for k, (f, d, p) in jobs.items()}


def test_examples_were_found() -> None:
    langs = {b.lang for b in BLOCKS}
    assert langs == set(LANGS), langs
    assert sum(b.mode not in (None, "fragment") for b in BLOCKS) >= 15


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_example(block: Block, compiled) -> None:
    assert block.mode is not None, (
        "this example has no marker: put <!-- doc-test: self|self-tls|server PORT|client PORT|client-tls PORT|fragment --> "
        "on the line before its fence"
    )
    if block.mode == "fragment":
        pytest.skip("a fragment, not a whole program")
    if block.port is None and block.mode not in ("self", "self-tls"):
        pytest.fail(f"doc-test: {block.mode} needs a PORT")
    if block.mode.endswith("-tls") and shutil.which("openssl") is None:
        pytest.fail("openssl is needed for the TLS examples")
    result, cwd, port = compiled[block.id]
    cmd = result()  # raises the compiler's error here, in this block's test
    if block.mode in ("self", "self-tls"):
        if block.mode == "self-tls":
            make_ca(cwd)
        asyncio.run(as_self(block, cmd, cwd))
    elif block.mode == "server":
        asyncio.run(as_server(block, cmd, cwd, port))
    else:
        tls = make_ca(cwd) if block.mode == "client-tls" else None
        asyncio.run(as_client(block, cmd, cwd, port, tls))


# -- the README's lists against the header's doc comments -----------------------------------------


def header_docs() -> Dict[str, str]:
    """Each exported function's doc comment, on one line, from include/wsbroker.h (parsed as
    scripts/gen_api_reference.py parses it)."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import gen_api_reference as ref
    finally:
        sys.path.pop(0)
    text = (REPO / "include" / "wsbroker.h").read_text()
    docs = {}
    for m in ref.DECL.finditer(text):
        doc = ref.doc_before(text, m.start()) or ""
        docs[m.group(2)] = " ".join(line.strip().lstrip("*").strip() for line in doc.splitlines())
    return docs


def readme_section(start: str, end: str) -> str:
    text = (REPO / "README.md").read_text()
    return text[text.index(start) : text.index(end, text.index(start))]


def test_readme_thread_safe_list_is_the_headers() -> None:
    """The README names exactly the functions whose doc says "Safe to call from any thread" (the
    polls aside: they wait by design, and queue mode covers them)."""
    docs = header_docs()
    safe = {name for name, doc in docs.items() if "Safe to call from any thread" in doc and not name.endswith("_poll")}
    listed = set(re.findall(r"`(wsb_\w+)`", readme_section("**Safe from any thread, never blocking**", "**Backpressure")))
    assert len(safe) > 50
    assert sorted(safe - listed) == [], "safe per the header, missing from the README's list"
    assert sorted(listed - safe) == [], "in the README's list, but the doc comment does not say so"


def test_readme_ownership_list_names_every_object() -> None:
    """Every type with a `wsb_X_free` is in the README's ownership list."""
    owned = {name[: -len("_free")] for name in header_docs() if name.endswith("_free")}
    listed = set(re.findall(r"`(wsb_\w+)`", readme_section("* **Ownership.**", "* **Connections are ids**")))
    assert len(owned) >= 10
    assert sorted(owned - listed) == []
