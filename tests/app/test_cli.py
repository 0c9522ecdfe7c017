"""The command line: dispatch, usage, and one-line errors with status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from portside.app import cli
from portside.app.supervisor import Supervisor
from portside.version import __version__


def test_no_arguments_print_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage: portside serve MODULE:ATTR" in capsys.readouterr().err


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    assert "portside ws://HOST:PORT/PATH" in capsys.readouterr().out
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"portside {__version__}\n"


def test_an_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["srve", "m:a"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("portside: error: unknown command 'srve'\n")


def test_serve_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["serve", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--bind", "--workers", "--graceful-timeout", "--drain-spread", "--access-log"):
        assert flag in out


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["serve", "m:a", "--wrokers", "2"], "unrecognized arguments: --wrokers 2"),
        (["serve", "m:a", "--workers", "two"], "--workers: expected an integer, not 'two'"),
        (["serve"], "no app given"),
        (
            ["serve", "m:a", "--config", "/nonexistent.toml"],
            "--config /nonexistent.toml: cannot read",
        ),
    ],
)
def test_a_bad_option_is_one_line_and_status_2(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PORTSIDE_CONFIG", raising=False)
    with pytest.raises(SystemExit) as info:
        raise SystemExit(cli.main(argv))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("portside: error: ")
    assert error in err


def test_serve_reads_the_config_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "portside.toml"
    config.write_text('app = "m:a"\nworkers = 3\nlog_file = "' + str(tmp_path / "log") + '"\n')
    monkeypatch.setenv("PORTSIDE_CONFIG", str(config))
    monkeypatch.setenv("PORTSIDE_BACKLOG", "17")
    seen = []

    def run(self: Supervisor) -> int:
        seen.append(self.config)
        return 0

    monkeypatch.setattr(Supervisor, "run", run)
    assert cli.main(["serve", "--graceful-timeout", "5"]) == 0
    (config_seen,) = seen
    assert config_seen.workers.count == 3
    assert config_seen.listen.backlog == 17
    assert config_seen.workers.graceful_timeout == 5


def test_an_unwritable_log_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["serve", "m:a", "--log-file", str(tmp_path / "no" / "such" / "log")]) == 2
    assert capsys.readouterr().err.startswith("portside: error: --log-file")


def test_the_interactive_client_when_missing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "portside.interactive" else real(name, *a),
    )
    assert cli.main(["ws://localhost:1/"]) == 2
    assert "interactive client" in capsys.readouterr().err


def test_the_interactive_client_is_dispatched(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    calls = []
    module = types.ModuleType("portside.interactive")

    def main(argv: list[str]) -> int:
        calls.append(argv)
        return 7

    module.main = main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "portside.interactive", module)
    import portside

    monkeypatch.setattr(portside, "interactive", module, raising=False)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: module if name == "portside.interactive" else real(name, *a),
    )
    assert cli.main(["wss://example.test/chat", "--x"]) == 7
    assert calls == [["wss://example.test/chat", "--x"]]


def test_python_dash_m_portside_prints_the_usage() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "portside"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert result.stderr.startswith("usage: portside serve MODULE:ATTR")
