"""`opreid occlusion fit`: a learned occlusion flag fitted on labelled crops, its threshold chosen by
cross-validation for a target share of holistic crops flagged, and rates measured the same way.

- **Weights.** Every source (a folder pair, or all synthetic crops together) carries the same total
  weight, so a large synthetic set cannot drown a small real one; the cut copies of a source's
  holistic crops (labelled_crops.cut_copies) carry `CUT_WEIGHT` of that. On Partial-iLIDS and the
  synthetic crops, cut copies at half weight cost about 4 points of Partial-iLIDS' and 5 of the
  synthetic occluded crops flagged (cross-validated), and turn a person cut down the middle by the
  photo's edge (4 of 17 keypoints seen, Ultralytics' bus.jpg) from P 0.03 into P 0.99. On
  Partial-iLIDS alone they cost 22 points, so they are asked for (`--cut-holistic`), not implied.
- **Signs.** The fit keeps each piece of keypoint evidence moving P(occluded) the right way
  (flag_features.EVIDENCE_SIGNS), so that crops unlike any in training are not scored by a trade
  between correlated features.
- **Threshold.** The lowest threshold at which, on out-of-fold probabilities, the holistic crops
  with a person are flagged at most `max_holistic_flagged` on average over the sources, each source
  counting once as a sample of the next camera network. (Requiring it of every source let the
  noisiest one set the threshold for all: Partial-iLIDS' whole-body crops include people behind
  trolleys, and that rule cost 20 points of occluded crops flagged on the synthetic crops.)
- **Reported rates are nested cross-validation.** Each outer fold is left out of the fit *and* of
  the threshold choice (an inner cross-validation on the other folds picks it), so the rates say
  what the whole procedure does on crops it never saw. Folds keep a group (a person's crops in a
  folder pair, a synthetic identity) together. Rates count every readable crop; a crop where pose
  found nobody counts as flagged, as curation flags it by default. Intervals are Wilson's 95%.
- **What it was fitted on** goes into the file: each source's counts, the pose model, and the
  content digests of the real crops, so `calibrate` can say when it measures a flag on its own
  fitting data.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from opreid.version import __version__
from opreid_builder.curation.flag_features import (
    EVIDENCE_SIGNS,
    FEATURE_NAMES,
    FEATURES_VERSION,
    MISSING_CONF,
    flag_features,
)
from opreid_builder.curation.labelled_crops import (
    CUT_KEEP,
    CUT_PREFIX,
    LabelledCrop,
    PoseOutputs,
    cut_copies,
    folder_crops,
    run_pose,
    synth_crops,
)
from opreid_builder.curation.logistic import DEFAULT_L2, LogisticModel, fit_logistic
from opreid_builder.curation.occlusion_flag import FLAG_KIND, FLAG_SCHEMA_VERSION
from opreid_builder.curation.pose import KeypointsFile, PoseEstimator
from opreid_builder.errors import CurationError

log = logging.getLogger(__name__)

#: `--max-holistic-flagged`: the share of holistic crops (with a person) the threshold lets through.
DEFAULT_MAX_HOLISTIC_FLAGGED = 0.03
DEFAULT_FOLDS = 10
#: The total weight of a source's cut copies, relative to the source's.
CUT_WEIGHT = 0.5
INNER_FOLDS = 5
SYNTHETIC = "synthetic"
_Z95 = 1.959963984540054


def wilson_interval(k: int, n: int) -> tuple[float, float]:
    """Wilson's 95% interval of a share k / n ((0, 1) when n is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p, z2 = k / n, _Z95 * _Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = _Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class LabelledData:
    """Labelled crops, their pose outputs and features (features only where a person was found)."""

    crops: list[LabelledCrop]
    pose: PoseOutputs
    sources: list[str]
    labels: np.ndarray  # (N,) bool: occluded
    source_index: np.ndarray  # (N,) int into `sources`
    groups: np.ndarray  # (N,) int
    features: np.ndarray  # (N, F); zeros where no person was found

    @classmethod
    def build(cls, crops: list[LabelledCrop], pose: PoseOutputs) -> LabelledData:
        sources = list(dict.fromkeys(c.source for c in crops))
        group_ids: dict[str, int] = {}
        groups = np.array([group_ids.setdefault(c.group, len(group_ids)) for c in crops], dtype=np.int64)
        found = pose.found
        features = np.zeros((len(crops), len(FEATURE_NAMES)))
        if found.any():
            features[found] = flag_features(
                np.nan_to_num(pose.keypoints[found], nan=0.0), pose.sizes[found], pose.boxes[found],
                pose.scores[found], pose.n_persons[found],
            )  # fmt: skip
        return cls(
            crops, pose, sources, np.array([c.occluded for c in crops], dtype=bool),
            np.array([sources.index(c.source) for c in crops], dtype=np.int64), groups, features,
        )  # fmt: skip

    @property
    def found(self) -> np.ndarray:
        return self.pose.found

    @property
    def readable(self) -> np.ndarray:
        return self.pose.readable


