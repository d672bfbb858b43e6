"""The lifetime plumbing shared by the AppWebsocket client, the app service and the broker.

Each owns one native pointer freed by ``free_fn`` (``wsb_*_free``), optionally one callback
registration (:class:`_callbacks.Dispatch`), and follows the Server/Client rules: ``close()`` is
idempotent and re-raises what a callback left behind, every other call first re-raises it too,
and an unclosed object is freed by the garbage collector with a ResourceWarning.
"""

from __future__ import annotations

import ctypes
import threading
import time
import warnings
from typing import Any, Callable, Optional

from . import _callbacks
from ._ffi import Result
from ._native import Interrupted, WsbError, check, lib, read_sized

# As in server.py: a blocking poll is cut into slices so Ctrl-C stops a waiting program promptly.
POLL_SLICE_S = 0.25


class Owned:
    _free_name = ""  # the wsb_*_free function
    _interrupt_name: Optional[str] = None  # the wsb_*_interrupt function, for queue mode
    _last_error_name = ""  # the wsb_*_last_error function
    _what = "object"

    def __init__(self) -> None:
        self._close_lock = threading.Lock()
        self._ptr: Any = None
        self._dispatch: Optional[_callbacks.Dispatch] = None

    def close(self) -> None:
        """Frees the native object (idempotent), then re-raises any exception a callback left behind.
        Not allowed from the object's own callback (``WsbError`` with ``Result.REENTRANT``)."""
        with self._close_lock:
            ptr = self._ptr
            if ptr is not None:
                L = lib()
                if self._dispatch is None and self._interrupt_name is not None:
                    # Let a thread blocked in poll() return at once rather than at its slice end.
                    getattr(L, self._interrupt_name)(ptr)
                r = getattr(L, self._free_name)(ptr)
                if r != Result.NOT_FOUND:
                    check(r, self._free_name)
                self._ptr = None
        self._closed_hook()
        self._raise_pending()

    def _closed_hook(self) -> None:
        pass

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        ptr = getattr(self, "_ptr", None)
        if ptr is None:
            return
        warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=1)
        try:
            free = getattr(lib(), self._free_name)
            if free(ptr) == Result.REENTRANT:
                # Collected on the object's own library thread: free it from another.
                threading.Thread(target=free, args=(ptr,), daemon=True).start()
        except Exception:  # noqa: BLE001 - interpreter shutdown may have torn down ctypes
            pass

    def _raise_pending(self) -> None:
        if self._dispatch is not None and not _callbacks.in_callback():
            self._dispatch.raise_pending()

    def _live(self) -> Any:
        self._raise_pending()
        ptr = self._ptr
        if ptr is None:
            raise WsbError(Result.SHUT_DOWN, f"the {self._what} is closed")
        return ptr

    def last_error(self) -> str:
        """The detail of the last failed call on this object, from whichever thread made it
        (``""`` if none); :func:`wsbroker.last_error` is the calling thread's instead."""
        ptr = self._live()
        fn = getattr(lib(), self._last_error_name)
        return read_sized(lambda buf, n, needed: fn(ptr, buf, n, needed))

    def _poll_native(self, poll_fn: Callable[..., int], name: str, out: Any, timeout: Optional[float]) -> bool:
        """Polls in slices until an event (True) or ``timeout`` seconds (False)."""
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        while True:
            ptr = self._live()
            left = POLL_SLICE_S if deadline is None else min(POLL_SLICE_S, max(deadline - time.monotonic(), 0.0))
            r = poll_fn(ptr, int(left * 1000), ctypes.byref(out))
            if r == Result.OK:
                return True
            if r != Result.TIMEOUT:
                if self._ptr is None:
                    raise Interrupted(Result.SHUT_DOWN, f"the {self._what} was closed while polling", name)
                check(r, name)
            if deadline is not None and time.monotonic() >= deadline:
                return False


def send_result(r: int, function: str) -> Result:
    """BACKPRESSURE is a success (queued above the soft limit); everything else but OK raises."""
    return Result.BACKPRESSURE if r == Result.BACKPRESSURE else check(r, function)


def no_nul(value: str, what: str, function: str) -> bytes:
    if "\0" in value:
        raise WsbError(Result.INVALID_ARGUMENT, f"{what} contains a NUL character", function)
    return value.encode("utf-8")


def opt_str(value: Optional[str], what: str, function: str) -> Optional[bytes]:
    return None if value is None else no_nul(value, what, function)


def cstr(p: Optional[bytes]) -> str:
    return p.decode("utf-8", "replace") if p else ""
