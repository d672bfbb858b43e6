"""Userdata registry and exception hand-off shared by every object that registers a callback.

C gets an integer key as ``userdata``, never a Python object: the registry holds the Python side
(the callable and its error list) alive until the library calls ``userdata_free`` with that key,
however long after the owning object was collected. Exceptions raised by user callbacks run on a
library I/O thread, where nobody could catch them; they are stored and re-raised in the caller's
thread by the owner's next API call or ``close()``.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from typing import Any, Callable, Dict, List, Optional

from . import _ffi

# Enough to report a burst of failures; past it, only the count grows (memory stays bounded).
MAX_STORED_ERRORS = 32

_registry: Dict[int, "Dispatch"] = {}
_registry_lock = threading.Lock()
_keys = itertools.count(1)
_tls = threading.local()


def in_callback() -> bool:
    """True on a thread that is currently running one of our callbacks."""
    return getattr(_tls, "depth", 0) > 0


class Dispatch:
    """The Python side of one registration: the callable, a weak link to its owner, and errors."""

    def __init__(self, owner: Any, fn: Callable[..., None]) -> None:
        self.fn = fn
        self.owner = weakref.ref(owner)
        self._errors: List[BaseException] = []
        self._dropped = 0
        self._lock = threading.Lock()
        with _registry_lock:
            self.key = next(_keys)
            _registry[self.key] = self

    def run(self, *args: Any) -> None:
        """Calls the user's function with the owner first; never lets an exception escape."""
        _tls.depth = getattr(_tls, "depth", 0) + 1
        try:
            owner = self.owner()
            if owner is not None:
                self.fn(owner, *args)
        except BaseException as e:  # noqa: BLE001 - even SystemExit must reach the caller's thread
            with self._lock:
                if len(self._errors) < MAX_STORED_ERRORS:
                    self._errors.append(e)
                else:
                    self._dropped += 1
        finally:
            _tls.depth -= 1

    def raise_pending(self) -> None:
        """Re-raises the first stored exception (the others attached as notes), if any."""
        with self._lock:
            errors, self._errors = self._errors, []
            dropped, self._dropped = self._dropped, 0
        if not errors:
            return
        first = errors[0]
        notes = [f"also raised in a later callback: {type(e).__name__}: {e}" for e in errors[1:]]
        if dropped:
            notes.append(f"{dropped} more callback exceptions were not kept")
        add_note = getattr(first, "add_note", None)  # Python 3.11+
        for note in notes:
            if add_note is not None:
                add_note(note)
        raise first

    def unregister(self) -> None:
        """Drops the registry entry; for registrations the library never took (creation failed)."""
        with _registry_lock:
            _registry.pop(self.key, None)


def lookup(userdata: Optional[int]) -> Optional[Dispatch]:
    if not userdata:
        return None
    with _registry_lock:
        return _registry.get(userdata)


@_ffi.wsb_userdata_free_cb
def userdata_free(userdata: Optional[int]) -> None:
    if userdata:
        with _registry_lock:
            _registry.pop(userdata, None)


def registered_count() -> int:
    """How many registrations the library still holds (for tests of ``userdata_free``)."""
    with _registry_lock:
        return len(_registry)
