"""Training throughput of a preset on a device: the new input path (`loader.pipeline=tensor`: decoded-crop
cache + batched augmentation on the training device) against today's (`pil`: JPEG decode and PIL
transforms per image in loader workers), measured in the same run on the same release.

Per input path, over `--steps` timed steps after `--warmup` steps (the trainer's own batches and steps:
`Trainer.train_batches()` and `Trainer.train_step`):
  - sampled images/s (and forward images/s: CBE doubles the batch) and the wall time of the timed steps;
  - the data wait: the share of step time spent in `next(batches)` (waiting for loader workers, plus,
    on the tensor path, gathering from the cache and augmenting in the training loop);
  - CPU seconds per step of the training process and of its loader workers (the pil path's decoding,
    which on a small CPU competes with the model for the cores without showing up as wait);
  - GPU utilisation, sampled every 0.2 s during the timed steps (torch.cuda.utilization, else nvidia-smi);
  - peak memory: CUDA max_memory_allocated on GPU, the process's peak RSS on CPU.
Each measurement runs in its own process (clean memory and CPU accounting); `--repeat N` alternates
the two paths N times and reports each path's median round (a shared machine's load changes). The decoded-crop cache is
built (or found) before any timing; its build time is printed as a one-off cost. `--levers` also measures
the tensor path with each `train.*` speed lever switched on alone (channels-last, bf16 autocast, fused
Adam, torch.compile), where the device has it.

    .venv/bin/python perf/train_throughput.py --preset small --device cpu --steps 40 --data rel/cuhk01
    .venv/bin/python perf/train_throughput.py --preset opreid_r50 --device cuda --steps 200 --levers
Without --data a synthetic release is built (synth + build-split: 300 identities at 256x128).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve()
#: Each speed lever alone, as `--levers` measures them (CUDA only, apart from channels-last).
LEVERS = {
    "channels_last": ["train.channels_last=true"],
    "bf16": ["solver.amp=true", "train.amp_dtype=bfloat16"],
    "fused_adam": ["train.fused_adam=true"],
    "compile": ["train.compile=true"],
}


def build_release(work: Path, identities: int = 300, seed: int = 0) -> Path:
    raw, rel = work / "raw", work / "release"

    def opreid(*args) -> None:
        cmd = [sys.executable, "-m", "opreid", *map(str, args)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"{' '.join(cmd[2:4])} failed: {res.stderr.strip().splitlines()[-1]}")

    opreid("synth", raw, "--identities", identities, "--cameras", 6, "--size", "256x128", "--seed", seed,
           "--no-progress")  # fmt: skip
    opreid("build-split", raw, "-o", rel, "--keypoints", raw / "keypoints.parquet", "--preset", "opreid",
           "--scale", 0.02, "--train-ids", identities // 2, "--train-images", "none", "--seed", seed,
           "--no-progress")  # fmt: skip
    return rel


class UtilisationSampler:
    """GPU utilisation (%) sampled on a thread while the steps run."""

    def __init__(self, index: int, period: float = 0.2):
        self.index, self.period = index, period
        self.samples: list[float] = []
        self.source: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> float | None:
        import torch

        if self.source in (None, "torch.cuda.utilization"):
            try:
                value = float(torch.cuda.utilization(self.index))
                self.source = "torch.cuda.utilization"
                return value
            except Exception:  # no pynvml, or NVML refused: fall back to nvidia-smi
                self.source = "nvidia-smi"
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", str(self.index)],
                capture_output=True, text=True, timeout=5,
            )  # fmt: skip
            return float(out.stdout.strip().splitlines()[0])
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
            self.source = "unavailable"
            return None

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            value = self._read()
            if value is None:
                return
            self.samples.append(value)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)

    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def _children_cpu_seconds() -> float:
    """CPU seconds used so far by this process's live children (the loader workers)."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for child in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        for pid in child.read_text().split():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
            except (OSError, IndexError, ValueError):
                continue
    return total


