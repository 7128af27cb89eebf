"""Fuzz /predict over HTTP with hypothesis: whatever the body, the answer is never a 5xx.

Three kinds of input: bodies shaped like the schema with hostile values (any Unicode, huge and
negative numbers, wrong types), arbitrary JSON documents, and arbitrary bytes. Known hard cases that
once gave 500s (lone surrogates, NaN) are pinned as explicit examples.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from llmneo.inference import Predictor
from llmneo.serve.app import create_app
from llmneo.serve.launch import serve_in_thread
from llmneo.serve.settings import ServeSettings

pytestmark = pytest.mark.slow

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
any_text = st.text(st.characters(codec="utf-8"), max_size=80)  # any Unicode scalar, emoji and controls included
schema_like = st.fixed_dictionaries(
    {"texts": st.lists(any_text, max_size=70) | json_values},
    optional={
        "calibrate": st.booleans() | json_values,
        "threshold": st.floats(allow_nan=False, allow_infinity=False) | st.none() | json_values,
    },
)


@pytest.fixture(scope="module")
def client(tiny_model_dir: Path) -> Iterator[httpx.Client]:
    app = create_app(ServeSettings(model=str(tiny_model_dir), max_wait_ms=0), Predictor.load(tiny_model_dir))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        yield http


def check(response: httpx.Response) -> None:
    assert response.status_code < 500, f"{response.status_code}: {response.text[:300]}"
    if response.status_code == 200:
        body = response.json()
        assert all(sum(result["probs"]) == pytest.approx(1.0) for result in body["results"])
    else:
        assert "detail" in response.json()


@FUZZ
@given(body=schema_like)
def test_schema_shaped_bodies(client: httpx.Client, body: dict) -> None:
    check(client.post("/predict", json=body))


@FUZZ
@given(body=json_values)
def test_any_json_document(client: httpx.Client, body: object) -> None:
    check(client.post("/predict", json=body))


@FUZZ
@given(raw=st.binary(max_size=200))
@example(raw=b'{"texts": ["\\ud800"]}')
@example(raw=b'{"texts": ["ok"], "threshold": NaN}')
@example(raw=b'{"texts": ["ok"], "threshold": 1e999}')
@example(raw=b'{"texts": ["\xff\xfe"]}')
def test_any_bytes(client: httpx.Client, raw: bytes) -> None:
    check(client.post("/predict", content=raw, headers={"content-type": "application/json"}))


def test_pinned_hard_cases_are_422(client: httpx.Client) -> None:
    for raw in (b'{"texts": ["\\ud800"]}', b'{"texts": ["ok"], "threshold": NaN}', b'{"texts": ["ok"], "threshold": true}'):
        response = client.post("/predict", content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 422, raw
        assert json.loads(response.text)["detail"][0]["loc"][0] == "body"
