"""Drives the C++ test servers with real WebSocket clients (the `websockets` package).

usage: drive.py SCENARIO BINARY [ARGS...]

Starts BINARY, reads "listening on 127.0.0.1:PORT" from its stdout, runs SCENARIO against it,
stops it with SIGTERM and requires exit status 0 and a stderr free of sanitizer reports.
Prints "PASS SCENARIO" or "FAIL SCENARIO: why" and exits 0 or 1.
"""

import asyncio
import re
import signal
import sys
import traceback

import websockets
from websockets.exceptions import ConnectionClosed

TIMEOUT = 10


class Server:
    def __init__(self, proc):
        self.proc = proc
        self.lines = []
        self.port = None

    async def line(self):
        raw = await asyncio.wait_for(self.proc.stdout.readline(), TIMEOUT)
        if not raw:
            raise AssertionError(f"server exited early; output so far: {self.lines}")
        text = raw.decode().rstrip("\n")
        self.lines.append(text)
        if text.startswith("CHECK FAILED"):
            raise AssertionError(text)
        return text

    async def expect(self, pattern):
        """Waits for the next line matching `pattern`; lines in between must not be check failures."""
        while True:
            text = await self.line()
            m = re.fullmatch(pattern, text)
            if m:
                return m

    def url(self, path="/"):
        return f"ws://127.0.0.1:{self.port}{path}"


async def recv(ws):
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


async def expect_close(ws, code, reason=None):
    try:
        msg = await asyncio.wait_for(ws.recv(), TIMEOUT)
        raise AssertionError(f"expected close {code}, got message {msg!r}")
    except ConnectionClosed as e:
        rcvd = e.rcvd
        assert rcvd is not None, "connection dropped without a close frame"
        assert rcvd.code == code, f"close code {rcvd.code}, expected {code}"
        if reason is not None:
            assert rcvd.reason == reason, f"close reason {rcvd.reason!r}, expected {reason!r}"


def connect(server, path="/"):
    return websockets.connect(server.url(path), max_size=None, ping_interval=None, close_timeout=3)


async def echo_common(s, mode):
    """Shared by the callback- and queue-mode servers of hpp_test."""
    async with connect(s, "/chat?x=1") as ws:
        await s.expect(r"open /chat\?x=1")
        await ws.send("héllo")
        assert await recv(ws) == "héllo"
        await ws.send(b"\x00\x01\xff")
        assert await recv(ws) == b"\x00\x01\xff"
        big = bytes(range(256)) * 800  # 200 KiB: above Barracuda's old 0xFFFF limit
        await ws.send(big)
        assert await recv(ws) == big
        await ws.send("/stats")
        assert await recv(ws) == "stats open=1"
        await ws.send("/badping")
        assert await recv(ws) == "badping ok"
        pong = await ws.ping(b"pp")
        await asyncio.wait_for(pong, TIMEOUT)
        await s.expect(r"ping pp")
        if mode == "callback":
            await ws.send("/reentrant")
            assert await recv(ws) == "reentrant ok"
            # The handler throws: the trampoline catches it and closes with 1011.
            await ws.send("/throw")
            await expect_close(ws, 1011, "internal error")
            await s.expect(r"close 1011 host internal error")
    async with connect(s) as ws:
        await s.expect(r"open /")
        await ws.send("/close 4005 bye")
        await expect_close(ws, 4005, "bye")
        await s.expect(r"close 4005 host bye")
    ws = await connect(s)
    await s.expect(r"open /")
    await ws.close(4001, "peer")
    await s.expect(r"close 4001 peer peer")


async def hpp_callback(s):
    await echo_common(s, "callback")


async def hpp_queue(s):
    await echo_common(s, "queue")


async def barracuda_chat(s):
    a = await connect(s, "/chat")
    await s.expect(r"open /chat")
    b = await connect(s, "/chat")
    await s.expect(r"open /chat")
    c = await connect(s, "/chat")
    await s.expect(r"open /chat")
    everyone = [a, b, c]

    async def all_get(clients, expected):
        for ws in clients:
            got = await recv(ws)
            assert got == expected, f"got {got!r:.60}, expected {expected!r:.60}"

    await a.send("hello from a")
    await all_get(everyone, "hello from a")
    await b.send(b"\x00bin\xff")
    await all_get(everyone, b"\x00bin\xff")
    big = b"\x07" * 100_000
    await c.send(big)
    await all_get(everyone, big)
    # Several senders at once: each recipient sees each sender's messages in order.
    await asyncio.gather(*(ws.send(f"{i}-{n}") for n in range(5) for i, ws in enumerate(everyone)))
    for ws in everyone:
        got = [await recv(ws) for _ in range(15)]
        for i in range(3):
            mine = [m for m in got if m.startswith(f"{i}-")]
            assert mine == [f"{i}-{n}" for n in range(5)], f"order broken: {got}"

    await c.close(1000)
    await s.expect(r"close 1000")
    await a.send("after c left")
    await all_get([a, b], "after c left")

    # A dropped transport: no close frame, status negative.
    b.transport.abort()
    await s.expect(r"close -1")
    await a.send("alone")
    await all_get([a], "alone")
    await a.close(1001)
    await s.expect(r"close 1001")


