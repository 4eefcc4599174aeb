"""The OPReID split protocol (paper, section 4): eligibility first, then a seeded selection.

Pure: a table of curated images (image_id, pid, camid, occluded) goes in, the selected rows with
their split and role come out. Nothing here touches files.

Rules (per identity):
- train and test identities are disjoint; a train identity gives 5-20 images, about 15% occluded;
- a query identity gives one or two occluded query images, all from one camera, and the gallery
  holds exactly one occluded and one holistic image of it, both from other cameras;
- a distractor identity adds 1-3 occluded and 1-3 holistic gallery images;
- source pid 0 (`DISTRACTOR_PID`, Market-1501's background and other-person boxes) is no identity:
  its images may only be drawn as gallery distractors, never as a train or query identity.

Determinism: rows are sorted by (pid, image_id) before any draw, and every draw comes from one of
the named numpy Generators of `SplitStreams`, spawned from the seed, so the result depends only on
the set of rows and the seed.
Everything is vectorised (numpy), so a 1.38 M-row pool splits in seconds.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from opreid_builder.errors import SplitError, SplitPoolError
from opreid_builder.split.presets import SplitTargets

log = logging.getLogger(__name__)

#: Role of a selected image: why it is in its split.
ROLES = ("train", "query", "match", "distractor")
#: Source pid of distractor images (Market-1501 names them `0000_...`): gallery distractors only.
DISTRACTOR_PID = 0
REQUIRED_COLUMNS = ("image_id", "pid", "camid", "occluded")


@dataclass(frozen=True)
class ProtocolRules:
    """Per-identity ranges of the protocol (inclusive)."""

    train_images_per_id: tuple[int, int] = (5, 20)
    train_occluded_fraction: float = 0.15
    distractor_occluded: tuple[int, int] = (1, 3)
    distractor_holistic: tuple[int, int] = (1, 3)

    def check(self) -> None:
        for name in ("train_images_per_id", "distractor_occluded", "distractor_holistic"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise SplitError(f"{name}: need 0 <= low <= high (got {lo}-{hi})")
        if self.train_images_per_id[0] < 1:
            raise SplitError("train_images_per_id: a train identity needs at least one image")
        if self.distractor_occluded[1] + self.distractor_holistic[1] < 1:
            raise SplitError("distractor ranges allow no image at all")
        if not 0.0 <= self.train_occluded_fraction <= 1.0:
            raise SplitError(
                f"train_occluded_fraction must lie in [0, 1] (got {self.train_occluded_fraction})"
            )

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class SplitConfig:
    targets: SplitTargets
    rules: ProtocolRules = field(default_factory=ProtocolRules)
    seed: int = 0


@dataclass
class SplitSelection:
    """The selected rows and how the selection went.

    `rows`: one row per selected image: image_id, pid, camid, occluded (from the input), split
    (train | query | gallery) and role (train | query | match | distractor); sorted by image_id.
    `achieved` / `targets`: counts with the same keys; `eligibility`: what the pool holds.
    """

    rows: pa.Table
    targets: dict[str, Any]
    achieved: dict[str, Any]
    eligibility: dict[str, int]


# ---------------------------------------------------------------------------------------------
# vectorised building blocks


def _group_starts(sorted_groups: np.ndarray) -> np.ndarray:
    """Rank of each element inside its run of equal values (input sorted by group)."""
    n = len(sorted_groups)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    new = np.empty(n, dtype=bool)
    new[0] = True
    np.not_equal(sorted_groups[1:], sorted_groups[:-1], out=new[1:])
    start = np.where(new, np.arange(n), 0)
    np.maximum.accumulate(start, out=start)
    return np.arange(n) - start


def _take_per_group(mask: np.ndarray, group: np.ndarray, key: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Indices of the rows in `mask` whose rank by `key` inside their `group` is < count[group]."""
    idx = np.flatnonzero(mask)
    if len(idx) == 0:
        return idx
    g = group[idx]
    order = np.lexsort((key[idx], g))
    g_sorted = g[order]
    rank = _group_starts(g_sorted)
    return idx[order][rank < count[g_sorted]]


