"""The split protocol on metadata-only tables: rules, determinism, pool errors, presets."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from support.split_pools import make_pool, small_targets

from opreid_builder.errors import SplitError, SplitPoolError
from opreid_builder.split.presets import PRESETS, SplitTargets, resolve_targets, scale_targets
from opreid_builder.split.protocol import ProtocolRules, SplitConfig, allocate, select_split


def frame(selection):
    return selection.rows.to_pandas()


def test_rules_hold():
    sel = select_split(make_pool(), SplitConfig(small_targets(), seed=1))
    df = frame(sel)
    train, query, gallery = (df[df.split == s] for s in ("train", "query", "gallery"))
    assert set(train.pid).isdisjoint(set(query.pid) | set(gallery.pid))
    assert train.groupby("pid").size().between(5, 20).all()
    assert train.pid.nunique() == 15 and len(train) == 200
    assert query.occluded.all() and query.pid.nunique() == 30 and len(query) == 36
    assert set(query.groupby("pid").size()) <= {1, 2}
    for pid, q in query.groupby("pid"):
        g = gallery[gallery.pid == pid]
        assert len(g) == 2 and g.occluded.sum() == 1
        assert not set(g.camid) & set(q.camid)
    distractors = gallery[~gallery.pid.isin(query.pid)]
    assert distractors.pid.nunique() == 25
    per = distractors.groupby("pid").occluded.agg(["sum", "size"])
    assert per["sum"].between(1, 3).all() and (per["size"] - per["sum"]).between(1, 3).all()
    assert df.image_id.is_unique
    assert abs(sel.achieved["train_occluded_fraction"] - 0.15) < 0.03


def test_order_independent_and_seeded():
    pool = make_pool(seed=3)
    config = SplitConfig(small_targets(), seed=7)
    a = select_split(pool, config)
    shuffled = pool.take(pa.array(np.random.default_rng(9).permutation(pool.num_rows)))
    b = select_split(shuffled, config)
    assert a.rows.equals(b.rows) and a.achieved == b.achieved
    c = select_split(pool, SplitConfig(small_targets(), seed=8))
    assert not a.rows.equals(c.rows)


def test_gallery_target_fills_distractors_up_to_the_rule():
    pool = make_pool(seed=4)
    sel = select_split(pool, SplitConfig(small_targets(gallery_images=10_000), seed=0))
    assert sel.achieved["gallery_images"] == 2 * 30 + 6 * 25  # every distractor at 3 + 3
    wide = ProtocolRules(distractor_occluded=(1, 10), distractor_holistic=(1, 10))
    more = select_split(pool, SplitConfig(small_targets(gallery_images=400), rules=wide, seed=0))
    assert more.achieved["gallery_images"] > sel.achieved["gallery_images"]


def test_pool_too_small_names_constraint():
    pool = make_pool(identities=50)
    with pytest.raises(
        SplitPoolError,
        match="cannot satisfy 'disjoint identities': need 70 identities.*the pool holds 50 identities",
    ):
        select_split(pool, SplitConfig(small_targets(), seed=0))
    few = ProtocolRules(distractor_occluded=(10, 12))
    with pytest.raises(
        SplitPoolError, match="cannot satisfy 'distractor identities': need 25 identities with >= 10 occluded"
    ):
        select_split(make_pool(identities=120), SplitConfig(small_targets(), rules=few, seed=0))
    holistic = pool.set_column(3, "occluded", pa.array(np.zeros(pool.num_rows, bool)))
    with pytest.raises(SplitPoolError, match="query identities"):
        select_split(holistic, SplitConfig(small_targets(train_ids=0, gallery_ids=30), seed=0))


def test_train_image_shortfall_is_an_error():
    pool = make_pool(identities=120, images=(5, 8))
    with pytest.raises(SplitPoolError, match="train images"):
        select_split(pool, SplitConfig(small_targets(train_images=290), seed=0))


def test_duplicate_image_ids_refused():
    pool = make_pool(identities=10)
    dup = pa.concat_tables([pool, pool.slice(0, 1)])
    with pytest.raises(SplitError, match="not unique"):
        select_split(dup, SplitConfig(small_targets(train_ids=1, query_ids=1, query_images=1, gallery_ids=1)))


def test_allocate_bounds_and_sum():
    rng = np.random.default_rng(0)
    lo, hi = np.array([5, 5, 5, 5]), np.array([20, 6, 12, 5])
    n = allocate(lo, hi, 30, rng)
    assert n.sum() == 30 and (n >= lo).all() and (n <= hi).all()
    assert (allocate(lo, hi, 1000, rng) == hi).all()
    assert (allocate(lo, hi, 0, rng) == lo).all()
    free = allocate(lo, hi, None, rng)
    assert ((free >= lo) & (free <= hi)).all()


def test_presets_and_scale():
    paper = PRESETS["opreid"]
    assert (paper.train_ids, paper.train_images, paper.query_ids, paper.query_images) == (
        1744,
        27228,
        3515,
        4200,
    )
    assert (paper.gallery_ids, paper.gallery_images) == (6174, 41014)
    small = scale_targets(paper, 0.01)
    assert small == SplitTargets(17, 272, 35, 42, 62, 410)
    assert resolve_targets("opreid", 0.01, {"gallery_images": None}).gallery_images is None
    with pytest.raises(SplitError, match="query images"):
        resolve_targets("opreid", 1.0, {"query_images": 9000})
    with pytest.raises(SplitError, match="unknown preset"):
        resolve_targets("market")


@pytest.mark.parametrize("occluded", [0.3, 0.45])
def test_without_an_image_target_the_train_split_keeps_the_occluded_fraction(occluded):
    """Taking every image up to 20 would tilt the train split to the pool's occluded share."""
    pool = make_pool(identities=150, occluded=occluded, seed=4)
    sel = select_split(pool, SplitConfig(small_targets(train_ids=40, train_images=None), seed=2))
    assert abs(sel.achieved["train_occluded_fraction"] - 0.15) <= 0.02
    train = frame(sel).query("split == 'train'")
    assert train.groupby("pid").size().between(5, 20).all() and train.pid.nunique() == 40


