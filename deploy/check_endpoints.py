"""Call a running deployment from outside its container and check the answers.

`api URL MODEL_DIR`: waits for /health, then checks /health, /info, /predict (against the host's own
Predictor on the same model folder: the container must give the same probabilities) and one bad
request. `mlflow URL`: waits for the MLflow server, then checks its UI page and its REST API.
`session URL EXPERIMENT`: the MLflow server shows a serving session that the API recorded in the shared
store when it stopped (proof that both containers use one tracking store).
Exits non-zero with a message naming the failed check. Only the standard library talks HTTP, so the
script states exactly what a client sees.

Usage: python deploy/check_endpoints.py api http://127.0.0.1:8000 outputs/demo/student [--timeout 180] [--backend onnx]
       python deploy/check_endpoints.py mlflow http://127.0.0.1:5001 [--timeout 180]
       python deploy/check_endpoints.py session http://127.0.0.1:5001 llmneo-serving [--timeout 60]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROBE_TEXTS = ["I loved the film!", "This was terrible.", "An unremarkable, ordinary movie.", "Génial 🎬"]
# Probabilities may differ in the last bits between the image's and the host's library builds.
PROB_TOLERANCE = 1e-4


class CheckFailed(RuntimeError):
    """A deployment answered, but not as it should."""


def _request(url: str, body: dict[str, Any] | None = None, timeout: float = 30.0) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if body is not None else {}
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _json(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    status, payload = _request(url, body)
    if status != 200:
        raise CheckFailed(f"{url}: HTTP {status}: {payload[:300]!r}")
    try:
        return json.loads(payload)
    except json.JSONDecodeError as error:
        raise CheckFailed(f"{url}: not JSON ({error}): {payload[:300]!r}") from error


def wait_for(url: str, timeout_s: float) -> float:
    """Poll `url` until it answers 200; return the seconds waited (the project's one polling loop)."""
    from llmneo.serve.launch import wait_healthy

    try:
        return wait_healthy(url, timeout_s=timeout_s, path="")
    except TimeoutError as error:
        raise CheckFailed(str(error)) from None


def check_predictions(results: list[dict[str, Any]], expected_probs: list[list[float]], labels: list[str]) -> None:
    """Each result must be consistent in itself and match the host's probabilities for the same text."""
    if len(results) != len(expected_probs):
        raise CheckFailed(f"/predict: {len(results)} results for {len(expected_probs)} texts")
    for index, (result, expected) in enumerate(zip(results, expected_probs)):
        probs = result["probs"]
        if len(probs) != len(labels) or abs(sum(probs) - 1.0) > 1e-4:
            raise CheckFailed(f"/predict result {index}: probs {probs} are not a distribution over {labels}")
        if result["pred"] != max(range(len(probs)), key=probs.__getitem__) or result["label"] != labels[result["pred"]]:
            raise CheckFailed(f"/predict result {index}: pred/label {result['pred']}/{result['label']} "
                              f"disagree with probs {probs}")
        if max(abs(a - b) for a, b in zip(probs, expected)) > PROB_TOLERANCE:
            raise CheckFailed(f"/predict result {index} ({PROBE_TEXTS[index]!r}): container says {probs}, "
                              f"the host's Predictor on the same folder says {expected}")


def check_api(base_url: str, model_dir: str, timeout_s: float, backend: str | None = None) -> None:
    from llmneo.inference import Predictor

    waited = wait_for(f"{base_url}/health", timeout_s)
    print(f"check-api: /health answered 200 after {waited:.1f} s of polling")
    health = _json(f"{base_url}/health")
    info = _json(f"{base_url}/info")
    predictor = Predictor.load(model_dir, device="cpu")
    if backend is not None and info.get("backend") != backend:
        raise CheckFailed(f"/info backend {info.get('backend')!r}, expected {backend!r}")
    if info.get("labels") != predictor.labels:
        raise CheckFailed(f"/info labels {info.get('labels')} differ from the model folder's {predictor.labels}")
    answer = _json(f"{base_url}/predict", {"texts": PROBE_TEXTS})
    expected = predictor.predict_proba(PROBE_TEXTS).tolist()
    check_predictions(answer["results"], expected, predictor.labels)
    if (predictor.meta.get("metrics") or {}).get("accuracy", 0) >= 0.8:
        got = [result["label"] for result in answer["results"][:2]]
        if got != ["positive", "negative"]:
            raise CheckFailed(f"/predict: a trained model called {PROBE_TEXTS[:2]} {got}")
    status, payload = _request(f"{base_url}/predict", {"texts": []})
    if not 400 <= status < 500:
        raise CheckFailed(f"/predict with no texts: expected a 4xx, got HTTP {status}: {payload[:200]!r}")
    print(f"check-api: ok: health={json.dumps(health)[:120]} labels={info['labels']} "
          f"first result={answer['results'][0]} empty-texts status={status}")


def check_mlflow(base_url: str, timeout_s: float) -> None:
    waited = wait_for(f"{base_url}/health", timeout_s)
    print(f"check-mlflow: /health answered 200 after {waited:.1f} s of polling")
    status, page = _request(f"{base_url}/")
    if status != 200 or b"MLflow" not in page:
        raise CheckFailed(f"{base_url}/: expected the MLflow UI page, got HTTP {status}: {page[:200]!r}")
    found = _json(f"{base_url}/api/2.0/mlflow/experiments/search", {"max_results": 10})
    names = [experiment["name"] for experiment in found.get("experiments", [])]
    if not names:
        raise CheckFailed(f"{base_url}: the tracking store lists no experiment at all")
    print(f"check-mlflow: ok: UI page served, experiments in the store: {names}")


def check_session(base_url: str, experiment: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    runs: list[dict[str, Any]] = []
    while not runs and time.monotonic() < deadline:
        status, payload = _request(f"{base_url}/api/2.0/mlflow/experiments/get-by-name?experiment_name={experiment}")
        if status == 200:
            experiment_id = json.loads(payload)["experiment"]["experiment_id"]
            runs = _json(f"{base_url}/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment_id]}).get("runs", [])
        if not runs:
            time.sleep(1)
    if not runs:
        raise CheckFailed(f"{base_url}: no run in experiment {experiment!r} after {timeout_s:.0f} s: the API's "
                          "serving session did not reach the shared tracking store")
    metrics = {metric["key"]: metric["value"] for metric in runs[0]["data"].get("metrics", [])}
    if not metrics:
        raise CheckFailed(f"{base_url}: the serving session run {runs[0]['info']['run_id']} has no metrics")
    print(f"check-session: ok: run {runs[0]['info']['run_name']!r} in {experiment!r}, "
          f"{len(metrics)} metrics, e.g. {dict(sorted(metrics.items())[:3])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("service", choices=["api", "mlflow", "session"])
    parser.add_argument("url")
    parser.add_argument("target", nargs="?", help="api: the model folder it serves; session: the experiment")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the service")
    parser.add_argument("--backend", help="api: the backend /info must report (e.g. onnx)")
    args = parser.parse_args(argv)
    try:
        if args.service == "api":
            if not args.target:
                parser.error("api needs the model folder")
            check_api(args.url.rstrip("/"), args.target, args.timeout, args.backend)
        elif args.service == "session":
            if not args.target:
                parser.error("session needs the experiment name")
            check_session(args.url.rstrip("/"), args.target, args.timeout)
        else:
            check_mlflow(args.url.rstrip("/"), args.timeout)
    except CheckFailed as error:
        print(f"check-{args.service}: FAILED: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
