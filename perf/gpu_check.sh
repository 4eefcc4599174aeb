#!/usr/bin/env bash
# The GPU figures of the training input path in one prepared run, under 10 minutes on one GPU:
#   1. perf/train_throughput.py: the paper preset (R50, 256x128, AMP), today's PIL input path against
#      the tensor path, then each speed lever alone (channels-last, bf16, fused Adam, compile);
#   2. perf/gpu_reference.py: the paper preset against SBS on CUHK01, 600 steps each.
# Each step has its own time limit, so a slow one cannot eat the other's share.
#
#   bash perf/gpu_check.sh CUHK01_RELEASE [OUT]     # CUHK01_RELEASE: `opreid import market1501 .../cuhk01 -o REL`
#   PRETRAINED=r50.pth bash perf/gpu_check.sh REL   # the reference run from local ImageNet weights
set -euo pipefail
REL=${1:?usage: perf/gpu_check.sh CUHK01_RELEASE [OUT]}
OUT=${2:-gpu-check}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
# steady state: past the preset's backbone-freeze phase (solver.freeze_iters=0)
timeout 300 "$PY" perf/train_throughput.py --preset opreid_r50 --device cuda --data "$REL" --steps 50 --warmup 10 \
    --levers model.pretrained= data.num_workers=8 solver.freeze_iters=0 2>&1 | tee "$OUT/throughput.txt" \
    || echo "train_throughput.py stopped early (status $?); the lines above are what it measured"
timeout 270 "$PY" perf/gpu_reference.py --data "$REL" --steps 600 --pretrained "${PRETRAINED:-}" --work "$OUT/reference" \
    2>&1 | tee "$OUT/reference.txt" || echo "gpu_reference.py stopped early (status $?)"
