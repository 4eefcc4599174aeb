"""Write a split as the release layout of docs/data-contract.md §1.

Public names carry nothing about an identity: query and gallery images get opaque ids (48 random
bits from the seed, as 12 hex digits), and their manifests are ordered by that id. Train pids are
remapped to 0..N-1 in a seeded random order; test pids (private) continue at N. The link back to
the source images stays in `private/` (`private/release_map.parquet`).

Images are copied byte for byte from the masked crops (already EXIF-free and masked), into a
staging tree (`OUT/.images.XXXX/`) renamed into place; `dataset.json`, whose checksums cover every
other released file, is written last, so an interrupted run never leaves a release that validates.
A staging tree left by a killed run is removed by the next one (and flagged by `validate`).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from manifests import (
    BODY_PARTS,
    GALLERY,
    GROUND_TRUTH,
    QUERY,
    SPLITS,
    TRAIN,
    DatasetLayout,
    ManifestSchema,
    atomic_write_text,
    progress_bar,
    sha256_tree,
    staging_dir,
    write_dataset_json,
    write_manifest,
)
from manifests.layout import IMAGES_DIR
from opreid.version import __version__
from opreid_builder.errors import ReleaseError
from opreid_builder.release import croissant
from opreid_builder.release.card import CardInputs, render_card
from opreid_builder.split.protocol import SplitSelection

log = logging.getLogger(__name__)

#: Private link from each released image to its source row (never shipped to participants).
RELEASE_MAP = ManifestSchema(
    "release_map",
    pa.schema(
        [
            pa.field("image_id", pa.string(), nullable=False),
            pa.field("split", pa.string(), nullable=False),
            pa.field("role", pa.string(), nullable=False),
            pa.field("pid", pa.int64(), nullable=False),
            pa.field("source_image_id", pa.string(), nullable=False),
            pa.field("source_pid", pa.int64(), nullable=False),
            pa.field("source_path", pa.string(), nullable=True),
        ]
    ),
)
PUBLIC_ID_HEX = 12
#: Name prefixes of the image staging trees `_copy_images` creates in OUT (and renames away).
STAGING_PREFIXES = (".images.", ".images-old.")
_RELEASE_SALT = 0x0E1EA5E  # separates the release draws from the split draws of the same seed


@dataclass
class ReleaseSummary:
    out: Path
    counts: dict[str, dict[str, int]]
    target_vs_achieved: dict[str, dict[str, Any]]
    files: int


def _public_ids(n: int, rng: np.random.Generator) -> np.ndarray:
    """n distinct random ids of PUBLIC_ID_HEX hex digits; collisions are redrawn (deterministically)."""
    values = rng.integers(0, 1 << (4 * PUBLIC_ID_HEX), size=n, dtype=np.int64)
    while True:
        _, first = np.unique(values, return_index=True)
        dup = np.setdiff1d(np.arange(n), first)
        if len(dup) == 0:
            break
        values[dup] = rng.integers(0, 1 << (4 * PUBLIC_ID_HEX), size=len(dup), dtype=np.int64)
    return np.array([f"{v:0{PUBLIC_ID_HEX}x}" for v in values.tolist()], dtype=object)


def _remap(values: np.ndarray, offset: int, rng: np.random.Generator) -> dict[int, int]:
    uniq = np.unique(values)
    return dict(zip(uniq.tolist(), (rng.permutation(len(uniq)) + offset).tolist(), strict=True))


def missing_part_histograms(rows: pa.Table) -> dict[str, dict[str, int]]:
    """Per split, how many occluded images miss each body part (from `missing_parts`)."""
    out = {split: dict.fromkeys(BODY_PARTS, 0) for split in SPLITS}
    if "missing_parts" not in rows.column_names:
        return out
    for split in SPLITS:
        sel = rows.filter(pc.and_(pc.equal(rows.column("split"), split), rows.column("occluded")))
        counts = Counter(p for parts in sel.column("missing_parts").to_pylist() if parts for p in parts)
        out[split].update({k: int(v) for k, v in counts.items()})
    return out


def stale_staging(out: Path) -> list[Path]:
    """Image staging trees in OUT: only a killed build-split leaves one behind."""
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if p.name.startswith(STAGING_PREFIXES) and p.is_dir())


def _remove_stale_staging(out: Path) -> None:
    for folder in stale_staging(out):
        log.info("removing %s, left by an interrupted build", folder)
        shutil.rmtree(folder)


def _copy_images(out: Path, sources: list[str], targets: list[str], progress: bool) -> None:
    """Copy masked crops into a fresh images/ tree, renamed into place at the end."""
    _remove_stale_staging(out)
    staging = staging_dir(out, STAGING_PREFIXES[0])
    try:
        for split in SPLITS:
            (staging / split).mkdir()
        pairs = zip(sources, targets, strict=True)
        for src, dst in progress_bar(pairs, total=len(sources), desc="copy images", enabled=progress):
            src_path = out / src
            if not src_path.is_file():
                raise ReleaseError(f"masked image {src_path} is missing; rerun `opreid curate`")
            shutil.copyfile(src_path, staging / Path(dst).relative_to(IMAGES_DIR))
        final = DatasetLayout(out).images_root
        if final.exists():
            old = staging_dir(out, STAGING_PREFIXES[1])
            os.replace(final, old / IMAGES_DIR)
            os.replace(staging, final)
            shutil.rmtree(old)
        else:
            os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@dataclass
class ReleaseRows:
    """The released images, one entry each (parallel arrays), and what the release names them.

    Shared by `opreid build-split` and `opreid import`: `name` draws the opaque public ids and the
    seeded pid remapping (train 0..N-1, test from N) and gives every image its manifest path;
    `write_manifests` writes the three public manifests, the ground truth and the release map.
    """

    split: np.ndarray  # train | query | gallery
    role: list[str]  # RELEASE_MAP role
    source_pid: np.ndarray
    camid: np.ndarray
    occluded: np.ndarray
    source_image_id: list[str]
    source_path: list[str | None]
    ext: list[str]  # suffix of each released file
    public_id: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    pid: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    path: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))

    def name(self, layout: DatasetLayout, rng: np.random.Generator) -> None:
        n, split, camid, ext = len(self.split), self.split, self.camid, self.ext
        self.public_id = public_id = _public_ids(n, rng)
        is_train = split == "train"
        train_map = _remap(self.source_pid[is_train], 0, rng)
        test_map = _remap(self.source_pid[~is_train], len(train_map), rng)
        self.pid = pid = np.array(
            [
                (train_map if t else test_map)[p]
                for t, p in zip(is_train, self.source_pid.tolist(), strict=True)
            ],
            dtype=np.int64,
        )
        path = np.empty(n, dtype=object)
        test = np.flatnonzero(~is_train)
        path[test] = [layout.image_path(split[i], f"{public_id[i]}{ext[i]}") for i in test]
        train_idx = np.flatnonzero(is_train)
        seq = Counter()
        for i in train_idx[np.lexsort((public_id[train_idx], pid[train_idx]))]:
            p = int(pid[i])
            path[i] = layout.image_path("train", f"{p:04d}_c{int(camid[i])}_{seq[p]:04d}{ext[i]}")
            seq[p] += 1
        self.path = path

    def _table(self, idx: np.ndarray, with_pid: bool, with_occ: bool) -> dict[str, Any]:
        cols: dict[str, Any] = {"image_id": self.public_id[idx].tolist(), "path": self.path[idx].tolist()}
        if with_pid:
            cols["pid"] = pa.array(self.pid[idx], pa.int64())
        cols["camid"] = pa.array(self.camid[idx], pa.int32())
        if with_occ:
            cols["occluded"] = pa.array(self.occluded[idx], pa.bool_())
        return cols

    def write_manifests(self, layout: DatasetLayout) -> None:
        split, public_id, pid, path = self.split, self.public_id, self.pid, self.path
        train_idx = np.flatnonzero(split == "train")
        train_rows = train_idx[np.lexsort((path[train_idx].astype(str), pid[train_idx]))]
        write_manifest(self._table(train_rows, True, True), layout.train, TRAIN)
        for name, schema in (("query", QUERY), ("gallery", GALLERY)):
            idx = np.flatnonzero(split == name)
            idx = idx[np.argsort(public_id[idx].astype(str), kind="stable")]  # random ids: order says nothing
            write_manifest(self._table(idx, False, False), layout.manifest(name), schema)
        all_rows = np.lexsort((public_id.astype(str), np.array([SPLITS.index(s) for s in split])))
        gt = self._table(all_rows, True, True)
        gt["split"] = split[all_rows].tolist()
        write_manifest({k: gt[k] for k in GROUND_TRUTH.columns}, layout.ground_truth, GROUND_TRUTH)
        by_id = np.argsort(public_id.astype(str), kind="stable")
        write_manifest(
            {
                "image_id": public_id[by_id].tolist(),
                "split": split[by_id].tolist(),
                "role": [self.role[i] for i in by_id],
                "pid": pa.array(pid[by_id], pa.int64()),
                "source_image_id": [self.source_image_id[i] for i in by_id],
                "source_pid": pa.array(self.source_pid[by_id], pa.int64()),
                "source_path": pa.array([self.source_path[i] for i in by_id], pa.string()),
            },
            layout.release_map,
            RELEASE_MAP,
        )


def release_files(out: Path) -> list[str]:
    """Every file a release's checksums cover: top-level manifests and card, images/, private/."""
    layout = DatasetLayout(out)
    files = [path.name for path in layout.public_top_level if path.is_file()]
    for folder in (layout.images_root, layout.private):
        if folder.is_dir():
            files += [
                p.relative_to(out).as_posix()
                for p in folder.rglob("*")
                if p.is_file() and not p.name.startswith(".")
            ]
    return sorted(files)


