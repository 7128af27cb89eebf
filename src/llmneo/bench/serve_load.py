"""`llmneo bench-serve`: bounded HTTP load against a real server on loopback, batching on and off.

The server runs in its own process (`uvicorn llmneo.serve.app:app`, the container's command line);
this process is the client: `concurrency` asyncio clients share one httpx connection pool and send
`requests` requests of `texts_per_request` SST-2 dev sentences each. Each mode starts a fresh server,
warms it up, then measures. A single-client run gives the latency of one two-text request at a time,
the figure the reference project reports (5,120 ms on CPU). Speed is measured here, never asserted in
tests.
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from tqdm import tqdm

from llmneo.serve.launch import free_port, server_process, settings_env, uvicorn_command
from llmneo.serve.settings import ServeSettings

__all__ = ["LoadResult", "bench_serve", "drive_load", "load_texts"]

REFERENCE_MS_PER_TWO_TEXT_REQUEST = 5120.0


@dataclass
class LoadResult:
    """Client-side view of one load run."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    duration_s: float = 0.0
    texts: int = 0

    def summary(self) -> dict[str, float]:
        done = len(self.latencies_ms)
        ok = self.statuses.get("200", 0)
        latencies = np.asarray(self.latencies_ms) if done else np.zeros(1)
        return {
            "requests": float(done),
            "errors": float(done - ok),
            "p50_ms": float(np.percentile(latencies, 50)),
            "p95_ms": float(np.percentile(latencies, 95)),
            "p99_ms": float(np.percentile(latencies, 99)),
            "mean_ms": float(latencies.mean()),
            "requests_per_s": ok / self.duration_s if self.duration_s else 0.0,
            "texts_per_s": self.texts / self.duration_s if self.duration_s else 0.0,
        }


def load_texts(path: Path) -> list[str]:
    """Sentences of a GLUE SST-2 TSV file (column `sentence`)."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        if reader.fieldnames is None or "sentence" not in reader.fieldnames:
            raise ValueError(f"{path}: expected a TSV with a 'sentence' column, found {reader.fieldnames}")
        texts = [row["sentence"] for row in reader if row["sentence"]]
    if not texts:
        raise ValueError(f"{path}: no sentences")
    return texts


async def drive_load(
    url: str,
    texts: list[str],
    *,
    concurrency: int,
    requests: int,
    texts_per_request: int,
    api_key: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> LoadResult:
    """Send `requests` /predict calls from `concurrency` concurrent clients; errors are counted, not raised."""
    rng = random.Random(seed)
    bodies = [{"texts": rng.sample(texts, texts_per_request)} for _ in range(requests)]
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    result = LoadResult()
    next_index = itertools.count()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    bar = tqdm(total=requests, desc=f"{concurrency} clients", unit="req", disable=not progress)

    async def client_loop(client: httpx.AsyncClient) -> None:
        while (index := next(next_index)) < requests:
            started = time.perf_counter()
            try:
                response = await client.post("/predict", json=bodies[index])
                status = str(response.status_code)
            except httpx.HTTPError as error:
                status = type(error).__name__
            result.latencies_ms.append((time.perf_counter() - started) * 1000.0)
            result.statuses[status] += 1
            if status == "200":
                result.texts += texts_per_request
            bar.update()

    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120.0) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        result.duration_s = time.perf_counter() - started
    bar.close()
    return result


def _measure(url: str, texts: list[str], concurrency: int, requests: int, texts_per_request: int,
             api_key: str | None) -> dict[str, Any]:
    asyncio.run(drive_load(url, texts, concurrency=4, requests=20, texts_per_request=texts_per_request,
                           api_key=api_key, progress=False))  # warm-up: first passes are slow
    result = asyncio.run(drive_load(url, texts, concurrency=concurrency, requests=requests,
                                    texts_per_request=texts_per_request, api_key=api_key))
    return {**result.summary(), "statuses": dict(result.statuses)}


def bench_serve(
    settings: ServeSettings,
    texts: list[str],
    *,
    concurrency: int = 32,
    requests: int = 2000,
    texts_per_request: int = 2,
    single_requests: int = 100,
    work_dir: Path = Path("outputs/bench-serve"),
) -> list[dict[str, Any]]:
    """Start a server per mode (batching on, off; then one client at a time) and measure each."""
    work_dir.mkdir(parents=True, exist_ok=True)
    modes = [
        ("batching on", True, concurrency, requests),
        ("batching off", False, concurrency, requests),
        ("one client", True, 1, single_requests),
    ]
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    rows = []
    for name, batching, clients, count in modes:
        port = free_port()
        mode_settings = settings.model_copy(update={"batching": batching, "host": "127.0.0.1", "port": port})
        url = f"http://127.0.0.1:{port}"
        log_file = work_dir / f"server-{name.replace(' ', '-')}.log"
        with server_process(uvicorn_command("127.0.0.1", port), settings_env(mode_settings), url, log_file):
            figures = _measure(url, texts, clients, count, texts_per_request, api_key)
            metrics_text = httpx.get(f"{url}/metrics", timeout=10).text
        rows.append({"mode": name, "clients": clients, "texts_per_request": texts_per_request,
                     "mean_texts_per_pass": _mean_batch(metrics_text), **figures})
    (work_dir / "results.json").write_text(json.dumps(rows, indent=2))
    return rows


def _mean_batch(metrics_text: str) -> float | None:
    """Mean texts per forward pass, from the server's own histogram."""
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "llmneo_batch_size_texts":
            values = {sample.name: sample.value for sample in family.samples}
            count = values.get("llmneo_batch_size_texts_count", 0.0)
            return values["llmneo_batch_size_texts_sum"] / count if count else None
    return None
