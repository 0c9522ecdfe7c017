"""Tests that need a real component: skipped off CI, failed on CI.

A test that needs a program or package the machine may lack (Chromium, nginx,
redis-server, Node.js, a Python version...) marks itself with :func:`needs`. Off
CI the test is skipped with the reason, so that ``make test`` works on a laptop
without them; under ``CI=true`` a missing component fails the test instead, since
``.ci/run`` installs everything and a skip there would hide a broken install.
"""

from __future__ import annotations

import os

import pytest

from portside.protocol.speedups import WANTED

ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def needs(available: object, reason: str) -> pytest.MarkDecorator:
    """A mark for a test, class or module that needs ``available`` to be truthy.

    Use it as ``pytestmark = needs(shutil.which("nginx"), "needs nginx (apt install nginx)")``.

    Args:
        available: Whether the component is there (a path, a module, a bool...).
        reason: What is missing and how to get it.

    Returns:
        A mark that does nothing when the component is there; otherwise, the
        test is skipped with ``reason`` off CI and fails with it under ``CI=true``
        (``tests/conftest.py`` reads the mark).
    """
    if available:
        return pytest.mark.portside_needs()
    return pytest.mark.portside_needs(reason=reason)


def needs_speedups(loaded: object, what: str = "the C accelerator") -> pytest.MarkDecorator:
    """A mark for a test of a C accelerator, which ``make install`` builds.

    Args:
        loaded: Whether the extension (or the part of it the test needs) loaded.
        what: What the test needs, for the reason.

    Returns:
        A mark that does nothing when it loaded; otherwise, a skip when
        ``PORTSIDE_NO_SPEEDUPS=1`` asks for pure Python on purpose, and else
        :func:`needs`' mark: skipped off CI, failed under ``CI=true``, where a
        build or an import that failed must not pass for a skip.
        (``portside.protocol.speedups.load_accelerator`` logs why an extension
        that was built does not load.)
    """
    if not loaded and not WANTED:
        return pytest.mark.skip(reason=f"{what}: pure Python on purpose (PORTSIDE_NO_SPEEDUPS=1)")
    return needs(loaded, f"needs {what} (a C compiler and Python headers at install time)")


def check_needs(item: pytest.Item) -> None:
    """Skip or fail ``item`` for each component its ``needs`` marks say is missing."""
    for mark in item.iter_markers("portside_needs"):
        reason = mark.kwargs.get("reason")
        if reason is not None:
            require(False, reason)


def require(available: object, reason: str) -> None:
    """Inside a test: skip off CI, fail under ``CI=true``, when ``available`` is falsy."""
    if available:
        return
    if ON_CI:
        pytest.fail(f"{reason} (required under CI=true)", pytrace=False)
    pytest.skip(reason)
