#!/usr/bin/env bash
# One measuring round on the device machine, from the repository root:
#   OUT=... bash bench/gpu_round.sh SECONDS SIZE:RATE [SIZE:RATE ...]
# First a py-spy profile of the pipeline process at the first SIZE:RATE (10 s), then one
# `livesr bench --e2e` trial per SIZE:RATE at exactly that rate for SECONDS.
set -uo pipefail
S=${1:?seconds}; shift
OUT=${OUT:-/tmp/out}
first=1
for case in "$@"; do
  SIZE=${case%%:*}; RATE=${case##*:}
  if [ $first = 1 ]; then
    SECONDS=0
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    python3 -m pip install -q --no-deps --no-build-isolation --no-compile --target /tmp/site2 . >/tmp/build.log 2>&1 \
      || { tail -30 /tmp/build.log; exit 1; }
    echo "install took ${SECONDS}s"
    SECONDS=0
    OUT=$OUT timeout 200 bash bench/gpu_profile.sh "$SIZE" "$RATE" 10 2>&1 | tail -3
    echo "profile took ${SECONDS}s"
    first=0
  fi
  SECONDS=0
  bash bench/gpu_e2e.sh "$SIZE" "$RATE" "$RATE" "$S" > "$OUT/e2e_${SIZE}.log" 2>&1
  echo "e2e $SIZE@$RATE took ${SECONDS}s"
  grep -E "^\| ($SIZE)" "$OUT/e2e_${SIZE}/e2e.md" || tail -20 "$OUT/e2e_${SIZE}.log"
done
