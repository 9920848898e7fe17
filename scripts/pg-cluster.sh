#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests: start | stop.
#
#   eval "$(scripts/pg-cluster.sh start)"   # exports SHIPYARD_TEST_PG_URI, SHIPYARD_PG_DIR
#   scripts/pg-cluster.sh stop "$SHIPYARD_PG_DIR"
#
# Uses Debian's postgresql package (installed with apt-get if missing). The cluster lives in a
# fresh temporary directory, listens on a free loopback port with trust authentication, and is
# deleted by `stop`. As root, the server runs as the `postgres` user (initdb refuses root).
set -euo pipefail

pg_bin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
  done
  return 1
}

ensure_postgres() {
  if ! pg_bin >/dev/null; then
    echo "installing PostgreSQL (Debian package)..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
  fi
}

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

case "${1:-}" in
  start)
    ensure_postgres
    bin=$(pg_bin)
    dir=$(mktemp -d /tmp/shipyard-pg.XXXXXX)
    chmod 755 "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    port=$(free_port)
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >&2 \
      || { cat "$dir/server.log" >&2; exit 1; }
    as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qAt \
      -c "CREATE DATABASE shipyard_test" >&2
    echo "export SHIPYARD_PG_DIR=$dir SHIPYARD_PG_PORT=$port"
    echo "export SHIPYARD_TEST_PG_URI=postgresql://postgres@127.0.0.1:$port/shipyard_test"
    ;;
  createdb)
    # createdb PORT NAME: a fresh database in the running cluster.
    bin=$(pg_bin)
    as_pg "$bin/psql" -h 127.0.0.1 -p "$2" -U postgres -d postgres -qAt -c "CREATE DATABASE \"$3\"" >&2
    echo "postgresql://postgres@127.0.0.1:$2/$3"
    ;;
  stop)
    dir=${2:?usage: pg-cluster.sh stop DIR}
    bin=$(pg_bin)
    as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start | createdb PORT NAME | stop DIR" >&2
    exit 2
    ;;
esac
