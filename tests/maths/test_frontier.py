"""The frontier and the pick, on fixed points whose answers are worked out by hand."""

from __future__ import annotations

import pytest

from llmneo.maths.frontier import FrontierPoint, PickRule, pareto_front, parse_pick, pick, speedup_check


def _point(name: str, accuracy: float, latency_ms: float, throughput: float, role: str = "student",
           backend: str = "onnx fp32") -> FrontierPoint:
    return FrontierPoint(name, backend, role, accuracy, latency_ms, throughput)


TEACHER = _point("teacher", 0.93, 30.0, 50.0, role="teacher", backend="torch fp32")
BIG = _point("big", 0.92, 10.0, 200.0)
MID = _point("mid", 0.90, 4.0, 600.0)
DOMINATED = _point("dominated", 0.89, 5.0, 500.0)   # mid is more accurate and faster, both ways
SMALL = _point("small", 0.85, 1.0, 400.0)           # fastest at batch 1, but not at batch 32
TABLE = [TEACHER, BIG, MID, DOMINATED, SMALL]


def test_the_frontier_leaves_dominated_points_out_fastest_first():
    assert pareto_front(TABLE, "latency") == [SMALL, MID, BIG, TEACHER]
    # at batch 32 small (400/s) is slower than mid (600/s) and less accurate: dominated there
    assert pareto_front(TABLE, "throughput") == [MID, BIG, TEACHER]
    twin = _point("twin", MID.accuracy, MID.latency_ms, MID.throughput)  # equal on both: neither dominates
    assert {p.name for p in pareto_front([MID, twin], "latency")} == {"mid", "twin"}
    with pytest.raises(ValueError, match="speed"):
        pareto_front(TABLE, "memory")  # type: ignore[arg-type]


def test_pick_takes_the_fastest_student_that_meets_the_bar():
    assert pick(TABLE, parse_pick("min_accuracy=0.90")) == MID
    assert pick(TABLE, parse_pick("min_accuracy=0.85")) == SMALL
    assert pick(TABLE, parse_pick("min_accuracy=0.85,by=throughput")) == MID
    assert pick(TABLE, parse_pick("min_accuracy=0.92")) == BIG
    assert pick(TABLE, parse_pick("min_accuracy=0.925")) is None  # only the teacher is that good: not a choice


def test_speed_bars_alone_take_the_most_accurate_student_within_them():
    assert pick(TABLE, parse_pick("max_latency_ms=5")) == MID
    assert pick(TABLE, PickRule(max_latency_ms=2.0)) == SMALL
    assert pick(TABLE, parse_pick("min_throughput=450; max_latency_ms=4.5")) == MID
    assert pick(TABLE, parse_pick("max_latency_ms=0.5")) is None


@pytest.mark.parametrize("spec, message", [
    ("min_acc=0.9", "min_acc=0.9"), ("min_accuracy=high", "not a number"), ("by=speed", "by='speed'"),
    ("by=latency", "at least one bar"), ("", "at least one bar"),
])
def test_a_bad_pick_names_what_is_wrong(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_pick(spec)


def test_the_speedup_bar_is_judged_against_the_teachers_fastest_backend():
    fast_teacher = _point("teacher", 0.93, 12.0, 90.0, role="teacher", backend="onnx fp32")
    check = speedup_check([TEACHER, fast_teacher, BIG, MID, SMALL], "latency")
    assert check.teacher == fast_teacher and check.student == MID  # small is faster, mid is more accurate
    assert check.speedup == pytest.approx(3.0) and check.drop_points == pytest.approx(3.0) and not check.met
    close = _point("close", 0.92, 3.5, 700.0)
    assert speedup_check([TEACHER, close], "throughput").met  # 14x, 1 point below
    assert speedup_check([TEACHER, BIG], "latency").met  # exactly 3x counts, 1 point below
    slow = speedup_check([TEACHER, _point("slow", 0.93, 20.0, 60.0)], "latency")
    assert slow.student is None and slow.speedup == pytest.approx(1.5) and not slow.met
    assert speedup_check([BIG, MID], "latency") is None  # no teacher measured
