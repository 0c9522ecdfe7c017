"""portside's public modules offer every name websockets 17.4 documents in its own.

For each websockets module that portside mirrors, the names in its ``__all__``
(what websockets documents and exports) must exist in the portside module of
the same path, and be in that module's ``__all__`` too, so that a program
written for websockets finds them after renaming its imports.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys

import pytest

# The reference, websockets 17.4, needs Python 3.11; Python 3.10 gets websockets
# 16 (pyproject.toml), whose names differ. The API is the same on every Python:
# checked where the reference installs.
pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="websockets 17.4, the reference, needs Python 3.11"
)

# websockets module -> the portside module that mirrors it.
MIRRORS = {
    "websockets": "portside",
    "websockets.asyncio.server": "portside.asyncio.server",
    "websockets.asyncio.client": "portside.asyncio.client",
    "websockets.asyncio.router": "portside.asyncio.router",
    "websockets.exceptions": "portside.exceptions",
    "websockets.frames": "portside.frames",
    "websockets.datastructures": "portside.datastructures",
    "websockets.http11": "portside.http11",
    "websockets.protocol": "portside.protocol",
    "websockets.typing": "portside.typing",
    # The threading layer, once it has landed (the "sync" branch builds it).
    "websockets.sync.server": "portside.sync.server",
    "websockets.sync.client": "portside.sync.client",
    "websockets.sync.router": "portside.sync.router",
}

# Names that websockets documents in a module beside its __all__.
EXTRA = {
    # Documented with connect() and imported there, though defined in
    # websockets.client; portside's issue asks for it in asyncio.client.
    "websockets.asyncio.client": {"process_exception"},
}

# What portside deliberately lacks, and why. Keep it short.
LACKS = {
    "websockets.protocol": {
        # websockets' sans-I/O Protocol returns SEND_EOF from data_to_send() to
        # ask for a half-close. portside's Protocol has another API (send_*()
        # return the bytes to write) and never asks for a half-close, so the
        # sentinel would mean nothing.
        "SEND_EOF",
    },
}


def test_websockets_version() -> None:
    assert importlib.metadata.version("websockets") == "17.4"


@pytest.mark.parametrize(("theirs", "ours"), sorted(MIRRORS.items()))
def test_module_offers_websockets_names(theirs: str, ours: str) -> None:
    if ours.startswith("portside.sync") and importlib.util.find_spec("portside.sync") is None:
        pytest.skip("portside.sync has not landed on this branch")
    their_module = importlib.import_module(theirs)
    our_module = importlib.import_module(ours)
    names = set(their_module.__all__) | EXTRA.get(theirs, set())
    lacking = LACKS.get(theirs, set())
    assert lacking <= names, "a name listed as lacking is not websockets'"
    missing = sorted(n for n in names - lacking if not hasattr(our_module, n))
    assert missing == [], f"{ours} lacks {missing}"
    unlisted = sorted(n for n in names - lacking if n not in our_module.__all__)
    assert unlisted == [], f"{ours}.__all__ lacks {unlisted}"
    for name in lacking:
        assert not hasattr(our_module, name), f"{name} exists now: remove it from LACKS"


def test_one_implementation_of_each_thing() -> None:
    # The mirror modules re-export; they do not define their own copies.
    import portside
    import portside.datastructures
    import portside.frames
    import portside.http11
    import portside.protocol

    assert portside.frames.Close is portside.protocol.Close
    assert portside.frames.Frame is portside.Frame
    assert portside.datastructures.Headers is portside.protocol.Headers
    assert portside.http11.Request is portside.protocol.Request
    assert portside.asyncio.server.broadcast is portside.broadcast
    assert (
        portside.asyncio.client.process_exception
        is importlib.import_module("portside.protocol.reconnect").process_exception
    )
