"""The time cap's clocks and the learning-rate schedule that spans it."""

import json
import time
from types import SimpleNamespace

import pytest

from llmneo.training.callbacks import BUDGET_RECORD, BudgetSpent, TimeBudgetSchedule, budget_clock


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_schedule_warms_up_then_decays_to_zero_at_the_cap():
    clock = FakeClock()
    spent = BudgetSpent(clock)
    spent.on_train_begin(None, None, None)
    schedule = TimeBudgetSchedule(budget_seconds=100, warmup_share=0.1, spent=spent.seconds)
    factors = {}
    for elapsed in (0, 5, 10, 55, 100, 130):
        clock.now = 100.0 + elapsed
        factors[elapsed] = schedule()
    assert factors[0] == pytest.approx(1e-3)  # never exactly zero: the first step still moves
    assert factors[5] == pytest.approx(0.5) and factors[10] == pytest.approx(1.0)
    assert factors[55] == pytest.approx(0.5)  # halfway through the decay
    assert factors[100] == 0.0 and factors[130] == 0.0  # past the cap: fully decayed


def test_a_resumed_run_goes_on_with_the_budget_its_checkpoint_recorded(tmp_path):
    """Killed at 60 of 100 budget seconds: the checkpoint says so, and the resumed run's schedule and cap go
    on from 60 rather than granting a second warm-up and a second 100 seconds."""
    clock = FakeClock()
    first = BudgetSpent(clock)
    first.on_train_begin(None, None, None)
    clock.now += 60
    (tmp_path / "checkpoint-7").mkdir()
    first.on_save(SimpleNamespace(output_dir=str(tmp_path)), SimpleNamespace(global_step=7, is_world_process_zero=True),
                  None)
    assert json.loads((tmp_path / "checkpoint-7" / BUDGET_RECORD).read_text()) == {"seconds": 60.0}

    clock.now = 5000.0  # a new process: its clock starts anywhere
    resumed = BudgetSpent.resumed_from(clock, str(tmp_path / "checkpoint-7"))
    schedule = TimeBudgetSchedule(budget_seconds=100, warmup_share=0.1, spent=resumed.seconds)
    resumed.on_train_begin(None, None, None)
    assert resumed.seconds() == 60.0 and schedule() == pytest.approx(0.4 / 0.9)
    clock.now += 41
    assert resumed.seconds() > 100 and schedule() == 0.0
    assert BudgetSpent.resumed_from(clock, None).seconds() == 0.0


def test_the_cpu_clock_ignores_time_spent_waiting():
    """Sleeping (as a process starved of cores waits) moves the wall clock and not the CPU clock; busy work
    moves the CPU clock. Compared with each other in one run, so a loaded machine cannot fail it."""
    wall, cpu = budget_clock("wall"), budget_clock("cpu")
    wall_start, cpu_start = wall(), cpu()
    time.sleep(1.0)
    slept_wall, slept_cpu = wall() - wall_start, cpu() - cpu_start
    assert slept_wall >= 0.99 and slept_cpu < slept_wall / 4
    cpu_start = cpu()
    total = 0
    while cpu() - cpu_start < 0.05:  # spin: CPU time accrues, however slowly the machine gives it
        total += sum(range(1000))
    assert cpu() - cpu_start >= 0.05
