"""What a training run leaves beside its checkpoints: environment.json, metrics.jsonl, curves.png.

All written atomically; metrics.jsonl is rewritten whole (it is small), so a resumed run first
drops the records past its checkpoint and the file never holds a half line.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from manifests import atomic_path, atomic_write_text


def git_state(where: Path) -> dict[str, Any]:
    """Commit and dirty flag of the git checkout holding `where`; nulls outside a repository."""

    def run(*args: str) -> str | None:
        try:
            res = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return res.stdout.strip() if res.returncode == 0 else None

    top = run("rev-parse", "--show-toplevel")
    if top is None:
        return {"repository": None, "commit": None, "dirty": None}
    status = run("status", "--porcelain", "--untracked-files=no")
    return {
        "repository": top,
        "commit": run("rev-parse", "HEAD"),
        "dirty": bool(status) if status is not None else None,
    }


def environment(device: torch.device, world_size: int) -> dict[str, Any]:
    import torchvision

    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "device": str(device),
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu_threads": torch.get_num_threads(),
        "world_size": world_size,
        "argv": sys.argv,
        "cwd": os.getcwd(),
    }
    env["git"] = git_state(Path(__file__).resolve().parent)
    return env


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def _finite(value: Any) -> Any:
    """NaN and infinities are not JSON: they become null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


class MetricsLog:
    """Append-only JSON lines, kept in memory and rewritten atomically on every flush.

    `sink` (e.g. a TensorBoardLog) receives every new record too.
    """

    def __init__(self, path: Path, resume_from_iteration: int | None = None, sink: Any = None):
        self.path = path
        self.sink = sink
        self.records: list[dict[str, Any]] = []
        if resume_from_iteration is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if rec.get("iteration", 0) <= resume_from_iteration:
                    self.records.append(rec)

    def add(self, record: dict[str, Any]) -> None:
        record = {k: _finite(v) for k, v in record.items()}
        self.records.append(record)
        if self.sink is not None:
            self.sink.add(record)

    def flush(self) -> None:
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.records)
        atomic_write_text(self.path, text)
        if self.sink is not None:
            self.sink.flush()


def _series(records: list[dict[str, Any]], key: str) -> list[float]:
    return [float("nan") if r.get(key) is None else r[key] for r in records]


def plot_curves(records: list[dict[str, Any]], path: Path) -> None:
    """Top: loss terms, learning rate, evaluations (mAP / Rank-1 per evaluated split). Bottom: BED's
    operating range per branch: mean positive and negative pair distances, the two parts of BED, and
    the gradient norm each part sends to the features (log scale), so a saturated loss shows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") in ("eval", "val")]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    (ax_loss, ax_lr, ax_eval), (ax_dist, ax_terms, ax_grad) = axes
    its = [r["iteration"] for r in train]
    keys = sorted({k for r in train for k in r})
    if train:
        for key in (k for k in keys if k.startswith("loss")):
            ax_loss.plot(its, _series(train, key), label=key)
        ax_loss.legend(fontsize=8)
        ax_lr.plot(its, _series(train, "lr"))
    panels = ((ax_dist, ("_d_pos", "_d_neg")), (ax_terms, ("_bed_pos", "_bed_neg")),
              (ax_grad, ("_grad_pos", "_grad_neg")))  # fmt: skip
    for ax, suffixes in panels:
        shown = [k for k in keys if k.startswith("range_") and k.endswith(suffixes)]
        for key in shown:
            ax.plot(its, _series(train, key), label=key.removeprefix("range_"))
        if shown:
            ax.legend(fontsize=8)
    if any(k.startswith("range_") and "_grad_" in k for k in keys):
        ax_grad.set_yscale("log")
    ax_loss.set(title="training loss", xlabel="iteration")
    ax_lr.set(title="learning rate", xlabel="iteration")
    ax_dist.set(title="mean pair distance (BED's space)", xlabel="iteration")
    ax_terms.set(title="BED: positive and negative parts", xlabel="iteration")
    ax_grad.set(title="gradient norm sent to the features", xlabel="iteration")
    groups = sorted({(r["kind"], r.get("dataset", "")) for r in evals})
    for kind, dataset in groups:
        rows = [r for r in evals if r["kind"] == kind and r.get("dataset", "") == dataset]
        label = f"{kind} {dataset}".strip()
        x = [r["iteration"] for r in rows]
        ax_eval.plot(x, _series(rows, "mAP"), "o-", label=f"mAP {label}")
        ax_eval.plot(x, _series(rows, "rank1"), "s--", label=f"R-1 {label}")
    if groups:
        ax_eval.legend(fontsize=7)
    ax_eval.set(title="query/gallery evaluation", xlabel="iteration", ylim=(0, 1))
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
