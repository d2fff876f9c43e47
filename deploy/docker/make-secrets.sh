#!/usr/bin/env bash
# Create the secrets docker-compose.yml mounts, once: a random Redis password
# and a random dashboard/API token, in $EMBEDFLEET_SECRETS_DIR (default
# deploy/secrets, git-ignored). Existing files are kept, so re-running is safe.
#
# The folder is 0700 (only its owner can reach the files on the host); the
# files are 0644 because Compose bind-mounts them as they are and the
# containers read them as their unprivileged users.
set -euo pipefail
dir=${EMBEDFLEET_SECRETS_DIR:-$(cd "$(dirname "$0")/.." && pwd)/secrets}

install -d -m 0700 "$dir"
for name in redis_password dashboard_token; do
  f=$dir/$name
  if [ -s "$f" ]; then
    echo "[make-secrets] keeping $f" >&2
    continue
  fi
  (umask 022; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$f.tmp")
  chmod 0644 "$f.tmp"
  mv "$f.tmp" "$f"
  echo "[make-secrets] wrote $f" >&2
done
