"""`opreid occlusion calibrate`: how each occlusion rule behaves on a curator's own labelled crops.

Pose runs once over a folder of crops a person judged occluded and one judged holistic; then every
rule x keypoint threshold x run length is scored by the share of occluded crops it flags (hit rate)
and the share of holistic crops it flags (false alarms). Rows are sorted by hit rate minus false
alarm rate (Youden's J), so the best trade-offs come first; rows no other row beats on both rates
are marked Pareto-optimal.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from manifests import COCO17, progress_bar
from opreid_builder.curation.occlusion import RULES, evaluate_grid
from opreid_builder.curation.pose import KeypointsFile, PoseEstimator
from opreid_builder.curation.sources import IMAGE_SUFFIXES, prefetch, read_and_decode
from opreid_builder.errors import CurationError

log = logging.getLogger(__name__)

CONFS = (0.3, 0.4, 0.5, 0.6, 0.7)
RUNS = (2, 3, 4)


@dataclass(frozen=True)
class CalibrationRow:
    rule: str
    kpt_conf: float
    min_run: int
    occluded_flagged: float  # share of occluded crops flagged (hit rate)
    holistic_flagged: float  # share of holistic crops flagged (false alarms)
    score: float  # occluded_flagged - holistic_flagged
    pareto: bool


@dataclass
class CalibrationReport:
    rows: list[CalibrationRow]
    n_occluded: int
    n_holistic: int
    no_person: dict[str, int]
    unreadable: dict[str, int]
    source: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "n_occluded": self.n_occluded, "n_holistic": self.n_holistic, "no_person": self.no_person,
            "unreadable": self.unreadable, "source": self.source, "rows": [asdict(r) for r in self.rows],
        }  # fmt: skip


def list_images(folder: str | Path) -> list[Path]:
    """Image files under `folder` (recursive, sorted)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CurationError(f"{folder}: not a folder of crops")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _keypoints(
    files: list[tuple[Path, Path]], source: PoseEstimator | KeypointsFile, workers: int, progress: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(N,17,3) keypoints, (N,2) sizes, found-a-person mask and readable mask, in `files` order."""
    n = len(files)
    kps = np.full((n, len(COCO17), 3), np.nan, dtype=np.float32)
    sizes = np.ones((n, 2), dtype=np.float64)
    person = np.zeros(n, dtype=bool)
    readable = np.zeros(n, dtype=bool)

    def load(i: int):
        return read_and_decode(files[i][0])[1]

    bar = progress_bar(total=n, desc="pose", enabled=progress)
    decoded_stream = prefetch(range(n), load, workers)
    if isinstance(source, KeypointsFile):
        for i, decoded in decoded_stream:
            bar.update()
            if not decoded.ok:
                continue
            readable[i] = True
            sizes[i] = decoded.rgb.shape[1], decoded.rgb.shape[0]
            res = source.lookup(files[i][1].as_posix(), by_name=True)
            if res.keypoints is not None:
                kps[i], person[i] = res.keypoints, True
    else:

        def readable_only():
            for i, decoded in decoded_stream:
                if decoded.ok:
                    readable[i] = True
                    sizes[i] = decoded.rgb.shape[1], decoded.rgb.shape[0]
                    yield i, decoded.rgb
                else:
                    bar.update()

        for i, res in source.run(readable_only()):
            bar.update()
            if res.keypoints is not None:
                kps[i], person[i] = res.keypoints, True
    bar.close()
    return kps, sizes, person, readable


def calibrate(
    occluded_dir: str | Path,
    holistic_dir: str | Path,
    source: PoseEstimator | KeypointsFile,
    rules: tuple[str, ...] = RULES,
    confs: tuple[float, ...] = CONFS,
    runs: tuple[int, ...] = RUNS,
    no_person: str = "exclude",
    workers: int = 2,
    progress: bool = True,
) -> CalibrationReport:
    """Score every rule combination on the two labelled folders (pose runs once)."""
    occ = [(p, p.relative_to(occluded_dir)) for p in list_images(occluded_dir)]
    hol = [(p, p.relative_to(holistic_dir)) for p in list_images(holistic_dir)]
    if not occ or not hol:
        raise CurationError("calibration needs at least one crop in each of --occluded and --holistic")
    kps, sizes, person, readable = _keypoints(occ + hol, source, workers, progress)
    is_occ = np.zeros(len(occ) + len(hol), dtype=bool)
    is_occ[: len(occ)] = True
    grid = evaluate_grid(np.nan_to_num(kps, nan=0.0), sizes, tuple(rules), tuple(confs), tuple(runs))
    if no_person == "occluded":
        counted = readable
    else:
        counted = readable & person
    n_occ, n_hol = int((counted & is_occ).sum()), int((counted & ~is_occ).sum())
    if n_occ == 0 or n_hol == 0:
        raise CurationError("no usable crop (readable, with a person) in one of the two folders")
    raw = []
    for (rule, conf, run), flagged in grid.items():
        flagged = flagged | (~person if no_person == "occluded" else False)
        tpr = float((flagged & counted & is_occ).sum()) / n_occ
        fpr = float((flagged & counted & ~is_occ).sum()) / n_hol
        raw.append((rule, conf, run, tpr, fpr))
    rows = []
    for rule, conf, run, tpr, fpr in raw:
        dominated = any((t >= tpr and f <= fpr) and (t > tpr or f < fpr) for _, _, _, t, f in raw)
        rows.append(
            CalibrationRow(rule, conf, run, round(tpr, 4), round(fpr, 4), round(tpr - fpr, 4), not dominated)
        )
    order = {r: i for i, r in enumerate(RULES)}
    rows.sort(
        key=lambda r: (
            -r.score,
            r.holistic_flagged,
            -r.occluded_flagged,
            order[r.rule],
            r.kpt_conf,
            r.min_run,
        )
    )
    return CalibrationReport(
        rows,
        n_occ,
        n_hol,
        {
            "occluded": int((readable & ~person & is_occ).sum()),
            "holistic": int((readable & ~person & ~is_occ).sum()),
        },
        {"occluded": int((~readable & is_occ).sum()), "holistic": int((~readable & ~is_occ).sum())},
        source.describe(),
    )


def format_table(report: CalibrationReport, limit: int | None = None) -> str:
    """The report as an aligned text table, best trade-offs first."""
    head = f"{'rule':<7} {'kpt_conf':>8} {'min_run':>7} {'occluded flagged':>17} {'holistic flagged':>17} {'J':>7}  pareto"
    lines = [
        f"{report.n_occluded} occluded and {report.n_holistic} holistic crops "
        f"(no person: {report.no_person['occluded']} / {report.no_person['holistic']}; "
        f"unreadable: {report.unreadable['occluded']} / {report.unreadable['holistic']})",
        head,
        "-" * len(head),
    ]
    for r in report.rows[:limit]:
        lines.append(
            f"{r.rule:<7} {r.kpt_conf:>8.2f} {r.min_run:>7d} {100 * r.occluded_flagged:>16.1f}% "
            f"{100 * r.holistic_flagged:>16.1f}% {r.score:>7.3f}  {'*' if r.pareto else ''}"
        )
    return "\n".join(lines)
