#!/usr/bin/env bash
# Write a Redis ACL file with one user per embedfleet role, each allowed only
# the commands and keys that role uses (docs/operations.md, "Securing Redis"):
#
#   bash deploy/redis/make-acl.sh [--namespace NS] [--secrets DIR] [--out FILE]
#
#   default  off: no anonymous access at all
#   manager  scans, enqueues, reconciles, trims, journals, pause/drain/requeue
#   worker   claims, renews, completes, retries, dead-letters, heartbeats;
#            reads but cannot change the controls and the lane set
#   admin    the operator's own login: everything (ACL, BGREWRITEAOF, ...)
#
# Passwords come from DIR/redis_<role>_password (created, random, when
# missing) and are stored in the ACL file only as SHA-256 hashes. Start Redis
# with `aclfile FILE` (the embedfleet/redis image: EMBEDFLEET_REDIS_ACLFILE);
# give each machine the URL of its role: redis://worker:<password>@host:6379/0.
set -euo pipefail

NS=embedfleet
SECRETS=$(cd "$(dirname "$0")/.." && pwd)/secrets
OUT=
while [ $# -gt 0 ]; do
  case $1 in
    --namespace) NS=$2; shift 2 ;;
    --secrets) SECRETS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) echo "usage: $0 [--namespace NS] [--secrets DIR] [--out FILE]" >&2; exit 2 ;;
  esac
done
OUT=${OUT:-$SECRETS/users.acl}
[[ $NS =~ ^[A-Za-z0-9_.-]+$ ]] || { echo "make-acl: namespace must be [A-Za-z0-9_.-]+" >&2; exit 2; }

# Connection set-up every client library sends (Redis 7.0 has no CLIENT
# SETINFO; on 7.2+ add +client|setinfo, which redis-py sends and ignores if refused).
CONNECT="+hello +auth +ping +select +echo +client|setname +client|id +client|getname"
# Running the shared Lua scripts (bus/lua): commands called inside a script
# are checked against the caller's ACL too, so they are listed below as well.
SCRIPTS="+evalsha +eval +evalsha_ro +eval_ro +script|load +script|exists"
WORKER_CMDS="$CONNECT $SCRIPTS +time
  +xreadgroup +xautoclaim +xclaim +xpending +xack +xadd +xrange +xlen +xinfo|groups +xinfo|stream +xgroup|create
  +hget +hgetall +hmget +hset +hdel +hincrby +hexists
  +zadd +zrangebyscore +zrem +zcard
  +smembers +sismember +exists +type"
# reconcile (after a Redis crash) takes a lock with SET NX PX and requeues in MULTI/EXEC.
MANAGER_CMDS="$WORKER_CMDS
  +sadd +srem +xread +xrevrange +xtrim +xdel +xinfo|consumers +xgroup|delconsumer +xgroup|setid
  +hlen +hscan +hkeys +hvals +del +unlink +scan +expire +pexpire +ttl +pttl +info +memory|usage +dbsize
  +set +get +multi +exec +zrange"

# Worker keys, read-write; the controls and the lane set, read-only.
WORKER_KEYS="~$NS:q:* ~$NS:delayed:* ~$NS:state ~$NS:stats ~$NS:errors ~$NS:dead
  ~$NS:workers ~$NS:workers:seen ~$NS:events %R~$NS:control %R~$NS:lanes"
MANAGER_KEYS="~$NS:*"
# The reuse store (docs/reuse.md): workers read and write its string keys, and
# only string commands and the reuse scripts on them (a Redis 7 selector), so
# no worker can turn a bus key into a string.
REUSE_SELECTOR="(~$NS:r:* +get +mget +set +del +exists +eval +evalsha)"

password_hash() {
  local f=$SECRETS/redis_$1_password
  if [ ! -s "$f" ]; then
    (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$f.tmp")
    chmod 0600 "$f.tmp"
    mv "$f.tmp" "$f"
    echo "[make-acl] wrote $f" >&2
  fi
  printf '%s' "$(cat "$f")" | sha256sum | cut -c1-64
}

# one_line TEXT: TEXT with its newlines and runs of blanks made single spaces
# (no word splitting or globbing: the key patterns contain '*').
one_line() { tr -s ' \n' '  ' <<<"$1" | sed -e 's/^ //' -e 's/ $//'; }

user_line() {  # ROLE KEYS COMMANDS
  printf 'user %s on #%s resetkeys %s resetchannels -@all %s\n' \
    "$1" "$(password_hash "$1")" "$(one_line "$2")" "$(one_line "$3")"
}

install -d -m 0700 "$SECRETS"
{
  echo "user default off resetkeys resetchannels -@all"
  user_line manager "$MANAGER_KEYS" "$MANAGER_CMDS"
  user_line worker "$WORKER_KEYS" "$WORKER_CMDS $REUSE_SELECTOR"
  printf 'user admin on #%s ~* &* +@all\n' "$(password_hash admin)"
} >"$OUT.tmp"
chmod 0640 "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "[make-acl] wrote $OUT (users: manager, worker, admin; default off)" >&2
