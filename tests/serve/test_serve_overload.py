"""Back-pressure over HTTP: a full queue answers 503 with Retry-After at once, and the server recovers."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from llmneo.inference import Predictor
from llmneo.serve.app import create_app
from llmneo.serve.launch import serve_in_thread
from llmneo.serve.settings import ServeSettings


def shed_count(url: str) -> float:
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        if family.name == "llmneo_shed_requests":
            return sum(sample.value for sample in family.samples if sample.name.endswith("_total"))
    raise AssertionError("llmneo_shed_requests not in /metrics")


def test_a_full_queue_sheds_load_with_503_and_retry_after_then_recovers(tiny_model_dir: Path) -> None:
    # The first request waits (max_wait_ms) for company, so it holds the queue's 2 places while the next arrives.
    settings = ServeSettings(model=str(tiny_model_dir), max_wait_ms=1500, max_queue_texts=2)
    with serve_in_thread(create_app(settings, Predictor.load(tiny_model_dir))) as url, \
            ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(httpx.post, f"{url}/predict", json={"texts": ["first", "second"]}, timeout=30)
        time.sleep(0.4)
        shed = httpx.post(f"{url}/predict", json={"texts": ["one more"]}, timeout=30)
        assert shed.status_code == 503, shed.text
        assert int(shed.headers["retry-after"]) >= 1
        assert shed.json()["detail"][0]["type"] == "unavailable" and "overloaded" in shed.json()["detail"][0]["msg"]
        assert waiting.result().status_code == 200  # the queued request is served, not dropped
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        again = httpx.post(f"{url}/predict", json={"texts": ["after the rush"]}, timeout=30)
        assert again.status_code == 200 and len(again.json()["results"]) == 1
        assert shed_count(url) == 1
