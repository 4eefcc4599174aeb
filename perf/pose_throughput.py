"""Pose throughput: curate's batched, streamed pose stage vs a per-image `model.predict(path)` loop.

    .venv/bin/python perf/pose_throughput.py              # 256 synth crops
    .venv/bin/python perf/pose_throughput.py --model yolo11n-pose.pt --device 0 --batch-size 64

Both paths use the same loaded model on the same 256 synth crops (64 x 128 JPEG files), timed in
alternating rounds so that load from other processes hits both alike. Reported: crops per second
of each, their ratio (goal >= 3x), and whether both give the same person and keypoints.

- baseline: `for f in files: model.predict(f)` (Ultralytics reads and decodes each file itself);
- batched: `PoseEstimator.run` over crops decoded ahead on threads, `--batch-size` per call.

The model comes from --model, else $OPREID_POSE_MODEL, else ../shared/models/yolo26n-pose-int8-256.onnx
beside the checkout. A model exported with a fixed batch of 1 (like that int8 ONNX) makes Ultralytics
run one session call per crop inside a batch, so batching can then only save per-call overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from opreid_builder.curation.pose import PoseEstimator
from opreid_builder.curation.sources import prefetch, read_and_decode
from opreid_builder.synth.generator import SynthConfig, generate

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "shared" / "models" / "yolo26n-pose-int8-256.onnx"


def baseline(est: PoseEstimator, files: list[Path], kwargs: dict) -> list:
    out = []
    for f in files:
        res = est.model.predict(str(f), verbose=False, **kwargs)[0]
        out.append(PoseEstimator._to_result(res, res.orig_shape[1], res.orig_shape[0]))
    return out


def batched(est: PoseEstimator, files: list[Path], workers: int) -> list:
    stream = (
        (i, d.rgb) for i, (_, d) in enumerate(prefetch(files, lambda f: read_and_decode(f)[1], workers))
    )
    return [r for _, r in est.run(stream)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.environ.get("OPREID_POSE_MODEL") or str(DEFAULT_MODEL))
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default=None)
    ap.add_argument("--imgsz", type=int, default=None)
    ap.add_argument("--half", action="store_true")
    ap.add_argument("--rounds", type=int, default=2, help="alternating timing rounds per path")
    args = ap.parse_args()
    if not Path(args.model).exists():
        sys.exit(f"pose model not found: {args.model} (give --model or set OPREID_POSE_MODEL)")

    with tempfile.TemporaryDirectory() as tmp:
        per_id = 12
        generate(
            Path(tmp),
            SynthConfig(
                identities=args.images // per_id + 1, cameras=4, images_per_identity=(per_id, per_id), seed=5
            ),
        )
        files = sorted(Path(tmp).glob("*.jpg"))[: args.images]
        est = PoseEstimator(args.model, args.device, args.imgsz, args.half, args.batch_size)
        kwargs = {k: v for k, v in (("device", args.device), ("imgsz", args.imgsz)) if v}
        kwargs.update(conf=est.person_conf, half=args.half)
        baseline(est, files[:4], kwargs)  # load and warm up
        batched(est, files[:4], args.workers)
        t_base, t_batch = [], []
        for _ in range(args.rounds):
            t = time.perf_counter()
            base = baseline(est, files, kwargs)
            t_base.append(time.perf_counter() - t)
            t = time.perf_counter()
            ours = batched(est, files, args.workers)
            t_batch.append(time.perf_counter() - t)
    same = sum(
        a.n_persons == b.n_persons
        and (a.keypoints is None or np.allclose(a.keypoints, b.keypoints, atol=0.5))
        for a, b in zip(base, ours, strict=True)
    )
    n = len(files)
    tb, tq = min(t_base), min(t_batch)
    report = {
        "model": Path(args.model).name, "images": n, "batch_size": args.batch_size, "workers": args.workers,
        "device": args.device or "default", "baseline_img_per_s": round(n / tb, 2), "batched_img_per_s": round(n / tq, 2),
        "ratio": round(tb / tq, 3), "same_results": f"{same}/{n}", "cpu_count": os.cpu_count(),
    }  # fmt: skip
    print(
        f"pose on {n} synth crops with {report['model']}: per-image predict loop {report['baseline_img_per_s']} img/s, "
        f"batched (batch {args.batch_size}, {args.workers} decode threads) {report['batched_img_per_s']} img/s; "
        f"ratio {report['ratio']}x (goal >= 3x); same person and keypoints on {same}/{n}"
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
