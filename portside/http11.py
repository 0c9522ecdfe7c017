"""HTTP messages of the opening handshake, where websockets users look for them.

:class:`Request` and :class:`Response` live in :mod:`portside.protocol.http11`;
this module re-exports them beside the default ``Server`` and ``User-Agent``
headers, as ``websockets.http11`` does.
"""

from __future__ import annotations

from .protocol.http11 import Request, Response
from .version import __version__

__all__ = ["SERVER", "USER_AGENT", "Request", "Response"]

#: The default ``Server`` header of servers' responses (``server_header=``).
SERVER = f"portside/{__version__}"
#: The default ``User-Agent`` header of clients' requests (``user_agent_header=``).
USER_AGENT = f"portside/{__version__}"
