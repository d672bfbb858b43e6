"""The WebSocket client: callback mode (a Python callable per event) or queue mode (polled events)."""

from __future__ import annotations

import ctypes
import enum
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence, Tuple, Union

from . import _callbacks, _connection, _ffi
from ._ffi import Result
from ._native import Bytes, Interrupted, WsbError, as_buffer, check, lib, read_sized

try:  # generated once include/wsbroker.h exports the enum
    from ._ffi import ClientEventType  # type: ignore[attr-defined]
except ImportError:

    class ClientEventType(enum.IntEnum):  # type: ignore[no-redef]
        """``wsb_client_event_type`` values (src/ffi/client.rs; a test checks them)."""

        CONNECTED = 1
        MESSAGE = 2
        PONG = 3
        SENT = 4
        DRAIN = 5
        CLOSED = 6
        ERROR = 7
        RECONNECTING = 8
        GAVE_UP = 9


# As in server.py: a blocking poll is cut into slices so Ctrl-C stops a waiting program promptly.
_POLL_SLICE_S = 0.25

PathLike = _connection.PathLike


class ConnectError(WsbError):
    """A connection attempt failed before it opened (an ERROR event).

    ``code`` is the :class:`Result` saying why (``CONNECTION_REFUSED``, ``CERTIFICATE_INVALID``,
    ``HANDSHAKE_FAILED``, ``CONNECT_TIMEOUT``, ...), ``detail`` the library's message.
    """


@dataclass(frozen=True)
class ClientEvent:
    """One client event, copied out of the library (it stays valid as long as you keep it).

    ``data`` is the message, the pong payload, the close reason or the error message. For CLOSED,
    ``close_status`` is the server's code, 0 for a close frame without one, the code wsbroker sent
    when it failed the connection, the host's own code when ``closed_by_host``, or -1 when the
    transport dropped. ``error`` is set on ERROR, ``attempt`` and ``delay_ms`` on RECONNECTING,
    ``attempt`` (the attempts made) on GAVE_UP, ``protocol`` on CONNECTED.
    """

    type: ClientEventType
    data: bytes = b""
    is_text: bool = False
    close_status: int = 0
    closed_by_host: bool = False
    error: Optional[Result] = None
    attempt: int = 0
    delay_ms: int = 0
    protocol: str = ""

    @property
    def text(self) -> str:
        """``data`` decoded as UTF-8 (text messages, close reasons, error messages)."""
        return self.data.decode("utf-8")

    @property
    def message(self) -> Union[str, bytes]:
        """A MESSAGE as ``str`` when it is text, ``bytes`` when binary."""
        return self.text if self.is_text else self.data

    @property
    def exception(self) -> Optional[ConnectError]:
        """For an ERROR event, the :class:`ConnectError` it stands for (to raise or log); else None."""
        if self.type != ClientEventType.ERROR:
            return None
        code: Union[Result, int] = self.error if self.error is not None else 0
        return ConnectError(code, self.data.decode("utf-8", "replace"), "connect")

    @classmethod
    def _from_native(cls, ev: _ffi.wsb_client_event) -> "ClientEvent":
        try:
            kind: ClientEventType = ClientEventType(ev.kind)
        except ValueError:
            # The enum is append-only: pass newer types on as ints.
            kind = ev.kind  # type: ignore[assignment]
        error: Optional[Result] = None
        if kind == ClientEventType.ERROR:
            try:
                error = Result(ev.error)
            except ValueError:
                error = ev.error  # type: ignore[assignment]
        return cls(
            type=kind,
            data=ctypes.string_at(ev.data, ev.len) if ev.len else b"",
            is_text=bool(ev.is_text),
            close_status=ev.close_status,
            closed_by_host=bool(ev.closed_by_host),
            error=error,
            attempt=ev.attempt,
            delay_ms=ev.delay_ms,
            protocol=ev.protocol.decode("utf-8", "replace") if ev.protocol else "",
        )


