"""Tables of medians and ratios, as plain text for the terminal or as markdown."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.acceptance import Check
from bench.plan import CONTENDERS
from bench.results import RowResult

__all__ = ["Table", "acceptance_lines", "build_tables", "render_markdown", "render_text"]

PEERS = ("websockets", "aiohttp", "picows")
# Rounds disagreeing by more than this get a star.
NOISY_SPREAD = 0.20


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.1f}" if unit == "KiB/conn" else f"{value:,.0f}"


def columns(results: Sequence[RowResult]) -> list[str]:
    present = {key for result in results for key in result.samples}
    return [key for key in CONTENDERS if key in present]


def value_table(title: str, results: Sequence[RowResult], notes: list[str]) -> Table:
    keys = columns(results)
    peers = [peer for peer in PEERS if peer in keys and "portside" in keys]
    # Each replica against the server it copies: what noise alone makes of a ratio.
    controls = [CONTENDERS[key] for key in keys if CONTENDERS[key].replica]
    controls = [c for c in controls if c.server in keys]
    table = Table(
        title,
        [
            "row",
            *(CONTENDERS[key].label for key in keys),
            *(f"portside/{p}" for p in peers),
            *(f"{c.label}/{c.server}" for c in controls),
        ],
        notes=list(notes),
    )
    noisy = False
    for result in results:
        cells = [result.title]
        for key in keys:
            cell = format_value(result.median(key), result.unit) if key in result.samples else ""
            spread = result.spread(key)
            if spread is not None and spread > NOISY_SPREAD:
                cell += "*"
                noisy = True
            cells.append(cell)
        pairs = [("portside", peer) for peer in peers] + [(c.key, c.server) for c in controls]
        for mine, theirs in pairs:
            ratio = result.ratio(mine, theirs)
            cells.append(f"{ratio:.2f}x" if ratio is not None else "")
        table.rows.append(cells)
    for c in controls:
        table.notes.append(
            f"{c.label}: a second {c.server} server process, in a slot of its own in every "
            f"round; {c.label}/{c.server} compares two equal servers: the noise of one run."
        )
    if noisy:
        table.notes.append(f"* the rounds of this cell differ by more than {NOISY_SPREAD:.0%}.")
    return table


def cpu_table(results: Sequence[RowResult]) -> Table:
    keys = columns(results)
    table = Table(
        "CPU during the measuring window, median % of one core: server / client / everything else",
        ["row", *(CONTENDERS[key].label for key in keys)],
    )
    for result in results:
        cells = [result.title]
        for key in keys:
            parts = [
                result.median_detail(key, f"cpu_{name}") for name in ("server", "client", "other")
            ]
            cells.append(
                "/".join("?" if p is None else f"{p:.0f}" for p in parts)
                if key in result.samples
                else ""
            )
        table.rows.append(cells)
    table.notes.append(
        "A server below ~95% was not the bottleneck: the client was, or other load took the core."
    )
    return table


def build_tables(
    results: Sequence[RowResult], *, pinned: bool, handshake_concurrency: int
) -> list[Table]:
    echo = [r for r in results if r.kind in ("echo", "tls", "deflate")]
    handshake = [r for r in results if r.kind == "handshake"]
    memory = [r for r in results if r.kind == "memory"]
    tables = []
    if echo:
        where = "core 0; servers on core 1" if pinned else "processes not pinned"
        notes = [f"Load client: picows (callback API) on uvloop, {where}."]
        if any("portside-client" in r.samples for r in echo):
            notes.append("portside->portside: portside's client drives portside's server.")
        if any(r.kind == "deflate" for r in echo):
            notes.append(
                "Deflate row: websockets' client drives every server (picows cannot negotiate "
                "permessage-deflate); portside->portside uses portside's client."
            )
        tables.append(value_table("Echo: round trips per second (higher is better)", echo, notes))
    if handshake:
        tables.append(
            value_table(
                f"Handshakes: open + close per second, {handshake_concurrency} at a time "
                "(higher is better)",
                handshake,
                ["Client: the harness's raw WebSocket client (bench/clients/rawws.py), uvloop."],
            )
        )
    if echo or handshake:
        tables.append(cpu_table([*echo, *handshake]))
    if memory:
        tables.append(
            value_table(
                "Memory: server RSS per idle connection, KiB (lower is better)",
                memory,
                [
                    "Fresh server process (uvloop) per sample; RSS delta over the connections "
                    "opened, after a warm-up.",
                ],
            )
        )
    return tables


def render_text(table: Table) -> str:
    widths = [
        max(len(row[i]) for row in [table.headers, *table.rows]) for i in range(len(table.headers))
    ]

    def line(cells: list[str]) -> str:
        first, *rest = cells
        return "  ".join(
            [first.ljust(widths[0]), *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))]
        )

    out = [table.title, line(table.headers), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in table.rows]
    out += [f"  {note}" for note in table.notes]
    return "\n".join(out)


def render_markdown(table: Table) -> str:
    out = [f"### {table.title}", ""]
    out.append("| " + " | ".join(table.headers) + " |")
    out.append("| --- |" + " ---: |" * (len(table.headers) - 1))
    out += [
        "| " + " | ".join(cell.replace("*", "\\*") for cell in row) + " |" for row in table.rows
    ]
    if table.notes:
        out.append("")
        out += [
            note.replace("* ", "\\* ", 1) if note.startswith("* ") else note for note in table.notes
        ]
    return "\n".join(out)


def acceptance_lines(checks: Sequence[Check]) -> list[str]:
    lines = []
    for check in checks:
        verdict = {True: "PASS", False: "FAIL", None: "N/A "}[check.passed]
        lines.append(f"{verdict}  {check.criterion:<34} {check.row:<48} {check.measured}")
    held = sum(1 for check in checks if check.passed)
    measured = sum(1 for check in checks if check.passed is not None)
    lines.append(f"{held} of {measured} measured criteria hold.")
    return lines
