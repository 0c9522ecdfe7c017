"""SOCKS proxies through python-socks, for both I/O layers.

``connect(proxy="socks5h://...")`` reaches the server through python-socks
(``pip install 'portside[socks]'``): its synchronous API in the threading layer,
its asyncio API in the asyncio layer. What does not depend on the API is here:
building python-socks' proxy object from a parsed
:class:`~portside.protocol.proxy.Proxy`, with one clear error when python-socks
is missing, and turning its errors into portside's.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Any

from .exceptions import ProxyError
from .protocol.proxy import Proxy

__all__ = ["SOCKS_ASYNCIO", "SOCKS_SYNC", "socks_errors", "socks_proxy"]

#: python-socks' module for blocking sockets.
SOCKS_SYNC = "python_socks.sync"
#: python-socks' module for asyncio.
SOCKS_ASYNCIO = "python_socks.async_.asyncio"


def socks_proxy(proxy: Proxy, api: str) -> Any:
    """Return python-socks' proxy object for ``proxy``.

    ``socks5h`` and ``socks4a`` let the proxy resolve the server's name;
    ``socks5`` and ``socks4`` resolve it here.

    Args:
        proxy: A SOCKS proxy.
        api: :data:`SOCKS_SYNC` or :data:`SOCKS_ASYNCIO`: the python-socks
            module whose ``Proxy`` to build.

    Raises:
        ImportError: If python-socks is not installed.
    """
    try:
        from python_socks import ProxyType

        module = importlib.import_module(api)
    except ImportError as exc:
        raise ImportError(
            f"connecting through a {proxy.scheme}:// proxy requires python-socks: "
            "pip install 'portside[socks]'"
        ) from exc
    proxy_type = ProxyType.SOCKS5 if proxy.scheme.startswith("socks5") else ProxyType.SOCKS4
    return module.Proxy(
        proxy_type,
        proxy.host,
        proxy.port,
        proxy.username,
        proxy.password,
        rdns=proxy.scheme in ("socks5h", "socks4a"),
    )


@contextlib.contextmanager
def socks_errors() -> Iterator[None]:
    """Around python-socks' ``connect()``: its refusals become :class:`ProxyError`.

    Network errors stay :class:`OSError` (python-socks' ``ProxyConnectionError``
    is one) and :class:`TimeoutError`, which a reconnecting client retries.

    Raises:
        ProxyError: If the proxy refused (a SOCKS error reply, failed
            authentication) or broke the SOCKS protocol.
    """
    try:
        yield
    except (OSError, TimeoutError):
        raise
    except Exception as exc:
        # python-socks' ProxyError (a refusal) and protocol errors.
        raise ProxyError(f"SOCKS proxy failed: {exc}") from exc
