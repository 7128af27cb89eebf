"""The deployment built and run for real: deploy/container-test.sh under Podman, as CI runs it.

The script builds the local Debian base when missing, builds the image from the project's Dockerfile,
starts it with a model folder mounted read-only, waits for its HEALTHCHECK, checks /health, /info and
/predict from outside the container against the host's own Predictor, does the same for the slim
ONNX-only image (`--target slim`) on an int8 export, then starts the compose stack and checks the
MLflow UI and the API, and that the API's serving session reached the store the UI reads.
It needs root and podman (installed by `make system-deps`, never by the test); on a machine with no cached layers most of its time goes to the image build.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "deploy" / "container-test.sh"
# Warm (cached layers), the script takes about 4 minutes. From nothing (no base image, no layers) it took
# 11 minutes on a busy shared 2-core machine with the full image alone, most of it installing the
# dependencies into the image; the slim image adds its own (smaller) install: the limit leaves room for
# that rather than failing a correct deployment on a slow first build.
TIMEOUT_S = 1200
SLIM_MAX_MB = 450  # issue 11: the ONNX-only image carries no training stack


@pytest.mark.container
@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT_S + 30)
def test_image_builds_starts_and_answers_and_compose_stack_serves():
    assert os.geteuid() == 0, "the container test builds images: run it as root (CI does)"
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(SCRIPT)], check=False, cwd=PROJECT_ROOT, env=env, capture_output=True,
                            text=True, timeout=TIMEOUT_S)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    for step in ("check-api: ok", "check-mlflow: ok", "check-session: ok", "compose stack: ok",
                 "holds no torch, transformers, mlflow, scipy or pandas"):
        assert step in output, f"{step!r} missing from:\n{output[-3000:]}"
    summaries = re.findall(r"SUMMARY image=(\S+) size_mb=(\d+) build_s=(\d+) time_to_healthy_ms=(\d+)", output)
    assert len(summaries) == 2, output[-3000:]  # the full image, then the slim one
    (_, full_mb, _, _), (slim, slim_mb, _, _) = summaries
    assert "slim" in slim and int(slim_mb) <= SLIM_MAX_MB < int(full_mb), summaries
    print(summaries)
