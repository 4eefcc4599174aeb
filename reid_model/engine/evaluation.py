"""In-training evaluation with the scorer's public metrics API, on any number of query/gallery splits.

What training evaluates (`evaluation_sets`): the test split of the `--data` release when its private
ground truth is present, the test split of every `--eval-data` release (cross-dataset evaluation,
e.g. train on Market-1501 and test on Occluded-REID), and the validation split held out of the
training identities (`--val-ids`), which alone chooses `best.pt`. Each set is named by its
release's `dataset.json` "name" (else the folder name) and carries its "protocol" when dataset.json
has one, and `"published": false` when an imported release says it is not the published dataset of
its layout; `opreid report` reads those keys from metrics.jsonl.

The distances and the metrics come from `benchmarks.metrics.market.evaluate_features` (the scorer's
path for a features submission), so that training reports what the scorer would report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from manifests import DatasetLayout
from reid_model.config import Config
from reid_model.data.datasets import SplitRecords, ValidationSplit, image_loader, read_split
from reid_model.data.transforms import test_transform
from reid_model.engine.extract import extract_features
from reid_model.engine.run_results import release_identity
from reid_model.errors import DataError
from reid_model.modeling.model import ReidModel

#: Splits an evaluation record can be about: the release's own test split, or the held-out training ids.
SPLITS = ("test", "val")


@dataclass(frozen=True)
class EvalSet:
    """One query/gallery split with ground truth, and how its records are labelled in metrics.jsonl."""

    dataset: str
    split: str  # one of SPLITS
    query: SplitRecords
    gallery: SplitRecords
    protocol: Any = None  # dataset.json's "protocol", when it has one
    root: Path | None = None
    published: bool | None = None  # whether an import is its layout's published dataset (None: not said)

    def labels(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dataset": self.dataset, "split": self.split}
        if self.protocol is not None:
            out["protocol"] = self.protocol
        if self.published is not None:
            out["published"] = self.published
        return out


def has_ground_truth(root: str | Path) -> bool:
    return DatasetLayout(root).ground_truth.is_file()


def evaluation_sets(
    data_root: str | Path, eval_data: Sequence[str | Path] = (), validation: ValidationSplit | None = None
) -> list[EvalSet]:
    """The validation split (if any) first, then the test splits of --data (if it has ground truth) and
    of every --eval-data release. Releases sharing a name get their folder name appended."""
    roots = [Path(data_root)]
    for extra in eval_data:
        extra = Path(extra)
        if not extra.is_dir():
            raise DataError(f"--eval-data: dataset folder not found: {extra}")
        if not has_ground_truth(extra):
            raise DataError(f"--eval-data {extra}: no private/ground_truth.parquet, nothing to evaluate")
        if extra.resolve() in {r.resolve() for r in roots}:
            raise DataError(f"--eval-data {extra}: given twice (or is --data)")
        roots.append(extra)
    named = [(root, release_identity(root)) for root in roots]
    counts = Counter(ident.name for _, ident in named)
    sets: list[EvalSet] = []
    if validation is not None:
        ident = named[0][1]
        sets.append(
            EvalSet(ident.name, "val", validation.query, validation.gallery, ident.protocol, roots[0])
        )
    for root, ident in named:
        if not has_ground_truth(root):
            continue
        label = ident.name if counts[ident.name] == 1 else f"{ident.name} [{root.resolve().name}]"
        query, gallery = read_split(root, "query"), read_split(root, "gallery")
        sets.append(EvalSet(label, "test", query, gallery, ident.protocol, root, ident.published))
    return sets


def evaluate(
    model: ReidModel,
    eval_set: EvalSet,
    cfg: Config,
    device: torch.device,
    num_workers: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """mAP, mINP and CMC rank-1/5/10 (fractions; None without a valid query) for the current weights."""
    from benchmarks.metrics.market import DEFAULT_RANKS, evaluate_features

    transform = test_transform(cfg.input)
    feats = []
    for name, split in (("query", eval_set.query), ("gallery", eval_set.gallery)):
        loader = image_loader(split.paths, transform, cfg.test.batch_size, num_workers)
        desc = f"{eval_set.split} {name}"
        feats.append(extract_features(model, loader, device, cfg.test.flip, progress, desc=desc))
    q, g = eval_set.query, eval_set.gallery
    metrics = evaluate_features(
        feats[0].numpy(), feats[1].numpy(), q.pids, g.pids, q.camids, g.camids,
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
