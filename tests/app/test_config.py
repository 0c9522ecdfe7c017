"""Settings: one table read from the command line, the environment and a TOML file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from portside.app.config import (
    OPTIONS,
    Bind,
    Config,
    ConfigError,
    build,
    defaults,
    parse_bind,
    read_toml,
    resolve,
)


def config_of(
    cli: dict[str, Any] | None = None, env: dict[str, str] | None = None, **file: Any
) -> Config:
    values, explicit = resolve(cli or {}, env or {}, file, "portside.toml")
    return build(values, explicit)


def test_the_command_line_beats_the_environment_which_beats_the_file() -> None:
    config = config_of(
        {"app": "a:b", "workers": "4"},
        {"PORTSIDE_WORKERS": "3", "PORTSIDE_MAX_SIZE": "1000"},
        workers=2,
        max_size=2000,
        max_queue=8,
    )
    assert config.workers.count == 4
    assert config.limits.connection.max_size == 1000
    assert config.limits.connection.max_queue == 8
    assert config.limits.connection.read_limit == 2**16  # the default
    assert config.explicit >= {"app", "workers", "max_size", "max_queue"}
    assert "read_limit" not in config.explicit
    assert config.limits.explicit == {"max_size", "max_queue"}


def test_the_app_can_come_from_the_environment_or_the_file() -> None:
    assert config_of(env={"PORTSIDE_APP": "env:app"}).target.app == "env:app"
    assert config_of(app="file:app").target.app == "file:app"


def test_defaults() -> None:
    config = config_of({"app": "m:a"})
    assert config.listen.binds == (Bind("tcp", host="127.0.0.1", port=8000),)
    assert config.workers.count == 1
    assert config.workers.timeout == 30
    assert config.workers.graceful_timeout == 30
    assert config.workers.restart_close_code == 1012
    assert config.endpoints.health_path == "/healthz"
    assert config.endpoints.ready_path == "/readyz"
    assert config.endpoints.metrics_path is None
    assert config.limits.compression == "deflate"
    assert config.loop == "auto"
    assert config.logging.level == "info"
    assert config.workers.reload_dirs == (".",)
    assert defaults()["backlog"] == 2048


def test_every_option_has_a_flag_an_env_name_and_help() -> None:
    names = [option.name for option in OPTIONS]
    assert len(names) == len(set(names))
    for option in OPTIONS:
        assert option.flag == "--" + option.name.replace("_", "-")
        assert option.env == "PORTSIDE_" + option.name.upper()
        assert option.help


@pytest.mark.parametrize(
    ("cli", "env", "file", "error"),
    [
        ({"workers": "-1"}, {}, {}, "--workers: expected an integer >= 0, not '-1'"),
        ({}, {"PORTSIDE_WORKERS": "many"}, {}, "PORTSIDE_WORKERS: expected an integer, not 'many'"),
        ({}, {}, {"workers": True}, "workers in portside.toml: expected an integer"),
        ({}, {}, {"wrokers": 2}, "portside.toml: unknown key 'wrokers'; known keys: access_log"),
        ({"timeout": "soon"}, {}, {}, "--timeout: expected a number, not 'soon'"),
        ({"timeout": "inf"}, {}, {}, "--timeout: expected a finite number"),
        ({"timeout": "-1"}, {}, {}, "--timeout: expected a number of seconds >= 0"),
        ({"compression": "gzip"}, {}, {}, "--compression: expected 'deflate' or 'none'"),
        ({"loop": "trio"}, {}, {}, "--loop: expected one of auto, asyncio, uvloop"),
        ({"health_path": "healthz"}, {}, {}, "--health-path: expected a path starting with '/'"),
        ({"restart_close_code": "1006"}, {}, {}, "--restart-close-code: expected a close code"),
        ({"bind": ["localhost"]}, {}, {}, "--bind: expected HOST:PORT, [IPV6]:PORT"),
        ({"bind": ["h:99999"]}, {}, {}, "--bind: expected a port between 0 and 65535"),
        ({"bind": ["h:x"]}, {}, {}, "--bind: expected HOST:PORT with PORT a number"),
        ({"bind": ["unix:"]}, {}, {}, "--bind: expected unix:/path/to/socket"),
        ({"bind": ["fd://x"]}, {}, {}, "--bind: expected fd://N"),
        ({}, {}, {"bind": 8000}, "bind in portside.toml: expected an address or a list"),
        ({}, {}, {"bind": []}, "bind in portside.toml: expected at least one address"),
        ({}, {}, {"bind": [8000]}, "bind in portside.toml: expected addresses as strings"),
        ({}, {}, {"reload_dir": 3}, "reload_dir in portside.toml: expected a directory"),
        ({}, {"PORTSIDE_ACCESS_LOG": "maybe"}, {}, "PORTSIDE_ACCESS_LOG: expected true or false"),
        ({}, {}, {"app_dir": 3}, "app_dir in portside.toml: expected a string"),
        (
            {},
            {},
            {"max_size": -1},
            "max_size in portside.toml: expected an integer >= 0, or 'none'",
        ),
        ({}, {}, {"read_limit": 100}, "read_limit in portside.toml: expected an integer >= 256"),
        ({}, {}, {"timeout": [1]}, "timeout in portside.toml: expected a number"),
    ],
)
def test_a_wrong_value_names_the_option_and_where_it_came_from(
    cli: dict[str, Any], env: dict[str, str], file: dict[str, Any], error: str
) -> None:
    with pytest.raises(ConfigError) as info:
        config_of({"app": "m:a", **cli}, env, **file)
    assert str(info.value).startswith(error)


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"app": None}, "no app given: portside serve MODULE:ATTR"),
        ({"app": "module"}, "app must be MODULE:ATTR"),
        ({"keyfile": "k.pem"}, "--keyfile needs --certfile"),
        ({"ca_certs": "ca.pem"}, "--ca-certs needs --certfile"),
        ({"drain_spread": 30.0}, "--drain-spread (30 s) must be shorter than --graceful-timeout"),
        ({"timeout": 0.0}, "--timeout must be more than 0 seconds"),
        ({"metrics_path": "/readyz"}, "--health-path, --ready-path and --metrics-path must differ"),
    ],
)
def test_options_that_contradict_each_other(values: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError) as info:
        build({**defaults(), "app": "m:a", **values})
    assert str(info.value).startswith(error)


def test_values_of_every_kind() -> None:
    config = config_of(
        {
            "app": "m:a",
            "bind": ["0.0.0.0:80", "[::]:8080", "unix:/run/x.sock", "fd://3"],
            "max_size": "none",
            "ping_interval": "off",
            "access_log": True,
            "compression": "none",
            "metrics_path": "/metrics",
            "worker_max_connections_served": "1_000",
            "worker_max_rss": "512",
        },
        {"PORTSIDE_RELOAD_DIR": "a:b", "PORTSIDE_FACTORY": "yes"},
    )
    assert config.listen.binds == (
        Bind("tcp", host="0.0.0.0", port=80),
        Bind("tcp", host="::", port=8080),
        Bind("unix", path="/run/x.sock"),
        Bind("fd", fd=3),
    )
    assert [str(bind) for bind in config.listen.binds] == [
        "0.0.0.0:80",
        "[::]:8080",
        "unix:/run/x.sock",
        "fd://3",
    ]
    assert config.limits.connection.max_size is None
    assert config.limits.connection.ping_interval is None
    assert config.limits.compression is None
    assert config.logging.access_log
    assert config.target.factory
    assert config.workers.reload_dirs == ("a", "b")
    assert config.workers.max_connections_served == 1000
    assert config.workers.max_connections_served_jitter == 100  # 10 % by default
    assert config.workers.max_rss_mib == 512
    assert config.workers.max_rss_jitter_mib == 51
    assert config.limits.serve_options()["compression"] is None


def test_bind_lists_from_the_environment_and_the_file() -> None:
    env = {"PORTSIDE_BIND": "127.0.0.1:1, unix:/tmp/a.sock"}
    assert [str(b) for b in config_of({"app": "m:a"}, env).listen.binds] == [
        "127.0.0.1:1",
        "unix:/tmp/a.sock",
    ]
    assert [str(b) for b in config_of({"app": "m:a"}, bind="[::1]:9").listen.binds] == ["[::1]:9"]


def test_parse_bind() -> None:
    assert parse_bind(" localhost:0 ") == Bind("tcp", host="localhost", port=0)
    assert parse_bind(":8000") == Bind("tcp", host="", port=8000)
    with pytest.raises(ValueError, match="file descriptor"):
        parse_bind("fd://-1")


def test_read_toml(tmp_path: Path) -> None:
    path = tmp_path / "portside.toml"
    path.write_text('app = "m:a"\nworkers = 3\nmax-size = 100\nbind = ["127.0.0.1:1"]\n')
    data = read_toml(str(path))
    config = config_of({}, {}, **data)
    assert config.workers.count == 3
    assert config.limits.connection.max_size == 100
    path.write_text("workers = \n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        read_toml(str(path))
    with pytest.raises(ConfigError, match="cannot read it"):
        read_toml(str(tmp_path / "missing.toml"))
