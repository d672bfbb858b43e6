"""Python bindings for libwsbroker, a WebSocket engine and message broker.

>>> import wsbroker
>>> with wsbroker.Server() as server:           # queue mode: no on_event
...     for ev in server.events(timeout=0.01):
...         pass
>>> with wsbroker.Client("ws://127.0.0.1:1/") as client:
...     for ev in client.events(timeout=5):     # ERROR (CONNECTION_REFUSED) ends it
...         pass
"""

from ._ffi import HEADER_VERSION, EventType, Result
from ._native import Interrupted, LibraryError, WsbError, last_error, result_str, version
from .client import Client, ClientConfig, ClientEvent, ClientEventType, ConnectError, Reconnect
from .server import Event, Server, ServerConfig, Stats

__version__ = "0.1.0"

__all__ = [
    "HEADER_VERSION",
    "Client",
    "ClientConfig",
    "ClientEvent",
    "ClientEventType",
    "ConnectError",
    "Event",
    "EventType",
    "Interrupted",
    "LibraryError",
    "Reconnect",
    "Result",
    "Server",
    "ServerConfig",
    "Stats",
    "WsbError",
    "last_error",
    "result_str",
    "version",
]
