"""What a training run leaves beside its checkpoints: environment.json, metrics.jsonl, curves.png.

All written atomically; metrics.jsonl is rewritten whole (it is small), so a resumed run first
drops the records past its checkpoint and the file never holds a half line.
"""

from __future__ import annotations

import json
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


class MetricsLog:
    """Append-only JSON lines, kept in memory and rewritten atomically on every flush."""

    def __init__(self, path: Path, resume_from_iteration: int | None = None):
        self.path = path
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
        self.records.append(record)

    def flush(self) -> None:
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.records)
        atomic_write_text(self.path, text)


def plot_curves(records: list[dict[str, Any]], path: Path) -> None:
    """Loss terms and learning rate per iteration; mAP / Rank-1 per evaluation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    if train:
        its = [r["iteration"] for r in train]
        keys = sorted({k for r in train for k in r if k.startswith("loss")})
        for key in keys:
            axes[0].plot(its, [r.get(key, float("nan")) for r in train], label=key)
        axes[0].legend(fontsize=8)
        axes[1].plot(its, [r["lr"] for r in train])
    axes[0].set(title="training loss", xlabel="iteration")
    axes[1].set(title="learning rate", xlabel="iteration")
    if evals:
        its = [r["iteration"] for r in evals]
        nan = float("nan")
        axes[2].plot(its, [nan if r["mAP"] is None else r["mAP"] for r in evals], "o-", label="mAP")
        axes[2].plot(its, [nan if r["rank1"] is None else r["rank1"] for r in evals], "s-", label="Rank-1")
        axes[2].legend(fontsize=8)
    axes[2].set(title="query/gallery evaluation", xlabel="iteration", ylim=(0, 1))
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
