"""Split generation at the paper's source-pool size: 1.38 M images of 30,000 identities (metadata only).

    .venv/bin/python perf/split_speed.py        # full size (~1 min in all)
    .venv/bin/python perf/split_speed.py --images 200000 --identities 5000 --scale 0.15

The pool is drawn like the paper's: 6,497 cameras in camera systems of ~73; each identity is seen by
2-6 cameras of one system; images per identity are long-tailed (mean 46); ~25% occluded. Reported:
- `select_split` (eligibility + seeded selection, `--preset opreid`) on the whole table, run in a
  child process pinned to 2 cores, with its time and peak RSS (the goal: under 30 s on 2 cores);
- a baseline in the same run: a naive per-identity Python loop (dicts of rows, `random.sample`),
  timed on a subset of identities and extrapolated linearly, against the vectorised path on the
  same subset; their ratio.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from opreid_builder.split.presets import resolve_targets
from opreid_builder.split.protocol import SplitConfig, select_split

CHILD = """
import json, os, resource, sys, time
if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 2:
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2])
import pyarrow as pa, pyarrow.parquet as pq
pa.set_cpu_count(2)
from opreid_builder.split.presets import resolve_targets
from opreid_builder.split.protocol import SplitConfig, select_split
table = pq.read_table(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
sel = select_split(table, SplitConfig(resolve_targets("opreid", float(sys.argv[2])), seed=0))
elapsed = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": elapsed, "rss_before_mb": before / 1024, "rss_peak_mb": peak / 1024,
                  "achieved": sel.achieved, "targets": sel.targets, "cores": len(os.sched_getaffinity(0))}))
