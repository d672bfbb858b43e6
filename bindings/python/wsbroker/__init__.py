"""Python bindings for libwsbroker, a WebSocket engine and message broker.

>>> import wsbroker
>>> with wsbroker.Server() as server:           # queue mode: no on_event
...     for ev in server.events(timeout=0.01):
...         pass
"""

from ._ffi import HEADER_VERSION, EventType, Result
from ._native import Interrupted, LibraryError, WsbError, last_error, result_str, version
from .server import Event, Server, ServerConfig, Stats

__version__ = "0.1.0"

__all__ = [
    "HEADER_VERSION",
    "Event",
    "EventType",
    "Interrupted",
    "LibraryError",
    "Result",
    "Server",
    "ServerConfig",
    "Stats",
    "WsbError",
    "last_error",
    "result_str",
    "version",
]
