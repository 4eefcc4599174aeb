#!/usr/bin/env bash
# The main job on built-in synthetic data, as plain `opreid` commands a user could type:
#   synth -> build-split -> validate -> review -> train (tiny) -> extract -> score -> release pack ->
#   check -> leaderboard (phases, selection, reveal).
# Called by `make demo` (after the venv is set up). A few minutes on 2 CPU cores.
set -euo pipefail
out=${1:-demo-out}
opreid=".venv/bin/opreid"
py=".venv/bin/python"

if [ -e "$out" ]; then
  if [ -f "$out/.opreid-demo" ]; then rm -rf "$out"; else
    echo "demo: $out exists and was not made by the demo; choose another folder (make demo DEMO=...)" >&2; exit 1
  fi
fi
mkdir -p "$out" && touch "$out/.opreid-demo"
step() { printf '\n== %s\n' "$*" >&2; }
json_get() { "$py" -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }

step "1/9 synth: synthetic raw crops (250 identities, 6 cameras) -> $out/raw"
"$opreid" synth "$out/raw" --identities 250 --cameras 6 --seed 1 --workers 2

# The preset at 2% keeps the paper's test side (70 query ids, 123 gallery ids) but only 35 train ids,
# too few for a model trained from scratch in minutes: the demo trains on 100 identities instead.
step "2/9 build-split: curate (ground-truth keypoints; faces masked by the bundled YuNet and head boxes) + OPReID split at 2% of the paper's size"
"$opreid" build-split "$out/raw" -o "$out/release" --keypoints "$out/raw/keypoints.parquet" \
  --preset opreid --scale 0.02 --train-ids 100 --train-images none --seed 1

step "3/9 validate: every invariant of the release"
"$opreid" validate "$out/release"

step "4/9 review: a static review site of the occlusion flags (click to toggle, download corrections.csv)"
"$opreid" review "$out/release"

step "5/9 train: the reference model, tiny CPU preset"
"$opreid" train --config tiny --data "$out/release" -o "$out/run" --no-progress

step "6/9 extract: query x gallery distance matrix in the public order"
"$opreid" extract --checkpoint "$out/run/checkpoints/last.pt" --data "$out/release" -o "$out/predictions.npy"

step "7/9 score: Market-protocol metrics against the hidden ground truth"
"$opreid" score "$out/predictions.npy" --data "$out/release" --plot "$out/cmc.png" --per-query "$out/per_query.csv"

step "8/9 release pack: the participants' package, checked alone; the submission checked against it offline"
"$opreid" release pack "$out/release" -o "$out/public"
"$opreid" validate --public "$out/public"
"$opreid" check "$out/predictions.npy" --data "$out/public"

step "9/9 leaderboard: init (database outside the release), a team, the final phase, submit, select, close, reveal"
rel="$out/release"
init=$("$opreid" leaderboard init --data "$rel" --json)
host=$(json_get "['host_token']" <<<"$init")
echo "leaderboard database: $(json_get "['db']" <<<"$init") (beside the release, not in it)" >&2
team=$("$opreid" leaderboard team add demo-team --data "$rel" --token "$host" --json | json_get "['token']")
"$opreid" leaderboard phase set final --start "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --data "$rel" --token "$host"
sub=$("$opreid" leaderboard submit "$out/predictions.npy" --data "$rel" --token "$team" --json \
  --method "opreid tiny (demo)" --description "reference model, tiny CPU preset" | json_get "['submission_id']")
"$opreid" leaderboard select "$sub" --data "$rel" --token "$team"
"$opreid" leaderboard show --data "$rel"
"$opreid" leaderboard phase close final --data "$rel" --token "$host"
"$opreid" leaderboard reveal --data "$rel" --token "$host"
"$opreid" leaderboard show --private --phase final --data "$rel"

cat >&2 <<MSG

Demo outputs ($out/):
  raw/                      synthetic crops, keypoints.parquet, truth.parquet
  release/                  the built benchmark: train/query/gallery.parquet, images/, README.md (dataset card),
                            dataset.json, private/ground_truth.parquet, review/index.html (the review site)
  release.host/             the host's folder beside it: leaderboard.db (mode 0600)
  public/                   what participants receive: no private file, sample_submission.npy, SUBMITTING.md
  run/                      training run: config.yaml, metrics.jsonl, curves.png, checkpoints/
  predictions.npy           the submission (query x gallery distances)
  cmc.png, per_query.csv    the score's CMC curve and per-query metrics
Next: opreid leaderboard serve --data $out/release   (then open http://127.0.0.1:8000)
MSG