def _pick(eligible: np.ndarray, k: int, key: np.ndarray) -> np.ndarray:
    """The k eligible identities with the smallest random keys (a seeded draw without replacement)."""
    idx = np.flatnonzero(eligible)
    return idx[np.argsort(key[idx], kind="stable")[:k]]


def allocate(lo: np.ndarray, hi: np.ndarray, target: int | None, rng: np.random.Generator) -> np.ndarray:
    """Per-identity counts n with lo <= n <= hi whose sum is as close to `target` as the bounds allow.

    The slack above `lo` is filled in the same proportion for every identity, and the rounding
    remainder goes to identities drawn at random. Without a target, each count is drawn uniformly
    from its range.
    """
    lo = lo.astype(np.int64)
    hi = np.maximum(hi.astype(np.int64), lo)
    if target is None:
        return lo + np.floor(rng.random(len(lo)) * (hi - lo + 1)).astype(np.int64)
    slack = hi - lo
    total_slack = int(slack.sum())
    want = int(target) - int(lo.sum())
    if want <= 0 or total_slack == 0:
        return lo.copy()
    if want >= total_slack:
        return hi.copy()
    n = lo + (slack * want) // total_slack
    remainder = want - int((n - lo).sum())
    room = np.flatnonzero(n < hi)
    if remainder > 0:
        chosen = room[np.argsort(rng.random(len(room)), kind="stable")[:remainder]]
        n[chosen] += 1
    return n


def _swap_for_capacity(
    chosen: np.ndarray, spare: np.ndarray, capacity: np.ndarray, need: int, key: np.ndarray
) -> np.ndarray:
    """Swap chosen identities of least capacity for spare ones of most until sum(capacity) >= need.

    The selection stays random where the pool allows; only when the drawn identities cannot hold
    the image target are the smallest of them replaced, largest gain first (fewest swaps).
    """
    deficit = need - int(capacity[chosen].sum())
    if deficit <= 0 or len(spare) == 0 or len(chosen) == 0:
        return chosen
    small = chosen[np.lexsort((key[chosen], capacity[chosen]))]
    large = spare[np.lexsort((key[spare], -capacity[spare]))]
    m = min(len(small), len(large))
    gain = capacity[large[:m]] - capacity[small[:m]]
    gain = gain[gain > 0]
    if len(gain) == 0:
        return chosen
    reach = np.cumsum(gain)
    swaps = int(np.searchsorted(reach, deficit)) + 1 if reach[-1] >= deficit else len(gain)
    return np.concatenate([small[swaps:], large[:swaps]])


# ---------------------------------------------------------------------------------------------


def _columns(table: pa.Table) -> tuple[np.ndarray, ...]:
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise SplitError(f"the curated table lacks column(s) {', '.join(missing)}")
    for name in REQUIRED_COLUMNS:
        if table.column(name).null_count:
            raise SplitError(f"column {name!r} has null values in rows marked usable")
    # one string sort by image_id (also exposes duplicates), then a stable integer sort by pid:
    # rows end up in (pid, image_id) order whatever order they came in
    table = table.take(pc.sort_indices(table.column("image_id"), sort_keys=[("", "ascending")]))
    image_id = table.column("image_id").combine_chunks()
    if len(image_id) > 1 and pc.any(pc.equal(image_id[1:], image_id[:-1])).as_py():
        raise SplitError("image_id is not unique: one image would appear twice")
    table = table.take(pa.array(np.argsort(table.column("pid").to_numpy(), kind="stable")))
    pid = table.column("pid").to_numpy().astype(np.int64)
    cam = table.column("camid").to_numpy().astype(np.int64)
    occ = table.column("occluded").to_numpy(zero_copy_only=False).astype(bool)
    return table, pid, cam, occ


