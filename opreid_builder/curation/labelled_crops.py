"""Crops with a known occlusion label, and what the pose stage finds on them (calibrate and fit).

A labelled set is a *source*: a pair of folders a person sorted (`--occluded DIR --holistic DIR`,
crops of one camera network), or synthetic crops from `opreid synth` (`--synth DIR`), whose
`truth.parquet` knows each crop's flag. Cut copies of the holistic crops (`cut_copies`: the crop's
left, right, top or bottom part only, as when the frame's edge or a box cut a person) are occluded
crops of their own source `cut:<source>`: without them a flag learns that a box filling the crop
means a whole person, and calls a person cut down the middle holistic. Crops are grouped so that cross-validation never splits a
group between fitting and testing: in a folder pair, crops with the same file name in both folders
(Partial-REID and Partial-iLIDS name a person's partial and whole-body crop alike); in synthetic
crops, one identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from manifests import (
    COCO17,
    SYNTH_TRUTH,
    ManifestError,
    missing_keypoints,
    progress_bar,
    read_manifest,
    sha256_bytes,
)
from opreid_builder.curation.occlusion_flag import PoseEvidence
from opreid_builder.curation.pose import KeypointsFile, PoseEstimator
from opreid_builder.curation.sources import IMAGE_SUFFIXES, prefetch, read_and_decode
from opreid_builder.errors import CurationError

SYNTH_TRUTH_NAME = "truth.parquet"
#: Digest length recorded for the crops a flag was fitted on (hex digits of the content sha256).
DIGEST_HEX = 16


#: Sides a cut copy keeps, in turn, and the share of the crop it keeps (width for left/right, height
#: for top/bottom): half a body across, or the head-to-thigh or hips-down part.
CUT_SIDES = ("left", "right", "bottom", "top")
CUT_KEEP = {"left": (0.45, 0.65), "right": (0.45, 0.65), "bottom": (0.5, 0.75), "top": (0.5, 0.75)}
CUT_PREFIX = "cut:"


@dataclass(frozen=True)
class LabelledCrop:
    path: Path
    rel: str  # relative to its folder (a keypoints file is looked up by it)
    occluded: bool
    source: str
    group: str
    cut: tuple[str, float] | None = None  # (side kept, share kept) of a cut copy


def cut_copies(crops: list[LabelledCrop], seed: int = 0) -> list[LabelledCrop]:
    """An occluded cut copy of every holistic crop, in the source `cut:<source>` and the crop's group
    (cross-validation keeps a crop and its copy on the same side)."""
    rng = np.random.default_rng(seed)
    out = []
    for k, c in enumerate(x for x in crops if not x.occluded):
        side = CUT_SIDES[k % len(CUT_SIDES)]
        keep = float(rng.uniform(*CUT_KEEP[side]))
        out.append(LabelledCrop(c.path, c.rel, True, CUT_PREFIX + c.source, c.group, (side, round(keep, 4))))
    return out


def apply_cut(rgb: np.ndarray, cut: tuple[str, float] | None) -> np.ndarray:
    """The part of a crop a cut copy keeps (at least 8 pixels across and 16 high)."""
    if cut is None:
        return rgb
    side, keep = cut
    h, w = rgb.shape[:2]
    kw, kh = max(8, round(w * keep)), max(16, round(h * keep))
    part = {"left": rgb[:, :kw], "right": rgb[:, w - kw :], "top": rgb[:kh], "bottom": rgb[h - kh :]}[side]
    return np.ascontiguousarray(part)


def list_images(folder: str | Path) -> list[Path]:
    """Image files under `folder` (recursive, sorted)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CurationError(f"{folder}: not a folder of crops")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def folder_crops(occluded_dir: str | Path, holistic_dir: str | Path, source: str) -> list[LabelledCrop]:
    """The crops of a folder pair; the same relative name (without suffix) in both is one group."""
    out = []
    for folder, flag in ((Path(occluded_dir), True), (Path(holistic_dir), False)):
        files = list_images(folder)
        if not files:
            raise CurationError(f"{folder}: no crops (a labelled set needs occluded and holistic crops)")
        for p in files:
            rel = p.relative_to(folder)
            out.append(
                LabelledCrop(p, rel.as_posix(), flag, source, f"{source}:{rel.with_suffix('').as_posix()}")
            )
    return out


