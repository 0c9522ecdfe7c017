"""The hot-path helpers: the C accelerator when it is built, else pure Python.

Set the environment variable ``PORTSIDE_NO_SPEEDUPS=1`` to use the pure-Python
implementation even when the C extension is available.

Attributes:
    IMPLEMENTATION: ``"c"`` or ``"python"``, whichever was loaded.
"""

from __future__ import annotations

import os

from . import _pyspeedups
from ._pyspeedups import ReaderBase

__all__ = [
    "IMPLEMENTATION",
    "ReaderBase",
    "WANTED",
    "apply_mask",
    "encode_frame",
    "encode_header",
    "new_buffer",
    "parse_frames",
]

apply_mask = _pyspeedups.apply_mask
encode_frame = _pyspeedups.encode_frame
encode_header = _pyspeedups.encode_header
new_buffer = _pyspeedups.new_buffer
parse_frames = _pyspeedups.parse_frames
IMPLEMENTATION = "python"

#: Whether the C accelerators should be used: not with ``PORTSIDE_NO_SPEEDUPS=1``.
WANTED = os.environ.get("PORTSIDE_NO_SPEEDUPS", "") in ("", "0")

if WANTED:
    try:
        from . import _speedups  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - depends on the build
        pass
    else:  # pragma: no cover - depends on the build
        if hasattr(_speedups, "ReaderBase"):
            # The C twin of the same class; type checkers see the Python one.
            ReaderBase = _speedups.ReaderBase  # type: ignore[misc]
        apply_mask = _speedups.apply_mask
        encode_frame = _speedups.encode_frame
        encode_header = _speedups.encode_header
        new_buffer = _speedups.new_buffer
        parse_frames = _speedups.parse_frames
        IMPLEMENTATION = "c"