@dataclass(frozen=True)
class SplitStreams:
    """The split's independent random streams, spawned from the seed in field order.

    Each step draws from its own stream, so a step that draws more or less (or is skipped) never
    shifts another's draws. The field order is the spawn order: add new streams at the end only.
    """

    row_key: np.random.Generator  # per image: which of an identity's images are taken first
    identity_key: np.random.Generator  # per identity: which identities are drawn for each role
    train_counts: np.random.Generator  # images per train identity
    train_occluded: np.random.Generator  # occluded images per train identity
    distractor_occluded: np.random.Generator  # occluded images per distractor identity
    distractor_holistic: np.random.Generator  # holistic images per distractor identity
    query_camera: np.random.Generator  # the camera a query identity's query images come from

    @classmethod
    def from_seed(cls, seed: int) -> SplitStreams:
        children = np.random.SeedSequence(seed).spawn(len(dataclasses.fields(cls)))
        return cls(*(np.random.default_rng(child) for child in children))


@dataclass(frozen=True)
class _Pool:
    """The sorted input rows, their identity and (identity, camera) statistics and eligibility."""

    table: pa.Table  # rows in (pid, image_id) order
    occ: np.ndarray  # per row: occluded
    pid_idx: np.ndarray  # per row: identity index
    cam_idx: np.ndarray  # per row: camera index
    n_ids: int
    n_cams: int
    n_occ: np.ndarray  # per identity: occluded images
    n_hol: np.ndarray  # per identity: holistic images
    n_all: np.ndarray  # per identity: images
    pc_pid: np.ndarray  # per (identity, camera): identity index
    pc_cam: np.ndarray  # per (identity, camera): camera index
    cam_q1: np.ndarray  # per (identity, camera): can hold one query, other cameras the two matches
    cam_q2: np.ndarray  # per (identity, camera): the same with two queries
    q1_ok: np.ndarray  # per identity: eligible as a one-query identity
    q2_ok: np.ndarray  # per identity: eligible as a two-query identity
    train_ok: np.ndarray  # per identity: eligible for train
    dist_ok: np.ndarray  # per identity: eligible as a distractor

    @property
    def eligibility(self) -> dict[str, int]:
        return {
            "images": len(self.occ),
            "identities": self.n_ids,
            "cameras": self.n_cams,
            "occluded_images": int(self.n_occ.sum()),
            "query_eligible_ids": int(self.q1_ok.sum()),
            "two_query_eligible_ids": int(self.q2_ok.sum()),
            "train_eligible_ids": int(self.train_ok.sum()),
            "distractor_eligible_ids": int(self.dist_ok.sum()),
        }

    def describe(self, rules: ProtocolRules) -> str:
        """One line on what the pool holds, for the log and for every pool error."""
        return (
            f"{self.n_ids} identities / {len(self.occ)} images ({int(self.n_occ.sum())} occluded) over "
            f"{self.n_cams} cameras: {int(self.q1_ok.sum())} eligible as query, {int(self.q2_ok.sum())} "
            f"as two-query, {int(self.train_ok.sum())} as train (>= {rules.train_images_per_id[0]} images), "
            f"{int(self.dist_ok.sum())} as distractor"
        )


