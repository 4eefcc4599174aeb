"""The occlusion flag a curation applies: the paper's rule, or a learned flag read from a flag file.

`--occlusion-flag` takes `paper` (the rule of occlusion.py with `--rule`, `--kpt-conf`,
`--min-run`), `learned` (the flag file bundled with opreid, `models/occlusion_flag.json`), or the
path of a flag file `opreid occlusion fit` wrote. Left out, it is `DEFAULT_FLAG` with a pose model
and `paper` with a keypoints file, which holds neither the person box nor the number of people the
learned flag reads.

A flag file is small JSON (`kind` FLAG_KIND, `schema_version`): the feature list it was fitted on
(flag_features.py; refused when this opreid computes another), the logistic model, the threshold on
P(occluded) and how it was chosen (the target share of holistic crops flagged, in cross-validation
on the fitting data), the cross-validated rates per source with 95% intervals, and what it was fitted
on. Curation records the file's name, version and sha256 and copies it into the release
(`private/occlusion_flag.json`), so `opreid validate` can recompute every flag from it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from manifests import atomic_write_bytes
from opreid_builder.curation.flag_features import FEATURE_NAMES, FEATURES_VERSION, flag_features
from opreid_builder.curation.logistic import LogisticModel
from opreid_builder.curation.occlusion import PAPER_RULE, OcclusionRule
from opreid_builder.errors import CurationError, FlagFileError

PAPER, LEARNED = "paper", "learned"
#: The names `--occlusion-flag` takes besides a file path.
FLAG_NAMES = (PAPER, LEARNED)
#: The flag a curation with a pose model uses when none is named (README, "Occlusion flag").
DEFAULT_FLAG = LEARNED
#: occlusion_source of a crop where pose found nobody, kept and flagged occluded (`--no-person occluded`).
NO_PERSON_SOURCE = "no-person"
FLAG_KIND = "opreid.occlusion_flag"
FLAG_SCHEMA_VERSION = 1
#: The bundled flag, in opreid_builder/curation/models/.
BUNDLED_FLAG = "occlusion_flag.json"
#: The copy of a learned flag file in a curated dataset or release (beside images.parquet).
RELEASE_FLAG_NAME = "occlusion_flag.json"
_MAX_FLAG_BYTES = 4 << 20


@dataclass(frozen=True)
class PoseEvidence:
    """What the pose stage found on N crops with a person: the flags' input."""

    keypoints: np.ndarray  # (N, 17, 3) x, y, confidence in crop pixels
    sizes: np.ndarray  # (N, 2) width, height
    boxes: np.ndarray  # (N, 4) the person taken; NaN from a keypoints file
    scores: np.ndarray  # (N,) its detection score; NaN from a keypoints file
    n_persons: np.ndarray  # (N,) how many people were found
    missing: np.ndarray  # (N, 17) the rule's missing keypoints (occlusion.missing_keypoints)


@dataclass(frozen=True)
class PaperFlag:
    """The paper's rule (or a variant of it): a decision, no probability."""

    rule: OcclusionRule = PAPER_RULE
    threshold: float | None = None

    @property
    def kind(self) -> str:
        return PAPER

    def decide(self, evidence: PoseEvidence) -> tuple[np.ndarray, np.ndarray | None]:
        """(occluded, score) of N crops with a person; the rule gives no score."""
        return self.rule.decide(evidence.missing)[1], None

    def describe(self) -> dict[str, Any]:
        return {"flag": PAPER, "name": "paper", "threshold": None}


@dataclass(frozen=True)
class LearnedFlag:
    """A fitted flag: P(occluded) from the pose evidence, occluded at P >= threshold."""

    model: LogisticModel
    threshold: float
    body: dict[str, Any] = field(repr=False)
    sha256: str
    file: str
    bundled: bool = False
    data: bytes = field(default=b"", repr=False)  # the file's bytes

    @property
    def kind(self) -> str:
        return LEARNED

    @property
    def name(self) -> str:
        return str(self.body.get("name", "learned"))

    @property
    def version(self) -> str:
        return str(self.body.get("version", ""))

    def probabilities(self, evidence: PoseEvidence) -> np.ndarray:
        """P(occluded) of N crops with a person."""
        e = evidence
        return self.model.predict_proba(flag_features(e.keypoints, e.sizes, e.boxes, e.scores, e.n_persons))

    def decide(self, evidence: PoseEvidence) -> tuple[np.ndarray, np.ndarray]:
        p = self.probabilities(evidence)
        return p >= self.threshold, p

    def describe(self) -> dict[str, Any]:
        """What dataset.json and the card record: which flag, its version and digest, how it was chosen."""
        training = dict(self.body.get("training") or {})
        training.pop("digests", None)
        return {
            "flag": LEARNED,
            "name": self.name,
            "version": self.version,
            "file": self.file,
            "bundled": self.bundled,
            "sha256": self.sha256,
            "threshold": self.threshold,
            "features_version": self.body["features"]["version"],
            "operating_point": self.body.get("operating_point"),
            "cv": self.body.get("cv"),
            "training": training,
        }

    def fitted_on(self) -> frozenset[str]:
        """Content digests (sha256, first 16 hex digits) of the real crops the flag was fitted on."""
        return frozenset((self.body.get("training") or {}).get("digests") or [])


