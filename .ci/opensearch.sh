#!/usr/bin/env bash
# Start a private single-node OpenSearch 2.19 on loopback for the indexer tests and print its URL.
#
#   eval "$(bash .ci/opensearch.sh)"        # builds if needed, starts, exports MIMIZUKU_TEST_OPENSEARCH_URL
#   eval "$(bash .ci/opensearch.sh start)"  # the same
#   bash .ci/opensearch.sh stop             # stops the node this directory's pid file names, nothing else
#
# The node is OpenSearch itself (the Wazuh indexer 4.12-4.14 is OpenSearch 2.19), run from Maven
# Central's artifacts: .ci/opensearch/ is a small Maven project (pom.xml + one launcher class,
# org.mimizuku.ci.TestNode) that Maven builds once; the jars stay in ~/.m2 and the classpath in
# .ci/opensearch/target/classpath.txt, so later starts build nothing (offline first, then online).
# Needs java (17) and mvn on PATH. The node binds 127.0.0.1 only, free ports chosen at start,
# plain HTTP without users (no security plugin: a test bench), heap $MIMIZUKU_OPENSEARCH_HEAP
# (default 512m), its home (data, logs) under $MIMIZUKU_OPENSEARCH_DIR (default
# /tmp/mimizuku-opensearch), wiped at each start. Waits for green (indices get 0 replicas) up to
# $MIMIZUKU_OPENSEARCH_TIMEOUT seconds (default 180). Idempotent: a second call finds the running
# node (it answers) and prints the same line. Only the `export ...` line goes to stdout; progress
# goes to stderr. tests/opensearch_node.py runs this script with its own directory when the
# variable is not set.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
PROJECT="$HERE/opensearch"
BASE="${MIMIZUKU_OPENSEARCH_DIR:-/tmp/mimizuku-opensearch}"
HEAP="${MIMIZUKU_OPENSEARCH_HEAP:-512m}"
TIMEOUT="${MIMIZUKU_OPENSEARCH_TIMEOUT:-180}"
HOME_DIR="$BASE/node"
PIDFILE="$BASE/node.pid"
PORTFILE="$BASE/http.port"
LOG="$BASE/node.log"
CLASSPATH_FILE="$PROJECT/target/classpath.txt"
MAIN=org.mimizuku.ci.TestNode

