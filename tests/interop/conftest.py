"""Fixtures shared by the interop tests.

Every test that takes `start_server` runs once per example (callback mode
`echo_server`, queue mode `echo_poll`), against the ASan+UBSan builds when
`$WSB_BUILD_DIR/asan/` has them. Each server is stopped with SIGTERM at the
end of its test and must exit 0 with no sanitizer report: that check runs in
teardown, so a server that misbehaves on shutdown shows as an error of the
test that used it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness import REPO, ServerProcess, example_binary

EXAMPLES = ("echo_server", "echo_poll")


@pytest.fixture(params=EXAMPLES)
def example(request) -> str:
    return request.param


@pytest.fixture
def start_server(example):
    started: list[ServerProcess] = []

    def start(*options: str, exe: Path | None = None, wrapper=None, startup_timeout=30.0) -> ServerProcess:
        srv = ServerProcess(
            exe or example_binary(example),
            [*options],
            wrapper=wrapper,
            startup_timeout=startup_timeout,
        )
        started.append(srv)
        return srv.start()

    yield start

    errors = []
    for srv in started:
        try:
            srv.check_clean_exit()
        except AssertionError as exc:
            errors.append(str(exc))
        finally:
            srv.kill()
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.fixture(scope="session")
def node_client() -> list[str]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (scripts/setup-test-env.sh installs the test tools)")
    if not (REPO / "node_modules" / "ws").is_dir():
        pytest.fail("node_modules/ws is missing: run scripts/setup-test-env.sh")
    return [node, str(Path(__file__).with_name("ws_client.js"))]


def pytest_collection_modifyitems(items):
    # A hung server must fail its test, not stall the run; tests that need
    # longer (valgrind, many connections) set their own marker.
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(120))
