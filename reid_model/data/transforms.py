"""Per-image transforms (docs/model.md §6.2): autoaug (p), bicubic resize, flip, pad + crop, normalisation.

These are the `pil` input pipeline's (`loader.pipeline: pil`, per image in loader workers) and the
evaluation transform. The default `tensor` pipeline resizes every crop once with `resize` (the decoded-crop
cache) and applies the rest to whole batches on the training device (batch_augment.py).

Training transforms draw from torch's global RNG inside a forked RNG seeded per sample, so an
image's augmentation depends only on its sample seed, not on worker count or process history;
that is what makes resumed and DDP runs reproducible.
"""

from __future__ import annotations

import torch
from PIL import Image
from torchvision import transforms as T

from reid_model.config import InputConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize(cfg: InputConfig) -> T.Resize:
    """A crop to the input size: bicubic, antialiased (PIL), as training and evaluation both see it."""
    return T.Resize((cfg.height, cfg.width), interpolation=T.InterpolationMode.BICUBIC)


def train_transform(cfg: InputConfig) -> T.Compose:
    steps: list = []
    if cfg.autoaug_p > 0:
        steps.append(T.RandomApply([T.AutoAugment(T.AutoAugmentPolicy.IMAGENET)], p=cfg.autoaug_p))
    steps.append(resize(cfg))
    if cfg.flip_p > 0:
        steps.append(T.RandomHorizontalFlip(cfg.flip_p))
    if cfg.padding > 0:
        steps += [T.Pad(cfg.padding, fill=0), T.RandomCrop((cfg.height, cfg.width))]
    steps += [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return T.Compose(steps)


def test_transform(cfg: InputConfig) -> T.Compose:
    return T.Compose([resize(cfg), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def seeded_apply(transform: T.Compose, image: Image.Image, seed: int) -> torch.Tensor:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transform(image)
