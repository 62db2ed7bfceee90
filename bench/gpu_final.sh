#!/usr/bin/env bash
# The issue-13 H100 figures in one command (single trials at the target rates):
#   OUT=... bash bench/gpu_final.sh SECONDS
set -uo pipefail
S=${1:-15}
bash bench/gpu_e2e.sh 256 2000 2000 "$S" > "$OUT/e2e_256_gil05.log" 2>&1
mv "$OUT/e2e_256" "$OUT/e2e_256_gil05"
export LIVESR_GIL_SWITCH_MS=0.1
bash bench/gpu_e2e.sh 256 2000 2000 "$S" > "$OUT/e2e_256_gil01.log" 2>&1
bash bench/gpu_e2e.sh 512 1000 1000 "$S" > "$OUT/e2e_512.log" 2>&1
bash bench/gpu_e2e.sh 2048 100 100 "$S" > "$OUT/e2e_2048.log" 2>&1
for f in "$OUT"/e2e_*/e2e.md; do echo "== $f"; grep -E "^\| (256|512|2048)" "$f"; done
