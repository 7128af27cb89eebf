"""Continuous batching: a request that finds the model idle runs at once; requests that arrive while it
is busy share the next pass.

A request hands its texts to `MicroBatcher.submit` and awaits a future. One collector task takes
whatever is queued the moment the model is free, up to `max_batch_size` texts, and runs the pass in a
single worker thread, so the event loop keeps answering (health, metrics, new requests) while the
model works, and passes never compete for the cores. This is how TEI and Triton's dynamic batcher
work: no timer holds an idle model back, and under load the batch fills by itself with the requests
that came in during the previous pass. (`max_wait_ms` > 0 restores a wait for company when the model
is idle, for backends whose single pass costs nearly as much as a full one, such as a GPU.)

A request is never split across passes: one with more texts than `max_batch_size` runs alone.
Back-pressure: when `max_queue_texts` texts already wait, `submit` raises `QueueFull` at once (the
route answers 503 with Retry-After), so an overloaded server sheds load instead of queueing without
bound. With batching disabled every request gets its own pass through the same worker.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

__all__ = ["BatchStats", "BatcherClosed", "MicroBatcher", "QueueFull"]

InferFn = Callable[[list[str]], np.ndarray]  # texts -> (N, C) logits, same order


class BatcherClosed(RuntimeError):
    """The server is shutting down and takes no new work."""


class QueueFull(RuntimeError):
    """Too many texts already wait; `retry_after_s` estimates when the queue will have drained."""

    def __init__(self, queued_texts: int, retry_after_s: int):
        super().__init__(f"the server is overloaded ({queued_texts} texts waiting); retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class BatchStats:
    """What one forward pass did, for metrics."""

    texts: int
    requests: int
    model_seconds: float
    queue_seconds: float  # how long the oldest request of the batch waited before the pass started


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future[np.ndarray]
    enqueued: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """Gathers texts of concurrent requests into forward passes run by one worker thread."""

    def __init__(
        self,
        infer: InferFn,
        *,
        max_batch_size: int,
        max_wait_ms: float = 0.0,
        max_queue_texts: int = 1024,
        enabled: bool = True,
        observer: Callable[[BatchStats], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if max_queue_texts < 1:
            raise ValueError(f"max_queue_texts must be >= 1, got {max_queue_texts}")
        self._infer = infer
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_ms / 1000.0
        self._max_queue_texts = max_queue_texts
        self._enabled = enabled
        self._observer = observer
        self._jobs: deque[_Job] = deque()
        self._queued_texts = 0  # texts in self._jobs, kept as a count so a long queue costs nothing to size
        self._seconds_per_text = 0.0  # of the latest pass: the basis of Retry-After
        self._arrived = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmneo-infer")

    @property
    def pending_texts(self) -> int:
        return self._queued_texts

    def start(self) -> None:
        """Start the collector task on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._collect_forever(), name="llmneo-batcher")

    async def submit(self, texts: list[str]) -> np.ndarray:
        """Queue texts for the next forward pass and wait for their (len(texts), C) logits.

        Raises QueueFull when the queue is full (an empty queue always takes a request, however large),
        BatcherClosed while shutting down.
        """
        if self._closing or self._task is None:
            raise BatcherClosed("the server is shutting down")
        if not texts:
            raise ValueError("submit needs at least one text")
        if self._jobs and self._queued_texts + len(texts) > self._max_queue_texts:
            raise QueueFull(self._queued_texts, self._retry_after_s())
        job = _Job(list(texts), asyncio.get_running_loop().create_future())
        self._jobs.append(job)
        self._queued_texts += len(job.texts)
        self._arrived.set()
        return await job.future

    async def close(self) -> None:
        """Refuse new work, finish every queued request, then stop the worker thread."""
        self._closing = True
        self._arrived.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    def _retry_after_s(self) -> int:
        """Whole seconds (as HTTP wants) until the queued texts have likely run; at least 1."""
        return max(1, math.ceil(self._queued_texts * self._seconds_per_text))

    async def _collect_forever(self) -> None:
        while True:
            jobs = await self._next_batch()
            if not jobs:
                return
            await self._run_batch(jobs)

    async def _next_batch(self) -> list[_Job]:
        """Wait for work; take it at once (or, with max_wait_ms, once the batch is full or the wait is up)."""
        while not self._jobs:
            if self._closing:
                return []
            self._arrived.clear()
            await self._arrived.wait()
        if self._enabled and self._max_wait_s > 0:
            await self._wait_for_company()
        return self._take()

    async def _wait_for_company(self) -> None:
        deadline = self._jobs[0].enqueued + self._max_wait_s
        while self._queued_texts < self._max_batch_size and not self._closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    def _take(self) -> list[_Job]:
        jobs = [self._jobs.popleft()]
        size = len(jobs[0].texts)
        while self._enabled and self._jobs and size + len(self._jobs[0].texts) <= self._max_batch_size:
            job = self._jobs.popleft()
            jobs.append(job)
            size += len(job.texts)
        self._queued_texts -= size
        return jobs

    async def _run_batch(self, jobs: list[_Job]) -> None:
        live = [job for job in jobs if not job.future.done()]  # a client that went away needs no answer
        if not live:
            return
        texts = [text for job in live for text in job.texts]
        queue_seconds = time.monotonic() - live[0].enqueued
        started = time.perf_counter()
        try:
            logits = await asyncio.get_running_loop().run_in_executor(self._executor, self._infer, texts)
            if logits.shape[0] != len(texts):
                raise RuntimeError(f"the model returned {logits.shape[0]} rows for {len(texts)} texts")
        except Exception as error:  # noqa: BLE001 - every waiting request must hear about the failure
            for job in live:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        model_seconds = time.perf_counter() - started
        self._seconds_per_text = model_seconds / len(texts)
        offset = 0
        for job in live:
            rows = logits[offset : offset + len(job.texts)]  # (len(job.texts), C)
            offset += len(job.texts)
            if not job.future.done():
                job.future.set_result(rows)
        if self._observer is not None:
            self._observer(BatchStats(len(texts), len(live), model_seconds, queue_seconds))
