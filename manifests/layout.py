"""Where each file of a built dataset lives (docs/data-contract.md §1)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DatasetLayout:
    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    @property
    def dataset_json(self) -> Path:
        return self.root / "dataset.json"

    @property
    def card(self) -> Path:
        return self.root / "README.md"

    @property
    def train(self) -> Path:
        return self.root / "train.parquet"

    @property
    def query(self) -> Path:
        return self.root / "query.parquet"

    @property
    def gallery(self) -> Path:
        return self.root / "gallery.parquet"

    @property
    def private(self) -> Path:
        return self.root / "private"

    @property
    def ground_truth(self) -> Path:
        return self.private / "ground_truth.parquet"

    @property
    def images_table(self) -> Path:
        return self.private / "images.parquet"

    @property
    def masked(self) -> Path:
        return self.root / "masked"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def review(self) -> Path:
        return self.root / "review"

    def images(self, split: str) -> Path:
        return self.root / "images" / split

    def manifest(self, split: str) -> Path:
        return self.root / f"{split}.parquet"
