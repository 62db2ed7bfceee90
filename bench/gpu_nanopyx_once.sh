#!/usr/bin/env bash
# NanoPyx's sweep on the device machine, one timed round after one warm-up round
# (256²×100), and 64²×30 on seeds 2 and 3 (on seed 1 NanoPyx's own ErrorMap stopped
# with scipy's BracketError on the H100, 2026-12-08): OUT=... bash bench/gpu_nanopyx_once.sh
set -uo pipefail
OUT=${OUT:-/tmp/out}
if [ ! -d /tmp/site2/livesr ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  python3 -m pip install -q --no-deps --no-build-isolation --no-compile --target /tmp/site2 . >/tmp/build.log 2>&1 \
    || { tail -30 /tmp/build.log; exit 1; }
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/npx .whl/nanopyx/*.whl
export PYTHONPATH=/tmp/site2:/tmp/site:/tmp/npx PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
export LIVESR_CACHE_DIR=/tmp/livesr-cache
SW="python3 bench/nanopyx_gpu_sweep.py --impl cupy --no-memory --magnification 2 --radii 1 1.5 --sensitivities 1 2"
timeout 210 $SW --size 256 --frames 100 --rounds 1 --nanopyx-warmup 1 --json $OUT/sweep_nanopyx_gpu.json \
  > $OUT/npx_256.log 2>&1; grep -E "run types|per_pair|speedup|qnr_diff|same_best" $OUT/npx_256.log || tail -5 $OUT/npx_256.log
for seed in 2 3; do
  timeout 35 $SW --size 64 --frames 30 --rounds 3 --seed $seed --json $OUT/sweep_nanopyx_gpu.json \
    > $OUT/npx_64_$seed.log 2>&1; grep -E "run types|per_pair|speedup|qnr_diff|same_best" $OUT/npx_64_$seed.log || tail -3 $OUT/npx_64_$seed.log
done
