#!/usr/bin/env bash
# Build the project's images with its own Dockerfile and run them for real under Podman: the full image
# (then the compose stack) and the slim ONNX-only one (`--target slim`), the end-to-end check of issues 7
# and 11. Exits non-zero on any failure; prints each image's size, build time and time to healthy. Needs root (CI runs as root) and podman (`make system-deps`).
#
# Why the flags: on these machines crun fails (runc works), no container network works (host
# networking does), the default ulimits are refused, no registry is reachable (a local Debian base is
# built), and HTTPS goes through a proxy whose CA bundle must be mounted into the build.
#
# Environment (all optional):
#   PYTHON          the project's interpreter (default .venv/bin/python): makes the tiny model, checks answers
#   MODEL_DIR       model folder to serve (default outputs/demo/student, else a tiny random one)
#   BASE_IMAGE      base of the build (default localhost/debian:bookworm, built by make-base-image.sh)
#   LLMNEO_IMAGE    tag of the built image (default localhost/llmneo:latest, as docker-compose.yml)
#   SLIM_IMAGE      tag of the slim ONNX-only image, `--target slim` (default localhost/llmneo-slim:latest)
#   SLIM_MODEL_DIR  ONNX folder the slim image serves (default: the run's export/onnx-int8 beside
#                   MODEL_DIR, else an int8 export of the served model made here)
#   SKIP_COMPOSE=1  stop after the single-container checks
#   SKIP_FULL=1 / SKIP_SLIM=1  build and check only the other image (SKIP_FULL skips compose too)
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
BASE_IMAGE="${BASE_IMAGE:-localhost/debian:bookworm}"
export LLMNEO_IMAGE="${LLMNEO_IMAGE:-localhost/llmneo:latest}"
SLIM_IMAGE="${SLIM_IMAGE:-localhost/llmneo-slim:latest}"
WORK_DIR="deploy/.build"
CONTAINER="llmneo-ctest-$$"
PROJECT="llmneo-ctest"
podman_cmd=(podman --runtime runc)
run_flags=(--network host --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
compose_cmd=("$PYTHON" -m podman_compose --podman-args="--runtime runc" --in-pod false -p "$PROJECT"
             -f docker-compose.yml -f deploy/compose.podman.yml)
compose_started=0

log() { echo "container-test: $*"; }
fail() { echo "container-test: FAILED: $*" >&2; exit 1; }

cleanup() {
    local status=$?
    if [ "$status" -ne 0 ] && "${podman_cmd[@]}" container exists "$CONTAINER" 2>/dev/null; then
        echo "---- last logs of $CONTAINER ----" >&2
        "${podman_cmd[@]}" logs --tail 40 "$CONTAINER" >&2 || true
    fi
    "${podman_cmd[@]}" rm -f -t 5 "$CONTAINER" >/dev/null 2>&1 || true
    if [ "$compose_started" -eq 1 ]; then
        if [ "$status" -ne 0 ]; then
            "${compose_cmd[@]}" logs >&2 2>&1 | tail -n 60 >&2 || true
        fi
        "${compose_cmd[@]}" down -v >/dev/null 2>&1 || true
    fi
    exit "$status"
}
trap cleanup EXIT

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A wanted port when nothing listens there (host networking shares the host's ports), else a free one.
port_or_free() {
    if "$PYTHON" -c 'import socket, sys; s = socket.socket(); s.bind(("0.0.0.0", int(sys.argv[1])))' "$1" 2>/dev/null; then
        echo "$1"
    else
        free_port
    fi
}

# ---- 1. tools and base image ----
for tool in podman runc debootstrap; do  # installed by `make system-deps`, never here
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing: run \`make system-deps\` first (as root)"
done
bash deploy/make-base-image.sh "$BASE_IMAGE"

# ---- 2. the model folder, readable by the image's non-root user ----
model_src="${MODEL_DIR:-outputs/demo/student}"
rm -rf "$WORK_DIR/model"
mkdir -p "$WORK_DIR"
if [ -f "$model_src/llmneo_model.json" ]; then
    log "serving $model_src"
    cp -r "$model_src" "$WORK_DIR/model"
else
    [ -z "${MODEL_DIR:-}" ] || fail "MODEL_DIR=$MODEL_DIR is not an llmneo model folder (no llmneo_model.json)"
    log "no trained student at $model_src: serving a tiny random model"
    "$PYTHON" deploy/make_tiny_model.py "$WORK_DIR/model" >/dev/null
fi
# Weights are saved 0600 by their writer; the container's user (uid 10001) must be able to read them.
chmod -R a+rX "$WORK_DIR/model"
model_dir="$(cd "$WORK_DIR/model" && pwd)"

# ---- 3. build: CA bundle and the local torch wheel folder mounted, never copied into the image ----
pip_cert="$("$PYTHON" -m pip config list 2>/dev/null | sed -n "s/^[^ ]*\.cert='\(.*\)'$/\1/p" | head -n1)"
find_links="$("$PYTHON" -m pip config list 2>/dev/null | sed -n "s/^[^ ]*\.find-links='\(.*\)'$/\1/p" | head -n1)"
common_build_flags=(--format docker "${run_flags[@]}" --build-arg "BASE_IMAGE=$BASE_IMAGE")
if [ -n "$pip_cert" ] && [ -f "$pip_cert" ]; then
    # Not at its own path: on the Debian base, apt's ca-certificates would try to replace that file.
    common_build_flags+=(-v "$pip_cert:/run/build-ca.crt:ro" --build-arg PIP_CERT=/run/build-ca.crt)
fi
if [ -n "$find_links" ] && [ -d "$find_links" ]; then
    # The torch wheel on this disk replaces PyTorch's index, which is not reachable here.
    common_build_flags+=(-v "$find_links:$find_links:ro" --build-arg "PIP_FIND_LINKS=$find_links" --build-arg TORCH_INDEX_URL=)
fi

# build_image TARGET TAG: sets build_s and size_bytes.
build_image() {
    local target="$1" tag="$2" start
    log "building $tag (target $target) on $BASE_IMAGE"
    start=$(date +%s)
    "${podman_cmd[@]}" build "${common_build_flags[@]}" --target "$target" -t "$tag" . > "$WORK_DIR/build-$target.log" 2>&1 \
        || { tail -n 40 "$WORK_DIR/build-$target.log" >&2; fail "podman build --target $target (log: $WORK_DIR/build-$target.log)"; }
    build_s=$(( $(date +%s) - start ))
    size_bytes="$("${podman_cmd[@]}" image inspect --format '{{.Size}}' "$tag")"
    log "built $tag in ${build_s} s; image size $(( size_bytes / 1000000 )) MB"
}

# ---- 4. the image's promises: non-root user, a health check, no compilers or pip caches ----
check_promises() {
    local tag="$1" user health
    user="$("${podman_cmd[@]}" image inspect --format '{{.Config.User}}' "$tag")"
    case "$user" in ""|root|0|0:*|root:*) fail "$tag runs as '${user:-root}', not a non-root user" ;; esac
    health="$("${podman_cmd[@]}" image inspect --format '{{.Config.Healthcheck}}' "$tag")"
    case "$health" in *health*) ;; *) fail "$tag has no HEALTHCHECK on /health (got: $health)" ;; esac
    "${podman_cmd[@]}" run --rm "${run_flags[@]}" --entrypoint sh "$tag" -c '
        test "$(id -u)" != 0 || { echo "runs as root"; exit 1; }
        for tool in gcc cc g++ make; do command -v "$tool" && { echo "build tool $tool present"; exit 1; }; done
        for cache in /root/.cache/pip "$HOME/.cache/pip" /build; do test ! -e "$cache" || { echo "$cache present"; exit 1; }; done
        exit 0' || fail "$tag holds build leftovers or runs as root"
    log "$tag runs as uid $user, has a HEALTHCHECK, holds no compiler, pip cache or build folder"
}

# ---- 5. one container: start, wait for its own health check, call it from outside ----
# run_and_check TAG MODEL_DIR [BACKEND]: sets healthy_ms (podman run to the first passing HEALTHCHECK).
run_and_check() {
    local tag="$1" folder="$2" backend="${3:-}" api_port run_start_ns healthy=0
    api_port="$(free_port)"
    run_start_ns=$(date +%s%N)
    "${podman_cmd[@]}" run -d --name "$CONTAINER" "${run_flags[@]}" -e "UVICORN_PORT=$api_port" \
        -v "$folder:/model:ro" "$tag" >/dev/null
    for _ in $(seq 1 900); do  # every 0.2 s for up to 180 s
        if "${podman_cmd[@]}" healthcheck run "$CONTAINER" >/dev/null 2>&1; then healthy=1; break; fi
        [ "$("${podman_cmd[@]}" inspect --format '{{.State.Running}}' "$CONTAINER")" = true ] \
            || fail "container $CONTAINER ($tag) exited before it was healthy"
        sleep 0.2
    done
    [ "$healthy" -eq 1 ] || fail "container of $tag not healthy within 180 s"
    healthy_ms=$(( ($(date +%s%N) - run_start_ns) / 1000000 ))
    log "container of $tag healthy (its HEALTHCHECK passed) $healthy_ms ms after podman run"
    "$PYTHON" deploy/check_endpoints.py api "http://127.0.0.1:$api_port" "$folder" --timeout 30 \
        ${backend:+--backend "$backend"}
    "${podman_cmd[@]}" rm -f -t 10 "$CONTAINER" >/dev/null
    log "single container of $tag: ok"
}

summaries=()
if [ "${SKIP_FULL:-0}" != 1 ]; then
    build_image runtime "$LLMNEO_IMAGE"
    check_promises "$LLMNEO_IMAGE"
    run_and_check "$LLMNEO_IMAGE" "$model_dir"
    summaries+=("SUMMARY image=$LLMNEO_IMAGE size_mb=$(( size_bytes / 1000000 )) build_s=$build_s time_to_healthy_ms=$healthy_ms")
fi

# ---- 5b. the slim ONNX-only image, serving an int8 export of the same model ----
if [ "${SKIP_SLIM:-0}" != 1 ]; then
    slim_src="${SLIM_MODEL_DIR:-$(dirname "$model_src")/export/onnx-int8}"
    rm -rf "$WORK_DIR/model-onnx"
    if [ -f "$slim_src/llmneo_model.json" ]; then
        log "slim image serves $slim_src"
        cp -r "$slim_src" "$WORK_DIR/model-onnx"
    else
        [ -z "${SLIM_MODEL_DIR:-}" ] || fail "SLIM_MODEL_DIR=$SLIM_MODEL_DIR is not an llmneo model folder"
        log "no ONNX export at $slim_src: exporting $model_dir to int8 for the slim image"
        # A tiny random model's labels sit near ties, where int8 may flip them: keep its export whatever
        # the agreement; the check below compares the container with the host on this same folder.
        min_agreement=()
        [ -f "$model_src/llmneo_model.json" ] || min_agreement=(--min-agreement 0)
        "$PYTHON" -m llmneo.cli export "$model_dir" --quantize int8 --max-examples 200 "${min_agreement[@]}" \
            --out "$WORK_DIR/model-onnx" > "$WORK_DIR/export.log" 2>&1 \
            || { tail -n 20 "$WORK_DIR/export.log" >&2; fail "llmneo export for the slim image"; }
    fi
    chmod -R a+rX "$WORK_DIR/model-onnx"
    onnx_dir="$(cd "$WORK_DIR/model-onnx" && pwd)"
    build_image slim "$SLIM_IMAGE"
    check_promises "$SLIM_IMAGE"
    "${podman_cmd[@]}" run --rm "${run_flags[@]}" --entrypoint python "$SLIM_IMAGE" -c '
import importlib.util, sys
present = [m for m in ("torch", "transformers", "mlflow", "scipy", "pandas") if importlib.util.find_spec(m)]
sys.exit(f"installed in the slim image: {present}" if present else 0)' || fail "the slim image carries the training stack"
    log "$SLIM_IMAGE holds no torch, transformers, mlflow, scipy or pandas"
    run_and_check "$SLIM_IMAGE" "$onnx_dir" onnx
    summaries+=("SUMMARY image=$SLIM_IMAGE size_mb=$(( size_bytes / 1000000 )) build_s=$build_s time_to_healthy_ms=$healthy_ms")
fi

# ---- 6. the compose stack: API and MLflow UI sharing the tracking store ----
if [ "${SKIP_COMPOSE:-0}" = 1 ] || [ "${SKIP_FULL:-0}" = 1 ]; then
    log "SKIP_COMPOSE=1 or SKIP_FULL=1: compose stack not started"
else
    export LLMNEO_API_PORT MLFLOW_UI_PORT LLMNEO_MODEL_DIR="$model_dir"
    LLMNEO_API_PORT="$(port_or_free 8000)"
    MLFLOW_UI_PORT="$(port_or_free 5001)"
    log "compose: API on $LLMNEO_API_PORT, MLflow UI on $MLFLOW_UI_PORT (podman-compose)"
    "${compose_cmd[@]}" down -v >/dev/null 2>&1 || true
    compose_started=1
    "${compose_cmd[@]}" up -d --no-build > "$WORK_DIR/compose.log" 2>&1 \
        || { tail -n 40 "$WORK_DIR/compose.log" >&2; fail "podman-compose up"; }
    "$PYTHON" deploy/check_endpoints.py mlflow "http://127.0.0.1:$MLFLOW_UI_PORT" --timeout 180
    "$PYTHON" deploy/check_endpoints.py api "http://127.0.0.1:$LLMNEO_API_PORT" "$model_dir" --timeout 180
    # A graceful stop makes the API record its serving session in the store the UI reads.
    "${podman_cmd[@]}" stop -t 60 "${PROJECT}_api_1" >/dev/null
    "$PYTHON" deploy/check_endpoints.py session "http://127.0.0.1:$MLFLOW_UI_PORT" llmneo-serving --timeout 60
    log "compose stack: ok"
fi

for summary in "${summaries[@]}"; do log "$summary"; done
