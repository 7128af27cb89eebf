"""An independent fuzzer reads the served OpenAPI document and checks the server against it.

schemathesis (`--checks all`) generates valid and invalid requests from /openapi.json and checks every
answer: no 5xx, only documented status codes, content types and headers, bodies that match their
schemas, valid data accepted, invalid data rejected, and with a key, no operation that ignores it.
Run with and without an API key: the Bearer scheme must be declared exactly when one is configured.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from llmneo.inference import Predictor
from llmneo.serve.app import create_app
from llmneo.serve.launch import serve_in_thread
from llmneo.serve.settings import ServeSettings

pytestmark = pytest.mark.slow

SCHEMATHESIS = Path(sys.executable).with_name("st")


@pytest.fixture(scope="module")
def predictor(tiny_model_dir: Path) -> Predictor:
    return Predictor.load(tiny_model_dir)


@pytest.mark.parametrize("api_key", [None, "fuzz-key"])
def test_schemathesis_finds_no_failure(tiny_model_dir: Path, predictor: Predictor, api_key: str | None,
                                       tmp_path: Path) -> None:
    settings = ServeSettings(model=str(tiny_model_dir), api_key=api_key)
    with serve_in_thread(create_app(settings, predictor)) as url:
        document = httpx.get(f"{url}/openapi.json", timeout=10).json()
        schemes = document.get("components", {}).get("securitySchemes")
        assert (schemes is not None) == (api_key is not None), schemes
        command = [str(SCHEMATHESIS), "run", f"{url}/openapi.json", "--checks", "all", "--max-examples", "100",
                   "--workers", "1", "--seed", "11", "--generation-database", "none", "--no-color"]
        if api_key:
            command += ["--header", f"Authorization: Bearer {api_key}"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "No issues found" in output, output[-3000:]
