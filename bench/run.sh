#!/usr/bin/env bash
# Side-by-side benchmark: tiled-rs (`tiled serve demo`) vs upstream tiled 0.2.20
# (`tiled serve pyobject upstream_demo:tree`), same paths and data shapes, in
# one run, loopback only, bounded durations. See bench/README.md.
#
# Usage: bench/run.sh [--upstream-only | --ours-only]
# Environment knobs (defaults in brackets):
#   DURATION [10s]  length of each measured wrk run
#   WARMUP   [2s]   length of the discarded wrk warm-up run per workload
#   REPEATS  [3]    measured runs per workload and server (medians reported)
#   THREADS  [2]    wrk threads        CONNS [16]  wrk connections
#   OURS_BIN [${CARGO_TARGET_DIR:-~/.cache/tiled-rs/target}/release/tiled]
#   BENCH_VENV [~/.cache/tiled-rs/bench-venv]   upstream venv
#   OUT [bench/results/latest.md]
#   QUIET_LOAD [0] if > 0, first wait (at most QUIET_WAIT [600] s) until the
#                  1-minute load average drops below it (other jobs skew results)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
CACHE=${TILED_RS_CACHE:-$HOME/.cache/tiled-rs}
VENV=${BENCH_VENV:-$CACHE/bench-venv}
TARGET=${CARGO_TARGET_DIR:-$CACHE/target}
OURS_BIN=${OURS_BIN:-$TARGET/release/tiled}
UPSTREAM_VERSION=0.2.20
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
REPEATS=${REPEATS:-3}
THREADS=${THREADS:-2}
CONNS=${CONNS:-16}
OUT=${OUT:-$HERE/results/latest.md}
MODE=both
case "${1:-}" in
  --upstream-only) MODE=upstream ;;
  --ours-only) MODE=ours ;;
  "") ;;
  *) echo "usage: $0 [--upstream-only|--ours-only]" >&2; exit 2 ;;
esac
if [[ $MODE == both && ! -x $OURS_BIN ]]; then
  echo "!! $OURS_BIN not found: running upstream only" >&2
  MODE=upstream
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tiled-bench.XXXXXX")
RAW=$WORK/raw
mkdir -p "$RAW" "$(dirname "$OUT")"
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

# --------------------------------------------------------------------------
# Idempotent installs
# --------------------------------------------------------------------------
ensure_wrk() {
  command -v wrk >/dev/null && return
  log "installing wrk (Debian package)"
  local sudo=""
  [[ $(id -u) == 0 ]] || sudo=sudo
  $sudo apt-get update -qq && $sudo apt-get install -y -qq wrk >/dev/null
}
ensure_venv() {
  if [[ -x $VENV/bin/python ]] && "$VENV/bin/python" - <<EOF 2>/dev/null
import sys, tiled, uvicorn, fastapi, dask.array, dask.dataframe, pandas, pyarrow
sys.exit(tiled.__version__ != "$UPSTREAM_VERSION")
EOF
  then return; fi
  log "creating upstream venv $VENV (tiled[server]==$UPSTREAM_VERSION)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "tiled[server]==$UPSTREAM_VERSION" dask pandas numpy pyarrow
}

# --------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------
declare -A PID PORT DEAD
cleanup() {
  for s in "${!PID[@]}"; do
    local p=${PID[$s]}
    if [[ -z ${DEAD[$s]:-} ]] && kill -0 "$p" 2>/dev/null; then
      kill "$p" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$p" 2>/dev/null || true
    fi
  done
}
trap cleanup EXIT INT TERM

free_ports() {  # prints two distinct free loopback ports
  python3 - <<'EOF'
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))
EOF
}

