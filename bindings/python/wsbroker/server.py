"""The WebSocket server: callback mode (a Python callable per event) or queue mode (polled events)."""

from __future__ import annotations

import ctypes
import os
import threading
import time
import warnings
from dataclasses import dataclass, field, fields
from typing import Callable, Iterator, Optional, Sequence, Union

from . import _callbacks, _ffi
from ._ffi import EventType, Result
from ._native import Bytes, Interrupted, WsbError, as_buffer, check, lib, read_sized

# A blocking poll is cut into slices this long so that Ctrl-C (KeyboardInterrupt, which Python
# delivers only between bytecodes of the main thread) stops a waiting program promptly.
_POLL_SLICE_S = 0.25


@dataclass(frozen=True)
class Event:
    """One server event, copied out of the library (it stays valid as long as you keep it).

    ``data`` is the message, ping or pong payload, or the close reason. For CLOSE, ``close_status``
    is the peer's code, 0 for a close frame without one, the code wsbroker sent when it failed the
    connection, the host's own code when ``closed_by_host``, or -1 when the transport dropped.
    ``remote_addr``, ``path`` and ``protocol`` are set on OPEN.
    """

    type: EventType
    conn: int
    data: bytes = b""
    is_text: bool = False
    close_status: int = 0
    closed_by_host: bool = False
    remote_addr: str = ""
    path: str = ""
    protocol: str = ""

    @property
    def text(self) -> str:
        """``data`` decoded as UTF-8 (text messages, close reasons)."""
        return self.data.decode("utf-8")

    @property
    def message(self) -> Union[str, bytes]:
        """A MESSAGE as ``str`` when it is text, ``bytes`` when binary."""
        return self.text if self.is_text else self.data

    @classmethod
    def _from_native(cls, ev: _ffi.wsb_event) -> "Event":
        def s(p: Optional[bytes]) -> str:
            return p.decode("utf-8", "replace") if p else ""

        try:
            kind: EventType = EventType(ev.kind)
        except ValueError:
            # A newer library may add event types (the enum is append-only); pass them on as ints.
            kind = ev.kind  # type: ignore[assignment]
        return cls(
            type=kind,
            conn=ev.conn,
            data=ctypes.string_at(ev.data, ev.len) if ev.len else b"",
            is_text=bool(ev.is_text),
            close_status=ev.close_status,
            closed_by_host=bool(ev.closed_by_host),
            remote_addr=s(ev.remote_addr),
            path=s(ev.path),
            protocol=s(ev.protocol),
        )


@dataclass(frozen=True)
class Stats:
    """Server counters (see ``wsb_stats``)."""

    connections_open: int
    connections_total: int
    messages_in: int
    bytes_in: int
    messages_out: int
    bytes_out: int
    slow_consumers_closed: int
    handshakes_failed: int


@dataclass
class ServerConfig:
    """Server settings; ``None`` keeps the library default (documented in the README table).

    Times are in milliseconds and sizes in bytes, as in the C API. ``outbound_limits`` is
    ``(soft, hard)``. ``tls`` is ``(cert_chain_pem_path, key_pem_path)``: the server then serves
    ``wss://`` (the files are read when the server is created; a bad file raises ``WsbError``
    ``INVALID_ARGUMENT`` naming it).
    """

    bind: str = "127.0.0.1:0"
    threads: Optional[int] = None
    max_message_size: Optional[int] = None
    max_frame_size: Optional[int] = None
    handshake_timeout_ms: Optional[int] = None
    ping_interval_ms: Optional[int] = None
    idle_timeout_ms: Optional[int] = None
    close_timeout_ms: Optional[int] = None
    max_connections: Optional[int] = None
    outbound_limits: Optional[tuple[int, int]] = None
    refuse_on_overflow: Optional[bool] = None
    allowed_origins: Sequence[str] = field(default_factory=tuple)
    subprotocols: Sequence[str] = field(default_factory=tuple)
    path: Optional[str] = None
    event_queue_capacity: Optional[int] = None
    tls: Optional[tuple[Union[str, "os.PathLike[str]"], Union[str, "os.PathLike[str]"]]] = None

    def _build(self) -> "ctypes._Pointer[_ffi.wsb_server_config]":
        """A native configuration the caller must free with ``wsb_server_config_free``."""
        L = lib()
        cfg = L.wsb_server_config_new()
        if not cfg:
            raise MemoryError("wsb_server_config_new")
        try:
            check(L.wsb_server_config_set_bind(cfg, self.bind.encode()), "wsb_server_config_set_bind")
            simple = {
                "threads": L.wsb_server_config_set_threads,
                "max_message_size": L.wsb_server_config_set_max_message_size,
                "max_frame_size": L.wsb_server_config_set_max_frame_size,
                "handshake_timeout_ms": L.wsb_server_config_set_handshake_timeout_ms,
                "ping_interval_ms": L.wsb_server_config_set_ping_interval_ms,
                "idle_timeout_ms": L.wsb_server_config_set_idle_timeout_ms,
                "close_timeout_ms": L.wsb_server_config_set_close_timeout_ms,
                "max_connections": L.wsb_server_config_set_max_connections,
                "refuse_on_overflow": L.wsb_server_config_set_refuse_on_overflow,
                "event_queue_capacity": L.wsb_server_config_set_event_queue_capacity,
            }
            for name, setter in simple.items():
                value = getattr(self, name)
                if value is not None:
                    check(setter(cfg, value), setter.__name__)
            if self.outbound_limits is not None:
                soft, hard = self.outbound_limits
                check(L.wsb_server_config_set_outbound_limits(cfg, soft, hard), "wsb_server_config_set_outbound_limits")
            for origin in self.allowed_origins:
                check(L.wsb_server_config_add_allowed_origin(cfg, origin.encode()), "wsb_server_config_add_allowed_origin")
            for proto in self.subprotocols:
                check(L.wsb_server_config_add_subprotocol(cfg, proto.encode()), "wsb_server_config_add_subprotocol")
            if self.path is not None:
                check(L.wsb_server_config_set_path(cfg, self.path.encode()), "wsb_server_config_set_path")
            if self.tls is not None:
                cert, key = self.tls
                check(L.wsb_server_config_set_tls(cfg, os.fsencode(cert), os.fsencode(key)), "wsb_server_config_set_tls")
        except BaseException:
            L.wsb_server_config_free(cfg)
            raise
        return cfg


