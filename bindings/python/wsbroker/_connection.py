"""The connection settings the WebSocket client and the AppWebsocket client share: upgrade
headers, connect timeout, TLS trust, client certificate and proxy. Each config class declares the
fields and names its own C setters; :func:`apply` is the one place that calls them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Tuple, Union

from ._native import check, lib
from ._owned import no_nul

PathLike = Union[str, "os.PathLike[str]"]
Headers = Union[Mapping[str, str], Sequence[Tuple[str, str]]]


@dataclass(frozen=True)
class Setters:
    """The names of one config type's C setters (``wsb_client_config_*``, ``wsb_appws_client_config_*``)."""

    add_header: str
    set_connect_timeout_ms: str
    set_ca_file: str
    set_system_roots: str
    set_client_cert: str
    set_insecure: str
    set_proxy: str


def apply(cfg: Any, opts: Any, setters: Setters) -> None:
    """Applies ``opts.headers``, ``connect_timeout_ms``, ``ca_file``, ``system_roots``,
    ``client_cert`` (``(chain, key)``), ``insecure`` and ``proxy`` to the native ``cfg``; ``None``
    (no headers) keeps the library default. Raises ``WsbError`` on the first refused setting."""
    L = lib()
    headers: Headers = opts.headers
    items = headers.items() if isinstance(headers, Mapping) else headers
    f = setters.add_header
    for name, value in items:
        check(getattr(L, f)(cfg, no_nul(name, "a header name", f), no_nul(value, "a header value", f)), f)
    for field in ("connect_timeout_ms", "system_roots", "insecure"):
        value = getattr(opts, field)
        if value is not None:
            f = getattr(setters, "set_" + field)
            check(getattr(L, f)(cfg, value), f)
    if opts.ca_file is not None:
        check(getattr(L, setters.set_ca_file)(cfg, os.fsencode(opts.ca_file)), setters.set_ca_file)
    if opts.client_cert is not None:
        chain, key = opts.client_cert
        f = setters.set_client_cert
        check(getattr(L, f)(cfg, os.fsencode(chain), os.fsencode(key)), f)
    if opts.proxy is not None:
        f = setters.set_proxy
        check(getattr(L, f)(cfg, no_nul(opts.proxy, "the proxy", f)), f)
