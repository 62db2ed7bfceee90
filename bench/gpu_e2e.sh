#!/usr/bin/env bash
# End-to-end figures on a GPU machine (the device tool's H100), from the repository root:
#   bash bench/gpu_e2e.sh SIZE START MAX [SECONDS] [extra livesr bench args...]
# Needs: python3 with numpy/scipy/cupy/Cython/numba/tifffile/tqdm (the GPU image) and the
# wheels in .whl/ that the image lacks (pyzmq zarr numcodecs donfig google-crc32c mako
# platformdirs py-spy; see .library/device/README.md for how they were fetched).
set -euo pipefail
SIZE=${1:?size}; START=${2:?start rate}; MAX=${3:?max rate}; SECONDS_=${4:-30}; shift 4 || true
OUT=${OUT:-/tmp/out}
if [ ! -d /tmp/site2/livesr ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  python3 -m pip install -q --no-deps --no-build-isolation --no-compile --target /tmp/site2 . >/tmp/build.log 2>&1 \
    || { tail -30 /tmp/build.log; exit 1; }
fi
export PYTHONPATH=/tmp/site2:/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
export LIVESR_CACHE_DIR=/tmp/livesr-cache
nvidia-smi -L
python3 -m livesr.stream.cli bench --e2e "$OUT/e2e_${SIZE}" --sizes "$SIZE" \
  --seconds "$SECONDS_" --start-rate "$START" --max-rate "$MAX" "$@"
