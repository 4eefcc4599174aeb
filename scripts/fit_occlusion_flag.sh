#!/usr/bin/env bash
# Refit the bundled learned occlusion flag (opreid_builder/curation/models/occlusion_flag.json).
#
#   scripts/fit_occlusion_flag.sh PARTIAL_ILIDS_DIR POSE_MODEL [OUT]
#
# PARTIAL_ILIDS_DIR holds Probe/ (partial crops) and Gallery/ (whole-body crops), e.g.
# ../shared/data/partial_ilids/Partial_iLIDS; POSE_MODEL is the pose model curation runs with
# (../shared/models/yolo26n-pose-int8-256.onnx). Synthetic crops are drawn at three sizes (the pose
# model sees them as it sees real crops) into a temporary folder. About 7 minutes on 2 CPU cores.
set -euo pipefail
PIL=${1:?usage: $0 PARTIAL_ILIDS_DIR POSE_MODEL [OUT]}
MODEL=${2:?usage: $0 PARTIAL_ILIDS_DIR POSE_MODEL [OUT]}
OUT=${3:-opreid_builder/curation/models/occlusion_flag.json}
OPREID=${OPREID:-opreid}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
common=(--images-per-identity 8-12 --occluded-fraction 0.5)
"$OPREID" synth "$WORK/s128" --identities 60 --seed 11 "${common[@]}"
"$OPREID" synth "$WORK/s256" --identities 100 --seed 12 --size 256x128 "${common[@]}"
"$OPREID" synth "$WORK/s160" --identities 100 --seed 13 --size 160x64 "${common[@]}"
"$OPREID" occlusion fit --occluded "$PIL/Probe" --holistic "$PIL/Gallery" --name partial_ilids \
    --synth "$WORK/s128" --synth "$WORK/s256" --synth "$WORK/s160" --pose-model "$MODEL" \
    --cut-holistic --max-holistic-flagged 0.05 --flag-name opreid-learned --flag-version 1 -o "$OUT"
