"""The broker examples (examples-c/achex_service.c, webtalk_backend.c) under
ASan+UBSan, driven by real WebSocket clients (Python websockets)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))
from harness import SANITIZER_MARKERS, example_binary  # noqa: E402

LISTEN = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


def start(name: str, *args: str) -> tuple[subprocess.Popen, list[str]]:
    p = subprocess.Popen([str(example_binary(name)), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    deadline = time.monotonic() + 10
    assert p.stdout is not None
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if name == "achex_service" and line.startswith("service "):
            return p, lines
        if name == "webtalk_backend" and line.startswith("channel "):
            return p, lines
    p.kill()
    pytest.fail(f"{name} did not start: {lines} {p.stderr.read() if p.stderr else ''}")


def stop(p: subprocess.Popen) -> str:
    p.terminate()
    try:
        out, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        pytest.fail("did not stop on SIGTERM")
    assert p.returncode == 0, err
    for m in SANITIZER_MARKERS:
        assert m not in err, err
    return out


def port_of(lines: list[str]) -> int:
    for line in lines:
        m = LISTEN.search(line)
        if m:
            return int(m.group(1))
    raise AssertionError(lines)


def test_achex_service_answers_every_message_and_reports_logins():
    p, lines = start("achex_service", "0", "svc")
    port = port_of(lines)

    async def run():
        async with websockets.connect(f"ws://127.0.0.1:{port}/") as ws:
            assert json.loads(await ws.recv())["SID"] >= 2  # the service holds SID 1
            await ws.send('{"setID":"alice","passwd":"x"}')
            assert await ws.recv() == '{"auth":"ok"}'
            for i in range(5):
                await ws.send(json.dumps({"to": "svc", "n": i}, separators=(",", ":")))
                reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert reply["service"] == "svc"
                assert reply["got"]["n"] == i
                assert reply["got"]["FROM"] == "alice"
                assert reply["FROM"] == "svc" and reply["sID"] == 1
            # toS reaches the service by its SID too.
            await ws.send('{"toS":1,"m":"by sid"}')
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert reply["got"]["m"] == "by sid"

    asyncio.run(asyncio.wait_for(run(), 30))
    out = stop(p)
    assert re.search(r"^login \d+ alice$", out, re.M), out
    assert re.search(r"^logout \d+ alice$", out, re.M), out


def test_webtalk_backend_drives_browsers_through_the_c_api():
    p, lines = start("webtalk_backend", "0", "2", "3")
    port = port_of(lines)
    creds = [line.split()[1] for line in lines if line.startswith("user ")]
    assert len(creds) == 2 and all(re.fullmatch(r"\d+!\d{20}", c) for c in creds)

    async def browser(cred: str, delay: float, want: int) -> list[str]:
        await asyncio.sleep(delay)
        got = []
        async with websockets.connect(f"ws://127.0.0.1:{port}/webtalk") as ws:
            await ws.send(cred)  # no reply: the server binds the user and flushes its queue
            while len(got) < want:
                got.append(await asyncio.wait_for(ws.recv(), 10))
        return got

    async def run():
        uid2 = creds[1].split("!")[0]
        # The second browser logs in late: what it missed waits in its queue
        # and arrives first, in order.
        first, second = await asyncio.gather(browser(creds[0], 0, 6), browser(creds[1], 1.5, 6))
        uid1 = creds[0].split("!")[0]
        assert first == [f"hello {uid1} #1", "tick 1", f"hello {uid1} #2", "tick 2", f"hello {uid1} #3", "tick 3"]
        assert second == [f"hello {uid2} #1", "tick 1", f"hello {uid2} #2", "tick 2", f"hello {uid2} #3", "tick 3"]

    asyncio.run(asyncio.wait_for(run(), 40))
    p.wait(timeout=10)
    err = p.stderr.read() if p.stderr else ""
    assert p.returncode == 0, err
    assert "state was started" in err


def test_webtalk_wrong_salt_is_refused_with_4001():
    p, lines = start("webtalk_backend", "0", "1", "5")
    port = port_of(lines)
    uid = [line.split()[1] for line in lines if line.startswith("user ")][0].split("!")[0]

    async def run():
        async with websockets.connect(f"ws://127.0.0.1:{port}/webtalk") as ws:
            await ws.send(f"{uid}!00000000000000000000")
            with pytest.raises(websockets.ConnectionClosed) as e:
                await asyncio.wait_for(ws.recv(), 5)
            assert e.value.rcvd.code == 4001
            assert e.value.rcvd.reason == "login failed"

    asyncio.run(asyncio.wait_for(run(), 20))
    stop(p)


def test_webtalk_backend_leave_clear_kill_and_unknown_ids():
    p, lines = start("webtalk_backend", "0", "2", "2")
    port = port_of(lines)
    creds = [line.split()[1] for line in lines if line.startswith("user ")]
    uid1, uid2 = (c.split("!")[0] for c in creds)

    async def browser(cred: str) -> tuple[list[str], int, str]:
        got = []
        async with websockets.connect(f"ws://127.0.0.1:{port}/webtalk") as ws:
            await ws.send(cred)
            try:
                while True:
                    got.append(await asyncio.wait_for(ws.recv(), 15))
            except websockets.ConnectionClosed as e:
                return got, e.rcvd.code, e.rcvd.reason

    async def run():
        return await asyncio.gather(browser(creds[0]), browser(creds[1]))

    (got1, code1, reason1), (got2, code2, _) = asyncio.run(asyncio.wait_for(run(), 40))
    ticks1 = [f"hello {uid1} #1", "tick 1", f"hello {uid1} #2", "tick 2"]
    ticks2 = [f"hello {uid2} #1", "tick 1", f"hello {uid2} #2", "tick 2"]
    # The first user is still in the channel, then killed: 4003.
    assert got1 == ticks1 + ["after leave", "bye"]
    assert (code1, reason1) == (4003, "user killed")
    # The second left the channel: no "after leave"; it stays until the broker stops (1001).
    assert got2 == ticks2 + ["bye"]
    assert code2 == 1001
    p.wait(timeout=10)
    out = p.stdout.read() if p.stdout else ""
    err = p.stderr.read() if p.stderr else ""
    assert p.returncode == 0, err
    for m in SANITIZER_MARKERS:
        assert m not in err, err
    assert out.splitlines() == [
        "errors checked", f"left {uid2}", "state cleared", "killed channel 2", f"killed user {uid1}",
    ], out
