#!/usr/bin/env bash
# One device call that does the GPU chores of a session, from the repository root:
#   OUT=... bash bench/gpu_session.sh [SIZE:RATE ...]
# 1. the CUDA tests of the sliding window, window sums and map (CuPy required);
# 2. the parameter sweep: its CUDA parity test, then CuPy (device resident and per call)
#    and numpy at 64² x 30 and 256² x 100 (-> bench/results/sweep_gpu_h100*.json);
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
mkdir -p $OUT/sweep; OUT=$OUT/sweep timeout 120 bash bench/gpu_tests.sh \
  tests/kernels/test_kernels_sweep_device.py | tail -3
# the device-resident CuPy sweep and numpy -> sweep_gpu.json (the report's GPU rows);
# the per-call CuPy path (previous) -> sweep_gpu_per_call.json; same machine
SW="python3 bench/sweep_bench.py --no-nanopyx --no-memory --magnification 2 --radii 1 1.5 --sensitivities 1 2"
for run in "cupy:" "cupy:--per-call" "numpy:"; do
  impl=${run%%:*}; extra=${run#*:}; json=$OUT/sweep_gpu${extra:+_per_call}.json
  timeout 100 $SW --impl $impl $extra --size 64 --frames 30 --rounds 3 --json $json \
    > /tmp/sweep_$impl.log 2>&1; tail -2 /tmp/sweep_$impl.log
done
for run in "cupy::2" "cupy:--per-call:2" "numpy::1"; do
  impl=${run%%:*}; rest=${run#*:}; extra=${rest%%:*}; json=$OUT/sweep_gpu${extra:+_per_call}.json
  timeout 150 $SW --impl $impl $extra --size 256 --frames 100 --rounds ${run##*:} --json $json \
    > /tmp/sweep_256.log 2>&1; tail -2 /tmp/sweep_256.log
done
echo "sweep took ${SECONDS}s"; SECONDS=0
for case in "$@"; do
  SIZE=${case%%:*}; RATE=${case##*:}
  OUT=/tmp/e2e timeout 170 bash bench/gpu_e2e.sh $SIZE $RATE $RATE 20 > $OUT/e2e_${SIZE}.log 2>&1
  cp /tmp/e2e/e2e_${SIZE}/e2e.md $OUT/e2e_${SIZE}.md 2>/dev/null
  cp /tmp/e2e/e2e_${SIZE}/e2e.json $OUT/e2e_${SIZE}.json 2>/dev/null
  grep -E "^\| ($SIZE)" $OUT/e2e_${SIZE}.md || tail -6 $OUT/e2e_${SIZE}.log
  echo "e2e $SIZE@$RATE took ${SECONDS}s"; SECONDS=0
done