"""


def make_pool(images: int, identities: int, cameras: int, seed: int = 0) -> pa.Table:
    """A metadata-only curated pool (image_id, pid, camid, occluded), vectorised."""
    rng = np.random.default_rng(seed)
    weights = rng.lognormal(0.0, 0.8, identities)
    counts = rng.multinomial(images - 3 * identities, weights / weights.sum()) + 3
    pid = np.repeat(np.arange(identities, dtype=np.int64), counts)
    system_size = 73
    systems = max(cameras // system_size, 1)
    home = rng.integers(0, systems, identities) * system_size
    n_cams = rng.integers(2, 7, identities)
    offsets = rng.integers(0, system_size, (identities, 6))
    which = (rng.random(len(pid)) * n_cams[pid]).astype(np.int64)
    camid = np.minimum(home[pid] + offsets[pid, which], cameras - 1).astype(np.int32)
    occ_rate = np.clip(rng.normal(0.25, 0.1, identities), 0.02, 0.9)
    occluded = rng.random(len(pid)) < occ_rate[pid]
    ids = rng.choice(np.iinfo(np.int64).max, size=len(pid), replace=False)
    image_id = np.char.mod("%016x", ids)
    order = rng.permutation(len(pid))  # input order must not matter; give it none
    return pa.table(
        {
            "image_id": pa.array(image_id[order].astype(str)),
            "pid": pa.array(pid[order]),
            "camid": pa.array(camid[order]),
            "occluded": pa.array(occluded[order]),
        }
    )


def naive_split(table: pa.Table, scale: float, seed: int = 0) -> dict[str, int]:
    """The straightforward implementation: rows into per-identity lists, then a Python loop per identity."""
    targets = resolve_targets("opreid", scale)
    rnd = random.Random(seed)
    rows: dict[int, list[tuple[str, int, bool]]] = defaultdict(list)
    for image_id, pid, cam, occ in zip(
        table.column("image_id").to_pylist(), table.column("pid").to_pylist(),
        table.column("camid").to_pylist(), table.column("occluded").to_pylist(), strict=True,
    ):  # fmt: skip
        rows[pid].append((image_id, cam, occ))
    eligible_q, eligible_t, eligible_d = [], [], []
    query_cam: dict[int, int] = {}
    for pid in sorted(rows):
        items = sorted(rows[pid])
        occ = [r for r in items if r[2]]
        hol = [r for r in items if not r[2]]
        cams = sorted({r[1] for r in occ})
        rnd.shuffle(cams)
        for cam in cams:
            if any(r[1] != cam for r in occ) and any(r[1] != cam for r in hol):
                eligible_q.append(pid)
                query_cam[pid] = cam
                break
        if len(items) >= 5:
            eligible_t.append(pid)
        if occ and hol:
            eligible_d.append(pid)
    queries = rnd.sample(eligible_q, min(targets.query_ids, len(eligible_q)))
    used = set(queries)
    train = rnd.sample([p for p in eligible_t if p not in used], targets.train_ids)
    used |= set(train)
    dist = rnd.sample([p for p in eligible_d if p not in used], targets.distractor_ids)
    picked = {"train": 0, "query": 0, "gallery": 0}
    for pid in queries:
        occ = [r for r in sorted(rows[pid]) if r[2]]
        q = [r for r in occ if r[1] == query_cam[pid]]
        picked["query"] += 1 if len(q) < 2 or rnd.random() < 0.8 else 2
        g_occ = [r for r in occ if r[1] != query_cam[pid]]
        g_hol = [r for r in sorted(rows[pid]) if not r[2] and r[1] != query_cam[pid]]
        picked["gallery"] += len(rnd.sample(g_occ, 1)) + len(rnd.sample(g_hol, 1))
    for pid in train:
        items = sorted(rows[pid])
        picked["train"] += len(rnd.sample(items, min(len(items), 20)))
    for pid in dist:
        items = sorted(rows[pid])
        occ = [r for r in items if r[2]]
        hol = [r for r in items if not r[2]]
        picked["gallery"] += len(rnd.sample(occ, min(len(occ), rnd.randint(1, 3))))
        picked["gallery"] += len(rnd.sample(hol, min(len(hol), rnd.randint(1, 3))))
    return picked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1_380_000)
    parser.add_argument("--identities", type=int, default=30_000)
    parser.add_argument("--cameras", type=int, default=6_497)
    parser.add_argument("--scale", type=float, default=1.0, help="--scale of the opreid preset")
    parser.add_argument("--subset", type=float, default=0.1, help="share of identities for the baseline")
    args = parser.parse_args()

    t = time.perf_counter()
    table = make_pool(args.images, args.identities, args.cameras)
    print(f"pool: {table.num_rows:,} images, {args.identities:,} identities, {args.cameras:,} cameras "
          f"(built in {time.perf_counter() - t:.1f} s)")  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pool.parquet"
        pq.write_table(table, path)
        child = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), str(args.scale)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    full = json.loads(child.stdout)
    print(f"vectorised select_split, full pool, {full['cores']} cores: {full['seconds']:.2f} s, "
          f"peak RSS {full['rss_peak_mb']:.0f} MB ({full['rss_peak_mb'] - full['rss_before_mb']:.0f} MB above the "
          f"loaded table)  [goal: < 30 s on 2 cores]")  # fmt: skip
    for key, target in full["targets"].items():
        print(f"  {key:<26} target {target!s:>8}  achieved {full['achieved'][key]!s:>8}")

    # baseline on a subset of identities, both implementations, then extrapolated
    pids = table.column("pid").to_numpy()
    keep = pids < int(args.identities * args.subset)
    subset = table.filter(pa.array(keep))
    sub_scale = args.scale * args.subset
    t = time.perf_counter()
    select_split(subset, SplitConfig(resolve_targets("opreid", sub_scale), seed=0))
    fast = time.perf_counter() - t
    t = time.perf_counter()
    naive_split(subset, sub_scale)
    naive = time.perf_counter() - t
    factor = table.num_rows / subset.num_rows
    print(f"subset {subset.num_rows:,} images ({args.subset:.0%} of identities): vectorised {fast:.2f} s, "
          f"naive per-identity loop {naive:.2f} s -> ratio {naive / fast:.1f}x")  # fmt: skip
    print(f"naive loop extrapolated to the full pool: {naive * factor:.1f} s vs vectorised measured "
          f"{full['seconds']:.2f} s -> ratio {naive * factor / full['seconds']:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