def _pool(table: pa.Table, pid: np.ndarray, cam: np.ndarray, occ: np.ndarray, rules: ProtocolRules) -> _Pool:
    """Identity and (identity, camera) statistics, and which identities each role may take."""
    uniq_pid, pid_idx = np.unique(pid, return_inverse=True)
    n_ids = len(uniq_pid)
    uniq_cam, cam_idx = np.unique(cam, return_inverse=True)
    n_occ = np.bincount(pid_idx, weights=occ, minlength=n_ids).astype(np.int64)
    n_all = np.bincount(pid_idx, minlength=n_ids).astype(np.int64)
    n_hol = n_all - n_occ
    pc_key = pid_idx.astype(np.int64) * len(uniq_cam) + cam_idx
    uniq_pc, pc_idx = np.unique(pc_key, return_inverse=True)
    pc_pid = uniq_pc // len(uniq_cam)
    pc_cam = uniq_pc % len(uniq_cam)
    pc_occ = np.bincount(pc_idx, weights=occ, minlength=len(uniq_pc)).astype(np.int64)
    pc_hol = np.bincount(pc_idx, minlength=len(uniq_pc)).astype(np.int64) - pc_occ
    other_ok = ((n_occ[pc_pid] - pc_occ) >= 1) & ((n_hol[pc_pid] - pc_hol) >= 1)
    cam_q1 = (pc_occ >= 1) & other_ok
    cam_q2 = (pc_occ >= 2) & other_ok
    (do_lo, _), (dh_lo, _) = rules.distractor_occluded, rules.distractor_holistic
    identity = uniq_pid != DISTRACTOR_PID  # pid 0 may only give gallery distractors
    return _Pool(
        table=table, occ=occ, pid_idx=pid_idx, cam_idx=cam_idx, n_ids=int(n_ids), n_cams=int(len(uniq_cam)),
        n_occ=n_occ, n_hol=n_hol, n_all=n_all, pc_pid=pc_pid, pc_cam=pc_cam, cam_q1=cam_q1, cam_q2=cam_q2,
        q1_ok=(np.bincount(pc_pid[cam_q1], minlength=n_ids) > 0) & identity,
        q2_ok=(np.bincount(pc_pid[cam_q2], minlength=n_ids) > 0) & identity,
        train_ok=(n_all >= rules.train_images_per_id[0]) & identity,
        dist_ok=(n_occ >= do_lo) & (n_hol >= dh_lo),
    )  # fmt: skip


@dataclass(frozen=True)
class _Identities:
    """The identities drawn for each role (identity indices)."""

    q1: np.ndarray  # one query image
    q2: np.ndarray  # two query images
    train: np.ndarray
    dist: np.ndarray
    dist_target: int | None  # distractor images wanted (None: each count drawn from its range)


def _query_identities(
    p: _Pool, targets: SplitTargets, key: np.ndarray, used: np.ndarray, pool: str
) -> tuple[np.ndarray, np.ndarray]:
    """Query identities, the most constrained role, drawn first: two-query ones, then one-query ones."""
    n_q2 = targets.query_images - targets.query_ids
    n_q1 = targets.query_ids - n_q2
    q2 = _pick(p.q2_ok, n_q2, key)
    if len(q2) < n_q2:
        raise SplitPoolError(
            "query identities with two query images",
            f"{n_q2} identities with two occluded images from one camera plus an occluded and a "
            "holistic image from other cameras",
            pool,
        )
    used[q2] = True
    q1 = _pick(p.q1_ok & ~used, n_q1, key)
    if len(q1) < n_q1:
        raise SplitPoolError(
            "query identities",
            f"{targets.query_ids} identities with an occluded image plus an occluded and a holistic "
            f"image from other cameras ({n_q2} of them with two query images)",
            pool,
        )
    used[q1] = True
    return q1, q2


def _train_capacity(p: _Pool, rules: ProtocolRules) -> np.ndarray:
    """Images a train identity can give: all of them, at most the per-identity maximum."""
    return np.minimum(p.n_all, rules.train_images_per_id[1])


def _balanced_train_capacity(p: _Pool, rules: ProtocolRules) -> np.ndarray:
    """Images a train identity can give at the occluded fraction: its holistic images plus as many
    occluded ones as keep the fraction, within the per-identity range (rich-in-holistic ids give most)."""
    t_lo, t_hi = rules.train_images_per_id
    return np.clip(p.n_hol + _occluded_room(p, rules), t_lo, t_hi).clip(max=_train_capacity(p, rules))


def _occluded_room(p: _Pool, rules: ProtocolRules) -> np.ndarray:
    """Occluded images an identity can add to its holistic ones without passing the occluded fraction."""
    frac = rules.train_occluded_fraction
    if frac >= 1:
        return p.n_occ
    return np.minimum(p.n_occ, np.floor(p.n_hol * frac / (1 - frac)).astype(np.int64))


