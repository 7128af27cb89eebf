"""Progress for every long loop: a bar on a terminal, a plain line now and then in a log.

tqdm's carriage returns make a log file unreadable (the demo's log was 97 KB of redrawn bars), so when
stderr is not a terminal a loop reports in whole lines instead, at most every `every_s` seconds, and
once at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["is_terminal", "progress"]

Item = TypeVar("Item")


def is_terminal() -> bool:
    return sys.stderr.isatty()


def progress(items: Iterable[Item], label: str, total: int | None = None, unit: str = "it",
             every_s: float = 30.0) -> Iterator[Item]:
    """`items`, reporting how far the loop is: tqdm on a terminal, else a line every `every_s` seconds."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if is_terminal():
        from tqdm.auto import tqdm

        yield from tqdm(items, desc=label, total=total, unit=unit)
        return
    started = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= every_s:
            last = now
            print(_line(label, done, total, unit, now - started), file=sys.stderr, flush=True)
    if done and time.monotonic() - started >= every_s:
        print(_line(label, done, total, unit, time.monotonic() - started), file=sys.stderr, flush=True)


def _line(label: str, done: int, total: int | None, unit: str, elapsed: float) -> str:
    if not total:
        return f"[{label}] {done:,} {unit} in {elapsed / 60:.1f} min"
    left = elapsed / done * (total - done)
    return (f"[{label}] {done:,}/{total:,} {unit} ({done / total:.0%}), {elapsed / 60:.1f} min elapsed, "
            f"about {left / 60:.1f} min left")
