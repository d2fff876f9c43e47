#!/usr/bin/env bash
# Make the Debian bookworm base image every embedfleet image builds FROM,
# without any container registry: debootstrap a minimal root filesystem from
# the Debian mirror this machine already uses, tar it, `docker import` it.
#
#   bash deploy/docker/build-base.sh            # embedfleet/base:bookworm
#   BASE_TAG=my/base:bookworm bash deploy/docker/build-base.sh
#
# Idempotent and cached: the rootfs tarball is kept under
# $EMBEDFLEET_HOME/docker/ keyed by BASE_KEY (bump BASE_REVISION to rebuild),
# and the image carries that key as a label, so a second run does nothing and
# a fresh Docker Engine on the same machine only re-imports the tarball.
#
# Where a registry IS reachable, skip this script: build the images with
#   --build-arg BASE_IMAGE=debian:bookworm-slim
# (see docs/deploy.md). debootstrap needs root (it chroots and mknods).
set -euo pipefail

BASE_TAG=${BASE_TAG:-embedfleet/base:bookworm}
SUITE=bookworm
BASE_REVISION=2
EMBEDFLEET_HOME=${EMBEDFLEET_HOME:-$HOME/.cache/embedfleet}
CACHE_DIR=$EMBEDFLEET_HOME/docker
# Packages added to debootstrap's minbase: TLS roots (rediss://, HTTPS).
# PID 1 signal forwarding is compose's `init: true`, not a package here.
INCLUDE=ca-certificates

log() { printf '[build-base] %s\n' "$*" >&2; }

# The first URI in this machine's apt sources (deb822 or one-line format)
# whose path ends in /$1: "debian" for the main archive, "debian-security".
detect_uri() {
  local f uri
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    uri=$(sed -nE \
      -e "s#^URIs:[[:space:]]*(https?://[^[:space:]]*/$1)/?[[:space:]]*\$#\\1#p" \
      -e "s#^deb[[:space:]]+(\\[[^]]*\\][[:space:]]+)?(https?://[^[:space:]]*/$1)/?[[:space:]]+.*#\\2#p" \
      "$f" | head -n1)
    if [ -n "$uri" ]; then printf '%s\n' "$uri"; return 0; fi
  done
  return 0
}

MIRROR=${DEBIAN_MIRROR:-$(detect_uri debian)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
# Optional: security updates, only where the machine's sources name them.
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR-$(detect_uri debian-security)}
BASE_KEY=$(printf '%s|%s|%s|%s\n' "$SUITE" "$BASE_REVISION" "$INCLUDE" "$MIRROR $SECURITY_MIRROR" | sha256sum | cut -c1-12)
TARBALL=$CACHE_DIR/rootfs-$SUITE-$BASE_KEY.tar.gz

image_key() {
  docker image inspect --format '{{ index .Config.Labels "org.embedfleet.base-key" }}' "$BASE_TAG" 2>/dev/null || true
}

# Trim what a container never needs, the way the official -slim images do,
# and point apt at the same mirror for the image builds that follow.
slim_rootfs() {
  local root=$1
  cat >"$root/etc/dpkg/dpkg.cfg.d/embedfleet-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT::Install-Recommends "false";
Acquire::GzipIndexes "true";
EOF
  printf 'deb %s %s main\ndeb %s %s-updates main\n' "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" >"$root/etc/apt/sources.list"
  if [ -n "$SECURITY_MIRROR" ]; then
    printf 'deb %s %s-security main\n' "$SECURITY_MIRROR" "$SUITE" >>"$root/etc/apt/sources.list"
  fi
  rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/log/*.log "$root"/tmp/* "$root"/root/.cache
  : >"$root/etc/machine-id"
}

make_tarball() {
  command -v debootstrap >/dev/null || { log "debootstrap is missing: apt-get install debootstrap"; exit 1; }
  [ "$(id -u)" -eq 0 ] || { log "debootstrap needs root (run with sudo)"; exit 1; }
  local root
  root=$(mktemp -d "${TMPDIR:-/tmp}/embedfleet-rootfs.XXXXXX")
  trap 'rm -rf "$root"' EXIT
  log "debootstrap --variant=minbase $SUITE from $MIRROR (a few minutes, once)"
  debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$root" "$MIRROR" >"$root.log" 2>&1 || {
    tail -n 30 "$root.log" >&2; rm -f "$root.log"; exit 1; }
  rm -f "$root.log"
  slim_rootfs "$root"
  mkdir -p "$CACHE_DIR"
  tar --numeric-owner -C "$root" -czf "$TARBALL.part" .
  mv "$TARBALL.part" "$TARBALL"
  # Older revisions are dead weight (~40 MB each).
  find "$CACHE_DIR" -maxdepth 1 -name "rootfs-$SUITE-*.tar.gz" ! -name "${TARBALL##*/}" -delete
  rm -rf "$root"
  trap - EXIT
}

main() {
  if [ "$(image_key)" = "$BASE_KEY" ]; then
    log "$BASE_TAG is up to date (key $BASE_KEY)"
    return 0
  fi
  [ -f "$TARBALL" ] || make_tarball
  log "importing $TARBALL as $BASE_TAG"
  local old_id
  old_id=$(docker image inspect --format '{{.Id}}' "$BASE_TAG" 2>/dev/null || true)
  docker import \
    --change "LABEL org.embedfleet.base-key=$BASE_KEY" \
    --change "LABEL org.opencontainers.image.title=embedfleet-base" \
    --change "ENV LANG=C.UTF-8" \
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change 'CMD ["/bin/bash"]' \
    "$TARBALL" "$BASE_TAG" >/dev/null
  [ "$(image_key)" = "$BASE_KEY" ] || { log "import did not produce $BASE_TAG"; exit 1; }
  # The replaced revision, unless images built from it still need it.
  [ -z "$old_id" ] || docker rmi "$old_id" >/dev/null 2>&1 || true
  log "built $BASE_TAG (key $BASE_KEY)"
}

main "$@"
