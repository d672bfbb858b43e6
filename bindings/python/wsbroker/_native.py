"""Finding, loading and checking libwsbroker; result codes as exceptions.

The library is loaded once, on first use, from the first of:

1. the file named by the environment variable ``WSBROKER_LIB`` (nothing else is tried when it is set,
   so a wrong path fails loudly instead of silently picking up another copy);
2. the copy bundled inside this package (``make python-wheel`` puts it there);
3. the system search path (``ctypes.util.find_library("wsbroker")``).

Before any function is declared, ``wsb_version()`` must equal the version of the header these
bindings were generated from: a mismatched library would otherwise be called with wrong signatures.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Optional, Tuple, Union

from . import _ffi
from ._ffi import Result

if sys.platform == "darwin":
    LIBRARY_FILE = "libwsbroker.dylib"
elif sys.platform == "win32":
    LIBRARY_FILE = "wsbroker.dll"
else:
    LIBRARY_FILE = "libwsbroker.so"

_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None


class LibraryError(ImportError):
    """libwsbroker could not be found or loaded, or it is not the version the bindings expect."""


class WsbError(Exception):
    """A ``wsb_`` call failed. ``code`` is the :class:`Result`, ``detail`` the ``wsb_last_error`` text."""

    def __init__(self, code: Union[Result, int], detail: str = "", function: str = "") -> None:
        self.code = code
        self.detail = detail
        self.function = function
        name = code.name if isinstance(code, Result) else f"result {code}"
        text = f"{function}: {name}" if function else name
        super().__init__(f"{text} ({detail})" if detail else text)


class Interrupted(WsbError):
    """A wait was cut short by :meth:`Server.interrupt`."""


def load_library(path: Union[str, os.PathLike]) -> ctypes.CDLL:
    """Loads the library at ``path``, checks its version and declares every function.

    Raises :class:`LibraryError` if it cannot be loaded, lacks a function, or has another version.
    """
    try:
        lib = ctypes.CDLL(os.fspath(path))
    except OSError as e:
        raise LibraryError(f"cannot load {path}: {e}") from e
    try:
        lib.wsb_version.restype = ctypes.c_char_p
        lib.wsb_version.argtypes = []
        lib.wsb_version_number.restype = ctypes.c_uint32
        lib.wsb_version_number.argtypes = []
    except AttributeError as e:
        raise LibraryError(f"{path} is not libwsbroker: {e}") from e
    version = (lib.wsb_version() or b"").decode("utf-8", "replace")
    number = lib.wsb_version_number()
    if version != _ffi.HEADER_VERSION or number != _ffi.HEADER_VERSION_NUMBER:
        raise LibraryError(
            f"{path} is libwsbroker {version} ({number}); these bindings were generated from the "
            f"{_ffi.HEADER_VERSION} ({_ffi.HEADER_VERSION_NUMBER}) header"
        )
    try:
        _ffi.bind(lib)
    except AttributeError as e:
        raise LibraryError(f"{path} lacks a function of the {_ffi.HEADER_VERSION} header: {e}") from e
    return lib


def _candidates() -> Tuple[str, ...]:
    env = os.environ.get("WSBROKER_LIB")
    if env:
        return (env,)
    found = []
    bundled = Path(__file__).resolve().parent / LIBRARY_FILE
    if bundled.exists():
        found.append(str(bundled))
    system = ctypes.util.find_library("wsbroker")
    if system:
        found.append(system)
    return tuple(found)


def lib() -> ctypes.CDLL:
    """The loaded library (loaded on the first call; later calls return the same object)."""
    global _lib
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is None:
            candidates = _candidates()
            if not candidates:
                raise LibraryError(
                    f"libwsbroker not found: set WSBROKER_LIB to the path of {LIBRARY_FILE}, "
                    "install a wheel built by `make python-wheel`, or put it on the system library path"
                )
            _lib = load_library(candidates[0])
    return _lib


def read_sized(call: Callable[[Any, int, Any], int]) -> str:
    """The string a ``call(buf, len, &needed)`` copies out, growing ``buf`` while it reports
    BUFFER_TOO_SMALL; ``""`` on any other failure."""
    needed = ctypes.c_size_t(0)
    size = 256
    for _ in range(3):
        buf = ctypes.create_string_buffer(size)
        r = call(buf, size, ctypes.byref(needed))
        if r == Result.OK:
            return buf.value.decode("utf-8", "replace")
        if r != Result.BUFFER_TOO_SMALL:
            return ""
        size = max(needed.value, size * 2)
    return ""


def last_error() -> str:
    """The detail of the most recent failed ``wsb_`` call on this thread (``""`` if none)."""
    return read_sized(lib().wsb_last_error)


def check(code: int, function: str) -> Result:
    """Returns ``Result.OK``; raises :class:`WsbError` (with the thread's last error) for anything else."""
    if code == Result.OK:
        return Result.OK
    detail = last_error()
    try:
        r: Union[Result, int] = Result(code)
    except ValueError:
        r = code
    cls = Interrupted if r == Result.INTERRUPTED else WsbError
    raise cls(r, detail, function)


def result_str(code: int) -> str:
    """The library's description of a result code."""
    return (lib().wsb_result_str(code) or b"").decode("utf-8", "replace")


def version() -> str:
    """The loaded library's version, ``"MAJOR.MINOR.PATCH"``."""
    return (lib().wsb_version() or b"").decode("utf-8", "replace")


Bytes = Union[bytes, bytearray, memoryview]


def as_buffer(data: Bytes) -> Tuple[object, int]:
    """A ctypes-passable pointer to ``data`` and its length, without copying bytes or writable buffers."""
    if isinstance(data, bytes):
        return data, len(data)
    mv = memoryview(data)
    if not mv.contiguous:
        b = mv.tobytes()
        return b, len(b)
    n = mv.nbytes
    if n == 0:
        return None, 0
    if mv.readonly:
        b = mv.tobytes()
        return b, n
    return (ctypes.c_char * n).from_buffer(mv.cast("B")), n
