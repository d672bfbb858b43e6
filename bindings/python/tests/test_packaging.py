"""`make python-wheel` builds a wheel that carries the library and finds it without WSBROKER_LIB."""

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
REPO = PKG.parents[1]


def test_make_python_wheel_installs_into_a_venv_and_loads_its_library(tmp_path: Path) -> None:
    # The documented recipe itself: `make python-wheel`, into a scratch build directory.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    build = tmp_path / "build"
    r = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "python-wheel", f"BUILD={build}", f"PY={sys.executable}"],
        capture_output=True, text=True, env=env,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (PKG / "wsbroker" / _native.LIBRARY_FILE).exists(), "make python-wheel left the library in the source tree"
    (wheel,) = (build / "wheels").glob("*.whl")
    assert wheel.name.startswith(f"wsbroker-{wsbroker.__version__}-py3-none-")
    assert not wheel.name.endswith("-any.whl")  # platform-tagged: it carries native code
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    assert {f"wsbroker/{_native.LIBRARY_FILE}", "wsbroker/py.typed", "wsbroker/_ffi.py"} <= names

    # A throwaway venv without pip; this interpreter's pip installs into it, offline.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-index", "--no-deps", str(wheel)],
        check=True,
    )
    env = {k: v for k, v in os.environ.items() if k not in ("WSBROKER_LIB", "PYTHONPATH", "VIRTUAL_ENV")}
    code = (
        "import wsbroker, wsbroker._native as n\n"
        "with wsbroker.Server() as s:\n"
        "    assert s.port > 0\n"
        "print(wsbroker.version(), wsbroker.__file__, n.lib()._name)\n"
    )
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    version, module, lib = out.stdout.split()
    assert version == wsbroker.HEADER_VERSION
    # Imported from the venv, with the library bundled next to it (not the source tree's).
    site = Path(module).parent
    assert site.is_relative_to(venv), module
    assert Path(lib) == site / _native.LIBRARY_FILE


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
