"""The occlusion flag stage's cost per crop, against the pose stage alone (goal: under 5% of it).

    .venv/bin/python perf/occlusion_flag.py                    # 256 synth crops, the bundled learned flag
    .venv/bin/python perf/occlusion_flag.py --images 64 --rounds 2

Both stages run as curation runs them, on the same crops: `PoseStage` on batches of decoded crops
(the pose model, batched), then `OcclusionStage` on the pose columns it produced, with the learned
flag (features + logistic regression) and with the paper's rule. Rounds alternate pose and flag so
that load from other processes hits both alike. Reported: milliseconds per crop of each, and the
flag stage's time as a share of the pose stage's.

The model comes from --model, else $OPREID_POSE_MODEL, else ../shared/models/yolo26n-pose-int8-256.onnx
beside the checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from opreid_builder.curation.occlusion import PAPER_RULE
from opreid_builder.curation.occlusion_flag import LEARNED, PAPER, load_flag
from opreid_builder.curation.stages import OcclusionStage, PoseSettings, PoseStage
from opreid_builder.synth.generator import SynthConfig, generate

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "shared" / "models" / "yolo26n-pose-int8-256.onnx"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.environ.get("OPREID_POSE_MODEL") or str(DEFAULT_MODEL))
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = ap.parse_args()
    if not Path(args.model).is_file():
        sys.exit(f"no pose model at {args.model} (--model or $OPREID_POSE_MODEL)")
    import pyarrow as pa

    with tempfile.TemporaryDirectory() as tmp:
        ids = max(1, args.images // 8)
        generate(Path(tmp), SynthConfig(identities=ids, cameras=3, images_per_identity=(8, 8), seed=5))
        files = sorted(Path(tmp).glob("*.jpg"))[: args.images]
        from opreid_builder.curation.sources import read_and_decode

        decoded = [read_and_decode(f) for f in files]
        batch = pa.table({
            "sha256": [f.name for f in files],
            "data": [d for d, _ in decoded],
            "width": pa.array([im.rgb.shape[1] for _, im in decoded], pa.int32()),
            "height": pa.array([im.rgb.shape[0] for _, im in decoded], pa.int32()),
        })  # fmt: skip
    pose = PoseStage(PoseSettings(args.model, batch_size=args.batch_size))
    stages = {LEARNED: OcclusionStage(PAPER_RULE, load_flag(LEARNED)), PAPER: OcclusionStage(PAPER_RULE)}
    chunks = [batch.slice(i, args.batch_size) for i in range(0, batch.num_rows, args.batch_size)]
    pose(chunks[0])  # load the model and warm up outside the timing
    times = {"pose": 0.0, LEARNED: 0.0, PAPER: 0.0}
    for _ in range(args.rounds):
        for chunk in chunks:
            t = time.perf_counter()
            out = pose(chunk)
            times["pose"] += time.perf_counter() - t
            for name, stage in stages.items():
                t = time.perf_counter()
                stage(out)
                times[name] += time.perf_counter() - t
    n = args.rounds * batch.num_rows
    figures = {
        "crops": batch.num_rows,
        "rounds": args.rounds,
        "pose_ms_per_crop": round(1000 * times["pose"] / n, 3),
        "learned_flag_ms_per_crop": round(1000 * times[LEARNED] / n, 4),
        "paper_rule_ms_per_crop": round(1000 * times[PAPER] / n, 4),
        "learned_flag_share_of_pose": round(times[LEARNED] / times["pose"], 5),
        "paper_rule_share_of_pose": round(times[PAPER] / times["pose"], 5),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"{batch.num_rows} synth crops x {args.rounds} rounds, batches of {args.batch_size}")
    print(f"pose stage:           {figures['pose_ms_per_crop']:.3f} ms per crop")
    print(
        f"learned flag stage:   {figures['learned_flag_ms_per_crop']:.4f} ms per crop "
        f"({100 * figures['learned_flag_share_of_pose']:.2f}% of pose; goal < 5%)"
    )
    print(
        f"paper rule stage:     {figures['paper_rule_ms_per_crop']:.4f} ms per crop "
        f"({100 * figures['paper_rule_share_of_pose']:.2f}% of pose)"
    )


if __name__ == "__main__":
    main()
