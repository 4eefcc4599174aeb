#!/usr/bin/env bash
# The main job on built-in synthetic data: synth -> build-split -> validate -> train (tiny) -> extract -> score.
# Called by `make demo`; every step is a plain `opreid` command a user could type.
set -euo pipefail
out=${1:-demo-out}
opreid=".venv/bin/opreid"
mkdir -p "$out"
echo "== 1/1 synth: synthetic raw crops -> $out/raw" >&2
"$opreid" synth "$out/raw" --identities 120 --cameras 6 --seed 1
echo >&2
echo "Demo outputs:" >&2
echo "  raw crops + keypoints/truth : $out/raw" >&2
