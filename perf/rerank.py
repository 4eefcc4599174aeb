"""k-reciprocal re-ranking: the blocked implementation against the anchors' full-matrix one, same run.

    .venv/bin/python perf/rerank.py                               # Market and OPReID sizes, D = 2048
    .venv/bin/python perf/rerank.py --sizes market --profile      # 3,368 x 15,913, time per phase
    .venv/bin/python perf/rerank.py --precisions float32,bfloat16 # both screens, whatever auto would take
    .venv/bin/python perf/rerank.py --sizes opreid --score        # and `opreid score --rerank` at that size
    .venv/bin/python perf/rerank.py --sizes 500x3000 --dim 256 --devices cpu,torch-cpu   # quick

Each implementation runs in a fresh child process on the same features (made there from the seed),
so its time and peak RSS (VmHWM) are its own; the parent only compares the outputs. The baseline is
the algorithm as fast-reid's and torchreid's `re_ranking` run it: the full (Q+G)^2 distances in
float32, their full argsort, a dense V and V_qe, the Jaccard step through per-column index lists.
It runs only where its estimated need (about 20 bytes per (Q+G)^2 element at its peak) fits in the
memory available; otherwise the line says so and why. Reported per size: seconds and peak RSS of
each, the ratio, the max |difference| between the outputs and the mAP before and after (the blocked
runs, float32 and auto screening by default, against the first of them: identical bits expected); with
--profile, the seconds of each phase of the blocked runs; with --score, `opreid score FEATS.npz
--rerank` in a fresh process on a release of that size (manifests and ground truth only).

The goals (issue "re-ranking at the machine's limit"): OPReID size <= 60 s on 2 cores with peak RSS
within the default budget plus the features; Market size >= 15x faster than the full matrix.
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
GOAL_SECONDS = {"opreid": 60.0}
GOAL_RATIO = {"market": 15.0}
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


def child(kind: str, nq: int, ng: int, dim: int, seed: int, noise: float, budget: int, device: str,
          precision: str, out: str) -> None:  # fmt: skip
    q, g, *_ = make_features(nq, ng, dim, seed, noise)
    features_kb = (q.nbytes + g.nbytes) // 1024
    timings = floor = screen = None
    if kind == "full":
        start = time.perf_counter()
        result = full_matrix_rerank(q, g)
        np.save(out, result)
        elapsed, prepare = time.perf_counter() - start, None
    else:
        from benchmarks.rerank.kreciprocal import KReciprocalReranker, RerankSettings

        if device != "cpu":
            import torch  # imported before the clock starts, as `opreid score` would have it loaded

            torch.zeros(1, device="cpu" if device == "torch-cpu" else device)
        rate = [blas_rate(dim)] if device == "cpu" else []
        start = time.perf_counter()
        settings = RerankSettings(memory_mb=budget, device=device, precision=precision)
        reranker = KReciprocalReranker(q, g, "cosine", settings)
        prepare = time.perf_counter() - start
        with open(out, "wb") as fh:  # streamed: the file's pages are never part of this process's RSS
            np.lib.format.write_array_header_1_0(
                fh, {"descr": "<f4", "fortran_order": False, "shape": (nq, ng)}
            )
            for a in range(0, nq, 256):
                fh.write(np.ascontiguousarray(reranker.rows(a, min(a + 256, nq)), np.float32).tobytes())
        timings = reranker.timings
        elapsed = time.perf_counter() - start
        p = reranker.precision
        screen = {"precision": p.precision, "reason": p.reason, "torch_mb": p.torch_bytes >> 20}
        if rate:
            rate.append(blas_rate(dim))
            floor = {"flops": reranker.product_flops, "bf16_flops": reranker.bf16_flops,
                     "gflops": sum(rate) / len(rate)}  # fmt: skip
            if p.precision == "bfloat16":
                from benchmarks.rerank.screening import measured_speedup

                floor["bf16_speedup"] = measured_speedup(device, dim)
    print(json.dumps({"seconds": elapsed, "prepare_seconds": prepare, "peak_kb": _peak_kb(),
                      "features_kb": features_kb, "timings": timings, "floor": floor,
                      "screen": screen}))  # fmt: skip


def blas_rate(dim: int, side: int = 2048, repeats: int = 3) -> float:
    """numpy's float32 matrix-product speed right now (GFLOP/s), on blocks of the size re-ranking uses."""
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((side, dim), np.float32), rng.standard_normal((side, dim), np.float32)
    out = np.empty((side, side), np.float32)
    np.matmul(a, b.T, out=out)
    start = time.perf_counter()
    for _ in range(repeats):
        np.matmul(a, b.T, out=out)
    return 2.0 * side * side * dim * repeats / (time.perf_counter() - start) / 1e9


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
    ap.add_argument("--devices", default="cpu", help="--rerank-device of the blocked runs, comma-separated")
    ap.add_argument(
        "--precisions", default="float32,auto", help="--rerank-precision of the blocked runs, comma-separated"
    )
    ap.add_argument("--no-baseline", action="store_true", help="skip the full-matrix baseline")
    ap.add_argument(
        "--profile", action="store_true", help="print the seconds of each phase of the blocked runs"
    )
    ap.add_argument("--score", action="store_true", help="also time `opreid score FEATS.npz --rerank`")
    ap.add_argument("--child", nargs=10, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, nq, ng, dim, seed, noise, budget, device, precision, out = args.child
        child(kind, int(nq), int(ng), int(dim), int(seed), float(noise), int(budget), device, precision, out)
        return

    from benchmarks.metrics.market import evaluate_distances, evaluate_features

    print(
        f"load average at the start: {' '.join(f'{v:.1f}' for v in os.getloadavg())} ({os.cpu_count()} CPUs)"
    )
    runs = [
        (int(b), d, p)
        for d in args.devices.split(",") for b in args.memory_mb.split(",") for p in args.precisions.split(",")
    ]  # fmt: skip
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
            outputs, blocked = {}, []
            for budget, device, precision in runs:
                label = f"blocked, {device}, {budget} MiB budget, {precision} screen"
                path = Path(tmp) / f"blocked{budget}{device}{precision}.npy"
                res = run_child("blocked", nq, ng, args.dim, args.seed, args.noise, budget, device, precision,
                                path)  # fmt: skip
                rows.append((name, label, res))
                blocked.append((label, res))
                if "error" not in res:
                    outputs[label] = path
                    res["mAP"] = evaluate_distances(np.load(path, mmap_mode="r"), qp, gp, qc, gc).mAP
                print(_line(rows[-1]), flush=True)
                if args.profile and res.get("timings"):
                    print(_profile(res), flush=True)
                if name in GOAL_SECONDS and "seconds" in res:
                    goal_kb = (1024 << 10) + res["features_kb"]
                    print(f"  goal <= {GOAL_SECONDS[name]:.0f} s: {res['seconds']:.1f} s "
                          f"({'met' if res['seconds'] <= GOAL_SECONDS[name] else 'NOT met'}); peak RSS "
                          f"{res['peak_kb'] / 1024:.0f} MiB against the default budget + the features = "
                          f"{goal_kb / 1024:.0f} MiB ({'within' if res['peak_kb'] <= goal_kb else 'ABOVE'})")  # fmt: skip
            first = next(iter(outputs.items()), None)
            for key, other in list(outputs.items())[1:]:
                diff, same = compare(first[1], other)
                bits = " (the same bits)" if diff == 0 else ""
                print(f"  {key} vs {first[0]}: max |difference| {diff:.2e}{bits}, identical top-10 lists "
                      f"{100 * same:.2f}%")  # fmt: skip
            if args.score and first is not None:
                res = score_child(tmp, nq, ng, args, runs[0])
                print(_score_line(res, blocked[0][1]), flush=True)
            need, avail = FULL_BYTES_PER_ELEMENT * n * n, available_bytes()
            if args.no_baseline:
                rows.append((name, "full matrix", {"skipped": "--no-baseline"}))
            elif need > 0.9 * avail:
                rows.append((name, "full matrix", {"skipped": (
                    f"does not fit: needs ~{need / 2**30:.1f} GiB ({FULL_BYTES_PER_ELEMENT} B x N^2), "
                    f"{avail / 2**30:.1f} GiB available")}))  # fmt: skip
            else:
                path = Path(tmp) / "full.npy"
                res = run_child("full", nq, ng, args.dim, args.seed, args.noise, 0, "cpu", "float32", path)
                rows.append((name, "full matrix", res))
                if "error" not in res:
                    res["mAP"] = evaluate_distances(np.load(path, mmap_mode="r"), qp, gp, qc, gc).mAP
                    for key, other in outputs.items():
                        diff, same = compare(path, other)
                        res.setdefault("agreement", {})[key] = (diff, same)
            print(_line(rows[-1]), flush=True)
            full = rows[-1][2]
            for label, res in blocked:
                if "seconds" in full and "seconds" in res:
                    ratio = full["seconds"] / res["seconds"]
                    goal = f" (goal >= {GOAL_RATIO[name]:.0f}x)" if name in GOAL_RATIO else ""
                    print(f"  full matrix / {label}: time {ratio:.2f}x{goal}, "
                          f"peak RSS {full['peak_kb'] / res['peak_kb']:.2f}x (above 1: the blocked run is better)")  # fmt: skip
            for key, (diff, same) in full.get("agreement", {}).items():
                print(
                    f"  {key} vs full matrix: max |difference| {diff:.2e}, identical top-10 lists {100 * same:.2f}%"
                )

    print(f"\nload average at the end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print("\n| size | implementation | seconds | peak RSS (MiB) | mAP |\n|---|---|---|---|---|")
    for name, label, res in rows:
        if "seconds" in res:
            print(
                f"| {name} | {label} | {res['seconds']:.1f} | {res['peak_kb'] / 1024:.0f} | {100 * res['mAP']:.2f}% |"
            )
        else:
            print(f"| {name} | {label} | - | - | {res.get('skipped') or res.get('error')} |")


PHASES_NOTE = "phases (seconds; 'jaccard' and 'final mix' summed over the query blocks)"


def _profile(res: dict) -> str:
    total = sum(res["timings"].values())
    lines = [f"  {PHASES_NOTE}:"]
    for phase, seconds in res["timings"].items():
        lines.append(f"    {phase:<30} {seconds:8.2f}  {100 * seconds / total:5.1f}%")
    lines.append(f"    {'sum':<30} {total:8.2f}  (wall {res['seconds']:.2f})")
    if res.get("floor"):
        f = res["floor"]
        bf16 = f.get("bf16_flops", 0.0) if "bf16_speedup" in f else 0.0
        floor = (f["flops"] - bf16) / (f["gflops"] * 1e9)
        what = f"{f['flops'] / 1e12:.2f} TFLOP"
        if bf16:
            floor += bf16 / (f["gflops"] * f["bf16_speedup"] * 1e9)
            what += (
                f", {bf16 / 1e12:.2f} of them bfloat16 ({f['bf16_speedup']:.1f}x float32's speed, measured)"
            )
        lines.append(
            f"  matrix products: {what}; numpy's BLAS ran {f['gflops']:.0f} GFLOP/s in this process (before and "
            f"after) -> a floor of {floor:.1f} s; this run took {res['seconds'] / floor:.2f}x it"
        )
    if res.get("screen"):
        sc = res["screen"]
        torch_mb = f"; torch's {sc['torch_mb']} MiB charged to the budget" if sc["torch_mb"] else ""
        lines.append(f"  screen: {sc['precision']} ({sc['reason']}{torch_mb})")
    return "\n".join(lines)


SCORE_CHILD = """
import json, sys, time
t = time.perf_counter()
from opreid.cli import cli
try:
    cli.main(sys.argv[1:], prog_name="opreid")
except SystemExit as exc:
    code = exc.code
elapsed = time.perf_counter() - t
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
sys.stderr.write(json.dumps({"seconds": elapsed, "peak_kb": hwm, "exit": code}) + "\\n")
"""


def score_child(tmp: str, nq: int, ng: int, args, run) -> dict:
    """`opreid score FEATS.npz --data RELEASE --rerank --json` in a fresh process, on the features of this
    size and a release holding only the manifests and ground truth the scorer reads."""
    from manifests import GALLERY, GROUND_TRUTH, QUERY, DatasetLayout, write_manifest

    q, g, qp, gp, qc, gc = make_features(nq, ng, args.dim, args.seed, args.noise)
    feats = Path(tmp) / "feats.npz"
    np.savez(feats, query=q, gallery=g)
    del q, g
    layout = DatasetLayout(Path(tmp) / "release")
    q_ids, g_ids = [f"q{i:06d}" for i in range(nq)], [f"g{i:06d}" for i in range(ng)]
    write_manifest({"image_id": q_ids, "path": q_ids, "camid": qc}, layout.query, QUERY)
    write_manifest({"image_id": g_ids, "path": g_ids, "camid": gc}, layout.gallery, GALLERY)
    write_manifest({
        "image_id": q_ids + g_ids, "split": ["query"] * nq + ["gallery"] * ng,
        "pid": np.concatenate([qp, gp]), "camid": np.concatenate([qc, gc]),
        "occluded": np.zeros(nq + ng, bool),
    }, layout.ground_truth, GROUND_TRUTH)  # fmt: skip
    budget, device, precision = run
    cmd = [sys.executable, "-c", SCORE_CHILD, "score", str(feats), "--data", str(layout.root), "--rerank",
           "--rerank-memory-mb", str(budget), "--rerank-device", device, "--rerank-precision", precision,
           "--json", "--no-progress"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    try:
        res = json.loads(proc.stderr.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    if res["exit"] not in (0, None):
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-2:][0]}
    res["mAP"] = json.loads(proc.stdout)["mAP"]
    return res


def _score_line(res: dict, library: dict) -> str:
    if "error" in res:
        return f"opreid score --rerank: {res['error']}"
    same = "mAP as the library run's" if abs(res["mAP"] - library.get("mAP", -1)) < 1e-9 else "mAP DIFFERS"
    return (f"opreid score FEATS.npz --rerank (fresh process, loading and validating the .npz included): "
            f"{res['seconds']:.1f} s, peak RSS {res['peak_kb'] / 1024:.0f} MiB, {same} ({100 * res['mAP']:.2f}%)")  # fmt: skip


def _line(row) -> str:
    name, label, res = row
    if "seconds" not in res:
        return f"{label}: {res.get('skipped') or res.get('error')}"
    prep = f" (neighbours and V {res['prepare_seconds']:.1f} s)" if res.get("prepare_seconds") else ""
    if res.get("screen"):
        prep += f", screened in {res['screen']['precision']}"
    return f"{label}: {res['seconds']:.1f} s{prep}, peak RSS {res['peak_kb'] / 1024:.0f} MiB, mAP {100 * res['mAP']:.2f}%"


if __name__ == "__main__":
    main()
