"""The message broker: Achex, WSChat, webtalk and AppWebsocket listeners, in-process services,
and the webtalk admin operations.

>>> def on_event(broker, ev):
...     if ev.type == BrokerEventType.SERVICE_MESSAGE:         # answer the sender
...         broker.send_to_session(ev.service, ev.sid, {"got": ev.message})
>>> with Broker(on_event=on_event) as broker:                # Achex on 127.0.0.1:<port>
...     sid = broker.register_service("echo")
"""

from __future__ import annotations

import ctypes
import json as _json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, List, Mapping, Optional, Tuple, Union

from . import _callbacks, _ffi
from ._ffi import BrokerEventType, Listener, Result, Target
from ._native import Bytes, WsbError, as_buffer, check, lib
from ._owned import Owned, cstr, no_nul, opt_str

PathLike = Union[str, "os.PathLike[str]"]
# An auth check: return True to accept, False (or a reason string) to refuse.
AuthHandler = Callable[[str, str], Union[bool, str]]
Json = Any


def _json_bytes(message: Union[Json, Bytes]) -> Bytes:
    if isinstance(message, (bytes, bytearray, memoryview)):
        return message
    text = message if isinstance(message, str) else _json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def _payload(message: Union[str, Bytes]) -> Bytes:
    return message.encode("utf-8") if isinstance(message, str) else message


@dataclass
class BrokerConfig:
    """Broker settings. ``listeners`` maps a :class:`Listener` to ``"IP:PORT"`` (port 0: ephemeral)
    or ``"off"``; by default only Achex runs, on ``127.0.0.1:0``. ``credentials`` makes logins check
    that table only; ``auth`` (``auth(name, password)``, on an I/O thread, must not block) decides
    every login instead. ``appws_apps`` replaces the default ``demo``/``demo`` app.

    Per WebSocket listener (not ``WEBTALK_ADMIN``, which is plain TCP): ``max_message_size`` is the
    largest message accepted, in bytes (default 65536; larger gets close 1009), and ``tls`` a
    ``(cert_chain_pem_path, key_pem_path)`` pair that makes the listener serve ``wss://`` (the files
    are read when the broker is created; a bad file raises ``WsbError`` ``INVALID_ARGUMENT``
    naming it)."""

    listeners: Mapping[Listener, str] = field(default_factory=dict)
    achex_quiet: Optional[bool] = None
    service_credentials: Mapping[str, str] = field(default_factory=dict)
    credentials: Mapping[str, str] = field(default_factory=dict)
    auth: Optional[AuthHandler] = None
    webtalk_admin_secret: Optional[str] = None
    appws_apps: Mapping[str, str] = field(default_factory=dict)
    max_message_size: Mapping[Listener, int] = field(default_factory=dict)
    tls: Mapping[Listener, Tuple[PathLike, PathLike]] = field(default_factory=dict)


@dataclass(frozen=True)
class BrokerEvent:
    """One broker event, copied out. SERVICE_MESSAGE: ``service`` (the receiving SID), ``sid`` and
    ``name`` (the sender), ``data`` (the stamped JSON); LOGIN/LOGOUT: ``sid``, ``name``,
    ``is_service``; JOIN/LEAVE: ``sid``, ``place``, ``is_hub`` (``name`` may be empty there)."""

    type: BrokerEventType
    service: int = 0
    sid: int = 0
    name: str = ""
    place: str = ""
    is_hub: bool = False
    is_service: bool = False
    data: bytes = b""

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")

    @property
    def message(self) -> Any:
        """A SERVICE_MESSAGE's JSON, parsed."""
        return _json.loads(self.data)

    @classmethod
    def _from_native(cls, ev: _ffi.wsb_broker_event) -> "BrokerEvent":
        try:
            kind: BrokerEventType = BrokerEventType(ev.kind)
        except ValueError:
            kind = ev.kind  # type: ignore[assignment]
        return cls(
            type=kind, service=ev.service, sid=ev.sid, name=cstr(ev.name), place=cstr(ev.place),
            is_hub=bool(ev.is_hub), is_service=bool(ev.is_service),
            data=ctypes.string_at(ev.data, ev.len) if ev.len else b"",
        )


