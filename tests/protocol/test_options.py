from __future__ import annotations

import logging
import math
import re

import pytest

from portside.protocol.headers import Headers
from portside.protocol.options import (
    check_callable,
    check_open_timeout,
    logger_option,
    origins_option,
    request_headers_option,
)


@pytest.mark.parametrize("value", [None, 0, 0.5, 10, math.inf])
def test_valid_open_timeouts(value: float | None) -> None:
    check_open_timeout(value)


@pytest.mark.parametrize("value", [-1, -0.1, math.nan])
def test_invalid_open_timeouts(value: float) -> None:
    with pytest.raises(ValueError, match="open_timeout must be >= 0 or None"):
        check_open_timeout(value)


def test_check_callable() -> None:
    check_callable("hook", print)
    check_callable("hook", None)
    with pytest.raises(TypeError, match=r"^hook must be callable or None$"):
        check_callable("hook", "print")
    with pytest.raises(TypeError, match=r"^handler must be a function$"):
        check_callable("handler", None, "a function", optional=False)
    check_callable("handler", print, "a function", optional=False)


def test_logger_option() -> None:
    assert logger_option(None, "portside.test") is logging.getLogger("portside.test")
    assert logger_option("other", "portside.test") is logging.getLogger("other")
    adapter = logging.LoggerAdapter(logging.getLogger("x"))
    assert logger_option(adapter, "portside.test") is adapter


def test_request_headers_under_either_name() -> None:
    headers = Headers(X="1")
    assert request_headers_option(headers, None) is headers
    assert request_headers_option(None, headers) is headers
    assert request_headers_option(None, None) is None
    with pytest.raises(TypeError, match="pass extra_headers or additional_headers, not both"):
        request_headers_option(headers, headers)


def test_origins_option() -> None:
    assert origins_option(None) is None
    pattern = re.compile(r"https://.*\.example")
    allowed = origins_option(("https://example.com", pattern, None))
    assert allowed == ["https://example.com", pattern, None]
    with pytest.raises(TypeError, match="origins must hold strings, compiled patterns or None"):
        origins_option(["https://example.com", 42])  # type: ignore[list-item]
