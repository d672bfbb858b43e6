#!/usr/bin/env python3
"""Reference echo peer: Python `websockets` (asyncio), written the usual way.

Usage: echo_websockets.py PORT   (PORT 0 = ephemeral)
Prints exactly one line `listening on 127.0.0.1:<port>` once ready, echoes every
text/binary message back with the same type, exits 0 on SIGTERM.
"""

import asyncio
import signal
import sys

from websockets.asyncio.server import serve

MAX_SIZE = 16 * 1024 * 1024


async def echo(ws):
    # websockets hands back str for text and bytes for binary, and send()
    # picks the frame type from that, so the message type is preserved.
    async for msg in ws:
        await ws.send(msg)


async def main(port):
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    # backlog raised from asyncio's default of 100 so the idle scenario's
    # connection batches are not refused by the kernel before Python accepts.
    # close_timeout lowered from 10 s: a handler caught in send() while the
    # client closes waits that long before giving up, which only delays the
    # harness's SIGTERM (measured traffic is over by then).
    async with serve(
        echo,
        "127.0.0.1",
        port,
        max_size=MAX_SIZE,
        compression=None,
        backlog=1024,
        close_timeout=1,
    ) as server:
        bound = server.sockets[0].getsockname()[1]
        print(f"listening on 127.0.0.1:{bound}", flush=True)
        await stop


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: echo_websockets.py PORT")
    asyncio.run(main(int(sys.argv[1])))
    sys.exit(0)
