"""A small chat on the pub/sub hub: ``portside serve examples.chat:app --workers 2``.

See README.md beside this file.
"""

from __future__ import annotations

from .server import app, hub

__all__ = ["app", "hub"]
