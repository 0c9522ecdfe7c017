"""Frames, opcodes and close codes, where websockets users look for them.

They live in the sans-I/O core (:mod:`portside.protocol.frames` and
:mod:`portside.protocol.close`); this module re-exports them, as
``websockets.frames`` does.
"""

from __future__ import annotations

from .protocol.close import Close, CloseCode
from .protocol.frames import Frame, Opcode

__all__ = ["Opcode", "CloseCode", "Frame", "Close"]
