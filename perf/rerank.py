"""k-reciprocal re-ranking: the blocked implementation against the anchors' full-matrix one, same run.

    .venv/bin/python perf/rerank.py                               # Market and OPReID sizes, D = 2048
    .venv/bin/python perf/rerank.py --sizes market                # 3,368 x 15,913 only
    .venv/bin/python perf/rerank.py --sizes 500x3000 --dim 256    # quick

Each implementation runs in a fresh child process on the same features (made there from the seed),
so its time and peak RSS (VmHWM) are its own; the parent only compares the outputs. The baseline is
the algorithm as fast-reid's and torchreid's `re_ranking` run it: the full (Q+G)^2 distances in
float32, their full argsort, a dense V and V_qe, the Jaccard step through per-column index lists.
It runs only where its estimated need (about 20 bytes per (Q+G)^2 element at its peak) fits in the
memory available; otherwise the line says so and why. Reported per size: seconds and peak RSS of
each, the ratio, the max |difference| between the two outputs and the mAP before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = {"market": (3368, 15913), "opreid": (4200, 41014)}
#: Peak bytes per (Q+G)^2 element of the full-matrix baseline: distances (4), the int64 argsort
#: being converted to int32 (8 + 4), V (4); V_qe replaces the distances' share later.
FULL_BYTES_PER_ELEMENT = 20


def make_features(num_query: int, num_gallery: int, dim: int, seed: int, noise: float):
    """Identities as noisy copies of a centre; each query identity has 2-6 gallery images on other
    cameras; distractor identities fill the gallery. Returns float32 features, pids and camids."""
    rng = np.random.default_rng(seed)
    q_pids = np.arange(num_query)
    per_id = rng.integers(2, 7, num_query)
    own = np.repeat(q_pids, per_id)[: num_gallery // 2]
    extra = num_gallery - len(own)
    g_pids = np.concatenate([own, num_query + rng.integers(0, max(1, extra // 4), extra)])
    centres = rng.standard_normal((int(g_pids.max()) + 1, dim), dtype=np.float32)

    def feats(pids):
        out = np.empty((len(pids), dim), np.float32)
        for a in range(0, len(pids), 4096):
            p = pids[a : a + 4096]
            out[a : a + 4096] = centres[p] + noise * rng.standard_normal((len(p), dim), dtype=np.float32)
        return out

    q, g = feats(q_pids), feats(g_pids)
    return q, g, q_pids, g_pids, np.zeros(num_query, np.int32), np.ones(num_gallery, np.int32)


def full_matrix_rerank(q: np.ndarray, g: np.ndarray, k1=20, k2=6, lam=0.3) -> np.ndarray:
    """The anchors' algorithm on (Q+G)^2 arrays (written for this benchmark; cosine features)."""
    x = np.concatenate([q, g])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    n, nq = len(x), len(q)
    dist = x @ x.T  # 2 - 2 cos, in place
    dist *= -2
    dist += 2
    np.maximum(dist, 0, out=dist)
    dist /= dist.max(axis=1, keepdims=True)
    rank = np.argsort(dist, axis=1).astype(np.int32)
    v = np.zeros((n, n), np.float32)
    half = round(k1 / 2)

    def reciprocal(i, k):
        forward = rank[i, : k + 1]
        return forward[np.nonzero(rank[forward, : k + 1] == i)[0]]

    for i in range(n):
        base = reciprocal(i, k1)
        members = [base]
        for c in base:
            theirs = reciprocal(c, half)
            if len(np.intersect1d(theirs, base)) > 2 / 3 * len(theirs):
                members.append(theirs)
        idx = np.unique(np.concatenate(members))
        w = np.exp(-dist[i, idx])
        v[i, idx] = w / w.sum()
    original = dist[:nq, nq:].copy()
    del dist
    if k2 > 1:
        v_qe = np.zeros_like(v)
        for i in range(n):
            v_qe[i] = v[rank[i, :k2]].mean(axis=0)
        v = v_qe
        del v_qe
    rank = None  # the dense argsort goes before the Jaccard step, as in the anchors
    holders = [np.nonzero(v[:, k])[0] for k in range(n)]
    out = np.empty((nq, n - nq), np.float32)
    for i in range(nq):
        shared = np.zeros(n, np.float32)
        for k in np.nonzero(v[i])[0]:
            rows = holders[k]
            shared[rows] += np.minimum(v[i, k], v[rows, k])
        s = shared[nq:]
        out[i] = (1 - lam) * (1 - s / (2 - s)) + lam * original[i]
    return out


def _peak_kb() -> int:
    with open("/proc/self/status") as fh:  # VmHWM: this process's own peak resident set
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM"))


def child(kind: str, nq: int, ng: int, dim: int, seed: int, noise: float, budget: int, out: str) -> None:
    q, g, *_ = make_features(nq, ng, dim, seed, noise)
    start = time.perf_counter()
    if kind == "full":
        result = full_matrix_rerank(q, g)
        np.save(out, result)
        prepare = None
    else:
        from benchmarks.rerank.kreciprocal import RerankSettings, rerank_distances

        source = rerank_distances(q, g, "cosine", RerankSettings(memory_mb=budget))
        prepare = time.perf_counter() - start
        with open(out, "wb") as fh:  # streamed: the file's pages are never part of this process's RSS
            np.lib.format.write_array_header_1_0(
                fh, {"descr": "<f4", "fortran_order": False, "shape": (nq, ng)}
            )
            for a in range(0, nq, 256):
                fh.write(np.ascontiguousarray(source.rows(a, min(a + 256, nq)), np.float32).tobytes())
    elapsed = time.perf_counter() - start
    print(json.dumps({"seconds": elapsed, "prepare_seconds": prepare, "peak_kb": _peak_kb()}))


