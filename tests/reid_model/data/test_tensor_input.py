"""The `tensor` input pipeline: the decoded-crop cache, the batched augmentation and the batch stream."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from support.model_data import build_model_dataset

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return build_model_dataset(tmp_path_factory.mktemp("tensor_input"))


def _input(height: int = 32, width: int = 16, **kw):
    from reid_model.config import InputConfig

    return InputConfig(height=height, width=width, **kw)


def _train_images(root: Path) -> tuple[list[Path], list[str]]:
    from reid_model.data.crop_cache import image_checksums
    from reid_model.data.datasets import read_train

    paths = read_train(root).paths
    return paths, image_checksums(paths)


# -- the decoded-crop cache -----------------------------------------------------------------------------
@pytest.mark.slow
def test_cache_holds_each_resized_crop_once_and_is_reused(dataset, tmp_path):
    from reid_model.data.crop_cache import open_crop_cache
    from reid_model.data.datasets import load_image
    from reid_model.data.transforms import resize

    paths, sums = _train_images(dataset)
    cfg = _input()
    first = open_crop_cache(paths, sums, cfg, tmp_path)
    assert first.built and first.array.shape == (len(set(sums)), 32, 16, 3) and first.array.dtype == np.uint8
    rows = first.rows_of(sums)
    for i in (0, 5, len(paths) - 1):  # the row of an image is its PIL bicubic resize, as evaluation sees it
        expected = np.asarray(resize(cfg)(load_image(paths[i])))
        assert np.array_equal(first.array[rows[i]], expected)
    again = open_crop_cache(list(reversed(paths)), list(reversed(sums)), cfg, tmp_path)
    assert not again.built and again.path == first.path  # keyed by content, not by order or run
    assert isinstance(again.array, np.memmap)
    other = open_crop_cache(paths, sums, _input(48, 24), tmp_path)
    assert other.built and other.path != first.path and other.array.shape[1:3] == (48, 24)
    assert sorted(p.name for p in tmp_path.glob("*.npy")) == sorted([first.path.name, other.path.name])


def test_a_changed_image_gives_another_cache(dataset, tmp_path):
    import shutil

    from reid_model.data.crop_cache import open_crop_cache

    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    paths, sums = _train_images(copy)
    first = open_crop_cache(paths, sums, _input(), tmp_path / "cache")
    from PIL import Image

    with Image.open(paths[3]) as img:
        img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(paths[3], quality=95)
    paths2, sums2 = _train_images(copy)
    assert sums2[3] != sums[3]
    second = open_crop_cache(paths2, sums2, _input(), tmp_path / "cache")
    assert second.built and second.path != first.path
    r1, r2 = first.rows_of(sums), second.rows_of(sums2)
    assert not np.array_equal(second.array[r2[3]], first.array[r1[3]])
    assert np.array_equal(second.array[r2[0]], first.array[r1[0]])


def test_a_failed_build_leaves_nothing_and_a_damaged_file_is_rebuilt(dataset, tmp_path, monkeypatch):
    from reid_model.data import crop_cache
    from reid_model.errors import DataError

    paths, sums = _train_images(dataset)
    bad = tmp_path / "not-a-jpeg.jpg"
    bad.write_bytes(b"nope")
    with pytest.raises(DataError, match="cannot read image"):
        crop_cache.open_crop_cache([*paths, bad], [*sums, "f" * 64], _input(), tmp_path)
    assert not list(tmp_path.glob("*.npy")) and not list(tmp_path.glob(".*.tmp"))

    target = crop_cache.cache_file(tmp_path, sums, 32, 16)
    target.write_bytes(b"\x93NUMPY truncated")  # e.g. a disk error: unreadable, so never trusted
    cache = crop_cache.open_crop_cache(paths, sums, _input(), tmp_path)
    assert cache.built and cache.path == target and cache.array.shape[0] == len(set(sums))


#: Builds the cache in a child process and SIGKILLs it when the first batch of crops is decoded, the
#: temporary file created but not filled: a killed build.
KILL_DURING_BUILD = """
import os, signal, sys
from reid_model.config import InputConfig
from reid_model.data import crop_cache
from reid_model.data.datasets import read_train
crop_cache._stack = lambda items: os.kill(os.getpid(), signal.SIGKILL)
paths = read_train(sys.argv[1]).paths
crop_cache.open_crop_cache(paths, crop_cache.image_checksums(paths), InputConfig(height=32, width=16), sys.argv[2])
"""


@pytest.mark.slow
def test_a_killed_build_is_never_trusted_and_the_next_build_cleans_up(dataset, tmp_path):
    from reid_model.data.crop_cache import open_crop_cache

    paths, sums = _train_images(dataset)
    proc = subprocess.run([sys.executable, "-c", KILL_DURING_BUILD, str(dataset), str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not list(tmp_path.glob("*.npy"))  # nothing under the cache's name
    assert list(tmp_path.glob(".crops-*.tmp")), "the kill should have hit mid-build"
    cache = open_crop_cache(paths, sums, _input(), tmp_path)
    assert cache.built and not list(tmp_path.glob(".crops-*.tmp"))


def test_cache_folder_defaults_to_the_release_else_the_run(dataset, tmp_path, monkeypatch):
    from reid_model.data import crop_cache

    assert crop_cache.default_cache_folder(dataset, tmp_path / "run", "") == dataset / "cache" / "crops"
    assert crop_cache.default_cache_folder(dataset, tmp_path / "run", str(tmp_path / "c")) == tmp_path / "c"
    monkeypatch.setattr(crop_cache, "writable_folder", lambda folder: False)
    assert (
        crop_cache.default_cache_folder(dataset, tmp_path / "run", "") == tmp_path / "run" / "cache" / "crops"
    )


# -- batched augmentation ------------------------------------------------------------------------------
def _batch(n: int = 6, h: int = 32, w: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(
        1, 256, (n, 3, h, w), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8
    )


def test_flip_pad_crop_matches_the_per_image_definition():
    from reid_model.data.batch_augment import flip_pad_crop

    x = _batch()
    flip = torch.tensor([0, 1, 0, 1, 1, 0], dtype=torch.bool)
    top, left = torch.tensor([0, 10, 5, 3, 0, 7]), torch.tensor([10, 0, 5, 9, 4, 1])
    out = flip_pad_crop(x, flip, top, left, padding=5)
    for i in range(6):
        img = x[i].flip(-1) if flip[i] else x[i]  # RandomHorizontalFlip, then Pad(5, fill=0) + crop
        padded = torch.nn.functional.pad(img, (5, 5, 5, 5))
        assert torch.equal(out[i], padded[:, top[i] : top[i] + 32, left[i] : left[i] + 16]), i
    cl = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(flip_pad_crop(cl, flip, top, left, 5), out)  # the cache's NHWC layout gives the same


def test_without_autoaugment_the_tensor_path_computes_the_pil_paths_images(dataset):
    """Same crop, same draws (flip, crop offset): the cached crop through the batched ops equals the PIL
    path's resize, flip, pad, crop, ToTensor and Normalize; the two paths differ only in how they draw."""
    import torchvision.transforms.functional as TF
    from torchvision import transforms as T

    from reid_model.data.batch_augment import flip_pad_crop, normalize
    from reid_model.data.datasets import load_image, read_train
    from reid_model.data.transforms import IMAGENET_MEAN, IMAGENET_STD, resize

    cfg = _input(128, 64, padding=5)
    paths = read_train(dataset).paths[:4]
    resized = [resize(cfg)(load_image(p)) for p in paths]
    cached = torch.from_numpy(np.stack([np.asarray(img) for img in resized])).permute(0, 3, 1, 2)
    flip, top, left = (
        torch.tensor([1, 0, 1, 0], dtype=torch.bool),
        torch.tensor([0, 3, 10, 7]),
        torch.tensor([9, 0, 5, 2]),
    )
    ours = normalize(flip_pad_crop(cached, flip, top, left, padding=5))
    to_tensor = T.Compose([T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    for i, img in enumerate(resized):
        img = TF.hflip(img) if flip[i] else img
        img = TF.crop(TF.pad(img, 5, fill=0), int(top[i]), int(left[i]), 128, 64)
        torch.testing.assert_close(ours[i], to_tensor(img), rtol=0, atol=1e-5)


def test_normalize_is_to_tensor_then_normalize():
    from torchvision import transforms as T

    from reid_model.data.batch_augment import normalize
    from reid_model.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    x = _batch(2)
    ref = torch.stack([T.Normalize(IMAGENET_MEAN, IMAGENET_STD)(img.float() / 255) for img in x])
    torch.testing.assert_close(normalize(x), ref)


def test_autoaugment_ops_are_torchvisions_on_each_image():
    """The magnitudes are torchvision's AutoAugment space, each op on a batch is the op on each image, and
    it is torchvision's AutoAugment operation within one grey level."""
    from torchvision.transforms import AutoAugment, InterpolationMode
    from torchvision.transforms.autoaugment import _apply_op

    from reid_model.data.batch_augment import apply_op, magnitudes

    x = _batch(4, 64, 32)
    space = AutoAugment()._augmentation_space(10, (64, 32))  # (height, width), as its forward passes it
    for op, (values, signed) in space.items():
        ours, our_signed = magnitudes(op, 64, 32)
        assert our_signed == signed and torch.allclose(ours.float(), values.float()), op
        for magnitude in {float(values.flatten()[-1]), float(values.flatten()[len(values.flatten()) // 2])}:
            for m in (magnitude, -magnitude) if signed else (magnitude,):
                batched = apply_op(x, op, m)
                assert torch.equal(batched, torch.stack([apply_op(img[None], op, m)[0] for img in x])), (
                    op,
                    m,
                )
                # torchvision's v1 kernels (the AutoAugment transform's) round a few blends the other way
                v1 = torch.stack([_apply_op(img, op, m, InterpolationMode.NEAREST, None) for img in x])
                assert (batched.int() - v1.int()).abs().max() <= 1, (op, m)


def test_augment_batch_draws_only_from_its_generator():
    from reid_model.data.batch_augment import augment_batch

    cfg = _input(flip_p=0.5, padding=4, autoaug_p=0.5)
    x = _batch(16)
    a = augment_batch(x, torch.Generator().manual_seed(3), cfg)
    torch.manual_seed(123)  # the global RNG plays no part
    b = augment_batch(x, torch.Generator().manual_seed(3), cfg)
    c = augment_batch(x, torch.Generator().manual_seed(4), cfg)
    assert a.shape == (16, 3, 32, 16) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    plain = augment_batch(x, torch.Generator().manual_seed(3), _input(flip_p=0.0, padding=0, autoaug_p=0.0))
    from reid_model.data.batch_augment import normalize

    assert torch.equal(plain, normalize(x))  # no augmentation asked, none done


def test_autoaugment_probability_zero_and_one():
    from reid_model.data.batch_augment import auto_augment

    x = _batch(64)
    assert auto_augment(x, torch.Generator().manual_seed(0), 0.0) is x
    out = auto_augment(x, torch.Generator().manual_seed(0), 1.0)
    changed = (out != x).flatten(1).any(1).float().mean().item()
    assert 0.3 < changed <= 1.0  # every image draws a sub-policy; some of its ops skip or are no-ops


def test_erasing_is_vectorised_per_image_boxes():
    from reid_model.modeling.batch_erasing import ErasingParams, erasing_boxes

    gen = torch.Generator().manual_seed(0)
    erase, boxes = erasing_boxes(4000, 128, 64, gen, ErasingParams(prob=0.5))
    assert 0.45 < erase.float().mean().item() < 0.55
    top, bottom, left, right = boxes.T
    assert (top >= 0).all() and (bottom <= 128).all() and (left >= 0).all() and (right <= 64).all()
    area = ((bottom - top) * (right - left)).float()[erase] / (128 * 64)
    assert area.min() >= 0.015 and area.max() <= 0.42  # U(0.02, 0.4), sides rounded to pixels
    assert (top[erase] == 0).any() and (bottom[erase] == 128).any()  # every position can be drawn


# -- the batch stream ----------------------------------------------------------------------------------
def _source(n: int = 24):
    from reid_model.data.crop_batches import CropSource
    from reid_model.data.sampler import PKSampler

    crops = np.arange(n * 4 * 2 * 3, dtype=np.uint8).reshape(n, 4, 2, 3)
    pids = np.repeat(np.arange(n // 4), 4)
    source = CropSource(crops, np.arange(n)[::-1].copy(), pids, np.zeros(n, dtype=np.int64))
    return source, PKSampler(pids, 8, 4, seed=1)


def test_prefetching_changes_no_batch():
    from reid_model.data.crop_batches import crop_batches

    source, sampler = _source()
    direct = crop_batches(source, sampler, 3, prefetch=0, pin=False)
    ahead = crop_batches(source, sampler, 3, prefetch=2, pin=False)
    for _ in range(10):
        (s1, x1, p1, c1), (s2, x2, p2, c2) = next(direct), next(ahead)
        assert s1 == s2 and torch.equal(x1, x2) and torch.equal(p1, p2) and torch.equal(c1, c2)
        assert x1.shape == (8, 3, 4, 2) and x1.is_contiguous(memory_format=torch.channels_last)
    ahead.close()


def test_a_failure_while_prefetching_reaches_the_consumer():
    from reid_model.data.crop_batches import CropSource, crop_batches

    source, sampler = _source()
    broken = CropSource(source.crops, source.rows[:3], source.pids, source.camids)  # rows missing
    with pytest.raises(IndexError):
        next(crop_batches(broken, sampler, 0, prefetch=2, pin=False))


def test_a_batch_does_not_depend_on_the_thread_count():
    """The trainer runs the CPU input ops on one thread (serial_cpu_ops); that may change nothing."""
    from reid_model.data.batch_augment import augment_batch
    from reid_model.modeling.batch_erasing import ErasingParams, compound_batch_erasing

    cfg = _input(128, 64, flip_p=0.5, padding=5, autoaug_p=0.5)
    x, pids = _batch(32, 128, 64), torch.arange(32)
    params = ErasingParams(fill="random")
    out = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        gen = torch.Generator().manual_seed(7)
        out[threads] = compound_batch_erasing(augment_batch(x, gen, cfg), pids, pids, gen, params)[0]
    torch.set_num_threads(1)
    assert torch.equal(out[1], out[2])
