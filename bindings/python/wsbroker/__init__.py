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
from ._ffi import AppwsClientEventType, AppwsServiceEventType, BrokerEventType, Listener, Target
from .appws import (
    AppService,
    AppServiceConfig,
    AppServiceEvent,
    AppWebsocketClient,
    AppWebsocketClientConfig,
    AppWebsocketClientEvent,
    Identity,
    LoginFailed,
)
from .appws import decrypt as appws_decrypt
from .appws import digest as appws_digest
from .appws import encrypt as appws_encrypt
from .appws import hash as appws_hash
from .appws import session_key as appws_session_key
from .broker import Broker, BrokerConfig, BrokerEvent, BrokerStats

__version__ = "0.1.0"

__all__ = [
    "HEADER_VERSION",
    "AppService",
    "AppServiceConfig",
    "AppServiceEvent",
    "AppWebsocketClient",
    "AppWebsocketClientConfig",
    "AppWebsocketClientEvent",
    "AppwsClientEventType",
    "AppwsServiceEventType",
    "Broker",
    "BrokerConfig",
    "BrokerEvent",
    "BrokerEventType",
    "BrokerStats",
    "Identity",
    "Listener",
    "LoginFailed",
    "Target",
    "appws_decrypt",
    "appws_digest",
    "appws_encrypt",
    "appws_hash",
    "appws_session_key",
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