def measure(args: argparse.Namespace) -> dict:
    """One input path (in this process): warm-up steps, then the timed steps."""
    import torch

    from reid_model.config import load_config
    from reid_model.distributed import DistContext
    from reid_model.engine.trainer import Trainer

    device = torch.device(args.device)
    cfg = load_config(args.preset, args.overrides)
    if args.threads:
        cfg.train.num_threads = args.threads
    with tempfile.TemporaryDirectory(prefix="throughput_") as run_dir:
        trainer = Trainer(cfg, args.data, run_dir, DistContext(device=device), progress=False)
        batches = trainer.train_batches()
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        for _ in range(args.warmup):
            trainer.train_step(*next(batches))
        sync()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        wait = 0.0
        workers0 = _children_cpu_seconds()
        cpu0 = time.process_time()
        util = UtilisationSampler(device.index or 0) if device.type == "cuda" else None
        if util:
            util.__enter__()
        start = time.perf_counter()
        for _ in range(args.steps):
            t0 = time.perf_counter()
            batch = next(batches)
            wait += time.perf_counter() - t0
            trainer.train_step(*batch)
        sync()
        wall = time.perf_counter() - start
        if util:
            util.__exit__(None, None, None)
        cpu = time.process_time() - cpu0
        workers = _children_cpu_seconds() - workers0
        batches.close()
    sampled = trainer.batch
    forward = sampled * (2 if cfg.cbe else 1)
    return {
        "pipeline": cfg.loader.pipeline,
        "overrides": args.overrides,
        "steps": args.steps,
        "wall_s": wall,
        "sec_per_step": wall / args.steps,
        "images_per_s": sampled * args.steps / wall,
        "forward_images_per_s": forward * args.steps / wall,
        "data_wait_share": wait / wall,
        "main_cpu_s_per_step": cpu / args.steps,
        "worker_cpu_s_per_step": workers / args.steps,
        "gpu_utilisation": util.mean() if util else None,
        "gpu_utilisation_source": util.source if util else None,
        "peak_mib": (
            torch.cuda.max_memory_allocated(device) / 2**20
            if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        ),  # fmt: skip
        "threads": torch.get_num_threads(),
        "levers": trainer.levers,
    }


def run_child(args: argparse.Namespace, overrides: list[str]) -> dict:
    cmd = [sys.executable, str(HERE), "--child", "--preset", args.preset, "--device", args.device, "--data",
           str(args.data), "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads),
           *overrides]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"measurement {' '.join(overrides)} failed:\n{res.stderr[-3000:]}")
    result = json.loads(res.stdout.strip().splitlines()[-1])
    # each figure as soon as it is measured, so that a run cut short by a time limit still reports
    print(f"measured [{' '.join(overrides)}]: {result['images_per_s']:.1f} images/s, data wait "
          f"{100 * result['data_wait_share']:.1f}%", file=sys.stderr, flush=True)  # fmt: skip
    return result


