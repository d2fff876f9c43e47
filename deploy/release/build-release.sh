#!/usr/bin/env bash
# Release build of the Rust worker for one target, packaged with the ONNX
# Runtime library of that platform (from the pinned onnxruntime wheel on
# PyPI) and the exported ONNX model:
#
#   bash deploy/release/build-release.sh                                   # this machine's target
#   bash deploy/release/build-release.sh --target aarch64-unknown-linux-gnu
#   bash deploy/release/build-release.sh --target aarch64-apple-darwin    # on a Mac only
#
# Output: dist/embedfleet-worker-<version>-<target>.tar.gz (+ .sha256), laid
# out as /opt/embedfleet expects it (the systemd unit's paths):
#   bin/embedfleet-worker  lib/libonnxruntime.so (.dylib on macOS)  model/
#   systemd/embedfleet-worker-rust@.service  systemd/embedfleet.env.example
#   launchd/org.embedfleet.worker-python.plist  README
# Install: tar -C /opt/embedfleet --strip-components=1 -xzf <tarball>
#
# Linux aarch64 is cross-compiled here with Debian's gcc-aarch64-linux-gnu
# (installed when missing and this runs as root) and rustup's
# aarch64-unknown-linux-gnu standard library. macOS targets need Apple's SDK
# and linker, which exist only on a Mac: run this there (docs/deploy.md).
set -euo pipefail
cd "$(dirname "$0")/../.."

EMBEDFLEET_HOME=${EMBEDFLEET_HOME:-$HOME/.cache/embedfleet}
VENV=${VENV:-$EMBEDFLEET_HOME/venv}
PY=$VENV/bin/python
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$EMBEDFLEET_HOME/target}
ONNX_DIR=${ONNX_DIR:-models/onnx/minilm}
OUT_DIR=dist
TARGET=

# The ONNX export the Rust worker loads (what `deploy/setup.sh onnx` makes).
export_onnx() {
  if [ ! -f "$ONNX_DIR/embedfleet_model.json" ]; then
    log "exporting the model to ONNX ($ONNX_DIR)"
    HF_HUB_OFFLINE=1 "$PY" -m models.export_onnx --output "$ONNX_DIR" >&2
  fi
  [ -f "$ONNX_DIR/embedfleet_model.json" ] || die "no ONNX export in $ONNX_DIR"
}

log() { printf '[build-release] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

while [ $# -gt 0 ]; do
  case $1 in
    --target) TARGET=$2; shift 2 ;;
    --out) OUT_DIR=$2; shift 2 ;;
    *) die "usage: $0 [--target TRIPLE] [--out DIR]" ;;
  esac
done

HOST=$(rustc -vV | sed -n 's/^host: //p')
TARGET=${TARGET:-$HOST}
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' rust/Cargo.toml)
ORT_VERSION=$(sed -n 's/^onnxruntime==//p' requirements.txt)
[ -n "$VERSION" ] && [ -n "$ORT_VERSION" ] || die "cannot read the versions from rust/Cargo.toml and requirements.txt"

# The onnxruntime wheel platforms and library name of each supported target.
case $TARGET in
  x86_64-unknown-linux-gnu) PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux2014_x86_64); LIB=libonnxruntime.so ;;
  aarch64-unknown-linux-gnu) PLATFORMS=(manylinux_2_28_aarch64 manylinux_2_27_aarch64 manylinux2014_aarch64); LIB=libonnxruntime.so ;;
  aarch64-apple-darwin) PLATFORMS=(macosx_14_0_arm64 macosx_13_0_arm64 macosx_11_0_arm64); LIB=libonnxruntime.dylib ;;
  x86_64-apple-darwin) PLATFORMS=(macosx_13_0_x86_64 macosx_11_0_x86_64 macosx_10_15_x86_64); LIB=libonnxruntime.dylib ;;
  *) die "unsupported target $TARGET (x86_64/aarch64-unknown-linux-gnu, x86_64/aarch64-apple-darwin)" ;;
esac

cross_env() {
  [ "$TARGET" = "$HOST" ] && return 0
  case $TARGET in
    *-apple-darwin)
      [ "$(uname -s)" = Darwin ] || die "$TARGET needs Apple's SDK and linker: build it on a Mac (docs/deploy.md)" ;;
    aarch64-unknown-linux-gnu)
      if ! command -v aarch64-linux-gnu-gcc >/dev/null || [ ! -f /usr/aarch64-linux-gnu/include/stdio.h ]; then
        [ "$(id -u)" -eq 0 ] || die "install Debian's gcc-aarch64-linux-gnu and libc6-dev-arm64-cross (cross C compiler, linker, glibc headers) first"
        log "installing gcc-aarch64-linux-gnu libc6-dev-arm64-cross (Debian)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross >/dev/null
      fi
      export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
      export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
      export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar ;;
  esac
  if ! rustup target list --installed | grep -qx "$TARGET"; then
    log "rustup target add $TARGET"
    rustup target add "$TARGET" >/dev/null || die "rustup could not add $TARGET (its standard library is downloaded from the Rust project's servers)"
  fi
}

