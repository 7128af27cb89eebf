"""The micro-batcher, the logits-to-answers maths, the prediction log and the MLflow session record."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from llmneo.inference import Predictor
from llmneo.maths.decide import decide
from llmneo.serve.batching import BatcherClosed, BatchStats, MicroBatcher, QueueFull
from llmneo.serve.inference_log import InferenceLog, SessionStats, record_session_in_mlflow, text_sha256


@pytest.fixture(scope="module")
def predictor(tiny_model_dir: Path) -> Predictor:
    return Predictor.load(tiny_model_dir)


class RecordingModel:
    """The real predictor's logits, remembering the texts of each forward pass (and optionally slow)."""

    def __init__(self, predictor: Predictor, delay_s: float = 0.0, fail_on: str | None = None) -> None:
        self.predictor = predictor
        self.delay_s = delay_s
        self.fail_on = fail_on
        self.passes: list[list[str]] = []
        self.threads: set[str] = set()

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.passes.append(list(texts))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay_s)
        if self.fail_on is not None and self.fail_on in texts:
            raise RuntimeError(f"cannot score {self.fail_on!r}")
        return self.predictor.predict_logits(texts)


async def until(condition, timeout_s: float = 30.0) -> None:
    """Wait for `condition()` by polling: on a busy machine a pass may start late, never never."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def run_batcher(model: RecordingModel, requests: list[list[str]], **options) -> tuple[list, list[BatchStats]]:
    """Submit all requests concurrently to a fresh batcher; return each outcome and the batch stats."""
    stats: list[BatchStats] = []

    async def scenario() -> list:
        batcher = MicroBatcher(model, observer=stats.append, **options)
        batcher.start()
        outcomes = await asyncio.gather(*(batcher.submit(texts) for texts in requests), return_exceptions=True)
        await batcher.close()
        return outcomes

    return asyncio.run(scenario()), stats


def test_concurrent_requests_share_a_pass_and_keep_their_rows(predictor: Predictor) -> None:
    requests = [[f"text {i}", f"other text {i}"] for i in range(6)]
    model = RecordingModel(predictor)
    outcomes, stats = run_batcher(model, requests, max_batch_size=32, max_wait_ms=50)
    assert len(model.passes) == 1 and len(model.passes[0]) == 12
    assert stats[0].requests == 6 and stats[0].texts == 12
    for texts, logits in zip(requests, outcomes):
        assert logits.shape == (2, 2)
        np.testing.assert_allclose(logits, predictor.predict_logits(texts), atol=1e-5)
    assert model.threads == {"llmneo-infer_0"}  # never the event loop's thread


def test_an_idle_model_runs_a_request_at_once_and_batches_what_arrives_while_busy(predictor: Predictor) -> None:
    model = RecordingModel(predictor, delay_s=1.0)

    async def scenario() -> list:
        batcher = MicroBatcher(model, max_batch_size=32)  # max_wait_ms defaults to 0: no waiting for company
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(["first"]))
        await until(lambda: model.passes)
        assert model.passes == [["first"]]  # running already, alone, though more requests may come
        later = [asyncio.ensure_future(batcher.submit([f"later {i}", f"more {i}"])) for i in range(3)]
        outcomes = [await first, *[await task for task in later]]
        await batcher.close()
        return outcomes

    outcomes = asyncio.run(scenario())
    # what arrived while the first pass ran shares the next one: counted, not timed
    assert model.passes == [["first"], ["later 0", "more 0", "later 1", "more 1", "later 2", "more 2"]]
    assert [o.shape for o in outcomes] == [(1, 2), (2, 2), (2, 2), (2, 2)]


def test_a_full_queue_is_refused_at_once_and_the_batcher_recovers(predictor: Predictor) -> None:
    model = RecordingModel(predictor, delay_s=1.0)

    async def scenario() -> tuple:
        batcher = MicroBatcher(model, max_batch_size=32, max_queue_texts=3)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit(["running"]))  # taken at once: the queue is empty again
        await until(lambda: model.passes)
        queued = asyncio.ensure_future(batcher.submit(["q1", "q2"]))
        await asyncio.sleep(0)
        refused = None
        try:
            await batcher.submit(["one", "too", "many"])
        except QueueFull as error:
            refused = error
        results = [await running, await queued]
        after = await batcher.submit(["after the rush", "and more", "and more", "and more"])  # empty queue: taken
        await batcher.close()
        return refused, results, after

    refused, results, after = asyncio.run(scenario())
    assert isinstance(refused, QueueFull) and refused.retry_after_s >= 1 and "overloaded" in str(refused)
    assert [r.shape for r in results] == [(1, 2), (2, 2)] and after.shape == (4, 2)
    assert ["one", "too", "many"] not in model.passes


def test_batches_respect_max_batch_size_and_never_split_a_request(predictor: Predictor) -> None:
    requests = [["a"] * 3, ["b"] * 3, ["c"] * 10, ["d"] * 2]
    model = RecordingModel(predictor)
    outcomes, _ = run_batcher(model, requests, max_batch_size=6, max_wait_ms=50)
    assert [len(p) for p in model.passes] == [6, 10, 2]  # the 10-text request runs alone, whole
    assert [o.shape[0] for o in outcomes] == [3, 3, 10, 2]


def test_batching_off_gives_each_request_its_own_pass(predictor: Predictor) -> None:
    model = RecordingModel(predictor)
    run_batcher(model, [["x"], ["y"], ["z"]], max_batch_size=32, max_wait_ms=50, enabled=False)
    assert model.passes == [["x"], ["y"], ["z"]]


def test_a_failing_pass_fails_its_requests_and_the_batcher_carries_on(predictor: Predictor) -> None:
    model = RecordingModel(predictor, fail_on="boom")

    async def scenario() -> tuple:
        batcher = MicroBatcher(model, max_batch_size=32, max_wait_ms=20)
        batcher.start()
        failed = await asyncio.gather(batcher.submit(["boom"]), batcher.submit(["fine"]), return_exceptions=True)
        later = await batcher.submit(["fine again"])
        await batcher.close()
        return failed, later

    failed, later = asyncio.run(scenario())
    assert all(isinstance(error, RuntimeError) and "boom" in str(error) for error in failed)
    assert later.shape == (1, 2)


def test_close_drains_queued_work_then_refuses_more(predictor: Predictor) -> None:
    model = RecordingModel(predictor, delay_s=0.2)

    async def scenario() -> tuple:
        batcher = MicroBatcher(model, max_batch_size=1, max_wait_ms=0)
        batcher.start()
        pending = [asyncio.ensure_future(batcher.submit([f"t{i}"])) for i in range(3)]
        await until(lambda: model.passes)  # the first pass is running, two requests wait in the queue
        await batcher.close()
        refused = None
        try:
            await batcher.submit(["late"])
        except BatcherClosed as error:
            refused = error
        return [task.result().shape for task in pending], refused

    shapes, refused = asyncio.run(scenario())
    assert shapes == [(1, 2)] * 3
    assert isinstance(refused, BatcherClosed)


def test_the_event_loop_keeps_running_during_a_forward_pass(predictor: Predictor) -> None:
    model = RecordingModel(predictor, delay_s=1.0)

    async def scenario() -> int:
        batcher = MicroBatcher(model, max_batch_size=8, max_wait_ms=0)
        batcher.start()
        work = asyncio.ensure_future(batcher.submit(["slow"]))
        await until(lambda: model.passes)
        ticks = 0
        while not work.done():  # a pass that held the loop would let this run once, after it
            ticks += 1
            await asyncio.sleep(0.01)
        await batcher.close()
        return ticks

    assert asyncio.run(scenario()) >= 5  # the loop ran on while the 1 s pass did (about 100 times when idle)


def test_decide_argmax_threshold_and_temperature() -> None:
    logits = np.array([[0.0, 1.0], [2.0, 0.0], [0.0, 0.0]])  # (3, 2)
    plain = decide(logits, ["negative", "positive"])
    assert [p.label for p in plain] == ["positive", "negative", "negative"]
    assert plain[0].probs == pytest.approx([1 / (1 + np.e), np.e / (1 + np.e)])
    assert [p.pred for p in decide(logits, ["negative", "positive"], threshold=0.5)] == [1, 0, 1]
    assert [p.pred for p in decide(logits, ["negative", "positive"], threshold=0.8)] == [0, 0, 0]
    hot = decide(logits, ["negative", "positive"], temperature=2.0)
    assert hot[0].probs[1] == pytest.approx(1 / (1 + np.exp(-0.5)))
    with pytest.raises(ValueError, match="two-class"):
        decide(np.zeros((1, 3)), ["a", "b", "c"], threshold=0.5)
    with pytest.raises(ValueError, match="do not match"):
        decide(np.zeros((1, 3)), ["a", "b"])


def test_inference_log_rotates_and_hides_texts_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "predictions.jsonl"
    log = InferenceLog(path, log_texts=False, max_bytes=2_000, backups=2, model_version="v7")
    for i in range(40):
        log.write(f"req{i}", [f"secret text {i}"], ["positive"], [[0.25, 0.75]], latency_ms=3.5)
    log.close()
    files = sorted(path.parent.iterdir())
    assert [f.name for f in files] == ["predictions.jsonl", "predictions.jsonl.1", "predictions.jsonl.2"]
    entries = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert all("text" not in e and "secret" not in json.dumps(e) for e in entries)
    last = json.loads(path.read_text().splitlines()[-1])
    assert last["request_id"] == "req39" and last["text_sha256"] == text_sha256("secret text 39")
    assert last["length"] == len("secret text 39") and last["label"] == "positive"
    assert last["probs"] == [0.25, 0.75] and last["latency_ms"] == 3.5 and last["model_version"] == "v7"

    with_texts = InferenceLog(tmp_path / "t.jsonl", log_texts=True, max_bytes=10_000, backups=0, model_version="v")
    with_texts.write("r", ["shown 😀"], ["negative"], [[0.9, 0.1]], latency_ms=1.0)
    with_texts.close()
    assert json.loads((tmp_path / "t.jsonl").read_text())["text"] == "shown 😀"


def test_session_summary_and_mlflow_record_leave_an_active_run_alone(tmp_path: Path) -> None:
    import mlflow

    stats = SessionStats()
    for latency in (10.0, 20.0, 30.0, 40.0):
        stats.add(latency, ["positive", "negative"], [[0.2, 0.8], [0.9, 0.1]])
    stats.add(50.0, ["positive"], [[0.4, 0.6]])
    summary = stats.summary(["negative", "positive"])
    assert summary["requests"] == 5 and summary["texts"] == 9
    assert summary["latency_p50_ms"] == 30.0
    assert summary["label_share_positive"] == pytest.approx(5 / 9)
    assert summary["mean_prob_last_class"] == pytest.approx((4 * 0.9 + 0.6) / 9)

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run() as outer:
            run_id = record_session_in_mlflow(summary, {"model": "tiny"}, tracking_uri=uri,
                                              experiment="serving-test", run_name="serve-tiny")
            assert mlflow.active_run().info.run_id == outer.info.run_id
    finally:
        mlflow.set_tracking_uri(None)
    run = mlflow.MlflowClient(uri).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["llmneo.kind"] == "serving-session"
    assert run.data.metrics["requests"] == 5 and run.data.metrics["latency_p50_ms"] == 30.0
    assert run.data.params["model"] == "tiny"


def test_a_request_whose_client_went_away_is_skipped(predictor: Predictor) -> None:
    model = RecordingModel(predictor)

    async def scenario() -> np.ndarray:
        batcher = MicroBatcher(model, max_batch_size=32, max_wait_ms=100)
        batcher.start()
        gone = asyncio.ensure_future(batcher.submit(["nobody waits for me"]))
        kept = asyncio.ensure_future(batcher.submit(["still wanted"]))
        await asyncio.sleep(0.01)
        gone.cancel()  # what happens to a route coroutine when its client disconnects
        logits = await kept
        await batcher.close()
        return logits

    assert asyncio.run(scenario()).shape == (1, 2)
    assert model.passes == [["still wanted"]]
