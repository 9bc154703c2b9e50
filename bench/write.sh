#!/usr/bin/env bash
# Write benchmark: tiled-rs vs upstream tiled 0.2.20, each `serve catalog
# --temp` (temporary SQLite catalog with writable storage), driven one after
# the other by the same bench/write_load.py through upstream's Python client:
# 8 MiB array blocks (MiB/s), appendable-table appends (rows/s), container
# creations (nodes/s). JSON lines on stdout, markdown table in
# bench/results/write-latest.md. See bench/README.md ("Write benchmark").
#
# Usage: bench/write.sh [--upstream-only | --ours-only]
# Environment knobs (defaults in brackets):
#   REPEAT [3]       repeats per measurement (medians reported)
#   NBLOCKS [32]     8 MiB blocks per array (256 MiB per repeat)
#   ARRAY_THREADS ["1,4"]  writer threads for the array blocks
#   VERIFY [4]       random blocks read back and compared per array
#   ROWS [1000]      rows per append        DURATION [10]  seconds of appending
#   TABLE_THREADS ["1,8"]  concurrent appenders
#   APPEND_AS [arrow]  append pyarrow Tables; "pandas" appends DataFrames
#                    (upstream 0.2.20 then fails: its client sends the index)
#   NODES [300]      containers per run     NODES_THREADS ["1,8"]
#   MEASURES ["array,table,nodes"]
#   TIMEOUT [600]    seconds per measurement (all its repeats); on timeout the
#                    measurement is recorded as an error and the run goes on
#   OURS_BIN [${CARGO_TARGET_DIR:-~/.cache/tiled-rs/target}/release/tiled]
#   UPSTREAM_TABLE_STORE [duckdb]  duckdb: upstream's --temp storage (files +
#                    DuckDB); sqlite: --temp catalog with `-w DIR -w sqlite:///...`
#   BENCH_VENV [~/.cache/tiled-rs/bench-venv]
#   OUT [bench/results/write-latest.md]
#   QUIET_LOAD [0]   if > 0, first wait (at most QUIET_WAIT [600] s) until the
#                    1-minute load average drops below it
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${TILED_RS_CACHE:-$HOME/.cache/tiled-rs}
VENV=${BENCH_VENV:-$CACHE/bench-venv}
TARGET=${CARGO_TARGET_DIR:-$CACHE/target}
OURS_BIN=${OURS_BIN:-$TARGET/release/tiled}
UPSTREAM_VERSION=0.2.20
OUT=${OUT:-$HERE/results/write-latest.md}
KEY=writebenchsecret0123
MODE=both
case "${1:-}" in
  --upstream-only) MODE=upstream ;;
  --ours-only) MODE=ours ;;
  "") ;;
  *) echo "usage: $0 [--upstream-only|--ours-only]" >&2; exit 2 ;;
esac
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
if [[ $MODE != upstream && ! -x $OURS_BIN ]]; then
  log "!! $OURS_BIN not found: running upstream only"
  [[ $MODE == ours ]] && exit 1
  MODE=upstream
fi

RESULTS_DIR=$(dirname "$OUT")
mkdir -p "$RESULTS_DIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tiled-write-bench.XXXXXX")
JSONL=$RESULTS_DIR/write-latest.jsonl
: >"$JSONL"

# The bench venv (same as bench/run.sh).
if ! "$VENV/bin/python" - <<EOF 2>/dev/null
import sys, tiled, uvicorn, fastapi, duckdb, pandas, pyarrow, numpy
sys.exit(tiled.__version__ != "$UPSTREAM_VERSION")
EOF
then
  log "preparing $VENV (tiled[server]==$UPSTREAM_VERSION)"
  [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "tiled[server]==$UPSTREAM_VERSION" dask pandas numpy pyarrow
fi

if [[ ${QUIET_LOAD:-0} != 0 ]]; then
  for _ in $(seq $(( ${QUIET_WAIT:-600} / 5 ))); do
    awk -v q="$QUIET_LOAD" '{exit !($1 < q)}' /proc/loadavg && break
    log "waiting for load average < $QUIET_LOAD (now $(cut -d' ' -f1 /proc/loadavg))"; sleep 5
  done
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SERVER_PID=""
stop_server() {
  local p=$SERVER_PID
  [[ -n $p ]] || return 0
  if kill -0 "$p" 2>/dev/null; then
    kill "$p" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  fi
  wait "$p" 2>/dev/null || true
  SERVER_PID=""
}
trap stop_server EXIT

note() {  # a JSON line for the report's notes
  printf '{"server": "%s", "measure": "note", "threads": 0, "value": null, "unit": "", "repeats": 0, "runs": [], "errors": ["%s"]}\n' "$1" "$2" | tee -a "$JSONL"
}
declare -a SERVER_CMD
SERVER_NAME="" SERVER_PORT="" SERVER_EXIT=""
# Start SERVER_CMD on a free port in a fresh temp catalog; wait until it answers.
start_server() {
  local name=$SERVER_NAME
  SERVER_PORT=$(free_port)
  local logf=$RESULTS_DIR/write-$name-server.log
  log "$name: ${SERVER_CMD[*]} --port $SERVER_PORT"
  # TMPDIR inside WORK: the server's --temp storage lands there and is removed.
  mkdir -p "$WORK/$name"
  echo "=== $(date +%T) ${SERVER_CMD[*]} --port $SERVER_PORT" >>"$logf"
  TMPDIR=$WORK/$name "${SERVER_CMD[@]}" --port "$SERVER_PORT" >>"$logf" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 240); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    curl -sf -o /dev/null "http://127.0.0.1:$SERVER_PORT/api/v1/" && return 0
    sleep 0.5
  done
  log "!! $name did not come up; see $logf"
  tail -5 "$logf" >&2 || true
  stop_server
  return 1
}
# Is the server still there? If it died, record how (exit status) and forget it.
server_alive() {
  [[ -n $SERVER_PID ]] || return 1
  if kill -0 "$SERVER_PID" 2>/dev/null && curl -sf -m 10 -o /dev/null "http://127.0.0.1:$SERVER_PORT/api/v1/"; then
    return 0
  fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    local rc=0; wait "$SERVER_PID" 2>/dev/null || rc=$?
    SERVER_EXIT=$rc
    local sig=""; (( rc > 128 )) && sig=" (signal $(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128))))"
    note "$SERVER_NAME" "server exited with status $rc$sig during $1; restarted on a fresh temp catalog for the next measurement"
  else
    note "$SERVER_NAME" "server stopped answering during $1; killed and restarted on a fresh temp catalog"
  fi
  stop_server
  return 1
}

