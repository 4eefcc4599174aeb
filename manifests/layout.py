"""Where each file of a built dataset lives (docs/data-contract.md §1): the one source of every path.

Paths inside manifests (the `path` column) are POSIX paths relative to the root, e.g.
`images/query/0a1b2c3d4e5f.jpg`; `image_path` builds them and `resolve` turns them back into files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

IMAGES_DIR = "images"


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
    def croissant(self) -> Path:
        """Croissant JSON-LD metadata of the public files (MLCommons)."""
        return self.root / "croissant.json"

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
    def curation_record(self) -> Path:
        """What `opreid curate` ran with, its counts and the refused files."""
        return self.private / "curation.json"

    @property
    def release_map(self) -> Path:
        """The private link from every released image to its source row."""
        return self.private / "release_map.parquet"

    @property
    def images_root(self) -> Path:
        return self.root / IMAGES_DIR

    @property
    def public_top_level(self) -> tuple[Path, ...]:
        """The top-level files a release publishes beside images/: the card, its Croissant metadata and the
        three manifests."""
        return (self.card, self.croissant, self.train, self.query, self.gallery)

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
        return self.images_root / split

    @staticmethod
    def image_path(split: str, name: str) -> str:
        """The manifest `path` of an image of `split` named `name` (relative, POSIX)."""
        return f"{IMAGES_DIR}/{split}/{name}"

    def resolve(self, relative: str) -> Path:
        """The file a manifest `path` names."""
        return self.root / relative

    def manifest(self, split: str) -> Path:
        return self.root / f"{split}.parquet"
