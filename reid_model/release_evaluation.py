"""Evaluating a run's checkpoint on another release (the paper's cross-dataset protocol: train on
Market1501, test on O-ReID) and recording it in the run's metrics.jsonl as the trainer does.

The record follows the run-folder contract of `reid_model.run_results`: `"kind": "eval"`, the
checkpoint's iteration, the metrics of `reid_model.evaluation.evaluate`, and `"dataset"` /
`"protocol"` naming the release.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from manifests import atomic_write_text
from reid_model.errors import DataError
from reid_model.run_results import METRICS_FILE, read_metrics, release_identity


def check_evaluable(release: str | Path) -> None:
    """Refuse a release that cannot be scored (no folder, or no private ground truth)."""
    from reid_model.evaluation import has_ground_truth  # imports torch: only once needed

    if not Path(release).is_dir():
        raise DataError(f"dataset folder not found: {release}")
    if not has_ground_truth(release):
        raise DataError(f"{release}: no private/ground_truth.parquet, so it cannot be evaluated on")


def evaluate_checkpoint(
    checkpoint: str | Path, release: str | Path, *, device: str = "auto", progress: bool = False
) -> dict[str, Any]:
    """The eval record of `checkpoint` on `release` (query/gallery with the checkpoint's test settings)."""
    check_evaluable(release)
    from reid_model.checkpoint import build_model, checkpoint_config, load_checkpoint
    from reid_model.distributed import resolve_device
    from reid_model.evaluation import evaluate

    state = load_checkpoint(checkpoint)
    cfg = checkpoint_config(state)
    dev = resolve_device(device)
    model = build_model(state, cfg).to(dev)
    metrics = evaluate(model, release, cfg, dev, progress=progress)
    ident = release_identity(release)
    record: dict[str, Any] = {
        "kind": "eval",
        "iteration": int(state.get("iteration", 0)),
        "dataset": ident.name,
        "protocol": ident.protocol,
        "checkpoint": Path(checkpoint).name,
    }
    record.update(metrics)
    return record


def has_eval_record(run: str | Path, dataset: str, iteration: int) -> bool:
    """Whether the run already holds an evaluation of `dataset` at `iteration`."""
    path = Path(run) / METRICS_FILE
    if not path.is_file():
        return False
    return any(
        r.get("kind") == "eval" and r.get("dataset") == dataset and r.get("iteration") == iteration
        for r in read_metrics(path)
    )


def append_eval_record(run: str | Path, record: dict[str, Any]) -> None:
    """Add `record` to RUN/metrics.jsonl, rewriting the file atomically (it never holds a half line)."""
    path = Path(run) / METRICS_FILE
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if text and not text.endswith("\n"):
        text += "\n"
    atomic_write_text(path, text + json.dumps(record, sort_keys=True) + "\n")
