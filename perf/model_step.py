"""Time per training step and peak memory of the reference model (R50 preset at batch 16, tiny at its default).

Each preset is measured as configured and, in the same run, with DNL and CBE switched off
(`dnl=false cbe=false`: plain non-local blocks, no batch duplication) as the baseline; the ratio
is printed. A step = CBE + forward (all loss terms) + backward + Adam step, on random images.
Peak memory: CUDA max_memory_allocated on GPU; on CPU the growth of the process's peak RSS
(ru_maxrss) during the measurement (the first variant measured also carries the allocator warm-up).

    .venv/bin/python perf/model_step.py [--device cpu|cuda] [--steps 3] [--threads 2] [--only tiny]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import torch


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(preset: str, batch: int | None, overrides: list[str], device: torch.device, steps: int) -> dict:
    from reid_model.config import load_config
    from reid_model.engine.trainer import erasing_params, make_optimizer
    from reid_model.modeling.batch_erasing import compound_batch_erasing, random_erasing
    from reid_model.modeling.model import ReidModel, total_loss

    extra = ["model.pretrained="] + ([f"data.ims_per_batch={batch}"] if batch else []) + overrides
    cfg = load_config(preset, extra)
    b, k = cfg.data.ims_per_batch, cfg.data.num_instance
    torch.manual_seed(0)
    model = ReidModel(cfg, num_classes=100).to(device).train()
    opt = make_optimizer(model, cfg)
    x = torch.randn(b, 3, cfg.input.height, cfg.input.width)
    pids = torch.arange(b // k).repeat_interleave(k)
    use_amp = cfg.solver.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    def step(i: int) -> None:
        gen = torch.Generator().manual_seed(i)
        if cfg.cbe:
            xs, ys, _ = compound_batch_erasing(x, pids, pids, gen, erasing_params(cfg))
        else:
            xs, ys = random_erasing(x, gen, erasing_params(cfg)), pids
        xs, ys = xs.to(device), ys.to(device)
        with torch.autocast(device_type=device.type, enabled=use_amp):
            out = model(xs, ys)
        opt.zero_grad(set_to_none=True)
        scaler.scale(total_loss(out)).backward()
        scaler.step(opt)
        scaler.update()
        model.me.update(out["me_batch_mean"])

    step(0)  # warm-up (allocator, kernels, Adam state)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss0 = _rss_mib()
    times = []
    for i in range(1, steps + 1):
        t = time.perf_counter()
        step(i)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else _rss_mib()
    return {
        "preset": preset,
        "variant": " ".join(overrides) or "as configured",
        "sampled_batch": b,
        "forward_batch": 2 * b if cfg.cbe else b,
        "sec_per_step": sorted(times)[len(times) // 2],
        "peak_mib": peak,
        "rss_growth_mib": _rss_mib() - rss0 if device.type == "cpu" else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    ap.add_argument("--only", choices=["tiny", "opreid_r50"], default=None)
    ap.add_argument("--r50-batch", type=int, default=16)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads", flush=True)
    cases = [("tiny", None), ("opreid_r50", args.r50_batch)]
    for preset, batch in cases:
        if args.only and preset != args.only:
            continue
        base = measure(preset, batch, ["dnl=false", "cbe=false"], device, args.steps)
        full = measure(preset, batch, [], device, args.steps)
        for r in (full, base):
            print(
                f"{r['preset']:>10} [{r['variant']}] batch {r['sampled_batch']} (forward {r['forward_batch']}): "
                f"{r['sec_per_step'] * 1000:8.1f} ms/step, peak {'CUDA' if device.type == 'cuda' else 'RSS'} "
                f"{r['peak_mib']:8.0f} MiB",
                flush=True,
            )
        print(
            f"{preset:>10} full / baseline time ratio: {full['sec_per_step'] / base['sec_per_step']:.2f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
