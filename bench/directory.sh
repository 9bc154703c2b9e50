#!/usr/bin/env bash
# Directory benchmark (issue: serve any directory of files): N HDF5 files,
# each a (FRAMES, 1024, 1024) uint16 dataset chunked by frame, served by
# `tiled serve directory` (ours, then upstream 0.2.20 from the bench venv);
# reports time to the first answer, time until every file is searchable,
# one-frame slice latency and whole-array read throughput.
#
# Usage: bench/directory.sh [N]   (default 300; 300 files of 60 frames = 36 GiB)
# Environment: FILES_DIR [/tmp/tiled-dir-bench]  FRAMES [60]
#              BENCH_VENV [~/.cache/tiled-rs/bench-venv]  WHO ["ours upstream"]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
N=${1:-300}
FRAMES=${FRAMES:-60}
DIR=${FILES_DIR:-/tmp/tiled-dir-bench}/n$N-f$FRAMES
VENV=${BENCH_VENV:-$HOME/.cache/tiled-rs/bench-venv}
WHO=${WHO:-ours upstream}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tiled-rs/target}
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

if ! "$VENV/bin/python" -c "import tiled, h5py" 2>/dev/null; then
  log "installing tiled[server]==0.2.20 and h5py into $VENV"
  [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "tiled[server]==0.2.20" h5py
fi
log "writing $N files of $FRAMES frames into $DIR (kept for reruns)"
"$VENV/bin/python" "$HERE/directory_files.py" "$DIR" "$N" "$FRAMES"
(cd "$REPO" && cargo build --release --bins >&2)

offset=0
for who in $WHO; do
  port=$(free_port)
  # Each server reads files the other has not (the page cache would favour
  # the second otherwise; drop_caches is not allowed in every container).
  offset=$((offset + 100))
  # Drop the page cache's copy of the files where we can, so both servers
  # start cold (needs root; skipped otherwise).
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  started=$(python3 -c 'import time; print(time.time())')
  if [[ $who == ours ]]; then
    "$CARGO_TARGET_DIR/release/tiled" serve directory "$DIR" --public --port "$port" >"$DIR.$who.log" 2>&1 &
  else
    "$VENV/bin/tiled" serve directory "$DIR" --public --port "$port" >"$DIR.$who.log" 2>&1 &
  fi
  pid=$!
  result=$(python3 "$HERE/directory_queries.py" "http://127.0.0.1:$port" "$N" --started "$started" --frames "$FRAMES" --file-offset "$offset")
  echo "{\"server\": \"$who\", \"files\": $N, \"frames\": $FRAMES, \"result\": $result}"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
