"""innovaphone AppWebsocket (PROTOCOLS.md §5): the client, the app service, and the crypto helpers.

>>> with AppService(AppServiceConfig(apps={"myapp": "pwd"}, echo=True)) as svc:
...     url = f"ws://127.0.0.1:{svc.port}/"
...     with AppWebsocketClient(url, "myapp", "pwd") as c:
...         c.wait_connected(5)
...         c.send({"mt": "Ping"})                   # comes back as {"mt":"PingResult"}
"""

from __future__ import annotations

import ctypes
import json as _json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Optional, Tuple, Union

from . import _callbacks, _connection, _ffi
from ._ffi import AppwsClientEventType, AppwsServiceEventType, Result
from ._native import Bytes, Interrupted, WsbError, as_buffer, check, lib
from ._owned import Owned, cstr, no_nul, opt_str, send_result
from .client import ConnectError

PathLike = _connection.PathLike
Json = Any  # a JSON text (str) or a value json.dumps accepts

# -- connection-free crypto ----------------------------------------------------------------------


def _out(fn: Callable[..., int], name: str, size: int, *args: Optional[bytes]) -> bytes:
    buf = ctypes.create_string_buffer(size)
    check(fn(*args, buf, size), name)
    return buf.raw


def digest(
    app: str, domain: str, sip: str, guid: str, dn: str, info: Optional[str], challenge: str, password: str
) -> str:
    """The §5.1 login digest (lowercase hex); ``info`` is the exact JSON text sent, or None."""
    f = "wsb_appws_digest"
    args = [no_nul(s, "an argument", f) for s in (app, domain, sip, guid, dn)]
    raw = _out(lib().wsb_appws_digest, f, 65, *args, opt_str(info, "info", f), no_nul(challenge, "challenge", f),
               no_nul(password, "password", f))
    return raw[:64].decode("ascii")


def session_key(challenge: str, password: str) -> str:
    """The §5.2 session key: 64 lowercase hex characters."""
    f = "wsb_appws_session_key"
    raw = _out(lib().wsb_appws_session_key, f, 65, no_nul(challenge, "challenge", f), no_nul(password, "password", f))
    return raw[:64].decode("ascii")


def encrypt(session_key: str, seed: str, data: str) -> str:
    """§5.2 Encrypt: lowercase hex of RC4 (key ``seed:session_key``) over the UTF-8 of ``data``."""
    f = "wsb_appws_encrypt"
    b = no_nul(data, "data", f)
    raw = _out(lib().wsb_appws_encrypt, f, 2 * len(b) + 1, no_nul(session_key, "session_key", f),
               no_nul(seed, "seed", f), b)
    return raw[: 2 * len(b)].decode("ascii")


