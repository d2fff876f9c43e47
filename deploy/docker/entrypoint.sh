#!/bin/sh
# Entry point of the manager and worker images: turn secret files into the
# environment variables embedfleet reads (VAR_FILE=/run/secrets/x -> VAR),
# then run the command. The values never reach `docker inspect` or a log.
set -eu

load_secret() {
  file_var="$1_FILE"
  eval "path=\${$file_var:-}"
  [ -n "$path" ] || return 0
  if [ ! -r "$path" ]; then
    echo "embedfleet-entrypoint: cannot read $file_var=$path" >&2
    exit 64
  fi
  value=$(cat "$path")
  export "$1=$value"
  unset "$file_var" value
}

load_secret EMBEDFLEET_REDIS_PASSWORD
load_secret EMBEDFLEET_DASHBOARD_TOKEN

exec "$@"
