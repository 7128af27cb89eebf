"""The accuracy/speed frontier of a set of models, and the choice of one for a user's bar (pure).

A point is one model on one backend: its dev accuracy, its median latency for one sentence and its
throughput at batch 32. A point is on the frontier (Pareto-optimal) when no other point is at least
as accurate and at least as fast, and strictly better in one of the two: every other point is a
model nobody should pick. Speed is read two ways, because they rank models differently: latency at
batch 1 (an interactive request) and sentences per second at batch 32 (a bulk job).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Literal

__all__ = ["SPEEDS", "FrontierPoint", "PickRule", "SpeedupCheck", "pareto_front", "parse_pick", "pick",
           "speedup_check"]

Speed = Literal["latency", "throughput"]
SPEEDS: tuple[Speed, ...] = ("latency", "throughput")


@dataclass(frozen=True)
class FrontierPoint:
    name: str           # the student's name in the sweep, or "teacher"
    backend: str        # e.g. "torch fp32", "onnx int8"
    role: str           # teacher | student
    accuracy: float
    latency_ms: float   # p50, one sentence per call
    throughput: float   # sentences per second at batch 32

    @property
    def label(self) -> str:
        return f"{self.name} ({self.backend})"

    def cost(self, speed: Speed) -> float:
        """Lower is faster: milliseconds per sentence, read at batch 1 or at batch 32."""
        return self.latency_ms if speed == "latency" else 1000.0 / self.throughput


def _dominates(a: FrontierPoint, b: FrontierPoint, speed: Speed) -> bool:
    at_least = a.accuracy >= b.accuracy and a.cost(speed) <= b.cost(speed)
    return at_least and (a.accuracy > b.accuracy or a.cost(speed) < b.cost(speed))


def pareto_front(points: Sequence[FrontierPoint], speed: Speed = "latency") -> list[FrontierPoint]:
    """The points no other point dominates, fastest first (the line a chart joins)."""
    if speed not in SPEEDS:
        raise ValueError(f"speed {speed!r}: expected one of {', '.join(SPEEDS)}")
    front = [p for p in points if not any(_dominates(q, p, speed) for q in points if q is not p)]
    return sorted(front, key=lambda p: (p.cost(speed), -p.accuracy))


@dataclass(frozen=True)
class PickRule:
    """A user's bar. With an accuracy bar the fastest model that meets every bar is chosen; with speed
    bars alone, the most accurate one. `by` says which speed "fastest" means."""

    min_accuracy: float | None = None
    max_latency_ms: float | None = None
    min_throughput: float | None = None
    by: Speed = "latency"

    def admits(self, point: FrontierPoint) -> bool:
        return ((self.min_accuracy is None or point.accuracy >= self.min_accuracy)
                and (self.max_latency_ms is None or point.latency_ms <= self.max_latency_ms)
                and (self.min_throughput is None or point.throughput >= self.min_throughput))

    def describe(self) -> str:
        bars = [f"{f.name}={getattr(self, f.name)}" for f in fields(self) if f.name != "by"
                and getattr(self, f.name) is not None]
        return ", ".join(bars) + f" (fastest by {self.by})"


def parse_pick(spec: str) -> PickRule:
    """`min_accuracy=0.90,max_latency_ms=5,by=throughput` -> PickRule; an unknown key is named."""
    known = {f.name for f in fields(PickRule)}
    values: dict[str, float | str] = {}
    for item in (part.strip() for part in spec.replace(";", ",").split(",")):
        if not item:
            continue
        key, sep, raw = (text.strip() for text in item.partition("="))
        if not sep or key not in known:
            raise ValueError(f"--pick {item!r}: expected key=value with key one of {', '.join(sorted(known))}")
        if key == "by":
            if raw not in SPEEDS:
                raise ValueError(f"--pick by={raw!r}: expected one of {', '.join(SPEEDS)}")
            values[key] = raw
            continue
        try:
            values[key] = float(raw)
        except ValueError:
            raise ValueError(f"--pick {key}={raw!r}: not a number") from None
    rule = PickRule(**values)  # type: ignore[arg-type]
    if rule.min_accuracy is None and rule.max_latency_ms is None and rule.min_throughput is None:
        raise ValueError(f"--pick {spec!r}: give at least one bar (min_accuracy, max_latency_ms, min_throughput)")
    return rule


def pick(points: Sequence[FrontierPoint], rule: PickRule) -> FrontierPoint | None:
    """The student point the rule chooses, or None when no student meets it (the teacher is not a choice)."""
    eligible = [p for p in points if p.role == "student" and rule.admits(p)]
    if not eligible:
        return None
    if rule.min_accuracy is not None:
        return min(eligible, key=lambda p: (p.cost(rule.by), -p.accuracy))
    return max(eligible, key=lambda p: (p.accuracy, -p.cost(rule.by)))


@dataclass(frozen=True)
class SpeedupCheck:
    """The most accurate student at least `speedup` times faster than the teacher's fastest backend."""

    speed: Speed
    teacher: FrontierPoint
    student: FrontierPoint | None   # None: no student is that much faster
    speedup: float                  # of `student` (or of the fastest student when none qualifies)
    drop_points: float              # teacher accuracy minus the student's, in points
    max_drop_points: float

    @property
    def met(self) -> bool:
        return self.student is not None and self.drop_points < self.max_drop_points


def speedup_check(points: Sequence[FrontierPoint], speed: Speed, speedup: float = 3.0,
                  max_drop_points: float = 1.5) -> SpeedupCheck | None:
    """Is some student `speedup`x faster per sentence than the teacher, under `max_drop_points` below it?
    The teacher is taken at its fastest backend, so a student is never flattered by a slow teacher."""
    teachers = [p for p in points if p.role == "teacher"]
    students = [p for p in points if p.role == "student"]
    if not teachers or not students:
        return None
    teacher = min(teachers, key=lambda p: p.cost(speed))
    fast = [p for p in students if teacher.cost(speed) / p.cost(speed) >= speedup]
    best = max(fast, key=lambda p: p.accuracy) if fast else min(students, key=lambda p: p.cost(speed))
    return SpeedupCheck(speed, teacher, best if fast else None, teacher.cost(speed) / best.cost(speed),
                        100 * (teacher.accuracy - best.accuracy), max_drop_points)