def synth_crops(folder: str | Path, source: str) -> list[LabelledCrop]:
    """The crops `opreid synth` wrote in `folder`, labelled by its truth.parquet; one group per identity."""
    folder = Path(folder)
    truth_path = folder / SYNTH_TRUTH_NAME
    if not truth_path.is_file():
        raise CurationError(f"{folder}: no {SYNTH_TRUTH_NAME} (--synth takes a folder `opreid synth` wrote)")
    try:
        truth = read_manifest(truth_path, SYNTH_TRUTH)
    except ManifestError as exc:
        raise CurationError(f"--synth {folder}: {exc}") from None
    rows = zip(*(truth.column(c).to_pylist() for c in ("file", "pid", "occluded")), strict=True)
    out = []
    for file, pid, occluded in sorted(rows):
        path = folder / file
        if path.is_file():
            out.append(LabelledCrop(path, file, bool(occluded), source, f"{source}:{folder.name}:{pid}"))
    if not out:
        raise CurationError(f"{folder}: {SYNTH_TRUTH_NAME} names no crop present in the folder")
    return out


@dataclass
class PoseOutputs:
    """The pose stage's output on N crops, in their order (NaN / 0 where there is nothing)."""

    keypoints: np.ndarray  # (N, 17, 3)
    sizes: np.ndarray  # (N, 2) width, height (1 x 1 when unreadable)
    boxes: np.ndarray  # (N, 4)
    scores: np.ndarray  # (N,)
    n_persons: np.ndarray  # (N,) int
    readable: np.ndarray  # (N,) bool
    digests: list[str | None]  # content sha256, first DIGEST_HEX hex digits

    def take(self, rows: np.ndarray | slice) -> PoseOutputs:
        """The outputs of some of the crops."""
        idx = np.arange(len(self.digests))[rows]
        return PoseOutputs(
            self.keypoints[idx], self.sizes[idx], self.boxes[idx], self.scores[idx], self.n_persons[idx],
            self.readable[idx], [self.digests[i] for i in idx],
        )  # fmt: skip

    @property
    def found(self) -> np.ndarray:
        """Readable crops where a person was taken."""
        return self.readable & np.isfinite(self.keypoints).all(axis=(1, 2))

    def evidence(self, mask: np.ndarray, kpt_conf: float) -> PoseEvidence:
        """The flags' input for the crops in `mask` (all of which must have a person)."""
        kp = np.nan_to_num(self.keypoints[mask], nan=0.0)
        sizes = self.sizes[mask]
        return PoseEvidence(
            kp, sizes, self.boxes[mask], self.scores[mask], self.n_persons[mask],
            missing_keypoints(kp, sizes[:, 0], sizes[:, 1], kpt_conf),
        )  # fmt: skip


def run_pose(
    crops: list[LabelledCrop], source: PoseEstimator | KeypointsFile, workers: int = 2, progress: bool = False
) -> PoseOutputs:
    """Decode every crop once and run the keypoint source over the readable ones (one batch in memory)."""
    n = len(crops)
    out = PoseOutputs(
        np.full((n, len(COCO17), 3), np.nan, dtype=np.float32), np.ones((n, 2)), np.full((n, 4), np.nan),
        np.full(n, np.nan), np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool), [None] * n,
    )  # fmt: skip

    def load(i: int):
        return read_and_decode(crops[i].path)

    def take(i: int, res) -> None:
        out.n_persons[i] = res.n_persons
        if res.keypoints is not None:
            out.keypoints[i] = res.keypoints
            if res.box is not None:
                out.boxes[i] = res.box
            if res.score is not None:
                out.scores[i] = res.score

    bar = progress_bar(total=n, desc="pose", enabled=progress)

    def readable_only():
        for i, (data, decoded) in prefetch(range(n), load, workers):
            if not decoded.ok:
                bar.update()
                continue
            rgb = apply_cut(decoded.rgb, crops[i].cut)
            out.readable[i] = True
            out.sizes[i] = rgb.shape[1], rgb.shape[0]
            out.digests[i] = None if crops[i].cut else sha256_bytes(data)[:DIGEST_HEX]
            yield i, rgb

    if isinstance(source, KeypointsFile):
        if any(c.cut for c in crops):
            raise CurationError("cut copies need a pose model: a keypoints file has nothing for them")
        for i, _ in readable_only():
            take(i, source.lookup(crops[i].rel, by_name=True))
            bar.update()
    else:
        for i, res in source.run(readable_only()):
            take(i, res)
            bar.update()
    bar.close()
    return out