def grouped_folds(groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold number per row; the groups are shuffled by `seed` and dealt round-robin (a group stays whole)."""
    unique = np.unique(groups)
    k = max(1, min(int(folds), len(unique)))
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of = np.empty(len(unique), dtype=np.int64)
    fold_of[order] = np.arange(len(unique)) % k
    return fold_of[np.searchsorted(unique, groups)]


def source_weights(source_index: np.ndarray, sources: list[str] | None = None) -> np.ndarray:
    """Weights giving every source the same total (a source of cut copies CUT_WEIGHT of that)."""
    w = np.ones(len(source_index))
    for s in np.unique(source_index):
        total = CUT_WEIGHT if sources is not None and sources[s].startswith(CUT_PREFIX) else 1.0
        w[source_index == s] = total / np.count_nonzero(source_index == s)
    return w


def threshold_for(
    scores: np.ndarray, labels: np.ndarray, source_index: np.ndarray, max_holistic_flagged: float
) -> float:
    """The lowest threshold at which the holistic rows are flagged (score >= threshold) at most
    `max_holistic_flagged` on average over the sources (each source counting once): halfway between
    that score and the next lower one (just above the top score when even that flags too many)."""
    cands = np.unique(scores)
    if not len(cands):
        return 1.0
    shares = np.zeros(len(cands))
    sources = np.unique(source_index[~labels])
    for s in sources:
        hol = np.sort(scores[(source_index == s) & ~labels])
        shares += (len(hol) - np.searchsorted(hol, cands, side="left")) / len(hol)
    shares /= max(len(sources), 1)
    ok = np.flatnonzero(shares <= max_holistic_flagged + 1e-12)
    if not len(ok):
        return float(np.nextafter(cands[-1], np.inf))
    i = int(ok[0])
    return float(cands[i]) if i == 0 else float((cands[i - 1] + cands[i]) / 2)


#: Coefficient signs the fit keeps (flag_features.EVIDENCE_SIGNS), in feature order.
SIGNS = np.array([EVIDENCE_SIGNS.get(name, 0) for name in FEATURE_NAMES], dtype=np.float64)


def _fit(data: LabelledData, rows: np.ndarray, l2: float) -> LogisticModel:
    weights = source_weights(data.source_index[rows], data.sources)
    return fit_logistic(data.features[rows], data.labels[rows], weights, l2, SIGNS)


def out_of_fold(data: LabelledData, rows: np.ndarray, folds: int, seed: int, l2: float) -> np.ndarray:
    """Out-of-fold probabilities of the rows in `rows` (indices), folds by group."""
    fold = grouped_folds(data.groups[rows], folds, seed)
    out = np.zeros(len(rows))
    for k in np.unique(fold):
        model = _fit(data, rows[fold != k], l2)
        out[fold == k] = model.predict_proba(data.features[rows[fold == k]])
    return out


@dataclass(frozen=True)
class SourceRates:
    """A flag's rates on one source (or all of them: `name` "all")."""

    name: str
    occluded: int
    holistic: int
    occluded_flagged: float
    occluded_ci: tuple[float, float]
    holistic_flagged: float
    holistic_ci: tuple[float, float]
    no_person: dict[str, int] = field(default_factory=dict)
    unreadable: int = 0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("occluded_flagged", "holistic_flagged"):
            d[key] = round(d[key], 4)
        d["occluded_ci"] = [round(v, 4) for v in self.occluded_ci]
        d["holistic_ci"] = [round(v, 4) for v in self.holistic_ci]
        return d


def rates_by_source(data: LabelledData, flagged: np.ndarray, *, pooled: bool = True) -> list[SourceRates]:
    """Rates of `flagged` (N,) over readable crops; crops without a person count as flagged. The pooled
    row ("all") leaves the cut copies out: it is about the crops as they came."""
    flagged = np.where(data.found, flagged, True)
    out = []
    names = [(data.sources[s], data.source_index == s) for s in range(len(data.sources))]
    real = [s for s, name in enumerate(data.sources) if not name.startswith(CUT_PREFIX)]
    if pooled and len(real) > 1:
        names.append(("all", np.isin(data.source_index, real)))
    for name, sel in names:
        occ = sel & data.readable & data.labels
        hol = sel & data.readable & ~data.labels
        k_o, n_o = int(flagged[occ].sum()), int(occ.sum())
        k_h, n_h = int(flagged[hol].sum()), int(hol.sum())
        out.append(
            SourceRates(
                name,
                n_o,
                n_h,
                k_o / n_o if n_o else 0.0,
                wilson_interval(k_o, n_o),
                k_h / n_h if n_h else 0.0,
                wilson_interval(k_h, n_h),
                {"occluded": int((occ & ~data.found).sum()), "holistic": int((hol & ~data.found).sum())},
                int((sel & ~data.readable).sum()),
            )  # fmt: skip
        )
    return out


def nested_cv(
    data: LabelledData, max_holistic_flagged: float, folds: int, seed: int, l2: float
) -> tuple[np.ndarray, np.ndarray]:
    """(flags, probabilities) of every crop with a person, each from a model and threshold chosen
    without its fold (the other rows: flags True, probabilities NaN)."""
    rows = np.flatnonzero(data.found)
    fold = grouped_folds(data.groups[rows], folds, seed)
    flags = np.ones(len(data.crops), dtype=bool)
    probs = np.full(len(data.crops), np.nan)
    for k in np.unique(fold):
        train, test = rows[fold != k], rows[fold == k]
        inner = out_of_fold(data, train, INNER_FOLDS, seed + 1, l2)
        t = threshold_for(inner, data.labels[train], data.source_index[train], max_holistic_flagged)
        p = _fit(data, train, l2).predict_proba(data.features[test])
        probs[test] = p
        flags[test] = p >= t
    return flags, probs


@dataclass
class FitReport:
    """The fitted flag file's body, and the tables `opreid occlusion fit` prints."""

    body: dict[str, Any]
    cv: list[SourceRates]
    in_sample: list[SourceRates]
    threshold: float


def fit_flag(
    data: LabelledData,
    *,
    max_holistic_flagged: float = DEFAULT_MAX_HOLISTIC_FLAGGED,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    l2: float = DEFAULT_L2,
    name: str = "learned",
    version: str = "1",
    keypoints: dict[str, Any] | None = None,
) -> FitReport:
    """Fit the flag on every crop with a person, choose its threshold by cross-validation, and measure
    the whole procedure by nested cross-validation."""
    if not 0.0 <= max_holistic_flagged < 1.0:
        raise CurationError(f"--max-holistic-flagged must be in [0, 1), got {max_holistic_flagged}")
    if folds < 2:
        raise CurationError(f"--folds must be >= 2, got {folds}")
    rows = np.flatnonzero(data.found)
    labels = data.labels[rows]
    if labels.all() or not labels.any():
        raise CurationError("fitting needs occluded and holistic crops where the pose model finds a person")
    if len(np.unique(data.groups[rows])) < folds:
        raise CurationError(
            f"{len(np.unique(data.groups[rows]))} groups of crops are too few for {folds} folds"
        )
    model = _fit(data, rows, l2)
    oof = out_of_fold(data, rows, folds, seed, l2)
    threshold = threshold_for(oof, labels, data.source_index[rows], max_holistic_flagged)
    cv_flags, _ = nested_cv(data, max_holistic_flagged, folds, seed, l2)
    cv = rates_by_source(data, cv_flags)
    fitted = np.ones(len(data.crops), dtype=bool)
    fitted[rows] = model.predict_proba(data.features[rows]) >= threshold
    in_sample = rates_by_source(data, fitted)
    sources = []
    for s, src in enumerate(data.sources):
        sel = data.source_index == s
        sources.append({
            "name": src,
            "kind": "cut copies" if src.startswith(CUT_PREFIX) else SYNTHETIC if src == SYNTHETIC else "folders",
            "occluded": int((sel & data.readable & data.labels).sum()),
            "holistic": int((sel & data.readable & ~data.labels).sum()),
            "no_person": int((sel & data.readable & ~data.found).sum()),
            "unreadable": int((sel & ~data.readable).sum()),
        })  # fmt: skip
    digests = sorted(
        {d for c, d in zip(data.crops, data.pose.digests, strict=True) if d and c.source != SYNTHETIC}
    )
    body = {
        "kind": FLAG_KIND,
        "schema_version": FLAG_SCHEMA_VERSION,
        "name": name,
        "version": version,
        "tool_version": __version__,
        "features": {"version": FEATURES_VERSION, "names": list(FEATURE_NAMES), "missing_conf": MISSING_CONF},
        "model": {
            **model.as_dict(),
            "l2": l2,
            "weights": "every source the same total weight",
            "signs": {name: sign for name, sign in EVIDENCE_SIGNS.items()},
        },  # fmt: skip
        "threshold": threshold,
        "operating_point": {
            "max_holistic_flagged": max_holistic_flagged,
            "rule": "the lowest threshold at which holistic crops with a person are flagged at most "
            "max_holistic_flagged on average over the sources, on out-of-fold probabilities",
            "folds": folds,
            "seed": seed,
        },
        "no_person": "occluded",
        "cv": {
            "method": f"nested {folds}-fold cross-validation by group: model and threshold chosen without "
            "the fold; crops without a person count as flagged; 95% Wilson intervals",
            "sources": [r.as_dict() for r in cv],
        },
        "training": {
            "sources": sources,
            "keypoints": keypoints or {},
            "digests": digests,
            "cut_copies": {"weight": CUT_WEIGHT, "keep": CUT_KEEP}
            if any(c.cut for c in data.crops)
            else None,
        },  # fmt: skip
    }
    return FitReport(body, cv, in_sample, threshold)


def format_rates(rows: list[SourceRates], title: str) -> str:
    """Rates as an aligned text table."""
    head = f"{'source':<16} {'occluded':>8} {'flagged':>8} {'95% CI':>15} {'holistic':>8} {'flagged':>8} {'95% CI':>15}"
    lines = [title, head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.name[:16]:<16} {r.occluded:>8d} {100 * r.occluded_flagged:>7.1f}% "
            f"{_ci(r.occluded_ci):>15} {r.holistic:>8d} {100 * r.holistic_flagged:>7.1f}% {_ci(r.holistic_ci):>15}"
        )
    return "\n".join(lines)