# One server: every (measure, writer count) in turn; a server that dies is
# restarted (fresh temp catalog) for the next measurement and the death noted.
bench_server() {
  SERVER_NAME=$1; shift
  SERVER_CMD=("$@")
  local t0=$SECONDS m th t prev="start-up"
  : >"$RESULTS_DIR/write-$SERVER_NAME-server.log"
  start_server || { note "$SERVER_NAME" "server did not start"; return 0; }
  for m in ${MEASURES//,/ }; do
    case $m in
      array) th=$ARRAY_THREADS ;; table) th=$TABLE_THREADS ;; nodes) th=$NODES_THREADS ;;
      *) log "unknown measure $m"; continue ;;
    esac
    for t in ${th//,/ }; do
      if ! server_alive "$prev"; then
        start_server || { note "$SERVER_NAME" "server did not restart"; return 0; }
      fi
      "$VENV/bin/python" "$HERE/write_load.py" run "http://127.0.0.1:$SERVER_PORT/api" "$KEY" \
        --server "$SERVER_NAME" --measures "$m" --"$m"-threads "$t" \
        --repeat "$REPEAT" --nblocks "$NBLOCKS" --verify "$VERIFY" --rows "$ROWS" \
        --duration "$DURATION" --nodes "$NODES" --append-as "$APPEND_AS" --timeout "$TIMEOUT" \
        | tee -a "$JSONL"
      prev="$m x$t"
    done
  done
  server_alive "$prev" || true
  log "$SERVER_NAME: done in $(( SECONDS - t0 )) s; storage used: $(du -sh "$WORK/$SERVER_NAME" 2>/dev/null | cut -f1)"
  stop_server
  rm -rf "${WORK:?}/$SERVER_NAME"
}

REPEAT=${REPEAT:-3} NBLOCKS=${NBLOCKS:-32} VERIFY=${VERIFY:-4} ROWS=${ROWS:-1000}
DURATION=${DURATION:-10} NODES=${NODES:-300} APPEND_AS=${APPEND_AS:-arrow} TIMEOUT=${TIMEOUT:-600}
MEASURES=${MEASURES:-array,table,nodes}
ARRAY_THREADS=${ARRAY_THREADS:-1,4} TABLE_THREADS=${TABLE_THREADS:-1,8} NODES_THREADS=${NODES_THREADS:-1,8}
UPSTREAM_TABLE_STORE=${UPSTREAM_TABLE_STORE:-duckdb}

T_START=$SECONDS
if [[ $MODE != ours ]]; then
  if [[ $UPSTREAM_TABLE_STORE == sqlite ]]; then
    # Explicit writable storage instead of --temp's (files + DuckDB): files
    # plus a SQLite database for appendable tables. $TMPDIR is the server's.
    bench_server upstream sh -c 'd=$(mktemp -d); mkdir "$d/data"; exec "$0" "$@" -w "$d/data" -w "sqlite:///$d/tables.sqlite"' \
      "$VENV/bin/tiled" serve catalog --temp --api-key "$KEY" --host 127.0.0.1
  else
    bench_server upstream "$VENV/bin/tiled" serve catalog --temp --api-key "$KEY" --host 127.0.0.1
  fi
fi
if [[ $MODE != upstream ]]; then
  bench_server ours "$OURS_BIN" serve catalog --temp --api-key "$KEY" --host 127.0.0.1
fi
rm -rf "$WORK"

ours_ver=$("$OURS_BIN" --version 2>/dev/null || echo "?")
header="$(date -u +'%Y-%m-%d %H:%M UTC'), $(nproc) cores, client and server on the same machine. \
ours: \`$ours_ver\` ($OURS_BIN); upstream: tiled $UPSTREAM_VERSION. \
Both \`serve catalog --temp\` (upstream tables: $UPSTREAM_TABLE_STORE). REPEAT=$REPEAT NBLOCKS=$NBLOCKS ROWS=$ROWS \
DURATION=${DURATION}s NODES=$NODES APPEND_AS=$APPEND_AS; total $(( SECONDS - T_START )) s. ⚠ = some repeats failed (see Errors)."
"$VENV/bin/python" "$HERE/write_load.py" report "$JSONL" "$OUT" --header "$header" >&2
log "report: $OUT (raw: $JSONL)"
