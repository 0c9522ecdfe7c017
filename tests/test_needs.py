"""tests/needs.py: what a test that needs a C accelerator does without it."""

from __future__ import annotations

import pytest

from tests import needs


def test_loaded_accelerator_needs_nothing() -> None:
    mark = needs.needs_speedups(True).mark
    assert mark.name == "portside_needs"
    assert "reason" not in mark.kwargs


def test_missing_accelerator_skips_or_fails_as_any_component(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A build that failed, or an import: skipped off CI, failed under CI=true.
    monkeypatch.setattr(needs, "WANTED", True)
    mark = needs.needs_speedups(False, "the C ReaderBase").mark
    assert mark.name == "portside_needs"
    assert mark.kwargs["reason"].startswith("needs the C ReaderBase (a C compiler")


def test_pure_python_on_purpose_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(needs, "WANTED", False)
    mark = needs.needs_speedups(False).mark
    assert mark.name == "skip"
    assert "PORTSIDE_NO_SPEEDUPS=1" in mark.kwargs["reason"]
