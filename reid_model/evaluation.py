"""In-training evaluation on the dataset's query/gallery with the scorer's public metrics API.

Only possible when the private ground truth is present; the distances and the metrics come from
`benchmarks.market_metrics.evaluate_features` (the scorer's path for a features submission), so
that training reports what the scorer would report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from manifests import DatasetLayout
from reid_model.config import Config
from reid_model.data import image_loader, read_split
from reid_model.extract import extract_features
from reid_model.model import ReidModel
from reid_model.transforms import test_transform


def has_ground_truth(root: str | Path) -> bool:
    return DatasetLayout(root).ground_truth.is_file()


def evaluate(
    model: ReidModel,
    root: str | Path,
    cfg: Config,
    device: torch.device,
    num_workers: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """mAP, mINP and CMC rank-1/5/10 (fractions; None without a valid query) for the current weights."""
    from benchmarks.market_metrics import DEFAULT_RANKS, evaluate_features

    query = read_split(root, "query")
    gallery = read_split(root, "gallery")
    transform = test_transform(cfg.input)
    feats = []
    for name, split in (("query", query), ("gallery", gallery)):
        loader = image_loader(split.paths, transform, cfg.test.batch_size, num_workers)
        feats.append(extract_features(model, loader, device, cfg.test.flip, progress, desc=f"eval {name}"))
    metrics = evaluate_features(
        feats[0].numpy(), feats[1].numpy(), query.pids, gallery.pids, query.camids, gallery.camids,
        metric=cfg.test.metric, ranks=DEFAULT_RANKS,
    )  # fmt: skip
    summary = metrics.to_dict()  # NaN (no valid query) becomes None
    return {
        "mAP": summary["mAP"],
        "mINP": summary["mINP"],
        "rank1": summary["rank1"],
        "rank5": summary["rank5"],
        "rank10": summary["rank10"],
        "num_valid_queries": summary["num_valid_queries"],
    }
