"""Serving a registered model straight from MLflow: `llmneo serve models:/name@champion`."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from conftest import tiny_config, write_run_folder
from llmneo import tracking
from llmneo.config import validate_config
from llmneo.serve.app import create_app
from llmneo.serve.launch import serve_in_thread
from llmneo.serve.settings import ServeSettings

pytestmark = pytest.mark.slow


def test_serve_the_champion_from_the_registry(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the project's artifact store sits beside the working directory
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_dir = write_run_folder(tmp_path / "run", tiny_model_dir)
    config = validate_config(tiny_config(tracking_uri=uri, registered_model_name="serve-student",
                                         log_system_metrics=False))
    with tracking.stage_run(config, "student") as stage:
        tracking.log_stage_outputs(stage, run_dir)

    settings = ServeSettings(model="models:/serve-student@champion", mlflow_tracking_uri=uri)
    with serve_in_thread(create_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as client:
        info = client.get("/info").json()
        assert info["version"] == "1" and info["source"] == "models:/serve-student@champion"
        assert info["name"] == "tiny" and info["labels"] == ["negative", "positive"]
        answer = client.post("/predict", json={"texts": ["a fine film"]})
        assert answer.status_code == 200 and answer.json()["results"][0]["label"] in info["labels"]


def test_an_unknown_registered_model_fails_at_start_with_its_name(tmp_path: Path) -> None:
    from llmneo.serve.service import load_predictor

    settings = ServeSettings(model="models:/no-such-model@champion",
                             mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(Exception, match="no-such-model"):
        load_predictor(settings)