def _train_identities(
    p: _Pool, targets: SplitTargets, rules: ProtocolRules, key: np.ndarray, used: np.ndarray, pool: str
) -> np.ndarray:
    """Train identities, swapped for ones holding more images if the image target needs it."""
    t_lo, t_hi = rules.train_images_per_id
    train_cap = _train_capacity(p, rules)
    train = _pick(p.train_ok & ~used, targets.train_ids, key)
    if len(train) < targets.train_ids:
        raise SplitPoolError(
            "train identities",
            f"{targets.train_ids} identities with >= {t_lo} images, disjoint from "
            f"the {targets.query_ids} query identities",
            pool,
        )
    if targets.train_images is not None:
        spare = np.flatnonzero(p.train_ok & ~used & ~np.isin(np.arange(p.n_ids), train))
        # capacity at the target occluded fraction: identities rich in holistic images come first
        balanced_cap = np.minimum(p.n_hol + _occluded_room(p, rules), t_hi)
        train = _swap_for_capacity(train, spare, balanced_cap, targets.train_images, key)
        if int(train_cap[train].sum()) < targets.train_images:
            raise SplitPoolError(
                "train images",
                f"{targets.train_images} images from {targets.train_ids} train identities at most {t_hi} "
                f"each; the best {targets.train_ids} identities left after the queries hold "
                f"{int(train_cap[train].sum())} (pass --train-images none to take what they hold)",
                pool,
            )
    used[train] = True
    return train


def _distractor_capacity(p: _Pool, rules: ProtocolRules) -> np.ndarray:
    """Gallery images a distractor identity can give, within the per-identity maxima."""
    return np.minimum(p.n_occ, rules.distractor_occluded[1]) + np.minimum(
        p.n_hol, rules.distractor_holistic[1]
    )


def _distractor_identities(
    p: _Pool, targets: SplitTargets, rules: ProtocolRules, key: np.ndarray, used: np.ndarray, pool: str
) -> tuple[np.ndarray, int | None]:
    """Distractor identities, swapped for capacity if the gallery image target needs it; and that target."""
    n_dist = targets.distractor_ids
    dist = _pick(p.dist_ok & ~used, n_dist, key)
    if len(dist) < n_dist:
        raise SplitPoolError(
            "distractor identities",
            f"{n_dist} identities with >= {rules.distractor_occluded[0]} occluded and "
            f">= {rules.distractor_holistic[0]} holistic images, unused by "
            f"train ({targets.train_ids}) and query ({targets.query_ids})",
            pool,
        )
    dist_target = None
    if targets.gallery_images is not None:
        dist_target = max(targets.gallery_images - 2 * targets.query_ids, 0)
        spare = np.flatnonzero(p.dist_ok & ~used & ~np.isin(np.arange(p.n_ids), dist))
        dist = _swap_for_capacity(dist, spare, _distractor_capacity(p, rules), dist_target, key)
    used[dist] = True
    return dist, dist_target


def _draw_identities(
    p: _Pool, targets: SplitTargets, rules: ProtocolRules, key: np.ndarray, pool: str
) -> _Identities:
    """Disjoint identities for every role, from one random key per identity."""
    needed = targets.train_ids + targets.gallery_ids
    if needed > p.n_ids:
        raise SplitPoolError(
            "disjoint identities",
            f"{needed} identities ({targets.train_ids} train + {targets.gallery_ids} gallery, "
            f"{targets.query_ids} of them query); lower --scale or the counts",
            pool,
        )
    used = np.zeros(p.n_ids, dtype=bool)
    q1, q2 = _query_identities(p, targets, key, used, pool)
    train = _train_identities(p, targets, rules, key, used, pool)
    dist, dist_target = _distractor_identities(p, targets, rules, key, used, pool)
    return _Identities(q1, q2, train, dist, dist_target)


