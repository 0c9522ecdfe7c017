"""The acceptance ratios portside aims for, checked against a run's medians."""

from __future__ import annotations

from dataclasses import dataclass

from bench.results import RowResult

__all__ = ["Check", "evaluate", "evaluate_control"]

SPEED_VS_PICOWS = 1.0
SMALL_VS_WEBSOCKETS = 2.0
HANDSHAKES_VS_WEBSOCKETS = 1.5
RSS_LIMIT_KIB = {"memory-off": 10.0, "memory-deflate": 40.0}


@dataclass(frozen=True)
class Check:
    """One acceptance criterion on one row; ``passed`` is ``None`` when not measured."""

    criterion: str
    row: str
    measured: str
    passed: bool | None


def ratio_check(
    result: RowResult, other: str, minimum: float, criterion: str, mine: str = "portside"
) -> Check | None:
    if other not in result.samples or mine not in result.samples:
        return None
    ratio = result.ratio(mine, other)
    if ratio is None:
        return Check(criterion, result.title, "not measured", None)
    return Check(criterion, result.title, f"{ratio:.2f}x", ratio >= minimum)


def evaluate(results: list[RowResult]) -> list[Check]:
    """Every applicable check, in the order of the results.

    The speed criteria apply to the plain echo rows (TCP, compression off): the TLS
    row mostly measures the TLS implementation under each library, and the deflate
    row has no picows column.
    """
    checks: list[Check | None] = []
    for result in results:
        if result.kind == "echo":
            checks.append(
                ratio_check(result, "picows", SPEED_VS_PICOWS, f">= {SPEED_VS_PICOWS:.1f}x picows")
            )
            if result.id.startswith("echo-256B-"):
                checks.append(
                    ratio_check(
                        result,
                        "websockets",
                        SMALL_VS_WEBSOCKETS,
                        f">= {SMALL_VS_WEBSOCKETS:.1f}x websockets (256 B)",
                    )
                )
        elif result.kind == "handshake":
            checks.append(
                ratio_check(
                    result,
                    "websockets",
                    HANDSHAKES_VS_WEBSOCKETS,
                    f"handshakes >= {HANDSHAKES_VS_WEBSOCKETS:.1f}x websockets",
                )
            )
        elif result.kind == "memory" and "portside" in result.samples:
            limit = RSS_LIMIT_KIB[result.id.split(":")[0]]
            value = result.median("portside")
            criterion = f"RSS/conn <= {limit:.0f} KiB"
            if value is None:
                checks.append(Check(criterion, result.title, "not measured", None))
            else:
                checks.append(Check(criterion, result.title, f"{value:.1f} KiB", value <= limit))
    return [check for check in checks if check is not None]


def evaluate_control(results: list[RowResult]) -> list[Check]:
    """The speed criterion against picows, applied to a second picows server.

    Not one of portside's criteria: the two servers are the same, so this shows how
    often a check of ">= 1.0x" between equal servers holds in one run of this machine.
    """
    checks = [
        ratio_check(
            result,
            "picows",
            SPEED_VS_PICOWS,
            f"picows again >= {SPEED_VS_PICOWS:.1f}x picows",
            mine="picows-again",
        )
        for result in results
        if result.kind == "echo"
    ]
    return [check for check in checks if check is not None]
