#!/usr/bin/env bash
# Start a private rsyslogd on loopback for the syslog tests and print where it listens.
#
#   eval "$(bash .ci/rsyslog.sh)"        # installs if needed, starts, exports MIMIZUKU_TEST_RSYSLOG_*
#   bash .ci/rsyslog.sh stop             # stops the private rsyslogd (its pid file, nothing else)
#
# Installs Debian's rsyslog package with apt-get when no rsyslogd is found (as root; set
# MIMIZUKU_RSYSLOG_NO_INSTALL=1 to refuse), then runs rsyslogd in the foreground of its own
# session, NOT as the system daemon: its own config, pid file and work directory under
# $MIMIZUKU_RSYSLOG_DIR (default /tmp/mimizuku-rsyslog), imudp and imtcp on 127.0.0.1 high ports,
# the RFC 5424 parser first, and every record it receives written as one JSON line (rsyslog's
# %jsonmesg%: rawmsg, hostname, app-name, msgid, structured-data, msg...) to received.jsonl.
# Everything else is rsyslog's default, maxMessageSize (8,096 bytes) above all: the tests check
# what a receiver configured the way a new user leaves it does with our messages. Idempotent: a
# second call finds the running instance (it answers a probe) and prints the same lines. Only the
# `export ...` lines go to stdout; progress goes to stderr. The pytest fixture in
# tests/test_syslog_rsyslog.py runs this script with its own directory and ports.
set -euo pipefail

BASE="${MIMIZUKU_RSYSLOG_DIR:-/tmp/mimizuku-rsyslog}"
UDP_PORT="${MIMIZUKU_RSYSLOG_UDP_PORT:-15514}"
TCP_PORT="${MIMIZUKU_RSYSLOG_TCP_PORT:-15601}"
CONF="$BASE/rsyslog.conf"
PIDFILE="$BASE/rsyslogd.pid"
OUT="$BASE/received.jsonl"
LOG="$BASE/rsyslogd.log"

log() { printf 'rsyslog.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

find_rsyslogd() {
    if command -v rsyslogd >/dev/null 2>&1; then command -v rsyslogd; return 0; fi
    local d
    for d in /usr/sbin /usr/local/sbin /sbin; do
        if [ -x "$d/rsyslogd" ]; then echo "$d/rsyslogd"; return 0; fi
    done
    return 1
}

running() { [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

if [ "${1:-}" = "stop" ]; then
    if running; then
        pid="$(cat "$PIDFILE")"
        kill "$pid"
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        log "stopped ($pid)"
    else
        log "not running"
    fi
    exit 0
fi

install_rsyslog() {
    [ "${MIMIZUKU_RSYSLOG_NO_INSTALL:-0}" = 1 ] && die "rsyslogd is not installed"
    [ "$(id -u)" = 0 ] || die "rsyslogd is not installed and installing it needs root"
    command -v apt-get >/dev/null 2>&1 || die "rsyslogd is not installed and apt-get is missing"
    log "installing rsyslog from Debian's packages"
    # keep the package's maintainer scripts from starting the system-wide service: we run our own
    local policy=/usr/sbin/policy-rc.d created_policy=0 rc=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; created_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    # the package lists are usually fresh (mariadb.sh updated them): update only when the install fails
    local install=(apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends rsyslog)
    { "${install[@]}" || { apt-get -o DPkg::Lock::Timeout=600 update -qq && "${install[@]}"; }; } >&2 || rc=$?
    [ "$created_policy" = 1 ] && rm -f "$policy"
    [ "$rc" = 0 ] || die "apt-get install rsyslog failed (exit $rc)"
}

RSYSLOGD="$(find_rsyslogd || true)"
if [ -z "$RSYSLOGD" ]; then
    install_rsyslog
    RSYSLOGD="$(find_rsyslogd)" || die "no rsyslogd after installing rsyslog"
fi

# a probe over each transport, awaited in the output: the instance is up and both inputs listen
probe() {  # $1 = udp|tcp
    local tag="mimizuku-probe-$1-$$-$RANDOM" i
    for i in $(seq 1 50); do
        if [ "$1" = udp ]; then
            printf '<14>1 - %s probe - - - ready' "$tag" 2>/dev/null >"/dev/udp/127.0.0.1/$UDP_PORT" || true
        else
            printf '<14>1 - %s probe - - - ready\n' "$tag" 2>/dev/null >"/dev/tcp/127.0.0.1/$TCP_PORT" || true
        fi
        for _ in 1 2 3 4; do
            grep -q "$tag" "$OUT" 2>/dev/null && return 0
            sleep 0.05
        done
    done
    return 1
}

mkdir -p "$BASE"
if ! running; then
    rm -f "$PIDFILE"
    : >"$OUT"
    cat >"$CONF" <<CONF
# written by .ci/rsyslog.sh: a private instance for the tests, every other setting rsyslog's default
global(workDirectory="$BASE" net.enableDNS="off")
module(load="imudp")
module(load="imtcp")
template(name="mimizuku_json" type="string" string="%jsonmesg%\n")
ruleset(name="mimizuku_test" parser=["rsyslog.rfc5424", "rsyslog.rfc3164"]) {
    action(type="omfile" file="$OUT" template="mimizuku_json")
}
input(type="imudp" address="127.0.0.1" port="$UDP_PORT" ruleset="mimizuku_test")
input(type="imtcp" address="127.0.0.1" port="$TCP_PORT" ruleset="mimizuku_test")
CONF
    "$RSYSLOGD" -N1 -f "$CONF" >"$LOG" 2>&1 || { cat "$LOG" >&2; die "rsyslogd refused $CONF"; }
    log "starting $RSYSLOGD on 127.0.0.1 udp/$UDP_PORT tcp/$TCP_PORT (output $OUT)"
    # setsid + nohup: the daemon outlives this script and the CI step that ran it
    setsid nohup "$RSYSLOGD" -n -f "$CONF" -i "$PIDFILE" </dev/null >>"$LOG" 2>&1 &
fi
probe tcp || { tail -n 20 "$LOG" >&2 || true; die "rsyslogd did not answer on tcp/$TCP_PORT"; }
probe udp || { tail -n 20 "$LOG" >&2 || true; die "rsyslogd did not answer on udp/$UDP_PORT"; }
log "ready"
printf "export MIMIZUKU_TEST_RSYSLOG_UDP_PORT='%s'\n" "$UDP_PORT"
printf "export MIMIZUKU_TEST_RSYSLOG_TCP_PORT='%s'\n" "$TCP_PORT"
printf "export MIMIZUKU_TEST_RSYSLOG_OUTPUT='%s'\n" "$OUT"
