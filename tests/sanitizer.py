"""Tests that cannot run under the sanitizers say so (``make sanitize``).

``tools/sanitize.py`` runs the suite with ASan's allocator in place of glibc's
(``PORTSIDE_SANITIZER`` is set then). A test that measures what only the real
allocator or an unsanitized process does is skipped there, with the reason.
"""

from __future__ import annotations

import os

import pytest

#: The sanitizers the process runs under ("address,undefined"), or "".
SANITIZER = os.environ.get("PORTSIDE_SANITIZER", "")


def not_under_sanitizer(reason: str) -> pytest.MarkDecorator:
    """A mark that skips the test under the sanitizers, saying ``reason``."""
    return pytest.mark.skipif(bool(SANITIZER), reason=f"not under {SANITIZER}: {reason}")
