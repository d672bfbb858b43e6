"""AppWebsocket interop: the C examples (built under ASan+UBSan) against each other and
against a Python `websockets` server playing the app service with a fixed challenge, so
Python (hashlib) recomputes the digest our client sent, and checks its Encrypt and Hash.

Environment: WSB_EXAMPLES (default build/asan) holds appws_client and appws_service.
Every wait is bounded."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Dict, List, Optional

import pytest
from websockets.asyncio.server import serve

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = Path(os.environ.get("WSB_EXAMPLES", ROOT / "build" / "asan"))
CHALLENGE = "0123456789abcdef"
SANITIZER = ("AddressSanitizer", "LeakSanitizer", "runtime error:")


def example(name: str) -> str:
    path = EXAMPLES / name
    if not path.exists():
        pytest.fail(f"{path} is missing (build the examples first)")
    return str(path)


def sha256_hex(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def rc4_hex(key: bytes, data: bytes) -> str:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) % 256
        s[i], s[j] = s[j], s[i]
    i = j = 0
    out = bytearray()
    for b in data:
        i = (i + 1) % 256
        j = (j + s[i]) % 256
        s[i], s[j] = s[j], s[i]
        out.append(b ^ s[(s[i] + s[j]) % 256])
    return out.hex()


class FakeService:
    """A websockets server on a thread: answers AppChallenge with a fixed challenge,
    accepts any AppLogin, answers other messages with mt+"Result", records all."""

    def __init__(self, login_ok: bool = True) -> None:
        self.login_ok = login_ok
        self.received: List[Dict[str, object]] = []
        self.port = 0
        self._ready = threading.Event()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop: Optional[asyncio.Future] = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _handler(self, ws) -> None:
        async for frame in ws:
            msg = json.loads(frame)
            self.received.append(msg)
            mt = msg.get("mt")
            if mt == "AppChallenge":
                await ws.send(json.dumps({"mt": "AppChallengeResult", "challenge": CHALLENGE}))
            elif mt == "AppLogin":
                await ws.send(json.dumps({"mt": "AppLoginResult", "ok": self.login_ok}))
            else:
                reply = {"mt": f"{mt}Result"}
                if "src" in msg:
                    reply["src"] = msg["src"]
                await ws.send(json.dumps(reply))

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        async with serve(self._handler, "127.0.0.1", 0) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop

    def __enter__(self) -> "FakeService":
        self._thread.start()
        assert self._ready.wait(10), "the Python service did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)


def run_client(url: str, app: str, password: str) -> subprocess.CompletedProcess:
    p = subprocess.run([example("appws_client"), url, app, password], capture_output=True, text=True, timeout=30)
    for marker in SANITIZER:
        assert marker not in p.stderr, p.stderr
    return p


def test_python_recomputes_the_digest_our_client_sent() -> None:
    with FakeService() as svc:
        p = run_client(f"ws://127.0.0.1:{svc.port}/", "myapp", "pwd")
    assert p.returncode == 0, p.stderr
    logins = [m for m in svc.received if m.get("mt") == "AppLogin"]
    assert len(logins) == 1
    login = logins[0]
    # §5.4: these members, in this order, and never the session key.
    assert list(login) == ["mt", "app", "domain", "sip", "guid", "dn", "digest"]
    pre = ":".join([login["app"], login["domain"], login["sip"], login["guid"], login["dn"], CHALLENGE, "pwd"])
    assert pre == "myapp::myapp:00000000000000000000000000000000:Admin:0123456789abcdef:pwd"
    assert login["digest"] == sha256_hex(pre)
    assert login["digest"] == "54ef6250b93b761b5af73332fb9d149322b0aa2967151d2436e9f02cecafe03f"
    # The first frame was the challenge request; CheckBuild is never sent.
    assert svc.received[0] == {"mt": "AppChallenge"}
    # Encrypt and Hash of "hello" with seed1 use sessionKey = SHA-256 of the §5.2 pre-image.
    key = sha256_hex(f"innovaphoneAppSessionKey:{CHALLENGE}:pwd")
    assert key == "d58c77eae0c1c1f37a9f545e207643c926ad9ea4932016a83a4a01029de37760"
    lines = dict(line.split(" ", 1) for line in p.stdout.splitlines() if " " in line)
    assert lines["encrypt"] == rc4_hex(f"seed1:{key}".encode(), b"hello") == "970a852834"
    assert lines["hash"] == sha256_hex(f"seed1:{key}:hello")
    assert lines["reply"] == 'mt=HelloResult src=c1 {"mt": "HelloResult", "src": "c1"}'


def test_rejected_login_fails_cleanly() -> None:
    with FakeService(login_ok=False) as svc:
        p = run_client(f"ws://127.0.0.1:{svc.port}/", "myapp", "pwd")
    assert p.returncode == 1
    assert "login failed" in p.stderr
    assert [m["mt"] for m in svc.received] == ["AppChallenge", "AppLogin"]


@pytest.fixture
def c_service():
    proc = subprocess.Popen(
        [example("appws_service"), "0", "demo", "demo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("listening on "), first
        yield proc, int(first.split()[2])
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
        for marker in SANITIZER:
            assert marker not in err, err
        assert proc.returncode == 0, err
        proc.service_output = out  # type: ignore[attr-defined]


def test_c_client_against_c_service(c_service) -> None:
    proc, port = c_service
    url = f"ws://127.0.0.1:{port}/"
    good = run_client(url, "demo", "demo")
    assert good.returncode == 0, good.stderr
    assert "reply mt=HelloResult src=c1 {\"mt\":\"HelloResult\",\"src\":\"c1\"}" in good.stdout
    assert "closed 1000" in good.stdout
    bad = run_client(url, "demo", "wrong")
    assert bad.returncode == 1
    assert "login failed" in bad.stderr
    # The service keeps serving after a failed login.
    again = run_client(url, "demo", "demo")
    assert again.returncode == 0, again.stderr
