#!/usr/bin/env bash
# One end-to-end trial under py-spy (pipeline process), from the repository root:
#   bash bench/gpu_profile.sh SIZE RATE SECONDS   (after bench/gpu_e2e.sh installed the project)
set -euo pipefail
SIZE=${1:?size}; RATE=${2:?rate}; SECS=${3:-10}
OUT=${OUT:-/tmp/out}
export PYTHONPATH=/tmp/site2:/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
export LIVESR_CACHE_DIR=/tmp/livesr-cache
D=$(mktemp -d); N=$(python3 -c "print(int($RATE*$SECS))")
IV=$(python3 -c "print(1000/$RATE)")
cat > $D/c.toml <<TOML
[esrrf]
window = 50
stride = 10
magnification = 5
radius = 1.5
[drift]
enabled = true
[stream]
frames = $N
output = "$D/out"
[sim]
seed = 1
[sim.camera]
shape = [$SIZE, $SIZE]
interval_ms = $IV
exposure_ms = $IV
TOML
py-spy record --threads --idle -r 200 -f raw -o $OUT/prof_${SIZE}_${RATE}.txt -- \
  python3 -m livesr.stream.cli run --listen ipc://$D/in.ipc --config $D/c.toml --frame-shape ${SIZE}x${SIZE} --no-status 2> $OUT/pipe_${SIZE}_${RATE}.log &
PP=$!
for i in $(seq 1 600); do grep -q "listening on" $OUT/pipe_${SIZE}_${RATE}.log 2>/dev/null && break; sleep 0.5; done
python3 -m livesr.stream.cli run --connect ipc://$D/in.ipc --config $D/c.toml --bank 200 --no-status 2> $OUT/src_${SIZE}_${RATE}.log || true
wait $PP || true
cp $D/out/summary.json $OUT/summary_${SIZE}_${RATE}.json
python3 - <<PY
import json; s=json.load(open("$OUT/summary_${SIZE}_${RATE}.json"))
print({k: s[k] for k in ("frames_acquired","frames_persisted","frames_in_gaps","windows_published","windows_skipped","frames_not_offered")}, "p50", s["latency_ms"]["p50"], "p99", s["latency_ms"]["p99"], s["engine"], s["implementation"], s["memory"], s["sr_saved"])
PY
