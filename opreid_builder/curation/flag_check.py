"""Recompute a curation's occlusion flags from what it recorded, for `opreid validate`.

Curation records the flag it used (`parameters.curation.occlusion`: the rule, and `flag`: `paper` or
a learned flag's name, version and sha256), copies a learned flag's file beside images.parquet, and
keeps in images.parquet everything the flag read (keypoints, size, person box and score, people
found). So every machine flag can be recomputed: a flag edited by hand, a release built with
another flag file than it names, or a flag file changed after the build is found. Flags from review
are the reviewer's and are not recomputed; a crop kept without a person must be flagged occluded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from manifests import COCO17, missing_keypoints
from opreid_builder.curation.occlusion import OcclusionRule
from opreid_builder.curation.occlusion_flag import (
    LEARNED,
    NO_PERSON_SOURCE,
    PAPER,
    Flag,
    PaperFlag,
    PoseEvidence,
    read_flag_file,
)
from opreid_builder.errors import CurationError

#: Scores are stored as float32: a recomputed P(occluded) may differ in the last bits.
SCORE_TOLERANCE = 1e-5
#: Crops named one by one in a finding (the rest are counted).
_NAMED = 5


@dataclass(frozen=True)
class FlagFinding:
    code: str
    message: str


def recorded_flag(curation: dict[str, Any], flag_file: Path) -> Flag:
    """The flag a curation record names, checked against the flag file kept with it."""
    occ = curation.get("occlusion") or {}
    try:
        rule = OcclusionRule(
            occ.get("rule", "coco18"), float(occ.get("kpt_conf", 0.5)), int(occ.get("min_run", 3))
        )
    except (CurationError, TypeError, ValueError) as exc:
        raise CurationError(f"the recorded occlusion rule is unusable: {exc}") from None
    named = occ.get("flag") or {"flag": PAPER}
    if named.get("flag") == PAPER:
        return PaperFlag(rule)
    if named.get("flag") != LEARNED:
        raise CurationError(
            f"the recorded occlusion flag {named.get('flag')!r} is neither {PAPER} nor {LEARNED}"
        )
    if not flag_file.is_file():
        raise CurationError(
            f"the release names the learned flag {named.get('name')} v{named.get('version')} "
            f"(sha256 {str(named.get('sha256'))[:16]}), but {flag_file.name} is missing"
        )
    flag = read_flag_file(flag_file)
    if flag.sha256 != named.get("sha256"):
        raise CurationError(
            f"{flag_file.name} has sha256 {flag.sha256[:16]}, the release names {str(named.get('sha256'))[:16]}: "
            "not the flag file the release was built with"
        )
    return flag


def check_flags(
    images: pa.Table, curation: dict[str, Any], flag_file: Path, image_ids: set[str] | None = None
) -> list[FlagFinding]:
    """Findings where images.parquet's flags differ from what the recorded flag gives (`image_ids`: only these)."""
    try:
        flag = recorded_flag(curation, flag_file)
    except CurationError as exc:
        return [FlagFinding("occlusion-flag-file", str(exc))]
    rows = [
        r for r in images.to_pylist()
        if r["status"] == "ok" and (image_ids is None or r["image_id"] in image_ids)
    ]  # fmt: skip
    findings: list[FlagFinding] = []
    no_person = [r for r in rows if r["occlusion_source"] == NO_PERSON_SOURCE]
    wrong = [r["image_id"] for r in no_person if r["occluded"] is not True or r["keypoints"] is not None]
    if wrong:
        findings.append(FlagFinding("occlusion-flag", f"{len(wrong)} crop(s) marked no-person are not flagged "
                                                     f"occluded without keypoints (e.g. {wrong[0]})"))  # fmt: skip
    machine = [
        r for r in rows if r["occlusion_source"] in ("pose", "keypoints-file") and r["keypoints"] is not None
    ]
    if not machine:
        return findings
    kp = np.asarray([r["keypoints"] for r in machine], dtype=np.float32).reshape(-1, len(COCO17), 3)
    sizes = np.asarray([[r["width"], r["height"]] for r in machine], dtype=np.float64)
    boxes = np.asarray([r["pose_box"] or [np.nan] * 4 for r in machine], dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(
        [np.nan if r["pose_score"] is None else r["pose_score"] for r in machine], dtype=np.float64
    )
    people = np.asarray([1 if r["n_persons"] is None else r["n_persons"] for r in machine], dtype=np.float64)
    kpt_conf = float((curation.get("occlusion") or {}).get("kpt_conf", 0.5))
    missing = missing_keypoints(kp, sizes[:, 0], sizes[:, 1], kpt_conf)
    try:
        flags, probs = flag.decide(PoseEvidence(kp, sizes, boxes, scores, people, missing))
    except CurationError as exc:
        return [*findings, FlagFinding("occlusion-flag", f"cannot recompute the flags: {exc}")]
    differ = [r["image_id"] for r, f in zip(machine, flags, strict=True) if r["occluded"] is not bool(f)]
    if probs is not None:
        stored = np.asarray(
            [np.nan if r["occlusion_score"] is None else r["occlusion_score"] for r in machine]
        )
        off = ~(np.abs(stored - probs) <= SCORE_TOLERANCE)
        differ += [
            r["image_id"] for r, bad in zip(machine, off, strict=True) if bad and r["image_id"] not in differ
        ]
    if differ:
        which = (
            "the paper's rule"
            if isinstance(flag, PaperFlag)
            else f"the flag file {flag_file.name} ({flag.name} v{flag.version})"
        )
        findings.append(FlagFinding(
            "occlusion-flag",
            f"{len(differ)} of {len(machine)} machine flags differ from what {which} gives "
            f"(e.g. {', '.join(sorted(differ)[:_NAMED])})",
        ))  # fmt: skip
    return findings
