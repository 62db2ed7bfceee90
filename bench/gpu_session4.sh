#!/usr/bin/env bash
# This session's GPU call (carry .whl): the sweep's CUDA parity test, the sweep on
# CuPy (device resident, per call) and numpy, then NanoPyx's sweep beside CuPy's on
# the same stacks:   OUT=... bash bench/gpu_session4.sh
set -uo pipefail
OUT=${OUT:-/tmp/out}
SECONDS=0
mkdir -p $OUT/sweep; OUT=$OUT/sweep timeout 150 bash bench/gpu_tests.sh \
  tests/kernels/test_kernels_sweep_device.py | tail -4
echo "sweep test took ${SECONDS}s"; SECONDS=0
export PYTHONPATH=/tmp/site2:/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
export LIVESR_CACHE_DIR=/tmp/livesr-cache
SW="python3 bench/sweep_bench.py --no-nanopyx --no-memory --magnification 2 --radii 1 1.5 --sensitivities 1 2"
RUNS64=("cupy:" "cupy:--per-call" "numpy:"); [ -n "${QUICK:-}" ] && RUNS64=("cupy:" "numpy:")
for run in "${RUNS64[@]}"; do
  impl=${run%%:*}; extra=${run#*:}; json=$OUT/sweep_gpu${extra:+_per_call}.json
  timeout 60 $SW --impl $impl $extra --size 64 --frames 30 --rounds 3 --json $json \
    > /tmp/sweep_$impl.log 2>&1; grep -E "per_pair|scoring" /tmp/sweep_$impl.log | head -3
done
RUNS256=("cupy::2" "cupy:--per-call:2" "numpy::1"); [ -n "${QUICK:-}" ] && RUNS256=()
for run in "${RUNS256[@]}"; do
  impl=${run%%:*}; rest=${run#*:}; extra=${rest%%:*}; json=$OUT/sweep_gpu${extra:+_per_call}.json
  timeout 90 $SW --impl $impl $extra --size 256 --frames 100 --rounds ${run##*:} --json $json \
    > /tmp/sweep_256.log 2>&1; grep -E "per_pair|scoring" /tmp/sweep_256.log | head -3
done
echo "sweep bench took ${SECONDS}s"; SECONDS=0
timeout 200 bash bench/gpu_nanopyx.sh
