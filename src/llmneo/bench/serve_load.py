"""`llmneo bench-serve`: how much of the backend's speed the server delivers, measured in one run.

First the backend alone, in this process, on the folder the server will serve, with the server's
threads: the latency of one 2-text call and the sentences/s of passes of 32 over the whole dev set
sorted by length, as `llmneo bench` measures it (tokenisation included, as the server pays it), with ONNX Runtime's spin-waiting as the server sets it and on; the
better figure of the two is the reference. Then the server in its own process (`uvicorn llmneo.serve.app:app`,
the container's command line) under 1, 8 and 32 concurrent clients, each sending requests of
`texts_per_request` SST-2 dev sentences over keep-alive connections (aiohttp, on the same machine:
the client's CPU is part of the cost, as it would be for a sidecar). Then the backend again, so a
neighbour's load that came or went during the run shows up as a gap between the two. Each server row
reports its sentences/s as a share of the backend's batch-32 sentences/s (their mean), p50/p99
latency and errors. Speed is measured here, never asserted in tests.
"""

from __future__ import annotations

import asyncio
import csv
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from llmneo.inference import Predictor
from llmneo.inference.cores import available_cores
from llmneo.serve.launch import free_port, server_process, settings_env, uvicorn_command
from llmneo.serve.model_source import fetch_model
from llmneo.serve.service import backend_label, sleeping_thread_pools
from llmneo.serve.settings import ServeSettings

__all__ = ["LoadResult", "backend_speed", "bench_serve", "drive_load", "load_texts", "render_markdown"]


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


async def drive_load(url: str, texts: list[str], *, concurrency: int, requests: int, texts_per_request: int,
                     api_key: str | None = None, seed: int = 0) -> LoadResult:
    """Send `requests` /predict calls from `concurrency` concurrent clients; errors are counted, not raised.

    Bodies are encoded before the clock starts, so the client spends its CPU on HTTP only.
    """
    rng = random.Random(seed)
    bodies = [json.dumps({"texts": rng.sample(texts, texts_per_request)}).encode() for _ in range(requests)]
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    result = LoadResult()
    remaining = iter(bodies)

    async def client_loop(session: aiohttp.ClientSession) -> None:
        for body in remaining:  # one shared iterator: each body is sent once, by whichever client is free
            started = time.perf_counter()
            try:
                async with session.post(f"{url}/predict", data=body, headers=headers) as response:
                    await response.read()
                    status = str(response.status)
            except (aiohttp.ClientError, TimeoutError) as error:
                status = type(error).__name__
            result.latencies_ms.append((time.perf_counter() - started) * 1000.0)
            result.statuses[status] += 1
            if status == "200":
                result.texts += texts_per_request

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(session) for _ in range(concurrency)))
        result.duration_s = time.perf_counter() - started
    return result


def backend_speed(predictor: Predictor, texts: list[str], seconds: float = 4.0, seed: int = 1) -> dict[str, float]:
    """The backend alone: p50 ms of a 2-text call, and sentences/s at batch 32 as `llmneo bench` measures
    it (the whole dev set sorted by length, then cut into passes of 32: hardly any padding, the best case)."""
    rng = random.Random(seed)
    predictor.predict_logits(texts[:64], batch_size=32)  # warm-up
    pairs = []
    deadline = time.perf_counter() + seconds / 2
    while time.perf_counter() < deadline or len(pairs) < 20:
        batch = rng.sample(texts, 2)
        started = time.perf_counter()
        predictor.predict_logits(batch)
        pairs.append((time.perf_counter() - started) * 1000.0)
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds / 2 or done == 0:
        predictor.predict_logits(texts, batch_size=32)
        done += len(texts)
    return {"batch2_p50_ms": float(np.percentile(pairs, 50)),
            "batch32_texts_per_s": done / (time.perf_counter() - started)}


def _measure_backend(folder: Path, settings: ServeSettings, texts: list[str]) -> dict[str, float]:
    """The backend as the server runs it and, for ONNX, with ORT's spin-waiting on as well: the best
    figure of the two is the reference, so the server is never compared with a handicapped backend."""
    sleeping_thread_pools(settings)  # as the server does, before torch (if it is the backend) is loaded
    figures: dict[str, dict[str, float]] = {}
    for spinning in dict.fromkeys([settings.spin_wait, True]):
        predictor = Predictor.load(folder, backend=settings.backend, device=settings.device,
                                   num_threads=settings.num_threads or available_cores(), onnx_spinning=spinning)
        figures[f"spinning_{str(spinning).lower()}"] = backend_speed(predictor, texts)
        if predictor.backend_name != "onnx":
            break
        del predictor
    return {"batch2_p50_ms": min(figure["batch2_p50_ms"] for figure in figures.values()),
            "batch32_texts_per_s": max(figure["batch32_texts_per_s"] for figure in figures.values()),
            "by_setting": figures}


