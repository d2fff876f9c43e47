#!/bin/sh
# Start redis-server with redis.conf plus the secret part of the
# configuration read from stdin ("redis-server FILE [ARGS] -"), so the password is
# never on a command line, in `docker inspect`, in a file on disk, or in a log.
#
#   EMBEDFLEET_REDIS_PASSWORD_FILE  file holding the default user's password
#   EMBEDFLEET_REDIS_ACLFILE        or: an ACL file (deploy/redis/make-acl.sh)
#                                   with one user per role
# One of the two is required: this image refuses to run without auth.
set -eu

conf=${EMBEDFLEET_REDIS_CONF:-/etc/embedfleet/redis.conf}
pw_file=${EMBEDFLEET_REDIS_PASSWORD_FILE:-}
acl_file=${EMBEDFLEET_REDIS_ACLFILE:-}

die() { echo "embedfleet-redis: $*" >&2; exit 64; }

# Quote a value for redis.conf: inside "..." a backslash and a quote are
# escaped.
quote() { printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"; }

if [ -n "$acl_file" ]; then
  [ -r "$acl_file" ] || die "cannot read the ACL file $acl_file"
  secret_conf="aclfile $(quote "$acl_file")"
elif [ -n "$pw_file" ]; then
  [ -r "$pw_file" ] || die "cannot read the password file $pw_file"
  pw=$(cat "$pw_file")
  [ -n "$pw" ] || die "the password file $pw_file is empty"
  secret_conf="requirepass $(quote "$pw")"
  unset pw
else
  die "set EMBEDFLEET_REDIS_PASSWORD_FILE or EMBEDFLEET_REDIS_ACLFILE (no unauthenticated bus)"
fi

# A here-document, not a pipe: `exec` then replaces this shell, so redis-server
# is the process that gets the signals (PID 1 in the container; a supervisor's
# SIGTERM reaches it, and no orphan is left when this script is stopped).
# dash passes a small here-document through a pipe, never a file on disk.
exec redis-server "$conf" "$@" - <<EOF
$secret_conf
EOF