def prepare_cache(args: argparse.Namespace) -> tuple[float, bool, str]:
    """Build (or find) the decoded-crop cache the tensor path will use; returns (seconds, built, path)."""
    from reid_model.config import load_config
    from reid_model.data.crop_cache import default_cache_folder, image_checksums, open_crop_cache
    from reid_model.data.datasets import read_train

    cfg = load_config(args.preset, args.overrides)
    t = time.perf_counter()
    paths = read_train(args.data).paths
    folder = default_cache_folder(args.data, Path(tempfile.gettempdir()), cfg.loader.cache_dir)
    cache = open_crop_cache(paths, image_checksums(paths), cfg.input, folder, workers=cfg.data.num_workers)
    return time.perf_counter() - t, cache.built, str(cache.path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    ap.add_argument(
        "--data", type=Path, default=None, help="a built release (default: build a synthetic one)"
    )
    ap.add_argument("--steps", type=int, default=40, help="timed steps per measurement")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    ap.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: the preset's train.num_threads)"
    )
    ap.add_argument(
        "--repeat", type=int, default=1, help="alternate pil/tensor measurements N times (medians)"
    )
    ap.add_argument("--levers", action="store_true", help="also measure each train.* speed lever alone")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*", help="config overrides key=value (e.g. model.pretrained=)")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.warmup < 1:
        ap.error("--steps and --warmup must be at least 1")
    if args.child:
        print(json.dumps(measure(args)))
        return 0
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("CUDA is not available here; use --device cpu")
    work_ctx = None
    if args.data is None:
        work_ctx = tempfile.TemporaryDirectory(prefix="throughput_data_")
        args.data = build_release(Path(work_ctx.name))
    try:
        cache_s, built, cache_path = prepare_cache(args)
        results = {"preset": args.preset, "device": args.device, "data": str(args.data),
                   "gpu": torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda") else None,
                   "torch": torch.__version__, "cpu_count": os.cpu_count(),
                   "crop_cache": {"path": cache_path, "seconds": cache_s, "built": built}}  # fmt: skip
        base = [*args.overrides]
        rounds = []
        for _ in range(args.repeat):  # alternated, so that a change of load hits both paths alike
            rounds.append({p: run_child(args, [*base, f"loader.pipeline={p}"]) for p in ("pil", "tensor")})
        for p in ("pil", "tensor"):  # the round of median images/s stands for the path
            ranked = sorted((r[p] for r in rounds), key=lambda r: r["images_per_s"])
            results[p] = ranked[len(ranked) // 2]
        results["rounds"] = rounds
        results["round_ratios"] = [r["tensor"]["images_per_s"] / r["pil"]["images_per_s"] for r in rounds]
        results["speedup"] = results["tensor"]["images_per_s"] / results["pil"]["images_per_s"]
        if args.levers:
            results["levers"] = {}
            for name, extra in LEVERS.items():
                if name != "channels_last" and not args.device.startswith("cuda"):
                    continue  # a no-op on the CPU (train.* levers: docs/model.md §6.4)
                results["levers"][name] = run_child(args, [*base, "loader.pipeline=tensor", *extra])
    finally:
        if work_ctx:
            work_ctx.cleanup()
    if args.json:
        print(json.dumps(results, sort_keys=True))
        return 0
    where = results["gpu"] or f"{results['cpu_count']} CPUs"
    print(f"{args.preset} on {args.device} ({where}), torch {results['torch']}, release {args.data}")
    c = results["crop_cache"]
    print(f"decoded-crop cache: {'built' if c['built'] else 'found'} in {c['seconds']:.1f} s ({c['path']})")
    rows = [("today (pil)", results["pil"]), ("new (tensor)", results["tensor"])]
    rows += [(f"tensor+{k}", v) for k, v in results.get("levers", {}).items()]
    for label, r in rows:
        util = f", GPU busy {r['gpu_utilisation']:.0f}%" if r["gpu_utilisation"] is not None else ""
        mem = "CUDA" if args.device.startswith("cuda") else "RSS"
        print(f"{label:>16}: {r['images_per_s']:8.1f} images/s ({r['forward_images_per_s']:.1f} forward), "
              f"{r['sec_per_step'] * 1000:7.1f} ms/step, {r['steps']} steps in {r['wall_s']:.1f} s, "
              f"data wait {100 * r['data_wait_share']:4.1f}% of step time, CPU-ms/step: training process "
              f"{r['main_cpu_s_per_step'] * 1000:.0f} + loader workers {r['worker_cpu_s_per_step'] * 1000:.0f}"
              f"{util}, peak {mem} {r['peak_mib']:.0f} MiB")  # fmt: skip
    cpu = {
        p: results[p]["main_cpu_s_per_step"] + results[p]["worker_cpu_s_per_step"] for p in ("pil", "tensor")
    }
    print(
        f"CPU time per step (all processes), new / today: {cpu['tensor'] / cpu['pil']:.2f} "
        "(less sensitive to a shared machine's load than wall time)"
    )
    print(f"images/s ratio, new / today: {results['speedup']:.2f}; wall time ratio: "
          f"{results['tensor']['wall_s'] / results['pil']['wall_s']:.2f}"
          + (f" (medians of {args.repeat} alternated rounds; per-round ratios "
             f"{', '.join(f'{r:.2f}' for r in results['round_ratios'])})" if args.repeat > 1 else ""))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
