#!/usr/bin/env bash
# Start a private MariaDB on loopback for the SQL tests and print the SQLAlchemy URL to use.
#
#   eval "$(bash .ci/mariadb.sh)"        # installs if needed, starts, exports MIMIZUKU_TEST_MYSQL_URL
#   bash .ci/mariadb.sh stop             # shuts the private server down
#
# Installs mariadb-server from Debian's packages with apt-get when no server binary is found,
# then runs mariadbd directly (no systemd in CI containers) with its own datadir and socket under
# $MIMIZUKU_MARIADB_DIR (default /tmp/mimizuku-mariadb), bound to 127.0.0.1 only. Idempotent: a
# second call finds the running server, re-applies the database/user grants and prints the same
# URL. Only the `export ...` line goes to stdout; progress goes to stderr.
set -euo pipefail

BASE="${MIMIZUKU_MARIADB_DIR:-/tmp/mimizuku-mariadb}"
PORT="${MIMIZUKU_MARIADB_PORT:-13306}"
DB="${MIMIZUKU_MARIADB_DB:-mimizuku_test}"
DBUSER="${MIMIZUKU_MARIADB_USER:-mimizuku}"
DBPASS="${MIMIZUKU_MARIADB_PASSWORD:-mimizuku-test-pw}"
DATADIR="$BASE/data"
SOCK="$BASE/mysqld.sock"
PIDFILE="$BASE/mysqld.pid"
LOG="$BASE/mysqld.err"

log() { printf 'mariadb.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

find_bin() {  # first of the given names found on PATH or in /usr/sbin, /usr/bin
    local n
    for n in "$@"; do
        if command -v "$n" >/dev/null 2>&1; then command -v "$n"; return 0; fi
        for d in /usr/sbin /usr/bin /usr/local/sbin /usr/local/bin; do
            if [ -x "$d/$n" ]; then echo "$d/$n"; return 0; fi
        done
    done
    return 1
}

client() { "$CLIENT" --no-defaults --protocol=socket --socket="$SOCK" -uroot "$@"; }

alive() { [ -S "$SOCK" ] && "$ADMIN" --no-defaults --protocol=socket --socket="$SOCK" -uroot --connect-timeout=2 ping >/dev/null 2>&1; }

install_server() {
    [ "$(id -u)" = 0 ] || die "mariadb-server is not installed and installing it needs root"
    command -v apt-get >/dev/null 2>&1 || die "mariadb-server is not installed and apt-get is missing"
    log "installing mariadb-server from Debian's packages"
    # Keep the package's maintainer scripts from starting the system-wide service: we run our own.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; created_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    local rc=0
    { apt-get -o DPkg::Lock::Timeout=600 update -q \
        && apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends \
             mariadb-server mariadb-client; } >&2 || rc=$?
    [ "$created_policy" = 1 ] && rm -f "$policy"
    [ "$rc" = 0 ] || die "apt-get install mariadb-server failed (exit $rc)"
}

SERVER="$(find_bin mariadbd mysqld || true)"
if [ -z "$SERVER" ] || ! find_bin mariadb mysql >/dev/null || ! find_bin mariadb-install-db mysql_install_db >/dev/null; then
    install_server
    SERVER="$(find_bin mariadbd mysqld)" || die "no mariadbd after installing mariadb-server"
fi
CLIENT="$(find_bin mariadb mysql)" || die "no mariadb client"
ADMIN="$(find_bin mariadb-admin mysqladmin)" || die "no mariadb-admin"
INSTALL_DB="$(find_bin mariadb-install-db mysql_install_db)" || die "no mariadb-install-db"

if [ "${1:-}" = "stop" ]; then
    if alive; then
        "$ADMIN" --no-defaults --protocol=socket --socket="$SOCK" -uroot shutdown >&2 && log "stopped"
    else
        log "not running"
    fi
    exit 0
fi

if [ "$(id -u)" = 0 ]; then
    RUN_AS=mysql
    id mysql >/dev/null 2>&1 || die "system user 'mysql' is missing (the mariadb-server package creates it)"
    SOCKET_USER=root
else
    RUN_AS="$(id -un)"
    SOCKET_USER="$RUN_AS"
fi

mkdir -p "$BASE"
chmod 755 "$BASE"
if ! alive; then
    if [ ! -d "$DATADIR/mysql" ]; then
        log "initialising $DATADIR"
        rm -rf "$DATADIR"; mkdir -p "$DATADIR"
        [ "$(id -u)" = 0 ] && chown -R "$RUN_AS" "$BASE"
        "$INSTALL_DB" --no-defaults --user="$RUN_AS" --datadir="$DATADIR" \
            --auth-root-authentication-method=socket --auth-root-socket-user="$SOCKET_USER" \
            --skip-test-db >"$BASE/install-db.log" 2>&1 \
            || { cat "$BASE/install-db.log" >&2; die "mariadb-install-db failed"; }
    fi
    [ "$(id -u)" = 0 ] && chown -R "$RUN_AS" "$BASE"
    rm -f "$SOCK" "$SOCK.lock" "$PIDFILE"
    log "starting $SERVER on 127.0.0.1:$PORT (datadir $DATADIR)"
    # setsid + nohup: the server outlives this script and the CI step that ran it.
    setsid nohup "$SERVER" --no-defaults --user="$RUN_AS" --datadir="$DATADIR" \
        --socket="$SOCK" --pid-file="$PIDFILE" --log-error="$LOG" \
        --bind-address=127.0.0.1 --port="$PORT" --skip-name-resolve \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
        --innodb-buffer-pool-size=256M --max-connections=200 \
        </dev/null >/dev/null 2>&1 &
    for _ in $(seq 1 120); do
        alive && break
        sleep 0.5
    done
    alive || { tail -n 40 "$LOG" >&2 || true; die "mariadbd did not answer within 60 s"; }
    log "server is up"
fi

client <<SQL || die "could not create the test database and user"
CREATE DATABASE IF NOT EXISTS \`$DB\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS '$DBUSER'@'127.0.0.1' IDENTIFIED BY '$DBPASS';
CREATE USER IF NOT EXISTS '$DBUSER'@'localhost' IDENTIFIED BY '$DBPASS';
ALTER USER '$DBUSER'@'127.0.0.1' IDENTIFIED BY '$DBPASS';
ALTER USER '$DBUSER'@'localhost' IDENTIFIED BY '$DBPASS';
GRANT ALL PRIVILEGES ON \`$DB\`.* TO '$DBUSER'@'127.0.0.1';
GRANT ALL PRIVILEGES ON \`$DB\`.* TO '$DBUSER'@'localhost';
FLUSH PRIVILEGES;
SQL

URL="mysql+pymysql://$DBUSER:$DBPASS@127.0.0.1:$PORT/$DB?charset=utf8mb4"
log "ready: ${URL/:$DBPASS@/:***@}"
printf "export MIMIZUKU_TEST_MYSQL_URL='%s'\n" "$URL"