def write_release(
    out: str | Path,
    selection: SplitSelection,
    *,
    seed: int,
    parameters: dict[str, Any],
    progress: bool = False,
) -> ReleaseSummary:
    """Write images/, the manifests, private/ground truth + map, README.md, then dataset.json.

    `selection.rows` must carry `masked_path` (relative to `out`); `missing_parts` and
    `source_path` are used when present. `parameters` (curation and split settings) go to
    dataset.json and the card as they are.
    """
    out = Path(out)
    layout = DatasetLayout(out)
    rows = selection.rows
    if "masked_path" not in rows.column_names or rows.column("masked_path").null_count:
        raise ReleaseError("every selected image needs a masked crop (masked_path); rerun `opreid curate`")
    layout.dataset_json.unlink(missing_ok=True)  # the commit marker goes first, comes back last

    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _RELEASE_SALT]))
    n = rows.num_rows
    masked = rows.column("masked_path").to_pylist()
    images = ReleaseRows(
        split=np.array(rows.column("split").to_pylist(), dtype=object),
        role=rows.column("role").to_pylist(),
        source_pid=rows.column("pid").to_numpy().astype(np.int64),
        camid=rows.column("camid").to_numpy().astype(np.int64),
        occluded=rows.column("occluded").to_numpy(zero_copy_only=False).astype(bool),
        source_image_id=rows.column("image_id").to_pylist(),
        source_path=rows.column("source_path").to_pylist()
        if "source_path" in rows.column_names
        else [None] * n,
        ext=[Path(m).suffix.lower() or ".jpg" for m in masked],
    )
    images.name(layout, rng)
    _copy_images(out, masked, images.path.tolist(), progress)
    images.write_manifests(layout)
    split, role, pid, occluded = images.split, images.role, images.pid, images.occluded

    counts = _counts(split, role, pid, occluded)
    tva = {
        k: {"target": selection.targets.get(k), "achieved": selection.achieved.get(k)}
        for k in selection.targets
    }
    card = render_card(
        CardInputs(
            counts=counts,
            target_vs_achieved=tva,
            parameters=parameters,
            eligibility=selection.eligibility,
            histograms=missing_part_histograms(rows),
            seed=int(seed),
            tool_version=__version__,
        )
    )
    atomic_write_text(layout.card, card)
    atomic_write_text(layout.croissant, croissant.dumps(croissant.release_croissant(out, __version__)))
    files = release_files(out)
    checksums = sha256_tree(out, files)
    write_dataset_json(
        out,
        {
            "name": "OPReID-protocol benchmark",
            "tool": "opreid",
            "tool_version": __version__,
            "seed": int(seed),
            "parameters": parameters,
            "counts": counts,
            "target_vs_achieved": tva,
            "eligibility": selection.eligibility,
            "public_id_hex_digits": PUBLIC_ID_HEX,
            "checksums": checksums,
        },
    )
    log.info("release written to %s: %d files", out, len(files))
    return ReleaseSummary(out=out, counts=counts, target_vs_achieved=tva, files=len(files))


def _counts(split: np.ndarray, role: list[str], pid: np.ndarray, occluded: np.ndarray) -> dict:
    role_arr = np.array(role, dtype=object)
    counts: dict[str, dict[str, int]] = {}
    for name in SPLITS:
        sel = split == name
        counts[name] = {
            "ids": int(len(np.unique(pid[sel]))),
            "images": int(sel.sum()),
            "occluded": int(occluded[sel].sum()),
        }
    dist = role_arr == "distractor"
    counts["gallery"]["distractor_ids"] = int(len(np.unique(pid[dist])))
    counts["gallery"]["distractor_images"] = int(dist.sum())
    counts["gallery"]["query_match_images"] = int((role_arr == "match").sum())
    counts["query"]["two_query_ids"] = int(
        (np.unique(pid[split == "query"], return_counts=True)[1] == 2).sum()
    )
    return counts