def decrypt(session_key: str, seed: str, hex_text: str) -> bytes:
    """§5.2 Decrypt: the raw bytes behind ``hex_text`` (either case); odd or non-hex raises."""
    f = "wsb_appws_decrypt"
    h = no_nul(hex_text, "hex", f)
    raw = _out(lib().wsb_appws_decrypt, f, len(h) // 2 + 1, no_nul(session_key, "session_key", f),
               no_nul(seed, "seed", f), h)
    return raw[: len(h) // 2]


def hash(session_key: str, seed: str, data: str) -> str:  # noqa: A001 - the §5.2 name
    """§5.2 Hash: lowercase hex SHA-256 of ``seed:session_key:data``."""
    f = "wsb_appws_hash"
    raw = _out(lib().wsb_appws_hash, f, 65, no_nul(session_key, "session_key", f), no_nul(seed, "seed", f),
               no_nul(data, "data", f))
    return raw[:64].decode("ascii")


def _json_text(value: Json) -> str:
    return value if isinstance(value, str) else _json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# -- the client ----------------------------------------------------------------------------------


class LoginFailed(WsbError):
    """The app service refused the login (a LOGIN_FAILED event); ``detail`` is its reason."""


@dataclass(frozen=True)
class Identity:
    """The password-mode login identity; the library default is ``sip`` = the app, ``domain`` ``""``,
    ``guid`` 32 zeros, ``dn`` ``Admin``, no ``info``. ``info`` is JSON text or a JSON value."""

    domain: str = ""
    sip: str = ""
    guid: str = "00000000000000000000000000000000"
    dn: str = "Admin"
    info: Optional[Json] = None


_CONNECTION_SETTERS = _connection.Setters(
    add_header="wsb_appws_client_config_add_header",
    set_connect_timeout_ms="wsb_appws_client_config_set_connect_timeout_ms",
    set_ca_file="wsb_appws_client_config_set_ca_file",
    set_system_roots="wsb_appws_client_config_set_system_roots",
    set_client_cert="wsb_appws_client_config_set_client_cert",
    set_insecure="wsb_appws_client_config_set_insecure",
    set_proxy="wsb_appws_client_config_set_proxy",
)


@dataclass
class AppWebsocketClientConfig:
    """AppWebsocket client settings; ``None`` keeps the library default: automatic flow control,
    no SENT events, no keep-alive, 10 s connect timeout, 10 s login timeout, the system's root
    certificates, the proxy from the environment (never for loopback hosts).

    ``login_timeout_ms`` bounds the time from the WebSocket's opening to ``AppLoginResult``: when
    it passes, LOGIN_FAILED says what was still awaited and CLOSED follows. The connection
    settings (``headers`` for the upgrade request, ``ca_file``, ``system_roots``,
    ``client_cert=(chain, key)``, ``insecure``, ``proxy``) mean what they mean in
    :class:`ClientConfig`; ``proxy=""`` disables proxies, the environment's included.
    """

    identity: Optional[Identity] = None
    manual_complete: Optional[bool] = None
    send_results: Optional[bool] = None
    keep_alive_ms: Optional[int] = None
    connect_timeout_ms: Optional[int] = None
    ca_file: Optional[PathLike] = None
    insecure: Optional[bool] = None
    login_timeout_ms: Optional[int] = None
    system_roots: Optional[bool] = None
    client_cert: Optional[Tuple[PathLike, PathLike]] = None
    proxy: Optional[str] = None
    headers: _connection.Headers = ()

    def _build(self, url: str, app: str, password: Optional[str]) -> Any:
        L = lib()
        f = "wsb_appws_client_config_new"
        cfg = L.wsb_appws_client_config_new(no_nul(url, "the URL", f), no_nul(app, "the app", f),
                                            opt_str(password, "the password", f))
        if not cfg:
            raise MemoryError(f)
        try:
            if self.identity is not None:
                i = self.identity
                f = "wsb_appws_client_config_set_identity"
                info = None if i.info is None else _json_text(i.info)
                check(L.wsb_appws_client_config_set_identity(
                    cfg, no_nul(i.domain, "domain", f), no_nul(i.sip or app, "sip", f), no_nul(i.guid, "guid", f),
                    no_nul(i.dn, "dn", f), opt_str(info, "info", f)), f)
            simple = {
                "manual_complete": L.wsb_appws_client_config_set_manual_complete,
                "send_results": L.wsb_appws_client_config_set_send_results,
                "keep_alive_ms": L.wsb_appws_client_config_set_keep_alive_ms,
                "login_timeout_ms": L.wsb_appws_client_config_set_login_timeout_ms,
            }
            for name, setter in simple.items():
                value = getattr(self, name)
                if value is not None:
                    check(setter(cfg, value), setter.__name__)
            _connection.apply(cfg, self, _CONNECTION_SETTERS)
        except BaseException:
            L.wsb_appws_client_config_free(cfg)
            raise
        return cfg


@dataclass(frozen=True)
class AppWebsocketClientEvent:
    """One AppWebsocket client event, copied out of the library.

    MESSAGE: ``json`` (the text), ``mt``, ``src``; LOGIN_FAILED: ``text`` is the reason; CHALLENGE:
    ``text`` is the challenge; CLOSED: ``text`` is the close reason or error message,
    ``close_status`` (-1 when the transport dropped or never connected), ``closed_by_host`` and
    ``error`` (why a connection never opened, else None).
    """

    type: AppwsClientEventType
    json: str = ""
    mt: str = ""
    src: str = ""
    text: str = ""
    close_status: int = 0
    closed_by_host: bool = False
    error: Optional[Result] = None

    @property
    def message(self) -> Any:
        """A MESSAGE's JSON, parsed."""
        return _json.loads(self.json)

    @classmethod
    def _from_native(cls, ev: _ffi.wsb_appws_client_event) -> "AppWebsocketClientEvent":
        try:
            kind: AppwsClientEventType = AppwsClientEventType(ev.kind)
        except ValueError:
            kind = ev.kind  # type: ignore[assignment] - append-only enum: newer types as ints
        error: Optional[Result] = None
        if ev.error:
            try:
                error = Result(ev.error)
            except ValueError:
                error = ev.error  # type: ignore[assignment]
        return cls(
            type=kind,
            json=ctypes.string_at(ev.json, ev.len).decode("utf-8", "replace") if ev.len else "",
            mt=cstr(ev.mt),
            src=cstr(ev.src),
            text=cstr(ev.text),
            close_status=ev.close_status,
            closed_by_host=bool(ev.closed_by_host),
            error=error,
        )


AppWebsocketClientHandler = Callable[["AppWebsocketClient", AppWebsocketClientEvent], None]


@_ffi.wsb_appws_client_event_cb
def _on_appws_client_event(userdata: Optional[int], _c: object, event: Any) -> None:
    d = _callbacks.lookup(userdata)
    if d is not None:
        d.run(AppWebsocketClientEvent._from_native(event.contents))


def _noting_client(user: AppWebsocketClientHandler) -> AppWebsocketClientHandler:
    # The client reaches the handler as an argument, so the registry holds no reference to it.
    def handler(client: "AppWebsocketClient", ev: AppWebsocketClientEvent) -> None:
        client._note(ev)
        user(client, ev)

    return handler


class AppWebsocketClient(Owned):
    """An AppWebsocket client (``wsb_appws_client``) for ``url`` and ``app``.

    With ``password`` it logs in by itself; with ``password=None`` it runs in authenticator mode: a
    CHALLENGE event arrives, answer it with :meth:`authenticate`. It connects in the background at
    once. With ``on_event`` (callback mode) events call ``on_event(client, event)`` on the client's
    thread (it must not block; its exceptions are re-raised by the next call from another thread
    or by :meth:`close`); without it they wait for :meth:`poll` / :meth:`events` (queue mode).
    CLOSED comes exactly once and ends the client.
    """

    _free_name = "wsb_appws_client_free"
    _interrupt_name = "wsb_appws_client_interrupt"
    _last_error_name = "wsb_appws_client_last_error"
    _what = "AppWebsocket client"

    def __init__(
        self,
        url: str,
        app: str,
        password: Optional[str] = None,
        config: Optional[AppWebsocketClientConfig] = None,
        *,
        on_event: Optional[AppWebsocketClientHandler] = None,
    ) -> None:
        super().__init__()
        self.url, self.app = url, app
        self._state = threading.Condition()
        self._outcome: Optional[AppWebsocketClientEvent] = None  # CONNECTED, LOGIN_FAILED or CLOSED
        self._finished = False
        L = lib()
        cfg = (config or AppWebsocketClientConfig())._build(url, app, password)
        out = ctypes.POINTER(_ffi.wsb_appws_client)()
        try:
            if on_event is not None:
                self._dispatch = _callbacks.Dispatch(self, _noting_client(on_event))
                r = L.wsb_appws_client_new(cfg, _on_appws_client_event, self._dispatch.key,
                                           _callbacks.userdata_free, ctypes.byref(out))
            else:
                r = L.wsb_appws_client_new(cfg, _ffi.wsb_appws_client_event_cb(), None,
                                           _ffi.wsb_userdata_free_cb(), ctypes.byref(out))
        finally:
            L.wsb_appws_client_config_free(cfg)
        check(r, "wsb_appws_client_new")  # on failure userdata_free already dropped the registration
        self._ptr = out

    def __repr__(self) -> str:
        mode = "callback" if self._dispatch is not None else "queue"
        state = "closed" if self._ptr is None else ("connected" if self.connected else "not connected")
        return f"<wsbroker.AppWebsocketClient {self.url} app {self.app!r} {mode} mode, {state}>"

    def _closed_hook(self) -> None:
        with self._state:
            self._state.notify_all()

    def _note(self, ev: AppWebsocketClientEvent) -> None:
        if ev.type == AppwsClientEventType.CLOSED:
            self._finished = True
        if ev.type in (AppwsClientEventType.CONNECTED, AppwsClientEventType.LOGIN_FAILED,
                       AppwsClientEventType.CLOSED):
            with self._state:
                if not (self._outcome is not None and self._outcome.type == AppwsClientEventType.LOGIN_FAILED):
                    self._outcome = ev  # a LOGIN_FAILED stays the outcome when its CLOSED follows
                self._state.notify_all()

    @staticmethod
    def _raise_outcome(ev: AppWebsocketClientEvent) -> None:
        if ev.type == AppwsClientEventType.LOGIN_FAILED:
            raise LoginFailed(Result.INVALID_STATE, ev.text, "login")
        if ev.error:
            raise ConnectError(ev.error, ev.text, "connect")
        if ev.type == AppwsClientEventType.CONNECTED:  # logged in, but disconnect() came since
            raise WsbError(Result.NOT_CONNECTED, "the connection is closing", "connect")
        raise WsbError(Result.NOT_CONNECTED, f"closed before login (status {ev.close_status}: {ev.text})", "connect")

    @property
    def connected(self) -> bool:
        """True from CONNECTED until the end or :meth:`disconnect`."""
        return bool(lib().wsb_appws_client_is_connected(self._live()))

    def wait_connected(self, timeout: Optional[float] = None) -> None:
        """Waits for CONNECTED (the login succeeded). Raises :class:`LoginFailed`, :class:`ConnectError`
        (never connected), ``WsbError`` (NOT_CONNECTED: closed first) or ``TimeoutError``. In queue
        mode the events polled on the way (CHALLENGE included) are consumed."""
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        if self._dispatch is None:
            if self._outcome is not None and self._outcome.type == AppwsClientEventType.CONNECTED and self.connected:
                return
            if self._outcome is not None:
                self._raise_outcome(self._outcome)
            while True:
                left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                ev = self.poll(left)
                if ev is None:
                    raise TimeoutError(f"not logged in to {self.url} within {timeout} s")
                if ev.type == AppwsClientEventType.CONNECTED:
                    return
                if ev.type in (AppwsClientEventType.LOGIN_FAILED, AppwsClientEventType.CLOSED):
                    self._raise_outcome(ev)
        with self._state:
            while True:
                self._live()
                o = self._outcome
                if o is not None and o.type == AppwsClientEventType.CONNECTED:
                    return
                if o is not None:
                    self._raise_outcome(o)
                left = 0.25 if deadline is None else min(0.25, deadline - time.monotonic())
                if left <= 0:
                    raise TimeoutError(f"not logged in to {self.url} within {timeout} s")
                self._state.wait(left)

    def send(self, message: Json) -> Result:
        """Sends one JSON message: a ``str`` is sent as the JSON text it holds (it must be a JSON
        object), anything else is ``json.dumps``-ed. Returns ``Result.OK`` or ``BACKPRESSURE``;
        raises ``WsbError`` (NOT_CONNECTED before CONNECTED or after CLOSED, INVALID_ARGUMENT for
        non-JSON)."""
        f = "wsb_appws_client_send"
        return send_result(lib().wsb_appws_client_send(self._live(), no_nul(_json_text(message), "json", f)), f)

    def send_text(self, data: Union[str, Bytes]) -> Result:
        """Sends one text frame without a JSON check (MessageSendText); bytes must be UTF-8."""
        buf, n = as_buffer(data.encode("utf-8") if isinstance(data, str) else data)
        return send_result(lib().wsb_appws_client_send_text(self._live(), buf, n), "wsb_appws_client_send_text")

    def message_complete(self) -> None:
        """Manual flow control: done with the last MESSAGE, the next may be delivered."""
        check(lib().wsb_appws_client_message_complete(self._live()), "wsb_appws_client_message_complete")

    def authenticate(self, identity: Identity, digest: str, session_key: str) -> None:
        """Authenticator mode: answers the CHALLENGE with a digest and session key computed elsewhere
        (see :func:`digest`, :func:`session_key`); ``identity.info`` is sent exactly as given."""
        f = "wsb_appws_client_authenticate"
        info = None if identity.info is None else _json_text(identity.info)
        check(lib().wsb_appws_client_authenticate(
            self._live(), no_nul(identity.domain, "domain", f), no_nul(identity.sip, "sip", f),
            no_nul(identity.guid, "guid", f), no_nul(identity.dn, "dn", f), opt_str(info, "info", f),
            no_nul(digest, "digest", f), no_nul(session_key, "session_key", f)), f)

    def encrypt(self, seed: str, data: str) -> str:
        """§5.2 Encrypt with this login's session key (after CONNECTED)."""
        f = "wsb_appws_client_encrypt"
        b = no_nul(data, "data", f)
        raw = _out(lib().wsb_appws_client_encrypt, f, 2 * len(b) + 1, self._live(), no_nul(seed, "seed", f), b)
        return raw[: 2 * len(b)].decode("ascii")

    def decrypt(self, seed: str, hex_text: str) -> bytes:
        """§5.2 Decrypt with this login's session key (after CONNECTED)."""
        f = "wsb_appws_client_decrypt"
        h = no_nul(hex_text, "hex", f)
        raw = _out(lib().wsb_appws_client_decrypt, f, len(h) // 2 + 1, self._live(), no_nul(seed, "seed", f), h)
        return raw[: len(h) // 2]

    def hash(self, seed: str, data: str) -> str:
        """§5.2 Hash with this login's session key (after CONNECTED)."""
        f = "wsb_appws_client_hash"
        raw = _out(lib().wsb_appws_client_hash, f, 65, self._live(), no_nul(seed, "seed", f), no_nul(data, "data", f))
        return raw[:64].decode("ascii")

    def disconnect(self) -> None:
        """Closes the connection (1000); CLOSED follows. Raises NOT_CONNECTED once CLOSED was reported."""
        check(lib().wsb_appws_client_close(self._live()), "wsb_appws_client_close")

    def poll(self, timeout: Optional[float] = None) -> Optional[AppWebsocketClientEvent]:
        """Queue mode: the next event within ``timeout`` seconds (None: forever), else None. Raises
        :class:`Interrupted` after :meth:`interrupt`, ``WsbError`` SHUT_DOWN after CLOSED was polled."""
        out = _ffi.wsb_appws_client_event()
        if not self._poll_native(lib().wsb_appws_client_poll, "wsb_appws_client_poll", out, timeout):
            return None
        ev = AppWebsocketClientEvent._from_native(out)
        self._note(ev)
        return ev

    def events(self, timeout: Optional[float] = None) -> Iterator[AppWebsocketClientEvent]:
        """Queue mode: yields events until CLOSED (included), an idle ``timeout``, :meth:`interrupt`
        or :meth:`close` from another thread."""
        while not self._finished:
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
        """Makes the current (or next) :meth:`poll` raise :class:`Interrupted`."""
        check(lib().wsb_appws_client_interrupt(self._live()), "wsb_appws_client_interrupt")


# -- the app service -----------------------------------------------------------------------------


@dataclass
class AppServiceConfig:
    """App-service settings. ``apps`` maps app names to passwords (no app: every login fails);
    ``domain_passwords`` maps a login's ``domain`` to a password accepted for any app. ``echo=True``
    answers each message itself (``mt`` + ``Result``) instead of reporting it. ``tls`` is
    ``(cert_chain_pem_path, key_pem_path)``: the service then serves ``wss://`` (the files are read
    when it is created; a bad file raises ``WsbError`` ``INVALID_ARGUMENT`` naming it)."""

    bind: Optional[str] = None
    apps: Mapping[str, str] = field(default_factory=dict)
    domain_passwords: Mapping[str, str] = field(default_factory=dict)
    manual_complete: Optional[bool] = None
    echo: Optional[bool] = None
    max_message_size: Optional[int] = None
    tls: Optional[Tuple[PathLike, PathLike]] = None

    def _build(self) -> Any:
        L = lib()
        cfg = L.wsb_appws_service_config_new()
        if not cfg:
            raise MemoryError("wsb_appws_service_config_new")
        try:
            if self.bind is not None:
                f = "wsb_appws_service_config_set_bind"
                check(L.wsb_appws_service_config_set_bind(cfg, no_nul(self.bind, "bind", f)), f)
            for app, pw in self.apps.items():
                f = "wsb_appws_service_config_add_app"
                check(L.wsb_appws_service_config_add_app(cfg, no_nul(app, "app", f), no_nul(pw, "password", f)), f)
            for dom, pw in self.domain_passwords.items():
                f = "wsb_appws_service_config_add_domain_password"
                check(L.wsb_appws_service_config_add_domain_password(cfg, no_nul(dom, "domain", f),
                                                                      no_nul(pw, "password", f)), f)
            simple = {
                "manual_complete": L.wsb_appws_service_config_set_manual_complete,
                "echo": L.wsb_appws_service_config_set_echo,
                "max_message_size": L.wsb_appws_service_config_set_max_message_size,
            }
            for name, setter in simple.items():
                value = getattr(self, name)
                if value is not None:
                    check(setter(cfg, value), setter.__name__)
            if self.tls is not None:
                cert, key = self.tls
                check(L.wsb_appws_service_config_set_tls(cfg, os.fsencode(cert), os.fsencode(key)),
                      "wsb_appws_service_config_set_tls")
        except BaseException:
            L.wsb_appws_service_config_free(cfg)
            raise
        return cfg


@dataclass(frozen=True)
class AppServiceEvent:
    """One app-service event, copied out. LOGIN: ``app``, ``domain``, ``sip``, ``guid``, ``dn``,
    ``info`` (JSON text, ``""`` if none); MESSAGE: ``data`` (the JSON text), ``mt``, ``src``; BINARY:
    ``data``; CLOSED: ``data`` (the reason), ``close_status``, ``closed_by_host``."""

    type: AppwsServiceEventType
    conn: int
    app: str = ""
    domain: str = ""
    sip: str = ""
    guid: str = ""
    dn: str = ""
    info: str = ""
    mt: str = ""
    src: str = ""
    data: bytes = b""
    close_status: int = 0
    closed_by_host: bool = False

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")

    @property
    def message(self) -> Any:
        """A MESSAGE's JSON, parsed."""
        return _json.loads(self.data)

    @classmethod
    def _from_native(cls, ev: _ffi.wsb_appws_service_event) -> "AppServiceEvent":
        try:
            kind: AppwsServiceEventType = AppwsServiceEventType(ev.kind)
        except ValueError:
            kind = ev.kind  # type: ignore[assignment]
        return cls(
            type=kind, conn=ev.conn, app=cstr(ev.app), domain=cstr(ev.domain), sip=cstr(ev.sip),
            guid=cstr(ev.guid), dn=cstr(ev.dn), info=cstr(ev.info), mt=cstr(ev.mt), src=cstr(ev.src),
            data=ctypes.string_at(ev.data, ev.len) if ev.len else b"",
            close_status=ev.close_status, closed_by_host=bool(ev.closed_by_host),
        )


AppServiceHandler = Callable[["AppService", AppServiceEvent], None]


@_ffi.wsb_appws_service_event_cb
def _on_appws_service_event(userdata: Optional[int], _s: object, event: Any) -> None:
    d = _callbacks.lookup(userdata)
    if d is not None:
        d.run(AppServiceEvent._from_native(event.contents))


class AppService(Owned):
    """An AppWebsocket app service (``wsb_appws_service``): it listens at once (see :attr:`port`),
    runs the challenge/login itself and reports LOGIN, MESSAGE, BINARY and CLOSED per session. Same
    callback and queue modes as :class:`Server`. ``port``, ``reply``, ``send``,
    ``close_connection``, ``message_complete``, ``last_error`` and ``interrupt`` are safe from any
    thread."""

    _free_name = "wsb_appws_service_free"
    _interrupt_name = "wsb_appws_service_interrupt"
    _last_error_name = "wsb_appws_service_last_error"
    _what = "app service"

    def __init__(self, config: Optional[AppServiceConfig] = None, *, on_event: Optional[AppServiceHandler] = None):
        super().__init__()
        L = lib()
        cfg = (config or AppServiceConfig())._build()
        out = ctypes.POINTER(_ffi.wsb_appws_service)()
        try:
            if on_event is not None:
                self._dispatch = _callbacks.Dispatch(self, on_event)
                r = L.wsb_appws_service_new(cfg, _on_appws_service_event, self._dispatch.key,
                                            _callbacks.userdata_free, ctypes.byref(out))
            else:
                r = L.wsb_appws_service_new(cfg, _ffi.wsb_appws_service_event_cb(), None,
                                            _ffi.wsb_userdata_free_cb(), ctypes.byref(out))
        finally:
            L.wsb_appws_service_config_free(cfg)
        check(r, "wsb_appws_service_new")
        self._ptr = out

    def __repr__(self) -> str:
        mode = "callback" if self._dispatch is not None else "queue"
        where = "closed" if self._ptr is None else f"port {self.port}"
        return f"<wsbroker.AppService {mode} mode, {where}>"

    @property
    def port(self) -> int:
        return int(lib().wsb_appws_service_port(self._live()))

    def reply(self, conn: int, src: str, message: Json) -> Result:
        """Answers a request: ``message`` (JSON text or a value) is sent to ``conn`` with ``src`` set
        (``src=""`` leaves it out). OK or BACKPRESSURE; raises CLOSED, NOT_FOUND, INVALID_ARGUMENT."""
        f = "wsb_appws_service_reply"
        return send_result(lib().wsb_appws_service_reply(self._live(), conn, no_nul(src, "src", f),
                                                         no_nul(_json_text(message), "json", f)), f)

    def send(self, conn: int, data: Union[str, Bytes], *, text: Optional[bool] = None) -> Result:
        """Sends one frame: ``str`` as text, bytes-like as binary unless ``text=True``."""
        if isinstance(data, str):
            payload: Bytes = data.encode("utf-8")
            is_text = True if text is None else text
        else:
            payload, is_text = data, bool(text)
        buf, n = as_buffer(payload)
        return send_result(lib().wsb_appws_service_send(self._live(), conn, buf, n, is_text), "wsb_appws_service_send")

    def close_connection(self, conn: int, code: int = 1000, reason: str = "") -> None:
        f = "wsb_appws_service_close"
        check(lib().wsb_appws_service_close(self._live(), conn, code, no_nul(reason, "the reason", f)), f)

    def message_complete(self, conn: int) -> None:
        """Manual flow control: done with that session's last message."""
        check(lib().wsb_appws_service_message_complete(self._live(), conn), "wsb_appws_service_message_complete")

    def poll(self, timeout: Optional[float] = None) -> Optional[AppServiceEvent]:
        """Queue mode: the next event within ``timeout`` seconds (None: forever), else None."""
        out = _ffi.wsb_appws_service_event()
        if not self._poll_native(lib().wsb_appws_service_poll, "wsb_appws_service_poll", out, timeout):
            return None
        return AppServiceEvent._from_native(out)

    def events(self, timeout: Optional[float] = None) -> Iterator[AppServiceEvent]:
        """Queue mode: yields events until none comes for ``timeout`` seconds, :meth:`interrupt`, or
        :meth:`close` from another thread."""
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
        check(lib().wsb_appws_service_interrupt(self._live()), "wsb_appws_service_interrupt")
