"""Runs a C++ client test program against a real WebSocket server (the `websockets` package).

usage: client_peer.py BINARY

Starts an echo server on 127.0.0.1 (offering the subprotocols "chat.v2" and "chat"; "/close CODE
REASON" closes with that code, "/burst N" sends N numbered messages) and a silent one (it never
answers: an AppWebsocket service that ignores AppChallenge), finds a closed port, runs
`BINARY ws://127.0.0.1:PORT ws://127.0.0.1:CLOSED_PORT ws://127.0.0.1:SILENT_PORT`, and requires
exit status 0, a stderr free of sanitizer reports, and at least one connection to the silent server,
each with the upgrade header "X-App-Test: yes" and {"mt":"AppChallenge"} as its first message.
Prints "PASS" or "FAIL: why" (with the program's output) and exits 0 or 1.
"""

import asyncio
import json
import re
import socket
import sys

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

TIMEOUT = 120  # the whole program, sanitizers included


async def handler(ws):
    try:
        async for msg in ws:
            if isinstance(msg, str) and msg.startswith("/close "):
                _, code, reason = msg.split(" ", 2)
                await ws.close(int(code), reason)
            elif isinstance(msg, str) and msg.startswith("/burst "):
                for i in range(int(msg.split()[1])):
                    await ws.send(f"m{i}")
            else:
                await ws.send(msg)
    except ConnectionClosed:
        pass


silent_seen = []  # per connection to the silent server: (X-App-Test header, first message)


async def silent(ws):
    header = ws.request.headers.get("X-App-Test", "") if ws.request else ""
    first = None
    try:
        async for msg in ws:
            if first is None:
                first = msg
                silent_seen.append((header, first))
    except ConnectionClosed:
        pass
    if first is None:
        silent_seen.append((header, None))


def select(_conn, offered):
    return next((p for p in ("chat.v2", "chat") if p in offered), None)


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def main(binary):
    async with serve(handler, "127.0.0.1", 0, max_size=None, ping_interval=None,
                     subprotocols=["chat.v2", "chat"], select_subprotocol=select) as server, \
            serve(silent, "127.0.0.1", 0, ping_interval=None) as quiet:
        port = server.sockets[0].getsockname()[1]
        quiet_port = quiet.sockets[0].getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            binary, f"ws://127.0.0.1:{port}", f"ws://127.0.0.1:{closed_port()}", f"ws://127.0.0.1:{quiet_port}",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        error = None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
        except asyncio.TimeoutError:
            proc.kill()
            out, err = await proc.communicate()
            error = f"did not finish within {TIMEOUT} s"
    out, err = out.decode(errors="replace"), err.decode(errors="replace")
    if error is None and proc.returncode != 0:
        error = f"exit status {proc.returncode}"
    if error is None and re.search(r"AddressSanitizer|LeakSanitizer|runtime error:", err):
        error = "sanitizer report"
    expected = ("yes", {"mt": "AppChallenge"})
    seen = [(h, json.loads(m) if m else m) for h, m in silent_seen]
    if error is None and (not seen or any(s != expected for s in seen)):
        error = f"the silent server saw {seen!r}, expected only {expected!r}"
    if error is not None:
        print(f"FAIL: {error}")
        sys.stdout.write("--- stdout ---\n" + out + "--- stderr ---\n" + err[-6000:] + "\n")
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} BINARY")
    sys.exit(asyncio.run(main(sys.argv[1])))
