"""Run the Autobahn TestSuite against portside's server and client; summarise.

Server mode starts ``echo_server.py`` (``sync_echo_server.py`` with ``--api
sync``) and points ``wstest -m fuzzingclient`` at it; client mode starts ``wstest
-m fuzzingserver`` and runs ``echo_client.py`` (``sync_echo_client.py``) against
it. Autobahn (Python 2.7 only) is installed on first use into a cache
directory, ``.autobahn/`` by default. Reports go to ``reports/servers`` and
``reports/clients``, logs beside them. Exit status: 0 when every case is OK or
INFORMATIONAL (NON-STRICT too with ``--allow-non-strict``), 1 when some case is
not, 2 when the harness itself could not run a mode to its end.

Usage: ``python -m compliance.run [--mode both] [--cases '1.*,2.*'] ...``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
AGENT = "portside"
HOST = "127.0.0.1"

AUTOBAHN_REQUIREMENT = "autobahntestsuite==25.10.1"
VIRTUALENV_REQUIREMENT = "virtualenv<20.22"
PYTHON2_VERSION = "2.7.18"
INSTALL_TIMEOUT = 900.0
# The whole run: 12.x and 13.x take 8 to 10 minutes each per mode.
DEFAULT_TIMEOUT = 3600.0
READY_TIMEOUT = 60.0

# Verdicts, from best to worst; one per case, from Autobahn's two results.
OK = "OK"
NON_STRICT = "NON-STRICT"
INFORMATIONAL = "INFORMATIONAL"
UNIMPLEMENTED = "UNIMPLEMENTED"
FAILED = "FAILED"
WRONG_CODE = "WRONG CODE"
MISSING = "MISSING"
VERDICTS = (OK, NON_STRICT, INFORMATIONAL, UNIMPLEMENTED, FAILED, WRONG_CODE, MISSING)

# Expands case patterns the way wstest does, and names unknown case ids.
RESOLVE_CASES = """
import json, sys
from autobahntestsuite import fuzzing as f
spec = json.load(sys.stdin)
cs = f.CaseSet(f.CaseSetname, f.CaseBasename, f.Cases, f.CaseCategories, f.CaseSubCategories)
known = cs.CasesIndices
unknown = [c for c in spec["cases"] + spec["exclude-cases"] if "*" not in c and c not in known]
cases = [] if unknown else cs.parseSpecCases(spec)
sys.stdout.write(json.dumps({"cases": cases, "unknown": unknown}))
"""


class HarnessError(Exception):
    """The harness could not do its job (install, start, time out...)."""


class Interrupted(BaseException):
    """SIGTERM or SIGINT reached the runner."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


