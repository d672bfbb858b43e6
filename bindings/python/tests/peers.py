"""Real peers shared by the binding tests: a CA with server and client certificates made by
openssl, an HTTP CONNECT proxy, and a `websockets` server that records what it is sent and never
answers (the AppWebsocket service that does not reply to AppChallenge)."""

from __future__ import annotations

import asyncio
import queue
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from wsbroker import WsbError

T = 10.0  # seconds: every wait on these peers is bounded by it
PKI_SCRIPT = Path(__file__).resolve().parents[3] / "tests" / "pki.sh"


def make_pki(d: Path) -> Dict[str, Path]:
    """tests/pki.sh in ``d``: a CA, a server certificate for 127.0.0.1 and localhost, and a client
    certificate (CN "wsbroker test client"), both signed by the CA. Paths by name: ca, cert, key,
    client_cert, client_key."""
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl is required for the TLS tests")
    subprocess.run(["bash", str(PKI_SCRIPT), str(d)], check=True, timeout=120)
    return {
        "ca": d / "ca.pem", "cert": d / "server.pem", "key": d / "server.key",
        "client_cert": d / "client.pem", "client_key": d / "client.key",
    }  # fmt: skip


class ConnectProxy:
    """An HTTP CONNECT proxy on a thread, recording each request's first line and auth header."""

    def __init__(self) -> None:
        self.requests: "queue.Queue[Tuple[str, str]]" = queue.Queue()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(T)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                return
            head += chunk
        lines = head.split(b"\r\n\r\n")[0].decode().split("\r\n")
        auth = next((ln.split(":", 1)[1].strip() for ln in lines[1:] if ln.lower().startswith("proxy-authorization:")), "")
        self.requests.put((lines[0], auth))
        host, port = lines[0].split()[1].rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)), timeout=T)
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        for a, b in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
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
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


class LoopServer:
    """A `websockets` server on its own event-loop thread, on 127.0.0.1 (``port`` 0: ephemeral;
    ``self.port`` is the real one once constructed). Subclasses give ``_handler`` and may add
    options of ``serve`` in ``_options``; their own attributes must exist before this constructor
    runs, since the server starts in it."""

    def __init__(self, tls: Optional[ssl.SSLContext] = None, port: int = 0) -> None:
        self.tls = tls
        self.port = port
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(T), f"{type(self).__name__} did not start"

    def _options(self) -> Dict[str, Any]:
        return {}

    async def _handler(self, ws: ServerConnection) -> None:
        raise NotImplementedError

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        self.server = await serve(
            self._handler, "127.0.0.1", self.port, ssl=self.tls, ping_interval=None, **self._options()
        )
        self.port = self.server.sockets[0].getsockname()[1]

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"{'wss' if self.tls else 'ws'}://{host}:{self.port}{path}"

    def stop(self) -> None:
        async def down() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(down(), self.loop).result(T)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(T)

    def __enter__(self) -> "LoopServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SilentPeer(LoopServer):
    """A server that answers nothing. For each connection it records the upgrade request's
    headers, the client certificate's subject CN (``""`` without TLS or certificate) and every
    message received."""

    def __init__(self, tls: Optional[ssl.SSLContext] = None) -> None:
        self.headers: "queue.Queue[Dict[str, str]]" = queue.Queue()
        self.client_cns: "queue.Queue[str]" = queue.Queue()
        self.messages: "queue.Queue[Any]" = queue.Queue()
        super().__init__(tls)

    async def _handler(self, ws: ServerConnection) -> None:
        self.headers.put({k.lower(): v for k, v in ws.request.headers.raw_items()} if ws.request else {})
        cert = ws.transport.get_extra_info("peercert") or {}
        cn = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
        self.client_cns.put(cn[0] if cn else "")
        try:
            async for msg in ws:
                self.messages.put(msg)
        except ConnectionClosed:
            pass


def fail_on_another_thread(call: Callable[[], object]) -> WsbError:
    """Runs ``call`` on a thread of its own and returns the ``WsbError`` it raised (failing the
    test when it raised none)."""
    failed: "queue.Queue[WsbError]" = queue.Queue()

    def run() -> None:
        try:
            call()
        except WsbError as e:
            failed.put(e)

    t = threading.Thread(target=run)
    t.start()
    t.join(T)
    assert not failed.empty(), "the call did not fail"
    return failed.get()


def server_tls(pki: Dict[str, Path], require_client_cert: bool = False) -> ssl.SSLContext:
    """A server-side context with the pki's server certificate; optionally requiring a client
    certificate signed by its CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki["cert"], pki["key"])
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(pki["ca"])
    return ctx


def client_tls(pki: Dict[str, Path]) -> ssl.SSLContext:
    """A client-side context trusting only the pki's CA."""
    return ssl.create_default_context(cafile=str(pki["ca"]))