def _train_counts(
    p: _Pool, ids: _Identities, targets: SplitTargets, rules: ProtocolRules, streams: SplitStreams
) -> tuple[np.ndarray, np.ndarray]:
    """Per identity: occluded and holistic train images (the image target, at the occluded fraction)."""
    train = ids.train
    # without an image target each identity gives what it holds at the occluded fraction, so that the
    # fraction is met wherever the pool allows (taking every image would tilt it to the occluded side)
    cap = (
        _train_capacity(p, rules) if targets.train_images is not None else _balanced_train_capacity(p, rules)
    )
    want = np.zeros(p.n_ids, dtype=np.int64)
    want[train] = allocate(
        np.full(len(train), rules.train_images_per_id[0]), cap[train],
        targets.train_images if targets.train_images is not None else int(cap[train].sum()),
        streams.train_counts,
    )  # fmt: skip
    train_occ = np.zeros(p.n_ids, dtype=np.int64)
    train_occ[train] = allocate(
        np.maximum(want[train] - p.n_hol[train], 0),
        np.minimum(p.n_occ[train], want[train]),
        int(round(rules.train_occluded_fraction * int(want[train].sum()))),
        streams.train_occluded,
    )
    return train_occ, want - train_occ


def _distractor_counts(
    p: _Pool, ids: _Identities, rules: ProtocolRules, streams: SplitStreams
) -> tuple[np.ndarray, np.ndarray]:
    """Per identity: occluded and holistic distractor images (half the target occluded, if any)."""
    dist, target = ids.dist, ids.dist_target
    (do_lo, do_hi), (dh_lo, dh_hi) = rules.distractor_occluded, rules.distractor_holistic
    dist_occ = np.zeros(p.n_ids, dtype=np.int64)
    dist_hol = np.zeros(p.n_ids, dtype=np.int64)
    occ_cap, hol_cap = np.minimum(p.n_occ[dist], do_hi), np.minimum(p.n_hol[dist], dh_hi)
    occ_lo, hol_lo = np.full(len(dist), do_lo), np.full(len(dist), dh_lo)
    if target is None:
        dist_occ[dist] = allocate(occ_lo, occ_cap, None, streams.distractor_occluded)
        dist_hol[dist] = allocate(hol_lo, hol_cap, None, streams.distractor_holistic)
    else:
        got = allocate(occ_lo, occ_cap, (target + 1) // 2, streams.distractor_occluded)
        dist_occ[dist] = got
        dist_hol[dist] = allocate(hol_lo, hol_cap, target - int(got.sum()), streams.distractor_holistic)
    return dist_occ, dist_hol


def _query_cameras(p: _Pool, ids: _Identities, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per identity: how many query images (0, 1, 2) and the camera they come from (a random viable one)."""
    n_query = np.zeros(p.n_ids, dtype=np.int64)
    n_query[ids.q1], n_query[ids.q2] = 1, 2
    viable = np.where(n_query[p.pc_pid] == 2, p.cam_q2, (n_query[p.pc_pid] == 1) & p.cam_q1)
    cam_key = np.where(viable, rng.random(len(p.pc_pid)), np.inf)
    first = _take_per_group(viable, p.pc_pid, cam_key, np.ones(p.n_ids, dtype=np.int64))
    query_cam = np.full(p.n_ids, -1, dtype=np.int64)
    query_cam[p.pc_pid[first]] = p.pc_cam[first]
    return n_query, query_cam


def _select_images(
    p: _Pool,
    row_key: np.ndarray,
    queries: tuple[np.ndarray, np.ndarray],
    train: tuple[np.ndarray, np.ndarray],
    distractors: tuple[np.ndarray, np.ndarray],
) -> dict[str, np.ndarray]:
    """Row indices of each role: per identity, the wanted number of images with the smallest row keys.

    `queries` is (query images, query camera) per identity; `train` and `distractors` are
    (occluded, holistic) image counts per identity.
    """
    occ, pid_idx = p.occ, p.pid_idx
    n_query, query_cam = queries
    row_query_cam = query_cam[pid_idx]
    is_q = n_query[pid_idx] > 0
    one = np.ones(p.n_ids, dtype=np.int64)

    def take(mask: np.ndarray, count: np.ndarray) -> np.ndarray:
        return _take_per_group(mask, pid_idx, row_key, count)

    def occluded_then_holistic(counts: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        n_occ, n_hol = counts
        return np.concatenate(
            [take(occ & (n_occ[pid_idx] > 0), n_occ), take(~occ & (n_hol[pid_idx] > 0), n_hol)]
        )

    other_cam = is_q & (p.cam_idx != row_query_cam)
    return {
        "query": take(occ & is_q & (p.cam_idx == row_query_cam), n_query),
        "match": np.concatenate([take(occ & other_cam, one), take(~occ & other_cam, one)]),
        "distractor": occluded_then_holistic(distractors),
        "train": occluded_then_holistic(train),
    }


def _selected_rows(table: pa.Table, picks: dict[str, np.ndarray]) -> pa.Table:
    """The picked rows with their split and role, sorted by image_id."""
    split_of = {"train": "train", "query": "query", "match": "gallery", "distractor": "gallery"}
    index = np.concatenate([picks[r] for r in ROLES])
    role = np.concatenate([np.full(len(picks[r]), r, dtype=object) for r in ROLES])
    split = np.array([split_of[r] for r in ROLES], dtype=object)[
        np.concatenate([np.full(len(picks[r]), i) for i, r in enumerate(ROLES)])
    ]
    rows = table.take(pa.array(index)).append_column("split", pa.array(split, pa.string()))
    rows = rows.append_column("role", pa.array(role, pa.string()))
    return rows.take(pc.sort_indices(rows, sort_keys=[("image_id", "ascending")]))


def select_split(table: pa.Table, config: SplitConfig) -> SplitSelection:
    """Compute eligibility, then draw the split; raises SplitPoolError naming a failed constraint.

    Steps: pool statistics and eligibility; identities per role (queries, train, distractors);
    per-identity image counts; the query camera; then the images themselves.
    """
    targets, rules = config.targets, config.rules
    targets.check()
    rules.check()
    table, pid, cam, occ = _columns(table)
    streams = SplitStreams.from_seed(config.seed)
    row_key = streams.row_key.random(len(pid))

    p = _pool(table, pid, cam, occ, rules)
    pool = p.describe(rules)
    log.info("split pool: %s", pool)

    ids = _draw_identities(p, targets, rules, streams.identity_key.random(p.n_ids), pool)
    train = _train_counts(p, ids, targets, rules, streams)
    distractors = _distractor_counts(p, ids, rules, streams)
    queries = _query_cameras(p, ids, streams.query_camera)
    picks = _select_images(p, row_key, queries, train, distractors)

    target_numbers = {
        **targets.as_dict(),
        "distractor_ids": targets.distractor_ids,
        "train_occluded_fraction": rules.train_occluded_fraction,
    }
    return SplitSelection(
        rows=_selected_rows(table, picks),
        targets=target_numbers,
        achieved=_achieved(pid, occ, picks, rules),
        eligibility=p.eligibility,
    )


def _achieved(pid: np.ndarray, occ: np.ndarray, picks: dict[str, np.ndarray], rules: ProtocolRules) -> dict:
    train, query = picks["train"], picks["query"]
    gallery = np.concatenate([picks["match"], picks["distractor"]])
    n_train = len(train)
    return {
        "train_ids": int(len(np.unique(pid[train]))),
        "train_images": int(n_train),
        "query_ids": int(len(np.unique(pid[query]))),
        "query_images": int(len(query)),
        "gallery_ids": int(len(np.unique(pid[gallery]))),
        "gallery_images": int(len(gallery)),
        "distractor_ids": int(len(np.unique(pid[picks["distractor"]]))),
        "train_occluded_fraction": round(float(occ[train].mean()) if n_train else 0.0, 4),
    }
