#!/usr/bin/env bash
# `make dist-worker`: a self-contained tarball of the Rust worker that runs on a
# Linux machine with no Python:
#   embedfleet-worker-<version>-linux-<arch>/
#     bin/embedfleet-worker          the release binary
#     lib/libonnxruntime.so.1.x      ONNX Runtime, from the onnxruntime wheel
#     lib/libonnxruntime.so          -> the above (what ORT_DYLIB_PATH may name)
#     model/                         the ONNX export (fp32, int8, tokenizer, manifest)
#     README.md                      how to run it
# The binary finds lib/ and model/ next to itself (../lib, ../model), so the
# directory can live anywhere; /opt/embedfleet matches deploy/systemd.
# Output: $DIST_DIR (default dist/) holds the .tar.gz and its .sha256.
set -euo pipefail
cd "$(dirname "$0")/.."

EMBEDFLEET_HOME=${EMBEDFLEET_HOME:-$HOME/.cache/embedfleet}
VENV=${VENV:-$EMBEDFLEET_HOME/venv}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$EMBEDFLEET_HOME/target}
ONNX_DIR=${ONNX_DIR:-models/onnx/minilm}
DIST_DIR=${DIST_DIR:-dist}

log() { printf '[dist-worker] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

log "building embedfleet-worker (cargo build --release)"
cargo build --release -q --manifest-path rust/Cargo.toml -p embedfleet-worker
BIN="$CARGO_TARGET_DIR/release/embedfleet-worker"
[ -x "$BIN" ] || die "$BIN was not built"

[ -f "$ONNX_DIR/embedfleet_model.json" ] || die "$ONNX_DIR has no ONNX export: run \`make export-onnx\`"

find_ort() {
  if [ -n "${ORT_DYLIB_PATH:-}" ]; then
    echo "$ORT_DYLIB_PATH"
    return
  fi
  local capi
  capi=$("$VENV/bin/python" -c 'import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), "capi"))' 2>/dev/null) ||
    die "no onnxruntime wheel in $VENV: run \`make setup\` or set ORT_DYLIB_PATH"
  find "$capi" -maxdepth 1 -name 'libonnxruntime.so.*' | sort | tail -n 1
}
ORT=$(find_ort)
[ -f "$ORT" ] || die "ONNX Runtime library not found (looked for libonnxruntime.so.* in the onnxruntime wheel)"

VERSION=$("$BIN" --version | awk '{print $2}')
NAME="embedfleet-worker-$VERSION-linux-$(uname -m)"
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
ROOT="$STAGE/$NAME"
mkdir -p "$ROOT/bin" "$ROOT/lib" "$ROOT/model"

install -m 0755 "$BIN" "$ROOT/bin/embedfleet-worker"
install -m 0644 "$ORT" "$ROOT/lib/$(basename "$ORT")"
ln -s "$(basename "$ORT")" "$ROOT/lib/libonnxruntime.so"
(cd "$ONNX_DIR" && tar -cf - .) | (cd "$ROOT/model" && tar -xf -)
ORT_VERSION=$(basename "$ORT" | sed 's/^libonnxruntime\.so\.//')
MODEL_ID=$("$ROOT/bin/embedfleet-worker" --help >/dev/null && sed -n 's/.*"model_id": "\([^"]*\)".*/\1/p' "$ROOT/model/embedfleet_model.json")

cat > "$ROOT/README.md" <<EOF
# embedfleet-worker $VERSION ($(uname -m) Linux)

The embedfleet Rust worker: claims embedding jobs from the fleet's Redis,
embeds the texts with all-MiniLM-L6-v2 ($MODEL_ID) through ONNX Runtime
$ORT_VERSION, and writes each output parquet next to the others. No Python is
needed: the ONNX Runtime library is in \`lib/\`, the model in \`model/\`, and
the binary finds both next to itself.

    bin/embedfleet-worker --redis-url redis://HOST:6379/0 --data-root /mnt/data

- \`--data-root\` (or \`--input-root\` and \`--output-root\`): where this machine
  mounts the shared storage; jobs carry paths relative to it.
- \`--precision int8\`: the quantised model (mean cosine >= 0.99 to fp32).
  On a CPU with VNNI (AVX512-VNNI or AVX-VNNI) the worker runs the model's
  int8-weight variant where the export has one (exported on a VNNI CPU),
  else the portable uint8-weight one; BENCHMARKS.md in the repository has
  the measured speeds. \`fp32\` (default) matches sentence-transformers to
  cosine 0.9999.
- \`--threads N\`: ONNX Runtime threads (default: all cores); run one worker
  per machine, or per socket on large ones.
- \`--batch-tokens N\`: tokens per batch (default 2048 on a CPU, where
  smaller batches stay in cache, and 8192 on CUDA).
- \`--device cuda\` needs ONNX Runtime built with CUDA (the onnxruntime-gpu
  wheel's library in \`lib/\`); without it the worker refuses to start.
- \`--lanes gpu,default\`, \`--max-memory 4G\`, \`--job-timeout 600\`,
  \`--burst\`: see \`bin/embedfleet-worker --help\`.
- Environment: \`EMBEDFLEET_REDIS_URL\`, \`EMBEDFLEET_REDIS_PASSWORD\`,
  \`EMBEDFLEET_NAMESPACE\`, \`EMBEDFLEET_DATA_ROOT\`; \`ORT_DYLIB_PATH\` and
  \`EMBEDFLEET_MODEL_DIR\` override the bundled library and model.

Exit status: 0 after a clean stop (SIGTERM/SIGINT finish the current job;
a second signal exits at once), 2 for bad arguments or set-up, 3 when a job
ran past \`--job-timeout\` (a supervisor should restart the worker). A
systemd unit: deploy/systemd/embedfleet-worker-rust@.service in the
embedfleet repository (unpack this directory as /opt/embedfleet).
EOF

mkdir -p "$DIST_DIR"
OUT="$DIST_DIR/$NAME.tar.gz"
log "writing $OUT"
tar -C "$STAGE" -cf - "$NAME" | gzip -1 > "$OUT.part"
mv "$OUT.part" "$OUT"
(cd "$DIST_DIR" && sha256sum "$NAME.tar.gz" > "$NAME.tar.gz.sha256")
log "done: $OUT ($(du -h "$OUT" | cut -f1))"
echo "$OUT"
