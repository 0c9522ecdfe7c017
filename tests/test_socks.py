"""The layer-neutral part of SOCKS proxies: python-socks' proxy object, its errors."""

from __future__ import annotations

import importlib
import sys

import pytest
from python_socks import ProxyError as SocksProxyError
from python_socks import ProxyType

from portside.exceptions import ProxyError
from portside.protocol.proxy import parse_proxy
from portside.socks import SOCKS_ASYNCIO, SOCKS_SYNC, socks_errors, socks_proxy


class Recorder:
    """Stands for python-socks' Proxy class: records what it is given."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.args = args
        self.kwargs = kwargs


@pytest.mark.parametrize(
    ("address", "proxy_type", "rdns"),
    [
        ("socks5h://proxy:1080", ProxyType.SOCKS5, True),
        ("socks5://proxy:1080", ProxyType.SOCKS5, False),
        ("socks4a://proxy:1080", ProxyType.SOCKS4, True),
        ("socks4://alice:s3cr3t@proxy:1080", ProxyType.SOCKS4, False),
    ],
)
@pytest.mark.parametrize("api", [SOCKS_SYNC, SOCKS_ASYNCIO])
def test_socks_proxy(
    address: str, proxy_type: ProxyType, rdns: bool, api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(f"{api}.Proxy", Recorder)
    proxy = parse_proxy(address)
    built = socks_proxy(proxy, api)
    assert isinstance(built, Recorder)
    assert built.args == (proxy_type, "proxy", 1080, proxy.username, proxy.password)
    assert built.kwargs == {"rdns": rdns}


@pytest.mark.parametrize("api", [SOCKS_SYNC, SOCKS_ASYNCIO])
async def test_socks_proxy_is_the_apis(api: str) -> None:
    # In a running loop: python-socks' asyncio proxy takes the running loop.
    built = socks_proxy(parse_proxy("socks5h://proxy"), api)
    assert type(built) is importlib.import_module(api).Proxy


def test_missing_python_socks_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "python_socks", None)
    with pytest.raises(ImportError, match=r"socks5h:// proxy requires python-socks: pip install"):
        socks_proxy(parse_proxy("socks5h://proxy"), SOCKS_SYNC)


@pytest.mark.parametrize(
    "error", [ConnectionRefusedError(), OSError("unreachable"), TimeoutError()]
)
def test_network_errors_stay_what_they_are(error: Exception) -> None:
    with pytest.raises(type(error)) as raised, socks_errors():
        raise error
    assert raised.value is error


def test_refusals_become_proxy_errors() -> None:
    refusal = SocksProxyError("Connection not allowed by ruleset", 2)
    with pytest.raises(ProxyError, match="SOCKS proxy failed: Connection not allowed") as raised:
        with socks_errors():
            raise refusal
    assert raised.value.__cause__ is refusal


def test_nothing_to_translate() -> None:
    with socks_errors():
        pass
