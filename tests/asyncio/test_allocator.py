from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from portside.asyncio.allocator import tune_allocator
from tests.sanitizer import not_under_sanitizer

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="needs glibc")

# A batch of 64 messages of 64 KiB allocated, then freed, a hundred times: what a
# server does when 64 connections each send one message per loop iteration.
PROBE = """
import json, resource, sys
from portside.asyncio.allocator import tune_allocator

tuned = tune_allocator() if sys.argv[1] == "tune" else False

def batch():
    held = [bytearray(65536) for _ in range(64)]
    del held

batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    batch()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"tuned": tuned, "faults": faults}))
"""


def probe(mode: str, **env: str) -> dict[str, object]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    environ.pop("GLIBC_TUNABLES", None)
    environ.pop("PORTSIDE_NO_ALLOCATOR_TUNING", None)
    environ.update(env)
    result = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        env=environ,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    outcome: dict[str, object] = json.loads(result.stdout)
    return outcome


@glibc_only
@not_under_sanitizer("ASan's allocator replaces glibc's, which mallopt() tunes")
def test_tuning_stops_page_faults_on_message_batches() -> None:
    plain = probe("plain")
    tuned = probe("tune")
    assert tuned["tuned"] is True
    # Untuned, each batch's pages go back to the kernel and fault in again:
    # 100 batches of 1,024 pages. Tuned, they are reused.
    assert isinstance(plain["faults"], int) and isinstance(tuned["faults"], int)
    assert plain["faults"] > 50_000
    assert tuned["faults"] < plain["faults"] // 20


@glibc_only
@pytest.mark.parametrize(
    "env",
    [
        {"PORTSIDE_NO_ALLOCATOR_TUNING": "1"},
        {"MALLOC_TRIM_THRESHOLD_": "131072"},
        {"MALLOC_MMAP_THRESHOLD_": "131072"},
        {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"},
    ],
)
def test_the_users_choice_wins(env: dict[str, str]) -> None:
    assert probe("tune", **env)["tuned"] is False


def test_opt_out_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTSIDE_NO_ALLOCATOR_TUNING", "1")
    assert tune_allocator() is False


def test_other_c_libraries_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PORTSIDE_NO_ALLOCATOR_TUNING", raising=False)
    monkeypatch.setattr(platform, "libc_ver", lambda: ("musl", "1.2"))
    assert tune_allocator() is False


def test_negative_thresholds_are_refused() -> None:
    with pytest.raises(ValueError, match="thresholds"):
        tune_allocator(trim_threshold=-1)
    with pytest.raises(ValueError, match="thresholds"):
        tune_allocator(mmap_threshold=-1)
