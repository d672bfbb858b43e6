"""echo_check.py BINARY: starts an echo server on port 0, echoes one text and one binary
message through it with a websockets client, stops it with SIGTERM; exit 0 if all went well."""

import asyncio
import re
import signal
import sys

import websockets


async def main(binary):
    proc = await asyncio.create_subprocess_exec(binary, "0", stdout=asyncio.subprocess.PIPE)
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        m = re.match(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert m, f"unexpected first line {line!r}"
        async with websockets.connect(f"ws://127.0.0.1:{m.group(1)}/") as ws:
            await ws.send("hi")
            assert await asyncio.wait_for(ws.recv(), 10) == "hi"
            await ws.send(b"\x00\x01")
            assert await asyncio.wait_for(ws.recv(), 10) == b"\x00\x01"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 15)
    assert rc == 0, f"exit status {rc}"


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1]))
    except Exception as e:  # noqa: BLE001 - reported as one failure
        sys.exit(f"{sys.argv[1]}: {type(e).__name__}: {e}")
