"""Type aliases of the public API, where websockets users look for them.

``from portside.typing import Data`` works as ``from websockets.typing import
Data`` does.
"""

from __future__ import annotations

import http
import logging
from typing import Any, Union

from .protocol.headers import ExtensionParameter
from .protocol.server import Origin

__all__ = [
    "Data",
    "LoggerLike",
    "StatusLike",
    "Origin",
    "Subprotocol",
    "ExtensionName",
    "ExtensionParameter",
]

Data = Union[str, bytes]
"""A message: ``str`` for text, ``bytes`` for binary."""

LoggerLike = Union[logging.Logger, "logging.LoggerAdapter[Any]"]
"""What the ``logger`` options take (besides a logger's name)."""

StatusLike = Union[http.HTTPStatus, int]
"""An HTTP status code."""

Subprotocol = str
"""A subprotocol's name (``Sec-WebSocket-Protocol``); a plain ``str``."""

ExtensionName = str
"""An extension's name (``Sec-WebSocket-Extensions``); a plain ``str``."""