@dataclass(frozen=True)
class BrokerStats:
    """``wsb_broker_counts``."""

    sessions: int
    users: int
    groups: int
    hubs: int
    messages_in: int
    messages_out: int


BrokerHandler = Callable[["Broker", BrokerEvent], None]


@_ffi.wsb_broker_event_cb
def _on_broker_event(userdata: Optional[int], _b: object, event: Any) -> None:
    d = _callbacks.lookup(userdata)
    if d is not None:
        d.run(BrokerEvent._from_native(event.contents))


@_ffi.wsb_auth_cb
def _on_auth(userdata: Optional[int], name: Optional[bytes], password: Optional[bytes], reason: Any, reason_len: int) -> bool:
    d = _callbacks.lookup(userdata)
    if d is None:
        return False
    verdict: List[Union[bool, str]] = []
    d.run(cstr(name), cstr(password), verdict)
    if verdict and verdict[0] is True:
        return True
    why = verdict[0] if verdict and isinstance(verdict[0], str) else ""
    if why and reason_len > 0:
        b = why.replace("\0", " ").encode("utf-8")[: reason_len - 1]
        while b:  # never cut a UTF-8 sequence in two
            try:
                b.decode("utf-8")
                break
            except UnicodeDecodeError:
                b = b[:-1]
        ctypes.memmove(reason, b + b"\0", len(b) + 1)
    return False


def _auth_adapter(user: AuthHandler) -> Callable[..., None]:
    def handler(_broker: "Broker", name: str, password: str, verdict: List[Union[bool, str]]) -> None:
        v = user(name, password)
        verdict.append(v if isinstance(v, str) else bool(v))

    return handler


