"""The hot-path helpers: the C accelerator when it is built, else pure Python.

Set the environment variable ``PORTSIDE_NO_SPEEDUPS=1`` to use the pure-Python
implementation even when the C extension is available.

Attributes:
    IMPLEMENTATION: ``"c"`` or ``"python"``, whichever was loaded.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

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


def load_accelerator(name: str) -> ModuleType | None:
    """Import the C extension ``name``, or return ``None`` if it cannot be used.

    An extension that was never built (no compiler or no Python headers at
    install time, ``PORTSIDE_NO_BUILD_SPEEDUPS=1``, or built for another Python
    version) is not an error: portside runs its pure-Python twin. One that was
    built but fails to import (a missing symbol, an error while it loads) is
    logged once, at WARNING, with the error, since portside then runs slower
    than it should and nothing else would say why.

    Args:
        name: The extension's module name, e.g. ``"portside.protocol._speedups"``.

    Returns:
        The module, or ``None``.
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name == name:
            return None  # not built
        failure: Exception = error
    except Exception as error:
        failure = error
    import logging  # only here: the sans-I/O core has no other use for it

    logging.getLogger(__name__).warning(
        "the C accelerator %s was built but does not import (%s: %s); "
        "portside runs its slower pure-Python twin",
        name,
        type(failure).__name__,
        failure,
    )
    return None


_speedups = load_accelerator(f"{__package__}._speedups") if WANTED else None
if _speedups is not None:  # pragma: no cover - depends on the build
    if hasattr(_speedups, "ReaderBase"):
        # The C twin of the same class; type checkers see the Python one.
        ReaderBase = _speedups.ReaderBase  # type: ignore[misc]
    apply_mask = _speedups.apply_mask
    encode_frame = _speedups.encode_frame
    encode_header = _speedups.encode_header
    new_buffer = _speedups.new_buffer
    parse_frames = _speedups.parse_frames
    IMPLEMENTATION = "c"