async def barracuda_close(s):
    probe = await connect(s)

    async def report():
        await probe.send("/report")
        return await recv(probe)

    got = await report()
    assert got == "report closes=0 live=1", got
    async with connect(s) as ws:
        await ws.send("echo me")
        assert await recv(ws) == "echo me"
        await ws.send(b"\x00\x01")
        assert await recv(ws) == b"\x00\x01"
        pong = await ws.ping(b"abc")
        await asyncio.wait_for(pong, TIMEOUT)
        assert await recv(ws) == "ping:abc"
        pong = await ws.ping(b"")
        await asyncio.wait_for(pong, TIMEOUT)
        assert await recv(ws) == "ping:"
        # Empty frames reach the frame callback as a non-NULL "" (PROTOCOLS.md 6.1).
        await ws.send("")
        assert await recv(ws) == ""
        await s.expect(r"empty-frame text=1")
        await ws.send(b"")
        assert await recv(ws) == b""
        await s.expect(r"empty-frame text=0")
        # Host close: the client sees 4000; the close callback must not run.
        await ws.send("/close 4000")
        await expect_close(ws, 4000)
    await s.expect(r"host-close")
    # close(0) and close(1005) go out as 1000 (PROTOCOLS.md 6.2: <= 0 and codes not allowed on
    # the wire); still no close callback.
    for status in (0, 1005):
        async with connect(s) as ws:
            await ws.send(f"/close {status}")
            await expect_close(ws, 1000)
        await s.expect(r"host-close")
    # A connection the upgrade hook does not claim is closed with 1008.
    async with connect(s, "/refuse") as ws:
        await expect_close(ws, 1008, "not accepted")
    await s.expect(r"not claimed")
    async with connect(s) as ws:
        # Deleting the object inside the frame callback closes with 1000, no callback.
        await ws.send("/delete")
        await expect_close(ws, 1000)
    await s.expect(r"deleted")
    # Give a wrongly delivered close callback time to show up in the report.
    await asyncio.sleep(0.3)
    # The host-closed objects stay alive (the host owns them now) and got no close callback.
    got = await report()
    assert got == "report closes=0 live=4", got

    ws = await connect(s)
    await ws.close(4001)
    await s.expect(r"close-cb 4001")
    ws = await connect(s)
    # A close frame without a code (websockets refuses to send one): FIN+close, masked, empty.
    ws.transport.write(b"\x88\x80\x00\x00\x00\x00")
    await s.expect(r"close-cb 0")
    ws.transport.abort()
    ws = await connect(s)
    await ws.send("x")
    assert await recv(ws) == "x"
    ws.transport.abort()
    await s.expect(r"close-cb -1")
    got = await report()
    assert got == "report closes=3 live=4", got
    # One connection left open for the exit path (the object outlives the dispatcher).
    await connect(s)
    await asyncio.sleep(0.1)
    got = await report()
    assert got == "report closes=3 live=5", got


SCENARIOS = {
    "hpp-callback": hpp_callback,
    "hpp-queue": hpp_queue,
    "barracuda-chat": barracuda_chat,
    "barracuda-close": barracuda_close,
}


async def main(name, argv):
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    s = Server(proc)
    error = None
    try:
        m = await s.expect(r"listening on 127\.0\.0\.1:(\d+)")
        s.port = int(m.group(1))
        await asyncio.wait_for(SCENARIOS[name](s), 60)
    except Exception as e:  # noqa: BLE001 - every failure is reported the same way
        tb = traceback.extract_tb(e.__traceback__)
        where = next((f"line {f.lineno}: {f.line}" for f in reversed(tb) if f.filename == __file__), "")
        error = f"{type(e).__name__}: {e} ({where})"
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    except asyncio.TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        error = error or "server did not stop within 30 s of SIGTERM"
    out, err = out.decode(errors="replace"), err.decode(errors="replace")
    if error is None and proc.returncode != 0:
        error = f"server exit status {proc.returncode}"
    if error is None and re.search(r"AddressSanitizer|LeakSanitizer|runtime error:", err):
        error = "sanitizer report"
    if error is None and "CHECK FAILED" in out:
        error = "a server-side check failed"
    if error is not None:
        print(f"FAIL {name}: {error}")
        sys.stdout.write("--- server stdout ---\n" + "\n".join(s.lines) + "\n" + out)
        sys.stdout.write("--- server stderr ---\n" + err[-6000:] + "\n")
        return 1
    print(f"PASS {name}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in SCENARIOS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(SCENARIOS)}}} BINARY [ARGS...]")
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2:])))
