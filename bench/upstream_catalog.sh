#!/usr/bin/env bash
# Upstream side of the catalog benchmark: the same N runs in upstream tiled
# 0.2.20's own SQLite and PostgreSQL catalogs, served by upstream
# `tiled serve catalog`, timed with the same bench/catalog_queries.py; plus
# upstream's node-creation rate through its own HTTP API and client.
#
# Usage: bench/upstream_catalog.sh [N]      (default 1000000)
# Environment: NODES_DIR [/tmp/tiled-catalog-bench]  REPEAT [5]
#              DIALECTS ["sqlite postgres"]  API_NODES [500]
#              TIMEOUT [120] seconds per request
#              BENCH_VENV [~/.cache/tiled-rs/bench-venv]
#              KEEP [0]  1: reuse an already loaded catalog
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
N=${1:-1000000}
REPEAT=${REPEAT:-5}
API_NODES=${API_NODES:-500}
TIMEOUT=${TIMEOUT:-120}
WORK=${NODES_DIR:-/tmp/tiled-catalog-bench}/upstream
DIALECTS=${DIALECTS:-sqlite postgres}
VENV=${BENCH_VENV:-$HOME/.cache/tiled-rs/bench-venv}
UPSTREAM_VERSION=0.2.20
KEY=benchsecret0123
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
mkdir -p "$WORK"

# The bench venv of bench/run.sh, plus the PostgreSQL drivers upstream
# (asyncpg) and the loader (psycopg) need.
if ! "$VENV/bin/python" -c "import tiled, asyncpg, psycopg, sys; sys.exit(tiled.__version__ != '$UPSTREAM_VERSION')" 2>/dev/null; then
  log "preparing $VENV (tiled[server]==$UPSTREAM_VERSION, asyncpg, psycopg)"
  [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "tiled[server]==$UPSTREAM_VERSION" dask pandas numpy pyarrow asyncpg "psycopg[binary]"
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run_dialect() {
  local dialect=$1 uri=$2 target=$3 fresh=$4
  if [[ $fresh == 1 ]]; then
    log "$dialect: tiled catalog init $uri"
    "$VENV/bin/tiled" catalog init "$uri" >&2
    log "$dialect: loading $N runs by SQL inserts"
    echo "{\"server\": \"upstream\", \"dialect\": \"$dialect\", \"load\": $("$VENV/bin/python" "$HERE/upstream_catalog_load.py" "$target" "$N")}"
  fi
  local port pid
  port=$(free_port)
  "$VENV/bin/tiled" serve catalog "$uri" --public --api-key "$KEY" --host 127.0.0.1 --port "$port" \
    >"$WORK/$dialect-server.log" 2>&1 &
  pid=$!
  for _ in $(seq 300); do curl -sf -o /dev/null "http://127.0.0.1:$port/api/v1/" && break; sleep 0.5; done
  log "$dialect: timing requests (REPEAT=$REPEAT)"
  python3 "$HERE/catalog_queries.py" "http://127.0.0.1:$port" --nodes "$N" --repeat "$REPEAT" \
    --warmup 1 --timeout "$TIMEOUT" | sed "s/^{/{\"server\": \"upstream\", \"dialect\": \"$dialect\", /"
  log "$dialect: $API_NODES creations through the client"
  echo "{\"server\": \"upstream\", \"dialect\": \"$dialect\", \"api_load\": $(cd "$HERE" && "$VENV/bin/python" upstream_api_load.py "http://127.0.0.1:$port/api" "$KEY" "$API_NODES")}"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

for dialect in $DIALECTS; do
  case $dialect in
    sqlite)
      db=$WORK/upstream.db fresh=1
      if [[ ${KEEP:-0} == 1 && -f $db ]]; then fresh=0; else rm -f "$db"*; fi
      run_dialect sqlite "sqlite:///$db" "$db" "$fresh"
      ;;
    postgres)
      export TILED_PG_STATE=$WORK/pg.state
      fresh=1
      if [[ ${KEEP:-0} == 1 ]] && pg=$("$REPO/scripts/pg" uri 2>/dev/null); then fresh=0; else pg=$("$REPO/scripts/pg" start); fi
      [[ ${KEEP:-0} == 1 ]] || trap '"$REPO/scripts/pg" stop || true' EXIT
      run_dialect postgres "postgresql+asyncpg://${pg#postgresql://}" "$pg" "$fresh"
      ;;
  esac
done