start_upstream() {
  local port=$1
  ( cd "$HERE" && export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}" &&
    exec "$VENV/bin/tiled" serve pyobject --public --host 127.0.0.1 --port "$port" upstream_demo:tree
  ) >"$WORK/upstream.log" 2>&1 &
  PID[upstream]=$!; PORT[upstream]=$port
}
start_ours() {
  local port=$1
  # Run a private copy: a rebuild during the run cannot swap the binary, and
  # the process is not hit by anyone's pkill of target/release/tiled.
  cp "$OURS_BIN" "$WORK/tiled-rs"
  echo "built $(date -u -r "$OURS_BIN" '+%Y-%m-%d %H:%M:%S UTC'), sha256 $(sha256sum "$WORK/tiled-rs" | cut -c1-12)" >"$WORK/ours-bin-info"
  "$WORK/tiled-rs" serve demo --host 127.0.0.1 --port "$port" >"$WORK/ours.log" 2>&1 &
  PID[ours]=$!; PORT[ours]=$port
}
wait_ready() {
  local s=$1
  for _ in $(seq 240); do
    kill -0 "${PID[$s]}" 2>/dev/null || { log "$s died at startup:"; tail -20 "$WORK/$s.log" >&2; exit 1; }
    curl -sf -o /dev/null "http://127.0.0.1:${PORT[$s]}/api/v1/" && return
    sleep 0.5
  done
  log "$s not ready after 120 s"; exit 1
}
check_alive() {  # server context: records the exit status if it has gone
  local s=$1 rc
  [[ -n ${DEAD[$s]:-} ]] && return 1
  kill -0 "${PID[$s]}" 2>/dev/null && return 0
  rc=0; wait "${PID[$s]}" 2>/dev/null || rc=$?
  local why="exit status $rc"
  (( rc > 128 )) && why="killed by signal $((rc - 128)) ($(kill -l $((rc - 128)) 2>/dev/null || echo ?))"
  (( rc == 0 )) && why="exit status 0 (graceful shutdown, e.g. SIGTERM/SIGINT from outside)"
  DEAD[$s]=1
  echo "$s stopped during $2: $why; RSS before: $(tail -1 "$3" 2>/dev/null || echo ?) kB" >>"$WORK/events"
  log "!! $s stopped during $2: $why"; tail -30 "$WORK/$s.log" >&2
  return 1
}
status_kb() { awk -v k="$2:" '$1==k{print $2}' "/proc/$1/status"; }      # VmRSS / VmHWM in kB
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }                   # utime+stime

# --------------------------------------------------------------------------
# Workloads: name | path | extra headers (;-separated) | unit
# --------------------------------------------------------------------------
WORKLOADS=(
  "about|/api/v1/||req"
  "metadata|/api/v1/metadata/nested/images/big_image||req"
  "search|/api/v1/search/many?page[offset]=0&page[limit]=100||req"
  "block|/api/v1/array/block/nested/images/big_image?block=0,0|Accept: application/octet-stream;Accept-Encoding: identity|bytes"
  "table|/api/v1/table/partition/tables/long_table?partition=0|Accept: application/vnd.apache.arrow.file;Accept-Encoding: identity|bytes"
  "png|/api/v1/array/full/nested/images/medium_image?format=image/png|Accept-Encoding: identity|bytes"
  "csv|/api/v1/array/full/nested/images/small_image?format=text/csv|Accept-Encoding: identity|bytes"
  "parquet|/api/v1/table/partition/tables/long_table?partition=0&format=application/x-parquet|Accept-Encoding: identity|bytes"
  "tablecsv|/api/v1/table/partition/tables/long_table?partition=0&format=text/csv|Accept-Encoding: identity|bytes"
  "hdf5|/api/v1/container/full/nested/cubes?format=application/x-hdf5|Accept-Encoding: identity|bytes"
)

headers_args() {  # "A: b;C: d" -> -H 'A: b' -H 'C: d' (into array HARGS)
  HARGS=()
  local IFS=';'
  for h in $1; do [[ -n $h ]] && HARGS+=(-H "$h"); done
}

probe() {  # one request per workload and server: status, size, encoding, sha
  local s=$1 w name path hdrs unit
  for w in "${WORKLOADS[@]}"; do
    IFS='|' read -r name path hdrs unit <<<"$w"
    headers_args "$hdrs"
    local body=$WORK/probe-$s-$name.body
    curl -sg -o "$body" -D "$WORK/probe-$s-$name.headers" \
      -w '{"http_code":%{http_code},"size":%{size_download},"time_total":%{time_total}}' \
      "${HARGS[@]}" "http://127.0.0.1:${PORT[$s]}$path" >"$WORK/probe-$s-$name.json" || true
    sha256sum "$body" | cut -c1-16 >"$WORK/probe-$s-$name.sha"
    local code; code=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http_code"])' "$WORK/probe-$s-$name.json")
    [[ $code == 200 ]] || log "!! $s $name answered HTTP $code: $(head -c 300 "$body")"
  done
}