build_binary() {
  local args=(build --release -q --manifest-path rust/Cargo.toml -p embedfleet-worker)
  # The host build shares target/release with `make worker-rust`.
  [ "$TARGET" = "$HOST" ] || args+=(--target "$TARGET")
  log "cargo ${args[*]}"
  cargo "${args[@]}"
  if [ "$TARGET" = "$HOST" ]; then BIN=$CARGO_TARGET_DIR/release/embedfleet-worker
  else BIN=$CARGO_TARGET_DIR/$TARGET/release/embedfleet-worker; fi
  [ -x "$BIN" ] || die "no binary at $BIN"
}

# The ONNX Runtime library of the target, from the pinned onnxruntime wheel
# (cached per version and target).
fetch_ort() {
  local cache=$EMBEDFLEET_HOME/release/ort-$ORT_VERSION-$TARGET p plat=()
  ORT_LIB=$cache/$LIB
  [ -f "$ORT_LIB" ] && return 0
  mkdir -p "$cache/wheel"
  for p in "${PLATFORMS[@]}"; do plat+=(--platform "$p"); done
  log "onnxruntime==$ORT_VERSION for $TARGET from PyPI"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 "${plat[@]}" \
    -d "$cache/wheel" "onnxruntime==$ORT_VERSION"
  "$PY" - "$cache/wheel" "$ORT_LIB" <<'EOF'
import pathlib, re, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("onnxruntime-*.whl"))
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if re.search(r"capi/libonnxruntime[.0-9]*\.(so[.0-9]*|dylib)$", n)]
    if not names:
        sys.exit(f"{wheel.name} holds no libonnxruntime")
    pathlib.Path(sys.argv[2]).write_bytes(z.read(max(names, key=len)))
EOF
}

package() {
  local name=embedfleet-worker-$VERSION-$TARGET stage
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' RETURN
  local root=$stage/$name
  mkdir -p "$root/bin" "$root/lib" "$root/systemd" "$root/launchd" "$OUT_DIR"
  install -m 0755 "$BIN" "$root/bin/embedfleet-worker"
  install -m 0644 "$ORT_LIB" "$root/lib/$LIB"
  cp -r "$ONNX_DIR" "$root/model"
  install -m 0644 deploy/systemd/embedfleet-worker-rust@.service deploy/systemd/embedfleet.env.example "$root/systemd/"
  install -m 0644 deploy/launchd/org.embedfleet.worker-python.plist "$root/launchd/"
  cat >"$root/README" <<EOF
embedfleet-worker $VERSION for $TARGET, with ONNX Runtime $ORT_VERSION and the
exported all-MiniLM-L6-v2 model. Install:

  sudo mkdir -p /opt/embedfleet
  sudo tar -C /opt/embedfleet --strip-components=1 -xzf $name.tar.gz
  sudo useradd --system --home /var/lib/embedfleet embedfleet
  sudo install -D -m 0600 /opt/embedfleet/systemd/embedfleet.env.example /etc/embedfleet/embedfleet.env  # then edit
  sudo cp /opt/embedfleet/systemd/embedfleet-worker-rust@.service /etc/systemd/system/
  sudo systemctl enable --now embedfleet-worker-rust@0

By hand: ORT_DYLIB_PATH=/opt/embedfleet/lib/$LIB EMBEDFLEET_MODEL_DIR=/opt/embedfleet/model \\
  /opt/embedfleet/bin/embedfleet-worker --redis-url redis://... --data-root /mnt/data
Operations: docs/operations.md in the source tree.
EOF
  # Reproducible archive: fixed owner and mtime, sorted names.
  local mtime; mtime=$(git log -1 --format=%cI 2>/dev/null || echo 1980-01-01T00:00:00Z)
  tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner --mtime="$mtime" -cf - "$name" \
    | gzip -n >"$OUT_DIR/$name.tar.gz"
  (cd "$OUT_DIR" && sha256sum "$name.tar.gz" >"$name.tar.gz.sha256")
  log "wrote $OUT_DIR/$name.tar.gz"
  echo "$OUT_DIR/$name.tar.gz"
}

cross_env
export_onnx
build_binary
fetch_ort
package
