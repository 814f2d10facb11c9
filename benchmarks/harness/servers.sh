#!/usr/bin/env bash
# Start/stop the private loopback Redis and PostgreSQL used by the benchmarks
# (vendored from ../shared/bench/servers.sh).
# Usage:  benchmarks/harness/servers.sh start|stop|status
# State (PID files, data dir, logs) lives in benchmarks/.run/ (git-ignored; BENCH_RUN_DIR).
# Only the PIDs recorded there are ever signalled.
set -euo pipefail
cd "$(dirname "$0")"
RUN="${BENCH_RUN_DIR:-../.run}"
REDIS_PORT="${BENCH_REDIS_PORT:-6391}"
PG_PORT="${BENCH_PG_PORT:-54331}"
mkdir -p "$RUN"
RUN_ABS="$(cd "$RUN" && pwd)"

pg_bin() {
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  [ -n "$d" ] || { echo "postgresql server binaries not found (apt-get install postgresql)" >&2; exit 1; }
  echo "$d"
}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

start() {
  if [ -f "$RUN/redis.pid" ] && kill -0 "$(cat "$RUN/redis.pid")" 2>/dev/null; then
    echo "redis already running (pid $(cat "$RUN/redis.pid"))"
  else
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
      --daemonize yes --pidfile "$RUN_ABS/redis.pid" --logfile "$RUN_ABS/redis.log" \
      --dir "$RUN_ABS" --protected-mode yes
    for _ in $(seq 50); do [ -s "$RUN/redis.pid" ] && break; sleep 0.1; done
    redis-cli -p "$REDIS_PORT" ping >/dev/null
    echo "redis started on 127.0.0.1:$REDIS_PORT pid $(cat "$RUN/redis.pid")"
  fi
  local B; B="$(pg_bin)"
  if [ -f "$RUN/pgdata/postmaster.pid" ] && kill -0 "$(head -1 "$RUN/pgdata/postmaster.pid")" 2>/dev/null; then
    echo "postgres already running (pid $(head -1 "$RUN/pgdata/postmaster.pid"))"
  else
    if [ ! -f "$RUN/pgdata/PG_VERSION" ]; then
      mkdir -p "$RUN/pgdata"
      [ "$(id -u)" = 0 ] && chown postgres "$RUN/pgdata"
      chmod 700 "$RUN/pgdata"
      as_pg "$B/initdb" -D "$RUN_ABS/pgdata" -U bench --auth=trust -E UTF8 >"$RUN/initdb.log"
    fi
    touch "$RUN/pg.log"; [ "$(id -u)" = 0 ] && chown postgres "$RUN/pg.log"
    as_pg "$B/pg_ctl" -D "$RUN_ABS/pgdata" -l "$RUN_ABS/pg.log" -w \
      -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $RUN_ABS/pgdata" start >/dev/null
    head -1 "$RUN/pgdata/postmaster.pid" > "$RUN/pg.pid"
    echo "postgres started on 127.0.0.1:$PG_PORT pid $(cat "$RUN/pg.pid") ($("$B/postgres" --version))"
  fi
  "$B/psql" -h 127.0.0.1 -p "$PG_PORT" -U bench -d postgres -Atc \
    "select 1 from pg_database where datname='bench'" | grep -q 1 || \
    "$B/psql" -h 127.0.0.1 -p "$PG_PORT" -U bench -d postgres -qc "create database bench"
}

stop() {
  if [ -f "$RUN/redis.pid" ]; then
    local p; p="$(cat "$RUN/redis.pid")"
    kill -0 "$p" 2>/dev/null && kill -TERM "$p" && echo "stopped redis pid $p"
    rm -f "$RUN/redis.pid"
  fi
  if [ -f "$RUN/pgdata/postmaster.pid" ]; then
    local B; B="$(pg_bin)"
    as_pg "$B/pg_ctl" -D "$RUN_ABS/pgdata" -m fast -w stop >/dev/null && echo "stopped postgres pid $(cat "$RUN/pg.pid" 2>/dev/null)"
    rm -f "$RUN/pg.pid"
  fi
}

status() {
  [ -f "$RUN/redis.pid" ] && echo "redis pid $(cat "$RUN/redis.pid")" || echo "redis: not started"
  [ -f "$RUN/pgdata/postmaster.pid" ] && echo "postgres pid $(head -1 "$RUN/pgdata/postmaster.pid")" || echo "postgres: not started"
}

case "${1:-}" in
  start) start ;; stop) stop ;; status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