def run_child(*args) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *map(str, args)], capture_output=True, text=True
    )
    if proc.returncode:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def available_bytes() -> int:
    with open("/proc/meminfo") as fh:
        return next((int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable")), 0)


def compare(a_path: Path, b_path: Path, chunk: int = 512) -> tuple[float, float]:
    """Max |difference| and the fraction of queries whose top-10 lists are identical."""
    a, b = np.load(a_path, mmap_mode="r"), np.load(b_path, mmap_mode="r")
    worst, same = 0.0, 0
    for s in range(0, len(a), chunk):
        x, y = np.asarray(a[s : s + chunk]), np.asarray(b[s : s + chunk])
        worst = max(worst, float(np.abs(x - y).max()))
        same += int((np.argsort(x, axis=1)[:, :10] == np.argsort(y, axis=1)[:, :10]).all(axis=1).sum())
    return worst, same / len(a)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="market,opreid", help="market, opreid or QxG, comma-separated")
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise", type=float, default=3.0, help="per-image noise around its identity's centre")
    ap.add_argument("--memory-mb", default="1024", help="budgets of the blocked runs, comma-separated")
    ap.add_argument("--no-baseline", action="store_true", help="skip the full-matrix baseline")
    ap.add_argument("--child", nargs=8, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, nq, ng, dim, seed, noise, budget, out = args.child
        child(kind, int(nq), int(ng), int(dim), int(seed), float(noise), int(budget), out)
        return

    from benchmarks.metrics.market import evaluate_distances, evaluate_features

    budgets = [int(b) for b in args.memory_mb.split(",")]
    rows = []
    for name in args.sizes.split(","):
        nq, ng = SIZES[name] if name in SIZES else map(int, name.lower().split("x"))
        n = nq + ng
        print(f"\n== {name}: {nq:,} queries x {ng:,} gallery, D = {args.dim} (N = {n:,}) ==", flush=True)
        q, g, qp, gp, qc, gc = make_features(nq, ng, args.dim, args.seed, args.noise)
        plain = evaluate_features(q, g, qp, gp, qc, gc)
        del q, g
        print(f"mAP without re-ranking: {100 * plain.mAP:.2f}%", flush=True)
        with tempfile.TemporaryDirectory(prefix="rerank_perf_", dir=os.environ.get("TMPDIR")) as tmp:
            outputs = {}
            for budget in budgets:
                path = Path(tmp) / f"blocked{budget}.npy"
                res = run_child("blocked", nq, ng, args.dim, args.seed, args.noise, budget, path)
                rows.append((name, f"blocked, {budget} MiB budget", res))
                if "error" not in res:
                    outputs[f"blocked{budget}"] = path
                    res["mAP"] = evaluate_distances(np.load(path, mmap_mode="r"), qp, gp, qc, gc).mAP
                print(_line(rows[-1]), flush=True)
            need, avail = FULL_BYTES_PER_ELEMENT * n * n, available_bytes()
            if args.no_baseline:
                rows.append((name, "full matrix", {"skipped": "--no-baseline"}))
            elif need > 0.9 * avail:
                rows.append((name, "full matrix", {"skipped": (
                    f"does not fit: needs ~{need / 2**30:.1f} GiB ({FULL_BYTES_PER_ELEMENT} B x N^2), "
                    f"{avail / 2**30:.1f} GiB available")}))  # fmt: skip
            else:
                path = Path(tmp) / "full.npy"
                res = run_child("full", nq, ng, args.dim, args.seed, args.noise, 0, path)
                rows.append((name, "full matrix", res))
                if "error" not in res:
                    res["mAP"] = evaluate_distances(np.load(path, mmap_mode="r"), qp, gp, qc, gc).mAP
                    for key, other in outputs.items():
                        diff, same = compare(path, other)
                        res.setdefault("agreement", {})[key] = (diff, same)
            print(_line(rows[-1]), flush=True)
            full = rows[-1][2]
            for _, label, res in rows[-1 - len(budgets) : -1]:
                if "seconds" in full and "seconds" in res:
                    print(f"  full matrix / {label}: time {full['seconds'] / res['seconds']:.2f}x, "
                          f"peak RSS {full['peak_kb'] / res['peak_kb']:.2f}x (above 1: the blocked run is better)")  # fmt: skip
            for key, (diff, same) in full.get("agreement", {}).items():
                print(
                    f"  {key} vs full matrix: max |difference| {diff:.2e}, identical top-10 lists {100 * same:.2f}%"
                )

    print("\n| size | implementation | seconds | peak RSS (MiB) | mAP |\n|---|---|---|---|---|")
    for name, label, res in rows:
        if "seconds" in res:
            print(
                f"| {name} | {label} | {res['seconds']:.1f} | {res['peak_kb'] / 1024:.0f} | {100 * res['mAP']:.2f}% |"
            )
        else:
            print(f"| {name} | {label} | - | - | {res.get('skipped') or res.get('error')} |")


def _line(row) -> str:
    name, label, res = row
    if "seconds" not in res:
        return f"{label}: {res.get('skipped') or res.get('error')}"
    prep = f" (neighbours and V {res['prepare_seconds']:.1f} s)" if res.get("prepare_seconds") else ""
    return f"{label}: {res['seconds']:.1f} s{prep}, peak RSS {res['peak_kb'] / 1024:.0f} MiB, mAP {100 * res['mAP']:.2f}%"


if __name__ == "__main__":
    main()
