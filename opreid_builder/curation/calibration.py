"""`opreid occlusion calibrate`: how each occlusion flag behaves on a curator's own labelled crops.

Pose runs once over a folder of crops a person judged occluded and one judged holistic; then every
candidate is scored by the share of occluded crops it flags (hit rate) and the share of holistic
crops it flags (false alarms), each with its 95% Wilson interval:

- every rule x keypoint threshold x run length. A rule fits nothing to these crops, so its rates
  are already out-of-sample; what is not is *picking* the best one here, so the report also gives
  the rates of "the rule calibrate picks" in cross-validation: on each fold's other crops, the rule
  that flags the most occluded crops while flagging at most `max_holistic_flagged` of the holistic
  ones is picked, and scored on the fold;
- with a pose model, the learned flags: the bundled one as it ships (its rates are marked
  in-sample when these crops were among those it was fitted on), and one fitted on these crops,
  scored by nested cross-validation (flag_fitting.py), as `opreid occlusion fit` would make it.

Rows are sorted by hit rate minus false alarm rate (Youden's J); rows no other row beats on both
rates are marked Pareto-optimal. Crops where pose finds nobody count as flagged (`--no-person
occluded`, as curation does by default) or are left out (`exclude`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from opreid_builder.curation.config import NO_PERSON_CHOICES
from opreid_builder.curation.flag_fitting import (
    DEFAULT_FOLDS,
    DEFAULT_MAX_HOLISTIC_FLAGGED,
    LabelledData,
    grouped_folds,
    nested_cv,
    wilson_interval,
)
from opreid_builder.curation.labelled_crops import folder_crops, list_images, run_pose
from opreid_builder.curation.occlusion import RULES, evaluate_grid
from opreid_builder.curation.occlusion_flag import LEARNED, load_flag
from opreid_builder.curation.pose import KeypointsFile, PoseEstimator
from opreid_builder.errors import CurationError

log = logging.getLogger(__name__)

__all__ = ["CONFS", "RUNS", "CalibrationReport", "CalibrationRow", "calibrate", "format_table", "list_images"]

CONFS = (0.3, 0.4, 0.5, 0.6, 0.7)
RUNS = (2, 3, 4)
#: The folder pair's name in the learned rows' fits.
_SOURCE = "labelled"


@dataclass(frozen=True)
class CalibrationRow:
    rule: str  # a rule name, or "learned"
    kpt_conf: float | None
    min_run: int | None
    occluded_flagged: float  # share of occluded crops flagged (hit rate)
    holistic_flagged: float  # share of holistic crops flagged (false alarms)
    score: float  # occluded_flagged - holistic_flagged
    pareto: bool
    occluded_ci: tuple[float, float] = (0.0, 1.0)  # 95% Wilson interval
    holistic_ci: tuple[float, float] = (0.0, 1.0)
    name: str = ""  # what the row is, in words
    rates: str = "out-of-sample"  # out-of-sample | cross-validated | in-sample


@dataclass
class CalibrationReport:
    rows: list[CalibrationRow]
    n_occluded: int
    n_holistic: int
    no_person: dict[str, int]
    unreadable: dict[str, int]
    source: dict = field(default_factory=dict)
    selection: CalibrationRow | None = None  # the rule calibrate picks, cross-validated
    max_holistic_flagged: float = DEFAULT_MAX_HOLISTIC_FLAGGED
    folds: int = DEFAULT_FOLDS

    def as_dict(self) -> dict:
        return {
            "n_occluded": self.n_occluded, "n_holistic": self.n_holistic, "no_person": self.no_person,
            "unreadable": self.unreadable, "source": self.source, "rows": [asdict(r) for r in self.rows],
            "selection": None if self.selection is None else asdict(self.selection),
            "max_holistic_flagged": self.max_holistic_flagged, "folds": self.folds,
        }  # fmt: skip


def _rates(flagged: np.ndarray, counted: np.ndarray, is_occ: np.ndarray) -> tuple:
    occ, hol = counted & is_occ, counted & ~is_occ
    k_o, n_o, k_h, n_h = int(flagged[occ].sum()), int(occ.sum()), int(flagged[hol].sum()), int(hol.sum())
    return k_o / n_o, k_h / n_h, wilson_interval(k_o, n_o), wilson_interval(k_h, n_h)


def _pick(grid: dict, rows: np.ndarray, is_occ: np.ndarray, max_hol: float) -> tuple:
    """The rule flagging the most occluded rows with at most `max_hol` holistic ones (else the best J)."""

    def key(item):
        (name, conf, run), flagged = item
        tpr = flagged[rows & is_occ].mean()
        fpr = flagged[rows & ~is_occ].mean()
        return (fpr <= max_hol + 1e-12, tpr if fpr <= max_hol + 1e-12 else tpr - fpr, -fpr)

    return max(grid.items(), key=key)[0]


def calibrate(
    occluded_dir: str | Path,
    holistic_dir: str | Path,
    source: PoseEstimator | KeypointsFile,
    rules: tuple[str, ...] = RULES,
    confs: tuple[float, ...] = CONFS,
    runs: tuple[int, ...] = RUNS,
    no_person: str = NO_PERSON_CHOICES[0],
    workers: int = 2,
    progress: bool = True,
    max_holistic_flagged: float = DEFAULT_MAX_HOLISTIC_FLAGGED,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
) -> CalibrationReport:
    """Score every rule combination, and with a pose model the learned flags, on the two labelled
    folders (pose runs once)."""
    if no_person not in NO_PERSON_CHOICES:
        raise CurationError(f"--no-person must be one of {', '.join(NO_PERSON_CHOICES)}, got {no_person!r}")
    occ_files, hol_files = list_images(occluded_dir), list_images(holistic_dir)
    if not occ_files or not hol_files:
        raise CurationError("calibration needs at least one crop in each of --occluded and --holistic")
    crops = folder_crops(occluded_dir, holistic_dir, _SOURCE)
    pose = run_pose(crops, source, workers, progress)
    data = None if isinstance(source, KeypointsFile) else LabelledData.build(crops, pose)
    person, readable = pose.found, pose.readable
    is_occ = np.array([c.occluded for c in crops], dtype=bool)
    grid = evaluate_grid(
        np.nan_to_num(pose.keypoints, nan=0.0), pose.sizes, tuple(rules), tuple(confs), tuple(runs)
    )
    counted = readable if no_person == "occluded" else readable & person
    n_occ, n_hol = int((counted & is_occ).sum()), int((counted & ~is_occ).sum())
    if n_occ == 0 or n_hol == 0:
        raise CurationError("no usable crop (readable, with a person) in one of the two folders")

    def as_flagged(flags: np.ndarray) -> np.ndarray:
        return flags | (~person if no_person == "occluded" else False)

    raw: list[dict] = []
    for (rule, conf, run), flagged in grid.items():
        tpr, fpr, ci_o, ci_h = _rates(as_flagged(flagged), counted, is_occ)
        raw.append(dict(rule=rule, kpt_conf=conf, min_run=run, tpr=tpr, fpr=fpr, ci_o=ci_o, ci_h=ci_h,
                        name=f"{rule} conf {conf} run {run}", rates="out-of-sample"))  # fmt: skip
    if data is not None:
        raw += _learned_rows(data, counted, is_occ, as_flagged, max_holistic_flagged, folds, seed)

    rows = []
    for r in raw:
        dominated = any(
            (o["tpr"] >= r["tpr"] and o["fpr"] <= r["fpr"]) and (o["tpr"] > r["tpr"] or o["fpr"] < r["fpr"])
            for o in raw
        )
        rows.append(_row(r, not dominated))
    order = {r: i for i, r in enumerate((*RULES, LEARNED))}
    rows.sort(
        key=lambda r: (
            -r.score, r.holistic_flagged, -r.occluded_flagged, order[r.rule], r.kpt_conf or 0, r.min_run or 0,
        )
    )  # fmt: skip

    # the rule calibrate would pick, measured on folds it was not picked on
    fold = grouped_folds(np.unique([c.group for c in crops], return_inverse=True)[1], folds, seed)
    picked = np.zeros(len(crops), dtype=bool)
    for k in np.unique(fold):
        name = _pick(grid, counted & (fold != k), is_occ, max_holistic_flagged)
        test = fold == k
        picked[test] = as_flagged(grid[name])[test]
    tpr, fpr, ci_o, ci_h = _rates(picked, counted, is_occ)
    selection = _row(
        dict(rule="picked", kpt_conf=None, min_run=None, tpr=tpr, fpr=fpr, ci_o=ci_o, ci_h=ci_h, rates="cross-validated",
             name=f"the rule picked on the other folds (most occluded flagged at <= {max_holistic_flagged:g} holistic)"),
        False,
    )  # fmt: skip
    return CalibrationReport(
        rows, n_occ, n_hol,
        {"occluded": int((readable & ~person & is_occ).sum()), "holistic": int((readable & ~person & ~is_occ).sum())},
        {"occluded": int((~readable & is_occ).sum()), "holistic": int((~readable & ~is_occ).sum())},
        source.describe(), selection, max_holistic_flagged, folds,
    )  # fmt: skip


def _row(r: dict, pareto: bool) -> CalibrationRow:
    return CalibrationRow(
        r["rule"], r["kpt_conf"], r["min_run"], round(r["tpr"], 4), round(r["fpr"], 4),
        round(r["tpr"] - r["fpr"], 4), pareto, tuple(round(v, 4) for v in r["ci_o"]),
        tuple(round(v, 4) for v in r["ci_h"]), r["name"], r["rates"],
    )  # fmt: skip


def _learned_rows(
    data: LabelledData, counted, is_occ, as_flagged, max_hol: float, folds: int, seed: int
) -> list:
    """The bundled flag, and a flag fitted on these crops as `opreid occlusion fit` makes it, by nested
    cross-validation."""
    out = []
    bundled = load_flag(LEARNED)
    n = len(counted)
    found = data.found[:n]
    flags = np.zeros(n, dtype=bool)
    if found.any():
        flags[found] = bundled.decide(data.pose.take(slice(0, n)).evidence(found, 0.5))[0]
    seen = bundled.fitted_on() & {d for d in data.pose.digests[:n] if d}
    tpr, fpr, ci_o, ci_h = _rates(as_flagged(flags), counted, is_occ)
    note = f", fitted on {len(seen)} of these crops" if seen else ""
    out.append(dict(rule=LEARNED, kpt_conf=None, min_run=None, tpr=tpr, fpr=fpr, ci_o=ci_o, ci_h=ci_h,
                    name=f"learned: bundled {bundled.name} v{bundled.version}, threshold {bundled.threshold:.3f}{note}",
                    rates="in-sample" if seen else "out-of-sample"))  # fmt: skip
    groups = len(np.unique(data.groups[data.found]))
    if groups >= max(folds, 2) and 0 < data.labels[data.found].sum() < data.found.sum():
        cv_flags, _ = nested_cv(data, max_hol, folds, seed, 1.0)
        tpr, fpr, ci_o, ci_h = _rates(as_flagged(cv_flags[:n]), counted, is_occ)
        out.append(dict(rule=LEARNED, kpt_conf=None, min_run=None, tpr=tpr, fpr=fpr, ci_o=ci_o, ci_h=ci_h,
                        name=f"learned: fitted on these crops (`opreid occlusion fit`, <= {max_hol:g} holistic)",
                        rates="cross-validated"))  # fmt: skip
    else:
        log.warning("too few crops with a person to cross-validate a flag fitted on them (%d groups)", groups)
    return out


def format_table(report: CalibrationReport, limit: int | None = None) -> str:
    """The report as an aligned text table, best trade-offs first."""
    head = (
        f"{'rule':<7} {'kpt_conf':>8} {'min_run':>7} {'occluded flagged':>17} {'95% CI':>13} "
        f"{'holistic flagged':>17} {'95% CI':>13} {'J':>7}  pareto  rates"
    )
    lines = [
        f"{report.n_occluded} occluded and {report.n_holistic} holistic crops "
        f"(no person: {report.no_person['occluded']} / {report.no_person['holistic']}; "
        f"unreadable: {report.unreadable['occluded']} / {report.unreadable['holistic']})",
        head,
        "-" * len(head),
    ]
    for r in report.rows[:limit]:
        lines.append(_line(r))
    if report.selection is not None:
        lines.append("")
        lines.append(f"Choosing a rule here: {report.selection.name}, {report.folds}-fold cross-validation:")
        lines.append(_line(report.selection))
    return "\n".join(lines)


def _line(r: CalibrationRow) -> str:
    conf = "-" if r.kpt_conf is None else f"{r.kpt_conf:.2f}"
    run = "-" if r.min_run is None else str(r.min_run)
    extra = f"  {r.name}" if r.rule in (LEARNED, "picked") else ""
    return (
        f"{r.rule:<7} {conf:>8} {run:>7} {100 * r.occluded_flagged:>16.1f}% {_ci(r.occluded_ci):>13} "
        f"{100 * r.holistic_flagged:>16.1f}% {_ci(r.holistic_ci):>13} {r.score:>7.3f}  "
        f"{'*' if r.pareto else ' ':<6}  {r.rates}{extra}"
    )


def _ci(ci: tuple[float, float]) -> str:
    return f"{100 * ci[0]:.0f}-{100 * ci[1]:.0f}%"
