"""Scorer speed at OPReID size: the O(QxG) evaluator vs a full row-wise argsort, same matrix, same run.

    .venv/bin/python perf/score_speed.py                                # 4,200 x 41,014 (needs ~2 GB RAM, ~1 min)
    .venv/bin/python perf/score_speed.py --queries 500 --gallery 5000   # quick

Labels follow the OPReID protocol (each query identity has one occluded and one holistic gallery
image on other cameras; 3,515 query identities; distractors fill the gallery) and distances come
from noisy identity embeddings, so positives land at realistic ranks. Reported:
- metrics time of `evaluate_distances` (finite check included) vs the time of `np.argsort` of every
  row alone (which is most of what fast-reid's evaluator spends), and their ratio (goal: >= 10x);
- the full `score_submission` of the saved .npy (validation, hashing, metrics, breakdowns), run in a
  child process so its peak RSS is its own, against the matrix's size;
- agreement (max |difference|) with the simple per-query reference on every query.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.metrics.market import evaluate_distances
from benchmarks.metrics.reference import reference_distances

CHILD = """
import json, sys, time
t = time.perf_counter()
from benchmarks.scoring import score_submission
report = score_submission(sys.argv[1], sys.argv[2])
elapsed = time.perf_counter() - t
# VmHWM is this process's own peak (ru_maxrss would include the parent's RSS at fork time).
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": elapsed, "peak_rss_kb": hwm, "mAP": report.metrics.mAP}))
"""


def opreid_labels(rng, num_query: int, num_gallery: int, query_ids: int):
    """Query/gallery pids and camids after the paper's protocol (sizes scaled to the arguments)."""
    query_ids = min(query_ids, num_query, num_gallery // 2)
    q_pids = np.concatenate([np.arange(query_ids), rng.integers(0, query_ids, num_query - query_ids)])
    q_cams = rng.integers(0, 89, num_query).astype(np.int32)
    cam_of_id = np.zeros(query_ids, np.int32)
    cam_of_id[q_pids] = q_cams  # queries of one identity may differ in camera; gallery avoids the last seen
    own = np.repeat(np.arange(query_ids), 2)
    own_cams = (np.repeat(cam_of_id, 2) + 1 + rng.integers(0, 50, 2 * query_ids)) % 89
    extra = num_gallery - len(own)
    distractor_ids = query_ids + np.sort(rng.integers(0, max(1, extra // 4), extra))
    g_pids = np.concatenate([own, distractor_ids])
    g_cams = np.concatenate([own_cams, rng.integers(0, 89, extra)]).astype(np.int32)
    g_occ = np.concatenate([np.tile([True, False], query_ids), rng.random(extra) < 0.5])
    perm = rng.permutation(num_gallery)
    return q_pids, q_cams, g_pids[perm], g_cams[perm], g_occ[perm]


def embed_distances(rng, q_pids, g_pids, dim: int, noise: float) -> np.ndarray:
    """Cosine distances between noisy copies of per-identity unit vectors (float32, Q x G)."""
    centres = rng.standard_normal((int(max(q_pids.max(), g_pids.max())) + 1, dim)).astype(np.float32)

    def feats(pids):
        x = centres[pids] + noise * rng.standard_normal((len(pids), dim)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    q, g = feats(q_pids), feats(g_pids)
    out = np.empty((len(q), len(g)), np.float32)
    for a in range(0, len(q), 512):
        np.matmul(q[a : a + 512], g.T, out=out[a : a + 512])
        np.subtract(1.0, out[a : a + 512], out=out[a : a + 512])
    return out


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def argsort_rows(d: np.ndarray, chunk: int = 256) -> None:
    for a in range(0, len(d), chunk):
        np.argsort(d[a : a + chunk], axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--queries", type=int, default=4200)
    ap.add_argument("--gallery", type=int, default=41014)
    ap.add_argument("--query-ids", type=int, default=3515)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--noise", type=float, default=1.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--reference-queries", type=int, default=None, help="compare this many queries (default all)"
    )
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    q_pids, q_cams, g_pids, g_cams, g_occ = opreid_labels(rng, args.queries, args.gallery, args.query_ids)
    t_make, d = timed(lambda: embed_distances(rng, q_pids, g_pids, args.dim, args.noise))
    mb = d.nbytes / 2**20
    print(f"matrix {d.shape[0]} x {d.shape[1]} float32 ({mb:.0f} MiB), made in {t_make:.1f} s")

    t_fast, fast = timed(lambda: evaluate_distances(d, q_pids, g_pids, q_cams, g_cams))
    t_sort, _ = timed(lambda: argsort_rows(d))
    t_fast2, _ = timed(lambda: evaluate_distances(d, q_pids, g_pids, q_cams, g_cams))
    t_fast = min(t_fast, t_fast2)
    print(f"evaluate_distances (finite check + metrics): {t_fast:.3f} s")
    print(f"np.argsort of every row alone:               {t_sort:.3f} s")
    print(f"speed-up vs argsort alone:                   {t_sort / t_fast:.1f}x  (goal >= 10x)")
    print(f"  mAP {fast.mAP:.4f}  mINP {fast.mINP:.4f}  R-1 {fast.cmc[1]:.4f}  R-5 {fast.cmc[5]:.4f}  "
          f"R-10 {fast.cmc[10]:.4f}  valid {fast.num_valid_queries}/{fast.num_queries}")  # fmt: skip

    n_ref = args.reference_queries or len(d)
    t_ref, ref = timed(lambda: reference_distances(d[:n_ref], q_pids[:n_ref], g_pids, q_cams[:n_ref], g_cams))
    sub = evaluate_distances(d, q_pids, g_pids, q_cams, g_cams, query_mask=np.arange(len(d)) < n_ref)
    diff = max(abs(sub.mAP - ref["mAP"]), abs(sub.mINP - ref["mINP"]),
               *(abs(sub.cmc[k] - ref["cmc"][k]) for k in (1, 5, 10)),
               float(np.nanmax(np.abs(sub.ap[:n_ref] - np.asarray(ref["ap"])))))  # fmt: skip
    same_hits = bool(np.array_equal(sub.first_hit_rank[:n_ref], ref["first_hit_rank"]))
    print(f"reference (stable argsort per query) on {n_ref} queries: {t_ref:.1f} s; "
          f"max |difference| {diff:.2e}; first-hit ranks identical: {same_hits}")  # fmt: skip

    from manifests import GALLERY, GROUND_TRUTH, QUERY, DatasetLayout, write_manifest

    with tempfile.TemporaryDirectory(prefix="score_speed_") as tmp:
        layout = DatasetLayout(Path(tmp) / "OUT")
        q_ids = [f"q{i:06d}" for i in range(len(q_pids))]
        g_ids = [f"g{i:06d}" for i in range(len(g_pids))]
        write_manifest({"image_id": q_ids, "path": q_ids, "camid": q_cams}, layout.query, QUERY)
        write_manifest({"image_id": g_ids, "path": g_ids, "camid": g_cams}, layout.gallery, GALLERY)
        write_manifest({
            "image_id": q_ids + g_ids, "split": ["query"] * len(q_ids) + ["gallery"] * len(g_ids),
            "pid": np.concatenate([q_pids, g_pids]), "camid": np.concatenate([q_cams, g_cams]),
            "occluded": np.concatenate([np.ones(len(q_ids), bool), g_occ]),
        }, layout.ground_truth, GROUND_TRUTH)  # fmt: skip
        sub_path = Path(tmp) / "distances.npy"
        np.save(sub_path, d)
        d = None  # the child maps the file; drop the parent copy first
        proc = subprocess.run([sys.executable, "-c", CHILD, str(sub_path), str(layout.root)],
                              capture_output=True, text=True, check=True)  # fmt: skip
        child = json.loads(proc.stdout.strip().splitlines()[-1])
    rss = child["peak_rss_kb"] / 1024
    print(f"score_submission of the .npy in a fresh process (validate + sha256 + metrics + breakdown): "
          f"{child['seconds']:.2f} s, peak RSS {rss:.0f} MiB = {rss / mb:.2f}x the matrix")  # fmt: skip
    assert abs(child["mAP"] - fast.mAP) < 1e-12


if __name__ == "__main__":
    main()
