#!/usr/bin/env bash
# Starts a throw-away PostgreSQL cluster on 127.0.0.1:$PGPORT (trust auth, loopback only) and
# prints its admin URL. Usage: start-postgres.sh DATA_DIR PORT
set -euo pipefail
data=$1
port=$2
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$bin/initdb" ] || { echo "PostgreSQL binaries not found under /usr/lib/postgresql" >&2; exit 1; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
rm -rf "$data"
mkdir -p "$data"
[ "$(id -u)" = 0 ] && chown postgres "$data"
as_pg "$bin/initdb" -D "$data" --auth=trust --username=postgres --encoding=UTF8 >/dev/null
as_pg "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
  -o "-p $port -c listen_addresses=127.0.0.1 -k $data -c fsync=off -c max_connections=200" start >/dev/null
echo "postgresql://postgres@127.0.0.1:$port/postgres"
