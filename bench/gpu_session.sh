#!/usr/bin/env bash
# One device call that does the GPU chores of a session, from the repository root:
#   OUT=... bash bench/gpu_session.sh [SIZE:RATE ...]
# 1. the CUDA tests of the sliding window, window sums and map (CuPy required);
# 2. the parameter sweep on CuPy and numpy (-> bench/results/sweep_gpu_h100.json);
# 3. a 20 s end-to-end trial at each SIZE:RATE (only the tables come back: the run
#    folders stay on the device machine, the device tool returns few files).
set -uo pipefail
OUT=${OUT:-/tmp/out}
SECONDS=0
timeout 200 bash bench/gpu_tests.sh tests/kernels/test_kernels_sliding_device.py \
  tests/kernels/test_kernels_sliding_batch.py tests/kernels/test_kernels_sliding_schedule.py \
  tests/kernels/test_kernels_sliding_framemap.py tests/kernels/test_kernels_esrrf_map_backends.py \
  tests/kernels/test_kernels_nogil.py
echo "tests took ${SECONDS}s"; SECONDS=0
export PYTHONPATH=/tmp/site2:/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
export LIVESR_CACHE_DIR=/tmp/livesr-cache
for impl in cupy numpy; do
  timeout 100 python3 bench/sweep_bench.py --impl $impl --no-nanopyx --no-memory --size 64 \
    --frames 30 --magnification 2 --radii 1 1.5 --sensitivities 1 2 --rounds 3 \
    --json $OUT/sweep_gpu.json > /tmp/sweep_$impl.log 2>&1; tail -2 /tmp/sweep_$impl.log
done
timeout 90 python3 bench/sweep_bench.py --impl cupy --no-nanopyx --no-memory --size 256 \
  --frames 100 --magnification 2 --radii 1 1.5 --sensitivities 1 2 --rounds 2 \
  --json $OUT/sweep_gpu.json > /tmp/sweep_256.log 2>&1; tail -2 /tmp/sweep_256.log
echo "sweep took ${SECONDS}s"; SECONDS=0
for case in "$@"; do
  SIZE=${case%%:*}; RATE=${case##*:}
  OUT=/tmp/e2e timeout 170 bash bench/gpu_e2e.sh $SIZE $RATE $RATE 20 > $OUT/e2e_${SIZE}.log 2>&1
  cp /tmp/e2e/e2e_${SIZE}/e2e.md $OUT/e2e_${SIZE}.md 2>/dev/null
  cp /tmp/e2e/e2e_${SIZE}/e2e.json $OUT/e2e_${SIZE}.json 2>/dev/null
  grep -E "^\| ($SIZE)" $OUT/e2e_${SIZE}.md || tail -6 $OUT/e2e_${SIZE}.log
  echo "e2e $SIZE@$RATE took ${SECONDS}s"; SECONDS=0
done
