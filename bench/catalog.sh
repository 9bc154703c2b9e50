#!/usr/bin/env bash
# Catalog benchmark (issue: the SQL catalog): load N nodes of Bluesky-like
# run metadata (~2 KB each) into SQLite and PostgreSQL catalogs, then time
# the requests of bench/catalog_queries.py against `tiled serve catalog`.
#
# Usage: bench/catalog.sh [N]        (default 1000000)
# Environment: NODES_DIR [/tmp/tiled-catalog-bench]  REPEAT [50]
#              DIALECTS ["sqlite postgres"]
#              KEEP [0]  1: keep the PostgreSQL cluster and SQLite file, and
#                        reuse already loaded ones (to re-measure queries)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
N=${1:-1000000}
REPEAT=${REPEAT:-50}
WORK=${NODES_DIR:-/tmp/tiled-catalog-bench}
DIALECTS=${DIALECTS:-sqlite postgres}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tiled-rs/target}
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

cd "$REPO"
cargo build --release --workspace --bins --examples >&2
BIN=$CARGO_TARGET_DIR/release/tiled
LOAD=$CARGO_TARGET_DIR/release/examples/bench_load
mkdir -p "$WORK"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run_dialect() {
  local dialect=$1 uri=$2
  local load_json
  if [[ ${KEEP:-0} == 1 && -n ${3:-} ]]; then
    log "$dialect: reusing the loaded catalog"
    load_json='"reused"'
  else
    log "$dialect: loading $N nodes"
    load_json=$("$LOAD" "$uri" "$N")
  fi
  log "$dialect: $load_json"
  local port pid
  port=$(free_port)
  "$BIN" serve catalog "$uri" --public --port "$port" >"$WORK/$dialect-server.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.2; done
  echo "{\"dialect\": \"$dialect\", \"load\": $load_json}"
  python3 "$HERE/catalog_queries.py" "http://127.0.0.1:$port" --nodes "$N" --repeat "$REPEAT" |
    sed "s/^{/{\"dialect\": \"$dialect\", /"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

for dialect in $DIALECTS; do
  case $dialect in
    sqlite)
      loaded=""
      if [[ ${KEEP:-0} == 1 && -f $WORK/bench.db ]]; then loaded=1; else rm -f "$WORK"/bench.db*; fi
      run_dialect sqlite "sqlite:///$WORK/bench.db" "$loaded"
      ;;
    postgres)
      export TILED_PG_STATE=$WORK/pg.state
      loaded=""
      if [[ ${KEEP:-0} == 1 ]] && uri=$("$REPO/scripts/pg" uri 2>/dev/null); then
        loaded=1
      else
        uri=$("$REPO/scripts/pg" start)
      fi
      [[ ${KEEP:-0} == 1 ]] || trap '"$REPO/scripts/pg" stop || true' EXIT
      run_dialect postgres "$uri" "$loaded"
      ;;
  esac
done
