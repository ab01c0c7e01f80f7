#!/usr/bin/env bash
# Make sure the PostgreSQL and Redis that the tests talk to are up (called by `make test`).
#
# When one is down and its server binaries are installed, start a throwaway instance on the same
# loopback port, with its files under var/ (nothing is kept: trust auth, no persistence for Redis).
# Otherwise fail, saying what to install or start. Nothing is ever stopped by this script.
#
#   PGHOST, PGPORT          PostgreSQL to check (default 127.0.0.1:5432)
#   REDIS_HOST, REDIS_PORT  Redis to check (default 127.0.0.1:6379)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
REDIS_HOST=${REDIS_HOST:-127.0.0.1}
REDIS_PORT=${REDIS_PORT:-6379}
VAR_DIR=${VISIO_VAR_DIR:-$ROOT/var}

fail() {
    echo "ensure-services: $*" >&2
    exit 1
}

is_loopback() {
    [[ $1 == 127.* || $1 == localhost || $1 == ::1 ]]
}

wait_for() {
    local what=$1
    shift
    for _ in $(seq 1 60); do
        if "$@" >/dev/null 2>&1; then
            echo "ensure-services: $what is up"
            return 0
        fi
        sleep 0.5
    done
    return 1
}

postgres_up() {
    pg_isready -q -h "$PGHOST" -p "$PGPORT"
}

redis_up() {
    [[ $(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
}

# The newest installed server version, e.g. /usr/lib/postgresql/15/bin.
postgres_bin_dir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [[ -n $dir && -x $dir/initdb && -x $dir/pg_ctl ]] && echo "$dir"
}

# Run as the postgres user when we are root: PostgreSQL refuses to run as root.
as_postgres() {
    if [[ $(id -u) == 0 ]]; then
        su postgres -s /bin/bash -c "$(printf '%q ' "$@")"
    else
        "$@"
    fi
}

start_throwaway_postgres() {
    local bin=$1 dir=$VAR_DIR/pg-throwaway
    mkdir -p "$dir"
    if [[ $(id -u) == 0 ]]; then
        id postgres >/dev/null 2>&1 || fail "no 'postgres' user to run PostgreSQL as"
        chown postgres: "$dir"
    fi
    if [[ ! -f $dir/data/PG_VERSION ]]; then
        as_postgres "$bin/initdb" --pgdata="$dir/data" --username=postgres --auth=trust \
            --encoding=UTF8 --no-sync >"$dir/initdb.log"
    fi
    echo "ensure-services: starting a throwaway PostgreSQL in $dir on $PGHOST:$PGPORT"
    as_postgres "$bin/pg_ctl" --pgdata="$dir/data" --log="$dir/server.log" --wait start \
        -o "-c listen_addresses=$PGHOST -p $PGPORT -k $dir -c fsync=off" >/dev/null ||
        fail "the throwaway PostgreSQL did not start; see $dir/server.log"
}

start_throwaway_redis() {
    local dir=$VAR_DIR/redis-throwaway
    mkdir -p "$dir"
    echo "ensure-services: starting a throwaway Redis in $dir on $REDIS_HOST:$REDIS_PORT"
    redis-server --daemonize yes --bind "$REDIS_HOST" --port "$REDIS_PORT" --save '' \
        --appendonly no --dir "$dir" --logfile "$dir/redis.log" --pidfile "$dir/redis.pid" ||
        fail "the throwaway Redis did not start; see $dir/redis.log"
}

command -v pg_isready >/dev/null ||
    fail "pg_isready not found: install PostgreSQL (Debian: apt-get install postgresql)"
if postgres_up; then
    echo "ensure-services: PostgreSQL is up at $PGHOST:$PGPORT"
else
    is_loopback "$PGHOST" ||
        fail "PostgreSQL at $PGHOST:$PGPORT does not answer; start it or point PGHOST/PGPORT elsewhere"
    bin=$(postgres_bin_dir) ||
        fail "PostgreSQL at $PGHOST:$PGPORT is down and no server is installed:" \
            "install one (Debian: apt-get install postgresql) or start yours"
    start_throwaway_postgres "$bin"
    wait_for PostgreSQL postgres_up || fail "PostgreSQL at $PGHOST:$PGPORT still does not answer"
fi

command -v redis-cli >/dev/null ||
    fail "redis-cli not found: install Redis (Debian: apt-get install redis-server)"
if redis_up; then
    echo "ensure-services: Redis is up at $REDIS_HOST:$REDIS_PORT"
else
    is_loopback "$REDIS_HOST" ||
        fail "Redis at $REDIS_HOST:$REDIS_PORT does not answer; start it or point REDIS_HOST/REDIS_PORT elsewhere"
    command -v redis-server >/dev/null ||
        fail "Redis at $REDIS_HOST:$REDIS_PORT is down and redis-server is not installed:" \
            "install it (Debian: apt-get install redis-server) or start yours"
    start_throwaway_redis
    wait_for Redis redis_up || fail "Redis at $REDIS_HOST:$REDIS_PORT still does not answer"
fi
