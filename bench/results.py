"""Measurements: samples per contender per row, medians, ratios, JSON."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["RowResult", "Sample"]


@dataclass
class Sample:
    """One round of one contender: a value, or the reason there is none."""

    value: float | None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class RowResult:
    """All rounds of one row, per contender key."""

    id: str
    kind: str
    title: str
    unit: str
    higher_is_better: bool
    labels: dict[str, str]
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def add(self, key: str, sample: Sample) -> None:
        self.samples.setdefault(key, []).append(sample)

    def values(self, key: str) -> list[float]:
        return [s.value for s in self.samples.get(key, []) if s.value is not None]

    def median(self, key: str) -> float | None:
        values = self.values(key)
        return statistics.median(values) if values else None

    def spread(self, key: str) -> float | None:
        """(max - min) / median over the rounds: how much the rounds disagree."""
        values = self.values(key)
        middle = self.median(key)
        if len(values) < 2 or not middle:
            return None
        return (max(values) - min(values)) / middle

    def ratio(self, key: str, other: str) -> float | None:
        """``median(key) / median(other)``."""
        mine, theirs = self.median(key), self.median(other)
        if mine is None or not theirs:
            return None
        return mine / theirs

    def errors(self) -> list[str]:
        return [
            f"{self.labels.get(key, key)}: {sample.error}"
            for key, samples in self.samples.items()
            for sample in samples
            if sample.error is not None
        ]

    def warnings(self) -> list[str]:
        """Samples that have a value but saw failed attempts (handshake rows)."""
        return [
            f"{self.labels.get(key, key)}: {sample.details['failures']} failed attempts, "
            f"first: {sample.details.get('first_error')}"
            for key, samples in self.samples.items()
            for sample in samples
            if sample.details.get("failures")
        ]

    def median_detail(self, key: str, name: str) -> float | None:
        """The median over rounds of a numeric detail, e.g. CPU usage."""
        values = [
            s.details[name]
            for s in self.samples.get(key, [])
            if isinstance(s.details.get(name), (int, float))
        ]
        return statistics.median(values) if values else None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["median"] = {key: self.median(key) for key in self.samples}
        return data
