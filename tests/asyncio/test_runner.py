from __future__ import annotations

import asyncio
import builtins
from typing import Any

import pytest

from portside.asyncio import allocator
from portside.asyncio.runner import run, uvloop_available


async def loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_run_uses_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PORTSIDE_NO_UVLOOP", raising=False)
    assert uvloop_available()
    assert run(loop_module()).startswith("uvloop")


def test_run_can_be_told_not_to(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTSIDE_NO_UVLOOP", "1")
    assert not uvloop_available()
    assert run(loop_module()).startswith("asyncio")


def test_run_without_uvloop_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PORTSIDE_NO_UVLOOP", raising=False)
    real_import = builtins.__import__

    def no_uvloop(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "uvloop":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_uvloop)
    assert not uvloop_available()
    assert run(loop_module()).startswith("asyncio")


@pytest.mark.parametrize("tune", [True, False])
def test_run_tunes_the_allocator_unless_told_not_to(
    monkeypatch: pytest.MonkeyPatch, tune: bool
) -> None:
    calls: list[str] = []

    def record() -> bool:
        calls.append("tuned")
        return True

    monkeypatch.setattr(allocator, "tune_allocator", record)
    run(loop_module(), tune_allocator=tune)
    assert calls == (["tuned"] if tune else [])
