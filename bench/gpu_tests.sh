#!/usr/bin/env bash
# The GPU tests on the device machine, from the repository root (CuPy required: its
# skips become failures):   OUT=... bash bench/gpu_tests.sh TEST_FILE...
# Installs the wheels of .whl/ and the project like bench/gpu_e2e.sh, then runs pytest
# on the installed package (the image has pytest; not pytest-benchmark: addopts off).
set -uo pipefail
OUT=${OUT:-/tmp/out}
if [ ! -d /tmp/site2/livesr ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  python3 -m pip install -q --no-deps --no-build-isolation --no-compile --target /tmp/site2 . >/tmp/build.log 2>&1 \
    || { tail -30 /tmp/build.log; exit 1; }
fi
export PYTHONPATH=/tmp/site2:/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
export LIVESR_CACHE_DIR=/tmp/livesr-cache LIVESR_REQUIRE_BACKENDS=cupy
nvidia-smi -L
python3 -m pytest -q -p no:cacheprovider -o addopts="" -o filterwarnings="error::pytest.PytestUnraisableExceptionWarning" --import-mode=importlib \
  -W "ignore::DeprecationWarning" "$@" 2>&1 | tee "$OUT/gpu_tests.log" | tail -25
