"""A GPU reference run on real crops: the paper preset (`opreid_r50`) against SBS (`sbs_r50`), the same
number of steps each, R50 from random initialisation or `--pretrained PATH`, on CUHK01 imported as a
Market-1501 release (871 training identities; test: 100 query identities). Prints mAP, Rank-1, training
images/s and wall time per preset, and the paper / SBS ratios.

Both presets run through `train_model` (what `opreid train` runs: the tensor input path, the preset's
mixed precision on CUDA) with the paper's schedule scaled to `--steps`: warmup 16.5% of the steps and
the backbone frozen for the first 8.25% (2000 and 1000 of Market-1501's ~12,100 iterations), constant
LR for the first half, then cosine. Evaluation only at the end, on the release's test split.

Sized for one GPU in 10 minutes with set-up (import ~5 s, two decoded-crop caches, 2 x --steps steps).

    .venv/bin/python perf/gpu_reference.py                                # CUDA, 1000 steps per preset
    .venv/bin/python perf/gpu_reference.py --pretrained r50_imagenet.pth  # from ImageNet weights
    .venv/bin/python perf/gpu_reference.py --device cpu --steps 4 --batch 16 input.height=128 input.width=64
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def default_source() -> Path:
    """`shared/data/cuhk01` beside the checkout or beside a folder above it (a worktree's)."""
    repo = Path(__file__).resolve().parents[1]
    for folder in repo.parents:
        candidate = folder / "shared" / "data" / "cuhk01"
        if candidate.is_dir():
            return candidate
    return repo.parent / "shared" / "data" / "cuhk01"


PRESETS = ("sbs_r50", "opreid_r50")
#: The paper schedule's proportions on Market-1501 (60 epochs of 202 iterations = 12,120).
WARMUP_SHARE, FREEZE_SHARE = 2000 / 12120, 1000 / 12120


def import_release(source: Path, out: Path) -> Path:
    """`opreid import market1501 SOURCE -o OUT`, once (a finished import has its dataset.json)."""
    if (out / "dataset.json").is_file():
        return out
    cmd = [
        sys.executable,
        "-m",
        "opreid",
        "import",
        "market1501",
        str(source),
        "-o",
        str(out),
        "--no-progress",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"opreid import failed: {(res.stderr.strip().splitlines() or ['?'])[-1]}")
    return out


def schedule(steps: int) -> tuple[int, list[str]]:
    """The preset's schedule scaled to about `steps` iterations: (exact steps, overrides)."""
    epochs = min(20, steps)
    per_epoch = max(1, steps // epochs)
    total = epochs * per_epoch
    return total, [
        f"solver.max_epochs={epochs}", f"solver.iters_per_epoch={per_epoch}", f"solver.delay_epochs={epochs // 2}",
        f"solver.warmup_iters={round(WARMUP_SHARE * total)}", f"solver.freeze_iters={round(FREEZE_SHARE * total)}",
        "train.eval_period=0", "train.eval_at_start=false", f"train.checkpoint_period={epochs}",
        f"train.log_period={max(1, total // 20)}",
    ]  # fmt: skip


def run_preset(preset: str, data: Path, run_dir: Path, device: str, overrides: list[str]) -> dict:
    import torch

    from reid_model.engine.training import train_model

    t = time.perf_counter()
    summary = train_model(preset, data, run_dir, device=device, overrides=tuple(overrides))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - t
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    timed = train[1:] or train  # the first log period carries the warm-up (allocator, cuDNN autotuning)
    sec_per_iter = statistics.median(r["sec_per_iter"] for r in timed)
    env = json.loads((run_dir / "environment.json").read_text())
    final = summary["final_eval"] or {}
    sampled = _sampled_batch(run_dir)
    return {
        "preset": preset,
        "steps": summary["iteration"],
        "mAP": final.get("mAP"),
        "rank1": final.get("rank1"),
        "wall_s": wall,
        "sec_per_iter": sec_per_iter,
        "images_per_s": sampled / sec_per_iter,
        "sampled_batch": sampled,
        "final_loss": train[-1]["loss"] if train else None,
        "speed_levers": env.get("speed_levers"),
        "input_pipeline": env.get("input_pipeline"),
        "finished": summary["finished"],
    }


def _sampled_batch(run_dir: Path) -> int:
    from reid_model.config import load_config
    from reid_model.engine.trainer import sampled_batch_size

    return sampled_batch_size(load_config(run_dir / "config.yaml"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=None, help="CUHK01 in the Market-1501 layout "
                    "(default: ../shared/data/cuhk01 beside the checkout or a folder above it)")  # fmt: skip
    ap.add_argument("--data", type=Path, default=None, help="an imported release (default: import --source)")
    ap.add_argument(
        "--work", type=Path, default=None, help="folder for the release and the runs (default: temp)"
    )
    ap.add_argument(
        "--steps", type=int, default=1000, help="training steps per preset (rounded to the schedule)"
    )
    ap.add_argument("--device", default=None, help="cuda (default when available) | cuda:N | cpu")
    ap.add_argument("--pretrained", default="", help="a local ResNet-50 state dict (default: random init)")
    ap.add_argument("--batch", type=int, default=64, help="sampled images per step (data.ims_per_batch)")
    ap.add_argument("--workers", type=int, default=8, help="decoded-crop cache build processes")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object")
    ap.add_argument(
        "overrides", nargs="*", help="config overrides for both presets (e.g. train.amp_dtype=bfloat16)"
    )
    args = ap.parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else None)
    if device is None:
        raise SystemExit("no CUDA device here; pass --device cpu (with a small --steps) for a smoke run")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("CUDA is not available here; use --device cpu")
    if args.steps < 1:
        ap.error("--steps must be at least 1")
    args.source = args.source or default_source()
    start = time.perf_counter()
    work_ctx = tempfile.TemporaryDirectory(prefix="gpu_reference_") if args.work is None else None
    work = Path(work_ctx.name) if work_ctx else args.work
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.data is None and not args.source.is_dir():
            raise SystemExit(f"{args.source} not found: pass --source CUHK01 or --data RELEASE")
        t = time.perf_counter()
        data = args.data or import_release(args.source, work / "cuhk01")
        setup_s = time.perf_counter() - t
        steps, sched = schedule(args.steps)
        common = [f"model.pretrained={args.pretrained}", f"data.ims_per_batch={args.batch}",
                  f"data.num_workers={args.workers}", *sched, *args.overrides]  # fmt: skip
        results = {"device": device, "torch": torch.__version__, "data": str(data), "steps": steps,
                   "gpu": torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else None,
                   "pretrained": args.pretrained or None, "import_s": setup_s, "overrides": common}  # fmt: skip
        for preset in PRESETS:
            results[preset] = run_preset(preset, data, work / "runs" / preset, device, common)
        results["total_wall_s"] = time.perf_counter() - start
    finally:
        if work_ctx:
            work_ctx.cleanup()
    if args.json:
        print(json.dumps(results, sort_keys=True))
        return 0
    init = f"from {args.pretrained}" if args.pretrained else "random init"
    print(f"{device} ({results['gpu'] or 'CPU'}), torch {results['torch']}, CUHK01 release {data}, R50 {init}, "
          f"{steps} steps per preset, sampled batch {args.batch}")  # fmt: skip
    for preset in PRESETS:
        r = results[preset]
        fmt = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
        print(f"{preset:>11}: mAP {fmt(r['mAP'])}, Rank-1 {fmt(r['rank1'])}, {r['images_per_s']:.1f} sampled "
              f"images/s ({r['sec_per_iter'] * 1000:.1f} ms/step), wall {r['wall_s']:.1f} s")  # fmt: skip
    a, b = results["opreid_r50"], results["sbs_r50"]
    if a["mAP"] is not None and b["mAP"] is not None:
        print(f"paper / SBS: mAP {a['mAP'] - b['mAP']:+.3f}, Rank-1 {a['rank1'] - b['rank1']:+.3f}, images/s ratio "
              f"{a['images_per_s'] / b['images_per_s']:.2f}")  # fmt: skip
    print(f"total wall time with set-up: {results['total_wall_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