@dataclass(frozen=True)
class Reconnect:
    """Automatic reconnection: delays start at ``initial_ms``, double up to ``max_ms`` (±20 % jitter),
    at most ``max_attempts`` in a row (0: no limit). Each attempt is announced by a RECONNECTING event;
    after ``max_attempts`` failures a GAVE_UP event says that no more will come."""

    initial_ms: int = 500
    max_ms: int = 30_000
    max_attempts: int = 0


_CONNECTION_SETTERS = _connection.Setters(
    add_header="wsb_client_config_add_header",
    set_connect_timeout_ms="wsb_client_config_set_connect_timeout_ms",
    set_ca_file="wsb_client_config_set_ca_file",
    set_system_roots="wsb_client_config_set_system_roots",
    set_client_cert="wsb_client_config_set_client_cert",
    set_insecure="wsb_client_config_set_insecure",
    set_proxy="wsb_client_config_set_proxy",
)


@dataclass
class ClientConfig:
    """Client settings; ``None`` keeps the library default.

    Defaults: 10 s connect timeout, the system's root certificates, the proxy from the environment
    (never for loopback hosts), no reconnection, automatic flow control, no SENT events, 16 MiB
    messages, 30 s pings. ``proxy=""`` disables proxies, the environment's included.
    ``manual_complete=True`` holds each further message until :meth:`Client.message_complete`.
    ``insecure=True`` accepts any server certificate (development only).
    """

    headers: _connection.Headers = ()
    subprotocols: Sequence[str] = ()
    connect_timeout_ms: Optional[int] = None
    ca_file: Optional[PathLike] = None
    system_roots: Optional[bool] = None
    client_cert: Optional[Tuple[PathLike, PathLike]] = None
    insecure: Optional[bool] = None
    proxy: Optional[str] = None
    reconnect: Optional[Reconnect] = None
    manual_complete: Optional[bool] = None
    send_results: Optional[bool] = None
    max_message_size: Optional[int] = None
    ping_interval_ms: Optional[int] = None

    def _build(self, url: str) -> "ctypes._Pointer[_ffi.wsb_client_config]":
        """A native configuration the caller must free with ``wsb_client_config_free``."""
        L = lib()
        if "\0" in url:
            raise WsbError(Result.INVALID_ARGUMENT, "the URL contains a NUL character", "wsb_client_config_new")
        cfg = L.wsb_client_config_new(url.encode("utf-8"))
        if not cfg:
            raise MemoryError("wsb_client_config_new")
        try:
            _connection.apply(cfg, self, _CONNECTION_SETTERS)
            for proto in self.subprotocols:
                check(L.wsb_client_config_add_subprotocol(cfg, proto.encode()), "wsb_client_config_add_subprotocol")
            simple = {
                "manual_complete": L.wsb_client_config_set_manual_complete,
                "send_results": L.wsb_client_config_set_send_results,
                "max_message_size": L.wsb_client_config_set_max_message_size,
                "ping_interval_ms": L.wsb_client_config_set_ping_interval_ms,
            }
            for name, setter in simple.items():
                value = getattr(self, name)
                if value is not None:
                    check(setter(cfg, value), setter.__name__)
            if self.reconnect is not None:
                rc = self.reconnect
                check(
                    L.wsb_client_config_set_reconnect(cfg, True, rc.initial_ms, rc.max_ms, rc.max_attempts),
                    "wsb_client_config_set_reconnect",
                )
        except BaseException:
            L.wsb_client_config_free(cfg)
            raise
        return cfg


ClientEventHandler = Callable[["Client", ClientEvent], None]


@_ffi.wsb_client_event_cb
def _on_client_event(userdata: Optional[int], _client: object, event: "ctypes._Pointer[_ffi.wsb_client_event]") -> None:
    d = _callbacks.lookup(userdata)
    if d is not None:
        # Copy inside the guarded call: the event's pointers die when this function returns.
        d.run(ClientEvent._from_native(event.contents))


