"""`opreid release pack`: the package participants receive, and nothing else.

From a built release OUT, the package takes the train, query and gallery manifests and the images
they name, and writes beside them a card without the split seed (an imported benchmark's card,
which names no seed, is taken as it is), a `dataset.json` that lists and
checksums only these files, `sample_submission.npy` (a Q x G float32 matrix of zeros: a valid
submission in the exact shape and order) and `SUBMITTING.md`. `private/`, the curation working
folders, the leaderboard database and its marker are never read, let alone copied: the package is
built from a list of what to take, not by leaving things out.

Every copied file must match its sha256 in OUT's dataset.json (a release modified since it was
built is refused). The package is written into a staging folder beside the target, checked there
by `validate_public` (no pid or private column or metadata, opaque names, no EXIF, checksums) and
only then renamed into place, or written as an archive: a refused package leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from manifests import (
    GALLERY,
    GROUND_TRUTH,
    IMAGES,
    OPREID_PROTOCOL,
    QUERY,
    TRAIN,
    DatasetLayout,
    ManifestError,
    atomic_write_text,
    progress_bar,
    read_dataset_json,
    read_manifest,
    release_protocol,
    sha256_file,
    write_dataset_json,
)
from opreid.version import __version__
from opreid_builder.errors import PackRefusedError, ReleaseError
from opreid_builder.release.archive import archive_stem, fix_modes, package_format, write_archive
from opreid_builder.release.card import CardInputs, render_card
from opreid_builder.release.validate import PACKAGE_KIND, validate_public
from opreid_builder.release.writer import PUBLIC_ID_HEX, RELEASE_MAP, missing_part_histograms
from opreid_builder.split.presets import SplitTargets

log = logging.getLogger(__name__)

SAMPLE_DTYPE = np.float32
_CHUNK = 1 << 20
_STAGING = ".{name}.pack-"


@dataclass
class PackSummary:
    source: Path
    dest: Path
    format: str  # folder | tar | tar.gz | zip
    files: int
    bytes: int
    num_query: int
    num_gallery: int

    def as_dict(self) -> dict[str, Any]:
        return {"source": str(self.source), "dest": str(self.dest), "format": self.format, "files": self.files,
                "bytes": self.bytes, "num_query": self.num_query, "num_gallery": self.num_gallery}  # fmt: skip


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_target(out: Path, dest: Path, fmt: str, force: bool) -> None:
    src, target = out.resolve(), dest.resolve()
    if _inside(target, src) or _inside(src, target):
        raise ReleaseError(f"the package {dest} and the release {out} must not contain one another")
    if not dest.exists() and not dest.is_symlink():
        return
    if not force:
        raise ReleaseError(f"{dest} exists; choose another path, or pass --force to replace it")
    if fmt == "folder":
        if not dest.is_dir() or dest.is_symlink():
            raise ReleaseError(f"{dest} is not a folder; remove it first")
        try:
            kind = read_dataset_json(dest).get("kind")
        except ManifestError:
            kind = None
        if kind != PACKAGE_KIND and any(dest.iterdir()):
            raise ReleaseError(
                f"{dest} is a folder that is not a participants' package; refusing to replace it"
            )
    elif not dest.is_file():
        raise ReleaseError(f"{dest} is not a file; remove it first")


def _copy_checked(src: Path, dst: Path, expected: str | None, rel: str) -> None:
    """Copy `src` to `dst`, hashing on the way; the bytes must be the ones the release recorded."""
    if expected is None:
        raise PackRefusedError(f"{rel} is not listed in the release's dataset.json; rebuild the release")
    if src.is_symlink() or not src.is_file():
        raise PackRefusedError(f"{rel} is missing or not a regular file in the release")
    digest = hashlib.sha256()
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(_CHUNK):
            digest.update(chunk)
            fout.write(chunk)
    if digest.hexdigest() != expected:
        raise PackRefusedError(
            f"{rel} changed since the release was built (its sha256 differs from dataset.json); "
            "rebuild the release or restore the file"
        )


def _image_paths(staging: Path) -> list[str]:
    """The image files the (copied, checked) manifests name."""
    layout = DatasetLayout(staging)
    paths = []
    for split, schema in (("train", TRAIN), ("query", QUERY), ("gallery", GALLERY)):
        paths += read_manifest(layout.manifest(split), schema, columns=["path"]).column("path").to_pylist()
    return paths


def _histograms(out: Path) -> dict[str, dict[str, int]]:
    """The card's missing-part table, recomputed from the release's private tables (the host's copy)."""
    layout = DatasetLayout(out)
    try:
        gt = read_manifest(layout.ground_truth, GROUND_TRUTH, columns=["image_id", "split", "occluded"])
        mapping = read_manifest(layout.release_map, RELEASE_MAP, columns=["image_id", "source_image_id"])
        images = read_manifest(layout.images_table, IMAGES, columns=["image_id", "missing_parts"])
    except ManifestError as exc:
        raise ReleaseError(
            f"cannot rebuild the card's figures from the release's private tables: {exc}"
        ) from None
    source = mapping.column("source_image_id").take(
        pc.index_in(gt.column("image_id"), mapping.column("image_id"))
    )
    parts = images.column("missing_parts").take(pc.index_in(source, images.column("image_id")))
    rows = gt.append_column("missing_parts", parts)
    return missing_part_histograms(rows)


#: The card's order of target vs achieved (split_protocol's: the targets, then the derived two);
#: dataset.json stores them with sorted keys.
_TARGET_ORDER = (
    *(f.name for f in dataclasses.fields(SplitTargets)),
    "distractor_ids",
    "train_occluded_fraction",
)


def public_card(out: Path, info: dict[str, Any]) -> str:
    """The release's card for participants: the same figures, without the split seed."""
    stored = info.get("target_vs_achieved") or {}
    tva = {k: stored[k] for k in _TARGET_ORDER if k in stored} | stored
    return render_card(
        CardInputs(
            counts=info["counts"], target_vs_achieved=tva,
            parameters=info.get("parameters") or {}, eligibility=info.get("eligibility") or {},
            histograms=_histograms(out), seed=int(info.get("seed", 0)),
            tool_version=str(info.get("tool_version", __version__)),
        ),
        public=True,
    )  # fmt: skip


def write_sample_submission(path: Path, num_query: int, num_gallery: int) -> None:
    """A Q x G float32 .npy of zeros, written without holding the matrix in memory."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=SAMPLE_DTYPE, shape=(num_query, num_gallery))
    array.flush()
    del array


def submitting_guide(name: str, num_query: int, num_gallery: int) -> str:
    """SUBMITTING.md: the submission contract of docs/data-contract.md §7, with this package's numbers."""
    return f"""# Submitting to {name}

A submission ranks the {num_gallery:,} gallery images for each of the {num_query:,} query images.
Rows follow `query.parquet` (row i = its i-th image), columns or indices follow `gallery.parquet`;
both files are sorted by `image_id`, and that order is the one scored. `sample_submission.npy` is a
valid submission of the right shape and order (all zeros: every gallery image ties).

## Formats

The format is told by the file's content, not its name:

- **Distances** (`.npy`, float16/32/64, shape ({num_query}, {num_gallery})): lower is closer; submit
  similarities (higher is closer) with `--similarity` (the web form has a box for it).
- **Ranked lists** (`.npy`, integer, shape ({num_query}, K), 1 <= K <= {num_gallery}): gallery indices,
  best first, each at most once per row. mAP and mINP are then truncated at K, so such submissions
  are marked truncated and ranked apart from full rankings (and from lists of another K).
- **Features** (`.npz` with members `query` ({num_query} x D) and `gallery` ({num_gallery} x D), float):
  compared with `--metric cosine` (default) or `euclidean`.

No value may be NaN or infinite. Files are loaded without pickle; save with `numpy.save` or
`numpy.savez`.

```python
import numpy as np, pandas as pd
query = pd.read_parquet("query.parquet")      # rows of the submission, in this order
gallery = pd.read_parquet("gallery.parquet")  # columns, in this order
# q_feat: (len(query), D), g_feat: (len(gallery), D), computed on the images in `path`, in these orders
dist = 1 - (q_feat / np.linalg.norm(q_feat, axis=1, keepdims=True)) @ (g_feat / np.linalg.norm(g_feat, axis=1, keepdims=True)).T
np.save("submission.npy", dist.astype(np.float32))
```

## Check before you submit

```bash
opreid check submission.npy --data .     # shape, dtype, order, finite values, size; every problem at once
```

It reads this package only and sends nothing anywhere. An invalid submission is refused by the
leaderboard too, with the same reasons, and costs no quota.

## Submit

On the leaderboard's web page, with the team token the organisers gave you: **Submit** uploads a
file; **My team** shows your history, your quota, and lets you select the submissions that count
for the private board. The same through the API:

```bash
curl -H "Authorization: Bearer $TEAM_TOKEN" -F file=@submission.npy -F method="my model" LEADERBOARD/api/submit
curl -H "Authorization: Bearer $TEAM_TOKEN" -F file=@feats.npz -F metric=euclidean -F method=feat LEADERBOARD/api/submit
curl -H "Authorization: Bearer $TEAM_TOKEN" -H "Content-Type: application/json" \\
     -d '{{"submission_ids": [12, 15]}}' LEADERBOARD/api/selection
```

The public standings score a hidden half of the queries; the final ranking uses the other half,
on the submissions you select (by default your best public one), and is revealed after the final
phase closes. Your submission history is shown to your team (with its token) and to the host only.
"""


def _remove_stale(parent: Path, name: str) -> None:
    """Staging folders a killed pack left beside the target (named by us, so ours to remove)."""
    prefix = _STAGING.format(name=name)
    for path in parent.glob(f"{prefix}*"):
        if path.is_symlink():
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        log.info("removed %s, left by an interrupted pack", path)


def _build(out: Path, staging: Path, info: dict[str, Any], progress: bool) -> tuple[int, int]:
    layout, target = DatasetLayout(out), DatasetLayout(staging)
    listed: dict[str, str] = info.get("checksums") or {}
    for path in (layout.train, layout.query, layout.gallery):
        _copy_checked(path, staging / path.name, listed.get(path.name), path.name)
    if layout.croissant.name in listed:  # public metadata of exactly these files (releases since croissant)
        _copy_checked(
            layout.croissant, target.croissant, listed[layout.croissant.name], layout.croissant.name
        )
    early = validate_public_manifests(staging)
    if early:
        raise PackRefusedError(f"refusing to pack {out}: " + "; ".join(early))
    images = _image_paths(staging)
    for rel in progress_bar(images, total=len(images), desc="pack images", enabled=progress):
        _copy_checked(layout.resolve(rel), target.resolve(rel), listed.get(rel), rel)
    num_query = pq.read_metadata(target.query).num_rows
    num_gallery = pq.read_metadata(target.gallery).num_rows
    if release_protocol(info) == OPREID_PROTOCOL:
        atomic_write_text(target.card, public_card(out, info))
    else:  # an imported benchmark: its card holds no seed and nothing private
        check_imported_naming(out, info)
        _copy_checked(layout.card, target.card, listed.get(layout.card.name), layout.card.name)
    atomic_write_text(target.submitting_guide, submitting_guide(str(info.get("name", "the benchmark")),
                                                                num_query, num_gallery))  # fmt: skip
    write_sample_submission(target.sample_submission, num_query, num_gallery)
    files = sorted(
        p.relative_to(staging).as_posix()
        for p in staging.rglob("*")
        if p.is_file() and p.name != "dataset.json"
    )
    write_dataset_json(
        staging,
        {
            "kind": PACKAGE_KIND, "name": info.get("name"), "tool": "opreid", "tool_version": __version__,
            "built_with": info.get("tool_version"), "counts": info.get("counts"),
            "target_vs_achieved": info.get("target_vs_achieved"), "public_id_hex_digits": PUBLIC_ID_HEX,
            "submission": {
                "num_query": num_query, "num_gallery": num_gallery, "rows": target.query.name,
                "columns": target.gallery.name, "sample": target.sample_submission.name,
                "formats": ["distances", "ranked", "features"],
            },
            "release_sha256": sha256_file(layout.dataset_json),
            "checksums": {rel: sha256_file(staging / rel) for rel in files},
        },
    )  # fmt: skip
    return num_query, num_gallery


def check_imported_naming(out: Path, info: dict[str, Any]) -> None:
    """An import's public names are only as secret as their seed: refuse one that recorded its seed in
    public (imports before the random secret, which drew with seed 0 by default)."""
    if "naming_seed" not in info and "seed" in info:
        raise PackRefusedError(
            f"refusing to pack {out}: its public names were drawn from the seed in its dataset.json, and with "
            "the public dataset anyone can replay that draw and read every test pid off them; import it "
            "again (without --seed: a random secret) and pack the new release"
        )
    if info.get("naming_seed") == "given":
        log.warning(
            "%s was imported with --seed: anyone who knows that seed can read every test pid off the public "
            "names of this package",
            out,
        )


def validate_public_manifests(staging: Path) -> list[str]:
    """The manifest-level problems of a package being built (columns, metadata, paths), found before
    any image is copied; the full `validate_public` runs on the finished package."""
    report = validate_public(staging)
    manifest_codes = {"public-column", "public-metadata", "manifest", "manifest-path", "row-order"}
    return [str(v) for v in report.violations if v.code in manifest_codes]


def pack_release(
    out: str | Path, dest: str | Path, *, force: bool = False, progress: bool = False
) -> PackSummary:
    """Write the participants' package of the release `out` to `dest`: a folder, or a .tar, .tar.gz
    (.tgz) or .zip archive, told by the name. Raises PackRefusedError (exit 2) when anything private
    or modified would be shipped; nothing is written then."""
    out, dest = Path(out), Path(dest)
    fmt = package_format(dest)
    info = read_dataset_json(out)
    if info.get("kind") == PACKAGE_KIND:
        raise ReleaseError(f"{out} is already a participants' package; pack the host's release instead")
    _check_target(out, dest, fmt, force)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(dest.parent, dest.name)
    staging = Path(tempfile.mkdtemp(prefix=_STAGING.format(name=dest.name), dir=dest.parent))
    try:
        num_query, num_gallery = _build(out, staging, info, progress)
        report = validate_public(staging)
        if not report.ok:
            raise PackRefusedError(
                f"refusing to pack {out}: {len(report.violations)} problem(s): "
                + "; ".join(str(v) for v in report.violations[:5])
                + (" ..." if len(report.violations) > 5 else "")
            )
        fix_modes(staging)
        files = sum(1 for p in staging.rglob("*") if p.is_file())
        size = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file())
        if fmt == "folder":
            if dest.exists():
                old = Path(tempfile.mkdtemp(prefix=_STAGING.format(name=dest.name), dir=dest.parent))
                os.replace(dest, old / "old")
                os.replace(staging, dest)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(staging, dest)
        else:
            fd, tmp = tempfile.mkstemp(prefix=_STAGING.format(name=dest.name), dir=dest.parent)
            os.close(fd)
            try:
                write_archive(staging, Path(tmp), fmt, archive_stem(dest))
                os.chmod(tmp, 0o644)
                os.replace(tmp, dest)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            size = dest.stat().st_size
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log.info("packed %s into %s (%s, %d files)", out, dest, fmt, files)
    return PackSummary(out, dest, fmt, files, size, num_query, num_gallery)
