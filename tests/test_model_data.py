"""Reading a built dataset for the reference model; also home of `build_model_dataset`, the small
synthetic OUT folder (train/query/gallery manifests + private ground truth) the other model tests use.

The split here is deliberately simple (half the identities train, one query per test identity,
gallery = its images from other cameras); the real protocol is `opreid build-split`'s job.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import manifests
from manifests import DatasetLayout

SYNTH_IMAGES = (4, 6)


def build_model_dataset(
    root: Path, identities: int = 12, cameras: int = 3, per_id=SYNTH_IMAGES, seed: int = 0
) -> Path:
    """Synthetic crops (opreid_builder.synth) -> a built dataset folder honouring the manifests contract."""
    from opreid_builder.synth import SynthConfig, generate

    raw = root / "raw"
    generate(raw, SynthConfig(identities=identities, cameras=cameras, images_per_identity=per_id, seed=seed))
    truth = manifests.read_manifest(raw / "truth.parquet", manifests.SYNTH_TRUTH).to_pandas()
    truth = truth.sort_values("file").reset_index(drop=True)
    out = root / "out"
    layout = DatasetLayout(out)
    pids = sorted(truth["pid"].unique())
    train_ids = set(pids[: len(pids) // 2])
    train, query, gallery, gt = [], [], [], []
    remap = {p: i for i, p in enumerate(sorted(train_ids))}
    for pid, group in truth.groupby("pid", sort=True):
        if pid in train_ids:
            for row in group.itertuples():
                rel = f"images/train/{row.file}"
                train.append((Path(row.file).stem, rel, remap[pid], row.camid, bool(row.occluded), row.file))
            continue
        group = group.sort_values(["occluded", "file"], ascending=[False, True])
        first = group.iloc[0]
        others = group[group["camid"] != first["camid"]]
        if len(others):
            query.append((first, f"q{len(query):05d}"))
            rest = others
        else:
            rest = group
        for _, row in rest.iterrows():
            gallery.append((row, f"g{len(gallery):05d}"))
    for _image_id, rel, _pid, _camid, _occ, file in train:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(raw / file, out / rel)
    manifests.write_manifest(
        {
            "image_id": [t[0] for t in train],
            "path": [t[1] for t in train],
            "pid": [t[2] for t in train],
            "camid": [t[3] for t in train],
            "occluded": [t[4] for t in train],
        },
        layout.train,
        manifests.TRAIN,
    )
    for split, rows, schema in (("query", query, manifests.QUERY), ("gallery", gallery, manifests.GALLERY)):
        ids, paths, cams = [], [], []
        for row, image_id in rows:
            rel = f"images/{split}/{image_id}.jpg"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(raw / row["file"], out / rel)
            ids.append(image_id)
            paths.append(rel)
            cams.append(int(row["camid"]))
            gt.append((image_id, split, int(row["pid"]), int(row["camid"]), bool(row["occluded"])))
        manifests.write_manifest(
            {"image_id": ids, "path": paths, "camid": cams}, layout.manifest(split), schema
        )
    manifests.write_manifest(
        {k: [g[i] for g in gt] for i, k in enumerate(["image_id", "split", "pid", "camid", "occluded"])},
        layout.ground_truth,
        manifests.GROUND_TRUTH,
    )
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return build_model_dataset(tmp_path_factory.mktemp("model_data"))


def test_read_train_and_splits(dataset):
    from reid_model.data import read_split, read_train

    train = read_train(dataset)
    assert train.num_classes == len(np.unique(train.pids)) == 6
    assert all(p.is_file() for p in train.paths)
    q = read_split(dataset, "query")
    g = read_split(dataset, "gallery")
    assert q.pids is not None and g.pids is not None
    assert (
        q.image_ids
        == manifests.read_manifest(DatasetLayout(dataset).query, manifests.QUERY)
        .column("image_id")
        .to_pylist()
    )
    for pid, cam in zip(q.pids, q.camids, strict=True):  # every query has a cross-camera match
        assert ((g.pids == pid) & (g.camids != cam)).any()
    assert read_split(dataset, "query", with_truth=False).pids is None


def test_train_item_is_a_pure_function_of_its_seed(dataset):
    import torch

    from reid_model.config import load_config
    from reid_model.data import TrainDataset, read_train
    from reid_model.transforms import train_transform

    cfg = load_config("tiny")
    ds = TrainDataset(read_train(dataset), train_transform(cfg.input))
    a, pid_a, _ = ds[(3, 1234)]
    torch.manual_seed(99)  # global RNG state must not matter
    b, pid_b, _ = ds[(3, 1234)]
    c, _, _ = ds[(3, 4321)]
    assert a.shape == (3, 128, 64) and pid_a == pid_b
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_missing_dataset_and_bad_pids(tmp_path, dataset):
    from reid_model.data import read_train
    from reid_model.errors import DataError

    with pytest.raises(DataError, match="not found"):
        read_train(tmp_path / "nope")
    bad = tmp_path / "bad"
    shutil.copytree(dataset, bad)
    table = manifests.read_manifest(DatasetLayout(bad).train, manifests.TRAIN).to_pandas()
    table["pid"] = table["pid"] + 5
    manifests.write_manifest(table, DatasetLayout(bad).train, manifests.TRAIN)
    with pytest.raises(DataError, match="remapped"):
        read_train(bad)
