#!/usr/bin/env bash
# NanoPyx 2.1.5's eSRRF parameter sweep beside livesr's on the device machine, same
# stacks, from the repository root (carry .whl):   OUT=... bash bench/gpu_nanopyx.sh
# .whl/nanopyx/ holds cp312 wheels of nanopyx and what its sweep runs on (see
# bench/nanopyx_gpu_sweep.py for the packages it imports but never calls).
# Writes $OUT/sweep_nanopyx_gpu.json (one entry per case, sweep_bench.py's format).
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
ls /etc/OpenCL/vendors 2>&1 | head -3
python3 -c "import pyopencl as cl; print([(p.name, [d.name for d in p.get_devices()]) for p in cl.get_platforms()])" 2>&1 | tail -2
# NPX_SEEDS64 (default "1"; on seed 1 NanoPyx's own ErrorMap stopped with scipy's
# BracketError on the H100, 2026-12-08), NPX_ROUNDS256 (default 2) and NPX_T256 (s,
# default 150: two timed rounds of NanoPyx at 256² take ~130 s after its warm-up, so
# pass NPX_ROUNDS256=1 NPX_T256=210 to be sure its JSON is written)
SECONDS=0
for seed in ${NPX_SEEDS64:-1}; do
  timeout 120 python3 bench/nanopyx_gpu_sweep.py --impl cupy --no-memory --size 64 --frames 30 \
    --magnification 2 --radii 1 1.5 --sensitivities 1 2 --rounds 3 --seed $seed --json $OUT/sweep_nanopyx_gpu.json \
    > $OUT/npx_64_$seed.log 2>&1; grep -E "run types|per_pair|speedup|qnr_diff|same_best" $OUT/npx_64_$seed.log || tail -20 $OUT/npx_64_$seed.log
done
echo "64 took ${SECONDS}s"; SECONDS=0
[ -n "${QUICK:-}" ] && exit 0
timeout ${NPX_T256:-150} python3 bench/nanopyx_gpu_sweep.py --impl cupy --no-memory --size 256 --frames 100 \
  --magnification 2 --radii 1 1.5 --sensitivities 1 2 --rounds ${NPX_ROUNDS256:-2} --nanopyx-warmup 1 --json $OUT/sweep_nanopyx_gpu.json \
  > $OUT/npx_256.log 2>&1; grep -E "run types|per_pair|speedup|qnr_diff|same_best" $OUT/npx_256.log || tail -20 $OUT/npx_256.log
echo "256 took ${SECONDS}s"