Flag = PaperFlag | LearnedFlag


def bundled_flag_bytes() -> bytes:
    return resources.files("opreid_builder.curation").joinpath("models", BUNDLED_FLAG).read_bytes()


def flag_bytes(body: dict[str, Any]) -> bytes:
    """A flag file's bytes: sorted keys, two-space indent, one trailing newline (so the digest is stable)."""
    return (json.dumps(body, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def write_flag(body: dict[str, Any], path: str | os.PathLike) -> LearnedFlag:
    """Write a flag file atomically (after checking it reads back as a flag) and return it."""
    data = flag_bytes(body)
    flag = parse_flag(data, Path(path).name)
    atomic_write_bytes(path, data)
    return flag


def parse_flag(data: bytes, file: str, bundled: bool = False) -> LearnedFlag:
    """A LearnedFlag from a flag file's bytes; FlagFileError for anything but a usable flag file."""
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FlagFileError(f"{file}: not a JSON flag file ({exc})") from None
    if not isinstance(body, dict) or body.get("kind") != FLAG_KIND:
        raise FlagFileError(f"{file}: not an occlusion flag file (kind must be {FLAG_KIND!r})")
    if body.get("schema_version") != FLAG_SCHEMA_VERSION:
        raise FlagFileError(
            f"{file}: flag file schema version {body.get('schema_version')!r}; this opreid reads "
            f"{FLAG_SCHEMA_VERSION} (refit it with `opreid occlusion fit`)"
        )
    features = body.get("features") or {}
    if features.get("version") != FEATURES_VERSION or tuple(features.get("names") or ()) != FEATURE_NAMES:
        raise FlagFileError(
            f"{file}: fitted on features version {features.get('version')!r}; this opreid computes version "
            f"{FEATURES_VERSION} (refit it with `opreid occlusion fit`)"
        )
    try:
        model = LogisticModel.from_dict(body.get("model") or {}, len(FEATURE_NAMES))
        threshold = float(body.get("threshold"))
    except (CurationError, TypeError, ValueError) as exc:
        raise FlagFileError(f"{file}: {exc}") from None
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise FlagFileError(f"{file}: threshold must be a probability in [0, 1], got {threshold}")
    digest = hashlib.sha256(data).hexdigest()
    return LearnedFlag(model, threshold, body, digest, file, bundled, data)


def read_flag_file(path: str | os.PathLike) -> LearnedFlag:
    """The flag file at `path` (a regular file, at most a few megabytes)."""
    p = Path(path)
    if not p.exists():
        raise CurationError(f"occlusion flag file not found: {p} (--occlusion-flag paper|learned|FILE)")
    if not p.is_file():
        raise FlagFileError(f"{p}: not a regular file (--occlusion-flag)")
    if p.stat().st_size > _MAX_FLAG_BYTES:
        raise FlagFileError(f"{p}: {p.stat().st_size} bytes is too large for an occlusion flag file")
    return parse_flag(p.read_bytes(), p.name)


def load_flag(
    spec: str | None, rule: OcclusionRule = PAPER_RULE, *, from_keypoints_file: bool = False
) -> Flag:
    """The flag `--occlusion-flag` names (None: the default for this keypoint source)."""
    if spec in (None, ""):
        spec = PAPER if from_keypoints_file else DEFAULT_FLAG
    if spec == PAPER:
        return PaperFlag(rule)
    flag = (
        parse_flag(bundled_flag_bytes(), BUNDLED_FLAG, bundled=True)
        if spec == LEARNED
        else read_flag_file(spec)
    )
    if from_keypoints_file:
        raise CurationError(
            "a learned occlusion flag reads the person box and the number of people a pose model "
            "found, which a keypoints file does not hold: use --occlusion-flag paper with --keypoints"
        )
    return flag
