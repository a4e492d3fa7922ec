#!/usr/bin/env bash
# A PostgreSQL server for the baseline benchmark (`dtenge bench --baseline postgres`):
# installs Debian's postgresql when missing, starts a private cluster under target/postgres
# on 127.0.0.1:54329 (trust authentication, loopback only) when it is not running, and prints
# its connection URL. `scripts/postgres.sh stop` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
port=54329
dir="$(pwd)/target/postgres"

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
bin=$(find_bin)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  echo "installing PostgreSQL (Debian package postgresql)" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  bin=$(find_bin)
fi

# PostgreSQL refuses to run as root: run it as the postgres user when we are root.
as_owner() {
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi
}

if [ "${1:-}" = stop ]; then
  as_owner "'$bin/pg_ctl' -D '$dir' stop -m fast" >&2 || true
  exit 0
fi

if ! "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; then
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir" && chmod 700 "$dir"
  if [ ! -f "$dir/PG_VERSION" ]; then
    as_owner "'$bin/initdb' -D '$dir' -A trust -U postgres" >/dev/null
  fi
  as_owner "'$bin/pg_ctl' -D '$dir' -l '$dir/server.log' -w start \
    -o \"-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=/tmp -c max_connections=200\"" >&2
fi
echo "postgresql://postgres@127.0.0.1:$port/postgres"
