"""Shared fixtures: the library must be found (WSBROKER_LIB, bundled, or system), never skipped."""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

import wsbroker
from peers import make_pki


@pytest.fixture(scope="session", autouse=True)
def library() -> None:
    try:
        wsbroker.version()
    except wsbroker.LibraryError as e:
        pytest.exit(f"{e}\n(build it with `cargo build --release --lib` and set WSBROKER_LIB)", returncode=2)


class Recorder:
    """An on_event handler that echoes messages and records every event for the test to inspect."""

    def __init__(self, echo: bool = True) -> None:
        self.events: "queue.Queue[wsbroker.Event]" = queue.Queue()
        self.echo = echo
        self.send_results: List[wsbroker.Result] = []

    def __call__(self, server: wsbroker.Server, ev: wsbroker.Event) -> None:
        self.events.put(ev)
        if ev.type == wsbroker.EventType.MESSAGE and self.echo:
            if ev.is_text and ev.text.startswith("/close "):
                _, code, reason = ev.text.split(" ", 2)
                server.close_connection(ev.conn, int(code), reason)
                return
            self.send_results.append(server.send(ev.conn, ev.data, text=ev.is_text))

    def next(self, kind: wsbroker.EventType, timeout: float = 5.0) -> wsbroker.Event:
        """The next event of `kind` (others before it are dropped)."""
        while True:
            ev = self.events.get(timeout=timeout)
            if ev.type == kind:
                return ev


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def echo_server(recorder: Recorder) -> Iterator[wsbroker.Server]:
    with wsbroker.Server(on_event=recorder) as server:
        yield server


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """A CA with a server certificate (127.0.0.1, localhost) and a client certificate, by openssl."""
    return make_pki(tmp_path_factory.mktemp("pki"))