def _ended(ev: ClientEvent) -> WsbError:
    """What waiting for a connection raises once ``ev``, a final event, has come."""
    if ev.type == ClientEventType.ERROR:
        return ev.exception  # type: ignore[return-value]
    if ev.type == ClientEventType.GAVE_UP:
        return WsbError(Result.NOT_CONNECTED, f"reconnection gave up after {ev.attempt} attempts", "connect")
    return WsbError(
        Result.NOT_CONNECTED, f"the connection ended (status {ev.close_status}) and reconnection is off", "connect"
    )


def _noting(user: ClientEventHandler) -> ClientEventHandler:
    # The client reaches the handler as an argument (never through a closure), so the registry,
    # which outlives the client, holds no strong reference to it.
    def handler(client: "Client", ev: ClientEvent) -> None:
        client._note(ev)
        user(client, ev)

    return handler


class Client:
    """A WebSocket client (``wsb_client``) for ``url`` (``ws://`` or ``wss://``).

    It starts connecting in the background at once and never blocks on the network. With
    ``on_event``, events are delivered by calling ``on_event(client, event)`` on the client's engine
    thread (callback mode): it must not block; it may call any method except :meth:`close`. An
    exception it raises is kept and re-raised by the next method call on this client from another
    thread, or by :meth:`close`. Without ``on_event``, events wait for :meth:`poll` or
    :meth:`events` (queue mode).

    A failed connection attempt is an ERROR event (``event.error``, ``event.exception``);
    :meth:`wait_connected` turns it into a raised :class:`ConnectError`. Use the client as a context
    manager, or call :meth:`close`. ``send``, ``ping``, ``disconnect``, ``message_complete``,
    ``connected``, ``last_error`` and ``interrupt`` are safe from any thread.
    """

    def __init__(
        self, url: str, config: Optional[ClientConfig] = None, *, on_event: Optional[ClientEventHandler] = None
    ) -> None:
        self._close_lock = threading.Lock()
        self._ptr: Optional["ctypes._Pointer[_ffi.wsb_client]"] = None
        self._dispatch: Optional[_callbacks.Dispatch] = None
        self.url = url
        self._config = config or ClientConfig()
        # The outcome of the latest attempt (CONNECTED, ERROR or CLOSED), for wait_connected().
        self._state = threading.Condition()
        self._outcome: Optional[ClientEvent] = None
        # The event after which nothing more can come (GAVE_UP, or CLOSED or ERROR without
        # reconnection), once seen.
        self._final: Optional[ClientEvent] = None
        L = lib()
        cfg = self._config._build(url)
        out = ctypes.POINTER(_ffi.wsb_client)()
        try:
            if on_event is not None:
                self._dispatch = _callbacks.Dispatch(self, _noting(on_event))
                r = L.wsb_client_new(
                    cfg, _on_client_event, self._dispatch.key, _callbacks.userdata_free, ctypes.byref(out)
                )
            else:
                r = L.wsb_client_new(
                    cfg, _ffi.wsb_client_event_cb(), None, _ffi.wsb_userdata_free_cb(), ctypes.byref(out)
                )
        finally:
            L.wsb_client_config_free(cfg)
        # On failure the library has already called userdata_free, which dropped the registration.
        check(r, "wsb_client_new")
        self._ptr = out

    # -- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        """Closes the connection (1000) if open, stops the client's thread, and frees it.

        Idempotent. Then re-raises any exception a callback left behind. Not allowed from this
        client's own callback (raises ``WsbError`` with ``Result.REENTRANT``). To close the
        connection but keep the client (and see the CLOSED event), use :meth:`disconnect`.
        """
        with self._close_lock:
            ptr = self._ptr
            if ptr is not None:
                L = lib()
                if self._dispatch is None:
                    # Let a thread blocked in poll() return at once rather than at its slice end.
                    L.wsb_client_interrupt(ptr)
                r = L.wsb_client_free(ptr)
                if r != Result.NOT_FOUND:
                    check(r, "wsb_client_free")
                self._ptr = None
        with self._state:
            self._state.notify_all()
        self._raise_pending()

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        ptr = getattr(self, "_ptr", None)
        if ptr is None:
            return
        warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=1)
        try:
            if lib().wsb_client_free(ptr) == Result.REENTRANT:
                # Collected on the client's own engine thread: free it from another.
                threading.Thread(target=lib().wsb_client_free, args=(ptr,), daemon=True).start()
        except Exception:  # noqa: BLE001 - interpreter shutdown may have torn down ctypes
            pass

    def __repr__(self) -> str:
        mode = "callback" if self._dispatch is not None else "queue"
        if self._ptr is None:
            state = "closed"
        else:
            state = "connected" if self.connected else "not connected"
        return f"<wsbroker.Client {self.url} {mode} mode, {state}>"

    # -- helpers ------------------------------------------------------------------------------

    def _raise_pending(self) -> None:
        if self._dispatch is not None and not _callbacks.in_callback():
            self._dispatch.raise_pending()

    def _live(self) -> "ctypes._Pointer[_ffi.wsb_client]":
        self._raise_pending()
        ptr = self._ptr
        if ptr is None:
            raise WsbError(Result.SHUT_DOWN, "the client is closed")
        return ptr

    def _note(self, ev: ClientEvent) -> None:
        """Remembers the outcome of the latest attempt, and the final event, for wait_connected()."""
        final = self._is_final(ev)
        if final or ev.type in (ClientEventType.CONNECTED, ClientEventType.ERROR, ClientEventType.CLOSED):
            with self._state:
                if final:
                    self._final = ev
                if ev.type != ClientEventType.GAVE_UP:
                    self._outcome = ev
                self._state.notify_all()

    def _is_final(self, ev: ClientEvent) -> bool:
        """True when nothing can follow ``ev``: reconnection gave up, the host closed the connection
        (which stops reconnection), or the connection ended and no reconnection is set."""
        if ev.type == ClientEventType.GAVE_UP:
            return True
        if ev.type == ClientEventType.CLOSED and ev.closed_by_host:
            return True
        return self._config.reconnect is None and ev.type in (ClientEventType.CLOSED, ClientEventType.ERROR)

    # -- the connection -----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True between CONNECTED and the end of that connection."""
        return bool(lib().wsb_client_is_connected(self._live()))

    def wait_connected(self, timeout: Optional[float] = None) -> str:
        """Waits until the connection opens and returns the subprotocol the server chose (``""`` if none).

        Raises :class:`ConnectError` if the attempt fails (with reconnection on, later attempts go on
        in the background), ``WsbError`` (NOT_CONNECTED) if the connection already ended for good,
        ``TimeoutError`` after ``timeout`` seconds (None: no limit). Returns at once when already
        connected. In queue mode the events polled on the way (ERROR, RECONNECTING) are consumed;
        in callback mode they also reach ``on_event``.
        """
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        if self._dispatch is None:
            done = self._outcome
            if done is not None and done.type == ClientEventType.CONNECTED and self.connected:
                return done.protocol
            if self._final is not None:  # polled already: no event would ever come
                raise _ended(self._final)
            while True:
                left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                ev = self.poll(left)
                if ev is None:
                    raise TimeoutError(f"not connected to {self.url} within {timeout} s")
                if ev.type == ClientEventType.CONNECTED:
                    return ev.protocol
                if ev.type == ClientEventType.ERROR:
                    raise ev.exception  # type: ignore[misc]
                if self._final is not None:
                    raise _ended(self._final)
        with self._state:
            while True:
                self._live()
                if self.connected and self._outcome is not None and self._outcome.type == ClientEventType.CONNECTED:
                    return self._outcome.protocol
                if self._final is not None:
                    raise _ended(self._final)
                if self._outcome is not None and self._outcome.type == ClientEventType.ERROR:
                    raise self._outcome.exception  # type: ignore[misc]
                left = _POLL_SLICE_S if deadline is None else min(_POLL_SLICE_S, deadline - time.monotonic())
                if left <= 0:
                    raise TimeoutError(f"not connected to {self.url} within {timeout} s")
                self._state.wait(left)

    def send(self, data: Union[str, Bytes], *, text: Optional[bool] = None) -> Result:
        """Queues one message. ``str`` goes as text, bytes-like as binary unless ``text=True``.

        Returns ``Result.OK``, or ``Result.BACKPRESSURE`` when queued above the soft limit (a DRAIN
        event follows). Raises :class:`WsbError`: NOT_CONNECTED before CONNECTED or after CLOSED,
        INVALID_UTF8, ... With ``send_results`` on, a SENT event follows once it is written.
        """
        ptr = self._live()
        if isinstance(data, str):
            payload: Bytes = data.encode("utf-8")
            is_text = True if text is None else text
        else:
            payload, is_text = data, bool(text)
        buf, n = as_buffer(payload)
        r = lib().wsb_client_send(ptr, buf, n, is_text)
        return Result.BACKPRESSURE if r == Result.BACKPRESSURE else check(r, "wsb_client_send")

    def ping(self, payload: Union[str, Bytes] = b"") -> Result:
        """Sends a ping (payload ≤ 125 bytes); a PONG event follows. Same results as :meth:`send`."""
        ptr = self._live()
        buf, n = as_buffer(payload.encode("utf-8") if isinstance(payload, str) else payload)
        r = lib().wsb_client_ping(ptr, buf, n)
        return Result.BACKPRESSURE if r == Result.BACKPRESSURE else check(r, "wsb_client_ping")

    def disconnect(self, code: int = 1000, reason: str = "") -> None:
        """Starts the closing handshake (reason ≤ 123 UTF-8 bytes) and stops any reconnection.

        A CLOSED event follows. Raises ``WsbError`` (NOT_CONNECTED) when there is no open connection.
        """
        if "\0" in reason:
            raise WsbError(Result.INVALID_ARGUMENT, "the reason contains a NUL character", "wsb_client_close")
        check(lib().wsb_client_close(self._live(), code, reason.encode("utf-8")), "wsb_client_close")

    def message_complete(self) -> None:
        """Manual flow control: done with the last MESSAGE, the next may be delivered (harmless otherwise)."""
        check(lib().wsb_client_message_complete(self._live()), "wsb_client_message_complete")

    def last_error(self) -> str:
        """The detail of the last failed call on this client, from whichever thread made it
        (``""`` if none); :func:`wsbroker.last_error` is the calling thread's instead."""
        ptr = self._live()
        return read_sized(lambda buf, n, needed: lib().wsb_client_last_error(ptr, buf, n, needed))

    # -- queue mode ---------------------------------------------------------------------------

    def poll(self, timeout: Optional[float] = None) -> Optional[ClientEvent]:
        """Queue mode: the next event, waiting up to ``timeout`` seconds (None: forever).

        Returns None when the time ran out. Raises :class:`Interrupted` after :meth:`interrupt`, and
        ``WsbError`` (INVALID_STATE) in callback mode. Poll from one thread at a time. In automatic
        flow control, polling a MESSAGE completes it.
        """
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        out = _ffi.wsb_client_event()
        while True:
            ptr = self._live()
            left = _POLL_SLICE_S if deadline is None else min(_POLL_SLICE_S, max(deadline - time.monotonic(), 0.0))
            r = lib().wsb_client_poll(ptr, int(left * 1000), ctypes.byref(out))
            if r == Result.OK:
                ev = ClientEvent._from_native(out)
                self._note(ev)
                return ev
            if r != Result.TIMEOUT:
                if self._ptr is None:
                    raise Interrupted(Result.SHUT_DOWN, "the client was closed while polling", "wsb_client_poll")
                check(r, "wsb_client_poll")
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def events(self, timeout: Optional[float] = None) -> Iterator[ClientEvent]:
        """Queue mode: yields events until none comes for ``timeout`` seconds (None: no limit), until
        :meth:`interrupt` or :meth:`close` from another thread, or after the final event (GAVE_UP, the
        CLOSED that follows :meth:`disconnect`, or CLOSED or ERROR when reconnection is off: nothing
        can follow it)."""
        if self._final is not None:
            return
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
            if self._final is not None:
                return

    def interrupt(self) -> None:
        """Makes the current (or next) :meth:`poll` raise :class:`Interrupted`; :meth:`events` ends."""
        check(lib().wsb_client_interrupt(self._live()), "wsb_client_interrupt")
