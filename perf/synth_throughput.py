"""Throughput of `opreid synth`: images per second with 1 and 2 workers.

Goal: 10,000 crops of 128x64 in under a minute on 2 cores. The baseline is the 1-worker run in
this same process; the ratio shows what the second worker buys.

    .venv/bin/python perf/synth_throughput.py [--n 10000] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from opreid_builder.synth.generator import SynthConfig, generate

IMAGES_PER_IDENTITY = (6, 16)  # mean 11


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (pool workers)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def run(n: int, workers: int, root: Path, height: int, width: int) -> tuple[int, float, float]:
    identities = max(1, round(n / (sum(IMAGES_PER_IDENTITY) / 2)))
    out = root / f"w{workers}"
    config = SynthConfig(identities=identities, cameras=6, images_per_identity=IMAGES_PER_IDENTITY,
                         height=height, width=width, seed=1, workers=workers)  # fmt: skip
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    summary = generate(out, config)
    elapsed, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    shutil.rmtree(out)
    return summary.images, elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="approximate number of crops per run")
    parser.add_argument(
        "--workers", default="1,2", help="comma-separated worker counts; the first is the baseline"
    )
    parser.add_argument("--size", default="128x64", help="HEIGHTxWIDTH")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.lower().split("x"))
    counts = [int(w) for w in args.workers.split(",")]
    results: list[float] = []
    cpus: list[float] = []
    with tempfile.TemporaryDirectory(prefix="synth-bench-") as tmp:
        for workers in counts:
            images, seconds, cpu = run(args.n, workers, Path(tmp), height, width)
            rate = images / seconds
            results.append(rate)
            print(f"workers={workers}: {images} crops of {height}x{width} in {seconds:.1f} s = {rate:.0f} img/s "
                  f"({10_000 / rate:.1f} s per 10,000; goal < 60 s); CPU {1000 * cpu / images:.2f} ms/img",
                  flush=True)  # fmt: skip
            cpus.append(cpu / images)
    for workers, rate in zip(counts[1:], results[1:], strict=True):
        print(f"ratio workers={workers} / workers={counts[0]}: {rate / results[0]:.2f}x")
    print(f"CPU-bound projection on 2 otherwise idle cores: 10,000 crops in {10_000 * min(cpus) / 2:.1f} s")
    print(
        f"load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other work slows the wall-clock figures)"
    )


if __name__ == "__main__":
    main()
