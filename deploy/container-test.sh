#!/usr/bin/env bash
# Build the project's image with its own Dockerfile and run it for real under Podman, then the compose
# stack: the end-to-end check of issue 7. Exits non-zero on any failure; prints the image size, the
# build time and the time to healthy. Needs root (CI runs as root) and podman (`make system-deps`).
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
#   SKIP_COMPOSE=1  stop after the single-container check
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
BASE_IMAGE="${BASE_IMAGE:-localhost/debian:bookworm}"
export LLMNEO_IMAGE="${LLMNEO_IMAGE:-localhost/llmneo:latest}"
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
build_flags=(--format docker "${run_flags[@]}" --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$LLMNEO_IMAGE")
if [ -n "$pip_cert" ] && [ -f "$pip_cert" ]; then
    # Not at its own path: on the Debian base, apt's ca-certificates would try to replace that file.
    build_flags+=(-v "$pip_cert:/run/build-ca.crt:ro" --build-arg PIP_CERT=/run/build-ca.crt)
fi
if [ -n "$find_links" ] && [ -d "$find_links" ]; then
    # The torch wheel on this disk replaces PyTorch's index, which is not reachable here.
    build_flags+=(-v "$find_links:$find_links:ro" --build-arg "PIP_FIND_LINKS=$find_links" --build-arg TORCH_INDEX_URL=)
fi
log "building $LLMNEO_IMAGE on $BASE_IMAGE"
build_start=$(date +%s)
"${podman_cmd[@]}" build "${build_flags[@]}" . > "$WORK_DIR/build.log" 2>&1 \
    || { tail -n 40 "$WORK_DIR/build.log" >&2; fail "podman build (full log: $WORK_DIR/build.log)"; }
build_s=$(( $(date +%s) - build_start ))
size_bytes="$("${podman_cmd[@]}" image inspect --format '{{.Size}}' "$LLMNEO_IMAGE")"
log "built in ${build_s} s; image size $(( size_bytes / 1000000 )) MB"

# ---- 4. the image's promises: non-root user, a health check, no compilers or pip caches ----
user="$("${podman_cmd[@]}" image inspect --format '{{.Config.User}}' "$LLMNEO_IMAGE")"
case "$user" in ""|root|0|0:*|root:*) fail "image runs as '${user:-root}', not a non-root user" ;; esac
health="$("${podman_cmd[@]}" image inspect --format '{{.Config.Healthcheck}}' "$LLMNEO_IMAGE")"
case "$health" in *health*) ;; *) fail "image has no HEALTHCHECK on /health (got: $health)" ;; esac
"${podman_cmd[@]}" run --rm "${run_flags[@]}" --entrypoint sh "$LLMNEO_IMAGE" -c '
    test "$(id -u)" != 0 || { echo "runs as root"; exit 1; }
    for tool in gcc cc g++ make; do command -v "$tool" && { echo "build tool $tool present"; exit 1; }; done
    for cache in /root/.cache/pip "$HOME/.cache/pip" /build; do test ! -e "$cache" || { echo "$cache present"; exit 1; }; done
    exit 0' || fail "the runtime stage holds build leftovers or runs as root"
log "image runs as uid $user, has a HEALTHCHECK, holds no compiler, pip cache or build folder"

# ---- 5. one container: start, wait for its own health check, call it from outside ----
api_port="$(free_port)"
run_start_ns=$(date +%s%N)
"${podman_cmd[@]}" run -d --name "$CONTAINER" "${run_flags[@]}" -e "UVICORN_PORT=$api_port" \
    -v "$model_dir:/model:ro" "$LLMNEO_IMAGE" >/dev/null
healthy=0
for _ in $(seq 1 180); do
    if "${podman_cmd[@]}" healthcheck run "$CONTAINER" >/dev/null 2>&1; then healthy=1; break; fi
    [ "$("${podman_cmd[@]}" inspect --format '{{.State.Running}}' "$CONTAINER")" = true ] \
        || fail "container $CONTAINER exited before it was healthy"
    sleep 1
done
[ "$healthy" -eq 1 ] || fail "container not healthy within 180 s"
healthy_ms=$(( ($(date +%s%N) - run_start_ns) / 1000000 ))
log "container healthy (its HEALTHCHECK passed) $healthy_ms ms after podman run"
"$PYTHON" deploy/check_endpoints.py api "http://127.0.0.1:$api_port" "$model_dir" --timeout 30
"${podman_cmd[@]}" rm -f -t 10 "$CONTAINER" >/dev/null
log "single container: ok"

# ---- 6. the compose stack: API and MLflow UI sharing the tracking store ----
if [ "${SKIP_COMPOSE:-0}" = 1 ]; then
    log "SKIP_COMPOSE=1: compose stack not started"
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

log "SUMMARY image=$LLMNEO_IMAGE size_mb=$(( size_bytes / 1000000 )) build_s=$build_s" \
    "time_to_healthy_ms=$healthy_ms"