def _ci(ci: tuple[float, float]) -> str:
    return f"{100 * ci[0]:.1f}-{100 * ci[1]:.1f}%"


@dataclass(frozen=True)
class FolderPair:
    """A labelled folder pair: crops judged occluded and crops judged holistic, of one camera network."""

    occluded: Path
    holistic: Path
    name: str


def pair_name(occluded: Path, holistic: Path) -> str:
    """A folder pair's default name: their common parent folder's, else both folder names."""
    a, b = Path(occluded).resolve(), Path(holistic).resolve()
    return a.parent.name if a.parent == b.parent and a.parent.name else f"{a.name}+{b.name}"


def labelled_data(
    pairs: list[FolderPair],
    synth_dirs: list[Path],
    source: PoseEstimator | KeypointsFile,
    workers: int = 2,
    progress: bool = False,
    cut_holistic: bool = False,
    seed: int = 0,
) -> LabelledData:
    """The crops of every folder pair and synthetic folder (and cut copies of their holistic crops),
    with what the pose model finds on them."""
    if not pairs and not synth_dirs:
        raise CurationError("give at least one --occluded/--holistic pair or --synth folder")
    names = [p.name for p in pairs]
    if len(set(names)) != len(names) or SYNTHETIC in names:
        raise CurationError(f"labelled sets need distinct names other than {SYNTHETIC!r}, got {names}")
    crops: list[LabelledCrop] = []
    for pair in pairs:
        crops += folder_crops(pair.occluded, pair.holistic, pair.name)
    for folder in synth_dirs:
        crops += synth_crops(folder, SYNTHETIC)
    if cut_holistic:
        crops += cut_copies(crops, seed)
    return LabelledData.build(crops, run_pose(crops, source, workers, progress))
