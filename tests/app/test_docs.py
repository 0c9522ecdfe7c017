"""The documentation of portside serve lists every option, variable and signal."""

from __future__ import annotations

from pathlib import Path

from portside.app.config import OPTIONS
from portside.app.signals import SIGNAL_ACTIONS

DOCS = Path(__file__).resolve().parent.parent.parent / "docs"


def test_every_option_is_documented() -> None:
    server = (DOCS / "server.md").read_text()
    for option in OPTIONS:
        if option.name != "app":
            assert f"`{option.flag}" in server, option.flag
        assert f"`{option.env}`" in server, option.env
    assert "`--config PATH`" in server


def test_every_signal_is_documented() -> None:
    server = (DOCS / "server.md").read_text()
    for name in SIGNAL_ACTIONS:
        assert f"| {name} |" in server, name


def test_the_reference_points_to_the_server_page() -> None:
    reference = (DOCS / "reference.md").read_text()
    assert "(server.md)" in reference
    for name in ("max_connections", "on_connection_end", "graceful_timeout", "bytes_sent"):
        assert name in reference