log() { printf 'opensearch.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# the pid file's process, only if it is still our launcher (a recycled pid is left alone)
our_pid() {
    [ -s "$PIDFILE" ] || return 1
    local pid; pid="$(cat "$PIDFILE")"
    [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$MAIN" || return 1
    echo "$pid"
}

# GET a path on the node; prints the body, fails on a refused connection or a non-2xx status
http_get() {  # $1 = port, $2 = path, $3 = timeout seconds
    python3 - "$1" "$2" "${3:-5}" <<'PY'
import sys, urllib.request
port, path, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with opener.open(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
    sys.stdout.write(r.read().decode())
PY
}

green() {  # $1 = port; the cluster is green now (or within 1 s)
    http_get "$1" "/_cluster/health?wait_for_status=green&timeout=1s" 3 2>/dev/null | grep -q '"status":"green"'
}

if [ "${1:-start}" = "stop" ]; then
    if pid="$(our_pid)"; then
        kill -TERM "$pid"
        for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            log "node (pid $pid) still running 30 s after SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$PIDFILE" "$PORTFILE"
        log "stopped (pid $pid)"
    else
        log "not running"
    fi
    exit 0
fi
[ "${1:-start}" = "start" ] || die "usage: $0 [start|stop]"

if pid="$(our_pid)" && [ -s "$PORTFILE" ] && green "$(cat "$PORTFILE")"; then
    PORT="$(cat "$PORTFILE")"
    log "OpenSearch node already running on 127.0.0.1:$PORT (pid $pid)"
    printf "export MIMIZUKU_TEST_OPENSEARCH_URL='http://127.0.0.1:%s'\n" "$PORT"
    exit 0
fi

command -v java >/dev/null 2>&1 || die "java is not installed (Java 17 runs OpenSearch 2.19)"
command -v mvn >/dev/null 2>&1 || die "mvn is not installed (Maven fetches OpenSearch's jars from Maven Central)"

# --- build: once per checkout; the jars once per machine (~/.m2) ---------------------------------
build_is_current() {
    [ -s "$CLASSPATH_FILE" ] && [ -f "$PROJECT/target/classes/org/mimizuku/ci/TestNode.class" ] || return 1
    [ "$CLASSPATH_FILE" -nt "$PROJECT/pom.xml" ] || return 1
    [ "$PROJECT/target/classes/org/mimizuku/ci/TestNode.class" -nt "$PROJECT/src/main/java/org/mimizuku/ci/TestNode.java" ] || return 1
    local jar
    while IFS= read -r jar; do [ -f "$jar" ] || return 1; done < <(tr ':' '\n' <"$CLASSPATH_FILE")
}
t0=$SECONDS
if build_is_current; then
    log "launcher already built ($CLASSPATH_FILE)"
else
    log "building the launcher with Maven (jars from ~/.m2, else Maven Central)"
    mvn_log="$(mktemp)"
    if ! mvn -B -q -o -f "$PROJECT/pom.xml" package >"$mvn_log" 2>&1; then
        mvn -B -q -f "$PROJECT/pom.xml" package >"$mvn_log" 2>&1 \
            || { tail -n 40 "$mvn_log" >&2; rm -f "$mvn_log"; die "mvn package failed"; }
    fi
    rm -f "$mvn_log"
    build_is_current || die "mvn package did not produce $CLASSPATH_FILE"
    log "built in $((SECONDS - t0)) s"
fi
build_s=$((SECONDS - t0))

# --- start ------------------------------------------------------------------------------------
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
if pid="$(our_pid)"; then  # running but not answering green: a broken node from an earlier run
    log "replacing the unresponsive node (pid $pid)"
    bash "$0" stop
fi
PORT="${MIMIZUKU_OPENSEARCH_PORT:-$(free_port)}"
TRANSPORT_PORT="$(free_port)"
[ "$TRANSPORT_PORT" != "$PORT" ] || TRANSPORT_PORT="$(free_port)"
mkdir -p "$BASE"
rm -rf "$HOME_DIR"
mkdir -p "$HOME_DIR"
t1=$SECONDS
log "starting OpenSearch on 127.0.0.1:$PORT (transport $TRANSPORT_PORT, heap $HEAP, home $HOME_DIR, log $LOG)"
# setsid + nohup: the node outlives this script and the CI step that ran it; exec keeps the pid
setsid nohup java "-Xms$HEAP" "-Xmx$HEAP" -XX:+UseSerialGC -Xss1m \
    -Djava.awt.headless=true -Dfile.encoding=UTF-8 -Dlog4j2.disable.jmx=true \
    -Djava.io.tmpdir="$HOME_DIR" \
    -cp "$PROJECT/target/classes:$(cat "$CLASSPATH_FILE")" "$MAIN" "$HOME_DIR" "$PORT" "$TRANSPORT_PORT" \
    </dev/null >"$LOG" 2>&1 &
pid=$!
echo "$pid" >"$PIDFILE"
echo "$PORT" >"$PORTFILE"
deadline=$((SECONDS + TIMEOUT))
until green "$PORT"; do
    if ! kill -0 "$pid" 2>/dev/null; then
        tail -n 40 "$LOG" >&2 || true
        rm -f "$PIDFILE" "$PORTFILE"
        die "the node exited before it answered (log $LOG)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        tail -n 40 "$LOG" >&2 || true
        bash "$0" stop || true
        die "the node was not green within $TIMEOUT s (log $LOG)"
    fi
    sleep 0.5
done
VERSION="$(http_get "$PORT" / 5 | python3 -c 'import json, sys; print(json.load(sys.stdin)["version"]["number"])')"
log "OpenSearch $VERSION node started on 127.0.0.1:$PORT (pid $pid): build ${build_s} s, start $((SECONDS - t1)) s"
printf "export MIMIZUKU_TEST_OPENSEARCH_URL='http://127.0.0.1:%s'\n" "$PORT"
