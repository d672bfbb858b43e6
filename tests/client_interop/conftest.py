"""Fixtures for the client interop tests.

The probe (probe.c) is compiled once per session under ASan+UBSan against
`$WSB_LIBDIR/libwsbroker.a` (default target/release), into
`$WSB_BUILD_DIR/client_interop/`. Test certificates are made with the
openssl command once per session.
"""

from __future__ import annotations

import pytest

from client_harness import HERE, LineProcess, Peer, build_dir, compile_c, make_pki


@pytest.fixture(scope="session")
def probe_exe():
    return compile_c(HERE / "probe.c", build_dir() / "client_interop" / "probe", asan=True)


@pytest.fixture(scope="session")
def example_client():
    exe = build_dir() / "asan" / "client"
    if not exe.is_file():
        pytest.fail(f"{exe} is missing: build the examples first (make examples, with client in EXAMPLES)")
    return exe


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def processes():
    """Registers child processes; kills stragglers and checks sanitizer output at teardown."""
    started: list[LineProcess] = []
    yield started
    for p in started:
        p.kill()
    for p in started:
        p.check_sanitizers()


@pytest.fixture
def peer(processes):
    def start(**kw) -> Peer:
        p = Peer(**kw)
        processes.append(p)
        return p

    return start


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(120))
