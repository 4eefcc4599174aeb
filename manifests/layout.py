"""Where each file of a built dataset lives (docs/data-contract.md §1): the one source of every path.

Paths inside manifests (the `path` column) are POSIX paths relative to the root, e.g.
`images/query/0a1b2c3d4e5f.jpg`; `image_path` builds them and `resolve` turns them back into files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

IMAGES_DIR = "images"
LEADERBOARD_MARKER = ".opreid-leaderboard.json"
#: File names of databases that must never sit inside a release (`validate` warns, `pack` refuses).
DATABASE_SUFFIXES = (".db", ".sqlite", ".sqlite3", ".db-wal", ".db-shm", ".db-journal")


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
    def masked_digests(self) -> Path:
        """The sha256 of every masked crop as curate wrote it (`validate` checks released images against it)."""
        return self.cache / "masked_digests.parquet"

    @property
    def review(self) -> Path:
        return self.root / "review"

    @property
    def leaderboard_marker(self) -> Path:
        """Written by `opreid leaderboard init`: where the leaderboard of this release lives (never shipped)."""
        return self.root / LEADERBOARD_MARKER

    @property
    def host_dir(self) -> Path:
        """The host's folder beside the release (`OUT.host/`): the leaderboard database by default.

        Outside the release on purpose, so that copying or packing OUT can never ship it.
        """
        root = self.root.resolve()
        return root.parent / f"{root.name}.host"

    @property
    def sample_submission(self) -> Path:
        """A public package's example submission: a Q x G float32 matrix in the exact order."""
        return self.root / "sample_submission.npy"

    @property
    def submitting_guide(self) -> Path:
        """A public package's instructions for participants."""
        return self.root / "SUBMITTING.md"

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
