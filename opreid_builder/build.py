"""`build_release`: curate RAW (or take OUT's curated table), draw the OPReID split, write and validate.

The Python API under `opreid build-split`: the CLI only parses options into a `CurateConfig` and a
`SplitRequest`, calls `build_release`, and prints the `BuildResult`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from manifests import IMAGES, DatasetLayout, ManifestError, read_manifest
from opreid_builder.curation.config import CurateConfig
from opreid_builder.curation.masked_digests import changed_masked_crops
from opreid_builder.curation.pipeline import curate
from opreid_builder.errors import MaskedCropError, SplitError, SplitPoolError
from opreid_builder.release.leaderboard_marker import refuse_replacing_leaderboard_release
from opreid_builder.release.validate import ValidationReport, validate
from opreid_builder.release.writer import ReleaseSummary, write_release
from opreid_builder.split.presets import PRESET_NOTES, SplitTargets, resolve_targets
from opreid_builder.split.protocol import ProtocolRules, SplitConfig, SplitSelection, select_split

log = logging.getLogger(__name__)

#: The split counts a request may override (the fields of SplitTargets).
COUNT_NAMES = tuple(f.name for f in dataclasses.fields(SplitTargets))


@dataclass(frozen=True)
class SplitRequest:
    """What the user asks of the split: a preset, a scale, explicit counts, the per-identity rules, a seed.

    `counts` overrides preset counts as given (not scaled); a value of None removes that image target.
    """

    preset: str = "opreid"
    scale: float = 1.0
    counts: dict[str, int | None] = field(default_factory=dict)
    rules: ProtocolRules = field(default_factory=ProtocolRules)
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.counts) - set(COUNT_NAMES))
        if unknown:
            raise SplitError(f"unknown split count(s): {', '.join(unknown)}; known: {', '.join(COUNT_NAMES)}")

    def config(self) -> SplitConfig:
        return SplitConfig(resolve_targets(self.preset, self.scale, self.counts), self.rules, self.seed)

    def parameters(self, config: SplitConfig) -> dict[str, Any]:
        """The `split` entry of dataset.json and the card."""
        return {
            "preset": self.preset,
            "preset_note": PRESET_NOTES.get(self.preset),
            "scale": self.scale,
            "seed": config.seed,
            "targets": config.targets.as_dict(),
            "rules": config.rules.as_dict(),
        }


@dataclass
class BuildResult:
    """A written release: its counts and targets, what the pool held, and the validation report."""

    out: Path
    selection: SplitSelection
    release: ReleaseSummary
    report: ValidationReport
    curation: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "counts": self.release.counts,
            "target_vs_achieved": self.release.target_vs_achieved,
            "eligibility": self.selection.eligibility,
            "validate": self.report.as_dict(),
        }


def _ok_rows(table: pa.Table) -> pa.Table:
    return table.filter(pc.equal(table.column("status"), "ok"))


def _recorded_curation(out: Path) -> dict[str, Any]:
    """The curation record `opreid curate` left in OUT/private/curation.json (empty when absent)."""
    path = DatasetLayout(out).curation_record
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ManifestError(path, f"not readable JSON ({exc})") from None
    record.pop("refused", None)
    return record


def build_release(
    raw: str | Path | None,
    out: str | Path,
    curate_config: CurateConfig | None,
    split: SplitRequest,
    *,
    progress: bool = False,
    force: bool = False,
) -> BuildResult:
    """Curate `raw` into `out` with `curate_config` (or, when it is None, split OUT's curated table as it
    stands, e.g. after review), draw the split, write the release and validate it.

    The result depends only on the set of images, the options and the seed. Validation violations are
    in `result.report`; the caller decides whether they are fatal. A release a leaderboard was created
    from is not overwritten unless `force`.
    """
    out = Path(out)
    config = split.config()
    refuse_replacing_leaderboard_release(out, force)
    if curate_config is None:
        table = _ok_rows(read_manifest(DatasetLayout(out).images_table, IMAGES))
        curation = _recorded_curation(out)
    else:
        if raw is None:
            raise SplitError("RAW is required unless the curated table in OUT is split as it stands")
        result = curate(Path(raw), out, curate_config, progress=progress)
        curation = dict(result.curation)
        table = _ok_rows(result.images)
    try:
        selection = select_split(table, config)
    except SplitPoolError as exc:
        fits = largest_fitting_scale(table, split)
        hint = f"; the largest --scale that fits this pool is {fits:g}" if fits else ""
        raise SplitPoolError(exc.constraint, exc.needed + hint, exc.pool) from None
    if curate_config is None:
        _refuse_changed_masked_crops(out, selection)
    parameters = {"curation": curation, "split": split.parameters(config)}
    release = write_release(out, selection, seed=config.seed, parameters=parameters, progress=progress)
    report = validate(out)
    _warn_shortfalls(release.target_vs_achieved)
    return BuildResult(out=out, selection=selection, release=release, report=report, curation=curation)


def _refuse_changed_masked_crops(out: Path, selection: SplitSelection) -> None:
    """OUT's curated table split as it stands releases `masked/` as it stands: refuse a crop changed since
    curate wrote it (a raw crop swapped in would be released with a face) before anything is written."""
    changed = changed_masked_crops(DatasetLayout(out), selection.rows.column("image_id").to_pylist())
    if changed:
        raise MaskedCropError(
            f"{len(changed)} masked crop(s) to release differ from what curate wrote (e.g. masked/{changed[0]}.jpg); "
            "run `opreid curate` again on OUT: it masks them again"
        )


def largest_fitting_scale(table: pa.Table, split: SplitRequest, steps: int = 14) -> float | None:
    """The largest scale below `split.scale` (to about 3 digits) whose split this pool can satisfy.

    A bisection over `select_split` itself, so every constraint counts; None when not even a tiny
    scale fits (the explicit counts or the rules are the problem, not the scale).
    """

    def fits(scale: float) -> bool:
        try:
            select_split(table, dataclasses.replace(split, scale=scale).config())
        except SplitError:
            return False
        return True

    lo, hi = 0.0, split.scale
    for _ in range(steps):
        mid = (lo + hi) / 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    if lo == 0.0:
        return None
    digits = 2 - math.floor(math.log10(lo))  # round down to 3 significant digits: it must still fit
    return math.floor(lo * 10**digits) / 10**digits


#: How far the achieved train occluded fraction may stray from the rule before a warning.
FRACTION_TOLERANCE = 0.02


def _warn_shortfalls(target_vs_achieved: dict[str, dict[str, Any]]) -> None:
    """One warning line per number the split could not reach (the card's table has them all)."""
    for key, value in target_vs_achieved.items():
        target, achieved = value["target"], value["achieved"]
        if isinstance(target, bool) or target is None:
            continue
        if isinstance(target, int) and achieved < target:
            log.warning("%s: achieved %s of the target %s (the pool or the per-identity rules limit it)",
                        key, achieved, target)  # fmt: skip
        elif isinstance(target, float) and abs(achieved - target) > FRACTION_TOLERANCE:
            log.warning("%s: achieved %.3f, the rule asks for about %.2f (the train identities' images "
                        "cannot meet it)", key, achieved, target)  # fmt: skip