run_wrk() {  # server workload duration outfile  (+ CPU and RSS sidecar)
  local s=$1 name=$2 dur=$3 out=$4 w path hdrs unit
  for w in "${WORKLOADS[@]}"; do
    IFS='|' read -r n path hdrs unit <<<"$w"; [[ $n == "$name" ]] && break
  done
  headers_args "$hdrs"
  local pid=${PID[$s]} c0 c1 rssfile=$out.rss
  check_alive "$s" "$name (before $(basename "$out"))" /dev/null || return 0
  c0=$(cpu_ticks "$pid" 2>/dev/null || echo 0)
  : >"$rssfile"
  ( while kill -0 "$pid" 2>/dev/null; do status_kb "$pid" VmRSS >>"$rssfile"; sleep 0.2; done ) &
  local sampler=$!
  wrk -t"$THREADS" -c"$CONNS" -d"$dur" --timeout 20s -s "$HERE/report.lua" "${HARGS[@]}" \
    "http://127.0.0.1:${PORT[$s]}$path" >"$out.wrk" 2>&1 || true
  kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
  local rssmax; rssmax=$(sort -n "$rssfile" | tail -1)
  if ! check_alive "$s" "$name ($(basename "$out"))" "$rssfile"; then
    printf '{"server":"%s","workload":"%s","died":true}\n' "$s" "$name" >"$out.json"
    return 0
  fi
  c1=$(cpu_ticks "$pid" 2>/dev/null || echo "$c0")
  printf '{"server":"%s","workload":"%s","cpu_ticks":%d,"clk_tck":%d,"rss_max_kb":%d,"result":%s}\n' \
    "$s" "$name" "$((c1 - c0))" "$(getconf CLK_TCK)" "${rssmax:-0}" \
    "$(grep '^{' "$out.wrk" | tail -1 || echo null)" >"$out.json"
}

# --------------------------------------------------------------------------
wait_quiet() {
  local limit=${QUIET_LOAD:-0} waited=0
  [[ $limit == 0 ]] && return
  while awk -v l="$limit" '{exit !($1 >= l)}' /proc/loadavg; do
    (( waited >= ${QUIET_WAIT:-600} )) && { log "load still $(cut -d' ' -f1 /proc/loadavg), going on"; return; }
    (( waited % 60 == 0 )) && log "waiting for load < $limit (now $(cut -d' ' -f1 /proc/loadavg))"
    sleep 10; waited=$((waited + 10))
  done
}

main() {
  ensure_wrk
  wait_quiet
  cut -d' ' -f1-3 /proc/loadavg >"$WORK/load-before"
  [[ $MODE == ours ]] || ensure_venv
  SERVERS=()
  [[ $MODE == ours ]] || SERVERS+=(upstream)
  [[ $MODE == upstream ]] || SERVERS+=(ours)
  read -r p1 p2 < <(free_ports)
  for s in "${SERVERS[@]}"; do
    if [[ $s == upstream ]]; then start_upstream "$p1"; else start_ours "$p2"; fi
  done
  for s in "${SERVERS[@]}"; do wait_ready "$s"; log "$s ready on port ${PORT[$s]} (pid ${PID[$s]})"; done
  sleep 2
  for s in "${SERVERS[@]}"; do status_kb "${PID[$s]}" VmRSS >"$WORK/rss-start-$s"; done

  for s in "${SERVERS[@]}"; do probe "$s"; done
  log "warm-up ($WARMUP per workload and server)"
  for w in "${WORKLOADS[@]}"; do
    IFS='|' read -r name _ <<<"$w"
    for s in "${SERVERS[@]}"; do run_wrk "$s" "$name" "$WARMUP" "$WORK/warmup-$s-$name"; done
  done
  sleep 3
  for s in "${SERVERS[@]}"; do
    check_alive "$s" "warm-up" /dev/null && status_kb "${PID[$s]}" VmRSS >"$WORK/rss-idle-$s"
  done

  for rep in $(seq "$REPEATS"); do
    for w in "${WORKLOADS[@]}"; do
      IFS='|' read -r name _ <<<"$w"
      for s in "${SERVERS[@]}"; do
        log "run $rep/$REPEATS $name on $s ($DURATION, -t$THREADS -c$CONNS)"
        run_wrk "$s" "$name" "$DURATION" "$RAW/$s-$name-$rep"
      done
    done
  done
  for s in "${SERVERS[@]}"; do
    check_alive "$s" "the end of the runs" /dev/null || continue
    status_kb "${PID[$s]}" VmHWM >"$WORK/hwm-$s"
    status_kb "${PID[$s]}" VmRSS >"$WORK/rss-end-$s"
  done
  cleanup
  cut -d' ' -f1-3 /proc/loadavg >"$WORK/load-after"

  python3 "$HERE/report.py" "$WORK" \
    --servers "${SERVERS[*]}" --duration "$DURATION" --repeats "$REPEATS" \
    --threads "$THREADS" --conns "$CONNS" --ours-bin "$OURS_BIN" --repo "$REPO" \
    --upstream-version "$UPSTREAM_VERSION" >"$OUT"
  cp "$WORK"/*.log "$(dirname "$OUT")/" 2>/dev/null || true
  cat "$OUT"
  log "wrote $OUT (raw data in $WORK)"
}
main