def bench_serve(settings: ServeSettings, texts: list[str], *, clients: tuple[int, ...] = (1, 8, 32),
                requests: int = 5000, single_requests: int = 500, texts_per_request: int = 2, workers: int = 1,
                work_dir: Path = Path("outputs/bench-serve")) -> dict[str, Any]:
    """Backend alone, the server under each client count, the backend again; writes results.json.

    With `workers` > 1 each server process gets cores/workers threads (as `llmneo serve --workers`
    gives them), and the backend reference keeps all the cores: the comparison `--workers` is about.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    folder, _ = fetch_model(settings.model, settings.mlflow_tracking_uri, settings.backend)
    before = _measure_backend(folder, settings, texts)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    served = settings.model_copy(update={"host": "127.0.0.1", "port": port})
    if workers > 1 and settings.num_threads is None:
        served = served.model_copy(update={"num_threads": max(1, available_cores() // workers)})
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    rows = []
    with server_process(uvicorn_command("127.0.0.1", port, workers), settings_env(served), url,
                        work_dir / "server.log"):
        info = httpx.get(f"{url}/info", timeout=10).json()
        for count in clients:
            asyncio.run(drive_load(url, texts, concurrency=count, requests=max(20, 2 * count),
                                   texts_per_request=texts_per_request, api_key=api_key, seed=count))  # warm-up
            passes_before = _pass_totals(httpx.get(f"{url}/metrics", timeout=10).text)
            result = asyncio.run(drive_load(url, texts, concurrency=count, requests=single_requests if count == 1
                                            else requests, texts_per_request=texts_per_request, api_key=api_key))
            passes_after = _pass_totals(httpx.get(f"{url}/metrics", timeout=10).text)
            texts_in, passes = (a - b for a, b in zip(passes_after, passes_before))
            rows.append({"clients": count, "texts_per_request": texts_per_request, **result.summary(),
                         "statuses": dict(result.statuses), "mean_texts_per_pass": texts_in / passes if passes else None})
    after = _measure_backend(folder, settings, texts)
    batch32 = (before["batch32_texts_per_s"] + after["batch32_texts_per_s"]) / 2
    for row in rows:
        row["share_of_backend_batch32"] = row["texts_per_s"] / batch32
    report = {"model": str(folder), "backend": backend_label(info), "workers": workers,
              "threads": info.get("threads"), "backend_before": before, "backend_after": after,
              "backend_batch32_texts_per_s": batch32,
              "backend_batch2_p50_ms": (before["batch2_p50_ms"] + after["batch2_p50_ms"]) / 2, "server": rows}
    (work_dir / "results.json").write_text(json.dumps(report, indent=2))
    (work_dir / "results.md").write_text(render_markdown(report))
    return report


def render_markdown(report: dict[str, Any]) -> str:
    """The run as a Markdown table: each client count against the backend measured in the same run."""
    before, after = report["backend_before"], report["backend_after"]
    lines = [
        (f"{report['backend']} backend, {report['workers']} worker(s) x {report['threads']} threads, "
        f"{report['server'][0]['texts_per_request']} sentences per request. Backend alone, before / after the "
        f"load: batch 2 p50 {before['batch2_p50_ms']:.2f} / {after['batch2_p50_ms']:.2f} ms, batch 32 "
        f"{before['batch32_texts_per_s']:.0f} / {after['batch32_texts_per_s']:.0f} sentences/s."),
        "",
        "| clients | requests | errors | p50 ms | p99 ms | sentences/s | of backend batch 32 | texts per pass |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["server"]:
        batch = row["mean_texts_per_pass"]
        lines.append(f"| {row['clients']} | {row['requests']:.0f} | {row['errors']:.0f} | {row['p50_ms']:.1f} | "
                     f"{row['p99_ms']:.1f} | {row['texts_per_s']:.0f} | {row['share_of_backend_batch32']:.0%} | "
                     f"{f'{batch:.1f}' if batch else '-'} |")
    return "\n".join(lines) + "\n"


def _pass_totals(metrics_text: str) -> tuple[float, float]:
    """(texts, forward passes) so far, from the server's own llmneo_batch_size_texts histogram."""
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "llmneo_batch_size_texts":
            values = {sample.name: sample.value for sample in family.samples}
            return values["llmneo_batch_size_texts_sum"], values["llmneo_batch_size_texts_count"]
    return 0.0, 0.0
