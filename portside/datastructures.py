"""HTTP headers, where websockets users look for them.

:class:`Headers` lives in :mod:`portside.protocol.headers`; this module
re-exports it, as ``websockets.datastructures`` does.
"""

from __future__ import annotations

from .protocol.headers import Headers, HeadersLike, MultipleValuesError

__all__ = ["Headers", "HeadersLike", "MultipleValuesError"]