class Broker(Owned):
    """A running broker (``wsb_broker``): its listeners serve at once (see :meth:`port`).

    With ``on_event``, SERVICE_MESSAGE events (and LOGIN/LOGOUT/JOIN/LEAVE after
    ``set_events(True)``) call ``on_event(broker, event)``, on an I/O thread or inside the
    ``Broker`` call that caused them; it must not block, may call any method but :meth:`close`,
    and its exceptions (and the ``auth`` check's, which refuse the login) are re-raised by the next
    call from another thread or by :meth:`close`. Every method is safe from any thread.
    """

    _free_name = "wsb_broker_free"
    _last_error_name = "wsb_broker_last_error"
    _what = "broker"

    def __init__(self, config: Optional[BrokerConfig] = None, *, on_event: Optional[BrokerHandler] = None) -> None:
        super().__init__()
        c = config or BrokerConfig()
        self._auth_dispatch: Optional[_callbacks.Dispatch] = None
        L = lib()
        cfg = L.wsb_broker_config_new()
        if not cfg:
            raise MemoryError("wsb_broker_config_new")
        out = ctypes.POINTER(_ffi.wsb_broker)()
        try:
            for listener, addr in c.listeners.items():
                f = "wsb_broker_config_set_listener"
                check(L.wsb_broker_config_set_listener(cfg, int(listener), no_nul(addr, "the address", f)), f)
            for listener, size in c.max_message_size.items():
                check(L.wsb_broker_config_set_max_message(cfg, int(listener), size), "wsb_broker_config_set_max_message")
            for listener, (cert, key) in c.tls.items():
                check(L.wsb_broker_config_set_listener_tls(cfg, int(listener), os.fsencode(cert), os.fsencode(key)),
                      "wsb_broker_config_set_listener_tls")
            if c.achex_quiet is not None:
                check(L.wsb_broker_config_set_achex_quiet(cfg, c.achex_quiet), "wsb_broker_config_set_achex_quiet")
            pairs = (
                (c.service_credentials, L.wsb_broker_config_add_service_credentials),
                (c.credentials, L.wsb_broker_config_add_credentials),
                (c.appws_apps, L.wsb_broker_config_add_appws_app),
            )
            for table, adder in pairs:
                for name, pw in table.items():
                    f = adder.__name__
                    check(adder(cfg, no_nul(name, "a name", f), no_nul(pw, "a password", f)), f)
            if c.webtalk_admin_secret is not None:
                f = "wsb_broker_config_set_webtalk_admin_secret"
                check(L.wsb_broker_config_set_webtalk_admin_secret(cfg, opt_str(c.webtalk_admin_secret, "secret", f)), f)
            if c.auth is not None:
                self._auth_dispatch = _callbacks.Dispatch(self, _auth_adapter(c.auth))
                # The library owns the registration from here (userdata_free), failure included.
                check(L.wsb_broker_config_set_auth_callback(cfg, _on_auth, self._auth_dispatch.key,
                                                           _callbacks.userdata_free),
                      "wsb_broker_config_set_auth_callback")
            if on_event is not None:
                self._dispatch = _callbacks.Dispatch(self, on_event)
                r = L.wsb_broker_new(cfg, _on_broker_event, self._dispatch.key, _callbacks.userdata_free,
                                     ctypes.byref(out))
            else:
                r = L.wsb_broker_new(cfg, _ffi.wsb_broker_event_cb(), None, _ffi.wsb_userdata_free_cb(),
                                     ctypes.byref(out))
        finally:
            L.wsb_broker_config_free(cfg)
        check(r, "wsb_broker_new")
        self._ptr = out

    def __repr__(self) -> str:
        where = "closed" if self._ptr is None else f"achex port {self.port(Listener.ACHEX)}"
        return f"<wsbroker.Broker {where}>"

    def _raise_pending(self) -> None:
        super()._raise_pending()
        if self._auth_dispatch is not None and not _callbacks.in_callback():
            self._auth_dispatch.raise_pending()

    def port(self, listener: Listener = Listener.ACHEX) -> int:
        """The port a listener serves on, 0 when it is off."""
        return int(lib().wsb_broker_port(self._live(), int(listener)))

    # -- in-process services ------------------------------------------------------------------

    def register_service(self, name: str) -> int:
        """Registers an in-process service under an exclusive Achex name; returns its SID. A name in
        use raises ``WsbError`` (INVALID_STATE)."""
        f = "wsb_broker_register_service"
        sid = ctypes.c_uint64(0)
        check(lib().wsb_broker_register_service(self._live(), no_nul(name, "the name", f), ctypes.byref(sid)), f)
        return sid.value

    def unregister_service(self, service: int) -> None:
        check(lib().wsb_broker_unregister_service(self._live(), service), "wsb_broker_unregister_service")

    def send(self, service: int, target: Target, to: str, message: Union[Json, Bytes]) -> None:
        """Sends a JSON object (text, bytes or a value to ``json.dumps``) from ``service`` to a name,
        group or hub, stamped with ``FROM``/``sID``. Unknown name: NOT_FOUND; not an object:
        INVALID_ARGUMENT."""
        f = "wsb_broker_send"
        buf, n = as_buffer(_json_bytes(message))
        check(lib().wsb_broker_send(self._live(), service, int(target), no_nul(to, "the target", f), buf, n), f)

    def send_to_session(self, service: int, sid: int, message: Union[Json, Bytes]) -> None:
        """Sends a JSON object from ``service`` to the session with Achex SID ``sid``."""
        buf, n = as_buffer(_json_bytes(message))
        check(lib().wsb_broker_send_to_session(self._live(), service, sid, buf, n), "wsb_broker_send_to_session")

    def join(self, service: int, place: str, *, hub: bool = False) -> None:
        f = "wsb_broker_join"
        check(lib().wsb_broker_join(self._live(), service, hub, no_nul(place, "the place", f)), f)

    def leave(self, service: int, place: str, *, hub: bool = False) -> None:
        f = "wsb_broker_leave"
        check(lib().wsb_broker_leave(self._live(), service, hub, no_nul(place, "the place", f)), f)

    def set_events(self, on: bool = True) -> None:
        """Turns LOGIN/LOGOUT/JOIN/LEAVE events on or off (default off)."""
        check(lib().wsb_broker_set_events(self._live(), on), "wsb_broker_set_events")

    def stats(self) -> BrokerStats:
        out = _ffi.wsb_broker_counts()
        check(lib().wsb_broker_stats(self._live(), ctypes.byref(out)), "wsb_broker_stats")
        return BrokerStats(out.sessions, out.users, out.groups, out.hubs, out.messages_in, out.messages_out)

    # -- webtalk ------------------------------------------------------------------------------

    def webtalk_create_user(self) -> Tuple[int, str]:
        """``[newuser]``: returns ``(user, salt)``; the browser logs in with ``f"{user}!{salt}"``."""
        user = ctypes.c_uint64(0)
        salt = ctypes.create_string_buffer(32)
        check(lib().wsb_broker_webtalk_create_user(self._live(), ctypes.byref(user), salt, 32),
              "wsb_broker_webtalk_create_user")
        return user.value, salt.value.decode("ascii")

    def webtalk_kill_user(self, user: int) -> None:
        check(lib().wsb_broker_webtalk_kill_user(self._live(), user), "wsb_broker_webtalk_kill_user")

    def webtalk_whisper(self, user: int, message: Union[str, Bytes]) -> None:
        """``[whisper]``: one frame to the user's browser (queued while offline; a full queue raises
        WOULD_OVERFLOW)."""
        buf, n = as_buffer(_payload(message))
        check(lib().wsb_broker_webtalk_whisper(self._live(), user, buf, n), "wsb_broker_webtalk_whisper")

    def webtalk_create_channel(self) -> int:
        ch = ctypes.c_uint64(0)
        check(lib().wsb_broker_webtalk_create_channel(self._live(), ctypes.byref(ch)), "wsb_broker_webtalk_create_channel")
        return ch.value

    def webtalk_kill_channel(self, channel: int) -> None:
        check(lib().wsb_broker_webtalk_kill_channel(self._live(), channel), "wsb_broker_webtalk_kill_channel")

    def webtalk_shout(self, channel: int, message: Union[str, Bytes]) -> None:
        """``[shout]`` to every member; WOULD_OVERFLOW if a member's queue was full (the others got it)."""
        buf, n = as_buffer(_payload(message))
        check(lib().wsb_broker_webtalk_shout(self._live(), channel, buf, n), "wsb_broker_webtalk_shout")

    def webtalk_join(self, channel: int, user: int) -> None:
        check(lib().wsb_broker_webtalk_join(self._live(), channel, user), "wsb_broker_webtalk_join")

    def webtalk_leave(self, channel: int, user: int) -> None:
        check(lib().wsb_broker_webtalk_leave(self._live(), channel, user), "wsb_broker_webtalk_leave")

    def webtalk_store(self, key: str, value: Union[str, Bytes]) -> None:
        f = "wsb_broker_webtalk_store"
        buf, n = as_buffer(_payload(value))
        check(lib().wsb_broker_webtalk_store(self._live(), no_nul(key, "the key", f), buf, n), f)

    def webtalk_clear(self, key: str) -> None:
        f = "wsb_broker_webtalk_clear"
        check(lib().wsb_broker_webtalk_clear(self._live(), no_nul(key, "the key", f)), f)

    def webtalk_retrieve(self, key: str) -> Optional[bytes]:
        """``[retrieve]``: the stored value, or None when there is none."""
        f = "wsb_broker_webtalk_retrieve"
        k = no_nul(key, "the key", f)
        needed = ctypes.c_size_t(0)
        size = 256
        for _ in range(4):  # the value may grow between two calls
            buf = ctypes.create_string_buffer(size)
            r = lib().wsb_broker_webtalk_retrieve(self._live(), k, buf, size, ctypes.byref(needed))
            if r == Result.NOT_FOUND:
                return None
            if r == Result.OK:
                return buf.raw[: max(needed.value - 1, 0)]
            if r != Result.BUFFER_TOO_SMALL:
                check(r, f)
            size = max(needed.value, size * 2)
        raise WsbError(Result.BUFFER_TOO_SMALL, "the value kept growing", f)
