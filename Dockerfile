# syntax=docker/dockerfile:1
# llmneo's serving image: the FastAPI app under uvicorn, reading a student model folder from /model.
#
# Real world (Docker, a registry and PyTorch's wheel index reachable):
#   docker build -t llmneo .                       # CPU torch from https://download.pytorch.org/whl/cpu
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 -t llmneo:cuda .
#   docker run -p 8000:8000 -v "$PWD/outputs/demo/student:/model:ro" llmneo
#   docker compose up                              # API on 8000, MLflow UI on 5001 (docker-compose.yml)
# Here (Podman, no registry, TLS through a proxy): deploy/container-test.sh builds it on a local Debian
# bookworm base with the machine's CA bundle and torch wheel folder mounted; see deploy/README.md.

# Any Debian-like image: python:3.11-slim has Python in /usr/local; plain Debian gets it from apt below.
ARG BASE_IMAGE=python:3.11-slim

# ---- python-base: the base image plus a Python 3 interpreter, shared by both stages below ----
FROM ${BASE_IMAGE} AS python-base
# hadolint ignore=DL3008
RUN if ! command -v python3 >/dev/null 2>&1; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 \
        && rm -rf /var/lib/apt/lists/*; \
    fi

# ---- venv: an empty virtual environment, the start of both images' dependencies ----
FROM python-base AS venv
# Debian's python3 ships without ensurepip; python:3.11-slim has it.
# hadolint ignore=DL3008
RUN if ! python3 -c "import ensurepip" >/dev/null 2>&1; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv "$VIRTUAL_ENV"

# ---- builder: the full image's venv, with the project's runtime dependencies (no dev extra) ----
FROM venv AS builder
# Torch first, from the CPU wheel index by default (PyPI's default torch pulls multi-GB CUDA wheels).
# TORCH_INDEX_URL: a CUDA index (e.g. .../whl/cu128) for a GPU image, or empty for plain PyPI.
# PIP_FIND_LINKS / PIP_CERT: pip reads them from the environment; only for machines that must install
# from a local wheel folder or through a TLS proxy (both mounted into the build, never copied in).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_FIND_LINKS=""
ARG PIP_CERT=""
# Pinned through TORCH_VERSION, which hadolint cannot read.
# hadolint ignore=DL3013
RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==${TORCH_VERSION}"

# Dependencies apart from the sources, so that editing src/ or the README neither reinstalls nor re-copies
# them: install a stub package built from pyproject.toml alone (with an empty README, which pyproject.toml
# names), then drop the stub. Versions are pyproject.toml's to pin.
# Then drop what only building or testing those packages needs: C headers and the packages' own test suites.
WORKDIR /build
COPY pyproject.toml ./
# hadolint ignore=DL3013
RUN mkdir -p src/llmneo \
    && touch src/llmneo/__init__.py README.md \
    && pip install . \
    && pip uninstall -y llmneo \
    && rm -rf src build \
    && site="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && rm -rf "$site/torch/include" \
    && find "$site" -mindepth 2 -depth -type d -name tests -exec rm -rf {} +

# ---- wheel: the project itself, as one small wheel (no dependency installed: both images use it) ----
FROM venv AS wheel
# Build arguments are per stage: the build backend's own install needs the proxy's CA too.
ARG PIP_FIND_LINKS=""
ARG PIP_CERT=""
WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-deps --wheel-dir /wheels .

# ---- slim-builder: only what the ONNX serving path imports, the `serve` extra of pyproject.toml ----
# pip extras add to the dependencies, never remove: the list is read from pyproject.toml and installed
# alone, then the project's wheel with --no-deps. Trimmed after: tokenizers declares the Hugging Face
# hub client (for downloads; the server reads tokenizer.json from disk), onnxruntime ships model-building
# tools (optimisers, quantisation) that serving never runs, and the finished venv needs no pip.
FROM venv AS slim-builder
ARG PIP_FIND_LINKS=""
ARG PIP_CERT=""
WORKDIR /build
COPY pyproject.toml ./
# hadolint ignore=DL3013
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['serve']))" > serve.txt \
    && pip install -r serve.txt \
    && pip uninstall -y huggingface_hub hf-xet fsspec filelock pyyaml tqdm httpx2 httpcore2 \
    && site="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && rm -rf "$site/onnxruntime/transformers" "$site/onnxruntime/quantization" "$site/onnxruntime/tools" \
    && find "$site" -mindepth 2 -depth -type d -name tests -exec rm -rf {} +
# COPY --from, not `RUN --mount=type=bind,from=wheel`: Podman 4.3's buildah loses a bound stage's files when
# that stage comes from the layer cache, so a build must never depend on the cache's state.
COPY --from=wheel /wheels/ /tmp/wheels/
RUN pip install --no-deps /tmp/wheels/llmneo-*.whl \
    && rm -rf /tmp/wheels \
    && pip uninstall -y pip setuptools

# ---- app-user: the interpreter and a non-root user, the start of both runtime images ----
FROM python-base AS app-user
ARG APP_UID=10001
RUN useradd --system --uid "${APP_UID}" --user-group --create-home --home-dir /home/llmneo llmneo \
    && mkdir -p /model /data \
    && chown llmneo:llmneo /data

# ---- slim: ONNX-only serving (`--target slim`): onnxruntime, tokenizers, FastAPI; no torch, no MLflow ----
# Serves an `llmneo export` folder (e.g. outputs/demo/export/onnx-int8) mounted at /model.
FROM app-user AS slim
ARG APP_UID=10001
COPY --from=slim-builder /opt/venv /opt/venv
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LLMNEO_MODEL=/model \
    LLMNEO_BACKEND=onnx \
    UVICORN_HOST=0.0.0.0 \
    UVICORN_PORT=8000 \
    UVICORN_ACCESS_LOG=false
USER ${APP_UID}:${APP_UID}
WORKDIR /home/llmneo
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('UVICORN_PORT', '8000'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/health', timeout=4).status == 200 else 1)"]
CMD ["uvicorn", "llmneo.serve.app:app"]

# ---- runtime (the default target): the full image, torch and MLflow included; no compilers or sources ----
FROM app-user AS runtime
ARG APP_UID=10001
COPY --from=builder /opt/venv /opt/venv
# Only these small layers change when the sources do: the wheel (about 0.2 MB, kept in its COPY layer) and
# its install. COPY --from rather than a bind mount from the stage, for the reason given in slim-builder.
COPY --from=wheel /wheels/ /tmp/wheels/
RUN PIP_NO_CACHE_DIR=1 /opt/venv/bin/pip install --no-deps /tmp/wheels/llmneo-*.whl \
    && rm -rf /tmp/wheels
# /data holds the shared MLflow store and inference logs (a volume in docker-compose.yml).
# There is no network at run time: Hugging Face libraries must never try the hub.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    LLMNEO_MODEL=/model \
    MLFLOW_TRACKING_URI=sqlite:////data/mlflow.db \
    UVICORN_HOST=0.0.0.0 \
    UVICORN_PORT=8000 \
    UVICORN_ACCESS_LOG=false
# Numeric, so that orchestrators enforcing runAsNonRoot can verify it without reading /etc/passwd.
USER ${APP_UID}:${APP_UID}
WORKDIR /home/llmneo
EXPOSE 8000
# No curl in the image: the interpreter that is already there does the probe, on the port uvicorn uses.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('UVICORN_PORT', '8000'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/health', timeout=4).status == 200 else 1)"]
# Equivalent to `uvicorn llmneo.serve.app:app --host 0.0.0.0 --port 8000 --no-access-log`: uvicorn reads
# UVICORN_HOST, UVICORN_PORT and UVICORN_ACCESS_LOG, so a host-network run can move the port (or turn the
# access log back on: it costs the event loop a line per request) without rewriting the command.
CMD ["uvicorn", "llmneo.serve.app:app"]
