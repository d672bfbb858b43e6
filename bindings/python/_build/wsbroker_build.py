"""A PEP 517 build backend for the wsbroker package that needs only the standard library.

It packs ``wsbroker/`` as it is: the generated ctypes module, ``py.typed``, and the native library if
``make python-wheel`` copied one in. A wheel with a native library is tagged ``py3-none-<platform>``
(the library is called through ctypes, so any CPython 3 can use it); without one it is
``py3-none-any`` and the library is found through ``WSBROKER_LIB`` or the system path.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import sysconfig
import tarfile
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "wsbroker"
NATIVE = ("libwsbroker.so", "libwsbroker.dylib", "wsbroker.dll")


def _project() -> Dict[str, str]:
    text = (ROOT / "pyproject.toml").read_text()
    try:
        import tomllib

        p = tomllib.loads(text)["project"]
        return {k: v for k, v in p.items() if isinstance(v, str)}
    except ImportError:  # Python < 3.11: the [project] table holds only simple strings we need
        section = text.split("[project]", 1)[1].split("\n[", 1)[0]
        return dict(re.findall(r'^([\w-]+)\s*=\s*"([^"]*)"', section, re.M))


def _metadata() -> str:
    p = _project()
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {p['name']}",
        f"Version: {p['version']}",
        f"Summary: {p.get('description', '')}",
        f"Requires-Python: {p.get('requires-python', '>=3')}",
        "License: MIT OR Apache-2.0",
        "Classifier: Typing :: Typed",
    ]
    readme = ROOT / "README.md"
    body = ""
    if readme.exists():
        lines.append("Description-Content-Type: text/markdown")
        body = "\n" + readme.read_text()
    return "\n".join(lines) + "\n" + body


def _files() -> List[Path]:
    out = []
    for path in sorted(PACKAGE.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
            out.append(path)
    return out


def _tag(has_native: bool) -> str:
    if not has_native:
        return "py3-none-any"
    return "py3-none-" + re.sub(r"[^\w]", "_", sysconfig.get_platform())


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _write_wheel(directory: str, entries: List[Tuple[str, bytes]], tag: str) -> str:
    p = _project()
    dist = f"{p['name']}-{p['version']}"
    name = f"{dist}-{tag}.whl"
    info = f"{dist}.dist-info"
    wheel = f"Wheel-Version: 1.0\nGenerator: wsbroker_build\nRoot-Is-Purelib: {'true' if tag.endswith('any') else 'false'}\nTag: {tag}\n"
    entries = entries + [(f"{info}/METADATA", _metadata().encode()), (f"{info}/WHEEL", wheel.encode())]
    record = [_record_line(n, d) for n, d in entries] + [f"{info}/RECORD,,"]
    entries.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode()))
    with zipfile.ZipFile(os.path.join(directory, name), "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in entries:
            zi = zipfile.ZipInfo(n, date_time=(1980, 1, 1, 0, 0, 0))
            # Keep the executable bit on the shared library, plain read/write elsewhere.
            zi.external_attr = (0o755 if n.endswith(NATIVE) else 0o644) << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, d)
    return name


def get_requires_for_build_wheel(config_settings: Optional[dict] = None) -> List[str]:
    return []


def get_requires_for_build_editable(config_settings: Optional[dict] = None) -> List[str]:
    return []


def get_requires_for_build_sdist(config_settings: Optional[dict] = None) -> List[str]:
    return []


def build_wheel(wheel_directory: str, config_settings: Optional[dict] = None, metadata_directory: Optional[str] = None) -> str:
    files = _files()
    entries = [(f.relative_to(ROOT).as_posix(), f.read_bytes()) for f in files]
    return _write_wheel(wheel_directory, entries, _tag(any(f.name in NATIVE for f in files)))


def build_editable(wheel_directory: str, config_settings: Optional[dict] = None, metadata_directory: Optional[str] = None) -> str:
    # A .pth line puts the source tree on sys.path: edits (and a regenerated _ffi.py) apply at once.
    return _write_wheel(wheel_directory, [("wsbroker_editable.pth", (str(ROOT) + "\n").encode())], "py3-none-any")


def build_sdist(sdist_directory: str, config_settings: Optional[dict] = None) -> str:
    p = _project()
    dist = f"{p['name']}-{p['version']}"
    name = f"{dist}.tar.gz"
    members = [ROOT / "pyproject.toml", ROOT / "_build" / "wsbroker_build.py"]
    members += [f for f in _files() if f.name not in NATIVE]
    if (ROOT / "README.md").exists():
        members.append(ROOT / "README.md")
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz", format=tarfile.PAX_FORMAT) as t:
        for f in members:
            t.add(str(f), f"{dist}/{f.relative_to(ROOT).as_posix()}")
        pkg_info = _metadata().encode()
        ti = tarfile.TarInfo(f"{dist}/PKG-INFO")
        ti.size = len(pkg_info)
        t.addfile(ti, io.BytesIO(pkg_info))
    return name
