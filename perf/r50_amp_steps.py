"""N training steps of the R50 paper preset with mixed precision on a synthetic release: images per second,
peak GPU memory, and BED's operating range (feature norms, pair distances, each part of BED and the
gradient norm it sends to the features) at the first step, the middle step and the last one.

The steps are the trainer's own (`Trainer.train_batches` and `Trainer.train_step`: PK batches from the
release's images through the configured input path, augmentation, CBE, forward, backward, Adam, ME), so
the figures are what `opreid train` gets. The baseline, measured in the same run on the same data, is the SBS network and losses at the
preset's input size and K (every Table 5 switch off); the ratio of images per second is printed. Without --data the script builds its
own small synthetic release (synth + build-split, no pose model, no internet); no pretrained weights
are needed (random init unless --pretrained PATH). As configured, the first 1000 steps of the preset
freeze the backbone (FastReID's schedule); --no-freeze measures the steady state instead.

    .venv/bin/python perf/r50_amp_steps.py                        # CUDA, 200 steps, baseline 50 steps
    .venv/bin/python perf/r50_amp_steps.py --device cpu --steps 2 --batch 8 --baseline-steps 0 \
        input.height=128 input.width=64                           # CPU smoke test (any config override)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

RANGE_KEYS = ("feat_norm", "d_pos", "d_neg", "bed_pos", "bed_neg", "grad_pos", "grad_neg")


def build_release(work: Path, identities: int, train_ids: int, scale: float, seed: int) -> Path:
    """synth (256x128 crops, ground-truth keypoints) -> build-split: a release with a test split."""
    raw, rel = work / "raw", work / "release"

    def opreid(*args) -> None:
        cmd = [sys.executable, "-m", "opreid", *map(str, args)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"{' '.join(cmd[2:4])} failed: {res.stderr.strip().splitlines()[-1]}")

    opreid("synth", raw, "--identities", identities, "--cameras", 6, "--size", "256x128", "--seed", seed,
           "--workers", 4, "--no-progress")  # fmt: skip
    opreid("build-split", raw, "-o", rel, "--keypoints", raw / "keypoints.parquet", "--preset", "opreid",
           "--scale", scale, "--train-ids", train_ids, "--train-images", "none", "--seed", seed, "--workers", 4, "--no-progress")  # fmt: skip
    return rel


def run_steps(preset: str, overrides: list[str], data: Path, run_dir: Path, device: torch.device, steps: int,
              measure_at: set[int]) -> dict:  # fmt: skip
    from reid_model.config import load_config
    from reid_model.distributed import DistContext
    from reid_model.engine.trainer import Trainer

    cfg = load_config(preset, overrides)
    trainer = Trainer(cfg, data, run_dir, DistContext(device=device), progress=False)
    batches = trainer.train_batches()
    ranges: dict[int, dict[str, float]] = {}
    forward_batch = trainer.batch * (2 if cfg.cbe else 1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timed, t0 = 0, None
    for step in range(steps + 1):
        if step == min(10, steps // 2):  # steps before this one warm up kernels, allocator and workers
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0, timed = time.perf_counter(), 0
        images, pids, camids = next(batches)
        values = trainer.train_step(images, pids, camids, measure=step in measure_at)
        timed += 1
        if step in measure_at:
            ranges[step] = {k.removeprefix("range_"): v for k, v in values.items() if k.startswith("range_")}
            ranges[step]["loss"] = values["loss"]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - t0
    return {
        "preset": preset,
        "overrides": overrides,
        "sampled_batch": trainer.batch,
        "forward_batch": forward_batch,
        "steps_timed": timed,
        "sec_per_step": elapsed / timed,
        "images_per_s": trainer.batch * timed / elapsed,
        "forward_images_per_s": forward_batch * timed / elapsed,
        "peak_gpu_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "range": ranges,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", type=Path, default=None, help="a built release (default: build a synthetic one)"
    )
    ap.add_argument("--work", type=Path, default=None, help="where to build the release and the run folders")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--baseline-steps", type=int, default=50, help="SBS baseline steps (0: skip)")
    ap.add_argument("--batch", type=int, default=64, help="sampled images per step (data.ims_per_batch)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--workers", type=int, default=8, help="data loader workers")
    ap.add_argument("--identities", type=int, default=400, help="synthetic identities (without --data)")
    ap.add_argument("--train-ids", type=int, default=250, help="of which training identities")
    ap.add_argument("--scale", type=float, default=0.02, help="build-split --scale of the test split")
    ap.add_argument("--pretrained", default="", help="a local state dict for the backbone (never downloaded)")
    ap.add_argument("--no-freeze", action="store_true", help="skip the preset's backbone-freeze phase")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object")
    ap.add_argument("overrides", nargs="*", help="config overrides key=value (e.g. input.height=384)")
    args = ap.parse_args(argv)
    if args.steps < 2:
        ap.error("--steps must be at least 2")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("CUDA is not available here; pass --device cpu for a (slow) smoke test")
    torch.backends.cudnn.benchmark = True  # FastReID's CUDNN_BENCHMARK
    work_ctx = tempfile.TemporaryDirectory(prefix="r50_amp_") if args.work is None else None
    work = Path(work_ctx.name) if work_ctx else args.work
    work.mkdir(parents=True, exist_ok=True)
    try:
        data = args.data or build_release(work, args.identities, args.train_ids, args.scale, seed=0)
        common = [f"model.pretrained={args.pretrained}", "solver.amp=true", f"data.ims_per_batch={args.batch}",
                  f"data.num_workers={args.workers}"] + (["solver.freeze_iters=0"] if args.no_freeze else [])  # fmt: skip
        common += args.overrides
        middle = args.steps // 2
        full = run_steps(
            "opreid_r50", common, data, work / "run_full", device, args.steps, {0, middle, args.steps}
        )
        results = {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                   "torch": torch.__version__, "data": str(data), "full": full}  # fmt: skip
        if args.baseline_steps > 0:
            off = ["cbe=false", "bed=false", "dnl=false", "rp=false", "me=false"]
            base = run_steps(
                "opreid_r50", common + off, data, work / "run_sbs", device, args.baseline_steps, set()
            )
            results["sbs_baseline"] = base
            results["images_per_s_ratio_full_vs_sbs"] = full["images_per_s"] / base["images_per_s"]
    finally:
        if work_ctx:
            work_ctx.cleanup()
    if args.json:
        print(json.dumps(results, sort_keys=True))
        return 0
    print(f"{results['device']} ({results['gpu']}), torch {results['torch']}, release {data}")
    rows = [("paper preset", full)] + (
        [("SBS baseline", results["sbs_baseline"])] if "sbs_baseline" in results else []
    )
    for label, r in rows:
        peak = f"{r['peak_gpu_mib']:.0f} MiB" if r["peak_gpu_mib"] is not None else "n/a"
        print(f"{label:>12}: {r['images_per_s']:8.1f} sampled images/s ({r['forward_images_per_s']:.1f} forward), "
              f"{r['sec_per_step'] * 1000:.1f} ms/step over {r['steps_timed']} steps, "
              f"batch {r['sampled_batch']} (forward {r['forward_batch']}), peak GPU memory {peak}")  # fmt: skip
    if "images_per_s_ratio_full_vs_sbs" in results:
        print(f"images/s ratio, paper preset / SBS: {results['images_per_s_ratio_full_vs_sbs']:.2f}")
    print("BED's operating range (BED's feature space; grad = |d part / d features|):")
    for step, r in sorted(full["range"].items()):
        for branch in ("global", "rp"):
            cells = "  ".join(f"{k} {r[f'{branch}_{k}']:.4g}" for k in RANGE_KEYS if f"{branch}_{k}" in r)
            print(f"  step {step:>4} {branch:>6}: {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