EventHandler = Callable[["Server", Event], None]


@_ffi.wsb_server_event_cb
def _on_server_event(userdata: Optional[int], _server: object, event: "ctypes._Pointer[_ffi.wsb_event]") -> None:
    d = _callbacks.lookup(userdata)
    if d is not None:
        # Copy inside the guarded call: the event's pointers die when this function returns.
        d.run(Event._from_native(event.contents))


class Server:
    """A running WebSocket server (``wsb_server``).

    With ``on_event``, events are delivered by calling ``on_event(server, event)`` on a library I/O
    thread (callback mode): it must not block; it may call any method except :meth:`close`. An
    exception it raises is kept and re-raised by the next method call on this server from another
    thread, or by :meth:`close`. Without ``on_event``, events wait in a queue for :meth:`poll` or
    :meth:`events` (queue mode).

    Use it as a context manager, or call :meth:`close`. ``send``, ``ping``, ``close_connection``,
    ``is_valid``, ``port``, ``stats``, ``last_error`` and ``interrupt`` are safe from any thread.
    """

    def __init__(self, config: Optional[ServerConfig] = None, *, on_event: Optional[EventHandler] = None) -> None:
        self._close_lock = threading.Lock()
        self._ptr: Optional["ctypes._Pointer[_ffi.wsb_server]"] = None
        self._dispatch: Optional[_callbacks.Dispatch] = None
        L = lib()
        cfg = (config or ServerConfig())._build()
        out = ctypes.POINTER(_ffi.wsb_server)()
        try:
            if on_event is not None:
                self._dispatch = _callbacks.Dispatch(self, on_event)
                r = L.wsb_server_new(
                    cfg, _on_server_event, self._dispatch.key, _callbacks.userdata_free, ctypes.byref(out)
                )
            else:
                # Null function pointers: ctypes refuses None for a CFUNCTYPE argument.
                r = L.wsb_server_new(
                    cfg, _ffi.wsb_server_event_cb(), None, _ffi.wsb_userdata_free_cb(), ctypes.byref(out)
                )
        finally:
            L.wsb_server_config_free(cfg)
        # On failure the library has already called userdata_free, which dropped the registration.
        check(r, "wsb_server_new")
        self._ptr = out

    # -- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stops the server (every connection gets close 1001), waits for its threads, and frees it.

        Idempotent. Then re-raises any exception a callback left behind. Not allowed from this
        server's own callback (raises ``WsbError`` with ``Result.REENTRANT``).
        """
        with self._close_lock:
            ptr = self._ptr
            if ptr is not None:
                L = lib()
                # Let a thread blocked in poll() return at once rather than at its slice end.
                L.wsb_server_interrupt(ptr)
                r = L.wsb_server_free(ptr)
                if r != Result.NOT_FOUND:
                    check(r, "wsb_server_free")
                self._ptr = None
        self._raise_pending()

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        ptr = getattr(self, "_ptr", None)
        if ptr is None:
            return
        warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=1)
        try:
            if lib().wsb_server_free(ptr) == Result.REENTRANT:
                # Collected on the server's own I/O thread (the last reference died in a callback):
                # the free has to happen elsewhere.
                threading.Thread(target=lib().wsb_server_free, args=(ptr,), daemon=True).start()
        except Exception:  # noqa: BLE001 - interpreter shutdown may have torn down ctypes
            pass

    def __repr__(self) -> str:
        state = "closed" if self._ptr is None else f"port {self.port}"
        mode = "callback" if self._dispatch is not None else "queue"
        return f"<wsbroker.Server {mode} mode, {state}>"

    # -- helpers ------------------------------------------------------------------------------

    def _raise_pending(self) -> None:
        if self._dispatch is not None and not _callbacks.in_callback():
            self._dispatch.raise_pending()

    def _live(self) -> "ctypes._Pointer[_ffi.wsb_server]":
        self._raise_pending()
        ptr = self._ptr
        if ptr is None:
            raise WsbError(Result.SHUT_DOWN, "the server is closed")
        return ptr

    # -- connections --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the server listens on (the real one when port 0 was asked)."""
        return int(lib().wsb_server_port(self._live()))

    def send(self, conn: int, data: Union[str, Bytes], *, text: Optional[bool] = None) -> Result:
        """Queues one message. ``str`` goes as text, bytes-like as binary unless ``text=True``.

        Returns ``Result.OK``, or ``Result.BACKPRESSURE`` when queued but the outbound buffer is
        above its soft limit (a DRAIN event follows). Raises :class:`WsbError` otherwise (CLOSED,
        NOT_FOUND for a stale id, INVALID_UTF8, SLOW_CONSUMER, WOULD_OVERFLOW, ...).
        """
        ptr = self._live()
        if isinstance(data, str):
            payload: Bytes = data.encode("utf-8")
            is_text = True if text is None else text
        else:
            payload, is_text = data, bool(text)
        buf, n = as_buffer(payload)
        r = lib().wsb_server_write(ptr, conn, buf, n, is_text)
        return Result.BACKPRESSURE if r == Result.BACKPRESSURE else check(r, "wsb_server_write")

    def ping(self, conn: int, payload: Union[str, Bytes] = b"") -> Result:
        """Sends a ping (payload ≤ 125 bytes). Same results as :meth:`send`."""
        ptr = self._live()
        buf, n = as_buffer(payload.encode("utf-8") if isinstance(payload, str) else payload)
        r = lib().wsb_server_ping(ptr, conn, buf, n)
        return Result.BACKPRESSURE if r == Result.BACKPRESSURE else check(r, "wsb_server_ping")

    def close_connection(self, conn: int, code: int = 1000, reason: str = "") -> None:
        """Starts the closing handshake (reason ≤ 123 UTF-8 bytes); a CLOSE event follows."""
        check(lib().wsb_server_close(self._live(), conn, code, reason.encode("utf-8")), "wsb_server_close")

    def is_valid(self, conn: int) -> bool:
        """True from OPEN until ``close_connection`` or the end of the connection."""
        return bool(lib().wsb_server_is_valid(self._live(), conn))

    def stats(self) -> Stats:
        out = _ffi.wsb_stats()
        check(lib().wsb_server_stats(self._live(), ctypes.byref(out)), "wsb_server_stats")
        return Stats(**{f.name: int(getattr(out, f.name)) for f in fields(Stats)})

    def last_error(self) -> str:
        """The detail of the last failed call on this server, from whichever thread made it
        (``""`` if none); :func:`wsbroker.last_error` is the calling thread's instead."""
        ptr = self._live()
        return read_sized(lambda buf, n, needed: lib().wsb_server_last_error(ptr, buf, n, needed))

    # -- queue mode ---------------------------------------------------------------------------

    def poll(self, timeout: Optional[float] = None) -> Optional[Event]:
        """Queue mode: the next event, waiting up to ``timeout`` seconds (None: forever).

        Returns None when the time ran out. Raises :class:`Interrupted` after :meth:`interrupt`,
        and ``WsbError`` (INVALID_STATE) in callback mode. Poll from one thread at a time.
        """
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        out = _ffi.wsb_event()
        while True:
            ptr = self._live()
            left = _POLL_SLICE_S if deadline is None else min(_POLL_SLICE_S, max(deadline - time.monotonic(), 0.0))
            r = lib().wsb_server_poll(ptr, int(left * 1000), ctypes.byref(out))
            if r == Result.OK:
                return Event._from_native(out)
            if r != Result.TIMEOUT:
                if self._ptr is None:
                    raise Interrupted(Result.SHUT_DOWN, "the server was closed while polling", "wsb_server_poll")
                check(r, "wsb_server_poll")
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def events(self, timeout: Optional[float] = None) -> Iterator[Event]:
        """Queue mode: yields events until none comes for ``timeout`` seconds (None: until
        :meth:`interrupt` or :meth:`close` from another thread)."""
        while True:
            try:
                ev = self.poll(timeout)
            except Interrupted:
                return
            except WsbError:
                if self.closed:
                    return
                raise
            if ev is None:
                return
            yield ev

    def interrupt(self) -> None:
        """Makes the current (or next) :meth:`poll` raise :class:`Interrupted`; :meth:`events` ends."""
        check(lib().wsb_server_interrupt(self._live()), "wsb_server_interrupt")
