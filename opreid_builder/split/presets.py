"""Split size presets: the paper's OPReID numbers, and `--scale` for small pools.

The paper (section 4, Table 2) gives identity and image totals per split. Not all of them follow
from its per-identity rules (3,515 query ids x 2 + 2,659 distractors x at most 6 images is about
23,000 gallery images, not 41,014), so a preset is a set of *targets*: the protocol keeps the rules,
hits the identity counts and the train/query image counts, and the release reports target vs
achieved for every number.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from opreid_builder.errors import SplitError


@dataclass(frozen=True)
class SplitTargets:
    """How many identities and images each split should hold; None means "no target"."""

    train_ids: int
    train_images: int | None
    query_ids: int
    query_images: int
    gallery_ids: int
    gallery_images: int | None

    @property
    def distractor_ids(self) -> int:
        return self.gallery_ids - self.query_ids

    def check(self) -> None:
        """Refuse targets no pool could meet (the rule checks come later, against the pool)."""
        if self.train_ids < 0 or self.query_ids < 1:
            raise SplitError(f"need at least one query identity and no negative counts (got {self})")
        if not self.query_ids <= self.query_images <= 2 * self.query_ids:
            raise SplitError(
                f"query images ({self.query_images}) must lie between the query identities ({self.query_ids}) "
                "and twice that (one or two query images per identity)"
            )
        if self.gallery_ids < self.query_ids:
            raise SplitError(
                f"gallery identities ({self.gallery_ids}) must include every query identity ({self.query_ids})"
            )

    def as_dict(self) -> dict[str, int | None]:
        return dataclasses.asdict(self)


#: The paper's numbers (section 4): train 1,744 ids / 27,228 images; query 3,515 ids / 4,200 images;
#: gallery 6,174 ids / 41,014 images.
PRESETS: dict[str, SplitTargets] = {
    "opreid": SplitTargets(
        train_ids=1744,
        train_images=27228,
        query_ids=3515,
        query_images=4200,
        gallery_ids=6174,
        gallery_images=41014,
    ),
}

PRESET_NOTES = {
    "opreid": (
        "Paper section 4 / Table 2. The gallery image total (41,014) exceeds what the per-identity rule "
        "allows (query ids x 2 + distractors x at most 6); Table 2's overall count (74,416) is not the "
        "sum of its splits (72,442). The preset keeps the rules and reports target vs achieved."
    ),
}


def _scaled(value: int | None, factor: float, minimum: int) -> int | None:
    if value is None:
        return None
    return max(minimum, int(round(value * factor)))


def scale_targets(targets: SplitTargets, factor: float) -> SplitTargets:
    """Multiply every count by `factor` (rounded half to even, at least 1 query id, >= 0 otherwise).

    Query images stay within [query ids, 2 x query ids] and gallery ids stay >= query ids after
    rounding, so a scaled preset is always a consistent request.
    """
    if not factor > 0:
        raise SplitError(f"--scale must be positive (got {factor})")
    query_ids = _scaled(targets.query_ids, factor, 1)
    query_images = min(max(_scaled(targets.query_images, factor, 1), query_ids), 2 * query_ids)
    return SplitTargets(
        train_ids=_scaled(targets.train_ids, factor, 0),
        train_images=_scaled(targets.train_images, factor, 0),
        query_ids=query_ids,
        query_images=query_images,
        gallery_ids=max(_scaled(targets.gallery_ids, factor, 1), query_ids),
        gallery_images=_scaled(targets.gallery_images, factor, 0),
    )


def resolve_targets(
    preset: str = "opreid",
    scale: float = 1.0,
    overrides: dict[str, int | None] | None = None,
) -> SplitTargets:
    """The preset's numbers times `scale`, then explicit per-count overrides (taken as given, unscaled).

    An override of None removes that image target (train or gallery images: no target, the rule alone).
    """
    try:
        base = PRESETS[preset]
    except KeyError:
        raise SplitError(f"unknown preset {preset!r}; known: {', '.join(sorted(PRESETS))}") from None
    targets = scale_targets(base, scale) if scale != 1.0 else base
    given = dict(overrides or {})
    unknown = set(given) - {f.name for f in dataclasses.fields(SplitTargets)}
    if unknown:
        raise SplitError(f"unknown split count(s): {', '.join(sorted(unknown))}")
    targets = dataclasses.replace(targets, **given)
    targets.check()
    return targets
