"""The package builds into a wheel that carries the library and finds it without WSBROKER_LIB."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import wsbroker
from wsbroker import _native

PKG = Path(__file__).resolve().parents[1]


def test_wheel_bundles_and_loads_the_library(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(PKG, src, ignore=shutil.ignore_patterns("__pycache__", "tests", "dist", "*.so"))
    shutil.copy(_native.lib()._name, src / "wsbroker" / _native.LIBRARY_FILE)
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", "--no-index", "-w", str(dist), str(src)],
        check=True,
    )
    (wheel,) = dist.glob("*.whl")
    assert wheel.name.startswith(f"wsbroker-{wsbroker.__version__}-py3-none-")
    assert not wheel.name.endswith("-any.whl")  # platform-tagged: it carries native code
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    assert {f"wsbroker/{_native.LIBRARY_FILE}", "wsbroker/py.typed", "wsbroker/_ffi.py"} <= names

    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
    )
    env = {k: v for k, v in os.environ.items() if k not in ("WSBROKER_LIB", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    code = (
        "import wsbroker, wsbroker._native as n\n"
        "with wsbroker.Server() as s:\n"
        "    assert s.port > 0\n"
        "print(wsbroker.version(), n.lib()._name)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    version, path = out.stdout.split()
    assert version == wsbroker.HEADER_VERSION
    assert Path(path) == site / "wsbroker" / _native.LIBRARY_FILE


def test_wheel_without_library_is_pure(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(PKG, src, ignore=shutil.ignore_patterns("__pycache__", "tests", "dist", "*.so"))
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", "--no-index", "-w", str(dist), str(src)],
        check=True,
    )
    (wheel,) = dist.glob("*.whl")
    assert wheel.name == f"wsbroker-{wsbroker.__version__}-py3-none-any.whl"