def test_a_fraction_the_pool_cannot_meet_is_warned_about(caplog):
    from opreid_builder.build import _warn_shortfalls

    pool = make_pool(identities=150, images=(6, 8), occluded=0.8, seed=4)  # too few holistic images
    sel = select_split(pool, SplitConfig(small_targets(train_ids=40, train_images=None), seed=2))
    assert sel.achieved["train_occluded_fraction"] > 0.3
    tva = {k: {"target": sel.targets.get(k), "achieved": v} for k, v in sel.achieved.items()}
    with caplog.at_level("WARNING"):
        _warn_shortfalls(tva)
    assert "train_occluded_fraction: achieved" in caplog.text and "0.15" in caplog.text


@pytest.mark.parametrize("seed", range(6))
def test_pid_zero_is_only_ever_a_gallery_distractor(seed):
    """Market-1501's pid 0 (background, other people's boxes) is no identity: never train or query."""
    pool = make_pool(identities=71, images=(10, 24), occluded=0.4, seed=seed)
    pid = pool.column("pid").to_numpy().copy()
    pid[pid == 71] = 0  # the richest pools make pid 0 as eligible for every role as any identity
    pool = pool.set_column(pool.schema.get_field_index("pid"), "pid", pa.array(pid, pa.int64()))
    # 15 train + 56 gallery identities: every identity of the pool is drawn, pid 0 as a distractor
    sel = select_split(pool, SplitConfig(small_targets(gallery_ids=56), seed=seed))
    zero = frame(sel)[lambda d: d.pid == 0]
    assert not zero.empty and set(zero.split) == {"gallery"} and set(zero.role) == {"distractor"}
    assert sel.eligibility["train_eligible_ids"] == 70 and sel.eligibility["query_eligible_ids"] <= 70
