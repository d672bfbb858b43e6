"""A Python `websockets` server for the client interop tests.

usage: peer.py [--port N] [--cert FILE --key FILE]

Prints `listening on 127.0.0.1:<port>` once ready, then one
`open <path> <header-name>=<value>...` line per connection (only the
headers starting with X-Wsb-), `message <path> <text|binary> <len>` per
message, and with TLS `sni <server name or ->` per TLS handshake. Behaviour by request path:

  /close?code=C&reason=R   echoes the first message, then closes with C and R
  anything else            echoes every message with its type

SIGTERM closes every connection (1001) and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import sys
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve


def say(line: str) -> None:
    print(line, flush=True)


async def handler(ws: ServerConnection) -> None:
    target = ws.request.path
    url = urlsplit(target)
    extra = " ".join(
        f"{k}={v}" for k, v in ws.request.headers.raw_items() if k.lower().startswith("x-wsb-")
    )
    say(f"open {target} {extra}".rstrip())
    if url.path == "/close":
        q = parse_qs(url.query)
        code = int(q.get("code", ["1000"])[0])
        reason = q.get("reason", [""])[0]
        msg = await ws.recv()
        await ws.send(msg)
        await ws.close(code, reason)
        return
    async for msg in ws:
        say(f"message {url.path} {'text' if isinstance(msg, str) else 'binary'} {len(msg)}")
        await ws.send(msg)


def pick_subprotocol(_conn: ServerConnection, offered):
    """The server's preferred subprotocol among those offered; none is fine
    (websockets' default selection refuses a client that offers none)."""
    for mine in ("wsb.v2", "wsb.v1"):
        if mine in offered:
            return mine
    return None


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--client-ca", help="require a client certificate signed by this CA")
    args = parser.parse_args()
    ctx = None
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        # Records the server name each client asked for (SNI); `-` when it sent none.
        ctx.sni_callback = lambda _sock, name, _ctx: say(f"sni {name or '-'}")
        if args.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(args.client_ca)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    # 64 MiB: the tests send 4 MiB messages; no compression, no pings, so the
    # wire traffic is exactly what the test sends.
    async with serve(
        handler,
        "127.0.0.1",
        args.port,
        ssl=ctx,
        max_size=64 << 20,
        compression=None,
        ping_interval=None,
        select_subprotocol=pick_subprotocol,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        say(f"listening on 127.0.0.1:{port}")
        await stop
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