class Deadline:
    """The time left for the whole run."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left; raise :class:`HarnessError` when none are."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise HarnessError(f"the run exceeded --timeout {self.seconds:g} s")
        return left


class Children:
    """Child processes, each leading its own process group, stopped on the way out."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        args: Sequence[str | Path],
        *,
        log: Path,
        env: dict[str, str],
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``args`` with its output in ``log``, in a new session."""
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(arg) for arg in args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
        # Only while the leader is not reaped: its pid, the group id, is ours.
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signum)

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 10.0) -> int:
        """SIGTERM the process group, SIGKILL it after ``grace`` s; return the status."""
        self._signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            self._signal_group(proc, signal.SIGKILL)
            proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)
        return proc.returncode

    def stop_all(self) -> None:
        """Stop every child still known, latest first."""
        for proc in reversed(list(self.procs)):
            self.stop(proc, grace=5.0)


def wait_for(proc: subprocess.Popen[bytes], deadline: Deadline, what: str) -> int:
    """Wait for ``proc`` within the deadline; return its status."""
    try:
        return proc.wait(deadline.remaining())
    except subprocess.TimeoutExpired:
        raise HarnessError(f"{what} still running at --timeout {deadline.seconds:g} s") from None


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log, indented, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def run_quiet(args: Sequence[str | Path], *, log: Path, env: dict[str, str]) -> None:
    """Run an install step, appending its output to ``log``; raise on failure."""
    with log.open("ab") as out:
        out.write(("$ " + " ".join(str(arg) for arg in args) + "\n").encode())
        out.flush()
        try:
            status = subprocess.run(
                [str(arg) for arg in args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                timeout=INSTALL_TIMEOUT,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            status = -1
    if status != 0:
        raise HarnessError(f"install step failed ({status}): {args[-1]}; see {log}\n{tail(log)}")


def python2_env() -> dict[str, str]:
    """The environment for Python 2.7 tools: none of Python 3's search paths."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def is_python27(python: str) -> bool:
    """Whether ``python`` runs and is a Python 2.7."""
    try:
        result = subprocess.run(
            [python, "-c", "import sys; sys.exit(sys.version_info[:2] != (2, 7))"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=python2_env(),
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def find_python2(explicit: str | None) -> str:
    """Locate Python 2.7: ``--python2``, else pyenv's 2.7.18, else ``python2.7``."""
    if explicit:
        if not is_python27(explicit):
            raise HarnessError(f"--python2 {explicit} is not a working Python 2.7")
        return explicit
    roots: list[str] = []
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            found = subprocess.run(
                [pyenv, "root"], capture_output=True, text=True, timeout=60, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            found = None
        if found is not None and found.returncode == 0 and found.stdout.strip():
            roots.append(found.stdout.strip())
    roots.append(os.environ.get("PYENV_ROOT", ""))
    roots.append(str(Path.home() / ".pyenv"))
    candidates = [f"{root}/versions/{PYTHON2_VERSION}/bin/python" for root in roots if root]
    candidates += [path for path in (shutil.which("python2.7"), shutil.which("python2")) if path]
    for candidate in candidates:
        if is_python27(candidate):
            return candidate
    raise HarnessError(
        f"no Python 2.7 found (tried {', '.join(candidates)}); install it with "
        f"'pyenv install {PYTHON2_VERSION}' or pass --python2"
    )


def ensure_autobahn(cache: Path, python2: str | None) -> Path:
    """Install Autobahn into ``cache/venv`` unless it is there; return ``wstest``."""
    venv = cache / "venv"
    wstest = venv / "bin" / "wstest"
    marker = venv / ".portside-installed"
    if wstest.exists() and marker.is_file() and marker.read_text().strip() == AUTOBAHN_REQUIREMENT:
        return wstest
    interpreter = find_python2(python2)
    print(f"installing {AUTOBAHN_REQUIREMENT} into {venv} with {interpreter}", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    log = cache / "install.log"
    log.write_bytes(b"")
    if venv.exists():
        shutil.rmtree(venv)
    env = python2_env()
    try:
        has_virtualenv = (
            subprocess.run(
                [interpreter, "-c", "import virtualenv"],
                capture_output=True,
                env=env,
                timeout=60,
                check=False,
            ).returncode
            == 0
        )
    except subprocess.TimeoutExpired:
        has_virtualenv = False
    venv_env = dict(env)
    if not has_virtualenv:
        # Into the cache rather than into the interpreter's own site-packages.
        bootstrap = cache / "bootstrap"
        shutil.rmtree(bootstrap, ignore_errors=True)
        target = [interpreter, "-m", "pip", "install", "--quiet", "--target", str(bootstrap)]
        run_quiet([*target, VIRTUALENV_REQUIREMENT], log=log, env=env)
        venv_env["PYTHONPATH"] = str(bootstrap)
    run_quiet([interpreter, "-m", "virtualenv", "--quiet", str(venv)], log=log, env=venv_env)
    pip: list[str | Path] = [venv / "bin" / "python", "-m", "pip", "install", "--quiet"]
    run_quiet([*pip, AUTOBAHN_REQUIREMENT], log=log, env=env)
    run_quiet([wstest, "--help"], log=log, env=env)
    marker.write_text(AUTOBAHN_REQUIREMENT + "\n")
    return wstest


def resolve_cases(wstest: Path, cases: list[str], exclude: list[str]) -> list[str]:
    """Expand the case patterns as wstest will; reject unknown case ids."""
    spec = json.dumps({"cases": cases, "exclude-cases": exclude})
    result = subprocess.run(
        [wstest.parent / "python", "-c", RESOLVE_CASES],
        input=spec,
        capture_output=True,
        text=True,
        env=python2_env(),
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise HarnessError(f"could not expand the case list:\n{result.stderr}")
    resolved: dict[str, list[str]] = json.loads(result.stdout)
    if resolved["unknown"]:
        raise HarnessError(f"unknown case ids: {', '.join(resolved['unknown'])}")
    if not resolved["cases"]:
        raise HarnessError("no case matches --cases minus --exclude")
    return resolved["cases"]


def portside_info(python: str, env: dict[str, str]) -> str:
    """Describe the portside that ``python`` imports; fail clearly if it cannot."""
    code = (
        "import sys, portside, portside.protocol.speedups as s; "
        "print(f'portside {portside.__version__} (speedups: {s.IMPLEMENTATION}), "
        "Python {sys.version.split()[0]}, {portside.__file__}')"
    )
    try:
        result = subprocess.run(
            [python, "-c", code],
            capture_output=True,
            text=True,
            env=env,
            cwd=HERE,  # as for the scripts: the current directory is not on sys.path
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HarnessError(f"--python {python} does not run: {exc}") from None
    if result.returncode != 0:
        raise HarnessError(
            f"--python {python} cannot import portside (install it there, or set "
            f"PYTHONPATH to the repository):\n{result.stderr}"
        )
    return result.stdout.strip()


def free_port() -> int:
    """A TCP port free on HOST right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready_line(proc: subprocess.Popen[bytes], log: Path) -> str:
    """Wait for the echo server's ``READY ws://...`` line; return the URL."""
    end = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < end:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("READY "):
                return line.split(None, 1)[1].strip()
        if proc.poll() is not None:
            raise HarnessError(f"the echo server exited with {proc.returncode}:\n{tail(log)}")
        time.sleep(0.05)
    raise HarnessError(f"the echo server did not get ready in {READY_TIMEOUT:g} s:\n{tail(log)}")


def wait_listening(proc: subprocess.Popen[bytes], port: int) -> bool:
    """Wait until something accepts connections on ``port``; False if ``proc`` died."""
    end = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection((HOST, port), timeout=1.0):
                return True
        except OSError:
            time.sleep(0.1)
    raise HarnessError(f"wstest did not listen on port {port} within {READY_TIMEOUT:g} s")


@dataclass
class CaseResult:
    """One case's outcome, from index.json."""

    case_id: str
    behavior: str
    behavior_close: str
    remote_close_code: int | None
    duration: int | None

    @property
    def verdict(self) -> str:
        """One verdict from the message behaviour and the closing behaviour."""
        behavior, close = self.behavior, self.behavior_close
        if behavior == FAILED or close in (FAILED, "UNCLEAN"):
            return FAILED
        if behavior == UNIMPLEMENTED:
            return UNIMPLEMENTED
        if close == WRONG_CODE:
            return WRONG_CODE
        if behavior == NON_STRICT or close == "FAILED BY CLIENT":
            return NON_STRICT
        if behavior in (OK, INFORMATIONAL) and close in (OK, INFORMATIONAL):
            return OK if behavior == close == OK else INFORMATIONAL
        return FAILED  # anything else Autobahn may say, such as NO_CLOSE


def case_key(case_id: str) -> tuple[int, ...]:
    """Sort key: ``"9.10.2"`` -> ``(9, 10, 2)``."""
    return tuple(int(part) for part in case_id.split("."))


@dataclass
class ModeResult:
    """What one mode produced."""

    mode: str
    expected: list[str]
    duration: float = 0.0
    results: dict[str, CaseResult] = field(default_factory=dict)
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    reports: Path | None = None

    def verdicts(self) -> dict[str, str]:
        """Case id -> verdict, MISSING for expected cases without a result."""
        out = dict.fromkeys(self.expected, MISSING)
        for case_id, result in self.results.items():
            out[case_id] = result.verdict
        return out

    def counts(self) -> dict[str, int]:
        """Verdict -> number of cases."""
        counts = dict.fromkeys(VERDICTS, 0)
        for verdict in self.verdicts().values():
            counts[verdict] += 1
        return counts

    def passed(self, allow_non_strict: bool) -> bool:
        """Whether every case is acceptable and the mode ran to its end."""
        good = {OK, INFORMATIONAL} | ({NON_STRICT} if allow_non_strict else set())
        return self.error is None and all(v in good for v in self.verdicts().values())


def load_index(outdir: Path, agent: str) -> dict[str, CaseResult]:
    """Read Autobahn's ``index.json`` for ``agent``; empty when there is none."""
    index = outdir / "index.json"
    if not index.is_file():
        return {}
    data: dict[str, dict[str, dict[str, Any]]] = json.loads(index.read_text())
    cases = data.get(agent, {})
    return {
        case_id: CaseResult(
            case_id=case_id,
            behavior=str(entry.get("behavior")),
            behavior_close=str(entry.get("behaviorClose")),
            remote_close_code=entry.get("remoteCloseCode"),
            duration=entry.get("duration"),
        )
        for case_id, entry in cases.items()
    }


@dataclass
class Context:
    """Everything the modes share."""

    wstest: Path
    python: str
    portside_env: dict[str, str]
    api: str
    loop: str
    cases: list[str]
    patterns: list[str]
    exclude: list[str]
    reports: Path
    workdir: Path
    deadline: Deadline
    children: Children


def fresh_dir(path: Path) -> Path:
    """Empty ``path`` (reports of an earlier run would mix with these)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def run_server_mode(ctx: Context, result: ModeResult) -> None:
    """portside's server against ``wstest -m fuzzingclient``."""
    ctx.deadline.remaining()
    outdir = result.reports = fresh_dir(ctx.reports / "servers")
    server_log = ctx.reports / "echo-server.log"
    wstest_log = ctx.reports / "wstest-fuzzingclient.log"
    command: list[str | Path]
    if ctx.api == "sync":
        command = [ctx.python, HERE / "sync_echo_server.py"]
    else:
        command = [ctx.python, HERE / "echo_server.py", "--loop", ctx.loop]
    server = ctx.children.start(
        [*command, "--host", HOST, "--port", "0", "--verbose"],
        log=server_log,
        env=ctx.portside_env,
    )
    url = wait_ready_line(server, server_log)
    spec = {
        "outdir": str(outdir),
        "servers": [{"agent": AGENT, "url": url}],
        "cases": ctx.patterns,
        "exclude-cases": ctx.exclude,
        "exclude-agent-cases": {},
    }
    spec_path = ctx.workdir / "fuzzingclient.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    print(f"server mode: wstest -m fuzzingclient against {url}, {len(ctx.cases)} cases", flush=True)
    start = time.monotonic()
    fuzzer = ctx.children.start(
        [ctx.wstest, "-m", "fuzzingclient", "-s", spec_path],
        log=wstest_log,
        env=python2_env(),
        cwd=ctx.workdir,
    )
    try:
        status = wait_for(fuzzer, ctx.deadline, "wstest -m fuzzingclient")
    finally:
        result.duration = time.monotonic() - start
    if status != 0:
        result.error = f"wstest -m fuzzingclient exited with {status}; see {wstest_log}"
    if server.poll() is not None:
        result.notes.append(f"the echo server died during the run ({server.returncode})")
    server_status = ctx.children.stop(server)
    if server_status != 0 and not result.notes:
        result.notes.append(f"the echo server exited with {server_status} on SIGTERM")
    result.results = load_index(outdir, AGENT)


def run_client_mode(ctx: Context, result: ModeResult) -> None:
    """portside's client against ``wstest -m fuzzingserver``."""
    ctx.deadline.remaining()
    outdir = result.reports = fresh_dir(ctx.reports / "clients")
    wstest_log = ctx.reports / "wstest-fuzzingserver.log"
    client_log = ctx.reports / "echo-client.log"
    spec_path = ctx.workdir / "fuzzingserver.json"
    for _attempt in range(3):
        port = free_port()
        url = f"ws://{HOST}:{port}"
        spec = {
            "url": url,
            "outdir": str(outdir),
            "cases": ctx.patterns,
            "exclude-cases": ctx.exclude,
            "exclude-agent-cases": {},
        }
        spec_path.write_text(json.dumps(spec, indent=2))
        fuzzer = ctx.children.start(
            [ctx.wstest, "-m", "fuzzingserver", "-s", spec_path, "--webport", "0"],
            log=wstest_log,
            env=python2_env(),
            cwd=ctx.workdir,
        )
        if wait_listening(fuzzer, port):
            break
        ctx.children.stop(fuzzer)  # the port was taken in between: try another
    else:
        raise HarnessError(f"wstest -m fuzzingserver did not start:\n{tail(wstest_log)}")
    print(f"client mode: wstest -m fuzzingserver on {url}, {len(ctx.cases)} cases", flush=True)
    start = time.monotonic()
    command: list[str | Path]
    if ctx.api == "sync":
        command = [ctx.python, HERE / "sync_echo_client.py"]
    else:
        command = [ctx.python, HERE / "echo_client.py", "--loop", ctx.loop]
    client = ctx.children.start(
        [*command, "--url", url, "--agent", AGENT],
        log=client_log,
        env=ctx.portside_env,
    )
    try:
        status = wait_for(client, ctx.deadline, "the client driver")
    finally:
        result.duration = time.monotonic() - start
    if status != 0:
        result.error = (
            f"the client driver exited with {status}; see {client_log}\n{tail(client_log)}"
        )
    if fuzzer.poll() is not None:
        result.notes.append(f"wstest -m fuzzingserver died during the run ({fuzzer.returncode})")
    ctx.children.stop(fuzzer)
    result.results = load_index(outdir, AGENT)


def compact(ids: list[str], order: list[str]) -> str:
    """List case ids, runs of consecutive cases (in ``order``) as ``first..last``."""
    position = {case_id: i for i, case_id in enumerate(order)}
    runs: list[list[str]] = []
    for case_id in sorted(ids, key=lambda c: position.get(c, -1)):
        previous = runs[-1][-1] if runs else None
        if previous is not None and position.get(previous, -2) + 1 == position.get(case_id):
            runs[-1].append(case_id)
        else:
            runs.append([case_id])
    parts = [
        " ".join(run) if len(run) <= 2 else f"{run[0]}..{run[-1]} ({len(run)})" for run in runs
    ]
    return " ".join(parts)


def group_seconds(result: ModeResult) -> str:
    """Autobahn's time per case group (first number of the id), summed."""
    totals: dict[int, float] = {}
    for case in result.results.values():
        group = case_key(case.case_id)[0]
        totals[group] = totals.get(group, 0.0) + (case.duration or 0) / 1000
    return ", ".join(f"{group}.*: {seconds:.1f} s" for group, seconds in sorted(totals.items()))


def format_summary(result: ModeResult, allow_non_strict: bool, api: str = "asyncio") -> str:
    """The table and the non-OK cases of one mode."""
    which = "portside threading" if api == "sync" else "portside"
    what = {
        "server": f"{which} server vs fuzzingclient",
        "client": f"{which} client vs fuzzingserver",
    }
    lines = [
        f"== {result.mode} mode ({what[result.mode]}): {len(result.expected)} cases "
        f"in {result.duration:.1f} s =="
    ]
    counts = result.counts()
    widths = [max(len(verdict), 5) for verdict in VERDICTS]
    lines.append("  ".join(v.rjust(w) for v, w in zip(VERDICTS, widths, strict=True)))
    lines.append("  ".join(str(counts[v]).rjust(w) for v, w in zip(VERDICTS, widths, strict=True)))
    verdicts = result.verdicts()
    for verdict in VERDICTS:
        if verdict in (OK, INFORMATIONAL) or not counts[verdict]:
            continue
        ids = sorted((c for c, v in verdicts.items() if v == verdict), key=case_key)
        listed = compact(ids, result.expected) if verdict == MISSING else " ".join(ids)
        lines.append(f"{verdict} ({counts[verdict]}): {listed}")
        # What Autobahn said, with the cases that share it.
        said: dict[str, list[str]] = {}
        for case_id in ids:
            case = result.results.get(case_id)
            if case is not None:
                detail = (
                    f"behavior {case.behavior}, close {case.behavior_close}, "
                    f"remote close code {case.remote_close_code}"
                )
                said.setdefault(detail, []).append(case_id)
        for detail, group in said.items():
            lines.append(f"    {detail}: {compact(group, result.expected)}")
    if result.results:
        lines.append(f"case time per group: {group_seconds(result)}")
    for note in result.notes:
        lines.append(f"note: {note}")
    if result.error:
        lines.append(f"ERROR: {result.error}")
    if result.reports is not None and (result.reports / "index.html").is_file():
        lines.append(f"reports: {result.reports / 'index.html'}")
    verdict = "PASS" if result.passed(allow_non_strict) else "FAIL"
    lines.append(f"{result.mode} mode: {verdict}")
    return "\n".join(lines)


def summary_json(
    results: list[ModeResult], info: str, total: float, api: str = "asyncio"
) -> dict[str, Any]:
    """A machine-readable summary, for CI."""
    return {
        "portside": info,
        "api": api,
        "total_seconds": round(total, 1),
        "modes": {
            r.mode: {
                "seconds": round(r.duration, 1),
                "counts": r.counts(),
                "error": r.error,
                "notes": r.notes,
                "cases": dict(sorted(r.verdicts().items(), key=lambda i: case_key(i[0]))),
            }
            for r in results
        },
    }


def split_patterns(value: str) -> list[str]:
    """``"1.*, 2.*"`` -> ``["1.*", "2.*"]``."""
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m compliance.run",
        description="Run the Autobahn TestSuite against portside's server and client.",
    )
    parser.add_argument("--mode", choices=("server", "client", "both"), default="both")
    parser.add_argument(
        "--cases", default="*", help="Autobahn case patterns, comma-separated (default: *)"
    )
    parser.add_argument("--exclude", default="", help="case patterns to leave out")
    parser.add_argument(
        "--python", default=sys.executable, help="interpreter running portside (default: this one)"
    )
    parser.add_argument(
        "--no-speedups",
        action="store_true",
        help="set PORTSIDE_NO_SPEEDUPS=1 for portside (the pure-Python code paths)",
    )
    parser.add_argument(
        "--api",
        choices=("asyncio", "sync"),
        default="asyncio",
        help="portside's API under test: asyncio (portside.serve, portside.connect) "
        "or the threading API (portside.sync)",
    )
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop of portside's server and client (default: asyncio's own); "
        "asyncio API only",
    )
    strictness = parser.add_mutually_exclusive_group()
    strictness.add_argument(
        "--strict",
        dest="allow_non_strict",
        action="store_false",
        help="NON-STRICT cases fail the run (the default)",
    )
    strictness.add_argument(
        "--allow-non-strict",
        dest="allow_non_strict",
        action="store_true",
        help="NON-STRICT cases are reported but do not fail the run",
    )
    parser.set_defaults(allow_non_strict=False)
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds for the whole run"
    )
    parser.add_argument("--reports", type=Path, default=ROOT / "reports", help="report directory")
    parser.add_argument(
        "--cache", type=Path, default=ROOT / ".autobahn", help="where Autobahn is installed"
    )
    parser.add_argument("--python2", help="Python 2.7 to install Autobahn with (default: pyenv's)")
    parser.add_argument("--json", type=Path, help="also write a JSON summary here")
    parser.add_argument(
        "--install-only",
        action="store_true",
        help="install Autobahn into --cache and exit (CI does it once before parallel runs)",
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace, children: Children) -> int:
    """Install, run the modes, summarise; return the exit status."""
    started = time.monotonic()
    if args.install_only:
        print(f"Autobahn installed: {ensure_autobahn(args.cache.resolve(), args.python2)}")
        return 0
    portside_env = dict(os.environ)
    portside_env["PYTHONUNBUFFERED"] = "1"
    if args.no_speedups:
        portside_env["PORTSIDE_NO_SPEEDUPS"] = "1"
    if args.api == "sync" and args.loop != "asyncio":
        raise HarnessError("--loop applies to the asyncio API; the threading API has no event loop")
    info = portside_info(args.python, portside_env)
    print(f"{info}, {'threading API' if args.api == 'sync' else f'loop {args.loop}'}", flush=True)
    wstest = ensure_autobahn(args.cache.resolve(), args.python2)
    deadline = Deadline(args.timeout)
    patterns = split_patterns(args.cases)
    exclude = split_patterns(args.exclude)
    cases = resolve_cases(wstest, patterns, exclude)
    reports = args.reports.resolve()
    reports.mkdir(parents=True, exist_ok=True)
    modes = ["server", "client"] if args.mode == "both" else [args.mode]
    results: list[ModeResult] = []
    with tempfile.TemporaryDirectory(prefix="portside-autobahn-") as workdir:
        ctx = Context(
            wstest=wstest,
            python=args.python,
            portside_env=portside_env,
            api=args.api,
            loop=args.loop,
            cases=cases,
            patterns=patterns,
            exclude=exclude,
            reports=reports,
            workdir=Path(workdir),
            deadline=deadline,
            children=children,
        )
        for mode in modes:
            runner = run_server_mode if mode == "server" else run_client_mode
            result = ModeResult(mode, cases)
            try:
                runner(ctx, result)
            except HarnessError as exc:
                result.error = str(exc)
                children.stop_all()
            results.append(result)
            print(format_summary(result, args.allow_non_strict, args.api), flush=True)
            print(flush=True)
    total = time.monotonic() - started
    durations = ", ".join(f"{r.mode} {r.duration:.1f} s" for r in results)
    print(f"durations: {durations}; total {total:.1f} s", flush=True)
    if args.json is not None:
        summary = summary_json(results, info, total, args.api)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    if any(r.error for r in results):
        return 2
    return 0 if all(r.passed(args.allow_non_strict) for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point: run, and stop every child process whatever happens."""
    args = parse_args(argv)
    children = Children()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run(args, children)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (Interrupted, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        children.stop_all()
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
