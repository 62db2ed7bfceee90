#!/usr/bin/env bash
# The same e2e trial with two trees on one GPU machine, alternating (hosts differ by
# 2x in launch-bound rates, so before/after must share a machine):
#   OUT=... bash bench/gpu_ab.sh OLD_TREE SIZE RATE SECONDS [REPEATS]
# OLD_TREE: a source tree of the other commit (e.g. `git archive REV | tar -x -C .ab/old`,
# carried to the device); the current tree is the repository root.
set -uo pipefail
OLD=${1:?old tree}; SIZE=${2:?size}; RATE=${3:?rate}; S=${4:-15}; REP=${5:-1}
OUT=${OUT:-/tmp/out}
SECONDS=0
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
python3 -m pip install -q --no-deps --no-build-isolation --no-compile --target /tmp/site2 . >/tmp/build.log 2>&1 \
  || { tail -30 /tmp/build.log; exit 1; }
(cd "$OLD" && python3 -m pip install -q --no-deps --no-build-isolation --no-compile --target /tmp/site_old . >/tmp/build_old.log 2>&1) \
  || { tail -30 /tmp/build_old.log; exit 1; }
echo "installs took ${SECONDS}s"
export PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1 LIVESR_CACHE_DIR=/tmp/livesr-cache
nvidia-smi -L
for r in $(seq 1 "$REP"); do
  for tree in old new; do
    site=/tmp/site2; [ $tree = old ] && site=/tmp/site_old
    SECONDS=0
    PYTHONPATH=$site:/tmp/site python3 -m livesr.stream.cli bench --e2e "$OUT/${tree}_$r" --sizes "$SIZE" \
      --seconds "$S" --start-rate "$RATE" --max-rate "$RATE" > "$OUT/${tree}_$r.log" 2>&1
    echo "== $tree $r (${SECONDS}s)"; grep -E "^\| $SIZE" "$OUT/${tree}_$r/e2e.md" || tail -5 "$OUT/${tree}_$r.log"
  done
done
