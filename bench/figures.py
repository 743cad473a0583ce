"""Figures: what a measurement reports (median, p90, target), and the error it raises."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field


class BenchError(Exception):
    """A measurement could not be taken, or what it saw was wrong (lost logs, a failed task)."""


@dataclass(frozen=True)
class Target:
    op: str  # "<", "<=" or ">="
    value: float

    def met(self, figure: float) -> bool:
        return {"<": figure < self.value, "<=": figure <= self.value, ">=": figure >= self.value}[self.op]


@dataclass
class Figure:
    measurement: str
    name: str  # says the mode: "warm pool", "cold worker", ...
    unit: str
    median: float | None  # None: could not be measured (the note says why)
    p90: float | None = None
    n: int = 1
    target: Target | None = None
    note: str = ""
    samples: list[float] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        return None if self.target is None or self.median is None else self.target.met(self.median)

    def target_text(self) -> str:
        if self.target is None:
            return ""
        return f"{self.target.op} {self.target.value:g} {self.unit}".strip()

    def to_json(self) -> dict:
        data = asdict(self)
        data["target"] = self.target_text() or None
        data["met"] = self.met
        return data


def p90(values: list[float]) -> float:
    """The 90th percentile by nearest rank (for 20 samples: the 18th smallest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def spread(measurement: str, name: str, unit: str, samples: list[float], **kwargs) -> Figure:
    """A figure from repeated samples: their median and p90."""
    if not samples:
        raise BenchError(f"{measurement}: no samples for {name!r}")
    median = statistics.median(samples)
    return Figure(measurement, name, unit, median, p90(samples), len(samples), samples=samples, **kwargs)


def single(measurement: str, name: str, unit: str, value: float, **kwargs) -> Figure:
    """A figure measured once (a rate over a whole batch, say)."""
    return Figure(measurement, name, unit, value, None, 1, samples=[value], **kwargs)
