#!/usr/bin/env bash
# One device call that does the GPU chores of a session, from the repository root:
#   OUT=... bash bench/gpu_session.sh
# 1. the CUDA tests of the sliding window, window sums and map (CuPy required);
# 2. the parameter sweep on CuPy and numpy (bench/results/sweep_gpu_h100.json);
# 3. a 10 s py-spy profile of the pipeline at 256^2 @ 2000 frames/s;
# 4. one end-to-end trial at 2048^2 @ 100 frames/s for 15 s.
set -uo pipefail
OUT=${OUT:-/tmp/out}
SECONDS=0
timeout 300 bash bench/gpu_tests.sh tests/kernels/test_kernels_sliding_device.py \
  tests/kernels/test_kernels_sliding_batch.py tests/kernels/test_kernels_sliding_schedule.py \
  tests/kernels/test_kernels_sliding_framemap.py tests/kernels/test_kernels_esrrf_map_backends.py
echo "tests took ${SECONDS}s"; SECONDS=0
export PYTHONPATH=/tmp/site2:/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
export LIVESR_CACHE_DIR=/tmp/livesr-cache
for impl in cupy numpy; do
  timeout 120 python3 bench/sweep_bench.py --impl $impl --no-nanopyx --no-memory --size 64 \
    --frames 30 --magnification 2 --radii 1 1.5 --sensitivities 1 2 --rounds 3 \
    --json $OUT/sweep_gpu.json 2>&1 | tail -4
done
timeout 150 python3 bench/sweep_bench.py --impl cupy --no-nanopyx --no-memory --size 256 \
  --frames 100 --magnification 2 --radii 1 1.5 --sensitivities 1 2 --rounds 2 \
  --json $OUT/sweep_gpu.json 2>&1 | tail -3
echo "sweep took ${SECONDS}s"; SECONDS=0
OUT=$OUT timeout 150 bash bench/gpu_profile.sh 256 2000 10 2>&1 | tail -3
echo "profile took ${SECONDS}s"; SECONDS=0
timeout 150 bash bench/gpu_e2e.sh 2048 100 100 15 > $OUT/e2e_2048.log 2>&1
tail -15 $OUT/e2e_2048.log
echo "e2e 2048 took ${SECONDS}s"
