"""Reading a built dataset for the reference model (on tests/support/model_data.py's small release)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from support.model_data import build_model_dataset

import manifests
from manifests import DatasetLayout


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return build_model_dataset(tmp_path_factory.mktemp("model_data"))


@pytest.mark.slow
def test_read_train_and_splits(dataset):
    from reid_model.data.datasets import read_split, read_train

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


@pytest.mark.slow
def test_train_item_is_a_pure_function_of_its_seed(dataset):
    import torch

    from reid_model.config import load_config
    from reid_model.data.datasets import TrainDataset, read_train
    from reid_model.data.transforms import train_transform

    cfg = load_config("tiny")
    ds = TrainDataset(read_train(dataset), train_transform(cfg.input))
    a, pid_a, _ = ds[(3, 1234)]
    torch.manual_seed(99)  # global RNG state must not matter
    b, pid_b, _ = ds[(3, 1234)]
    c, _, _ = ds[(3, 4321)]
    assert a.shape == (3, 128, 64) and pid_a == pid_b
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.slow
def test_missing_dataset_and_bad_pids(tmp_path, dataset):
    from reid_model.data.datasets import read_train
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
